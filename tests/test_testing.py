"""anyxp.testing: assert_close, the strategies, differential testing, the pytest plugin."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyxp
from anyxp.testing import assert_backends_agree, assert_close
from anyxp.testing import strategies as axst

torch = pytest.importorskip("torch")


# -- assert_close ----------------------------------------------------------------------
def test_assert_close_names_the_worst_element():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    desired = np.array([[1.0, 2.0], [3.5, 4.0 + 1e-9]])
    with pytest.raises(AssertionError) as info:
        assert_close(actual, desired)
    message = str(info.value)
    assert "2 of 4 elements differ" in message
    assert "Worst at index (1, 0)" in message and "3.5" in message
    assert "max abs error 0.5" in message


def test_assert_close_checks_the_namespace_unless_told_not_to():
    t, n = torch.tensor([1.0, 2.0], dtype=torch.float64), np.array([1.0, 2.0])
    with pytest.raises(
        AssertionError, match="different backends: actual is torch, desired is numpy"
    ):
        assert_close(t, n)
    assert_close(t, n, check_namespace=False)


def test_assert_close_checks_dtype_and_shape():
    with pytest.raises(AssertionError, match="dtypes differ"):
        assert_close(np.ones(2, dtype=np.float32), np.ones(2))
    assert_close(np.ones(2, dtype=np.float32), np.ones(2), check_dtype=False)
    with pytest.raises(AssertionError, match="shapes differ"):
        assert_close(np.ones((2, 1)), np.ones(2))


def test_assert_close_tolerance_follows_the_dtype():
    base = np.array([1.0, 2.0])
    assert_close((base * (1 + 1e-6)).astype(np.float32), base.astype(np.float32))
    with pytest.raises(AssertionError):
        assert_close(base * (1 + 1e-6), base)


# -- strategies --------------------------------------------------------------------------
def test_strategies_draw_native_arrays_on_every_backend(backend):
    @settings(max_examples=10, deadline=None)
    @given(
        x=axst.arrays(backend, shape=(2, 3), min_value=-1, max_value=1),
        m=axst.matrices(backend, 3, condition_max=50),
        s=axst.spd_matrices(backend, 3, condition_max=50),
    )
    def check(x, m, s):
        for a in (x, m, s):
            assert anyxp.backend(like=a).name == backend.name
            assert a.dtype == backend.float_dtype
        host = backend.to_numpy(x)
        assert host.shape == (2, 3) and np.all(np.abs(host) <= 1)
        assert np.linalg.cond(backend.to_numpy(m).astype(np.float64)) <= 50 * 1.01
        assert np.linalg.eigvalsh(backend.to_numpy(s).astype(np.float64)).min() >= 1 - 1e-4

    check()


@settings(max_examples=30, deadline=None)
@given(problem=axst.ode_problems(anyxp.backend("numpy")), data=st.data())
def test_ode_problem_solutions_satisfy_their_equation(problem, data):
    t0, t1 = problem.t_span
    np.testing.assert_allclose(problem.solution(t0), np.asarray(problem.y0), rtol=1e-12, atol=1e-12)
    t = data.draw(st.floats(t0 + 0.01, t1 - 0.01)) if t1 - t0 > 0.05 else (t0 + t1) / 2
    h = 1e-6
    derivative = (problem.solution(t + h) - problem.solution(t - h)) / (2 * h)
    rhs = np.asarray(problem.f(t, np.asarray(problem.solution(t))))
    np.testing.assert_allclose(derivative, rhs, rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(problem=axst.linear_ode_problems(anyxp.backend("numpy"), 3, stiffness=1e4))
def test_stiff_linear_problems_have_the_stiff_eigenvalue(problem):
    assert problem.stiff
    jac = np.stack([problem.f(0.0, e) for e in np.eye(3)], axis=1)
    assert np.linalg.eigvalsh((jac + jac.T) / 2).min() == pytest.approx(-1e4)


# -- differential testing ----------------------------------------------------------------
def _softplus_norm(x):
    xp = anyxp.backend(like=x).xp
    return xp.sqrt(xp.sum(xp.log(1.0 + xp.exp(x)) ** 2)), xp.cumulative_sum(x)


def test_backends_agree_on_a_standard_function():
    results = assert_backends_agree(
        _softplus_norm,
        np.linspace(-2, 2, 7),
        backends=["numpy", "torch", "jax", "array_api_strict"],
    )
    assert set(results) == {"numpy", "torch", "jax", "array_api_strict"}
    np.testing.assert_allclose(results["torch"][1], np.cumsum(np.linspace(-2, 2, 7)))


def test_a_function_that_leaves_its_backend_is_caught():
    def leaks(x):
        return np.asarray(anyxp.backend(like=x).to_numpy(x)) * 2

    with pytest.raises(AssertionError, match="left the backend"):
        assert_backends_agree(leaks, np.ones(3), backends=["numpy", "torch"])


def test_a_backend_that_disagrees_is_named():
    def wrong_on_torch(x):
        be = anyxp.backend(like=x)
        return x + 1e-3 if be.name == "torch" else x

    with pytest.raises(AssertionError, match="torch vs numpy"):
        assert_backends_agree(wrong_on_torch, np.ones(3), backends=["numpy", "torch"])


# -- the pytest plugin in a project with no conftest ---------------------------------------
PROJECT_TEST = """
import pytest

def test_sum(backend):
    x = backend.asarray([1.0, 2.0])
    assert float(backend.xp.sum(x)) == 3.0

@pytest.mark.anyxp_requires("ad.grad")
def test_grad(backend):
    g = backend.ad.grad(lambda v: backend.xp.sum(v * v))(backend.asarray([1.0, 2.0]))
    assert backend.to_numpy(g).tolist() == [2.0, 4.0]
"""


def run_project(tmp_path, *args):
    (tmp_path / "test_project.py").write_text(textwrap.dedent(PROJECT_TEST))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


def test_fixture_runs_once_per_installed_backend(tmp_path):
    out = run_project(tmp_path)
    assert out.returncode == 0, out.stdout[-3000:]
    for name in ("numpy", "torch", "jax", "dask", "array_api_strict"):
        assert f"test_sum[{name}] PASSED" in out.stdout
    assert "test_grad[torch] PASSED" in out.stdout and "test_grad[jax] PASSED" in out.stdout
    assert "test_grad[numpy] SKIPPED" in out.stdout
    assert "backend 'numpy' does not declare ad.grad" in out.stdout


def test_fixture_honours_the_backend_option(tmp_path):
    out = run_project(tmp_path, "--anyxp-backend", "torch")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "test_sum[torch] PASSED" in out.stdout and "test_sum[numpy]" not in out.stdout


def test_fixture_keeps_the_builtin_numpy_when_a_third_party_claims_it(site):
    """A third-party backend named numpy must neither replace nor drop the built-in one."""
    site.add(
        "impostor-numpy",
        {"numpy": "impostor"},
        {
            "impostor": """
                import anyxp
                @anyxp.hookimpl
                def anyxp_backends():
                    return [anyxp.BackendSpec(name="numpy", factory="impostor:create",
                                              capabilities={"arrays"})]
                def create(*args, **kwargs):
                    raise RuntimeError("the impostor was used")
            """
        },
    )
    (site.root / "test_project.py").write_text(textwrap.dedent(PROJECT_TEST))
    out = site.run("-m", "pytest", "-v", "-p", "no:cacheprovider", "-k", "sum", "test_project.py")
    assert "test_sum[numpy] PASSED" in out.stdout, out.stdout[-3000:]
