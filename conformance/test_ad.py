"""Automatic differentiation checked against central finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import anyxp
from anyxp.capabilities import AD_CAPABILITIES

from ._helpers import about, conformance, native, requires

points = hnp.arrays(np.float64, st.integers(1, 4), elements=st.floats(-1.5, 1.5, width=32))


def _be(backend):
    """The backend in float64 when it has it: finite differences need the precision."""
    if "float64" in backend.capabilities:
        return anyxp.backend(backend.name, dtype="float64", device=backend.device)
    return backend


def scalar_f(xp):
    def f(x):
        return xp.sum(xp.sin(x) * x**2) + 0.5 * xp.sum(x) ** 2

    return f


def vector_f(xp):
    def f(x):
        return xp.stack([xp.sum(x**3), xp.prod(xp.cos(x)), xp.sum(xp.exp(x / 4) * x)])

    return f


def fd_jacobian(be, f, x0: np.ndarray) -> np.ndarray:
    """Central differences of ``f`` at ``x0``, evaluated on the backend itself."""
    eps = 1e-6 if "float64" in str(be.float_dtype) else 1e-2
    cols = []
    for i in range(x0.size):
        step = np.zeros_like(x0)
        step[i] = eps
        hi = be.to_numpy(f(be.asarray(x0 + step)))
        lo = be.to_numpy(f(be.asarray(x0 - step)))
        cols.append((np.asarray(hi, np.float64) - lo) / (2 * eps))
    return np.stack(cols, axis=-1)


def close(be, actual, expected) -> None:
    native(be, actual)
    rtol = 1e-5 if "float64" in str(be.float_dtype) else 5e-2
    np.testing.assert_allclose(be.to_numpy(actual), expected, rtol=rtol, atol=rtol)


@requires("ad.grad")
@conformance
@given(x0=points)
def test_grad_matches_finite_differences(backend, x0):
    be = _be(backend)
    f = scalar_f(be.xp)
    close(be, be.ad.grad(f)(be.asarray(x0)), fd_jacobian(be, f, x0))


@requires("ad.grad")
@conformance
@given(x0=points)
def test_value_and_grad(backend, x0):
    be = _be(backend)
    f = scalar_f(be.xp)
    x = be.asarray(x0)
    value, g = be.ad.value_and_grad(f)(x)
    close(be, value, be.to_numpy(f(x)))
    close(be, g, be.to_numpy(be.ad.grad(f)(x)))


@requires("ad.jvp")
@conformance
@given(x0=points, data=st.data())
def test_jvp_matches_finite_differences(backend, x0, data):
    be = _be(backend)
    f = vector_f(be.xp)
    v = data.draw(hnp.arrays(np.float64, x0.shape, elements=st.floats(-1, 1, width=32)))
    out, tangent = be.ad.jvp(f, (be.asarray(x0),), (be.asarray(v),))
    close(be, out, be.to_numpy(f(be.asarray(x0))))
    close(be, tangent, fd_jacobian(be, f, x0) @ v)


@requires("ad.vjp")
@conformance
@given(x0=points, data=st.data())
def test_vjp_matches_finite_differences(backend, x0, data):
    be = _be(backend)
    f = vector_f(be.xp)
    u = data.draw(hnp.arrays(np.float64, (3,), elements=st.floats(-1, 1, width=32)))
    out, pullback = be.ad.vjp(f, be.asarray(x0))
    close(be, out, be.to_numpy(f(be.asarray(x0))))
    cotangents = pullback(be.asarray(u))
    assert isinstance(cotangents, tuple) and len(cotangents) == 1, "vjp_fn returns a tuple"
    close(be, cotangents[0], u @ fd_jacobian(be, f, x0))


@requires("ad.jacobian")
@conformance
@given(x0=points)
def test_jacobian_matches_finite_differences(backend, x0):
    be = _be(backend)
    f = vector_f(be.xp)
    close(be, be.ad.jacobian(f)(be.asarray(x0)), fd_jacobian(be, f, x0))


@requires("ad.hessian")
@conformance
@given(x0=points)
def test_hessian_matches_finite_differences_of_grad(backend, x0):
    be = _be(backend)
    f = scalar_f(be.xp)
    h = be.ad.hessian(f)(be.asarray(x0))
    close(be, h, fd_jacobian(be, be.ad.grad(f), x0))
    hn = be.to_numpy(h)
    np.testing.assert_allclose(hn, hn.T, rtol=1e-6, atol=1e-8)


def _custom_rule(be):
    """``sin(x)·p`` with its derivative given twice: as a VJP rule and as a Jacobian."""
    xp = be.xp

    def fun(x, p):
        return xp.sin(x) * p, (xp.asarray(7, dtype=xp.int32, device=be.device),)

    def fwd(x, p):
        return fun(x, p), None

    def bwd(args, _res, out_bar):
        x, p = args  # recomputed from the inputs: derivatives of the rule itself work
        return out_bar * xp.cos(x) * p, xp.sum(out_bar * xp.sin(x))

    def jacobian(x, p):
        return xp.eye(x.shape[0], dtype=x.dtype, device=be.device) * (xp.cos(x) * p), xp.reshape(
            xp.sin(x), (-1, 1)
        )

    return be.ad.custom_vjp(fun, fwd, bwd), be.ad.with_jacobian(fun, jacobian)


@requires("ad.custom")
@conformance
@given(x0=points, p0=st.floats(0.5, 2.0))
def test_custom_rules_give_the_derivatives(backend, x0, p0):
    be = _be(backend)
    xp = be.xp
    x, p = be.asarray(x0), be.asarray(p0)
    expected_x = 2 * np.sin(x0) * p0 * np.cos(x0) * p0
    expected_p = 2 * np.sum(np.sin(x0) ** 2) * p0
    for g in _custom_rule(be):
        out, aux = g(x, p)
        close(be, out, np.sin(x0) * p0)
        assert int(be.to_numpy(aux[0])) == 7  # auxiliary outputs pass through
        loss = lambda x, p, g=g: xp.sum(g(x, p)[0] ** 2)  # noqa: E731
        gx, gp = be.ad.grad(loss, argnums=(0, 1))(x, p)
        close(be, gx, expected_x)
        close(be, gp, expected_p)
        # second order: the rules are built from differentiable operations
        gpp = be.ad.grad(lambda p, loss=loss: be.ad.grad(lambda p: loss(x, p))(p))(p)
        close(be, gpp, 2 * np.sum(np.sin(x0) ** 2))
    _, tangent = be.ad.jvp(lambda p: _custom_rule(be)[1](x, p)[0], (p,), (be.asarray(1.0),))
    close(be, tangent, np.sin(x0))  # forward mode through the Jacobian rule


#: The functions of ``be.ad`` each AD capability promises.
AD_FUNCTIONS = {
    "ad.grad": ("grad", "value_and_grad"),
    "ad.vjp": ("vjp",),
    "ad.jvp": ("jvp",),
    "ad.jacobian": ("jacobian",),
    "ad.hessian": ("hessian",),
    "ad.custom": ("custom_vjp", "with_jacobian"),
}


@pytest.mark.parametrize("capability", [pytest.param(c, marks=about(c)) for c in AD_CAPABILITIES])
def test_undeclared_ad_raises_unsupported(backend, capability):
    if capability in backend.capabilities:
        pytest.skip(f"{backend.name} declares {capability}")
    for name in AD_FUNCTIONS[capability]:
        with pytest.raises(anyxp.UnsupportedError) as info:
            getattr(backend.ad, name)(lambda x: x)
        assert info.value.capability == capability, f"be.ad.{name} raised {info.value}"
        assert backend.name in str(info.value)
