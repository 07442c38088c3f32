"""Derivatives of solves: every mode, every method, against closed forms and differences.

The known answers: ``y' = -z·y`` (``y = 2 e^{-zt}``), Lotka-Volterra against central
differences, linear systems against the matrix exponential, and each mode against the
others.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyxp
from anyxp.ode import solve, solve_ensemble
from anyxp.ode._sensitivity import MODES
from conftest import float64_backend

AD = ["torch", "jax"]
METHODS = ["tsit5", "dopri5", "dop853", "rk4", "rodas5p", "kvaerno5"]
Z, T = 2.3, 1.0


on = float64_backend


def decay(t, y, z):
    return -z * y


def y_end(be, z, *, mode, method="tsit5", tight=True, **options):
    """y(T) of y' = -z y, y(0) = 2, as a function of z."""
    dt = 1 / 64 if method == "rk4" else None
    rtol = 1e-12 if tight else 1e-10
    sol = solve(
        decay, (0.0, T), be.asarray([2.0]), args=(z,), method=method, dt=dt,
        rtol=rtol, atol=rtol * 1e-2, sensitivity=mode, t_eval=[0.0, T], **options,
    )  # fmt: skip
    return sol.y[-1, 0]


# -- the closed form: first derivatives in every mode, second where promised ----------------
@pytest.mark.parametrize("name", AD)
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_gives_the_derivative_of_decay(name, mode):
    be = on(name)
    g = be.ad.grad(lambda z: y_end(be, z, mode=mode))(be.asarray(Z))
    exact = -2 * T * math.exp(-Z * T)
    assert abs(float(g) - exact) < 1e-7 * abs(exact), (float(g), exact)


@pytest.mark.parametrize("name", AD)
@pytest.mark.parametrize("mode", ["direct", "forward"])
def test_second_derivatives_with_direct_and_forward(name, mode):
    be = on(name)
    ad = be.ad
    z = be.asarray(Z)
    exact = 2 * T**2 * math.exp(-Z * T)
    gg = ad.grad(ad.grad(lambda z: y_end(be, z, mode=mode, tight=False)))(z)
    assert abs(float(gg) - exact) < 1e-7 * exact, (float(gg), exact)
    grad = ad.grad(lambda z: y_end(be, z, mode=mode, tight=False))
    _, jg = ad.jvp(grad, (z,), (be.asarray(1.0),))
    assert abs(float(jg) - exact) < 1e-7 * exact  # jvp of grad: forward over reverse


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_differentiable_in_every_mode(method):
    # On torch (no compilation: quick); jax runs every method below and every mode above.
    be = on("torch")
    exact = -2 * T * math.exp(-Z * T)
    tol = 1e-6 if method == "rk4" else 1e-8  # rk4: a fixed step of 1/64, order 4
    grads = {}
    for mode in MODES:
        g = be.ad.grad(lambda z, m=mode: y_end(be, z, mode=m, method=method, tight=False))
        grads[mode] = float(g(be.asarray(Z)))
        assert abs(grads[mode] - exact) < tol * abs(exact), (mode, grads[mode], exact)
    assert abs(grads["checkpointed"] - grads["direct"]) < 1e-12 * abs(exact)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_is_differentiable_on_jax(method):
    be = on("jax")
    exact = -2 * T * math.exp(-Z * T)
    tol = 1e-6 if method == "rk4" else 1e-8
    g = float(be.ad.grad(lambda z: y_end(be, z, mode="checkpointed", method=method))(Z))
    assert abs(g - exact) < tol * abs(exact), (g, exact)


# -- Lotka-Volterra: a loss over the whole saved trajectory ----------------------------------
def lotka_volterra(t, y, p):
    xp = anyxp.backend(like=y).xp
    return xp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


LV_P, LV_Y0, LV_TE = np.array([1.5, 1.0, 3.0, 1.0]), np.array([1.0, 1.0]), np.linspace(0, 10, 101)


def lv_loss(p, y0, *, method="tsit5", mode=None, tol=1e-12):
    xp = anyxp.backend(like=y0).xp
    sol = solve(
        lotka_volterra, (0.0, 10.0), y0, args=(p,), t_eval=LV_TE, rtol=tol, atol=tol,
        method=method, sensitivity=mode,
    )  # fmt: skip
    return xp.sum((sol.y[:, 1] - 1.0) ** 2)


def central_differences(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


@pytest.fixture(scope="module")
def lv_reference():
    loss = lambda p, y0: float(lv_loss(p, y0))  # noqa: E731  (numpy: no sensitivity)
    return (
        central_differences(lambda p: loss(p, LV_Y0), LV_P),
        central_differences(lambda y0: loss(LV_P, y0), LV_Y0),
    )


@pytest.mark.parametrize("name", AD)
@pytest.mark.parametrize(
    "mode",
    [
        *[m for m in MODES if m != "forward"],
        # forward mode costs one pass per input; torch's forward AD is ~5x its replay
        pytest.param("forward", marks=pytest.mark.anyxp_requires("jax")),
    ],
)
def test_lotka_volterra_gradients_match_central_differences(name, mode, lv_reference):
    be = on(name)
    if mode == "forward" and name == "torch":
        pytest.skip("see test_torch_forward_mode_on_a_shorter_trajectory")
    gp, gy = be.ad.grad(lambda p, y0: lv_loss(p, y0, mode=mode), argnums=(0, 1))(
        be.asarray(LV_P), be.asarray(LV_Y0)
    )
    fd_p, fd_y = lv_reference
    np.testing.assert_allclose(be.to_numpy(gp), fd_p, rtol=1e-6)
    np.testing.assert_allclose(be.to_numpy(gy), fd_y, rtol=1e-6)


def test_torch_forward_mode_on_a_shorter_trajectory():
    be = on("torch")
    te = np.linspace(0, 2, 5)

    def loss(p, mode):
        xp = be.xp
        sol = solve(
            lotka_volterra, (0.0, 2.0), be.asarray(LV_Y0), args=(p,), t_eval=te,
            rtol=1e-10, atol=1e-10, sensitivity=mode,
        )  # fmt: skip
        return xp.sum((sol.y[:, 1] - 1.0) ** 2)

    p = be.asarray(LV_P)
    forward = be.to_numpy(be.ad.grad(lambda p: loss(p, "forward"))(p))
    direct = be.to_numpy(be.ad.grad(lambda p: loss(p, "direct"))(p))
    np.testing.assert_allclose(forward, direct, rtol=1e-10)


def rober(t, y, k):
    xp = anyxp.backend(like=y).xp
    r1, r2, r3 = k[0] * y[0], k[2] * y[1] * y[2], k[1] * y[1] ** 2
    return xp.stack([-r1 + r2, r1 - r2 - r3, r3])


@pytest.mark.parametrize("mode", ["checkpointed", "interpolating", "forward"])
def test_a_stiff_problem_with_rodas5p(mode):
    # ROBER (eigenvalues to -1e4): the rate constants' effect on y3 over [0, 10].
    k0 = np.array([0.04, 3e7, 1e4])
    te = np.array([0.0, 1.0, 10.0])

    def y3(k, backend=None, mode=None):
        sol = solve(
            rober, (0.0, 10.0), backend.asarray([1.0, 0.0, 0.0]) if backend else np.array(
                [1.0, 0.0, 0.0]
            ), args=(k,), t_eval=te, method="rodas5p", rtol=1e-10, atol=1e-14,
            sensitivity=mode,
        )  # fmt: skip
        return sol.y[-1, 2]

    scale = k0 * 1e-6  # relative steps for constants of such different sizes
    fd = np.array(
        [(y3(k0 + s * e) - y3(k0 - s * e)) / (2 * s) for s, e in zip(scale, np.eye(3), strict=True)]
    )
    be = on("jax")
    g = be.to_numpy(be.ad.grad(lambda k: y3(k, be, mode))(be.asarray(k0)))
    np.testing.assert_allclose(g, fd, rtol=1e-5)


# -- checkpointing changes the cost, never the answer ---------------------------------------
@pytest.mark.parametrize("name", AD)
def test_checkpointed_equals_direct_whatever_the_checkpoints(name):
    be = on(name)
    te = np.linspace(0.0, 3.0, 7)

    def loss(p, mode, checkpoints=None):
        sol = solve(
            lotka_volterra, (0.0, 3.0), be.asarray(LV_Y0), args=(p,), t_eval=te, rtol=1e-9,
            atol=1e-9, sensitivity=mode, checkpoints=checkpoints,
        )  # fmt: skip
        return be.xp.sum(sol.y**2)

    p = be.asarray(LV_P)
    direct = be.to_numpy(be.ad.grad(lambda p: loss(p, "direct"))(p))
    # (jax compiles each count anew: two there, five on torch)
    for checkpoints in (1, 2, 5, None, 1000) if name == "torch" else (3, None):
        g = be.to_numpy(be.ad.grad(lambda p, c=checkpoints: loss(p, "checkpointed", c))(p))
        np.testing.assert_allclose(g, direct, rtol=1e-12, err_msg=f"checkpoints={checkpoints}")


def test_a_forward_solve_too_large_to_keep_its_states_is_replayed_instead(monkeypatch):
    """Eager checkpointed sweeps start from the states the forward solve kept; past the
    budget it keeps none, and pass one replays them: the same gradient either way."""
    pytest.importorskip("torch")
    from anyxp.ode import _explicit

    be = on("torch")
    te = np.linspace(0.0, 3.0, 7)

    def grad(p):
        def loss(p):
            sol = solve(
                lotka_volterra, (0.0, 3.0), be.asarray(LV_Y0), args=(p,), t_eval=te,
                rtol=1e-9, atol=1e-9, sensitivity="checkpointed",
            )  # fmt: skip
            return be.xp.sum(sol.y**2)

        return be.to_numpy(be.ad.grad(loss)(p))

    p = be.asarray(LV_P)
    kept = grad(p)
    monkeypatch.setattr(_explicit, "KEPT_BYTES", 0)
    replayed = grad(p)
    np.testing.assert_allclose(kept, replayed, rtol=1e-12)


def test_default_checkpoints_keep_every_step_until_the_memory_budget():
    from anyxp.ode._explicit import KEPT_BYTES
    from anyxp.ode._replay import checkpoint_slots

    small = np.zeros((1, 2))
    assert checkpoint_slots(500, small, None) == 500  # every step: nothing recomputed
    assert checkpoint_slots(500, small, 7) == 7  # asked for: obeyed
    # A state so large that every step's copy would pass the budget: sqrt(steps) then.
    big = np.broadcast_to(0.0, (KEPT_BYTES // (2 * 8 * 100) + 1, 100))  # no memory
    assert checkpoint_slots(10_000, big, None) == 100


# -- linear systems: the matrix exponential ----------------------------------------------------
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 4), horizon=st.floats(0.2, 2.0))
def test_gradient_of_a_linear_system_is_the_transposed_exponential(seed, n, horizon):
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    a = m - (np.max(np.real(np.linalg.eigvals(m))) + 0.5) * np.eye(n)  # stable
    v = rng.standard_normal(n)
    be = on("torch")  # a new shape each example: torch does not recompile
    A = be.asarray(a)

    def projected(y0):
        sol = solve(lambda t, y: A @ y, (0.0, horizon), y0, rtol=1e-11, atol=1e-13)
        return be.xp.sum(sol.y[-1] * be.asarray(v))

    g = be.to_numpy(be.ad.grad(projected)(be.asarray(rng.standard_normal(n))))
    np.testing.assert_allclose(g, expm(a * horizon).T @ v, rtol=1e-7, atol=1e-9)


# -- ensembles: a trajectory's gradient is its solo gradient --------------------------------
@pytest.mark.parametrize("name", AD)
@pytest.mark.parametrize("mode", ["checkpointed", "backsolve"])
def test_ensemble_gradients_equal_solo_gradients(name, mode):
    be = on(name)
    xp = be.xp
    y0 = be.asarray([[1.0, 1.0], [0.5, 1.5], [2.0, 0.3]])
    params = be.asarray([[1.5, 1.0, 3.0, 1.0], [1.0, 0.8, 2.0, 1.2], [0.7, 1.0, 1.0, 1.0]])
    te = [0.0, 1.0, 2.0]

    def batch_rhs(t, y, p):
        return xp.stack(
            [p[:, 0] * y[:, 0] - p[:, 1] * y[:, 0] * y[:, 1],
             -p[:, 2] * y[:, 1] + p[:, 3] * y[:, 0] * y[:, 1]], axis=1,
        )  # fmt: skip

    def ens_loss(p, y0):
        sol = solve_ensemble(
            batch_rhs, (0.0, 2.0), y0, params=p, t_eval=te, rtol=1e-10, atol=1e-12,
            sensitivity=mode,
        )  # fmt: skip
        return xp.sum(sol.y[:, :, 1] ** 2)

    gp, gy = be.ad.grad(ens_loss, argnums=(0, 1))(params, y0)
    for j in range(3):

        def solo_loss(p, y, j=j):
            sol = solve(
                lotka_volterra, (0.0, 2.0), y, args=(p,), t_eval=te, rtol=1e-10, atol=1e-12,
                sensitivity=mode,
            )  # fmt: skip
            return xp.sum(sol.y[:, 1] ** 2)

        sp, sy = be.ad.grad(solo_loss, argnums=(0, 1))(params[j], y0[j])
        np.testing.assert_allclose(be.to_numpy(gp[j]), be.to_numpy(sp), rtol=1e-7)
        np.testing.assert_allclose(be.to_numpy(gy[j]), be.to_numpy(sy), rtol=1e-7)


# -- the interval's ends, jit, classic autograd, and what is refused ----------------------------
@pytest.mark.parametrize("name", AD)
@pytest.mark.parametrize("mode", ["checkpointed", "direct", "backsolve"])
def test_derivatives_with_respect_to_the_interval(name, mode):
    be = on(name)

    def y_at_end(t0, t1):
        sol = solve(
            decay, (t0, t1), be.asarray([2.0]), args=(Z,), rtol=1e-12, atol=1e-14, sensitivity=mode
        )
        return sol.y[-1, 0]

    g0, g1 = be.ad.grad(y_at_end, argnums=(0, 1))(be.asarray(0.2), be.asarray(1.0))
    y1 = 2 * math.exp(-Z * 0.8)
    assert abs(float(g1) - (-Z * y1)) < 1e-7 * Z * y1  # dy(t1)/dt1 = f(t1, y(t1))
    assert abs(float(g0) - Z * y1) < 1e-7 * Z * y1  # dy(t1)/dt0 = -Φ f(t0, y0)


@pytest.mark.parametrize("mode", ["checkpointed", "backsolve", "direct"])
def test_gradients_inside_jax_jit(mode):
    be = on("jax")
    jax = pytest.importorskip("jax")
    grad = jax.jit(jax.grad(lambda z: y_end(be, z, mode=mode, max_steps=400)))
    exact = -2 * T * math.exp(-Z * T)
    assert abs(float(grad(Z)) - exact) < 1e-7 * abs(exact)
    assert abs(float(grad(Z + 0.1)) - (-2 * T * math.exp(-(Z + 0.1) * T))) < 1e-7


def test_classic_torch_autograd_and_no_warnings():
    torch = pytest.importorskip("torch")
    on("torch")
    z = torch.tensor(Z, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing about requires_grad escapes
        sol = solve(decay, (0.0, T), y0, args=(z,), rtol=1e-12, atol=1e-14)
        sol.y[-1, 0].backward()
    assert abs(float(z.grad) - (-2 * T * math.exp(-Z * T))) < 1e-8
    assert abs(float(y0.grad[0]) - math.exp(-Z * T)) < 1e-10


@pytest.mark.parametrize("name", ["numpy", "array_api_strict"])
def test_backends_without_ad_refuse_a_sensitivity_and_name_who_has_it(name):
    be = on(name)
    with pytest.raises(anyxp.UnsupportedError, match=r"ad\.custom.*jax.*torch.*differences"):
        solve(decay, (0.0, 1.0), be.asarray([1.0]), args=(Z,), sensitivity="checkpointed")
    sol = solve(decay, (0.0, 1.0), be.asarray([1.0]), args=(Z,))  # no sensitivity: fine
    assert sol.success


@pytest.mark.parametrize("method", ["tsit5", "rodas5p"])
def test_forward_differences_give_sensitivities_without_ad(method, lv_reference):
    sol = solve(
        lotka_volterra, (0.0, 10.0), LV_Y0, args=(LV_P,), t_eval=LV_TE, rtol=1e-12, atol=1e-12,
        method=method, sensitivity="forward-differences",
    )  # fmt: skip
    s = sol.sensitivities
    assert s["y0"].shape == (101, 2, 2) and s["args"][0].shape == (101, 2, 4)
    residual = 2 * (sol.y[:, 1] - 1.0)  # the loss's derivative in y2 at each stored time
    fd_p, fd_y = lv_reference
    np.testing.assert_allclose(residual @ s["args"][0][:, 1, :], fd_p, rtol=1e-6)
    np.testing.assert_allclose(residual @ s["y0"][:, 1, :], fd_y, rtol=1e-6)
    np.testing.assert_allclose(s["y0"][0], np.eye(2))  # y(t0) = y0


def test_bad_sensitivity_options_are_clear_errors():
    be = on("jax")
    with pytest.raises(ValueError, match="checkpointed, direct, backsolve"):
        solve(decay, (0.0, 1.0), be.asarray([1.0]), args=(Z,), sensitivity="adjoint")
    with pytest.raises(ValueError, match="checkpoints must be a positive int"):
        solve(decay, (0.0, 1.0), be.asarray([1.0]), args=(Z,), checkpoints=0)
    with pytest.raises(ValueError, match="applies to sensitivity='checkpointed'"):
        solve(decay, (0.0, 1.0), be.asarray([1.0]), args=(Z,), sensitivity="direct", checkpoints=4)


def test_backsolve_restarts_from_the_stored_states_on_a_dissipative_problem():
    """Solved backwards alone, y' = -100 y grows like e^800 and the gradient is NaN; the
    adjoint restarts the state from the forward solve's value at each saved time."""
    pytest.importorskip("torch")
    be = anyxp.backend("torch", dtype="float64")
    te = np.linspace(0.0, 8.0, 17)

    def loss(k):
        sol = solve(
            lambda t, y, k: -k * y, (0.0, 8.0), be.asarray([1.0]), args=(k,), t_eval=te,
            sensitivity="backsolve", rtol=1e-8, atol=1e-12,
        )  # fmt: skip
        return be.xp.sum(sol.y)

    k = 100.0
    grad = float(be.ad.grad(loss)(be.asarray(k)))
    exact = float(np.sum(-te * np.exp(-k * te)))  # about -1e-22: every term decays at once
    assert np.isfinite(grad)
    assert abs(grad - exact) < 1e-10
