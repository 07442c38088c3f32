"""kvaerno5 with matrix-free Newton-Krylov linear solves (``linear_solver="gmres"``).

References are independent of the solver: the matrix exponential for a stiff linear
system, the exact solution of the semi-discrete heat equation (sums of discrete
eigenmodes), scipy's Radau for ROBER; and the dense kvaerno5 solve of the same problem.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import anyxp
from anyxp.ode import solve, solve_ensemble
from tests.conftest import float64_backend

# A stiff, non-normal linear system y' = A y: eigenvalues -1, -50, -2000.
_V = np.array([[1.0, 0.3, -0.2], [0.1, 1.0, 0.4], [-0.3, 0.2, 1.0]])
A = _V @ np.diag([-1.0, -50.0, -2000.0]) @ np.linalg.inv(_V)
Y0 = np.array([1.0, -0.5, 2.0])


def linear(t, y, a):
    xp = anyxp.backend(like=y).xp
    return xp.matmul(a, y)


def expm_solution(t: float) -> np.ndarray:
    from scipy.linalg import expm

    return expm(A * t) @ Y0


def rober(t, y):
    xp = anyxp.backend(like=y).xp
    y1, y2, y3 = y[0], y[1], y[2]
    return xp.stack(
        [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2**2, 3e7 * y2**2]
    )


def laplacian(u, dx):
    """The 5-point Laplacian with zero Dirichlet boundaries, on a grid ``(N, N)``."""
    xp = anyxp.backend(like=u).xp
    zr, zc = xp.zeros_like(u[:1, :]), xp.zeros_like(u[:, :1])
    up, down = xp.concat([u[1:, :], zr], axis=0), xp.concat([zr, u[:-1, :]], axis=0)
    right, left = xp.concat([u[:, 1:], zc], axis=1), xp.concat([zc, u[:, :-1]], axis=1)
    return (up + down + right + left - 4 * u) / dx**2


MODES = ((1, 1, 1.0), (2, 3, 0.5), (5, 1, 0.25))


def heat_exact(N: int, t: float, d: float = 1.0) -> np.ndarray:
    """The semi-discrete heat equation's exact solution: each discrete sine mode decays
    with its own eigenvalue of the 5-point Laplacian."""
    dx = 1.0 / (N + 1)
    x = np.arange(1, N + 1) * dx
    out = np.zeros((N, N))
    for p, q, a in MODES:
        lam = -4 / dx**2 * (np.sin(p * np.pi * dx / 2) ** 2 + np.sin(q * np.pi * dx / 2) ** 2)
        out += a * np.exp(d * lam * t) * np.outer(np.sin(p * np.pi * x), np.sin(q * np.pi * x))
    return out


@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_stiff_linear_gmres_equals_dense(name):
    be = float64_backend(name)
    a, y0 = be.asarray(A), be.asarray(Y0)
    kw = {"args": (a,), "method": "kvaerno5", "rtol": 1e-7, "atol": 1e-10}
    runs = {
        ls: solve(linear, (0.0, 2.0), y0, linear_solver=ls, t_eval=[0.5, 1.0, 2.0], **kw)
        for ls in ("dense", "gmres")
    }
    dense, krylov = (be.to_numpy(runs[k].y) for k in ("dense", "gmres"))
    assert runs["gmres"].success
    ref = np.stack([expm_solution(t) for t in (0.5, 1.0, 2.0)])
    np.testing.assert_allclose(krylov, ref, rtol=2e-5, atol=1e-8)
    np.testing.assert_allclose(krylov, dense, rtol=2e-6, atol=1e-9)
    s = runs["gmres"].stats
    assert s["nlu"] == 0 and s["njev"] == 0  # no matrix formed, none factored
    if name == "numpy":  # products by differences: one evaluation of f each, counted
        assert s["nfev"] > runs["dense"].stats["nfev"] - 3 * runs["dense"].stats["njev"]


def test_jax_gmres_inside_jit():
    jax = pytest.importorskip("jax")
    be = float64_backend("jax")
    a = be.asarray(A)

    @jax.jit
    def final(y0):
        sol = solve(linear, (0.0, 2.0), y0, args=(a,), method="kvaerno5", rtol=1e-7,
                    atol=1e-10, linear_solver="gmres")  # fmt: skip
        return sol.y[-1], sol.status

    y_end, status = final(be.asarray(Y0))
    assert int(status) == 0
    np.testing.assert_allclose(np.asarray(y_end), expm_solution(2.0), rtol=2e-5, atol=1e-8)


def test_rober_gmres_matches_dense_and_radau():
    from scipy.integrate import solve_ivp

    be = float64_backend("numpy")
    y0 = be.asarray([1.0, 0.0, 0.0])
    times = [1.0, 100.0, 1e4]
    kw = {"method": "kvaerno5", "rtol": 1e-6, "atol": 1e-10, "t_eval": times}
    dense = solve(rober, (0.0, 1e4), y0, **kw)
    krylov = solve(rober, (0.0, 1e4), y0, linear_solver="gmres", **kw)
    assert krylov.success
    ref = solve_ivp(
        lambda t, y: np.asarray(rober(t, y)), (0.0, 1e4), [1.0, 0.0, 0.0], method="Radau",
        rtol=1e-11, atol=1e-16, t_eval=times,
    ).y.T  # fmt: skip
    scale = np.array([1.0, 1e-4, 1.0])  # y2 lives around 1e-5 .. 1e-8
    for sol in (krylov, dense):
        np.testing.assert_allclose(np.asarray(sol.y) / scale, ref / scale, rtol=0, atol=5e-5)
    np.testing.assert_allclose(np.asarray(krylov.y) / scale, np.asarray(dense.y) / scale,
                               rtol=0, atol=5e-5)  # fmt: skip
    # The Newton iterations converge as with the exact inverse: about the same steps.
    assert krylov.stats["steps"] <= 1.5 * dense.stats["steps"]


def test_heat_4096_states_gmres_matches_exact_modes():
    """A method-of-lines PDE too large for the dense solver in a test: 64 x 64 grid."""
    be = float64_backend("numpy")
    N, t1 = 64, 0.05
    dx = 1.0 / (N + 1)

    def heat(t, u):
        return laplacian(u, dx)

    def jacobi(t, u, hg, v):  # (I - hg·L)'s diagonal, inverted
        return v / (1.0 + 4.0 * hg / dx**2)

    u0 = be.asarray(heat_exact(N, 0.0))
    kw = {"method": "kvaerno5", "rtol": 1e-6, "atol": 1e-8, "linear_solver": "gmres"}
    plain = solve(heat, (0.0, t1), u0, **kw)
    pre = solve(heat, (0.0, t1), u0, preconditioner=jacobi, **kw)
    exact = heat_exact(N, t1)
    for sol in (plain, pre):
        assert sol.success and sol.y.shape[1:] == (N, N)
        np.testing.assert_allclose(np.asarray(sol.y[-1]), exact, rtol=0, atol=2e-6)
    # Fewer GMRES products (evaluations of f) with the preconditioner.
    assert pre.stats["nfev"] < plain.stats["nfev"]


def brusselator(t, y, alpha):
    """A 2-D Brusselator (reaction-diffusion), state ``(2, N, N)``."""
    xp = anyxp.backend(like=y).xp
    u, v = y[0, ...], y[1, ...]
    dx = 1.0 / (u.shape[0] + 1)
    du = 1.0 + u * u * v - 4.4 * u + alpha * laplacian(u, dx)
    dv = 3.4 * u - u * u * v + alpha * laplacian(v, dx)
    return xp.stack([du, dv])


def test_reaction_diffusion_gmres_equals_dense():
    be = float64_backend("numpy")
    N = 8
    x = np.arange(1, N + 1) / (N + 1)
    u0 = np.stack([0.5 + np.outer(np.sin(np.pi * x), x), 1.0 + np.outer(x, 1 - x)])
    kw = {"method": "kvaerno5", "rtol": 1e-6, "atol": 1e-9, "args": (0.02,)}
    dense = solve(brusselator, (0.0, 1.0), be.asarray(u0), **kw)
    krylov = solve(brusselator, (0.0, 1.0), be.asarray(u0), linear_solver="gmres", **kw)
    assert krylov.success and krylov.stats["nlu"] == 0
    np.testing.assert_allclose(np.asarray(krylov.y[-1]), np.asarray(dense.y[-1]), rtol=1e-5)


def test_ensemble_gmres_equals_dense_with_preconditioner_params():
    be = float64_backend("numpy")
    N = 6
    dx = 1.0 / (N + 1)
    d = be.asarray([0.5, 1.0, 2.0])

    def heat(t, y, d):
        u = np.reshape(y, (y.shape[0], N, N))
        lap = np.stack([laplacian(u[b], dx) for b in range(y.shape[0])])
        return d[:, None] * np.reshape(lap, y.shape)

    seen = []

    def jacobi(t, y, hg, v, d):
        seen.append((t.shape, y.shape, hg.shape, v.shape, d.shape))
        return v / (1.0 + 4.0 * (hg * d)[:, None] / dx**2)

    y0 = be.asarray(np.tile(heat_exact(N, 0.0).reshape(1, -1), (3, 1)))
    kw = {"method": "kvaerno5", "rtol": 1e-7, "atol": 1e-10, "params": d, "t_eval": [0.1]}
    dense = solve_ensemble(heat, (0.0, 0.1), y0, **kw)
    krylov = solve_ensemble(heat, (0.0, 0.1), y0, linear_solver="gmres", preconditioner=jacobi,
                            **kw)  # fmt: skip
    assert krylov.success and int(krylov.stats["nlu"]) == 0
    assert set(seen) == {((3,), (3, N * N), (3,), (3, N * N), (3,))}
    exact = np.stack([heat_exact(N, 0.1, float(di)).reshape(-1) for di in (0.5, 1.0, 2.0)])
    np.testing.assert_allclose(np.asarray(krylov.y[0]), exact, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(krylov.y[0]), np.asarray(dense.y[0]), atol=1e-6)


def _tiny(t, y):
    return -y


def test_bad_linear_solver_input():
    y0 = anyxp.backend("numpy").asarray([1.0, 2.0])
    with pytest.raises(ValueError, match=r"unknown linear_solver 'lu'; choose one of dense, gmres"):
        solve(_tiny, (0.0, 1.0), y0, method="kvaerno5", linear_solver="lu")
    with pytest.raises(ValueError, match=r"needs method='kvaerno5'.*Rosenbrock"):
        solve(_tiny, (0.0, 1.0), y0, method="rodas5p", linear_solver="gmres")
    with pytest.raises(ValueError, match="explicit method 'tsit5' solves no linear systems"):
        solve(_tiny, (0.0, 1.0), y0, linear_solver="gmres")
    with pytest.raises(ValueError, match="preconditioner= applies to linear_solver='gmres'"):
        solve(_tiny, (0.0, 1.0), y0, method="kvaerno5", preconditioner=lambda t, y, h, v: v)
    with pytest.raises(TypeError, match="preconditioner must be a function"):
        solve(_tiny, (0.0, 1.0), y0, method="kvaerno5", linear_solver="gmres", preconditioner=3)
    with pytest.raises(ValueError, match=r"preconditioner returned shape \(1,\), expected"):
        solve(_tiny, (0.0, 1.0), y0, method="kvaerno5", linear_solver="gmres",
              preconditioner=lambda t, y, h, v: v[:1])  # fmt: skip
    with pytest.raises(NotImplementedError, match="use linear_solver='dense'"):
        solve(_tiny, (0.0, 1.0), y0, method="kvaerno5", linear_solver="gmres",
              sensitivity="forward-differences")  # fmt: skip
    with pytest.raises(ValueError, match="unknown linear_solver"):
        solve_ensemble(lambda t, y: -y, (0.0, 1.0), np.ones((2, 2)), method="kvaerno5",
                       linear_solver="krylov")  # fmt: skip


def test_differentiating_a_gmres_solve_says_what_to_do():
    torch = pytest.importorskip("torch")
    be = float64_backend("torch")
    y0 = be.asarray([1.0, 2.0])

    def final(y0):
        sol = solve(_tiny, (0.0, 0.1), y0, method="kvaerno5", linear_solver="gmres")
        return be.xp.sum(sol.y[-1])

    assert math.isclose(float(final(y0)), 3.0 * math.exp(-0.1), rel_tol=1e-5)
    with pytest.raises(NotImplementedError, match="linear_solver='dense'"):
        torch.func.grad(final)(y0)
