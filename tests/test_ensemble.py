"""anyxp.ode.solve_ensemble: per-trajectory adaptivity, batch equals solo, every backend."""

from __future__ import annotations

import numpy as np
import pytest

import anyxp
from anyxp.ode import solve, solve_ensemble


def lorenz_batch(t, y, rho):
    xp = anyxp.backend(like=y).xp
    x, v, z = y[:, 0], y[:, 1], y[:, 2]
    return xp.stack([10.0 * (v - x), x * (rho[:, 0] - z) - v, x * v - 8 / 3 * z], axis=1)


RHO = np.linspace(0.0, 21.0, 12)[:, None]
Y0 = np.tile([1.0, 0.0, 0.0], (12, 1))
T_EVAL = np.linspace(0.0, 1.0, 6)


def solo(j):
    sol = solve(
        lambda t, y: lorenz_batch(t, y[None, :], RHO[j : j + 1])[0],
        (0.0, 1.0),
        Y0[j],
        t_eval=T_EVAL,
        rtol=1e-9,
        atol=1e-9,
    )
    return np.asarray(sol.y)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "array_api_strict"])
def test_each_trajectory_equals_its_solo_solve(name):
    be = anyxp.backend(name, dtype="float64")
    sol = solve_ensemble(
        lorenz_batch,
        (0.0, 1.0),
        be.asarray(Y0),
        params=be.asarray(RHO),
        t_eval=T_EVAL,
        rtol=1e-9,
        atol=1e-9,
    )
    assert sol.success
    assert anyxp.backend(like=sol.y).name == name
    ys = be.to_numpy(sol.y)
    assert ys.shape == (6, 12, 3)
    for j in (0, 5, 11):
        np.testing.assert_allclose(ys[:, j, :], solo(j), rtol=1e-7, atol=1e-9)
    accepted = be.to_numpy(sol.stats["accepted"])
    assert accepted.min() < accepted.max()  # each trajectory chose its own steps


@pytest.mark.parametrize("name", ["numpy", "jax"])
def test_a_dop853_ensemble_equals_its_solo_solves_between_steps(name):
    """DOP853's interpolant, with its three extra stages, on each trajectory's own step."""
    be = anyxp.backend(name, dtype="float64")
    sol = solve_ensemble(
        lorenz_batch,
        (0.0, 1.0),
        be.asarray(Y0),
        params=be.asarray(RHO),
        t_eval=T_EVAL,
        method="dop853",
        rtol=1e-10,
        atol=1e-10,
    )
    assert sol.success
    ys = be.to_numpy(sol.y)
    for j in (0, 5, 11):
        np.testing.assert_allclose(ys[:, j, :], solo(j), rtol=1e-7, atol=1e-8)


def test_a_failing_trajectory_does_not_stop_the_others():
    # y' = y² blows up at t = 1/y0: the first trajectory at t = 1, the second at t = 10.
    sol = solve_ensemble(
        lambda t, y: y * y, (0.0, 2.0), np.array([[1.0], [0.1]]), rtol=1e-8, atol=1e-10
    )
    status = np.asarray(sol.status)
    assert status[0] in (2, 3) and status[1] == 0
    assert not sol.success
    np.testing.assert_allclose(sol.y[-1, 1, 0], 0.1 / (1 - 0.2), rtol=1e-7)


def test_jax_ensemble_is_one_compiled_program():
    jax = pytest.importorskip("jax")
    be = anyxp.backend("jax", dtype="float64")
    traces = []

    def run(y0, rho):
        traces.append(1)
        return solve_ensemble(
            lorenz_batch, (0.0, 1.0), y0, params=rho, t_eval=T_EVAL, rtol=1e-9, atol=1e-9
        ).y

    jitted = jax.jit(run)
    out = jitted(be.asarray(Y0), be.asarray(RHO))
    jitted(be.asarray(Y0) * 1.01, be.asarray(RHO))
    assert len(traces) == 1
    np.testing.assert_allclose(np.asarray(out)[:, 3, :], solo(3), rtol=1e-7, atol=1e-9)


def test_fixed_step_ensemble():
    sol = solve_ensemble(
        lambda t, y: -y, (0.0, 1.0), np.array([[1.0], [2.0]]), method="rk4", dt=0.01
    )
    np.testing.assert_allclose(np.asarray(sol.y[-1, :, 0]), [np.exp(-1), 2 * np.exp(-1)], rtol=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y0": np.ones(3)}, "shape \\(trajectories, states\\)"),
        ({"params": np.ones((2, 1))}, "one row of parameters per trajectory"),
        ({"y0": np.array([[np.nan]] * 3)}, "NaN"),
    ],
)
def test_bad_input(kwargs, match):
    call = {"y0": np.ones((3, 1))} | kwargs
    with pytest.raises(ValueError, match=match):
        solve_ensemble(lambda t, y, *p: -y, (0.0, 1.0), call.pop("y0"), **call)


def test_f_of_the_wrong_shape():
    with pytest.raises(ValueError, match="f returned shape"):
        solve_ensemble(lambda t, y: y[:, :1], (0.0, 1.0), np.ones((3, 2)))


def lorenz_rho(t, y, rho):
    xp = anyxp.backend(like=y).xp
    return xp.stack(
        [
            10.0 * (y[:, 1] - y[:, 0]),
            y[:, 0] * (rho - y[:, 2]) - y[:, 1],
            y[:, 0] * y[:, 1] - 8 / 3 * y[:, 2],
        ],
        axis=1,
    )


@pytest.mark.anyxp_requires("dask")
@pytest.mark.timeout(180)
def test_a_dask_ensemble_runs_block_by_block_on_a_distributed_cluster(capsys):
    import dask.array as da
    from dask.distributed import Client, LocalCluster, get_task_stream

    n = 400
    rho = np.linspace(0.0, 21.0, n)
    y0 = np.tile([1.0, 0.0, 0.0], (n, 1))
    ref = solve_ensemble(lorenz_rho, (0.0, 1.0), y0, params=rho, rtol=1e-8, atol=1e-10)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, timeout=60),
        get_task_stream() as stream,
    ):
        sol = solve_ensemble(
            lorenz_rho,
            (0.0, 1.0),
            da.from_array(y0, chunks=(100, 3)),
            params=da.from_array(rho, chunks=100),
            rtol=1e-8,
            atol=1e-10,
            progress=True,
        )
        # The cluster's own progress bar, drawn as the blocks finished.
        assert "100% Completed" in capsys.readouterr().out
        assert sol.backend.name == "dask"
        assert sol.y.chunks[1] == (100, 100, 100, 100)  # one block per chunk of rows
        assert sol.success
        assert set(sol.stats) == set(ref.stats)  # the same counts as an in-memory ensemble
        y = sol.backend.to_numpy(sol.y)
        accepted = sol.backend.to_numpy(sol.stats["accepted"])
    blocks = [t for t in stream.data if "solve_block" in str(t["key"])]
    assert len(blocks) == 4
    assert len({t["worker"] for t in blocks}) >= 1
    np.testing.assert_allclose(y, np.asarray(ref.y), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(accepted, np.asarray(ref.stats["accepted"]))


def test_progress_follows_the_slowest_trajectory(capsys):
    rho = np.linspace(0.0, 21.0, 5)
    y0 = np.tile([1.0, 0.0, 0.0], (5, 1))
    sol = solve_ensemble(lorenz_rho, (0.0, 2.0), y0, params=rho, progress=True)
    assert sol.success
    err = capsys.readouterr().err
    assert "100%" in err and "t=2/2" in err


def test_progress_on_dask_without_a_cluster_uses_dask_s_bar(capsys):
    import dask.array as da

    y0 = np.tile([1.0, 0.0, 0.0], (4, 1))
    rho = np.linspace(0.0, 21.0, 4)
    sol = solve_ensemble(
        lorenz_rho, (0.0, 0.5), da.from_array(y0, chunks=(2, 3)),
        params=da.from_array(rho, chunks=2), progress=True,
    )  # fmt: skip
    assert "Completed" in capsys.readouterr().out  # dask.diagnostics.ProgressBar
    ref = solve_ensemble(lorenz_rho, (0.0, 0.5), y0, params=rho)
    np.testing.assert_allclose(sol.backend.to_numpy(sol.y), np.asarray(ref.y), rtol=1e-12)


def test_progress_on_a_compiled_backend_is_a_clear_error():
    jnp = pytest.importorskip("jax.numpy")
    y0 = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="compiles the whole ensemble"):
        solve_ensemble(lorenz_rho, (0.0, 1.0), y0, params=jnp.ones(2), progress=True)
