"""Python numbers become arrays exactly, at the backend's precision.

anyxp's algorithms read tolerances, tableau coefficients and initial states from Python
literals. On a float64 backend ``be.asarray([0.0057])`` must hold the double nearest
0.0057, not a float32 reading widened to 0.00570000009611249; on a float32 backend, the
float32 nearest it (``numpy.float32(0.0057)``). The namespace's own
``asarray(..., dtype=be.float_dtype)`` must do the same, and complex literals keep their
imaginary part.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anyxp

from ._helpers import about, conformance, native, requires

pytestmark = about("arrays")

FLOATS = {
    "0.1": 0.1,
    "0.0057": 0.0057,
    "list": [0.1, 0.2, 0.3, 0.0057, 1 / 3],
    "nested": [[0.1, 0.0057, 2 / 3], [1e-7, -0.3, 12345.678901234567]],
    "ints and floats": [1, 0.1, -2],
}
COMPLEX = {
    "1+2j": 1 + 2j,
    "list": [0.1 + 0.0057j, -1j, 2.0],
    "nested": [[1j, 0.3 - 0.1j], [0.5, 1e-3j]],
}
precisions = pytest.mark.parametrize(
    "dtype", ["float32", pytest.param("float64", marks=requires("float64"))]
)
#: Finite floats that stay normal numbers in float32 (XLA and GPUs flush subnormals).
normal_floats = st.floats(-1e30, 1e30, allow_subnormal=False).filter(
    lambda v: v == 0 or abs(v) > 1e-30
)


def _at(backend, dtype):
    return anyxp.backend(backend.name, dtype=dtype, device=backend.device)


def _assert_exact(be, literal, want: np.ndarray) -> None:
    """Assert that both ways of reading ``literal`` give exactly ``want`` (numpy's)."""
    complex_ = want.dtype.kind == "c"
    dtype = be.complex_dtype if complex_ else be.float_dtype
    for how, x in (
        ("be.asarray", be.asarray(literal)),
        ("be.xp.asarray(..., dtype)", be.xp.asarray(literal, dtype=dtype, device=be.device)),
    ):
        native(be, x, how)
        assert x.dtype == dtype, f"{how}({literal!r}) gave {x.dtype}, expected {dtype}"
        got = be.to_numpy(x)
        assert got.shape == want.shape, f"{how}({literal!r}) has shape {got.shape}"
        assert np.array_equal(got, want), (
            f"{how}({literal!r}) at {want.dtype} holds {got.tolist()!r}; the exact reading is "
            f"{want.tolist()!r}.{_diagnosis(got, want)}"
        )


def _diagnosis(got: np.ndarray, want: np.ndarray) -> str:
    if want.dtype.itemsize > 8 or want.dtype == np.float64:
        narrow = want.astype(np.complex64 if want.dtype.kind == "c" else np.float32)
        if np.array_equal(got, narrow):
            return " The literal was read at single precision, then widened."
    if want.dtype.kind == "c" and np.any(want.imag) and not np.any(got.imag):
        return " The imaginary part was dropped."
    return ""


@precisions
@pytest.mark.parametrize("literal", list(FLOATS.values()), ids=list(FLOATS))
def test_float_literals_are_read_exactly(backend, dtype, literal):
    _assert_exact(_at(backend, dtype), literal, np.asarray(literal, np.float64).astype(dtype))


@precisions
@conformance
@given(values=st.lists(normal_floats, min_size=1, max_size=8))
def test_drawn_float_literals_are_read_exactly(backend, dtype, values):
    _assert_exact(_at(backend, dtype), values, np.asarray(values, np.float64).astype(dtype))


@precisions
@pytest.mark.parametrize("literal", list(COMPLEX.values()), ids=list(COMPLEX))
def test_complex_literals_keep_their_imaginary_part(backend, dtype, literal):
    be = _at(backend, dtype)
    if not hasattr(be.xp, "complex64"):
        pytest.skip(f"{be.name}'s namespace has no complex dtypes")
    want = np.asarray(literal, np.complex128).astype(
        "complex64" if dtype == "float32" else "complex128"
    )
    _assert_exact(be, literal, want)
