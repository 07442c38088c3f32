"""The No-U-Turn sampler as a kernel of the shared loop, built iteratively, leaf by leaf.

The algorithm is Stan's (Betancourt 2017, "A Conceptual Introduction to Hamiltonian
Monte Carlo", sections A.3-A.4): the trajectory doubles, each time in a random
direction, by a subtree of ``2**depth`` leapfrog steps, until it makes a U-turn, a step
diverges, or ``max_depth`` doublings are done.

- **Multinomial sampling.** Within a subtree each new leaf replaces the subtree's
  candidate with probability ``w_leaf / W_subtree`` (``w = exp(-H)``), which draws the
  candidate in proportion to its weight; a finished subtree's candidate replaces the
  trajectory's with probability ``min(1, W_subtree / W_old)`` (biased progressive
  sampling, favouring the far end).
- **Generalized no-U-turn criterion.** A span of leaves turns when the integral of its
  momenta (the trapezoidal rule: ``rho`` the sum, less half of each end's momentum) no
  longer points along both end velocities: ``v_start . rho' <= 0`` or
  ``v_end . rho' <= 0`` with ``v = M^{-1} p``. It is checked on the whole trajectory after
  each doubling and, within the new subtree, on every binary sub-subtree as it completes;
  a turning or divergent subtree is discarded and ends the iteration.

Without recursion, the sub-subtrees are tracked with checkpoints: leaf ``n`` (counted
from 0 within its subtree) ends the sub-subtrees of sizes ``2, 4, ..., 2**k``, ``k`` the
number of trailing one bits of ``n``; they began at leaves ``n + 1 - 2**j``. An even
leaf ``m`` stores its momentum and the momentum sum before it in slot ``popcount(m)``;
the sub-subtrees ending at ``n`` find their starts in slots
``popcount(n) - k ... popcount(n) - 1``, which no leaf in between overwrites.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from anyxp.backend import Backend
from anyxp.mcmc._integrator import MAX_ENERGY_ERROR, kinetic, leapfrog, logp_of
from anyxp.mcmc._kernel import Transition

__all__ = ["NUTSKernel"]


class NUTSState(NamedTuple):
    """One trajectory under construction, per chain (leading axis: chains)."""

    left: Any  # the trajectory's ends (points), extended leaf by leaf
    p_left: Any
    right: Any
    p_right: Any
    h0: Any  # the energy at the start of the iteration
    proposal: Any  # the trajectory's candidate draw (a point)
    log_w: Any  # log of the trajectory's total weight
    rho: Any  # the trajectory's momentum sum
    depth: Any  # completed doublings
    direction: Any  # +1.0 or -1.0: where the current subtree grows
    leaf: Any  # the next leaf's index in the current subtree
    sub_proposal: Any
    sub_log_w: Any
    sub_rho: Any  # momentum sum of the current subtree's leaves so far
    ck_p: Any  # (C, max_depth, d) checkpoints: momentum at a sub-subtree's start
    ck_rho: Any  # (C, max_depth, d) ... and the subtree's momentum sum before it
    accept_sum: Any  # sum over leaves of min(1, exp(-energy error)) (Stan's accept_stat)
    steps: Any
    divergent: Any
    stopped_inside: Any  # the iteration ended inside a subtree (it counts to the depth)


class NUTSKernel:
    """Multinomial NUTS with the generalized criterion, ``max_depth`` doublings at most."""

    name = "nuts"

    def __init__(self, be: Backend, f: Callable[[Any], Any], max_depth: int) -> None:
        self.be, self.xp, self.f, self.max_depth = be, be.xp, f, max_depth
        xp, dev = be.xp, be.device
        self._slots = xp.arange(max_depth, dtype=xp.int32, device=dev)[None, :]
        # popcount(n) and the number of trailing one bits of n, for every leaf index.
        n = np.arange(2 ** (max_depth - 1), dtype=np.int64)
        ones = np.array([bin(int(i)).count("1") for i in n], dtype=np.int32)
        trailing = np.array([bin(int(i) ^ (int(i) + 1)).count("1") - 1 for i in n], np.int32)
        self._ones = xp.asarray(ones, device=dev)
        self._trailing = xp.asarray(trailing, device=dev)

    def start(self, point: Any, z: Any, inv_mass: Any, u: Any) -> NUTSState:
        """Begin every chain's trajectory at ``point`` with momentum ``M^{1/2} z``."""
        xp, dev = self.xp, self.be.device
        c, d = z.shape
        zero_i = xp.zeros((c,), dtype=xp.int32, device=dev)
        zero_f = xp.zeros((c,), dtype=z.dtype, device=dev)
        checkpoints = xp.zeros((c, self.max_depth, d), dtype=z.dtype, device=dev)
        blank = NUTSState(
            left=point,
            p_left=z,
            right=point,
            p_right=z,
            h0=zero_f,
            proposal=point,
            log_w=zero_f,
            rho=z,
            depth=zero_i,
            direction=zero_f,
            leaf=zero_i,
            sub_proposal=point,
            sub_log_w=zero_f,
            sub_rho=z,
            ck_p=checkpoints,
            ck_rho=checkpoints,
            accept_sum=zero_f,
            steps=zero_i,
            divergent=zero_i == 1,
            stopped_inside=zero_i == 1,
        )
        return self.restart(blank, zero_i == 0, point, z, inv_mass, u)

    def restart(
        self, s: NUTSState, mask: Any, point: Any, z: Any, inv_mass: Any, u: Any
    ) -> NUTSState:
        """Begin a trajectory of one point for the chains of ``mask``.

        The checkpoints and the subtree's candidate are left as they are: a subtree
        writes them before it reads them.
        """
        xp, m = self.xp, mask[:, None]
        p = z / xp.sqrt(inv_mass)
        zero = xp.zeros_like(s.log_w)
        h0 = -logp_of(point) + kinetic(xp, p, inv_mass)
        direction = xp.where(u[:, 3] < 0.5, -1.0, 1.0)
        return s._replace(
            left=xp.where(m, point, s.left),
            p_left=xp.where(m, p, s.p_left),
            right=xp.where(m, point, s.right),
            p_right=xp.where(m, p, s.p_right),
            h0=xp.where(mask, h0, s.h0),
            proposal=xp.where(m, point, s.proposal),
            log_w=xp.where(mask, zero, s.log_w),
            rho=xp.where(m, p, s.rho),
            depth=xp.where(mask, 0, s.depth),
            direction=xp.where(mask, direction, s.direction),
            leaf=xp.where(mask, 0, s.leaf),
            sub_log_w=xp.where(mask, -xp.inf, s.sub_log_w),
            sub_rho=xp.where(m, 0.0, s.sub_rho),
            accept_sum=xp.where(mask, zero, s.accept_sum),
            steps=xp.where(mask, 0, s.steps),
            divergent=s.divergent & ~mask,
            stopped_inside=s.stopped_inside & ~mask,
        )

    def step(self, s: NUTSState, eps: Any, inv_mass: Any, u: Any) -> tuple[NUTSState, Any]:
        """Add one leaf to every chain's subtree; merge the subtrees it completes."""
        xp = self.xp
        forward = s.direction > 0
        fwd = forward[:, None]
        frontier = xp.where(fwd, s.right, s.left)
        p0 = xp.where(fwd, s.p_right, s.p_left)
        leaf, p = leapfrog(xp, self.f, frontier, p0, s.direction * eps, inv_mass)

        error = -logp_of(leaf) + kinetic(xp, p, inv_mass) - s.h0
        divergent = ~(error <= MAX_ENERGY_ERROR)  # NaN diverges too
        finite = xp.isfinite(error)
        log_w_leaf = xp.where(finite, -error, -xp.inf)
        accept = xp.where(finite, xp.exp(xp.minimum(-error, 0.0)), 0.0)

        # The subtree's candidate: this leaf with probability w_leaf / W_subtree.
        sub_log_w = xp.logaddexp(s.sub_log_w, log_w_leaf)
        take = xp.log(u[:, 0]) < log_w_leaf - sub_log_w
        sub_proposal = xp.where(take[:, None], leaf, s.sub_proposal)

        ck_p, ck_rho, sub_rho, turned = self._subtree_turns(s, p, inv_mass)
        stop_inside = divergent | turned

        # A complete subtree joins the trajectory (unless it turned or diverged).
        p_left = xp.where(fwd, s.p_left, p)
        p_right = xp.where(fwd, p, s.p_right)
        complete = s.leaf + 1 == xp.bitwise_left_shift(xp.ones_like(s.depth), s.depth)
        merge = complete & ~stop_inside
        m = merge[:, None]
        take_sub = merge & (xp.log(u[:, 1]) < sub_log_w - s.log_w)
        rho = xp.where(m, s.rho + sub_rho, s.rho)
        u_turn = _turns(xp, p_left, p_right, rho, inv_mass)
        depth = s.depth + xp.astype(merge, s.depth.dtype)
        done = stop_inside | (merge & (u_turn | (depth >= self.max_depth)))

        state = NUTSState(
            left=xp.where(fwd, s.left, leaf),
            p_left=p_left,
            right=xp.where(fwd, leaf, s.right),
            p_right=p_right,
            h0=s.h0,
            proposal=xp.where(take_sub[:, None], sub_proposal, s.proposal),
            log_w=xp.where(merge, xp.logaddexp(s.log_w, sub_log_w), s.log_w),
            rho=rho,
            depth=depth,
            # Chains that merged start their next, twice as long subtree.
            direction=xp.where(merge, xp.where(u[:, 2] < 0.5, -1.0, 1.0), s.direction),
            leaf=xp.where(merge, 0, s.leaf + 1),
            sub_proposal=sub_proposal,
            sub_log_w=xp.where(merge, -xp.inf, sub_log_w),
            sub_rho=xp.where(m, 0.0, sub_rho),
            ck_p=ck_p,
            ck_rho=ck_rho,
            accept_sum=s.accept_sum + accept,
            steps=s.steps + 1,
            divergent=s.divergent | divergent,
            stopped_inside=s.stopped_inside | stop_inside,
        )
        return state, done

    def _subtree_turns(self, s: NUTSState, p: Any, inv_mass: Any) -> tuple[Any, Any, Any, Any]:
        """Store this leaf's checkpoint; check the sub-subtrees it completes for U-turns."""
        xp = self.xp
        n = xp.clip(s.leaf, 0, self._ones.shape[0] - 1)
        ones = xp.take(self._ones, n)[:, None]
        trailing = xp.take(self._trailing, n)[:, None]
        store = ((s.leaf % 2 == 0)[:, None] & (self._slots == ones))[:, :, None]
        ck_p = xp.where(store, p[:, None, :], s.ck_p)
        ck_rho = xp.where(store, s.sub_rho[:, None, :], s.ck_rho)
        sub_rho = s.sub_rho + p
        span = sub_rho[:, None, :] - ck_rho  # momentum sums of the spans ending here
        turning = _turns(xp, ck_p, p[:, None, :], span, inv_mass[:, None, :])
        ending = (self._slots >= ones - trailing) & (self._slots < ones)
        return ck_p, ck_rho, sub_rho, xp.any(ending & turning, axis=1)

    def transition(self, s: NUTSState, inv_mass: Any, u: Any) -> Transition:
        """Return the trajectory's candidate and the iteration's statistics."""
        xp = self.xp
        accept = s.accept_sum / xp.astype(xp.maximum(s.steps, 1), s.accept_sum.dtype)
        depth = s.depth + xp.astype(s.stopped_inside, s.depth.dtype)
        return Transition(s.proposal, accept, s.divergent, s.steps, depth)


def _turns(xp: Any, p_start: Any, p_end: Any, rho: Any, inv_mass: Any) -> Any:
    """Whether a span with end momenta ``p_start``, ``p_end`` and momentum sum ``rho``
    has turned (Betancourt's generalized criterion).

    ``rho`` minus half of each end's momentum is the trapezoidal rule's integral of the
    momentum along the span (Betancourt 2017, A.4.2), as numpyro uses; the plain sum
    counts each end in full and lets trajectories run a little longer before they stop.
    """
    inner = rho - (p_start + p_end) / 2
    v_start, v_end = inv_mass * p_start, inv_mass * p_end
    return (xp.sum(v_start * inner, axis=-1) <= 0) | (xp.sum(v_end * inner, axis=-1) <= 0)
