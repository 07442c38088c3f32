"""The array-API surface anyxp's algorithms rely on, and dtype/device round trips.

These draw small arrays; ``test_sizes`` runs the same functions on large ones and
``test_linalg`` the linalg extension.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyxp

from ._helpers import about, check, conformance, host_dtype, lacking, native, requires

pytestmark = about("arrays")

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False, allow_subnormal=False, width=32)


def host_arrays(max_dims: int = 2):
    return hnp.arrays(
        np.float64, hnp.array_shapes(min_dims=1, max_dims=max_dims, max_side=5), elements=finite
    )


def test_creation(backend):
    xp, dt, dev = backend.xp, backend.float_dtype, backend.device
    made = {
        "zeros": (xp.zeros((2, 3), dtype=dt, device=dev), np.zeros((2, 3))),
        "ones": (xp.ones((4,), dtype=dt, device=dev), np.ones(4)),
        "full": (xp.full((2,), 3.5, dtype=dt, device=dev), np.full(2, 3.5)),
        "arange": (xp.arange(0, 5, 1, dtype=dt, device=dev), np.arange(5.0)),
        "linspace": (xp.linspace(0, 1, 5, dtype=dt, device=dev), np.linspace(0, 1, 5)),
        "eye": (xp.eye(3, dtype=dt, device=dev), np.eye(3)),
        "asarray": (backend.asarray([[1.0, 2.0], [3.0, 4.0]]), [[1.0, 2.0], [3.0, 4.0]]),
    }
    for name, (actual, expected) in made.items():
        assert actual.dtype == dt, f"{name} gave {actual.dtype}, asked for {dt}"
        check(backend, actual, expected)


@conformance
@given(data=host_arrays())
def test_elementwise(backend, data):
    xp = backend.xp
    x = backend.asarray(data)
    check(backend, xp.exp(x / 10), np.exp(data / 10))
    check(backend, xp.sin(x), np.sin(data))
    check(backend, xp.sqrt(xp.abs(x)), np.sqrt(np.abs(data)))
    check(backend, x * x + 2.0 * x - 1.0, data * data + 2.0 * data - 1.0)
    check(backend, xp.where(x > 0, x, -x), np.abs(data))
    check(backend, xp.maximum(x, 0.5 * x), np.maximum(data, 0.5 * data))


@conformance
@given(data=host_arrays())
def test_reductions(backend, data):
    xp = backend.xp
    x = backend.asarray(data)
    check(backend, xp.sum(x), np.sum(data), atol=1e-3)
    check(backend, xp.max(x, axis=0), np.max(data, axis=0))
    check(backend, xp.min(x, axis=-1, keepdims=True), np.min(data, axis=-1, keepdims=True))
    check(backend, xp.mean(x, axis=0), np.mean(data, axis=0), atol=1e-4)
    check(backend, xp.sqrt(xp.sum(x * x)), np.linalg.norm(data), atol=1e-4)


def test_indexing_and_shapes(backend):
    xp = backend.xp
    host = np.arange(24.0).reshape(4, 6)
    x = backend.asarray(host)
    check(backend, x[1:3, ::2], host[1:3, ::2])
    check(backend, x[-1, ...], host[-1, ...])
    check(backend, x[:, 2], host[:, 2])
    idx = xp.asarray([3, 0, 2], device=backend.device)
    check(backend, xp.take(x, idx, axis=0), host[[3, 0, 2]])
    check(backend, xp.reshape(x, (6, 4)), host.reshape(6, 4))
    check(backend, xp.permute_dims(x, (1, 0)), host.T)
    check(backend, xp.concat([x, x], axis=0), np.concatenate([host, host]))
    check(backend, xp.stack([x[0, :], x[1, :]]), host[:2])
    check(backend, x @ xp.permute_dims(x, (1, 0)), host @ host.T)


def test_dtypes_and_constants(backend):
    """The dtypes, constants and dtype queries the algorithms read off the namespace."""
    xp = backend.xp
    assert xp.isdtype(backend.float_dtype, "real floating")
    assert xp.isdtype(xp.int32, "integral") and not xp.isdtype(xp.int32, "real floating")
    assert xp.isdtype(xp.bool, "bool")
    assert xp.isdtype(xp.float32, "real floating")
    wide = "float64" in backend.capabilities
    assert not wide or xp.isdtype(xp.float64, "real floating"), "float64 declared, missing"
    eps = float(xp.finfo(backend.float_dtype).eps)
    assert eps == float(np.finfo(host_dtype(backend)).eps), f"finfo(float_dtype).eps is {eps}"
    assert int(xp.iinfo(xp.int32).max) == 2**31 - 1
    if hasattr(xp, "complex64"):
        assert xp.isdtype(xp.complex64, "complex floating")
        assert not wide or xp.isdtype(xp.complex128, "complex floating")
    special = backend.asarray([xp.inf, -xp.inf, xp.nan, 1.0])
    check(backend, xp.astype(xp.isfinite(special), backend.float_dtype), [0.0, 0.0, 0.0, 1.0])
    ints = xp.zeros((3,), dtype=xp.int32, device=backend.device)
    assert ints.dtype == xp.int32
    flags = xp.zeros((3,), dtype=xp.bool, device=backend.device)
    assert flags.dtype == xp.bool and not bool(xp.any(flags))
    info = xp.__array_namespace_info__()
    assert any(d == backend.device for d in info.devices()), (
        f"{backend.device} is not among __array_namespace_info__().devices()"
    )


@conformance
@given(data=host_arrays())
def test_to_numpy_round_trip(backend, data):
    x = backend.asarray(data)
    host = backend.to_numpy(x)
    assert isinstance(host, np.ndarray)
    assert host.dtype == host_dtype(backend)
    np.testing.assert_allclose(host, data.astype(host.dtype), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", pytest.param("float64", marks=about("float64"))])
def test_dtype_option(backend, dtype):
    if dtype == "float64" and "float64" not in backend.capabilities:
        pytest.skip("float64 not declared")
    be = anyxp.backend(backend.name, dtype=dtype)
    assert str(be.float_dtype).endswith(dtype)
    x = be.asarray([0.1, 0.2])
    assert x.dtype == be.float_dtype
    assert be.xp.zeros(2, dtype=be.float_dtype, device=be.device).dtype == be.float_dtype
    assert be.to_numpy(x).dtype == np.dtype(dtype)
    assert anyxp.backend(like=x).float_dtype == x.dtype


@about("float64")
def test_float64_missing_raises(backend):
    lacking(backend, "float64")
    with pytest.raises(anyxp.UnsupportedError, match="float64"):
        anyxp.backend(backend.name, dtype="float64")


def test_device_round_trip(backend):
    x = backend.asarray([1.0, 2.0])
    native(backend, x)
    again = anyxp.backend(backend.name, device=backend.device)
    assert again.device == backend.device
    native(again, again.asarray(backend.to_numpy(x)))


def test_unknown_device_is_a_clear_error(backend):
    with pytest.raises(anyxp.BackendUnavailableError, match="not available"):
        anyxp.backend(backend.name, device="no-such-device:7")


@requires("device.gpu")
def test_gpu_device(backend):
    try:
        be = anyxp.backend(backend.name, device="cuda")
    except anyxp.BackendUnavailableError as exc:
        pytest.skip(f"no GPU on this machine: {exc}")
    x = be.asarray([1.0, 2.0])
    native(be, x)
    where = str(be.device_of(x)).lower()
    assert "cuda" in where or "gpu" in where, f"array landed on {where}"
    check(be, be.xp.sum(x * 2.0), 6.0)
    np.testing.assert_array_equal(be.to_numpy(x), [1.0, 2.0])


@requires("dlpack")
def test_dlpack_export(backend):
    x = backend.asarray([[1.0, 2.0], [3.0, 4.0]])
    host = backend.to_numpy(x)
    if "cpu" in str(backend.device).lower():
        np.testing.assert_array_equal(np.from_dlpack(x), host)
    else:
        assert hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__")


@requires("arrays.inplace")
def test_inplace_writes_fill_a_buffer(backend):
    """A Runge-Kutta step fills its stage matrix row by row and reads slices of it back."""
    xp = backend.xp
    rows = [backend.asarray([1.0, 2.0, 3.0]) * (i + 1) for i in range(4)]
    buffer = xp.zeros((4, 3), dtype=rows[0].dtype, device=backend.device)
    for i, row in enumerate(rows):
        buffer[i, ...] = row
        # Earlier rows are visible at once, and later ones still zero.
        weights = backend.asarray([1.0] * (i + 1))
        check(
            backend,
            weights @ buffer[: i + 1, ...],
            np.array([1.0, 2.0, 3.0]) * sum(range(1, i + 2)),
        )
        check(backend, xp.sum(buffer[i + 1 :, ...]), 0.0)
    view = buffer[2, ...]
    buffer[2, ...] = rows[0]
    check(backend, view, [1.0, 2.0, 3.0], what="a row read before a write sees the write")
