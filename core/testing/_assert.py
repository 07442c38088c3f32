"""``assert_close``: compare arrays of any backend, dtype- and device-aware."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["assert_close", "default_tolerances"]


def default_tolerances(dtype: np.dtype) -> tuple[float, float]:
    """Return ``(rtol, atol)`` suited to ``dtype``: a few hundred ulps of its epsilon."""
    if np.issubdtype(dtype, np.inexact):
        eps = float(np.finfo(dtype).eps)
        return 256 * eps, 256 * eps
    return 0.0, 0.0


def assert_close(
    actual: Any,
    desired: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    check_namespace: bool = True,
    check_dtype: bool = True,
    check_shape: bool = True,
    check_device: bool = True,
    err_msg: str = "",
) -> None:
    """Assert that two arrays agree in backend, dtype, shape, device and values.

    Tolerances default to ones picked from the dtype of ``actual``. On failure the
    message names the worst element and its absolute and relative error.
    """
    from anyxp.selection import backend, name_of

    a_name, d_name = name_of(actual), name_of(desired)
    prefix = f"{err_msg}: " if err_msg else ""
    if check_namespace and a_name != d_name:
        raise AssertionError(
            f"{prefix}arrays come from different backends: actual is {a_name}, desired is "
            f"{d_name} (pass check_namespace=False to compare values only)"
        )
    a_be = backend(like=actual) if a_name else backend("numpy")
    d_be = backend(like=desired) if d_name else backend("numpy")
    if check_device and a_name == d_name and a_name is not None:
        a_dev, d_dev = a_be.device_of(actual), d_be.device_of(desired)
        if a_dev != d_dev:
            raise AssertionError(f"{prefix}devices differ: actual on {a_dev}, desired on {d_dev}")
    a = np.asarray(a_be.to_numpy(actual) if a_name else actual)
    d = np.asarray(d_be.to_numpy(desired) if d_name else desired)
    if check_dtype and (a_name is not None and d_name is not None) and a.dtype != d.dtype:
        raise AssertionError(f"{prefix}dtypes differ: actual {a.dtype}, desired {d.dtype}")
    if check_shape and a.shape != d.shape:
        raise AssertionError(f"{prefix}shapes differ: actual {a.shape}, desired {d.shape}")
    dr, da = default_tolerances(a.dtype)
    rtol = dr if rtol is None else rtol
    atol = da if atol is None else atol
    a_b, d_b = np.broadcast_arrays(a, d)
    close = np.isclose(a_b, d_b, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return
    with np.errstate(invalid="ignore", divide="ignore"):
        abs_err = np.abs(a_b.astype(np.complex128) - d_b.astype(np.complex128)).real
        rel_err = abs_err / np.abs(d_b.astype(np.complex128))
    excess = np.where(
        close, -np.inf, np.nan_to_num(abs_err - atol - rtol * np.abs(d_b), nan=np.inf)
    )
    worst = np.unravel_index(int(np.argmax(excess)), a_b.shape) if a_b.ndim else ()
    raise AssertionError(
        f"{prefix}{int((~close).sum())} of {close.size} elements differ beyond rtol={rtol:g}, "
        f"atol={atol:g}. Worst at index {tuple(int(i) for i in worst)}: actual "
        f"{a_b[worst]!r}, desired {d_b[worst]!r}; max abs error {np.nanmax(abs_err):.3g}, "
        f"max rel error {np.nanmax(rel_err):.3g}"
    )
