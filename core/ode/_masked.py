"""The masked loop: many trajectories at once, each with its own step size.

Every trajectory carries its own ``t``, ``h``, error, accept/reject decision and status;
the loop runs until none is running, and a finished trajectory's updates are masked out.
It is array code inside ``be.while_loop``: a Python loop of whole-batch array operations on
eager backends, one traced program on JAX (where it also serves single solves, as a batch
of one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anyxp.ode._explicit import (
    MAX_FACTOR,
    MAX_STEPS,
    MIN_FACTOR,
    NONFINITE,
    RUNNING,
    SAFETY,
    STEP_COLLAPSED,
    SUCCESS,
    Method,
    Span,
)


def _initial_steps(
    st: Method, t0: Any, y0: Any, f0: Any, direction: float, span: Span, order: int
) -> Any:
    """Hairer's starting step for each row of a batch (rows are trajectories)."""
    xp = st.be.xp
    scale = span.atol + xp.abs(y0) * span.rtol
    d0 = xp.sqrt(xp.mean((y0 / scale) ** 2, axis=-1))
    d1 = xp.sqrt(xp.mean((f0 / scale) ** 2, axis=-1))
    tiny = xp.full_like(d0, 1e-6)
    h0 = xp.where((d0 < 1e-5) | (d1 < 1e-5), tiny, 0.01 * d0 / xp.where(d1 == 0, 1.0, d1))
    f1 = st.f(t0 + direction * h0, y0 + direction * h0[:, None] * f0)
    d2 = xp.sqrt(xp.mean(((f1 - f0) / scale) ** 2, axis=-1)) / h0
    big = xp.maximum(d1, d2)
    h1 = xp.where(
        big <= 1e-15,
        xp.maximum(tiny, h0 * 1e-3),
        (0.01 / xp.where(big <= 1e-15, 1.0, big)) ** (1.0 / (order + 1)),
    )
    return xp.minimum(100 * h0, h1)


def run_masked(st: Method, span: Span, y0: Any, *, t_eval: np.ndarray) -> dict[str, Any]:
    """Integrate a batch ``y0`` of shape (B, n); store the states at ``t_eval``.

    ``st`` is a batched method: its ``f`` takes ``t`` of shape (B,) (each trajectory's own
    time) and ``y`` of shape (B, n). Returns ``t`` (m,), ``y`` (m, B, n), per-trajectory
    ``status`` and counts.
    """
    be, xp = st.be, st.be.xp
    dt, dev = st.dtype, be.device
    direction = 1.0 if span.t1 > span.t0 else -1.0
    batch, n = y0.shape
    T1 = xp.asarray(span.t1, dtype=dt, device=dev)
    te = xp.asarray(t_eval, dtype=dt, device=dev)
    t = xp.full((batch,), span.t0, dtype=dt, device=dev)
    f0 = st.f(t, y0)
    if span.h is None:
        h = _initial_steps(st, t, y0, f0, direction, span, st.order)
        nfev0 = 2
    else:
        h = xp.full((batch,), span.h, dtype=dt, device=dev)
        nfev0 = 1
    exponent = -1.0 / (st.order + 1)
    ints = xp.zeros((batch,), dtype=xp.int32, device=dev)
    at_start = (te == span.t0)[:, None, None]
    out = xp.where(
        at_start, y0[None, :, :], xp.zeros((te.shape[0], batch, n), dtype=dt, device=dev)
    )
    eps = float(np.finfo(np.dtype(str(dt).rsplit(".", 1)[-1])).eps)
    tiny = 10 * eps  # relative to |t|: below it, t + h rounds back to t

    def const(v: int) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=dev)

    counts0 = {"nfev": const(nfev0), "njev": const(0), "nlu": const(0)}
    state0 = (t, y0, f0, h, ints, ints, counts0, ints + RUNNING, ints == 1, out)

    def cond(state: Any) -> Any:
        return xp.any(state[7] == RUNNING)

    def body(state: Any) -> Any:
        t, y, f0, h, acc, rej, counts, status, rej_last, out = state
        running = status == RUNNING
        remaining = xp.abs(T1 - t)
        last = h >= remaining
        h_try = xp.where(last, remaining, h)
        hs = direction * h_try
        step = st.attempt(t, y, f0, hs, fixed=span.fixed)
        y_new, f_new = step.y_new, step.f_new
        counts = {k: v + step.counts.get(k, 0) for k, v in counts.items()}
        if span.fixed:
            err = xp.zeros_like(h)
        else:
            err = st.error_norm(step.err, y, y_new, span.rtol, span.atol)
        converged = running if step.converged is None else running & step.converged
        finite = xp.isfinite(err) & xp.all(xp.isfinite(y_new), axis=-1)
        finite = finite | ~converged  # an unconverged attempt is not a blow-up
        ok = converged & finite & (err <= 1.0)
        t_new = xp.where(last, T1, t + hs)
        # Store the requested times each accepted step covers, by interpolation.
        # A finished trajectory tries a step of 0: divide by 1 instead (it is masked out).
        theta = (te[:, None] - t[None, :]) / xp.where(hs == 0, 1.0, hs)[None, :]  # (m, B)
        covered = ok[None, :] & (direction * (te[:, None] - t[None, :]) > 0)
        covered = covered & (direction * (te[:, None] - t_new[None, :]) <= 0)
        # Most steps cover no requested time: interpolate (DOP853: three more evaluations
        # of f) only when one does.
        out = be.cond(
            xp.any(covered),
            lambda: xp.where(
                covered[:, :, None], st.interpolate(theta, hs, y, y_new, step.record), out
            ),
            lambda: out,
        )
        safe = xp.where(finite & (err > 0), err, 1.0)
        factor = xp.where(
            err == 0, MAX_FACTOR, xp.clip(SAFETY * safe**exponent, MIN_FACTOR, MAX_FACTOR)
        )
        factor = xp.where(finite, factor, MIN_FACTOR)
        factor = xp.where(converged | ~running, factor, 0.5)
        factor = xp.where(ok & rej_last, xp.minimum(factor, 1.0), factor)
        h_next = h if span.fixed else xp.where(running, h_try * factor, h)
        t = xp.where(ok, t_new, t)
        y = xp.where(ok[:, None], y_new, y)
        f0 = xp.where(ok[:, None], f_new, f0)
        acc = acc + xp.astype(ok, acc.dtype)
        rej = rej + xp.astype(running & ~ok, rej.dtype)
        status = xp.where(ok & last, const(SUCCESS), status)
        still = status == RUNNING
        status = xp.where(still & (acc + rej >= span.max_steps), const(MAX_STEPS), status)
        collapsed = (status == RUNNING) & (h_next <= tiny * xp.abs(t))
        status = xp.where(collapsed & finite, const(STEP_COLLAPSED), status)
        status = xp.where(collapsed & ~finite, const(NONFINITE), status)
        if span.fixed:
            status = xp.where((status == RUNNING) & ~finite, const(NONFINITE), status)
        return (t, y, f0, h_next, acc, rej, counts, status, running & ~ok, out)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see run_eager
        state = be.while_loop(cond, body, state0)
    _, _, _, _, acc, rej, counts, status, _, out = state
    return {
        "t": te,
        "y": out,
        "status": status,
        "stats": {**counts, "steps": acc + rej, "accepted": acc, "rejected": rej},
    }
