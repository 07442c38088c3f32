"""A state split across ranks: ``solve(..., comm=)`` takes the same steps as one process.

Gray-Scott on a small grid is solved at one rank (the whole state, no comm) and at two
ranks under ``mpiexec`` (each rank its block of rows, halos by ``ppermute``); the blocks,
put together, must equal the whole, step for step.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from test_mpi import REPORT, launch, needs_mpi, per_rank

import anyxp
from anyxp.ode import solve
from anyxp.ode.problems import gray_scott

#: Small enough for seconds, long enough for the spots to start growing (~100 steps).
N, T_END = 16, 40.0


def test_gray_scott_at_one_rank_matches_scipy():
    """The split problem's ``f`` at size 1 (halos sent to itself) is the periodic PDE."""
    from scipy.integrate import solve_ivp

    p = gray_scott(N, t_end=T_END)
    assert p.rows == slice(0, N) and p.shape == (2, N, N)
    sol = solve(p.f, p.t_span, p.y0, rtol=1e-8, atol=1e-10)
    ref = solve_ivp(p.f, p.t_span, p.y0, method="DOP853", rtol=1e-10, atol=1e-12)
    assert sol.success and ref.success
    np.testing.assert_allclose(sol.y[-1], ref.y[:, -1], rtol=0, atol=1e-7)
    # It moved: v's spot reacts, so a wrong halo would show.
    assert np.max(np.abs(sol.y[-1] - p.y0)) > 1e-2


@needs_mpi
@pytest.mark.parametrize(("name", "ranks"), [("numpy", 2), ("torch", 2), ("numpy", 4)])
def test_split_ranks_take_the_steps_of_one_process(tmp_path, name, ranks):
    pytest.importorskip(name)
    code = REPORT + textwrap.dedent(
        f"""
        import anyxp
        from anyxp.ode import solve
        from anyxp.ode.problems import gray_scott
        be = anyxp.backend({name!r}, dtype="float64", comm="mpi")
        p = gray_scott({N}, backend=be, t_end={T_END})
        sol = solve(p.f, p.t_span, p.y0, comm=be.comm, t_eval=[10.0, {T_END}])
        report(be.comm.rank, {{
            "rows": [p.rows.start, p.rows.stop],
            "y": be.to_numpy(sol.y).tolist(),
            "stats": sol.stats, "status": sol.status,
        }})
        """
    )
    out = launch("-c", code, str(tmp_path), n=ranks)
    assert out.returncode == 0, out.stderr
    seen = per_rank(tmp_path)
    block = N // ranks
    assert [seen[r]["rows"] for r in range(ranks)] == [
        [r * block, (r + 1) * block] for r in range(ranks)
    ]
    assert all(seen[r]["stats"] == seen[0]["stats"] for r in range(ranks)), "different steps"
    assert all(seen[r]["status"] == 0 for r in range(ranks))

    be = anyxp.backend(name, dtype="float64")
    whole = gray_scott(N, backend=be, t_end=T_END)
    ref = solve(whole.f, whole.t_span, whole.y0, t_eval=[10.0, T_END])
    assert seen[0]["stats"]["accepted"] == ref.stats["accepted"]
    assert seen[0]["stats"]["rejected"] == ref.stats["rejected"]
    # Each rank's block is rows [start, stop) of both fields.
    parts = [np.asarray(seen[r]["y"]).reshape(2, 2, block, N) for r in range(ranks)]
    joined = np.concatenate(parts, axis=2).reshape(2, -1)
    np.testing.assert_allclose(joined, be.to_numpy(ref.y), rtol=0, atol=1e-12)


@needs_mpi
def test_a_nan_on_one_rank_ends_both_with_the_same_status(tmp_path):
    """One rank's blow-up is seen by every rank's step control: none waits alone."""
    code = REPORT + textwrap.dedent(
        """
        import anyxp
        from anyxp.ode import solve
        be = anyxp.backend("numpy", comm="mpi")
        rank, xp = be.comm.rank, be.xp
        # rank 1's state blows up in finite time (y' = y^2 from 1: t = 1); rank 0's decays.
        f = (lambda t, y: -y) if rank == 0 else (lambda t, y: y * y)
        sol = solve(f, (0.0, 2.0), xp.ones(3), comm=be.comm)
        report(rank, {"status": sol.status, "t": float(sol.t[-1])})
        """
    )
    out = launch("-c", code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    ranks = per_rank(tmp_path)
    assert ranks[0] == ranks[1], ranks
    assert ranks[0]["status"] != 0 and abs(ranks[0]["t"] - 1.0) < 1e-3  # at the pole


@needs_mpi
def test_what_a_split_state_cannot_do_is_refused_on_every_rank(tmp_path):
    code = REPORT + textwrap.dedent(
        """
        import anyxp
        from anyxp.ode import solve
        be = anyxp.backend("numpy", comm="mpi")
        seen = {}
        for method in ("rodas5p", "kvaerno5"):
            try:
                solve(lambda t, y: -y, (0.0, 1.0), be.xp.ones(2), method=method, comm=be.comm)
            except ValueError as e:
                seen[method] = str(e)
        try:
            solve(lambda t, y: -y, (0.0, 1.0), be.xp.ones(2), dense_output=True, comm=be.comm)
        except ValueError as e:
            seen["dense"] = str(e)
        report(be.comm.rank, seen)
        """
    )
    out = launch("-c", code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    ranks = per_rank(tmp_path)
    assert ranks[0] == ranks[1]
    assert "explicit method" in ranks[0]["rodas5p"] and "explicit method" in ranks[0]["kvaerno5"]
    assert "whole state on one rank" in ranks[0]["dense"]


def test_a_split_over_more_ranks_than_rows_is_refused():
    class Five:  # a comm's shape is all gray_scott reads before refusing
        size, rank = 5, 0

    with pytest.raises(ValueError, match="cannot be split over 5 ranks"):
        gray_scott(4, comm=Five())


ENSEMBLE = """
import numpy as np
import anyxp
from anyxp.ode import solve_ensemble

def lorenz(t, y, rho):
    xp = anyxp.backend(like=y).xp
    x, v, z = y[:, 0], y[:, 1], y[:, 2]
    return xp.stack([10 * (v - x), x * (rho[:, 0] - z) - v, x * v - 8 / 3 * z], axis=1)

def wall(t, y, rho):      # a terminal event: x reaches 5 (some trajectories only)
    return y[:, 0] - 5.0
wall.terminal = True

def ensemble(be, comm=None):
    B = 7                  # not a multiple of the ranks: blocks of 3 and 4
    rhos = be.asarray(np.linspace(0.5, 28.0, B)[:, None])
    y0 = be.asarray(np.tile([1.0, 1.0, 1.0], (B, 1)))
    return solve_ensemble(lorenz, (0.0, 2.0), y0, params=rhos, t_eval=[0.0, 1.0, 2.0],
                          events=wall, comm=comm)
"""


@needs_mpi
@pytest.mark.parametrize("name", ["numpy", "torch"])
def test_an_ensemble_split_across_ranks_equals_one_process(tmp_path, name):
    pytest.importorskip(name)
    code = (
        REPORT
        + ENSEMBLE
        + textwrap.dedent(
            f"""
        be = anyxp.backend({name!r}, dtype="float64", comm="mpi")
        sol = ensemble(be, be.comm)
        n = be.to_numpy
        report(be.comm.rank, {{
            "y": n(sol.y).tolist(), "status": n(sol.status).tolist(),
            "steps": n(sol.stats["steps"]).tolist(), "nfev": sol.stats["nfev"],
            "t_event": np.nan_to_num(n(sol.t_events[0]), nan=-1.0).tolist(),
        }})
        """
        )
    )
    out = launch("-c", code, str(tmp_path))
    assert out.returncode == 0, out.stderr[-4000:]
    ranks = per_rank(tmp_path)
    assert ranks[0] == ranks[1], "the ranks disagree on the gathered result"
    namespace: dict = {}
    exec(ENSEMBLE, namespace)
    be = anyxp.backend(name, dtype="float64")
    whole = namespace["ensemble"](be)
    got = ranks[0]
    np.testing.assert_allclose(np.asarray(got["y"]), be.to_numpy(whole.y), rtol=0, atol=1e-12)
    assert got["status"] == be.to_numpy(whole.status).tolist()
    assert 5 in got["status"] and 0 in got["status"]  # some hit the wall, some did not
    assert got["steps"] == be.to_numpy(whole.stats["steps"]).tolist()
    t_event = np.nan_to_num(be.to_numpy(whole.t_events[0]), nan=-1.0)
    np.testing.assert_allclose(got["t_event"], t_event, rtol=0, atol=1e-12)


@needs_mpi
def test_the_cli_solves_gray_scott_split_across_ranks():
    """``mpiexec -n 2 anyxp solve gray-scott --comm mpi`` reports what one process does."""
    import json
    import subprocess
    import sys

    args = ["-m", "anyxp", "solve", "gray-scott", "--grid", "16", "--t-end", "40", "--json"]
    alone = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=True
    )
    out = launch(*args[1:], "--comm", "mpi", runner=("-m",))
    assert out.returncode == 0, out.stderr[-3000:]
    split, one = json.loads(out.stdout), json.loads(alone.stdout)  # rank 0 alone prints
    assert (split["ranks"], one["ranks"]) == (2, 1)
    assert split["stats"] == one["stats"] and split["status"] == 0
    assert split["mean_v"] == pytest.approx(one["mean_v"], rel=1e-12, abs=1e-15)
    assert split["mean_u"] == pytest.approx(one["mean_u"], rel=1e-12)
