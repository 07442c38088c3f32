"""The checks every solver of ``anyxp.optimize`` shares: one validator, so that bad input is
refused the same way by ``gmres``, ``newton_krylov`` and ``newton``, with a message that
names the fix.

The solvers work on rows: a batch ``(B, n)`` of flattened systems (a single system is a
batch of one). :func:`rows_function` and :func:`operator` turn what the user passes (a
function of the system's own shape, an array) into functions on rows, checking every
value they return for its library, shape and dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from anyxp._warnings import warn_user
from anyxp.backend import Backend
from anyxp.errors import MixedBackendsError, UnsupportedError

__all__ = [
    "check_choice",
    "check_count",
    "check_tolerance",
    "concrete",
    "operator",
    "require",
    "rows_function",
    "system",
]


def concrete(check: Callable[[], Any]) -> bool | None:
    """The value of a check on arrays, or ``None`` when they are being traced (jit)."""
    try:
        return bool(check())
    except Exception:  # noqa: BLE001 - tracers refuse bool() with library-specific errors
        return None


def require(be: Backend, capability: str) -> None:
    """Raise :class:`anyxp.UnsupportedError` up front when ``be`` lacks ``capability``."""
    if capability not in be.capabilities:
        from anyxp.registry import get_registry

        raise UnsupportedError(be.name, capability, get_registry().providers(capability))


def system(
    backend: str | Backend | None, x: Any, name: str, *, batch: bool
) -> tuple[Backend, Any, tuple[int, ...]]:
    """The backend, ``x`` as rows ``(B, n)`` of a real floating dtype, and one system's shape.

    The backend is ``backend`` or, by default, ``x``'s own. Integer data takes the
    backend's ``float_dtype``; complex data is refused (split it into real and imaginary
    parts); NaN or infinity is refused.
    """
    import anyxp

    be = anyxp.backend(backend, like=x)
    xp = be.xp
    x = be.asarray(x)
    if xp.isdtype(x.dtype, ("integral", "bool")):
        x = xp.astype(x, be.float_dtype)
    elif not xp.isdtype(x.dtype, "real floating"):
        raise TypeError(
            f"{name} has dtype {x.dtype}; anyxp.optimize solves real systems: write a "
            "complex one as a real system of twice the size (real and imaginary parts)"
        )
    if batch and x.ndim == 0:
        raise ValueError(f"batch=True needs {name} of shape (B, ...), one row per system")
    if concrete(lambda: not xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or infinity; pass a finite {name}")
    shape = tuple(x.shape[1:]) if batch else tuple(x.shape)
    n = math.prod(shape)
    return be, xp.reshape(x, (x.shape[0] if batch else 1, n)), shape


def check_tolerance(value: Any, name: str, *, eps: float | None = None) -> float:
    """``value`` as a finite float ``>= 0``; a relative tolerance (``eps`` given) below
    what the dtype resolves is raised to ``eps``, with a warning."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if eps is not None and 0 < v < eps:
        warn_user(
            f"{name}={value!r} is below what this dtype resolves; it is raised to {eps:.3g}. "
            "Use float64 arrays for tighter tolerances."
        )
        v = eps
    return v


def check_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[Any, ...]) -> Any:
    """``value`` if it is one of ``choices``; else a ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(map(repr, choices))}")
    return value


def _check_output(
    be: Backend, out: Any, shape: tuple[int, ...], dtype: Any, who: str, what: str
) -> None:
    from anyxp.selection import name_of

    if name_of(out) != be.name:
        raise TypeError(
            f"{who} returned {type(out).__module__}.{type(out).__name__}, but {what} is a "
            f"{be.name} array; {who} must return an array of the same library (use the "
            f"namespace of its input: xp = anyxp.backend(like=x).xp)"
        )
    if tuple(out.shape) != shape:
        raise ValueError(
            f"{who} returned shape {tuple(out.shape)}, expected {shape} (the shape of {what})"
        )
    if out.dtype != dtype:
        raise TypeError(
            f"{who} returned dtype {out.dtype}, expected {dtype} (the dtype of {what}); "
            "compute in the input's dtype"
        )


def rows_function(
    be: Backend,
    fn: Callable[[Any], Any],
    shape: tuple[int, ...],
    dtype: Any,
    *,
    batch: bool,
    who: str,
    what: str,
) -> Callable[[Any], Any]:
    """``fn`` on rows ``(B, n)``: each call reshapes to ``fn``'s own shape and back, and
    checks what ``fn`` returned (its library, shape and dtype)."""
    xp = be.xp

    def on_rows(x: Any) -> Any:
        arg = xp.reshape(x, (x.shape[0], *shape)) if batch else xp.reshape(x[0, :], shape)
        out = fn(arg)
        _check_output(be, out, tuple(arg.shape), dtype, who, what)
        return xp.reshape(out, x.shape)

    return on_rows


def operator(
    be: Backend, A: Any, n: int, dtype: Any, *, batch: int | None, name: str
) -> Callable[[Any], Any]:
    """The product ``v -> A v`` on rows ``(B, n)``, from a matrix or a function.

    A matrix is ``(n, n)``, or ``(B, n, n)`` for a batch (``batch`` is then ``B``); a
    function takes and returns a vector ``(n,)``, or rows ``(B, n)`` for a batch.
    """
    from anyxp.selection import name_of

    xp = be.xp
    if callable(A) and not hasattr(A, "shape"):
        return rows_function(
            be, A, (n,), dtype, batch=batch is not None, who=name, what="the right-hand side b"
        )
    other = name_of(A)
    if other is not None and other != be.name:
        raise MixedBackendsError(
            f"{name} is a {other} array but b is a {be.name} array; pass {name} on b's "
            f"backend (anyxp.backend({be.name!r}).asarray(...)) or as a function v -> {name} v"
        )
    A = be.asarray(A, dtype=dtype)
    shapes = [(n, n)] + ([(batch, n, n)] if batch is not None else [])
    if tuple(A.shape) not in shapes:
        expected = " or ".join(str(s) for s in shapes)
        raise ValueError(f"{name} has shape {tuple(A.shape)}, expected {expected}")
    if A.ndim == 2:
        At = xp.permute_dims(A, (1, 0))
        return lambda v: v @ At
    return lambda v: (A @ v[:, :, None])[:, :, 0]
