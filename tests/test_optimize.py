"""anyxp.optimize: GMRES against numpy and scipy, Newton-Krylov against scipy on the Bratu
and reaction-diffusion problems, dense Newton, every backend, jit, batches, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

import anyxp
from anyxp.optimize import gmres, newton, newton_krylov
from anyxp.optimize.problems import (
    BRATU_CRITICAL,
    bratu,
    laplacian,
    laplacian_inverse,
    reaction_diffusion,
)
from anyxp.testing import strategies as axst
from conftest import float64_backend

NUMPY = anyxp.backend("numpy")
BACKENDS = ("numpy", "torch", "jax", "array_api_strict")
AD_BACKENDS = ("torch", "jax")


def random_system(n: int, seed: int = 0, shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, n)) / np.sqrt(n) + shift * np.eye(n), rng.standard_normal(n)


def scipy_gmres_iterations(A: np.ndarray, b: np.ndarray, tol: float, restart: int) -> int:
    count = [0]

    def tick(_: float) -> None:
        count[0] += 1

    _, info = scipy.sparse.linalg.gmres(
        A, b, rtol=tol, restart=restart, callback=tick, callback_type="pr_norm"
    )
    assert info == 0
    return count[0]


def scipy_newton_krylov(F, x0, f_tol):
    """scipy's answer and its count of evaluations of F."""
    count = [0]

    def counted(u):
        count[0] += 1
        return F(u)

    return scipy.optimize.newton_krylov(counted, x0, f_tol=f_tol), count[0]


def residual(A: np.ndarray, x, b: np.ndarray) -> float:
    return float(np.linalg.norm(b - A @ np.asarray(x)))


# -- GMRES: accuracy --------------------------------------------------------------------
def check_solution(A: np.ndarray, b: np.ndarray, sol, tol: float) -> None:
    assert sol.converged, sol.message
    assert residual(A, sol.x, b) <= tol * np.linalg.norm(b) * (1 + 1e-6)
    bound = 10 * tol * np.linalg.cond(A) * (1 + np.abs(np.linalg.solve(A, b)).max())
    np.testing.assert_allclose(sol.x, np.linalg.solve(A, b), atol=bound)


@settings(max_examples=20, deadline=None)
@given(A=axst.matrices(NUMPY, condition_max=1e2), data=st.data())
def test_full_gmres_solves_well_conditioned_systems(A, data):
    """Any nonsingular matrix: GMRES without restarts reaches tol within n steps."""
    n = A.shape[0]
    b = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n)))
    sol = gmres(A, b, tol=1e-9, restart=n)
    check_solution(A, b, sol, 1e-9)
    assert sol.iterations <= n + 1


@settings(max_examples=20, deadline=None)
@given(A=axst.spd_matrices(NUMPY, condition_max=1e3), data=st.data())
def test_restarted_gmres_solves_spd_systems(A, data):
    """A positive definite matrix: GMRES(m) converges for every m ≥ 1."""
    n = A.shape[0]
    b = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=n, max_size=n)))
    sol = gmres(A, b, tol=1e-9, restart=data.draw(st.integers(1, 6)), maxiter=100_000)
    check_solution(A, b, sol, 1e-9)


@pytest.mark.parametrize("restart", [1, 5, 10, 60])
def test_gmres_does_the_iterations_of_scipys_gmres(restart):
    """Same method (restarted, MGS Arnoldi, Givens): the same iteration count as scipy."""
    A, b = random_system(60, seed=1)
    sol = gmres(A, b, tol=1e-10, restart=restart)
    assert sol.converged, sol.message
    assert sol.iterations == scipy_gmres_iterations(A, b, 1e-10, restart)
    # One more product per restart cycle: the true residual.
    cycles = -(-sol.iterations // min(restart, 60))
    assert sol.matvecs == sol.iterations + cycles


def test_gmres_restart_trades_iterations_for_memory():
    A, b = random_system(80, seed=2, shift=1.0)
    full = gmres(A, b, tol=1e-10, restart=80)
    short = gmres(A, b, tol=1e-10, restart=4)
    assert full.converged and short.converged
    assert full.iterations <= 80 < short.iterations  # full GMRES: at most n steps
    np.testing.assert_allclose(short.x, full.x, atol=1e-8)


def test_jacobi_preconditioning_cuts_iterations():
    rng = np.random.default_rng(3)
    n = 100
    d = np.logspace(0, 4, n)  # diagonally dominant, diagonal spanning four decades
    A = (
        np.diag(d)
        + 0.3 * rng.uniform(-1, 1, (n, n)) * np.sqrt(d)[:, None] * np.sqrt(d)[None, :] / n
    )
    b = rng.standard_normal(n)
    plain = gmres(A, b, tol=1e-10, restart=20)
    jacobi = gmres(A, b, tol=1e-10, restart=20, M=lambda v: v / NUMPY.asarray(d))
    as_matrix = gmres(A, b, tol=1e-10, restart=20, M=np.diag(1 / d))
    assert jacobi.converged and as_matrix.converged, jacobi.message
    assert jacobi.iterations * 5 < plain.iterations
    assert as_matrix.iterations == jacobi.iterations
    assert residual(A, jacobi.x, b) <= 1e-10 * np.linalg.norm(b) * (1 + 1e-6)


def test_gmres_matrix_free():
    A, b = random_system(30, seed=4)
    sol = gmres(lambda v: A @ v, b, tol=1e-11)
    assert sol.converged
    np.testing.assert_allclose(sol.x, np.linalg.solve(A, b), rtol=1e-9)


def test_gmres_x0_is_used():
    A, b = random_system(30, seed=5)
    x = np.linalg.solve(A, b)
    sol = gmres(A, b, x0=x + 1e-6, tol=1e-8)
    cold = gmres(A, b, tol=1e-8)
    assert sol.converged and sol.iterations < cold.iterations


# -- GMRES: batches, backends, jit --------------------------------------------------------
def test_gmres_batch_converges_row_by_row():
    A, b = random_system(40, seed=6)
    A2, _ = random_system(40, seed=7, shift=1.0)
    rows = np.stack([b, np.zeros(40), -3 * b])
    mats = np.stack([A, A, A2])
    sol = gmres(mats, rows, tol=1e-10, restart=10, batch=True)
    assert sol.converged and sol.status.tolist() == [0, 0, 0]
    singles = [gmres(m, r, tol=1e-10, restart=10) for m, r in zip(mats, rows, strict=True)]
    assert sol.iterations.tolist() == [s.iterations for s in singles]
    assert sol.iterations[1] == 0  # b = 0: x = 0 at once
    for k, s in enumerate(singles):
        np.testing.assert_allclose(sol.x[k], s.x, rtol=1e-12, atol=1e-14)
    shared = gmres(A, rows, tol=1e-10, batch=True)  # one (n, n) matrix for every row
    np.testing.assert_allclose(shared.x[2], -3 * shared.x[0], rtol=1e-8)


@pytest.mark.parametrize("name", BACKENDS)
def test_gmres_gives_the_same_answer_on_every_backend(name):
    be = float64_backend(name)
    A, b = random_system(25, seed=8)
    ref = gmres(A, b, tol=1e-11, restart=8)
    sol = gmres(be.asarray(A), be.asarray(b), tol=1e-11, restart=8)
    assert anyxp.backend(like=sol.x).name == be.name and sol.x.dtype == be.float_dtype
    assert sol.status == 0 and sol.iterations == ref.iterations
    np.testing.assert_allclose(be.to_numpy(sol.x), ref.x, rtol=1e-10)
    rows = gmres(lambda V: V @ be.asarray(A.T), be.asarray(np.stack([b, 2 * b])), batch=True)
    np.testing.assert_allclose(be.to_numpy(rows.x)[1], 2 * ref.x, rtol=1e-7)


def test_gmres_in_float32_stays_float32():
    A, b = random_system(20, seed=9)
    be = anyxp.backend("torch", dtype="float32")
    sol = gmres(be.asarray(A), be.asarray(b), tol=1e-5)
    assert sol.x.dtype == be.float_dtype and sol.converged
    with pytest.warns(UserWarning, match="below what this dtype resolves"):
        gmres(be.asarray(A), be.asarray(b), tol=1e-12)


def test_gmres_inside_jax_jit():
    be = float64_backend("jax")
    import jax

    A, b = random_system(30, seed=10)
    Aj = be.asarray(A)

    @jax.jit
    def solve(b):
        sol = gmres(lambda v: Aj @ v, b, tol=1e-11, restart=12)
        return sol.x, sol.status, sol.iterations

    x, status, iterations = solve(be.asarray(b))
    assert int(status) == 0 and int(iterations) == gmres(A, b, tol=1e-11, restart=12).iterations
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(A, b), rtol=1e-9)
    rows = jax.jit(lambda B: gmres(Aj, B, tol=1e-11, batch=True).x)(be.asarray(np.stack([b, -b])))
    np.testing.assert_allclose(np.asarray(rows)[1], -np.linalg.solve(A, b), rtol=1e-9)


# -- GMRES: failures are named ------------------------------------------------------------
def test_gmres_singular_system_reports_breakdown():
    A = np.diag([1.0, 2.0, 0.0])
    sol = gmres(A, np.array([1.0, 1.0, 1.0]))
    assert sol.status == 2 and not sol.converged
    assert "singular" in sol.message
    assert sol.residual_norm == pytest.approx(1.0)  # the least-squares residual


def test_gmres_maxiter_and_stagnation_are_reported():
    A, b = random_system(50, seed=11, shift=0.5)
    out = gmres(A, b, tol=1e-12, maxiter=5)
    assert out.status == 1 and "maxiter" in out.message and out.iterations == 5
    # A cyclic shift: GMRES(m < n) makes no progress at all (the classic example).
    n = 8
    P = np.roll(np.eye(n), 1, axis=0)
    stuck = gmres(P, np.eye(n)[0], restart=3)
    assert stuck.status == 4 and "restart" in stuck.message


def test_gmres_nonfinite_operator_is_reported():
    sol = gmres(lambda v: v * np.nan, np.ones(4))
    assert sol.status == 3 and "NaN" in sol.message


def test_gmres_bad_input_is_refused_with_the_fix():
    A, b = random_system(5)
    with pytest.raises(ValueError, match=r"A returned shape \(4,\), expected \(5,\)"):
        gmres(lambda v: v[:4], b)
    with pytest.raises(TypeError, match="same library"):
        gmres(lambda v: list(v), b)
    torch_be = float64_backend("torch")
    with pytest.raises(anyxp.MixedBackendsError, match="pass A on b's backend"):
        gmres(A, torch_be.asarray(b))
    with pytest.raises(TypeError, match=r"numpy\.ndarray"):
        gmres(lambda v: np.asarray(v.numpy()), torch_be.asarray(b))
    with pytest.raises(ValueError, match=r"A has shape \(4, 4\)"):
        gmres(A[:4, :4], b)
    with pytest.raises(ValueError, match="batch=True"):
        gmres(A, np.stack([b, b]))
    with pytest.raises(ValueError, match="both 0"):
        gmres(A, b, tol=0.0)
    with pytest.raises(ValueError, match="NaN"):
        gmres(A, b * np.nan)
    with pytest.raises(ValueError, match="restart must be at least 1"):
        gmres(A, b, restart=0)
    with pytest.raises(ValueError, match=r"x0 has shape \(4,\)"):
        gmres(A, b, x0=b[:4])


# -- Newton-Krylov against scipy --------------------------------------------------------
PDE_PROBLEMS = {
    "bratu-1d": (lambda: bratu(64, 3.0, dim=1), (64,)),
    "bratu-2d": (lambda: bratu(24, 6.0, dim=2), (24, 24)),
    "reaction-diffusion-2d": (lambda: reaction_diffusion(24), (24, 24)),
}


@pytest.mark.parametrize("name", sorted(PDE_PROBLEMS))
def test_newton_krylov_matches_scipy(name):
    make, shape = PDE_PROBLEMS[name]
    F = make()
    x0 = np.zeros(shape)
    theirs, scipy_nfev = scipy_newton_krylov(F, x0, f_tol=1e-12)
    ours = newton_krylov(F, x0, tol=1e-12)
    assert ours.success, ours.message
    np.testing.assert_allclose(ours.x, theirs, atol=1e-8)
    assert np.abs(F(ours.x)).max() <= 1e-12
    assert (
        ours.stats["nfev"]
        == ours.stats["njvp"] + ours.stats["iterations"] + 1 + ours.stats["backtracks"]
    )  # finite differences: one evaluation of F per product, one per step tried, F(x0)
    pre = newton_krylov(F, x0, tol=1e-12, preconditioner=laplacian_inverse(shape[0], len(shape)))
    assert pre.success and pre.stats["linear_iterations"] * 5 < ours.stats["linear_iterations"]
    np.testing.assert_allclose(pre.x, theirs, atol=1e-8)
    print(
        f"\n{name}: scipy nfev={scipy_nfev}; anyxp nfev={ours.stats['nfev']} "
        f"(Newton {ours.stats['iterations']}, GMRES {ours.stats['linear_iterations']}); "
        f"preconditioned nfev={pre.stats['nfev']}"
    )


def test_bratu_lambda_is_below_the_turning_point():
    # The tests' λ have solutions (Newton's answers above are those), the turning point none.
    assert 3.0 < BRATU_CRITICAL[1] and 6.0 < BRATU_CRITICAL[2]
    beyond = newton_krylov(bratu(32, 3.6), np.zeros(32), max_iter=30)
    assert not beyond.success and beyond.status in (1, 4), beyond.message


@pytest.mark.parametrize("name", AD_BACKENDS)
def test_newton_krylov_same_code_with_ad_products(name):
    """On jax and torch J(x)·v is forward-mode AD: no evaluation of F per product."""
    be = float64_backend(name)
    F = bratu(16, 6.0, dim=2)
    ref = newton_krylov(F, np.zeros((16, 16)), tol=1e-12)
    sol = newton_krylov(F, be.asarray(np.zeros((16, 16))), tol=1e-12)
    assert sol.success, sol.message
    assert anyxp.backend(like=sol.x).name == name and sol.x.dtype == be.float_dtype
    np.testing.assert_allclose(be.to_numpy(sol.x), ref.x, atol=1e-10)
    s = sol.stats
    assert s["nfev"] == s["iterations"] + 1 + s["backtracks"] and s["njvp"] > 0
    with pytest.raises(anyxp.UnsupportedError, match=r"ad\.jvp"):
        newton_krylov(F, np.zeros((16, 16)), jvp="ad")
    if name == "torch":  # forcing finite differences on an AD backend
        fd = newton_krylov(F, be.asarray(np.zeros((16, 16))), tol=1e-12, jvp="fd")
        assert fd.stats["nfev"] > fd.stats["njvp"]
        np.testing.assert_allclose(be.to_numpy(fd.x), ref.x, atol=1e-10)


def test_newton_krylov_on_array_api_strict():
    be = float64_backend("array_api_strict")
    F = bratu(12, 3.0)
    sol = newton_krylov(F, be.asarray(np.zeros(12)), tol=1e-12)
    assert sol.success
    np.testing.assert_allclose(be.to_numpy(sol.x), newton_krylov(F, np.zeros(12), tol=1e-12).x)


def test_newton_krylov_inside_jax_jit():
    be = float64_backend("jax")
    import jax

    F = bratu(12, 6.0, dim=2)
    P = laplacian_inverse(12, dim=2)

    @jax.jit
    def solve(x0):
        sol = newton_krylov(F, x0, tol=1e-12, preconditioner=P, batch=True)
        return sol.x, sol.status

    x, status = solve(be.asarray(np.zeros((2, 12, 12))))
    ref = newton_krylov(F, np.zeros((12, 12)), tol=1e-12)
    assert np.asarray(status).tolist() == [0, 0]
    np.testing.assert_allclose(np.asarray(x)[1], ref.x, atol=1e-10)


def test_newton_krylov_batch_converges_row_by_row():
    lams = np.array([0.5, 2.0, 3.4])

    def F(u):  # a batch of 1-D Bratu problems, one λ per row
        return laplacian(u) + (1.0 / 33**2 * lams)[:, None] * np.exp(u)

    sol = newton_krylov(F, np.zeros((3, 32)), tol=1e-12, batch=True)
    assert sol.success and sol.x.shape == (3, 32)
    singles = [newton_krylov(bratu(32, lam), np.zeros(32), tol=1e-12) for lam in lams]
    assert sol.stats["iterations"].tolist() == [s.stats["iterations"] for s in singles]
    assert sol.residual_history.shape == (max(s.stats["iterations"] for s in singles) + 1, 3)
    for k, s in enumerate(singles):
        np.testing.assert_allclose(sol.x[k], s.x, atol=1e-10)
        np.testing.assert_allclose(
            sol.residual_history[: len(s.residual_history), k], s.residual_history
        )


def test_residual_history_and_line_search():
    """Full Newton on arctan from x0 = 10 overshoots further each step; Armijo damps it."""
    full = newton_krylov(np.arctan, np.array([10.0]), line_search=None)
    assert not full.success and full.status in (1, 2, 3)  # J(x) underflows to 0 far out
    damped = newton_krylov(np.arctan, np.array([10.0]))
    assert damped.success and damped.stats["backtracks"] > 0
    h = damped.residual_history
    assert h[0] == pytest.approx(np.arctan(10.0)) and h[-1] == damped.residual_norm
    assert len(h) == damped.stats["iterations"] + 1 and np.all(np.diff(h) < 0)


# -- dense Newton -------------------------------------------------------------------------
@st.composite
def smooth_systems(draw):
    """``F(x) = A x + c sin(x) - b``, A SPD with eigenvalues ≥ 1 and |c| < 1: F is strongly
    monotone, so it has exactly one root and damped Newton reaches it from anywhere."""
    A = draw(axst.spd_matrices(NUMPY, condition_max=50.0))
    n = A.shape[0]
    c = draw(st.floats(-0.9, 0.9))
    b = np.array(draw(st.lists(st.floats(-20, 20), min_size=n, max_size=n)))
    x0 = np.array(draw(st.lists(st.floats(-5, 5), min_size=n, max_size=n)))
    return (lambda x: A @ x + c * np.sin(x) - b), x0


@settings(max_examples=30, deadline=None)
@given(system=smooth_systems())
def test_newton_answers_satisfy_the_residual(system):
    F, x0 = system
    for solve in (newton, newton_krylov):
        sol = solve(F, x0, tol=1e-10)
        assert sol.success, sol.message
        assert np.abs(F(sol.x)).max() <= 1e-10


def test_newton_jacobian_sources_agree():
    F = bratu(20, 3.0)
    n = 20
    A = np.diag(-2 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)

    def jac(u):
        return A + np.diag(3.0 / 21**2 * np.exp(u))

    exact = newton(F, np.zeros(n), jac=jac, tol=1e-13)
    fd = newton(F, np.zeros(n), tol=1e-13)
    torch_be = float64_backend("torch")
    ad = newton(F, torch_be.asarray(np.zeros(n)), tol=1e-13)
    assert exact.success and fd.success and ad.success
    assert exact.stats["nfev"] == exact.stats["iterations"] + 1 + exact.stats["backtracks"]
    assert fd.stats["nfev"] == exact.stats["nfev"] + n * fd.stats["njev"]  # n per Jacobian
    assert ad.stats["nfev"] == exact.stats["nfev"]
    np.testing.assert_allclose(fd.x, exact.x, atol=1e-11)
    np.testing.assert_allclose(torch_be.to_numpy(ad.x), exact.x, atol=1e-11)
    assert exact.stats["iterations"] <= 5  # quadratic convergence


def test_newton_batch_and_jax():
    be = float64_backend("jax")
    F = bratu(10, 3.0)
    sol = newton(F, be.asarray(np.zeros((2, 10))), tol=1e-12, batch=True)
    ref = newton(F, np.zeros(10), tol=1e-12)
    assert np.asarray(sol.status).tolist() == [0, 0]
    np.testing.assert_allclose(np.asarray(sol.x)[0], ref.x, atol=1e-12)


# -- nonlinear failures are named --------------------------------------------------------
@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_singular_and_inconsistent_systems_are_reported(name):
    """x0 + x1 = 1 and x0 + x1 = 2: J is singular and there is no root. Every backend (AD
    products or differences, whose rounding makes J·v along the null space noise, not 0)
    says why; Newton-Krylov stops at the least-squares point x0 + x1 = 1.5, dense Newton
    (no solve at all) where it started."""
    be = float64_backend(name)

    def parallel(x):
        xp = anyxp.backend(like=x).xp
        return xp.stack([x[0] + x[1] - 1, x[0] + x[1] - 2])

    # (Dense Newton on jax: test_newton_batch_and_jax; a compile less here.)
    solvers = ((newton, 0.0), (newton_krylov, 1.5)) if name != "jax" else ((newton_krylov, 1.5),)
    for solve, stop in solvers:
        sol = solve(parallel, be.asarray(np.zeros(2)))
        assert sol.status == 2 and "singular" in sol.message and not sol.success
        x = be.to_numpy(sol.x)
        assert x.sum() == pytest.approx(stop, abs=1e-6) and np.abs(x).max() < 10


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_rank_deficient_system_is_reported(name):
    """Rank 7 of 12, b outside the range: AD products (torch; jax takes the same path) find
    the least-squares point and call J singular there; differences (numpy) cannot tell the
    null space from their noise, so their line search gives up instead: never a success."""
    be = float64_backend(name)
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    A = Q[:, :7] @ np.diag(rng.uniform(1, 3, 7)) @ Q[:, :7].T
    b = rng.standard_normal(12)
    least = np.abs(b - A @ np.linalg.lstsq(A, b, rcond=None)[0]).max()
    Ab, bb = be.asarray(A), be.asarray(b)
    sol = newton_krylov(lambda x: Ab @ x - bb, be.asarray(np.zeros(12)))
    if name == "numpy":
        assert sol.status in (2, 4) and not sol.success
    else:
        assert sol.status == 2 and sol.residual_norm == pytest.approx(least, rel=1e-8)


def test_no_root_and_max_iter_are_reported():
    sol = newton_krylov(lambda x: x * x + 1.0, np.array([3.0]), max_iter=8)
    assert not sol.success and sol.status in (1, 2, 4), sol.message
    slow = newton(lambda x: np.exp(x) - 1.0, np.array([30.0]), max_iter=3)
    assert slow.status == 1 and "max_iter" in slow.message


def test_nonfinite_F_is_reported_not_returned():
    at_start = newton_krylov(np.log, np.array([-1.0, 2.0]))
    assert at_start.status == 3 and "NaN or infinity" in at_start.message
    assert np.isnan(at_start.residual_norm)
    # sqrt is NaN left of 0: the line search steps back into its domain.
    sol = newton_krylov(lambda x: np.sqrt(np.abs(x)) * np.sign(x) - 1.0, np.array([0.01]))
    assert sol.success, sol.message


def test_F_of_the_wrong_shape_or_library_is_refused():
    torch_be = float64_backend("torch")
    with pytest.raises(ValueError, match=r"F returned shape \(2,\), expected \(3,\)"):
        newton_krylov(lambda x: x[:2], np.ones(3))
    with pytest.raises(TypeError, match=r"F returned numpy\.ndarray, but x0 is a torch array"):
        newton_krylov(lambda x: np.asarray(x.numpy()), torch_be.asarray(np.ones(3)))
    with pytest.raises(TypeError, match="dtype float32"):
        newton(lambda x: x.astype(np.float32), np.ones(3))
    with pytest.raises(ValueError, match=r"jac returned shape \(2, 2\)"):
        newton(lambda x: x, np.ones(3), jac=lambda x: np.eye(2))
    with pytest.raises(TypeError, match="complex"):
        newton_krylov(lambda x: x, np.ones(3, dtype=complex))
    with pytest.raises(ValueError, match="unknown jvp 'exact'"):
        newton_krylov(lambda x: x, np.ones(3), jvp="exact")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        newton(lambda x: x, np.array([np.nan]))
    with pytest.raises(ValueError, match="unknown line_search"):
        newton(lambda x: x, np.ones(1), line_search="wolfe")


def test_import_anyxp_optimize_imports_no_backend_library():
    code = (
        "import sys, anyxp.optimize, anyxp.optimize.problems\n"
        "print([m for m in ('torch', 'jax', 'array_api_strict', 'dask', 'cupy') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
