"""Collectives: the same meaning at size 1 (the local comm) and size N (under mpiexec)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ._helpers import check, requires


def _full(be, value, shape=(3,)):
    return be.xp.full(shape, float(value), dtype=be.float_dtype, device=be.device)


@requires("comm.barrier")
def test_rank_and_size(backend):
    c = backend.comm
    assert isinstance(c.rank, int) and isinstance(c.size, int)
    assert 0 <= c.rank < c.size


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("sum", lambda n: n * (n + 1) / 2),
        ("prod", lambda n: math.factorial(n)),
        ("max", lambda n: n),
        ("min", lambda n: 1),
        ("mean", lambda n: (n + 1) / 2),
    ],
)
@requires("comm.allreduce")
def test_allreduce(backend, op, expected):
    c = backend.comm
    out = c.allreduce(_full(backend, c.rank + 1), op=op)
    check(backend, out, np.full(3, expected(c.size)))
    assert out.dtype == backend.float_dtype


@requires("comm.allreduce")
def test_allreduce_non_contiguous(backend):
    xp, c = backend.xp, backend.comm
    host = np.arange(12.0).reshape(3, 4)
    x = xp.permute_dims(backend.asarray(host), (1, 0))[::2, :]
    check(backend, c.allreduce(x), c.size * host.T[::2, :])


@requires("comm.allreduce")
def test_allreduce_bad_input(backend):
    c = backend.comm
    with pytest.raises(ValueError, match="unknown reduction op"):
        c.allreduce(_full(backend, 1), op="median")
    with pytest.raises(TypeError, match="floating"):
        c.allreduce(backend.xp.ones(3, dtype=backend.xp.int32, device=backend.device), op="mean")


@requires("comm.broadcast")
def test_broadcast(backend):
    c = backend.comm
    for root in {0, c.size - 1}:
        check(backend, c.broadcast(_full(backend, c.rank + 10), root=root), np.full(3, root + 10))
    with pytest.raises(ValueError, match="root"):
        c.broadcast(_full(backend, 1), root=c.size)


@requires("comm.allgather")
def test_allgather(backend):
    c = backend.comm
    out = c.allgather(_full(backend, c.rank, (2,)))
    check(backend, out, np.repeat(np.arange(c.size, dtype=float)[:, None], 2, axis=1))


@requires("comm.reduce_scatter")
def test_reduce_scatter(backend):
    c = backend.comm
    base = np.arange(2.0 * c.size)
    out = c.reduce_scatter(backend.asarray(base * (c.rank + 1)))
    total = base * c.size * (c.size + 1) / 2
    check(backend, out, total[2 * c.rank : 2 * c.rank + 2])


@requires("comm.ppermute")
def test_ppermute_ring_and_partial(backend):
    c = backend.comm
    ring = [(r, (r + 1) % c.size) for r in range(c.size)]
    check(backend, c.ppermute(_full(backend, c.rank), ring), np.full(3, (c.rank - 1) % c.size))
    check(backend, c.ppermute(_full(backend, c.rank + 1), []), np.zeros(3))
    with pytest.raises(ValueError, match="ppermute"):
        c.ppermute(_full(backend, 1), [(0, c.size)])


@requires("comm.allreduce", "comm.allgather")
def test_zero_d_arrays_keep_their_shape(backend):
    """A 0-d array (what ``be.asarray(3.0)`` gives) reduces to a 0-d array on every rank."""
    c = backend.comm
    out = c.allreduce(backend.asarray(float(c.rank + 1)))
    assert out.shape == ()
    check(backend, out, c.size * (c.size + 1) / 2)
    check(backend, c.allgather(backend.asarray(float(c.rank))), np.arange(c.size, dtype=float))


@requires(
    "comm.allreduce", "comm.broadcast", "comm.allgather", "comm.reduce_scatter", "comm.ppermute"
)
@pytest.mark.parametrize("value", [3.0, [1.0, 2.0]], ids=["float", "list"])
def test_non_arrays_raise_type_error_naming_asarray(backend, value):
    """Each rank checks its own input before any communication, at every size."""
    c = backend.comm
    calls = {
        "allreduce": lambda: c.allreduce(value),
        "broadcast": lambda: c.broadcast(value),
        "allgather": lambda: c.allgather(value),
        "reduce_scatter": lambda: c.reduce_scatter(value),
        "ppermute": lambda: c.ppermute(value, []),
    }
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"{name} takes an array.*be\.asarray\("):
            call()


@requires("comm.allreduce")
def test_result_is_a_new_array(backend):
    """Mutating a collective's result never changes the caller's input."""
    x_host = np.ones(3)
    x = backend.asarray(x_host)
    out = backend.comm.allreduce(x)
    host_before = backend.to_numpy(x).copy()
    try:
        out[...] = 99.0
    except (TypeError, ValueError, NotImplementedError):
        pytest.skip(f"{backend.name} arrays are immutable")
    np.testing.assert_array_equal(backend.to_numpy(x), host_before)


@requires("comm.out")
def test_out_receives_every_collective_s_result(backend):
    """With ``out=``, the result is written into the given array, which is returned."""
    xp, c, n = backend.xp, backend.comm, backend.comm.size

    def empty(shape):
        return xp.empty(shape, dtype=backend.float_dtype, device=backend.device)

    try:
        empty((1,))[...] = 0.0
    except (TypeError, ValueError, NotImplementedError):
        with pytest.raises(TypeError, match=r"out="):  # immutable arrays: said so
            c.allreduce(_full(backend, 1.0), out=empty((3,)))
        return

    mine = _full(backend, c.rank + 1)
    expected = {
        "allreduce": (c.allreduce, (mine,), {}, (3,), np.full(3, n * (n + 1) / 2)),
        "mean": (c.allreduce, (mine, "mean"), {}, (3,), np.full(3, (n + 1) / 2)),
        "broadcast": (c.broadcast, (mine,), {"root": 0}, (3,), np.ones(3)),
        "allgather": (
            c.allgather, (mine,), {}, (n, 3), np.repeat(np.arange(1.0, n + 1)[:, None], 3, 1)
        ),
        "reduce_scatter": (
            c.reduce_scatter, (_full(backend, c.rank + 1, (2 * n,)),), {}, (2,),
            np.full(2, n * (n + 1) / 2),
        ),
        "ppermute": (
            c.ppermute, (mine, [(r, (r + 1) % n) for r in range(n)]), {}, (3,),
            np.full(3, (c.rank - 1) % n + 1.0),
        ),
    }  # fmt: skip
    for name, (call, args, kwargs, shape, want) in expected.items():
        out = empty(shape)
        got = call(*args, **kwargs, out=out)
        assert got is out, f"{name}(out=...) returned a new array, not out"
        check(backend, out, want)
    # In place: out=x, for the collectives whose result has x's shape.
    x = _full(backend, c.rank + 1)
    assert c.allreduce(x, out=x) is x
    check(backend, x, np.full(3, n * (n + 1) / 2))
    y = _full(backend, c.rank + 1)
    c.broadcast(y, root=0, out=y)
    check(backend, y, np.ones(3))
    z = _full(backend, c.rank + 1)
    c.ppermute(z, [(r, (r + 1) % n) for r in range(n)], out=z)
    check(backend, z, np.full(3, (c.rank - 1) % n + 1.0))


@requires("comm.out", "comm.allreduce")
def test_out_of_the_wrong_shape_or_dtype_is_a_clear_error(backend):
    xp, c = backend.xp, backend.comm
    x = _full(backend, 1.0)
    with pytest.raises(ValueError, match=r"shape \(3,\) and dtype.*got shape \(4,\)"):
        c.allreduce(x, out=xp.empty((4,), dtype=backend.float_dtype, device=backend.device))
    with pytest.raises(ValueError, match="dtype"):
        c.allreduce(x, out=xp.empty((3,), dtype=xp.int32, device=backend.device))


@requires("comm.barrier")
def test_barrier(backend):
    assert backend.comm.barrier() is None


def _grad(backend, loss, x):
    """This rank's share of d(Σ_ranks loss_r)/dx: what SPMD AD gives each rank."""
    return backend.to_numpy(backend.ad.grad(loss)(x))


@requires("ad.custom", "comm.allreduce")
def test_collectives_are_differentiable(backend):
    # Each rank's loss is one term of the job's total; each rank gets that total's
    # derivative for its own inputs. The expectations below hold at any size.
    c, xp = backend.comm, backend.xp
    r, n = c.rank, c.size
    base = np.array([1.0, 2.0, 3.0])
    x = backend.asarray(base * (r + 1))
    total = base * n * (n + 1) / 2  # Σ_s x_s
    grad = _grad(backend, lambda x: xp.sum(c.allreduce(x) ** 2), x)
    np.testing.assert_allclose(grad, 2 * n * total, rtol=1e-6)
    grad = _grad(backend, lambda x: xp.sum(c.allreduce(x, "mean")), x)
    np.testing.assert_allclose(grad, np.ones(3), rtol=1e-6)
    grad = _grad(backend, lambda x: xp.sum(c.allreduce(x, "max")), x)
    np.testing.assert_allclose(grad, np.full(3, float(n) if r == n - 1 else 0.0), rtol=1e-6)
    grad = _grad(backend, lambda x: xp.sum(c.broadcast(x, root=0) ** 2), x)
    np.testing.assert_allclose(grad, 2 * n * base if r == 0 else np.zeros(3), rtol=1e-6)
    slots = backend.asarray(np.arange(1.0, n + 1)[:, None])  # weight s + 1 on rank s's slot
    grad = _grad(backend, lambda x: xp.sum(c.allgather(x) * slots), x)
    np.testing.assert_allclose(grad, np.full(3, float(n * (r + 1))), rtol=1e-6)
    ring = [(s, (s + 1) % n) for s in range(n)]  # rank r receives rank r - 1's x
    grad = _grad(backend, lambda x: xp.sum(c.ppermute(x, ring) ** 2) * (c.rank + 1), x)
    np.testing.assert_allclose(grad, 2 * ((r + 1) % n + 1) * base * (r + 1), rtol=1e-6)
    blocks = backend.asarray(np.ones(2 * n) * (r + 1))
    grad = _grad(backend, lambda x: xp.sum(c.reduce_scatter(x)) * (c.rank + 1), blocks)
    np.testing.assert_allclose(grad, np.repeat(np.arange(1.0, n + 1), 2), rtol=1e-6)
