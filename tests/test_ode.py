"""anyxp.ode.solve: accuracy against exact solutions, every backend, compiled, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings

import anyxp
from anyxp.ode import solve
from anyxp.ode.problems import PROBLEMS
from anyxp.ode.tableaux import TABLEAUX
from anyxp.testing import assert_backends_agree
from anyxp.testing import strategies as axst

NUMPY = anyxp.backend("numpy")


def decay(t, y):
    return -0.5 * y


# -- the tableaux are consistent ---------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TABLEAUX))
def test_tableau_order_conditions(name):
    tab = TABLEAUX[name]
    a = np.zeros((tab.stages, tab.stages))
    for i, row in enumerate(tab.a):
        a[i, : len(row)] = row
    b, c = np.array(tab.b), np.array(tab.c)
    np.testing.assert_allclose(a.sum(axis=1), c, atol=1e-14)  # row sums are the nodes
    np.testing.assert_allclose(b.sum(), 1.0, atol=1e-14)  # order 1
    np.testing.assert_allclose(b @ c, 1 / 2, atol=1e-14)  # order 2
    np.testing.assert_allclose(b @ c**2, 1 / 3, atol=1e-14)  # order 3
    np.testing.assert_allclose(b @ (a @ c), 1 / 6, atol=1e-14)
    np.testing.assert_allclose(b @ c**3, 1 / 4, atol=1e-14)  # order 4
    if tab.e is not None:
        np.testing.assert_allclose(sum(tab.e), 0.0, atol=1e-14)  # both weights sum to 1
    if tab.dense is not None:
        # The interpolant reproduces the step's end: b_i(1) = b_i.
        np.testing.assert_allclose(np.array(tab.dense).sum(axis=1), b, atol=1e-12)


# -- accuracy ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["tsit5", "dopri5", "dop853"])
@settings(max_examples=20, deadline=None)
@given(problem=axst.ode_problems(NUMPY))
def test_adaptive_methods_reach_exact_solutions(method, problem):
    sol = solve(problem.f, problem.t_span, problem.y0, method=method, rtol=1e-9, atol=1e-11)
    assert sol.status == 0, sol.message
    np.testing.assert_allclose(sol.y[-1], problem.solution(problem.t_span[1]), rtol=1e-6, atol=1e-7)
    assert float(sol.t[-1]) == problem.t_span[1]


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "dop853"])
def test_dense_output_and_t_eval_are_accurate_between_steps(method):
    t_eval = np.linspace(0.0, 4.0, 201)
    sol = solve(
        decay,
        (0.0, 4.0),
        np.array([2.0]),
        method=method,
        t_eval=t_eval,
        dense_output=True,
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(sol.t, t_eval)
    np.testing.assert_allclose(sol.y[:, 0], 2 * np.exp(-0.5 * t_eval), rtol=1e-8)
    assert sol.stats["accepted"] < len(t_eval)  # the interpolant, not extra steps, made them
    np.testing.assert_allclose(sol(1.234)[0], 2 * np.exp(-0.617), rtol=1e-8)
    np.testing.assert_allclose(
        sol([0.5, 3.9])[:, 0], 2 * np.exp(-0.5 * np.array([0.5, 3.9])), rtol=1e-8
    )


@pytest.mark.parametrize("name", ["lotka_volterra", "pleiades"])
def test_dop853_does_the_work_of_hairers_code(name):
    """Same tableau, error norm and controller as Hairer's DOP853 (as scipy ports it)."""
    from scipy.integrate import solve_ivp

    p = PROBLEMS[name]
    y0 = np.array(p.y0)
    ours = solve(p.f, p.t_span, y0, method="dop853", rtol=1e-8, atol=1e-11)
    theirs = solve_ivp(p.f, p.t_span, y0, method="DOP853", rtol=1e-8, atol=1e-11)
    assert abs(ours.stats["nfev"] - theirs.nfev) <= 0.02 * theirs.nfev
    np.testing.assert_allclose(ours.y[-1], theirs.y[:, -1], rtol=1e-6, atol=1e-9)


def test_rk4_converges_at_fourth_order():
    errors = []
    for dt in (0.1, 0.05):
        sol = solve(decay, (0.0, 2.0), np.array([1.0]), method="rk4", dt=dt)
        errors.append(abs(sol.y[-1, 0] - math.exp(-1.0)))
    assert 14 < errors[0] / errors[1] < 18


def test_backward_integration():
    sol = solve(decay, (3.0, 0.0), np.array([math.exp(-1.5)]), rtol=1e-10, atol=1e-12)
    assert sol.status == 0 and float(sol.t[-1]) == 0.0
    assert np.all(np.diff(sol.t) < 0)
    np.testing.assert_allclose(sol.y[-1, 0], 1.0, rtol=1e-8)


def test_arenstorf_orbit_closes():
    p = PROBLEMS["arenstorf"]
    sol = solve(p.f, p.t_span, np.array(p.y0), rtol=1e-12, atol=1e-12)
    assert sol.status == 0
    np.testing.assert_allclose(sol.y[-1], p.final, atol=1e-6)


def test_stats_count_what_happened():
    sol = solve(decay, (0.0, 10.0), np.array([1.0]), rtol=1e-8, atol=1e-10)
    s = sol.stats
    assert s["steps"] == s["accepted"] + s["rejected"] and s["accepted"] == len(sol.t) - 1
    assert (
        s["nfev"] == 2 + 6 * s["steps"]
    )  # f(t0), the starting-step probe, 6 new stages a step (FSAL)
    assert s["njev"] == 0 and s["nlu"] == 0


# -- every backend -----------------------------------------------------------------------
def _lorenz_on(y0):
    p = PROBLEMS["lorenz"]
    return solve(p.f, (0.0, 2.0), y0, t_eval=np.linspace(0, 2, 9), rtol=1e-10, atol=1e-10).y


def test_the_same_solve_agrees_on_every_backend():
    backends = ["numpy", "torch", "jax", "array_api_strict"]
    results = assert_backends_agree(
        _lorenz_on, np.array([1.0, 0.0, 0.0]), backends=backends, rtol=1e-8, atol=1e-8
    )
    assert set(results) == set(backends)


def test_dask_solves_one_trajectory_in_memory_and_returns_dask_arrays():
    pytest.importorskip("dask")
    be = anyxp.backend("dask")
    with pytest.warns(UserWarning, match="solved in memory with numpy"):  # it says so
        sol = solve(
            decay, (0.0, 0.5), be.asarray([1.0, 2.0]), rtol=1e-6, atol=1e-9, dense_output=True
        )
    assert anyxp.backend(like=sol.y).name == "dask"
    assert anyxp.backend(like=sol.t).name == "dask"
    assert anyxp.backend(like=sol(0.25)).name == "dask"
    exact = np.array([1.0, 2.0]) * math.exp(-0.25)
    np.testing.assert_allclose(be.to_numpy(sol.y[-1]), exact, rtol=1e-5)
    np.testing.assert_allclose(be.to_numpy(sol(0.5)), exact, rtol=1e-5)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_results_keep_the_input_dtype_and_library(name):
    be = anyxp.backend(name, dtype="float32")
    sol = solve(decay, (0.0, 1.0), be.asarray([1.0]), rtol=1e-4, atol=1e-7, t_eval=[0.0, 0.5, 1.0])
    assert anyxp.backend(like=sol.y).name == name
    assert sol.y.dtype == be.float_dtype and sol.t.dtype == be.float_dtype
    np.testing.assert_allclose(
        be.to_numpy(sol.y)[:, 0], np.exp(-0.5 * np.array([0.0, 0.5, 1.0])), rtol=1e-4
    )


def test_jax_solve_is_one_program_under_jit_and_vmap():
    jax = pytest.importorskip("jax")
    be = anyxp.backend("jax", dtype="float64")
    expected = _lorenz_on(np.array([1.0, 0.0, 0.0]))
    traces = []

    def run(y0):
        traces.append(1)
        return _lorenz_on(y0)

    jitted = jax.jit(run)
    np.testing.assert_allclose(
        np.asarray(jitted(be.asarray([1.0, 0.0, 0.0]))), expected, rtol=1e-8, atol=1e-8
    )
    jitted(be.asarray([1.0, 0.1, 0.0]))
    assert len(traces) == 1  # the adaptive loop is traced, not unrolled per step
    batch = jax.vmap(_lorenz_on)(be.asarray([[1.0, 0.0, 0.0], [1.0, 0.1, 0.0]]))
    np.testing.assert_allclose(np.asarray(batch[0]), expected, rtol=1e-8, atol=1e-8)
    other = _lorenz_on(np.array([1.0, 0.1, 0.0]))
    np.testing.assert_allclose(np.asarray(batch[1]), other, rtol=1e-8, atol=1e-8)


# -- bad input: a clear error, or a status that says what happened ---------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"y0": np.array([np.nan])}, ValueError, "NaN or infinity"),
        ({"t_span": (0.0,)}, ValueError, "pair"),
        ({"t_span": (0.0, math.inf)}, ValueError, "finite"),
        ({"rtol": 0.0}, ValueError, "rtol > 0"),
        ({"method": "rk45"}, ValueError, "tsit5, dopri5, dop853, rk4, rodas5p, kvaerno5"),
        ({"method": "rk4"}, ValueError, "dt > 0"),
        ({"t_eval": [0.5, 2.0]}, ValueError, "inside t_span"),
        ({"t_eval": [0.5, 0.2]}, ValueError, "sorted"),
        ({"max_steps": 0}, ValueError, "max_steps"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, error, match):
    call = {"f": decay, "t_span": (0.0, 1.0), "y0": np.array([1.0])} | kwargs
    with pytest.raises(error, match=match):
        solve(call.pop("f"), call.pop("t_span"), call.pop("y0"), **call)


def test_f_of_the_wrong_shape_dtype_or_library():
    torch = pytest.importorskip("torch")
    y0 = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        solve(lambda t, y: np.ones(3), (0, 1), y0)
    with pytest.raises(TypeError, match="dtype float32"):
        solve(lambda t, y: y.astype(np.float32), (0, 1), y0)
    with pytest.raises(TypeError, match="same library"):
        solve(lambda t, y: torch.as_tensor(y), (0, 1), y0)


def test_max_steps_ends_with_a_status():
    sol = solve(decay, (0.0, 100.0), np.array([1.0]), rtol=1e-12, atol=1e-14, max_steps=10)
    assert sol.status == 1 and not sol.success and "max_steps" in sol.message
    assert sol.stats["steps"] == 10


def test_a_blow_up_ends_with_a_status_not_a_hang():
    # y' = y², y(0) = 1 blows up at t = 1.
    sol = solve(lambda t, y: y * y, (0.0, 2.0), np.array([1.0]), rtol=1e-8, atol=1e-10)
    assert sol.status in (2, 3), sol.message
    assert float(sol.t[-1]) < 1.0 + 1e-6
    assert "step size" in sol.message or "non-finite" in sol.message.lower() or "NaN" in sol.message


def test_progress_bar(capsys):
    solve(decay, (0.0, 5.0), np.array([1.0]), progress=True)
    assert "100%" in capsys.readouterr().err


def test_cli_main_job():
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "anyxp", "solve", "lorenz", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["backend"] == "numpy" and result["status"] == 0
    reference = solve(
        PROBLEMS["lorenz"].f, (0, 10), np.array([1.0, 0, 0]), rtol=1e-12, atol=1e-12
    ).y[-1]
    np.testing.assert_allclose(result["y_final"], reference, rtol=1e-4)


# -- DETEST (Hull, Enright, Fellen & Sedgwick 1972): problems with closed-form solutions --
def _kepler(e: float, t: float) -> np.ndarray:
    """DETEST D: the two-body orbit of eccentricity e at time t (period 2π), exactly."""
    E = t  # Kepler's equation E - e sin E = t, by Newton's method
    for _ in range(50):
        E -= (E - e * math.sin(E) - t) / (1 - e * math.cos(E))
    r = 1 - e * math.cos(E)
    w = math.sqrt(1 - e * e)
    return np.array([math.cos(E) - e, w * math.sin(E), -math.sin(E) / r, w * math.cos(E) / r])


def _two_body(t, y):
    xp = anyxp.backend(like=y).xp
    r3 = (y[0] ** 2 + y[1] ** 2) ** 1.5
    return xp.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])


DETEST = {
    "A2": (lambda t, y: -(y**3) / 2, [1.0], lambda t: [1 / math.sqrt(t + 1)]),
    "A3": (lambda t, y: y * math.cos(t), [1.0], lambda t: [math.exp(math.sin(t))]),
    "A4": (
        lambda t, y: y / 4 * (1 - y / 20),
        [1.0],
        lambda t: [20 / (1 + 19 * math.exp(-t / 4))],
    ),
    **{
        f"D{i}": (_two_body, list(_kepler(e, 0.0)), lambda t, e=e: _kepler(e, t))
        for i, e in ((1, 0.1), (3, 0.5), (5, 0.9))
    },
}


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "dop853"])
@pytest.mark.parametrize("name", sorted(DETEST))
def test_detest_problems_are_solved_to_their_exact_solutions(name, method):
    f, y0, exact = DETEST[name]
    sol = solve(f, (0.0, 20.0), np.array(y0), method=method, rtol=1e-11, atol=1e-13)
    assert sol.status == 0, sol.message
    np.testing.assert_allclose(sol.y[-1], exact(20.0), rtol=1e-6, atol=1e-9)
