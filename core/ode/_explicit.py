"""One generic explicit Runge-Kutta stepper, and the eager loop that drives it.

The stepper is array-API code only. The eager loop runs it from Python with Python
floats for step control (low per-step overhead on numpy and torch). Compiled solves and
ensembles use the masked loop of ``anyxp.ode._masked`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from anyxp.backend import Backend
from anyxp.ode.tableaux import Tableau

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0

RUNNING, SUCCESS, MAX_STEPS, STEP_COLLAPSED, NONFINITE = -1, 0, 1, 2, 3
MESSAGES = {
    SUCCESS: "The solver reached the end of the interval.",
    MAX_STEPS: "The solver took max_steps steps without reaching the end of the interval; "
    "raise max_steps, or check whether the problem is stiff.",
    STEP_COLLAPSED: "The step size fell below the resolution of the time variable: the "
    "solution may blow up or the problem may be stiff or singular here.",
    NONFINITE: "The state became NaN or infinite; the solution may blow up here, or f "
    "returned a non-finite value.",
}


@dataclass(frozen=True)
class Span:
    """What both loops are asked: the interval, the tolerances, the step, the budget."""

    t0: float
    t1: float
    rtol: float
    atol: float
    h: float | None  # the first step (adaptive) or the step (fixed); None: choose one
    fixed: bool
    max_steps: int


@dataclass(frozen=True)
class Attempt:
    """One attempted step: what every method's ``attempt`` returns to the loops.

    ``err`` is the local error vector (``None`` for a fixed step); ``converged`` is
    ``None`` for a method without iterations, else whether they converged (an array for a
    batch); ``record`` is what the method's ``interpolate`` needs; ``counts`` adds to the
    solve's ``nfev``, ``njev`` and ``nlu``.
    """

    y_new: Any
    f_new: Any
    err: Any
    converged: Any
    record: Any
    counts: dict[str, Any]


def weighted_sum(weights: tuple[float, ...], ks: list[Any]) -> Any:
    """``Σ w_i k_i`` over the non-zero weights (``None`` when every weight is zero)."""
    out = None
    for w, k in zip(weights, ks, strict=True):
        if w != 0.0:
            out = w * k if out is None else out + w * k
    return out


def _col(v: Any, batched: bool) -> Any:
    """A per-trajectory scalar shaped to scale rows of a batch (or itself, unbatched)."""
    return v[:, None] if batched else v


@dataclass(frozen=True)
class Stepper:
    """An explicit tableau bound to a backend and a right-hand side on flat states.

    Unbatched, ``f(t, y)`` takes a Python float and a state of shape (n,); batched, ``t``
    has shape (B,) and ``y`` shape (B, n), and ``t`` and ``hs`` are per-row arrays.
    """

    be: Backend
    tab: Tableau
    f: Callable[[Any, Any], Any]
    dtype: Any
    batched: bool = False

    @property
    def order(self) -> int:
        return self.tab.error_order or self.tab.order

    @property
    def adaptive(self) -> bool:
        return self.tab.error_order is not None

    @property
    def has_dense(self) -> bool:
        return self.tab.dense is not None or self.tab.extra_dense is not None

    @cached_property
    def coefficients(self) -> tuple[Any, Any, Any, list[Any]]:
        """``b``, ``e``, the dense matrix and the rows of ``a`` as arrays of the state's
        dtype and device, made once per solve (not once per step)."""
        xp, be = self.be.xp, self.be
        b = xp.asarray(self.tab.b, dtype=self.dtype, device=be.device)
        e = xp.asarray(self.tab.e or [0.0] * self.tab.stages, dtype=self.dtype, device=be.device)
        dense = None
        if self.tab.dense is not None:
            dense = xp.asarray(self.tab.dense, dtype=self.dtype, device=be.device)
        a_rows = [xp.asarray(row, dtype=self.dtype, device=be.device) for row in self.tab.a]
        return b, e, dense, a_rows

    def error_norm(self, err: Any, y: Any, y_new: Any, rtol: float, atol: float) -> Any:
        """The scaled error of an attempt (per row of a batch): 1 is the tolerance.

        With a second estimate (``tab.e3``, DOP853) ``err`` is the pair of both, blended as
        Hairer's code does: ``|e5|² / sqrt(n (|e5|² + 0.01 |e3|²))``, which stays honest
        where the 5th-order estimate alone is accidentally small.
        """
        if self.tab.e3 is None:
            return error_norm(self.be.xp, err, y, y_new, rtol, atol)
        xp = self.be.xp
        scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
        e5 = xp.sum((err[0] / scale) ** 2, axis=-1)
        e3 = xp.sum((err[1] / scale) ** 2, axis=-1)
        denom = e5 + 0.01 * e3
        return e5 / xp.sqrt(xp.where(denom > 0, denom, 1.0) * y.shape[-1])

    def _error(self, hs: Any, ks: Any) -> Any:
        """The error estimate(s) of an attempt from its stages (a list, or stacked)."""
        tab = self.tab
        if isinstance(ks, list):
            e5 = hs * weighted_sum(tab.e or (), ks)
            return e5 if tab.e3 is None else (e5, hs * weighted_sum(tab.e3, ks))
        xp = self.be.xp
        e5 = hs * xp.tensordot(self.coefficients[1], ks, axes=1)
        if tab.e3 is None:
            return e5
        e3 = xp.asarray(tab.e3, dtype=self.dtype, device=self.be.device)
        return e5, hs * xp.tensordot(e3, ks, axes=1)

    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        """One step of signed size ``hs`` from ``(t, y)`` where ``f(t, y) = f0``."""
        tab = self.tab
        if self.batched:
            return self._attempt_batched(t, y, f0, hs, fixed=fixed)
        ks = [f0]
        for i in range(1, tab.stages):
            incr = weighted_sum(tab.a[i], ks)
            yi = y if incr is None else y + hs * incr
            ks.append(self.f(t + tab.c[i] * hs, yi))
        y_new = y + hs * weighted_sum(tab.b, ks)
        f_new = ks[-1] if tab.fsal else self.f(t + hs, y_new)
        y_new, f_new = self.be.materialize(y_new, f_new)
        err = None if fixed else self._error(hs, ks)
        nfev = tab.stages - 1 + (0 if tab.fsal else 1)
        return Attempt(y_new, f_new, err, None, (t, ks), {"nfev": nfev})

    def _attempt_batched(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        xp, tab = self.be.xp, self.tab
        b, _, _, a_rows = self.coefficients
        h = hs[:, None]
        ks = [f0]
        for i in range(1, tab.stages):
            incr = xp.tensordot(a_rows[i], xp.stack(ks), axes=1)  # (B, n)
            ks.append(self.f(t + tab.c[i] * hs, y + h * incr))
        K = xp.stack(ks)  # (s, B, n)
        y_new = y + h * xp.tensordot(b, K, axes=1)
        f_new = ks[-1] if tab.fsal else self.f(t + hs, y_new)
        err = None if fixed else self._error(h, K)
        nfev = tab.stages - 1 + (0 if tab.fsal else 1)
        return Attempt(y_new, f_new, err, None, (t, K), {"nfev": nfev})

    def interpolate(self, theta: Any, hs: Any, y: Any, y_new: Any, record: Any) -> Any:
        """States at fractions ``theta`` of a step: shape (m, n), or (m, B, n) batched.

        ``theta`` has shape (m,), or (m, B) batched (each trajectory its own step).
        """
        xp = self.be.xp
        t, K = record
        if self.tab.extra_dense is not None:
            return self._interpolate_extended(theta, hs, t, y, y_new, K)
        dense = self.coefficients[2]
        if dense is None:  # a method without an interpolant: linear
            return y[None, ...] + theta[..., None] * (y_new - y)[None, ...]
        q = dense.shape[1]
        powers = xp.stack([theta ** (j + 1) for j in range(q)], axis=-1)  # (m, [B,] q)
        weights = powers @ xp.permute_dims(dense, (1, 0))  # (m, [B,] s)
        if not self.batched:
            return y[None, :] + hs * (weights @ xp.stack(K))
        mix = xp.permute_dims(weights, (1, 0, 2)) @ xp.permute_dims(K, (1, 0, 2))  # (B, m, n)
        return y[None, :, :] + hs[None, :, None] * xp.permute_dims(mix, (1, 0, 2))

    def _interpolate_extended(self, theta: Any, hs: Any, t: Any, y: Any, y_new: Any, K: Any) -> Any:
        """DOP853's 7th-order interpolant: three more stages, then seven coefficients.

        The extra evaluations of ``f`` happen only for steps that are interpolated and are
        not counted in ``nfev``.
        """
        xp, tab = self.be.xp, self.tab
        ks = list(K) if isinstance(K, list) else [K[i, ...] for i in range(K.shape[0])]
        h = _col(hs, self.batched)
        for c, row in zip(tab.extra_c or (), tab.extra_a or (), strict=True):
            ks.append(self.f(t + c * hs, y + h * weighted_sum(row, ks)))
        dy, f_old, f_new = y_new - y, ks[0], ks[self.tab.stages - 1]
        coefficients = [dy, h * f_old - dy, 2 * dy - h * (f_new + f_old)]
        coefficients += [h * weighted_sum(row, ks) for row in tab.extra_dense or ()]
        x = theta[..., None]
        out = xp.zeros_like(x * y[None, ...])
        for i, coefficient in enumerate(reversed(coefficients)):
            out = (out + coefficient[None, ...]) * (x if i % 2 == 0 else 1 - x)
        return y[None, ...] + out


class Method(Protocol):
    """What the loops need of a method: explicit (:class:`Stepper`) or implicit."""

    be: Backend
    f: Callable[[Any, Any], Any]
    dtype: Any
    batched: bool

    @property
    def order(self) -> int: ...
    @property
    def adaptive(self) -> bool: ...
    @property
    def has_dense(self) -> bool: ...
    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt: ...
    def error_norm(self, err: Any, y: Any, y_new: Any, rtol: float, atol: float) -> Any: ...
    def interpolate(self, theta: Any, hs: Any, y: Any, y_new: Any, record: Any) -> Any: ...


def error_norm(xp: Any, err: Any, y: Any, y_new: Any, rtol: float, atol: float) -> Any:
    """The RMS norm of ``err`` scaled by ``atol + rtol·max(|y|, |y_new|)`` (per row)."""
    scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
    return xp.sqrt(xp.mean((err / scale) ** 2, axis=-1))


def initial_step(
    st: Method, t0: Any, y0: Any, f0: Any, direction: float, rtol: float, atol: float, order: int
) -> Any:
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4), on 0-d arrays."""
    xp = st.be.xp
    scale = atol + xp.abs(y0) * rtol
    d0 = xp.sqrt(xp.mean((y0 / scale) ** 2))
    d1 = xp.sqrt(xp.mean((f0 / scale) ** 2))
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = xp.where(
        small,
        xp.asarray(1e-6, dtype=st.dtype, device=st.be.device),
        0.01 * d0 / xp.where(d1 == 0, 1.0, d1),
    )
    y1 = y0 + direction * h0 * f0
    f1 = st.f(t0 + direction * h0, y1)
    d2 = xp.sqrt(xp.mean(((f1 - f0) / scale) ** 2)) / h0
    big = xp.maximum(d1, d2)
    h1 = xp.where(
        big <= 1e-15,
        xp.maximum(xp.asarray(1e-6, dtype=st.dtype, device=st.be.device), h0 * 1e-3),
        (0.01 / xp.where(big <= 1e-15, 1.0, big)) ** (1.0 / (order + 1)),
    )
    return xp.minimum(100 * h0, h1)


def step_factor(err: float, exponent: float) -> float:
    """The step-size factor after an attempt with scaled error ``err`` (I-controller)."""
    if err == 0.0:
        return MAX_FACTOR
    return min(MAX_FACTOR, max(MIN_FACTOR, SAFETY * err**exponent))


# ---------------------------------------------------------------------------------------
# The eager loop: Python floats for control, a list of accepted steps.
# ---------------------------------------------------------------------------------------
def run_eager(
    st: Method,
    span: Span,
    y0: Any,
    *,
    t_eval: np.ndarray | None,
    keep_dense: bool,
    progress: Any,
) -> dict[str, Any]:
    t0, t1, rtol, atol, h = span.t0, span.t1, span.rtol, span.atol, span.h
    xp = st.be.xp
    direction = 1.0 if t1 > t0 else -1.0
    f0 = st.f(t0, y0)
    counts = {"nfev": 1, "njev": 0, "nlu": 0}
    if h is None:
        h = float(
            initial_step(
                st,
                xp.asarray(t0, dtype=st.dtype, device=st.be.device),
                y0,
                f0,
                direction,
                rtol,
                atol,
                st.order,
            )
        )
        counts["nfev"] += 1
    ts, ys = ([t0], [y0]) if t_eval is None else ([], [])
    next_eval = 0
    if t_eval is not None:
        while next_eval < len(t_eval) and t_eval[next_eval] == t0:
            ts.append(t0)
            ys.append(y0)
            next_eval += 1
    # A too-long trial step may overflow; the loop notices and retries shorter, so numpy's
    # warnings about it would only alarm (on other libraries this changes nothing).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _eager_loop(
            st, span, y0, f0, h, counts, ts, ys, next_eval, t_eval, keep_dense, progress
        )


def _eager_loop(
    st: Method,
    span: Span,
    y0: Any,
    f0: Any,
    h: float,
    counts: dict[str, int],
    ts: list[Any],
    ys: list[Any],
    next_eval: int,
    t_eval: np.ndarray | None,
    keep_dense: bool,
    progress: Any,
) -> dict[str, Any]:
    t0, t1, rtol, atol, fixed = span.t0, span.t1, span.rtol, span.atol, span.fixed
    max_steps = span.max_steps
    xp = st.be.xp
    direction = 1.0 if t1 > t0 else -1.0
    exponent = -1.0 / (st.order + 1)
    t, y = t0, y0
    steps: list[tuple[float, float, Any, Any, Any]] = []
    accepted = rejected = 0
    rejected_last = nonfinite_last = False
    status = RUNNING
    length = abs(t1 - t0)
    while status == RUNNING:
        if accepted + rejected >= max_steps:
            status = MAX_STEPS
            break
        remaining = abs(t1 - t)
        h_try = min(h, remaining)
        if h_try <= 10 * np.spacing(abs(t)):  # t + h would round back to t
            status = NONFINITE if nonfinite_last else STEP_COLLAPSED
            break
        hs = direction * h_try
        step = st.attempt(t, y, f0, hs, fixed=fixed)
        for key, n in step.counts.items():
            counts[key] += int(n)
        y_new, f_new = step.y_new, step.f_new
        if step.converged is not None and not bool(step.converged):
            # The iterations did not converge: a shorter step makes them contract.
            h = h_try * 0.5
            rejected += 1
            rejected_last = True
            continue
        err = 0.0 if fixed else float(st.error_norm(step.err, y, y_new, rtol, atol))
        if not math.isfinite(err) or not bool(xp.all(xp.isfinite(y_new))):
            # Retry smaller: a too-long step can overflow where a shorter one does not.
            if fixed:
                status = NONFINITE
                break
            h = h_try * MIN_FACTOR
            rejected += 1
            rejected_last = nonfinite_last = True
            continue
        nonfinite_last = False
        if err <= 1.0:
            t_new = t1 if h_try == remaining else t + hs
            if t_eval is not None:
                stop = next_eval
                while stop < len(t_eval) and direction * (t_eval[stop] - t_new) <= 0:
                    stop += 1
                if stop > next_eval:
                    theta = xp.asarray(
                        (t_eval[next_eval:stop] - t) / hs, dtype=st.dtype, device=st.be.device
                    )
                    vals = st.interpolate(theta, hs, y, y_new, step.record)
                    ts.extend(t_eval[next_eval:stop].tolist())
                    ys.extend(vals[i, ...] for i in range(stop - next_eval))
                    next_eval = stop
            else:
                ts.append(t_new)
                ys.append(y_new)
            if keep_dense:
                steps.append((t, hs, y, y_new, step.record))
            if progress is not None:
                progress(abs(t_new - t0) / length)
            t, y, f0 = t_new, y_new, f_new
            accepted += 1
            if not fixed:
                factor = step_factor(err, exponent)
                h = h_try * (min(1.0, factor) if rejected_last else factor)
            rejected_last = False
            if t == t1:
                status = SUCCESS
        else:
            h = h_try * step_factor(err, exponent)
            rejected += 1
            rejected_last = True
    return {
        "t": ts,
        "y": ys,
        "status": status,
        "stats": {
            **counts,
            "steps": accepted + rejected,
            "accepted": accepted,
            "rejected": rejected,
        },
        "steps": steps,
    }
