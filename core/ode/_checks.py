"""The checks every ODE entry point shares: one validator, so that bad input is refused
the same way by ``solve`` and ``solve_ensemble``, with a message that names the fix.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from anyxp._warnings import warn_user
from anyxp.backend import Backend
from anyxp.ode.tableaux import STIFF_TABLEAUX, TABLEAUX

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "METHODS",
    "check_jac",
    "check_linear_solver",
    "check_method",
    "check_probe",
    "check_span",
    "check_steps",
    "check_t_eval",
    "check_tolerances",
    "concrete",
    "concrete_int",
    "real_dtype",
    "state_dtype",
]

METHODS = (*TABLEAUX, *STIFF_TABLEAUX)


def concrete(check: Callable[[], Any]) -> bool | None:
    """The value of a check on arrays, or ``None`` when they are being traced (jit)."""
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - tracers refuse bool() with library-specific errors
        return None


def concrete_int(value: Any) -> int | None:
    """``value`` as an int, or ``None`` when it is being traced (jit)."""
    try:
        return int(value)
    except Exception:  # noqa: BLE001 - tracers refuse int() with library-specific errors
        return None


def real_dtype(xp: Any, dtype: Any) -> Any:
    """The real floating dtype of ``dtype``'s precision (itself when it is real)."""
    if xp.isdtype(dtype, "complex floating"):
        return xp.float64 if dtype == xp.complex128 else xp.float32
    return dtype


def check_method(method: str, dt: float | None) -> tuple[Any, bool]:
    """The tableau of ``method``, and whether its step is fixed (``dt`` fixes any method)."""
    tab: Any = TABLEAUX.get(method) or STIFF_TABLEAUX.get(method)
    if tab is None:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    fixed = tab.error_order is None or dt is not None
    if fixed and dt is None:
        raise ValueError(f"method {method!r} takes a fixed step: pass dt > 0")
    return tab, fixed


def check_span(t_span: Sequence[float]) -> tuple[float, float]:
    """``(t0, t1)`` as finite floats (``t0 == t1`` is allowed: nothing to integrate)."""
    try:
        t0, t1 = (_number(v, "t_span") for v in t_span)
    except (TypeError, ValueError):
        raise ValueError(f"t_span must be a pair (t0, t1) of numbers, got {t_span!r}") from None
    if not (math.isfinite(t0) and math.isfinite(t1)):
        raise ValueError(f"t_span must hold finite times, got ({t0}, {t1})")
    return t0, t1


def check_t_eval(t_eval: Any, t0: float, t1: float) -> np.ndarray:
    """``t_eval`` as sorted float64 times inside the span."""
    te = np.asarray(t_eval, dtype=np.float64).reshape(-1)
    lo, hi = min(t0, t1), max(t0, t1)
    if te.size == 0 or np.any(~np.isfinite(te)) or te.min() < lo or te.max() > hi:
        raise ValueError(f"t_eval must be finite times inside t_span [{lo}, {hi}]")
    steps = np.diff(te) * (1.0 if t1 >= t0 else -1.0)
    if np.any(steps < 0):
        raise ValueError("t_eval must be sorted in the direction of integration")
    return te


def _number(value: Any, name: str) -> float:
    """A real Python number as a float; ``TypeError`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if getattr(value, "ndim", None) == 0 and hasattr(value, "dtype"):
            try:
                return float(value)  # a 0-d array of any library
            except TypeError:
                pass
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_steps(
    first_step: Any, max_step: Any, dt: Any, max_steps: Any, t0: float, t1: float
) -> tuple[float | None, float, float | None]:
    """``first_step``, ``max_step`` and ``dt`` as floats, each checked against the span."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral):
        raise TypeError(f"max_steps must be an int, got {type(max_steps).__name__}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    length = abs(t1 - t0)
    out: list[float | None] = []
    for name, value in (("first_step", first_step), ("dt", dt)):
        if value is None:
            out.append(None)
            continue
        v = _number(value, name)
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(
                f"{name} must be a finite number > 0 (its sign comes from t_span), got {v}"
            )
        if name == "first_step" and v > length:
            raise ValueError(
                f"first_step={v} is longer than the interval |t1 - t0| = {length}; "
                "pass a smaller first_step or leave it out"
            )
        out.append(v)
    h_max = math.inf if max_step is None else _number(max_step, "max_step")
    if not h_max > 0:  # NaN fails too
        raise ValueError(f"max_step must be > 0 (math.inf for no bound), got {h_max}")
    return out[0], h_max, out[1]


#: The tolerances used when none are given (raised, silently, where a low precision cannot
#: resolve them).
DEFAULT_RTOL, DEFAULT_ATOL = 1e-6, 1e-9


def check_tolerances(
    be: Backend, rtol: Any, atol: Any, dtype: Any, n: int
) -> tuple[float | Any, float | Any]:
    """``rtol`` and ``atol`` as floats, or as arrays of ``n`` (one per state component).

    ``None`` means the defaults. Tolerances the dtype cannot resolve are raised as scipy
    does, ``rtol`` to ``100·eps`` and ``atol`` to the smallest normal number of the state's
    precision, with a warning where the caller asked for them.
    """
    xp = be.xp
    real = real_dtype(xp, dtype)
    info = xp.finfo(real)
    floors = {"rtol": 100 * float(info.eps), "atol": float(info.smallest_normal)}
    out = []
    for name, value, default in (("rtol", rtol, DEFAULT_RTOL), ("atol", atol, DEFAULT_ATOL)):
        floor = floors[name]
        if value is None:
            out.append(max(default, floor))
            continue
        # A plain number (the usual case) in Python floats; numpy's checks cost ~20 us.
        scalar = type(value) in (float, int)
        host = float(value) if scalar else _tolerance_array(value, name, n)
        if scalar:
            bad = not (math.isfinite(host) and (host > 0 if name == "rtol" else host >= 0))
            low = host < floor if name == "rtol" else 0 < host < floor
        else:
            bad = bool(np.any(~np.isfinite(host))) or bool(
                np.any(host <= 0) if name == "rtol" else np.any(host < 0)
            )
            low = bool(
                np.any(host < floor) if name == "rtol" else np.any((host > 0) & (host < floor))
            )
        if bad:
            bound = "> 0" if name == "rtol" else ">= 0"
            raise ValueError(f"need finite {name} {bound}, got {name}={value!r}")
        if low and name == "rtol":
            warn_user(
                f"rtol={value!r} is below what {real} resolves; it is raised to "
                f"{floor:.3g} (100 machine epsilons). Use a float64 state for tighter "
                "tolerances."
            )
            host = np.maximum(host, floor)
        elif low:
            warn_user(
                f"atol={value!r} is below the smallest normal {real} number; it is raised "
                f"to {floor:.3g}. Use a float64 state for smaller absolute tolerances."
            )
            host = np.where(host > 0, np.maximum(host, floor), host)
        if np.ndim(host) == 0:
            out.append(float(host))
        else:
            out.append(xp.asarray(host, dtype=real, device=be.device))
    return out[0], out[1]


def _tolerance_array(value: Any, name: str, n: int) -> np.ndarray:
    if isinstance(value, bool | str | bytes) or value is None:
        raise TypeError(
            f"{name} must be a number or an array of numbers, got {type(value).__name__}"
        )
    if hasattr(value, "dtype") and not isinstance(value, np.ndarray | np.generic):
        from anyxp.selection import backend

        value = backend(like=value).to_numpy(value)
    try:
        host = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if host.ndim > 1 or (host.ndim == 1 and host.shape[0] != n):
        raise ValueError(
            f"{name} has shape {host.shape}; give one number, or one per state component "
            f"(shape ({n},))"
        )
    return host


def state_dtype(be: Backend, y0: Any, name: str = "y0") -> Any:
    """``y0`` on the backend with a floating dtype: integers take ``be.float_dtype``.

    Real and complex floating states keep their dtype; anything else is a ``TypeError``.
    """
    xp = be.xp
    y0 = be.asarray(y0)
    if xp.isdtype(y0.dtype, ("real floating", "complex floating")):
        return y0
    if xp.isdtype(y0.dtype, ("integral", "bool")):
        return xp.astype(y0, be.float_dtype)
    raise TypeError(f"{name} must hold real or complex numbers, got dtype {y0.dtype}")


def check_probe(
    be: Backend, probe: Any, shape: tuple[int, ...], dtype: Any, who: str, what: str = "f"
) -> None:
    """``f``'s first value must be an array of ``be``'s library, of the state's shape and dtype.

    ``what`` names the function (``"f"``, or another one held to the same rule).
    """
    from anyxp.selection import name_of

    if name_of(probe) != be.name:
        raise TypeError(
            f"{what} returned {type(probe).__module__}.{type(probe).__name__}, but the state "
            f"is a {be.name} array; {what} must return an array of the same library (use the "
            f"namespace of its input, e.g. xp = anyxp.backend(like=y).xp) [{who}]"
        )
    if tuple(probe.shape) != shape:
        raise ValueError(f"{what} returned shape {tuple(probe.shape)}, expected {shape} [{who}]")
    if probe.dtype != dtype:
        hint = ""
        if be.xp.isdtype(probe.dtype, "complex floating"):
            hint = "; for a complex solution pass a complex y0"
        raise TypeError(f"{what} returned dtype {probe.dtype}, expected {dtype} [{who}]{hint}")


def check_jac(jac_value: Any, who: str, n: int, batch: int | None) -> None:
    """A Jacobian must be ``(n, n)``, or ``(B, n, n)`` for a batch."""
    shape = (n, n) if batch is None else (batch, n, n)
    if tuple(getattr(jac_value, "shape", ())) != shape:
        raise ValueError(
            f"jac returned shape {tuple(getattr(jac_value, 'shape', ()))}, expected {shape}: "
            f"the Jacobian ∂f/∂y of the flattened state ({who})"
        )


def check_linear_solver(
    linear_solver: Any, preconditioner: Any, tab: Any, method: str, sensitivity: Any
) -> str:
    """``linear_solver`` checked against the method, the preconditioner and sensitivities.

    GMRES serves the ESDIRK method's Newton iterations only: a Rosenbrock method
    (``rodas5p``) takes each linear solve's result as a stage, with no iteration to correct
    an inexact one, and its order conditions assume exact solves with the exact
    Jacobian; an explicit method solves no linear systems.
    """
    from anyxp.ode._implicit import LINEAR_SOLVERS
    from anyxp.ode.tableaux import ESDIRKTableau, RosenbrockTableau

    if not isinstance(linear_solver, str) or linear_solver not in LINEAR_SOLVERS:
        raise ValueError(
            f"unknown linear_solver {linear_solver!r}; choose one of {', '.join(LINEAR_SOLVERS)}"
        )
    if preconditioner is not None and not callable(preconditioner):
        raise TypeError(
            "preconditioner must be a function (t, y, h_gamma, v, *args) -> an "
            f"approximation of (I - h_gamma*J)^-1 v, got {type(preconditioner).__name__}"
        )
    if linear_solver == "dense":
        if preconditioner is not None:
            raise ValueError(
                "preconditioner= applies to linear_solver='gmres' (the dense solver inverts "
                "I - h*gamma*J exactly); pass linear_solver='gmres' with method='kvaerno5'"
            )
        return linear_solver
    if isinstance(tab, RosenbrockTableau):
        raise ValueError(
            f"linear_solver={linear_solver!r} needs method='kvaerno5': a Rosenbrock method "
            f"({method!r}) takes each linear solve's result as a stage, with no Newton "
            "iteration to correct an inexact solve, and its order conditions assume exact "
            "solves with the exact Jacobian. Use method='kvaerno5' for large stiff states, "
            f"or {method!r} with linear_solver='dense'"
        )
    if not isinstance(tab, ESDIRKTableau):
        raise ValueError(
            f"linear_solver={linear_solver!r} applies to the implicit method 'kvaerno5'; "
            f"the explicit method {method!r} solves no linear systems"
        )
    if sensitivity is not None:
        raise NotImplementedError(
            f"sensitivity={sensitivity!r} with linear_solver={linear_solver!r} is not "
            "supported (the derivatives would go through GMRES's iterations); use "
            "linear_solver='dense' (the default) for derivatives of a solve"
        )
    return linear_solver
