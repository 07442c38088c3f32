"""The checks of :func:`anyxp.gsa.sobol`'s arguments and of what the model returns.

Each raises (or warns) with the cause and the next step, before any model evaluation
where it can.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from anyxp._warnings import warn_user
from anyxp.gsa._points import BITS, MAX_DIMS

__all__ = [
    "check_bounds",
    "check_design",
    "check_finite",
    "check_n",
    "check_options",
    "check_output",
    "check_width",
]


def check_bounds(bounds: Any) -> np.ndarray:
    """Return ``bounds`` as a host ``(d, 2)`` float64 array of ``(low, high)`` rows."""
    if hasattr(bounds, "shape") and hasattr(bounds, "dtype"):
        import anyxp

        bounds = anyxp.backend(like=bounds).to_numpy(bounds)
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"bounds must be numbers, one (low, high) pair per parameter; got {bounds!r} ({exc})"
        ) from None
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] == 0:
        raise ValueError(
            f"bounds must have shape (parameters, 2), one (low, high) pair per parameter; got "
            f"shape {b.shape}. Write e.g. bounds=[(-3.14, 3.14), (0.0, 1.0)]"
        )
    d = b.shape[0]
    if d > MAX_DIMS // 2:
        raise ValueError(
            f"{d} parameters need {2 * d} Sobol' dimensions; the direction-number table holds "
            f"{MAX_DIMS}, so at most {MAX_DIMS // 2} parameters: group parameters or screen "
            "them first (e.g. with Morris' method)"
        )
    for j, (low, high) in enumerate(b):
        if not (np.isfinite(low) and np.isfinite(high)):
            raise ValueError(
                f"bounds[{j}] = ({low}, {high}) is not finite; give each parameter a finite range"
            )
        if not low < high:
            raise ValueError(
                f"bounds[{j}] = ({low}, {high}): low must be below high; give each parameter "
                "as (low, high), and leave a fixed parameter out of the analysis"
            )
    return b


def check_n(n: Any) -> int:
    """Return ``n`` as a power of two, warning when it rounds ``n`` up to one."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int (a power of two, e.g. 1024), got {n!r}")
    n = int(n)
    if not 2 <= n <= 2**BITS:
        raise ValueError(f"n must be between 2 and 2**{BITS} base samples, got {n}")
    if n & (n - 1):
        rounded = 1 << n.bit_length()
        warn_user(
            f"n={n} is not a power of two; using n={rounded}. Sobol' points are balanced "
            "only in blocks of 2**m, and a part-block makes the indices less accurate (SALib "
            f"warns of the same). Pass n={rounded} or n={rounded // 2} to silence this."
        )
        n = rounded
    return n


def check_design(d: int, second_order: Any, seed: Any) -> None:
    """Raise for a design that cannot be made: one parameter with pairs, or a bad seed."""
    if second_order and d < 2:
        raise ValueError(
            "second_order=True needs at least 2 parameters; with one there is no pair: "
            "pass second_order=False"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")


def check_options(model: Any, confidence: Any, resamples: Any, chunk: Any) -> None:
    """Raise for a model that is not callable or an option outside its range."""
    if not callable(model):
        raise TypeError(f"model must be a function of an (n, d) array, got {type(model).__name__}")
    if not (isinstance(confidence, numbers.Real) and 0 < float(confidence) < 1):
        raise ValueError(
            f"confidence must be a level between 0 and 1 (e.g. 0.95), got {confidence!r}"
        )
    if (
        isinstance(resamples, bool)
        or not isinstance(resamples, numbers.Integral)
        or resamples < 0
        or resamples == 1
    ):
        raise ValueError(
            f"resamples must be 0 (no confidence intervals) or at least 2, got {resamples!r}"
        )
    if chunk is not None and (
        isinstance(chunk, bool) or not isinstance(chunk, numbers.Integral) or chunk < 1
    ):
        raise ValueError(f"chunk must be a positive number of rows or None, got {chunk!r}")


def check_output(
    out: Any, x: Any, owner: Callable[[Any], str | None], float_dtype: Any, xp: Any
) -> tuple[Any, bool]:
    """Return the model's output ``out`` for rows ``x`` as a real ``(rows, k)`` array, and
    whether it came as a vector, ``(rows,)``.

    ``out`` must be an array of ``x``'s library (``owner`` names an array's), of shape
    ``(rows,)`` or ``(rows, k)``; integer or boolean outputs are cast to ``float_dtype``.
    """
    rows, lib, got = x.shape[0], owner(x), owner(out)
    if got != lib or not hasattr(out, "shape"):
        raise TypeError(
            f"model returned a {type(out).__module__}.{type(out).__name__} for a {lib} "
            f"sample; return an array of the sample's library, computed with "
            f"xp = anyxp.backend(like=x).xp"
        )
    if out.ndim not in (1, 2) or out.shape[0] != rows:
        raise ValueError(
            f"model returned shape {tuple(out.shape)} for {rows} rows of parameters; return "
            f"shape ({rows},), one value per row of x, or ({rows}, k) for k outputs"
        )
    if xp.isdtype(out.dtype, "complex floating"):
        raise TypeError(
            f"model returned {out.dtype} values; Sobol' indices are defined for real "
            "outputs: return the real part, magnitude or phase (or several, as columns)"
        )
    if not xp.isdtype(out.dtype, "real floating"):
        out = xp.astype(out, float_dtype)
    return (out, False) if out.ndim == 2 else (xp.reshape(out, (rows, 1)), True)


def check_width(y: Any, k: int) -> Any:
    """Return ``y`` (``(rows, width)``) if its width is ``k``, the outputs of other rows."""
    if y.shape[1] != k:
        raise ValueError(
            f"model returned {y.shape[1]} outputs for some rows and {k} for others; return "
            "the same number of outputs for every row"
        )
    return y


def check_finite(
    y: Any, xp: Any, to_numpy: Callable[[Any], np.ndarray], rows_at: Callable[..., np.ndarray]
) -> None:
    """Raise unless every output in ``y`` (``(rows, k)``, of namespace ``xp``) is finite.

    ``rows_at`` gives the parameters of a row, named in the message.
    """
    if bool(xp.all(xp.isfinite(y))):
        return
    bad = ~np.all(np.isfinite(to_numpy(y)), axis=1)
    first = int(np.argmax(bad))
    x = np.array2string(rows_at(np.array([first]))[0], precision=6, separator=", ")
    raise ValueError(
        f"model returned NaN or infinity at {int(bad.sum())} of {len(bad)} rows (first at row "
        f"{first}, x = {x}); Sobol' indices need a finite output everywhere within the "
        "bounds: fix the model there, or narrow the bounds to where it is defined"
    )
