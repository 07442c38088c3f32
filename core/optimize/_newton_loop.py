"""The damped Newton iteration both root finders share, on a batch of rows.

``x_{k+1} = x_k + λ_k·dx_k`` where ``dx_k`` solves (exactly, or inexactly) ``J(x_k) dx = -F(x_k)``
and ``λ_k`` comes from a backtracking line search on ``‖F‖₂`` (Armijo's condition of
sufficient decrease). How the direction is found — a dense Jacobian, or GMRES on products
``J(x)·v`` — is a :class:`Direction`; the loop, the line search, the convergence test and
the bookkeeping are written here once.

Every row is its own system: its own step length, status and counts; a row that has
stopped is masked out of the updates (as in ``anyxp.ode._masked``). The loops are
``be.while_loop``: Python on eager backends, one traced program on JAX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import array_api_extra as xpx
import numpy as np

from anyxp.backend import Backend
from anyxp.optimize._result import (
    CONVERGED,
    LINE_SEARCH,
    MAX_ITER,
    NONFINITE,
    RUNNING,
)

__all__ = ["ARMIJO_ALPHA", "MAX_BACKTRACKS", "Direction", "solve_rows"]

#: Armijo's constant: a step must reduce ``‖F‖₂`` by at least this fraction of λ.
ARMIJO_ALPHA = 1e-4
#: The most reductions of λ before the line search gives up (λ is then below 1e-6).
MAX_BACKTRACKS = 20

Rows = Callable[[Any], Any]


class Direction(Protocol):
    """How a Newton direction is found: its state, the direction, and what it learns."""

    def init(self, batch: int) -> Any:
        """The direction's own state before the first iteration."""

    def __call__(
        self, x: Any, fx: Any, f2: Any, running: Any, carry: Any
    ) -> tuple[Any, Any, dict[str, Any], Any]:
        """``(dx, status, counts, carry)``: the direction of every running row, a status per
        row (``RUNNING``, or why this row has no direction), and the counts to add."""

    def update(self, carry: Any, f2: Any, f2_new: Any, ftol: Any, accepted: Any) -> Any:
        """The state after a step from ``‖F‖₂ = f2`` to ``f2_new`` (accepted rows)."""


def max_norm(xp: Any, v: Any) -> Any:
    """The largest magnitude of each row (NaN if the row holds one)."""
    out = xp.max(xp.abs(v), axis=-1) if v.shape[-1] else xp.zeros(v.shape[:-1], dtype=v.dtype)
    return xp.where(xp.all(xp.isfinite(v), axis=-1), out, xp.nan)


def two_norm(xp: Any, v: Any) -> Any:
    """The 2-norm of each row, scaled so that no square overflows (``F`` may be huge far
    from the root, and such a step must be judged by its size, not rejected as inf)."""
    big = xp.max(xp.abs(v), axis=-1) if v.shape[-1] else xp.zeros(v.shape[:-1], dtype=v.dtype)
    safe = xp.where((big > 0) & xp.isfinite(big), big, 1.0)
    w = v / safe[:, None]
    return safe * xp.sqrt(xp.vecdot(w, w))


def solve_rows(
    be: Backend,
    F: Rows,
    x: Any,
    direction: Direction,
    *,
    tol: float,
    rtol: float,
    max_iter: int,
    line_search: bool,
    counts: tuple[str, ...],
) -> dict[str, Any]:
    """Solve ``F(x) = 0`` for every row of ``x`` ``(B, n)``; ``F`` maps rows to rows.

    A row has converged when ``‖F(x)‖∞ ≤ max(tol, rtol·‖F(x0)‖∞)``. Returns ``x``,
    ``status``, ``residual`` (``‖F(x)‖∞``) and ``iterations`` per row, ``history``
    ``(max_iter + 1, B)`` (NaN where a row had stopped), and the ``counts`` named.
    """
    xp, dev = be.xp, be.device
    batch = x.shape[0]
    ints = xp.zeros((batch,), dtype=xp.int32, device=dev)

    def const(v: int) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=dev)

    fx = F(x)
    fmax, f2 = max_norm(xp, fx), two_norm(xp, fx)
    ftol = xp.maximum(rtol * fmax, tol)
    status = xp.where(fmax <= ftol, const(CONVERGED), const(RUNNING))
    status = xp.where(xp.isfinite(f2), status, const(NONFINITE))
    history = xp.full((max_iter + 1, batch), xp.nan, dtype=x.dtype, device=dev)
    history = xpx.at(history, (0, ...)).set(fmax)
    tally = {k: ints if k in PER_ROW else 0 for k in counts}
    tally["nfev"] = 1
    state0 = (0, x, fx, f2, fmax, status, ints, history, tally, direction.init(batch))

    def cond(state: Any) -> Any:
        return xp.any(state[5] == RUNNING) & (state[0] < max_iter)

    def body(state: Any) -> Any:
        it, x, fx, f2, fmax, status, iters, history, tally, carry = state
        running = status == RUNNING
        dx, why, added, carry = direction(x, fx, f2, running, carry)
        tally = _add(tally, added)
        status = xp.where(running & (why != RUNNING), why, status)
        trying = status == RUNNING
        search = _armijo if line_search else _full_step
        x_new, fx_new, f2_new, ok, backtracks, nfev = search(be, F, x, fx, f2, dx, trying)
        tally = _add(tally, {"nfev": nfev, "backtracks": backtracks})
        fmax_new = max_norm(xp, fx_new)
        carry = direction.update(carry, f2, f2_new, ftol, ok)
        failed = trying & ~ok
        status = xp.where(failed, const(LINE_SEARCH if line_search else NONFINITE), status)
        status = xp.where(ok & (fmax_new <= ftol), const(CONVERGED), status)
        x = xp.where(ok[:, None], x_new, x)
        fx = xp.where(ok[:, None], fx_new, fx)
        f2, fmax = xp.where(ok, f2_new, f2), xp.where(ok, fmax_new, fmax)
        iters = xp.where(running, iters + 1, iters)
        history = xpx.at(history, (it + 1, ...)).set(xp.where(running, fmax, xp.nan))
        x, fx = be.materialize(x, fx)
        return it + 1, x, fx, f2, fmax, status, iters, history, tally, carry

    # Non-finite values are expected along the way (a trial step outside F's domain) and
    # are reported in the status: numpy need not warn about them.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        state = be.while_loop(cond, body, state0)
    _, x, _, _, fmax, status, iters, history, tally, _ = state
    status = xp.where(status == RUNNING, const(MAX_ITER), status)
    return {
        "x": x,
        "status": status,
        "residual": fmax,
        "iterations": iters,
        "history": history,
        "counts": {k: tally[k] for k in counts},
    }


#: The counts kept per row; the others (evaluations of F, products) count calls of F on
#: the whole batch.
PER_ROW = ("linear_iterations", "backtracks")


def _add(tally: dict[str, Any], added: dict[str, Any]) -> dict[str, Any]:
    return {k: v + added[k] if k in added else v for k, v in tally.items()}


def _armijo(
    be: Backend, F: Rows, x: Any, fx: Any, f2: Any, dx: Any, active: Any
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Backtracking from ``λ = 1`` until ``‖F(x + λ dx)‖₂ ≤ (1 - αλ)‖F(x)‖₂``, per row.

    Each reduction takes the minimizer of the quadratic through ``φ(0) = ‖F(x)‖²``,
    ``φ'(0) = -2φ(0)`` (the Newton direction's slope) and ``φ(λ)``, kept within
    ``[λ/10, λ/2]`` (Dennis & Schnabel); a non-finite ``F`` divides λ by 10. Returns the new
    rows, which rows found a step, the reductions per row and the calls of ``F``.
    """
    xp = be.xp
    lam = xp.ones_like(f2)
    zero = xp.zeros(f2.shape, dtype=xp.int32, device=be.device)
    state0 = (0, lam, ~active, x, fx, f2, zero)

    def cond(state: Any) -> Any:
        return xp.any(~state[2]) & (state[0] <= MAX_BACKTRACKS)

    def body(state: Any) -> Any:
        tries, lam, done, x_new, fx_new, f2_new, backtracks = state
        xt = x + lam[:, None] * dx
        ft = F(xt)
        f2t = two_norm(xp, ft)
        finite = xp.isfinite(f2t)
        good = ~done & finite & (f2t <= (1.0 - ARMIJO_ALPHA * lam) * f2)
        x_new = xp.where(good[:, None], xt, x_new)
        fx_new = xp.where(good[:, None], ft, fx_new)
        f2_new = xp.where(good, f2t, f2_new)
        ratio = xp.where(finite, f2t, 0.0) / xp.where(f2 > 0, f2, 1.0)
        denom = ratio * ratio - 1.0 + 2.0 * lam  # φ(λ)/φ(0) - 1 - λφ'(0)/φ(0), > 0 here
        quad = xp.where(denom > 0, lam * lam / xp.where(denom > 0, denom, 1.0), 0.5 * lam)
        shrunk = xp.where(finite, xp.clip(quad, 0.1 * lam, 0.5 * lam), 0.1 * lam)
        retry = ~done & ~good
        lam = xp.where(retry, shrunk, lam)
        backtracks = xp.where(retry, backtracks + 1, backtracks)
        return tries + 1, lam, done | good, x_new, fx_new, f2_new, backtracks

    tries, _, done, x_new, fx_new, f2_new, backtracks = be.while_loop(cond, body, state0)
    accepted = active & done
    # The last failed try of a row that gave up is no backtrack: nothing followed it.
    backtracks = xp.where(active & ~done, backtracks - 1, backtracks)
    return x_new, fx_new, f2_new, accepted, backtracks, tries


def _full_step(
    be: Backend, F: Rows, x: Any, fx: Any, f2: Any, dx: Any, active: Any
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """The undamped Newton step; a row whose ``F`` is not finite there does not take it."""
    xp = be.xp
    xt = x + dx
    ft = F(xt)
    f2t = two_norm(xp, ft)
    ok = active & xp.isfinite(f2t)
    zero = xp.zeros(f2.shape, dtype=xp.int32, device=be.device)
    return xt, ft, f2t, ok, zero, 1
