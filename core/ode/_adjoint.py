"""The continuous adjoint: derivatives of a solve by solving backwards in time.

For stored states ``y(t_k)`` with cotangents ``ȳ_k``, the adjoint ``a`` and the parameter
integral ``g`` obey, from the last stored time back to ``t0``,

    a' = -aᵀ ∂f/∂y,    g' = -aᵀ ∂f/∂θ,    a(t_k⁻) = a(t_k⁺) + ȳ_k,

and then ``ȳ0 = a(t0)``, ``θ̄ = g(t0)``. Both the forward and the backward solve use the
same method and tolerances, so the derivative is accurate to the tolerance, not to
rounding. Two ways to know ``y(t)`` on the way back:

- ``backsolve`` integrates ``y`` backwards too, from the last stored state: memory does not
  grow with the steps, but the backward ``y`` drifts from the forward one where the
  problem is unstable backwards (stiff, chaotic) — then use ``interpolating``.
- ``interpolating`` replays the forward steps once, keeping every state and each step's
  record, and reads ``y(t)`` off the method's own interpolant (memory grows with the
  steps).

One backward solve runs per stored time (``be.fori_loop`` over them: one program on JAX).
A backward solve that fails makes the derivatives NaN: never a plausible wrong number.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import array_api_extra as xpx

from anyxp.ode._explicit import SUCCESS, Span
from anyxp.ode._masked import run_masked
from anyxp.ode._replay import Replay

if TYPE_CHECKING:
    from anyxp.ode._sensitivity import Solver

__all__ = ["continuous_adjoint"]


def _rows(leaves: tuple[Any, ...], batch: int, per_row: bool) -> list[int]:
    """How many numbers of each leaf belong to one row of the batch."""
    if per_row:
        return [math.prod(x.shape[1:]) for x in leaves]
    return [math.prod(x.shape) for x in leaves]


def continuous_adjoint(
    solver: Solver, rp: Replay, inputs: tuple[Any, ...], stored_bar: Any, stored: Any
) -> tuple[Any, ...]:
    """The cotangents of ``(y0, t0, t1, *leaves)`` from the continuous adjoint.

    ``stored`` holds the forward solve's stored states (``backsolve`` starts from the last).
    """
    be, xp = rp.be, rp.be.xp
    ad = be.ad
    if rp.te.ndim == 2:
        raise NotImplementedError(
            "event times are differentiated through sensitivity='checkpointed', 'direct' or "
            f"'forward'; {solver.mode!r} adjoints solve between shared stored times only"
        )
    y0 = inputs[0]
    leaves = tuple(inputs[3:])
    batch, n = y0.shape
    per_row = solver.per_row_params
    sizes = _rows(leaves, batch, per_row)
    n_params = sum(sizes)
    te = rp.te
    m = te.shape[0]
    d = rp.direction
    back = -d
    method0 = rp.method(leaves)
    tdt = rp.ts.dtype

    def theta_bar(row_cotangents: list[Any]) -> Any:
        """Leaf cotangents as rows ``(B, P)`` of the parameter integral."""
        flat = [xp.reshape(c, (batch, -1) if per_row else (1, -1)) for c in row_cotangents]
        if not flat:
            return xp.zeros((batch, 0), dtype=y0.dtype, device=be.device)
        return xp.concat(flat, axis=1)

    def pullback(t: Any, y: Any, a: Any) -> tuple[Any, Any]:
        """``aᵀ ∂f/∂y`` and the rows of ``aᵀ ∂f/∂θ`` at ``(t, y)``."""
        _, vjp = ad.vjp(lambda y, *ls: rp.method(ls).f(t, y), y, *leaves)
        a_y, *a_leaves = vjp(a)
        return a_y, theta_bar(a_leaves)

    if solver.mode == "backsolve":
        width = 2 * n + n_params

        def rhs(t: Any, z: Any) -> Any:
            y, a = z[:, :n], z[:, n : 2 * n]
            a_y, a_theta = pullback(t, y, a)
            return xp.concat([method0.f(t, y), -a_y, -a_theta], axis=1)

        adjoint_at = n
    else:
        width = n + n_params
        states = _forward_states(rp, inputs)

        def rhs(t: Any, z: Any) -> Any:
            y = _dense(rp, states, t, leaves)
            a_y, a_theta = pullback(t, y, z[:, :n])
            return xp.concat([-a_y, -a_theta], axis=1)

        adjoint_at = 0

    assert solver.adjoint_method is not None and solver.span is not None
    st = solver.adjoint_method(rhs)
    span0 = solver.span

    def segment(k: Any, carry: Any) -> Any:
        """From stored time ``k`` back to the one before it (or ``t0``)."""
        z, ok = carry
        kk = m - 1 - k
        bar = stored_bar[kk, ...]
        a = z[:, adjoint_at : adjoint_at + n] + xp.where(xp.isfinite(bar), bar, 0.0)
        head = z[:, :adjoint_at]
        if solver.mode == "backsolve":
            # Restart the state solved backwards from the forward solve's stored value at
            # each saved time (as torchdiffeq and diffrax do): solved backwards alone, it
            # drifts, and on a dissipative problem it blows up (NaN gradients).
            y_k = stored[kk, ...]
            head = xp.where(xp.isfinite(y_k), y_k, head)
        z = xp.concat([head, a, z[:, adjoint_at + n :]], axis=1)
        t_from = te[kk]
        t_to = be.cond(kk > 0, lambda: te[kk - 1], lambda: xp.asarray(rp.t0, dtype=tdt))

        def solve_back() -> Any:
            span = Span(
                t_from, t_to, span0.rtol, span0.atol, span0.h, span0.fixed, span0.max_steps,
                span0.max_step, back,
            )  # fmt: skip
            res = run_masked(st, span, z, t_eval=xp.stack([t_to]))
            return res["y"][0, ...], ok & xp.all(res["status"] == SUCCESS)

        return be.cond(t_from != t_to, solve_back, lambda: (z, ok))

    if solver.mode == "backsolve":
        last = stored[m - 1, ...]
        y_last = xp.where(xp.isfinite(last), last, 0.0)
        z0 = xp.concat([y_last, xp.zeros((batch, n + n_params), dtype=y0.dtype)], axis=1)
    else:
        z0 = xp.zeros((batch, width), dtype=y0.dtype, device=be.device)
    z, ok = be.fori_loop(0, m, segment, (z0, xp.asarray(True, device=be.device)))
    a0 = z[:, adjoint_at : adjoint_at + n]
    g0 = z[:, adjoint_at + n :]
    nan = xp.asarray(math.nan, dtype=y0.dtype, device=be.device)
    a0 = xp.where(ok, a0, nan)
    g0 = xp.where(ok, g0, nan)
    y0_bar = a0
    leaves_bar = []
    offset = 0
    for leaf, size in zip(leaves, sizes, strict=True):
        part = g0[:, offset : offset + size]
        leaves_bar.append(xp.reshape(part if per_row else part[0, :], leaf.shape))
        offset += size
    t0_bar, t1_bar = _time_cotangents(rp, inputs, stored, stored_bar, a0)
    return (y0_bar, t0_bar, t1_bar, *leaves_bar)


def _time_cotangents(
    rp: Replay, inputs: tuple[Any, ...], stored: Any, stored_bar: Any, a0: Any
) -> tuple[Any, Any]:
    """``t0̄`` and ``t1̄``: the start moves with ``t0`` (``-⟨a(t0), f(t0, y0)⟩``), and stored
    times that move with the interval (every step, or ``t0`` and ``t1``) carry
    ``⟨ȳ_k, f(t_k, y_k)⟩`` to it in proportion."""
    be, xp = rp.be, rp.be.xp
    y0, t0, t1, *leaves = inputs
    f0 = rp.f0(y0, t0, tuple(leaves))
    t0_bar = -xp.sum(a0 * f0)
    t1_bar = xp.zeros_like(t0_bar)
    if rp.moving:
        method = rp.method(tuple(leaves))
        m = rp.te.shape[0]
        for k in range(m):  # few times: t0 and t1, or an eager solve's steps
            t_k = xp.zeros((y0.shape[0],), dtype=rp.ts.dtype, device=be.device) + rp.te[k]
            f_k = method.f(t_k, xp.where(xp.isfinite(stored[k]), stored[k], 0.0))
            moved = xp.sum(xp.where(xp.isfinite(stored_bar[k]), stored_bar[k], 0.0) * f_k)
            w = (rp.te[k] - rp.t0) / (rp.t1 - rp.t0)
            t1_bar = t1_bar + moved * w
            t0_bar = t0_bar + moved * (1 - w)
    return xp.astype(t0_bar, t0.dtype), xp.astype(t1_bar, t1.dtype)


def _forward_states(rp: Replay, inputs: tuple[Any, ...]) -> dict[str, Any]:
    """Every logged step's start state and record (its interpolant), by row.

    ``y`` and ``f`` have shape ``(I + 1, B, n)`` (the last row after the last step); each
    record array ``(I, B, ...)``.
    """
    be, xp = rp.be, rp.be.xp
    leaves = tuple(inputs[3:])
    y, f, _ = rp.first(inputs)
    st = rp.method_for(leaves)
    record0 = st.record_rows(_attempt(rp, 0, y, f, inputs)[2])
    rows = rp.ts.shape[0]
    ys = xpx.at(xp.zeros((rows + 1, *y.shape), dtype=y.dtype, device=be.device), 0).set(y)
    fs = xpx.at(xp.zeros_like(ys), 0).set(f)
    records = tuple(xp.zeros((rows, *r.shape), dtype=r.dtype, device=be.device) for r in record0)

    def body(i: Any, carry: Any) -> Any:
        y, f, ys, fs, records = carry
        y_new, f_new, record = _attempt(rp, i, y, f, inputs)
        parts = rp.method_for(leaves).record_rows(record)
        records = tuple(xpx.at(b, i).set(r) for b, r in zip(records, parts, strict=True))
        return y_new, f_new, xpx.at(ys, i + 1).set(y_new), xpx.at(fs, i + 1).set(f_new), records

    _, _, ys, fs, records = be.fori_loop(0, rp.n_iter, body, (y, f, ys, fs, records))
    return {"y": ys, "f": fs, "records": records}


def _attempt(rp: Replay, i: Any, y: Any, f: Any, inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """Log row ``i`` from ``(y, f)``: the next state, its ``f`` and the step's record."""
    xp = rp.be.xp
    t_log, h_log = rp.ts[i, ...], rp.hs[i, ...]
    st = rp.method_for(tuple(inputs[3:]))
    step = st.attempt(t_log, y, f, h_log, fixed=True)
    took = (h_log != 0)[:, None]
    return xp.where(took, step.y_new, y), xp.where(took, step.f_new, f), step.record


def _dense(rp: Replay, states: dict[str, Any], t: Any, leaves: tuple[Any, ...]) -> Any:
    """``y(t)`` per row from the forward solve's own interpolant of the step holding ``t``."""
    xp = rp.be.xp
    n_log = rp.ts.shape[0]
    d = rp.direction
    index = xp.arange(n_log, device=rp.be.device)[:, None]
    live = (rp.hs != 0) & (index < rp.n_iter)
    inside = live & (d * (rp.ts - t[None, :]) <= 0)  # steps starting at or before t
    last = xp.max(xp.where(inside, index, 0), axis=0)  # (B,): the step holding t
    pick = index == last[None, :]  # (I, B) one-hot

    def row(buffer: Any) -> Any:  # buffer (I, B, ...) -> (B, ...) at each row's step
        mask = xp.reshape(pick, (*pick.shape, *([1] * (buffer.ndim - 2))))
        return xp.sum(xp.where(mask, buffer, 0), axis=0)

    ys = states["y"]
    t_i, h_i = row(rp.ts), row(rp.hs)
    y_i, y_j = row(ys[:-1, ...]), row(ys[1:, ...])
    st = rp.method_for(leaves)
    h = xp.where(h_i == 0, 1.0, h_i)
    theta = (t - t_i) / h
    if not st.has_dense:  # (rk4) cubic Hermite from the ends, not a straight line
        th, hc = theta[:, None], h_i[:, None]
        f_i, f_j = row(states["f"][:-1, ...]), row(states["f"][1:, ...])
        return (
            (1 + 2 * th) * (1 - th) ** 2 * y_i
            + th * (1 - th) ** 2 * hc * f_i
            + th**2 * (3 - 2 * th) * y_j
            + th**2 * (th - 1) * hc * f_j
        )
    record = st.from_rows(tuple(row(b) for b in states["records"]))
    return st.interpolate(theta[None, :], h_i, y_i, y_j, record)[0, ...]
