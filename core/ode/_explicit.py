"""One generic explicit Runge-Kutta stepper, and the eager loop that drives it.

The stepper is array-API code only. The eager loop runs it from Python with Python
floats for step control (low per-step overhead on numpy and torch). Compiled solves and
ensembles use the masked loop of ``anyxp.ode._masked`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
class Stepper:
    """A tableau bound to a backend and a right-hand side on flat states."""

    be: Backend
    tab: Tableau
    f: Callable[[Any, Any], Any]
    dtype: Any

    def coefficients(self) -> tuple[Any, Any, Any]:
        """``b``, ``e`` and the dense matrix as arrays of the state's dtype and device."""
        xp, be = self.be.xp, self.be
        b = xp.asarray(self.tab.b, dtype=self.dtype, device=be.device)
        e = xp.asarray(self.tab.e or [0.0] * self.tab.stages, dtype=self.dtype, device=be.device)
        dense = None
        if self.tab.dense is not None:
            dense = xp.asarray(self.tab.dense, dtype=self.dtype, device=be.device)
        return b, e, dense

    def stages(self, t: Any, y: Any, h: Any, f0: Any) -> list[Any]:
        """The stage derivatives ``k_i`` of one step of signed size ``h``."""
        tab = self.tab
        ks = [f0]
        for i in range(1, tab.stages):
            incr = None
            for aij, kj in zip(tab.a[i], ks, strict=False):
                if aij != 0.0:
                    term = aij * kj
                    incr = term if incr is None else incr + term
            yi = y if incr is None else y + h * incr
            ks.append(self.f(t + tab.c[i] * h, yi))
        return ks

    def combine(self, weights: tuple[float, ...], ks: list[Any]) -> Any:
        """``Σ w_i k_i`` over the non-zero weights."""
        out = None
        for w, k in zip(weights, ks, strict=True):
            if w != 0.0:
                out = w * k if out is None else out + w * k
        return out

    def error_norm(self, err: Any, y: Any, y_new: Any, rtol: float, atol: float) -> Any:
        """The RMS norm of ``err`` scaled by ``atol + rtol·max(|y|, |y_new|)``."""
        xp = self.be.xp
        scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
        return xp.sqrt(xp.mean((err / scale) ** 2))

    def interpolate(self, theta: Any, y0: Any, h: Any, K: Any, dense: Any) -> Any:
        """States at fractions ``theta`` (shape (m,)) of a step: shape (m, n)."""
        xp = self.be.xp
        powers = xp.stack([theta ** (j + 1) for j in range(dense.shape[1])], axis=1)  # (m, q)
        weights = powers @ xp.permute_dims(dense, (1, 0))  # (m, s)
        return y0[None, :] + h * (weights @ K)


def initial_step(
    st: Stepper, t0: Any, y0: Any, f0: Any, direction: float, rtol: float, atol: float, order: int
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
    st: Stepper,
    span: Span,
    y0: Any,
    *,
    t_eval: np.ndarray | None,
    keep_dense: bool,
    progress: Any,
) -> dict[str, Any]:
    t0, t1, rtol, atol, h, fixed = span.t0, span.t1, span.rtol, span.atol, span.h, span.fixed
    max_steps = span.max_steps
    xp = st.be.xp
    tab = st.tab
    direction = 1.0 if t1 > t0 else -1.0
    dense = st.coefficients()[2]
    f0 = st.f(t0, y0)
    nfev = 1
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
                tab.error_order or tab.order,
            )
        )
        nfev += 1
    exponent = -1.0 / ((tab.error_order or tab.order) + 1)
    t, y = t0, y0
    ts, ys = ([t0], [y0]) if t_eval is None else ([], [])
    steps: list[tuple[float, float, Any, Any]] = []
    next_eval = 0
    if t_eval is not None:
        while next_eval < len(t_eval) and t_eval[next_eval] == t0:
            ts.append(t0)
            ys.append(y0)
            next_eval += 1
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
        if h_try <= 10 * np.spacing(max(abs(t), length)):
            status = NONFINITE if nonfinite_last else STEP_COLLAPSED
            break
        hs = direction * h_try
        ks = st.stages(t, y, hs, f0)
        nfev += tab.stages - 1
        y_new = y + hs * st.combine(tab.b, ks)
        if tab.fsal:
            f_new = ks[-1]
        else:
            f_new = st.f(t + hs, y_new)
            nfev += 1
        y_new, f_new = st.be.materialize(y_new, f_new)
        if fixed:
            err = 0.0
        else:
            err = float(st.error_norm(hs * st.combine(tab.e or (), ks), y, y_new, rtol, atol))
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
                    if dense is None:  # a method without an interpolant: linear
                        vals = y[None, :] + theta[:, None] * (y_new - y)[None, :]
                    else:
                        vals = st.interpolate(theta, y, hs, xp.stack(ks), dense)
                    ts.extend(t_eval[next_eval:stop].tolist())
                    ys.extend(vals[i, ...] for i in range(stop - next_eval))
                    next_eval = stop
            else:
                ts.append(t_new)
                ys.append(y_new)
            if keep_dense:
                steps.append((t, hs, y, xp.stack(ks)))
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
            "nfev": nfev,
            "steps": accepted + rejected,
            "accepted": accepted,
            "rejected": rejected,
        },
        "steps": steps,
        "dense": dense,
    }
