"""Stiff solvers: the Bari test set's reference solutions, Jacobian sources, ensembles."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import anyxp
from anyxp.ode import solve, solve_ensemble
from anyxp.ode.problems import PROBLEMS, van_der_pol, van_der_pol_jac
from anyxp.ode.tableaux import KVAERNO5, RODAS5P
from anyxp.testing import strategies as axst
from conftest import float64_backend

NUMPY = anyxp.backend("numpy")
STIFF = ("rodas5p", "kvaerno5")
BARI_STIFF = ("robertson", "hires", "van_der_pol_stiff", "oregonator")


float64 = float64_backend


def max_relative_error(y, reference):
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    ref = np.asarray(reference)
    return float(np.max(np.abs(y - ref) / np.abs(ref)))


# -- the tableaux ------------------------------------------------------------------------
def test_kvaerno5_stages_are_consistent_and_stiffly_accurate():
    tab = KVAERNO5
    for i, (row, c) in enumerate(zip(tab.a, tab.c, strict=True)):
        assert sum(row) + (tab.gamma if i else 0.0) == pytest.approx(c, abs=1e-13)
    assert sum(tab.e) == pytest.approx(0.0, abs=1e-14)  # both solutions are consistent


def test_rodas5p_is_l_stable_and_order_five_on_a_linear_problem():
    # For y' = λy, one step is a rational function R(z); L-stability: R(z) -> 0 as z -> -inf.
    def step(z):
        g = RODAS5P.gamma
        ks = []
        for i in range(RODAS5P.stages):
            u = 1.0 + sum(a * k for a, k in zip(RODAS5P.a[i], ks, strict=False))
            rhs = z * u + sum(c * k for c, k in zip(RODAS5P.C[i], ks, strict=False))
            ks.append(rhs / (1 / g - z))
        return 1.0 + sum(m * k for m, k in zip(RODAS5P.m, ks, strict=True))

    assert abs(step(-1e8)) < 1e-6
    assert abs(step(-10.0)) < 1.0  # A-stable along the negative axis
    errors = [abs(step(-h) - math.exp(-h)) for h in (0.1, 0.05)]
    assert math.log2(errors[0] / errors[1]) > 5.5  # local error O(h^6)


# -- accuracy: the Bari IVP test set -----------------------------------------------------
@pytest.mark.parametrize("method", STIFF)
@pytest.mark.parametrize("name", BARI_STIFF)
def test_stiff_solvers_reach_the_bari_reference_solutions(name, method):
    p = PROBLEMS[name]
    sol = solve(
        p.f,
        p.t_span,
        np.array(p.y0),
        method=method,
        rtol=1e-10,
        atol=p.atol or 1e-12,
        jac=p.jac,
    )
    assert sol.status == 0, sol.message
    assert max_relative_error(sol.y[-1], p.final) < 1e-6
    assert sol.stats["njev"] == sol.stats["nlu"] == sol.stats["steps"] > 0


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "dop853"])
def test_explicit_solvers_reach_the_bari_pleiades_reference(method):
    p = PROBLEMS["pleiades"]
    sol = solve(p.f, p.t_span, np.array(p.y0), method=method, rtol=1e-11, atol=1e-11)
    assert sol.status == 0, sol.message
    assert max_relative_error(sol.y[-1], p.final) < 1e-6


BACKENDS_FLOAT64 = [
    pytest.param("torch", marks=pytest.mark.anyxp_requires("torch")),
    pytest.param("jax", marks=pytest.mark.anyxp_requires("jax")),
    "array_api_strict",
]


@pytest.mark.parametrize("method", STIFF)
@pytest.mark.parametrize("name", BACKENDS_FLOAT64)
def test_hires_reaches_the_bari_reference_on_every_float64_backend(name, method):
    """Jacobians from AD (torch, jax) or finite differences (array_api_strict)."""
    be = float64(name)
    p = PROBLEMS["hires"]
    sol = solve(p.f, p.t_span, be.asarray(p.y0), method=method, rtol=1e-8, atol=1e-12)
    assert int(sol.status) == 0
    assert anyxp.backend(like=sol.y).name == be.name
    assert max_relative_error(be.to_numpy(sol.y[-1, ...]), p.final) < 1e-6


@pytest.mark.parametrize("method", STIFF)
@settings(max_examples=15, deadline=None)
@given(problem=axst.linear_ode_problems(NUMPY, stiffness=1e4))
def test_stiff_linear_systems_match_the_matrix_exponential(method, problem):
    sol = solve(problem.f, problem.t_span, problem.y0, method=method, rtol=1e-8, atol=1e-10)
    assert sol.status == 0, sol.message
    np.testing.assert_allclose(sol.y[-1], problem.solution(problem.t_span[1]), atol=1e-6)
    # The stiff mode decays at rate 1e4; an explicit method would need ~1e4·t1 steps.
    assert sol.stats["accepted"] < 300


@pytest.mark.parametrize("method", STIFF)
def test_non_autonomous_stiff_problem_is_tracked(method):
    """y' = -1000 (y - cos t) - sin t has the solution y = cos t: needs ∂f/∂t in Rosenbrock."""

    def f(t, y):
        return -1000.0 * (y - math.cos(t)) - math.sin(t)

    t_eval = np.linspace(0.0, 3.0, 7)
    sol = solve(f, (0.0, 3.0), np.array([1.0]), method=method, rtol=1e-8, t_eval=t_eval)
    np.testing.assert_allclose(sol.y[-1], [math.cos(3.0)], atol=1e-8)
    # Between steps: Rodas5P's own 4th-order interpolant; Kvaerno5's cubic Hermite.
    np.testing.assert_allclose(
        sol.y[:, 0], np.cos(t_eval), atol=1e-7 if method == "rodas5p" else 2e-5
    )


def test_a_stiff_method_takes_far_fewer_steps_than_an_explicit_one():
    p = PROBLEMS["van_der_pol_stiff"]
    span = (0.0, 50.0)
    stiff = solve(p.f, span, np.array(p.y0), method="rodas5p", jac=p.jac, rtol=1e-6)
    explicit = solve(p.f, span, np.array(p.y0), method="tsit5", rtol=1e-6)
    assert stiff.success and stiff.stats["steps"] < 200
    assert explicit.status == 4  # Hairer's stiffness test stopped it
    assert "rodas5p" in explicit.message and explicit.stats["steps"] > 10 * stiff.stats["steps"]


# -- Jacobians ---------------------------------------------------------------------------
@pytest.mark.parametrize("method", STIFF)
def test_jacobian_sources_agree(method):
    p = PROBLEMS["robertson"]
    span, y0 = (0.0, 40.0), np.array(p.y0)
    runs = {
        "analytic": solve(p.f, span, y0, method=method, jac=p.jac, rtol=1e-9, atol=1e-14),
        "finite differences": solve(p.f, span, y0, method=method, rtol=1e-9, atol=1e-14),
    }
    # Finite differences cost n extra evaluations of f per Jacobian; a given jac costs none.
    fd, exact = runs["finite differences"].stats, runs["analytic"].stats
    assert fd["nfev"] - exact["nfev"] >= 3 * fd["njev"] - 3 * exact["njev"] - 50
    if "torch" in anyxp.get_registry().available_backends():
        be = float64("torch")
        sol = solve(p.f, span, be.asarray(p.y0), method=method, rtol=1e-9, atol=1e-14)
        runs["torch AD"] = sol
    for label, sol in runs.items():
        y = np.asarray(sol.backend.to_numpy(sol.y[-1]))
        np.testing.assert_allclose(y, runs["analytic"].y[-1], rtol=1e-6, atol=1e-12, err_msg=label)


def test_a_jacobian_of_the_wrong_shape_is_refused():
    p = PROBLEMS["robertson"]
    with pytest.raises(ValueError, match=r"jac returned shape \(2, 2\), expected \(3, 3\)"):
        solve(p.f, (0.0, 1.0), np.array(p.y0), method="rodas5p", jac=lambda t, y: np.eye(2))


@pytest.mark.parametrize("method", STIFF)
def test_dense_output_of_stiff_methods_is_accurate_between_steps(method):
    p = PROBLEMS["van_der_pol_stiff"]
    span, y0 = (0.0, 10.0), np.array(p.y0)
    sol = solve(p.f, span, y0, method=method, jac=p.jac, rtol=1e-8, dense_output=True)
    t_mid = np.linspace(0.3, 9.7, 17)
    fine = solve(p.f, span, y0, method="rodas5p", jac=p.jac, rtol=1e-11, t_eval=t_mid)
    np.testing.assert_allclose(sol(t_mid), fine.y, rtol=1e-5, atol=1e-6)


# -- every backend, compiled, ensembles ----------------------------------------------------
def lin(t, y):
    xp = anyxp.backend(like=y).xp
    return xp.stack([-100.0 * y[0] + y[1], -0.5 * y[1]])


@pytest.mark.parametrize("method", STIFF)
def test_stiff_solve_agrees_on_every_backend(method):
    results = {}
    builtin = ("numpy", "torch", "jax", "array_api_strict", "dask", "cupy")
    for name in anyxp.get_registry().available_backends():
        if name not in builtin or "float64" not in anyxp.backend(name).capabilities:
            continue  # third-party plugins (the sparse example) prove themselves elsewhere
        be = float64(name)
        opts = {"rtol": 1e-8, "atol": 1e-10}
        t_eval = np.array([0.0, 0.5, 1.0])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*solved in memory with numpy")
            y0 = be.asarray([1.0, 1.0])
            sol = solve(lin, (0.0, 1.0), y0, method=method, t_eval=t_eval, **opts)
        assert anyxp.backend(like=sol.y).name == name
        results[name] = be.to_numpy(sol.y)
    exact_y2 = np.exp(-0.5 * np.array([0.0, 0.5, 1.0]))
    interpolation = 1e-7 if method == "rodas5p" else 2e-5  # kvaerno5: cubic Hermite
    for name, y in results.items():
        np.testing.assert_allclose(y[:, 1], exact_y2, rtol=interpolation, err_msg=name)


def vdp_batch(t, y, mu):
    xp = anyxp.backend(like=y).xp
    return xp.stack([y[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], axis=1)


@pytest.mark.parametrize("method", STIFF)
@pytest.mark.parametrize(
    "name", ["numpy", pytest.param("jax", marks=pytest.mark.anyxp_requires("jax"))]
)
def test_stiff_ensemble_equals_solo_solves(name, method):
    be = float64(name)
    mus = np.array([1.0, 30.0, 300.0, 1000.0])
    y0 = np.tile([2.0, 0.0], (4, 1))
    span, t_eval = (0.0, 3.0), np.array([0.0, 1.5, 3.0])
    ens = solve_ensemble(
        vdp_batch,
        span,
        be.asarray(y0),
        params=be.asarray(mus),
        method=method,
        rtol=1e-8,
        atol=1e-10,
        t_eval=t_eval,
    )
    assert ens.success
    steps = be.to_numpy(ens.stats["accepted"])
    assert len(set(steps.tolist())) > 1  # each trajectory took its own steps
    for j, mu in enumerate(mus):
        solo = solve(
            van_der_pol,
            span,
            y0[j],
            args=(mu,),
            method="rodas5p",
            jac=van_der_pol_jac,
            rtol=1e-10,
            atol=1e-12,
            t_eval=t_eval,
        )
        np.testing.assert_allclose(be.to_numpy(ens.y[:, j, :]), solo.y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", STIFF)
def test_one_trajectory_takes_the_steps_of_a_one_row_ensemble(method):
    # A single eager trajectory has its own step code (rodas5p's stage matrix, kvaerno5's
    # Newton control in floats and its stop at the first failed stage); the one-row
    # ensemble runs the general batched code. Through VDPOL's fast transition, with
    # Newton failures, both must take the same steps to the same states.
    p = PROBLEMS["van_der_pol_stiff"]

    def f_rows(t, y):
        return np.stack([p.f(t[i], y[i]) for i in range(y.shape[0])])

    def jac_rows(t, y):
        return np.stack([p.jac(t[i], y[i]) for i in range(y.shape[0])])

    span, t_eval, opts = (0.0, 1000.0), np.linspace(0.0, 1000.0, 5), {"rtol": 1e-4, "atol": 1e-7}
    solo = solve(p.f, span, np.array(p.y0), method=method, jac=p.jac, t_eval=t_eval, **opts)
    ens = solve_ensemble(
        f_rows, span, np.array([p.y0]), method=method, jac=jac_rows, t_eval=t_eval, **opts
    )
    assert solo.success and ens.success
    assert solo.stats["rejected"] >= 5  # the transition is in the span

    def row(key):  # per row (accepted, rejected) or for the whole batch (nfev, njev)
        return int(np.asarray(ens.stats[key]).reshape(-1)[0])

    for key in ("accepted", "rejected", "njev"):
        assert solo.stats[key] == row(key), key
    np.testing.assert_allclose(solo.y, ens.y[:, 0, :], rtol=1e-9, atol=1e-12)
    if method == "kvaerno5":  # a failed stage ends the attempt: fewer evaluations of f
        assert solo.stats["nfev"] < row("nfev")
    else:
        assert solo.stats["nfev"] == row("nfev")


@pytest.mark.parametrize("method", STIFF)
def test_the_predictive_controller_rejects_fewer_steps_through_a_transition(method, monkeypatch):
    from anyxp.ode._implicit import _Implicit

    p = PROBLEMS["van_der_pol_stiff"]
    opts = {"method": method, "jac": p.jac, "rtol": 1e-6, "atol": 1e-9}
    predictive = solve(p.f, (0.0, 1000.0), np.array(p.y0), **opts)
    monkeypatch.setattr(_Implicit, "predictive", property(lambda self: False))
    plain = solve(p.f, (0.0, 1000.0), np.array(p.y0), **opts)
    assert predictive.success and plain.success
    assert predictive.stats["rejected"] < 0.5 * plain.stats["rejected"]
    np.testing.assert_allclose(predictive.y[-1], plain.y[-1], rtol=1e-5)  # the same solution


def test_the_predictive_factor_holds_a_step_whose_error_grew():
    from anyxp.ode._explicit import step_factor

    plain = step_factor(0.5, -0.2)
    assert step_factor(0.5, -0.2, (1.0, 0.05, 1.0)) < plain  # error grew tenfold
    assert step_factor(0.5, -0.2, (1.0, 0.5, 1.0)) == pytest.approx(plain)  # steady
    assert step_factor(0.5, -0.2, (1.0, 0.9, 1.0)) == pytest.approx(plain)  # never above


@pytest.mark.anyxp_requires("jax")
def test_stiff_solve_is_one_jax_program():
    import jax

    be = float64("jax")
    p = PROBLEMS["robertson"]
    traces = []

    @jax.jit
    def final(y0):
        traces.append(1)
        return solve(p.f, (0.0, 100.0), y0, method="rodas5p", rtol=1e-8, atol=1e-12).y[-1]

    a = final(be.asarray(p.y0))
    b = final(be.asarray([0.9, 0.0, 0.1]))
    assert len(traces) == 1
    ref = solve(p.f, (0.0, 100.0), np.array(p.y0), method="rodas5p", jac=p.jac, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(a), ref.y[-1], rtol=1e-6, atol=1e-12)
    assert not np.allclose(np.asarray(a), np.asarray(b))
