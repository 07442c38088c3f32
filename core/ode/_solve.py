"""``anyxp.ode.solve``: the entry point, input checks, and the solution object."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.ode import _explicit
from anyxp.ode._implicit import ESDIRK, Rosenbrock, jacobian_source
from anyxp.ode._masked import run_masked
from anyxp.ode.tableaux import STIFF_TABLEAUX, TABLEAUX, ESDIRKTableau, Tableau

__all__ = ["Solution", "solve"]

METHODS = (*TABLEAUX, *STIFF_TABLEAUX)


@dataclass(frozen=True)
class Solution:
    """The result of :func:`solve`.

    ``t`` has shape ``(m,)`` and ``y`` shape ``(m, *y0.shape)``: ``y[i]`` is the state at
    ``t[i]``, both arrays of the solve's backend. ``status`` is 0 on success, 1 when
    ``max_steps`` ran out, 2 when the step size collapsed, 3 when the state became
    non-finite; ``message`` says the same in words. ``stats`` counts ``nfev``, ``njev``,
    ``nlu``, ``steps``, ``accepted`` and ``rejected``. With ``dense_output=True``,
    ``sol(t)`` evaluates the solution anywhere in the interval.
    """

    t: Any
    y: Any
    status: int
    message: str
    stats: dict[str, int]
    method: str
    backend: Backend = field(repr=False)
    _dense: Callable[[Any], Any] | None = field(default=None, repr=False)

    @property
    def success(self) -> bool:
        """Whether the solver reached the end of the interval."""
        return self.status == 0

    def __call__(self, t: Any) -> Any:
        """The interpolated solution at time(s) ``t`` (needs ``dense_output=True``)."""
        if self._dense is None:
            raise ValueError("this solution has no interpolant: solve with dense_output=True")
        return self._dense(t)


def _check_method(method: str, rtol: float, atol: float, dt: float | None) -> tuple[Any, bool]:
    """The tableau, and whether the step is fixed; a clear error for bad settings."""
    tab: Any = TABLEAUX.get(method) or STIFF_TABLEAUX.get(method)
    if tab is None:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    fixed = tab.error_order is None or dt is not None  # dt= makes any method fixed-step
    if not fixed and not (rtol > 0 and atol >= 0 and math.isfinite(rtol) and math.isfinite(atol)):
        raise ValueError(f"need rtol > 0 and atol >= 0, got rtol={rtol}, atol={atol}")
    if fixed and (dt is None or not dt > 0):
        raise ValueError(f"method {method!r} takes a fixed step: pass dt > 0")
    return tab, fixed


def _check_span(t_span: Sequence[float]) -> tuple[float, float]:
    try:
        t0, t1 = (float(v) for v in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be a pair (t0, t1) of numbers, got {t_span!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"t_span must be two different finite times, got ({t0}, {t1})")
    return t0, t1


def _check_t_eval(t_eval: Any, t0: float, t1: float) -> np.ndarray:
    te = np.asarray(t_eval, dtype=np.float64).reshape(-1)
    lo, hi = min(t0, t1), max(t0, t1)
    if te.size == 0 or np.any(~np.isfinite(te)) or te.min() < lo or te.max() > hi:
        raise ValueError(f"t_eval must be finite times inside t_span [{lo}, {hi}]")
    steps = np.diff(te) * (1.0 if t1 > t0 else -1.0)
    if np.any(steps < 0):
        raise ValueError("t_eval must be sorted in the direction of integration")
    return te


def make_method(
    be: Backend,
    tab: Any,
    f: Callable[[Any, Any], Any],
    dtype: Any,
    *,
    batched: bool,
    jac: Callable[[Any, Any], Any] | None,
    rtol: float,
    atol: float,
) -> _explicit.Method:
    """The stepper for a tableau: explicit Runge-Kutta, Rosenbrock or ESDIRK."""
    if isinstance(tab, Tableau):
        return _explicit.Stepper(be, tab, f, dtype, batched)
    jac_fn, _ = jacobian_source(be, f, jac, dtype, batched=batched, atol=atol)
    if isinstance(tab, ESDIRKTableau):
        return ESDIRK(
            be=be, f=f, dtype=dtype, jac=jac_fn, batched=batched, tab=tab, rtol=rtol, atol=atol
        )
    return Rosenbrock(be=be, f=f, dtype=dtype, jac=jac_fn, batched=batched, tab=tab)


def _check_jac(jac_value: Any, name: str, n: int, batch: int | None) -> None:
    shape = (n, n) if batch is None else (batch, n, n)
    if tuple(getattr(jac_value, "shape", ())) != shape:
        raise ValueError(
            f"jac returned shape {tuple(getattr(jac_value, 'shape', ()))}, expected {shape}: "
            f"the Jacobian ∂f/∂y of the flattened state ({name})"
        )


def _concrete(check: Callable[[], Any]) -> bool | None:
    """The value of a check on arrays, or ``None`` when they are being traced (jit)."""
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - tracers refuse bool() with library-specific errors
        return None


def solve(
    f: Callable[..., Any],
    t_span: Sequence[float],
    y0: Any,
    *,
    method: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    t_eval: Any = None,
    args: tuple[Any, ...] = (),
    dense_output: bool = False,
    max_steps: int = 100_000,
    first_step: float | None = None,
    jac: Callable[..., Any] | None = None,
    dt: float | None = None,
    backend: str | Backend | None = None,
    progress: bool = False,
) -> Solution:
    """Solve the initial value problem ``y' = f(t, y, *args)``, ``y(t0) = y0``.

    Parameters
    ----------
    f
        The right-hand side; returns an array shaped like ``y`` of the same library.
    t_span
        ``(t0, t1)``; ``t1 < t0`` integrates backwards.
    y0
        The initial state, an array of any backend (or a list: then ``backend`` decides).
    method
        Non-stiff: ``"tsit5"`` (default), ``"dopri5"`` (both adaptive, 5th order, with
        dense output), ``"dop853"`` (adaptive, 8th order: for tight tolerances) or
        ``"rk4"`` (fixed step ``dt``). Stiff: ``"rodas5p"`` (Rosenbrock,
        L-stable, 5th order: the first choice for stiff problems of moderate size) or
        ``"kvaerno5"`` (ESDIRK, L-stable, 5th order, Newton iterations).
    rtol, atol
        Relative and absolute tolerances of the local error.
    t_eval
        Times at which to store the solution (interpolated). Without it the eager
        backends store every step; a compiled backend stores ``t0`` and ``t1``.
    args
        Extra arguments passed to ``f``.
    dense_output
        Keep an interpolant: ``sol(t)`` (eager backends).
    max_steps
        The most steps (accepted and rejected) before giving up with status 1.
    first_step, dt
        The first step of an adaptive method; ``dt`` fixes the step (any method; ``rk4``
        needs it).
    jac
        For the stiff methods: ``jac(t, y, *args)`` returns the Jacobian ``∂f/∂y`` of shape
        ``(n, n)`` (``n = y0.size``). Without it the Jacobian comes from the backend's
        automatic differentiation where it has one (jax, torch), else from finite
        differences (``n`` evaluations of ``f``, counted in ``stats["nfev"]``).
    backend
        The backend; default inferred from ``y0``.
    progress
        Show a progress bar (eager backends).

    Examples
    --------
    >>> import anyxp
    >>> from anyxp.ode import solve
    >>> sol = solve(lambda t, y: -y, (0.0, 1.0), anyxp.backend("numpy").asarray([1.0]))
    >>> round(float(sol.y[-1, 0]), 6)
    0.367879
    """
    import anyxp

    tab, fixed = _check_method(method, rtol, atol, dt)
    t0, t1 = _check_span(t_span)
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    be = anyxp.backend(backend, like=y0)
    xp = be.xp
    y0 = be.asarray(y0)
    if not xp.isdtype(y0.dtype, "real floating"):
        y0 = xp.astype(y0, be.float_dtype)
    dtype = y0.dtype
    shape = tuple(y0.shape)
    if _concrete(lambda: not xp.all(xp.isfinite(y0))):
        raise ValueError("y0 contains NaN or infinity; the solver needs a finite initial state")
    te = None if t_eval is None else _check_t_eval(t_eval, t0, t1)

    from anyxp.selection import name_of

    if len(shape) == 1:  # already flat: no reshapes on the hot path

        def f_flat(t: Any, y: Any) -> Any:
            return f(t, y, *args)

    else:

        def f_flat(t: Any, y: Any) -> Any:
            return xp.reshape(f(t, xp.reshape(y, shape), *args), (-1,))

    y_flat = xp.reshape(y0, (-1,))
    probe = f(t0, y0, *args)
    if name_of(probe) != be.name:
        raise TypeError(
            f"f returned {type(probe).__module__}.{type(probe).__name__}, but y0 is a "
            f"{be.name} array; f must return an array of the same library (use the "
            "namespace of its input, e.g. xp = anyxp.backend(like=y).xp)"
        )
    if tuple(probe.shape) != shape:
        raise ValueError(f"f returned shape {tuple(probe.shape)}, expected y0's shape {shape}")
    if probe.dtype != dtype:
        raise TypeError(f"f returned dtype {probe.dtype}, expected y0's dtype {dtype}")

    jac_flat = None
    if jac is not None:
        n = y_flat.shape[0]

        def jac_flat(t: Any, y: Any) -> Any:
            return jac(t, xp.reshape(y, shape), *args)

        _check_jac(jac_flat(t0, y_flat), "solve", n, None)

    def method_for(fn: Callable[[Any, Any], Any], jac_fn: Any, batched: bool) -> Any:
        return make_method(be, tab, fn, dtype, batched=batched, jac=jac_fn, rtol=rtol, atol=atol)

    st = method_for(f_flat, jac_flat, False)
    if dense_output and not st.has_dense:
        raise ValueError(f"method {method!r} has no interpolant; choose another for dense_output")
    span = _explicit.Span(t0, t1, rtol, atol, dt if fixed else first_step, fixed, max_steps)
    if "control_flow.compiled" in be.capabilities:
        if dense_output:
            raise ValueError(
                f"dense_output needs an eager backend; a compiled solve on {be.name!r} "
                "stores the times you pass as t_eval"
            )
        stored = te if te is not None else np.array([t0, t1])
        # One traced program: the masked loop, with a batch of one trajectory.
        jac_one = None
        if jac_flat is not None:
            jac_one = lambda t, y: jac_flat(t[0], y[0, :])[None, :, :]  # noqa: E731
        one = method_for(lambda t, y: f_flat(t[0], y[0, :])[None, :], jac_one, True)
        res = run_masked(one, span, y_flat[None, :], t_eval=stored)
        t_out, y_out = res["t"], res["y"][:, 0, :]
        res["stats"] = {k: v[0] if getattr(v, "ndim", 0) else v for k, v in res["stats"].items()}
        status = res["status"][0]
        concrete = _concrete(lambda: int(status))
        status_int = int(status) if concrete is not None else status
    else:
        bar = _progress_bar() if progress else None
        res = _explicit.run_eager(
            st, span, y_flat, t_eval=te, keep_dense=dense_output, progress=bar
        )
        if bar is not None:
            bar(None)
        t_out = xp.asarray(res["t"], dtype=dtype, device=be.device)
        y_out = (
            xp.stack(res["y"])
            if res["y"]
            else xp.zeros((0, y_flat.shape[0]), dtype=dtype, device=be.device)
        )
        status_int = res["status"]
    y_out = xp.reshape(y_out, (y_out.shape[0], *shape))
    stats = dict(res["stats"])
    message = (
        _explicit.MESSAGES.get(status_int, "see status")
        if isinstance(status_int, int)
        else "traced"
    )
    dense_fn = _dense_eval(st, res, shape) if dense_output and "steps" in res else None
    return Solution(t_out, y_out, status_int, message, stats, method, be, dense_fn)


def _dense_eval(
    st: _explicit.Method, res: dict[str, Any], shape: tuple[int, ...]
) -> Callable[[Any], Any]:
    be, xp = st.be, st.be.xp
    steps = res["steps"]
    starts = np.array([s[0] for s in steps])
    ends = np.array([s[0] + s[1] for s in steps])
    direction = 1.0 if len(steps) == 0 or steps[0][1] > 0 else -1.0

    def evaluate(t: Any) -> Any:
        tq = np.atleast_1d(np.asarray(t, dtype=np.float64))
        lo, hi = (starts[0], ends[-1]) if direction > 0 else (ends[-1], starts[0])
        if np.any((tq < lo - 1e-12 * abs(hi - lo)) | (tq > hi + 1e-12 * abs(hi - lo))):
            raise ValueError(f"dense output is defined on [{lo}, {hi}], asked at {tq}")
        key = direction * ends
        idx = np.clip(np.searchsorted(key, direction * tq, side="left"), 0, len(steps) - 1)
        rows = []
        for j, i in enumerate(idx):
            t_start, hs, y0, y1, record = steps[i]
            theta = xp.asarray([(tq[j] - t_start) / hs], dtype=st.dtype, device=be.device)
            rows.append(st.interpolate(theta, hs, y0, y1, record)[0, ...])
        out = xp.reshape(xp.stack(rows), (len(rows), *shape))
        return out if np.ndim(t) else out[0, ...]

    return evaluate


def _progress_bar() -> Callable[[float | None], None]:
    import sys
    import time

    start = time.monotonic()
    shown = [-1]

    def update(fraction: float | None) -> None:
        if fraction is None:
            sys.stderr.write("\n")
            return
        percent = int(100 * fraction)
        if percent != shown[0]:
            shown[0] = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\r[{bar:<25}] {percent:3d}% {time.monotonic() - start:6.1f}s")
            sys.stderr.flush()

    return update
