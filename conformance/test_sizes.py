"""The array functions anyxp's algorithms call, on sizes past every block boundary.

The property tests of ``test_arrays`` draw at most 25 elements. A library, or a plugin's
wrapper around one, can be right on those and wrong once work is split into SIMD lanes,
cache blocks, threads or chunks. These deterministic cases run each function the
algorithms call on 1 to 10⁵ elements and on arrays of two and three axes, and check every
value against numpy. Sums and products run on multiples of 1/8 whose partial sums are
exact in float32, so every summation order gives the same answer and a tight tolerance is
fair to any library on any device.

Each case runs as the algorithms run: as one function under ``be.jit``, which compiles it
where the backend compiles (one program per case rather than one per operation and
shape) and calls it as it is everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ._helpers import about, check, host_dtype

pytestmark = about("arrays")

#: Sizes either side of typical SIMD widths, cache blocks and chunk lengths (4099 is
#: prime: no block divides it), and arrays with more than one axis.
SHAPES = {
    "1": (1,),
    "7": (7,),
    "64": (64,),
    "1000": (1000,),
    "4099": (4099,),
    "100000": (100_000,),
    "3x4099": (3, 4099),
    "64x64x3": (64, 64, 3),
}
sizes = pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))


def _draw(shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Return deterministic host data: ``eighths`` in [-2, 2], ``positive`` in [1/8, 1].

    Any other ``kind`` is uniform in [-3, 3]. A fresh copy each time: a library may share
    memory with the numpy array it was given.
    """
    return _drawn(shape, kind).copy()


@functools.cache
def _drawn(shape: tuple[int, ...], kind: str) -> np.ndarray:
    rng = np.random.default_rng([len(shape), *shape])
    if kind == "eighths":
        return rng.integers(-16, 17, shape) / 8
    if kind == "positive":
        return rng.integers(1, 9, shape) / 8
    return rng.uniform(-3.0, 3.0, shape)


def _run(be: Any, program: Callable[..., dict[str, Any]], *hosts: np.ndarray) -> dict[str, Any]:
    """Run ``program`` on ``hosts``, as ``be``'s arrays, under ``be.jit``."""
    return be.jit(program)(*(be.asarray(h) for h in hosts))


def _check_all(be: Any, actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert actual.keys() == expected.keys()
    for what, value in expected.items():
        check(be, actual[what], value, what=what)


@sizes
def test_elementwise_at_size(backend, shape):
    xp = backend.xp
    # Uniform data rounded to the backend's precision: numpy computes on the same inputs.
    u = _draw(shape, "uniform").astype(host_dtype(backend)).astype(np.float64)
    d = _draw(shape, "eighths")

    def as_float(mask):
        return xp.astype(mask, backend.float_dtype)

    def program(x, y):
        return {
            "exp": xp.exp(x / 4.0),
            "sin": xp.sin(x),
            "sqrt(abs(x))": xp.sqrt(xp.abs(x)),
            "tanh": xp.tanh(x),
            "logaddexp": xp.logaddexp(x, y),
            "y * y + 2 * y - 1": y * y + 2.0 * y - 1.0,
            "y ** 2 / 2": y**2 / 2.0,
            "where": xp.where(y > 0, y, -y),
            "maximum": xp.maximum(y, 0.5 * y),
            "minimum": xp.minimum(y, 0.5 * y),
            "clip": xp.clip(y, -1.0, 1.5),
            "(y > 0.5) & (y < 1.5) | ~(y >= -1)": as_float((y > 0.5) & (y < 1.5) | ~(y >= -1.0)),
        }

    expected = {
        "exp": np.exp(u / 4),
        "sin": np.sin(u),
        "sqrt(abs(x))": np.sqrt(np.abs(u)),
        "tanh": np.tanh(u),
        "logaddexp": np.logaddexp(u, d),
        "y * y + 2 * y - 1": d * d + 2 * d - 1,
        "y ** 2 / 2": d**2 / 2,
        "where": np.abs(d),
        "maximum": np.maximum(d, 0.5 * d),
        "minimum": np.minimum(d, 0.5 * d),
        "clip": np.clip(d, -1.0, 1.5),
        "(y > 0.5) & (y < 1.5) | ~(y >= -1)": (d > 0.5) & (d < 1.5) | (d < -1),
    }
    _check_all(backend, _run(backend, program, u, d), expected)


@sizes
def test_isfinite_at_size(backend, shape):
    xp = backend.xp
    host = _draw(shape, "eighths")
    host.flat[host.size // 2] = np.nan
    host.flat[-1] = np.inf  # past any first block
    finite = np.isfinite(host)

    def program(z):
        ok = xp.isfinite(z)
        return {
            "isfinite": xp.astype(ok, backend.float_dtype),
            "all(isfinite, axis=-1)": xp.astype(xp.all(ok, axis=-1), backend.float_dtype),
            "all(isfinite)": xp.astype(xp.all(ok), backend.float_dtype),
            "where(isfinite, z, 0)": xp.where(ok, z, 0.0),
        }

    expected = {
        "isfinite": finite,
        "all(isfinite, axis=-1)": finite.all(axis=-1),
        "all(isfinite)": False,
        "where(isfinite, z, 0)": np.where(finite, host, 0.0),
    }
    _check_all(backend, _run(backend, program, host), expected)


@sizes
def test_reductions_at_size(backend, shape):
    xp = backend.xp
    d, p = _draw(shape, "eighths"), _draw(shape, "positive")
    # The index of each element: only the very last one is marked, so a reduction that
    # stops early misses it.
    index = np.arange(d.size, dtype=np.float64).reshape(shape)
    last = index == d.size - 1
    axes = (None, *range(len(shape)))
    k = shape[0] // 3

    def program(y, x, i):
        marked = i == d.size - 1
        out = {}
        for axis in axes:
            out[f"sum axis={axis}"] = xp.sum(y, axis=axis)
            out[f"max axis={axis}"] = xp.max(y, axis=axis)
        for axis in (None, -1):
            out[f"mean axis={axis}"] = xp.mean(x, axis=axis)
            out[f"min axis={axis}"] = xp.min(y, axis=axis)
        out["sum keepdims"] = xp.sum(y, axis=-1, keepdims=True)
        out["RMS norm"] = xp.sqrt(xp.mean(y * y))
        out["any"] = xp.astype(xp.any(marked), backend.float_dtype)
        out["all axis=0"] = xp.astype(xp.all(~marked, axis=0), backend.float_dtype)
        if k:  # an array joined from uneven pieces: several chunks on dask
            pieces = xp.concat([y[:k, ...], y[k : 2 * k + 1, ...], y[2 * k + 1 :, ...]], axis=0)
            out["sum of joined pieces"] = xp.sum(pieces, axis=0)
            out["max of joined pieces"] = xp.max(pieces)
        return out

    expected = {}
    for axis in axes:
        expected[f"sum axis={axis}"] = np.sum(d, axis=axis)
        expected[f"max axis={axis}"] = np.max(d, axis=axis)
    for axis in (None, -1):
        expected[f"mean axis={axis}"] = np.mean(p, axis=axis)
        expected[f"min axis={axis}"] = np.min(d, axis=axis)
    expected["sum keepdims"] = np.sum(d, axis=-1, keepdims=True)
    expected["RMS norm"] = np.sqrt(np.mean(d * d))
    expected["any"] = True
    expected["all axis=0"] = (~last).all(axis=0)
    if k:
        expected["sum of joined pieces"] = np.sum(d, axis=0)
        expected["max of joined pieces"] = np.max(d)
    _check_all(backend, _run(backend, program, d, p, index), expected)


@sizes
def test_creation_and_shapes_at_size(backend, shape):
    xp, dt, dev = backend.xp, backend.float_dtype, backend.device
    d = _draw(shape, "eighths")
    n, axes = d.size, tuple(reversed(range(len(shape))))
    np.testing.assert_array_equal(
        backend.to_numpy(backend.asarray(d)), d, err_msg="to_numpy(asarray(data)) changed it"
    )
    picks = {axis: [shape[axis] - 1, 0, shape[axis] // 2, shape[axis] - 1] for axis in (0, -1)}

    def program(y):
        out = {
            "full": xp.full(shape, 0.375, dtype=dt, device=dev),
            "zeros_like": xp.zeros_like(y),
            "full_like": xp.full_like(y, 2.5),
            "arange": xp.arange(n, dtype=dt, device=dev),
            "reshape": xp.reshape(y, (-1,)),
            "permute_dims": xp.permute_dims(y, axes),
            "broadcast_to": xp.broadcast_to(y, (2, *shape)),
            "stack": xp.stack([y, 2.0 * y]),
            "stack axis=-1": xp.stack([y, -y], axis=-1),
            "concat": xp.concat([y, y], axis=0),
            "y[..., ::3]": y[..., ::3],
            "y[-1, ...]": y[-1, ...],
            "astype int32": xp.astype(xp.astype(y, xp.int32), dt),
        }
        for axis, idx in picks.items():
            out[f"take axis={axis}"] = xp.take(y, xp.asarray(idx, device=dev), axis=axis)
        return out

    expected = {
        "full": np.full(shape, 0.375),
        "zeros_like": np.zeros(shape),
        "full_like": np.full(shape, 2.5),
        "arange": np.arange(n, dtype=np.float64),
        "reshape": d.reshape(-1),
        "permute_dims": np.transpose(d, axes),
        "broadcast_to": np.broadcast_to(d, (2, *shape)),
        "stack": np.stack([d, 2 * d]),
        "stack axis=-1": np.stack([d, -d], axis=-1),
        "concat": np.concatenate([d, d]),
        "y[..., ::3]": d[..., ::3],
        "y[-1, ...]": d[-1, ...],
        "astype int32": d.astype(np.int32),
    }
    for axis, idx in picks.items():
        expected[f"take axis={axis}"] = np.take(d, idx, axis=axis)
    _check_all(backend, _run(backend, program, d), expected)


@sizes
def test_products_at_size(backend, shape):
    xp = backend.xp
    p = _draw(shape, "positive")
    stages = _draw((7, *shape), "positive")
    w = np.arange(1, 8) / 8
    rows = p.reshape(-1)[: (p.size // 4) * 4].reshape(-1, 4) if p.size >= 4 else p.reshape(1, -1)
    powers = np.stack([rows, rows / 2])  # (2, B, q) against one (q, s): the interpolants
    dense = _draw((rows.shape[1], 5), "positive")
    swap = (*range(len(shape) - 2), len(shape) - 1, len(shape) - 2)
    m = min(7, p.size)
    small_gram = len(shape) > 1 and p.size * shape[-1] // shape[-2] <= 10**6

    def program(x, w, stages, powers, dense):
        out = {
            "tensordot(w, K, axes=1)": xp.tensordot(w, stages, axes=1),
            "matmul((m, B, q), (q, s))": xp.matmul(powers, dense),
        }
        if len(shape) == 1:
            row, col = xp.reshape(x, (1, -1)), xp.reshape(x, (-1, 1))
            out["(1, n) @ (n, 1)"] = row @ col
            out["(n, 1) @ (1, m)"] = col @ row[:, :m]
        else:
            xt = xp.permute_dims(x, swap)
            out["x @ transpose(x)"] = x @ xt
            if small_gram:
                out["transpose(x) @ x"] = xt @ x
            out["batched matrix @ column"] = (x @ x[..., 0, :][..., None])[..., 0]
        return out

    expected = {
        "tensordot(w, K, axes=1)": np.tensordot(w, stages, axes=1),
        "matmul((m, B, q), (q, s))": powers @ dense,
    }
    if len(shape) == 1:
        expected["(1, n) @ (n, 1)"] = p[None, :] @ p[:, None]
        expected["(n, 1) @ (1, m)"] = p[:, None] @ p[None, :m]
    else:
        pt = np.transpose(p, swap)
        expected["x @ transpose(x)"] = p @ pt
        if small_gram:
            expected["transpose(x) @ x"] = pt @ p
        expected["batched matrix @ column"] = (p @ p[..., 0, :][..., None])[..., 0]
    _check_all(backend, _run(backend, program, p, w, stages, powers, dense), expected)


@sizes
def test_complex_abs_at_size(backend, shape):
    xp = backend.xp
    if not hasattr(xp, "complex64"):
        pytest.skip(f"{backend.name}'s namespace has no complex dtypes")
    z = _draw(shape, "eighths") + 1j * _draw((*shape, 1), "eighths")[..., 0]
    c = backend.asarray(z)
    assert c.dtype == backend.complex_dtype, f"asarray(complex data) gave {c.dtype}"
    actual = backend.jit(lambda c: {"abs of complex": xp.abs(c)})(c)
    _check_all(backend, actual, {"abs of complex": np.abs(z)})
