"""The masked loop: many trajectories at once, each with its own step size.

Every trajectory carries its own ``t``, ``h``, error, accept/reject decision and status;
the loop runs until none is running, and a finished trajectory's updates are masked out.
It is array code inside ``be.while_loop``: a Python loop of whole-batch array operations on
eager backends, one traced program on JAX (where it also serves single solves, as a batch
of one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from anyxp.ode._events import Event, crossed, locate
from anyxp.ode._explicit import (
    ERR_FLOOR,
    MAX_FACTOR,
    MAX_STEPS,
    MIN_FACTOR,
    NONFINITE,
    NONSTIFF_STEPS,
    NSTIFF,
    RUNNING,
    SAFETY,
    STEP_COLLAPSED,
    STIFF,
    STIFF_STEPS,
    SUCCESS,
    TERMINATED,
    Method,
    Span,
    initial_step,
    kept_fit,
    time_dtype,
)


class StepLog:
    """The accepted steps of every iteration: per row its ``t`` and ``h`` (0: no step).

    A compiled loop writes into buffers of ``max_steps`` rows (its state has fixed
    shapes); an eager loop appends to lists. Sensitivities replay the log. With
    ``keep``, each iteration's starting ``y`` and ``f`` are kept too (the checkpoints of a
    reverse sweep, which then need no replay to find them), while they fit in
    ``KEPT_BYTES``.
    """

    def __init__(self, st: Method, span: Span, batch: int, dtype: Any, keep: bool = False) -> None:
        self.be, self.compiled = st.be, bool(getattr(st.be.control, "compiled", False))
        self.shape, self.dtype = (span.max_steps, batch), dtype
        self.ts: list[Any] = []
        self.hs: list[Any] = []
        self.keep = keep
        self.states: list[tuple[Any, Any]] | None = [] if keep else None

    def init(self, y0: Any) -> Any:
        xp, dev = self.be.xp, self.be.device
        if self.keep and not kept_fit(self.shape[0], y0):
            self.keep, self.states = False, None  # too large to keep every iteration's
        if not self.compiled:
            return None
        zeros = xp.zeros(self.shape, dtype=self.dtype, device=dev)
        core = (zeros, xp.zeros_like(zeros), xp.asarray(0, dtype=xp.int32, device=dev))
        if not self.keep:
            return core
        kept = xp.zeros((self.shape[0], *y0.shape), dtype=y0.dtype, device=dev)
        return (*core, kept, xp.zeros_like(kept))

    def record(self, state: Any, t: Any, h: Any, y: Any, f: Any) -> Any:
        if not self.compiled:
            self.ts.append(t)
            self.hs.append(h)
            if self.states is not None:
                self.states.append((y, f))
            return None
        import array_api_extra as xpx

        t_buf, h_buf, i = state[:3]
        core = (xpx.at(t_buf, i).set(t), xpx.at(h_buf, i).set(h), i + 1)
        if not self.keep:
            return core
        return (*core, xpx.at(state[3], i).set(y), xpx.at(state[4], i).set(f))

    def result(self, state: Any) -> tuple[Any, Any, Any]:
        """``(ts, hs, iterations)``: the logs, each of shape (rows, B), and how many of
        their rows were written (a compiled loop's buffers have ``max_steps`` rows)."""
        if self.compiled:
            return state[:3]  # type: ignore[no-any-return]
        xp, dev = self.be.xp, self.be.device
        if not self.ts:
            empty = xp.zeros((0, self.shape[1]), dtype=self.dtype, device=dev)
            return empty, empty, 0
        return xp.stack(self.ts), xp.stack(self.hs), len(self.ts)

    def kept(self, state: Any) -> Any:
        """Each iteration's starting ``(y, f)``: two ``(rows, B, n)`` buffers (compiled) or
        a list of pairs (eager); ``None`` when not kept."""
        if self.compiled:
            return (state[3], state[4]) if self.keep else None
        return self.states


def run_masked(
    st: Method,
    span: Span,
    y0: Any,
    *,
    t_eval: np.ndarray,
    log: bool = False,
    events: tuple[tuple[Event, Any], ...] = (),
    progress: Callable[[float], None] | None = None,
    keep_states: bool = False,
) -> dict[str, Any]:
    """Integrate a batch ``y0`` of shape (B, n); store the states at ``t_eval``.

    ``st`` is a batched method: its ``f`` takes ``t`` of shape (B,) (each trajectory's own
    time) and ``y`` of shape (B, n). Returns ``t`` (m,), ``y`` (m, B, n), per-trajectory
    ``status`` and counts. A requested time a trajectory never reaches holds NaN. With
    ``log=True`` also ``log``: the accepted steps, see :class:`StepLog`. ``events`` pairs
    each :class:`Event` with its function on the batch (``g(t, y) -> (B,)``); the result
    then has ``events``: each one's first time and state per row (NaN: none) and count.
    ``progress(fraction)`` (eager backends only: it reads values) is told, before each
    step, how far through the interval the slowest running trajectory is. With
    ``keep_states`` (and ``log``), ``kept``: see :meth:`StepLog.kept`.
    """
    be, xp = st.be, st.be.xp
    dt, dev = st.dtype, be.device
    tdt = time_dtype(xp, dt)
    direction = span.direction
    batch, n = y0.shape
    # The interval's ends may be arrays (a backward adjoint segment inside jit).
    T0 = xp.asarray(span.t0, dtype=tdt, device=dev)
    T1 = xp.asarray(span.t1, dtype=tdt, device=dev)
    te = xp.asarray(t_eval, dtype=tdt, device=dev)
    t = xp.zeros((batch,), dtype=tdt, device=dev) + T0
    f0 = st.f(t, y0)
    if span.h is None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # f0 may be NaN
            h = initial_step(st, t, y0, f0, span)
        nfev0 = 2
    else:
        h = xp.full((batch,), span.h, dtype=tdt, device=dev)
        nfev0 = 1
    exponent = -1.0 / (st.order + 1)
    ints = xp.zeros((batch,), dtype=xp.int32, device=dev)
    at_start = (te == T0)[:, None, None]
    out = xp.where(
        at_start, y0[None, :, :], xp.full((te.shape[0], batch, n), xp.nan, dtype=dt, device=dev)
    )
    eps = float(xp.finfo(tdt).eps)
    tiny = 10 * eps  # relative to |t|: below it, t + h rounds back to t
    resolution = tiny * xp.maximum(xp.abs(T0), xp.abs(T1))  # as Span.resolution
    bound = None if span.fixed else st.stiffness_bound

    def const(v: int) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=dev)

    counts0 = {"nfev": const(nfev0), "njev": const(0), "nlu": const(0)}
    # f(t0, y0) already NaN or infinite: that trajectory ends at once.
    status0 = xp.where(xp.all(xp.isfinite(f0), axis=-1), const(RUNNING), const(NONFINITE))
    stiffness0 = (ints, ints)  # Hairer's counts of stiff and of non-stiff tested steps
    steps = StepLog(st, span, batch, tdt, keep=keep_states) if log else None
    log0 = None if steps is None else steps.init(y0)
    watch = _MaskedEvents(st, events, tdt) if events else None
    events0 = None if watch is None else watch.init(t, y0)
    # The last accepted step's size and error per row (size 0: none yet), for the
    # predictive controller of the stiff methods (see step_factor).
    predictive = st.predictive and not span.fixed
    accepted0 = (xp.zeros_like(h), xp.ones_like(h)) if predictive else None
    state0: tuple[Any, ...] = (t, y0, f0, h, ints, ints, counts0, status0, ints == 1, out)
    state0 = (*state0, stiffness0, log0, events0, accepted0)

    def cond(state: Any) -> Any:
        running = state[7] == RUNNING
        if progress is not None:
            reached = xp.abs(xp.where(running, state[0], T1) - T0)
            progress(float(xp.min(reached)) / max(abs(span.t1 - span.t0), tiny))
        return xp.any(running)

    def body(state: Any) -> Any:
        t, y, f0, h, acc, rej, counts, status, rej_last, out, stiffness, log_state, ev, accepted = (
            state
        )
        running = status == RUNNING
        remaining = xp.abs(T1 - t)
        h_try = xp.minimum(h, span.max_step)
        last = h_try >= remaining - resolution  # lands on t1 exactly (see run_eager)
        h_try = xp.where(last, remaining, h_try)
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
        t_stop, ended = t_new, xp.zeros_like(ok)
        if watch is not None:  # events: a terminal one ends the row inside the step
            ev, t_stop, ended = watch.after_step(ev, ok, t, hs, t_new, y, y_new, step.record)
        # Store the requested times each accepted step covers, by interpolation.
        # A finished trajectory tries a step of 0: divide by 1 instead (it is masked out).
        theta = (te[:, None] - t[None, :]) / xp.where(hs == 0, 1.0, hs)[None, :]  # (m, B)
        covered = ok[None, :] & (direction * (te[:, None] - t[None, :]) > 0)
        covered = covered & (direction * (te[:, None] - t_stop[None, :]) <= 0)
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
        raw = SAFETY * safe**exponent
        if accepted is not None:  # as step_factor with `previous`, on accepted steps
            h_old, err_old = accepted
            seen = ok & (h_old > 0)
            ratio = (h_try / xp.where(seen, h_old, 1.0)) * (err_old / safe) ** -exponent
            raw = xp.where(seen, raw * xp.minimum(ratio, 1.0), raw)
            accepted = (
                xp.where(ok, h_try, h_old),
                xp.where(ok, xp.maximum(err, ERR_FLOOR), err_old),
            )
        factor = xp.where(err == 0, MAX_FACTOR, xp.clip(raw, MIN_FACTOR, MAX_FACTOR))
        factor = xp.where(finite, factor, MIN_FACTOR)
        factor = xp.where(converged | ~running, factor, 0.5)
        factor = xp.where(ok & rej_last, xp.minimum(factor, 1.0), factor)
        h_next = h if span.fixed else xp.where(running, h_try * factor, h)
        acc = acc + xp.astype(ok, acc.dtype)
        rej = rej + xp.astype(running & ~ok, rej.dtype)
        status = xp.where(ok & last, const(SUCCESS), status)
        status = xp.where(ended, const(TERMINATED), status)
        if bound is not None:
            stiffness = _stiffness(st, bound, ok, acc, stiffness, (hs, y, y_new, f_new, step))
            stiff = (status == RUNNING) & (stiffness[0] >= STIFF_STEPS)
            status = xp.where(stiff, const(STIFF), status)
        if steps is not None:
            log_state = steps.record(log_state, t, xp.where(ok, hs, 0.0), y, f0)
        t = xp.where(ok, t_new, t)
        y = xp.where(ok[:, None], y_new, y)
        f0 = xp.where(ok[:, None], f_new, f0)
        still = status == RUNNING
        status = xp.where(still & (acc + rej >= span.max_steps), const(MAX_STEPS), status)
        collapsed = (status == RUNNING) & (h_next <= tiny * xp.abs(t))
        status = xp.where(collapsed & finite, const(STEP_COLLAPSED), status)
        status = xp.where(collapsed & ~finite, const(NONFINITE), status)
        if span.fixed:
            status = xp.where((status == RUNNING) & ~finite, const(NONFINITE), status)
        state = (t, y, f0, h_next, acc, rej, counts, status, running & ~ok, out, stiffness)
        return (*state, log_state, ev, accepted)

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see run_eager
        state = be.while_loop(cond, body, state0)
    _, _, _, _, acc, rej, counts, status, _, out, _, log_state, ev, _ = state
    res = {
        "t": te,
        "y": out,
        "status": status,
        "stats": {**counts, "steps": acc + rej, "accepted": acc, "rejected": rej},
    }
    if steps is not None:
        res["log"] = steps.result(log_state)
        kept = steps.kept(log_state)
        if kept is not None:
            res["kept"] = kept
    if watch is not None:
        res["events"] = ev[1:]  # first times (K, B), first states (K, B, n), counts (K, B)
    return res


class _MaskedEvents:
    """Each event's first occurrence per row, its count, and terminal ends (batched)."""

    def __init__(self, st: Method, events: tuple[tuple[Event, Any], ...], tdt: Any) -> None:
        self.st, self.events, self.tdt = st, events, tdt

    def init(self, t: Any, y0: Any) -> Any:
        xp, dev = self.st.be.xp, self.st.be.device
        k, (batch, n) = len(self.events), y0.shape
        g0 = xp.stack([g(t, y0) for _, g in self.events])
        t_first = xp.full((k, batch), xp.nan, dtype=self.tdt, device=dev)
        y_first = xp.full((k, batch, n), xp.nan, dtype=y0.dtype, device=dev)
        count = xp.zeros((k, batch), dtype=xp.int32, device=dev)
        return g0, t_first, y_first, count

    def after_step(
        self, ev: Any, ok: Any, t: Any, hs: Any, t_new: Any, y: Any, y_new: Any, record: Any
    ) -> tuple[Any, Any, Any]:
        """The events inside each accepted step: ``(state, where rows stop, rows ended)``."""
        st, be = self.st, self.st.be
        xp = be.xp
        g_old, t_first, y_first, count = ev
        g_new = xp.stack([g(t_new, y_new) for _, g in self.events])
        eps = float(xp.finfo(self.tdt).eps)
        h_safe = xp.where(hs == 0, 1.0, hs)
        tol = 4 * eps * (xp.abs(t) + xp.abs(hs)) / xp.abs(h_safe)
        t_stop, ended = t_new, xp.zeros_like(ok)
        firsts, states, counts = [], [], []
        for k, (event, g) in enumerate(self.events):
            hit = ok & crossed(xp, g_old[k], g_new[k], event.direction)

            def at(theta: Any, g: Any = g) -> Any:
                return g(t + theta * hs, st.interpolate(theta[None, :], hs, y, y_new, record)[0])

            theta = be.cond(
                xp.any(hit),
                lambda at=at, hit=hit, k=k: locate(be, at, g_old[k], g_new[k], hit, tol),
                lambda: xp.ones_like(t),
            )
            t_event = t + theta * hs
            y_event = st.interpolate(theta[None, :], hs, y, y_new, record)[0]
            first = hit & (count[k] == 0)
            firsts.append(xp.where(first, t_event, t_first[k]))
            states.append(xp.where(first[:, None], y_event, y_first[k]))
            counts.append(count[k] + xp.astype(hit, count.dtype))
            if event.terminal:
                ends = hit & (counts[-1] == event.terminal)
                earlier = ends & (xp.abs(t_event - t) < xp.abs(t_stop - t))
                t_stop = xp.where(earlier, t_event, t_stop)
                ended = ended | ends
        g_old = xp.where(ok[None, :], g_new, g_old)
        state = (g_old, xp.stack(firsts), xp.stack(states), xp.stack(counts))
        return state, t_stop, ended


def _stiffness(
    st: Method, bound: float, ok: Any, acc: Any, counts: tuple[Any, Any], step: tuple[Any, ...]
) -> tuple[Any, Any]:
    """Hairer's stiffness bookkeeping (see ``StiffnessTest``) for every row at once."""
    be, xp = st.be, st.be.xp
    stiff, nonstiff = counts
    due = ok & ((acc % NSTIFF == 0) | (stiff > 0))
    hs, y, y_new, f_new, attempt = step
    h_lambda = be.cond(
        xp.any(due),
        lambda: st.stiffness(hs, y, y_new, f_new, attempt.record),
        lambda: xp.zeros_like(hs),
    )
    is_stiff = due & (h_lambda > bound)
    zero = xp.zeros_like(stiff)
    stiff = xp.where(is_stiff, stiff + 1, stiff)
    nonstiff = xp.where(is_stiff, zero, xp.where(due, nonstiff + 1, nonstiff))
    stiff = xp.where(due & ~is_stiff & (nonstiff == NONSTIFF_STEPS), zero, stiff)
    return stiff, nonstiff
