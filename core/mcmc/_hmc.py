"""Static HMC: a fixed number of leapfrog steps, then a Metropolis test of the end point
(Neal 2011, "MCMC using Hamiltonian dynamics"), as a kernel of the shared loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from anyxp.backend import Backend
from anyxp.mcmc._integrator import MAX_ENERGY_ERROR, kinetic, leapfrog, logp_of
from anyxp.mcmc._kernel import Transition

__all__ = ["HMCKernel"]


class HMCState(NamedTuple):
    """One iteration in progress, per chain."""

    start: Any  # the point where the iteration began: kept on rejection
    h0: Any  # (C,) the energy at the start
    point: Any  # the trajectory's end so far
    p: Any  # (C, d)
    steps: Any  # (C,) leapfrog steps taken
    divergent: Any  # (C,) an energy error past MAX_ENERGY_ERROR was met


class HMCKernel:
    """``num_steps`` leapfrog steps per iteration, the same for every chain."""

    name = "hmc"

    def __init__(self, be: Backend, f: Callable[[Any], Any], num_steps: int) -> None:
        self.be, self.xp, self.f, self.num_steps = be, be.xp, f, num_steps

    def start(self, point: Any, z: Any, inv_mass: Any, u: Any) -> HMCState:
        """Begin every chain's iteration at ``point`` with momentum ``M^{1/2} z``."""
        xp = self.xp
        p = z / xp.sqrt(inv_mass)
        zero = xp.zeros((point.shape[0],), dtype=xp.int32, device=self.be.device)
        h0 = -logp_of(point) + kinetic(xp, p, inv_mass)
        return HMCState(point, h0, point, p, zero, zero == 1)

    def restart(
        self, s: HMCState, mask: Any, point: Any, z: Any, inv_mass: Any, u: Any
    ) -> HMCState:
        """Begin a new iteration for the chains of ``mask`` (all of them, in HMC)."""
        xp, m = self.xp, mask[:, None]
        new = self.start(point, z, inv_mass, u)
        return HMCState(
            *(xp.where(m if a.ndim == 2 else mask, a, b) for a, b in zip(new, s, strict=True))
        )

    def step(self, s: HMCState, eps: Any, inv_mass: Any, u: Any) -> tuple[HMCState, Any]:
        """Take one leapfrog step; every chain finishes after ``num_steps``."""
        xp = self.xp
        point, p = leapfrog(xp, self.f, s.point, s.p, eps, inv_mass)
        error = -logp_of(point) + kinetic(xp, p, inv_mass) - s.h0
        divergent = s.divergent | ~(error <= MAX_ENERGY_ERROR)
        steps = s.steps + 1
        return HMCState(s.start, s.h0, point, p, steps, divergent), steps >= self.num_steps

    def transition(self, s: HMCState, inv_mass: Any, u: Any) -> Transition:
        """Accept the end point with probability ``min(1, exp(-energy error))``."""
        xp = self.xp
        log_ratio = s.h0 - (-logp_of(s.point) + kinetic(xp, s.p, inv_mass))
        log_ratio = xp.where(xp.isnan(log_ratio), -xp.inf, log_ratio)
        accept = xp.exp(xp.minimum(log_ratio, 0.0))
        point = xp.where((u[:, 0] < accept)[:, None], s.point, s.start)
        return Transition(point, accept, s.divergent, s.steps, xp.zeros_like(s.steps))
