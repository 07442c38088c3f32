"""``xp.linalg.solve`` and ``xp.linalg.inv``, batched over leading axes (capability ``linalg``).

The stiff solvers invert ``I - h·gamma·J`` every step, one matrix per trajectory of an
ensemble: a batch of small matrices. A backend without the linalg extension does not
declare ``linalg``, and then those solvers raise :class:`anyxp.UnsupportedError` up front
instead of failing inside a step.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anyxp
from anyxp.testing import strategies as axst

from ._helpers import about, check, conformance, host_dtype, lacking, requires, tol

#: Single matrices, then batches over one and two leading axes.
SHAPES = {
    "1x1": (1, 1),
    "7x7": (7, 7),
    "64x64": (64, 64),
    "batch-1000x3x3": (1000, 3, 3),
    "batch-64x7x7": (64, 7, 7),
    "batch-2x3x9x9": (2, 3, 9, 9),
}
shapes = pytest.mark.parametrize("shape", list(SHAPES.values()), ids=list(SHAPES))
#: The largest condition number of the drawn matrices.
COND = 100.0


@functools.cache
def _matrices(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return well-conditioned matrices of ``shape`` and two right-hand sides for each.

    Each matrix is ``2 I`` plus a perturbation of spectral radius about 0.6.
    """
    n = shape[-1]
    rng = np.random.default_rng([len(shape), *shape])
    a = 2 * np.eye(n) + rng.uniform(-1, 1, shape) / np.sqrt(n)
    return a, rng.uniform(-1, 1, (*shape[:-1], 2))


def _host(be, shape):
    """Return the test matrices and right-hand sides rounded to ``be``'s precision."""
    return tuple(m.astype(host_dtype(be)).astype(np.float64) for m in _matrices(shape))


def _close(be, actual, expected, what):
    # Relative to the largest entry: small entries of an inverse carry its absolute error.
    rtol = 10 * tol(be)
    check(be, actual, expected, rtol=rtol, atol=rtol * float(np.max(np.abs(expected))), what=what)


@requires("linalg")
@shapes
def test_linalg_inv(backend, shape):
    a, _ = _host(backend, shape)
    _close(backend, backend.xp.linalg.inv(backend.asarray(a)), np.linalg.inv(a), "inv")


@requires("linalg")
@shapes
def test_linalg_solve(backend, shape):
    a, b = _host(backend, shape)
    xa, xb = backend.asarray(a), backend.asarray(b)
    _close(backend, backend.xp.linalg.solve(xa, xb), np.linalg.solve(a, b), "solve, 2 columns")
    if len(shape) == 2:  # one right-hand side as a vector
        v = b[:, 0]
        actual = backend.xp.linalg.solve(xa, backend.asarray(v))
        _close(backend, actual, np.linalg.solve(a, v), "solve, vector")


@requires("linalg")
@pytest.mark.parametrize("shape", [(7, 7), (64, 7, 7)], ids=["7x7", "batch-64x7x7"])
def test_linalg_on_assembled_matrices(backend, shape):
    """Matrices stacked from columns, as the finite-difference Jacobians are built."""
    xp = backend.xp
    a, b = _host(backend, shape)
    columns = backend.asarray(np.moveaxis(a, -1, 0))
    assembled = xp.stack([columns[j, ...] for j in range(shape[-1])], axis=-1)
    _close(backend, xp.linalg.inv(assembled), np.linalg.inv(a), "inv")
    _close(backend, xp.linalg.solve(assembled, backend.asarray(b)), np.linalg.solve(a, b), "solve")


@requires("linalg")
@conformance
@given(data=st.data())
def test_linalg_inverts_drawn_matrices(backend, data):
    a = data.draw(axst.matrices(backend, condition_max=COND), label="a")
    host = backend.to_numpy(a).astype(np.float64)
    inv = backend.xp.linalg.inv(a)
    _close(backend, inv, np.linalg.inv(host), "inv")
    # The residual, on the host in float64: how far inv(a) @ a is from the identity.
    n = host.shape[-1]
    residual = np.abs(backend.to_numpy(inv).astype(np.float64) @ host - np.eye(n)).max()
    bound = 10 * n * COND * float(np.finfo(host_dtype(backend)).eps)
    assert residual <= bound, f"|inv(a) @ a - I| = {residual:.3g} > {bound:.3g}"


@about("linalg")
def test_undeclared_linalg_raises(backend):
    lacking(backend, "linalg")
    from anyxp.ode import solve
    from anyxp.ode.tableaux import STIFF_TABLEAUX

    y0 = backend.asarray([1.0, 0.5])
    for method in STIFF_TABLEAUX:
        with pytest.raises(anyxp.UnsupportedError) as info:
            solve(lambda t, y: -y, (0.0, 1.0), y0, method=method)
        assert info.value.capability == "linalg", f"solve(method={method!r}) raised {info.value}"
        assert backend.name in str(info.value)
