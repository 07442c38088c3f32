"""Collectives at two ranks, launched from inside the suite under ``mpiexec``.

Every launch has two timeouts: MPICH's own (``MPIEXEC_TIMEOUT``) and the subprocess's,
so a deadlock fails the test instead of hanging CI. A launch that tests a hang also sets
a deadline of a few seconds, and asserts the job ended long before the launcher's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

import anyxp
from conftest import mpiexec

MPIEXEC = mpiexec()
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason="no mpi4py or mpiexec: pip install 'anyxp[mpi]'",
)
LAUNCH_TIMEOUT = 240
#: A job that should end by itself ends well within this; the launchers' timeouts are later.
PROMPT = 20
#: Runs a script as ``python -m mpi4py`` does (it aborts every rank when one raises) ...
MPI4PY = ("-m", "mpi4py")
#: ... or as plain ``python``, where anyxp's own hooks must do it.
PLAIN = ()


def launch(
    *args: str,
    n: int = 2,
    timeout: int = LAUNCH_TIMEOUT,
    runner: tuple[str, ...] = MPI4PY,
    **env_vars: str,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
    env["MPIEXEC_TIMEOUT"] = str(timeout - 30)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(env_vars)
    return subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, *runner, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def launch_timed(*args: str, **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], float]:
    """``launch``, and how many seconds the job took."""
    start = time.monotonic()
    out = launch(*args, **kwargs)
    return out, time.monotonic() - start


# Ranks share one stdout, where their lines can interleave: each reports to its own file.
REPORT = """
import json, pathlib, sys
def report(rank, value):
    pathlib.Path(sys.argv[1], f"rank{rank}.json").write_text(json.dumps(value))
"""


def per_rank(folder) -> dict[int, Any]:
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in sorted(folder.glob("rank*.json"))}


@needs_mpi
def test_allreduce_of_ones_gives_two_on_both_ranks(tmp_path):
    code = REPORT + textwrap.dedent(
        """
        import numpy as np, anyxp
        be = anyxp.backend("numpy", comm="mpi")
        out = be.comm.allreduce(be.xp.ones(3))
        report(be.comm.rank, list(map(float, out)))
        """
    )
    out = launch("-c", code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert per_rank(tmp_path) == {0: [2.0, 2.0, 2.0], 1: [2.0, 2.0, 2.0]}


# -- checked collectives --------------------------------------------------------------
#: case -> (what rank 0 and rank 1 call, each rank's view in the error)
DISAGREEMENTS = {
    "allgather shapes": (
        "comm.allgather(xp.ones(4 if rank == 0 else 2))",
        ("allgather shape (4,) float64", "allgather shape (2,) float64"),
    ),
    "allreduce dtypes": (
        "comm.allreduce(xp.ones(3, dtype=xp.float64 if rank == 0 else xp.float32))",
        ("allreduce(op='sum') shape (3,) float64", "allreduce(op='sum') shape (3,) float32"),
    ),
    "broadcast roots": (
        "comm.broadcast(xp.ones(3), root=rank)",
        ("broadcast(root=0) shape (3,) float64", "broadcast(root=1) shape (3,) float64"),
    ),
    "barrier vs allreduce": (
        "comm.barrier() if rank == 0 else comm.allreduce(xp.ones(3))",
        ("barrier", "allreduce(op='sum') shape (3,) float64"),
    ),
    "ppermute perms": (
        "comm.ppermute(xp.ones(3), [(0, 1), (1, 0)] if rank == 0 else [(0, 1)])",
        (
            "ppermute(perm=[(0, 1), (1, 0)]) shape (3,) float64",
            "ppermute(perm=[(0, 1)]) shape (3,) float64",
        ),
    ),
}


@pytest.fixture(scope="module")
def disagreements(tmp_path_factory) -> dict[int, dict[str, Any]]:
    """Each rank's outcome of every disagreeing call, made one after another in one job."""
    folder = tmp_path_factory.mktemp("disagreements")
    code = REPORT + textwrap.dedent(
        f"""
        import anyxp
        be = anyxp.backend("numpy", comm="mpi")  # checked by default
        comm, rank, xp = be.comm, be.comm.rank, be.xp
        seen = {{}}
        for case, (call, _) in {DISAGREEMENTS!r}.items():
            try:
                eval(call)
                seen[case] = "no error"
            except anyxp.CommMismatchError as exc:
                seen[case] = {{"message": str(exc), "views": list(exc.views)}}
        # Every rank raised at the same point, so the comm is still in step.
        seen["after"] = float(comm.allreduce(xp.ones(1))[0])
        report(rank, seen)
        """
    )
    # Today's collectives would hang on some of these: a deadline ends the job if so.
    out = launch("-c", code, str(folder), timeout=90, ANYXP_COMM_TIMEOUT="10")
    assert out.returncode == 0, out.stderr[-4000:]
    return per_rank(folder)


@needs_mpi
@pytest.mark.parametrize("case", DISAGREEMENTS)
def test_disagreeing_ranks_both_raise_comm_mismatch_error(disagreements, case):
    views = DISAGREEMENTS[case][1]
    assert set(disagreements) == {0, 1}
    on_0, on_1 = disagreements[0][case], disagreements[1][case]
    assert on_0 == on_1, "both ranks raise the same error"
    assert isinstance(on_0, dict), on_0
    assert on_0["views"] == list(views)
    assert f"rank 0: {views[0]}; rank 1: {views[1]}" in on_0["message"]


@needs_mpi
def test_ranks_stay_in_step_after_a_mismatch(disagreements):
    assert disagreements[0]["after"] == disagreements[1]["after"] == 2.0


@needs_mpi
def test_checked_false_and_anyxp_comm_checked_0_skip_the_agreement(tmp_path):
    """Opted out, a collective is the one MPI call it makes unchecked; results are the same."""
    code = REPORT + textwrap.dedent(
        """
        import os, anyxp
        from mpi4py import MPI

        class Spy:
            '''COMM_WORLD, recording which of its methods each collective calls.'''
            def __init__(self):
                self.calls = []
            def __getattr__(self, name):
                method = getattr(MPI.COMM_WORLD, name)
                def record(*args, **kwargs):
                    self.calls.append(name)
                    return method(*args, **kwargs)
                return method if name.startswith("Get_") else record

        def run(**options):
            spy = Spy()
            be = anyxp.backend("numpy", comm="mpi", comm_options={"comm": spy, **options})
            c, x = be.comm, be.xp.arange(4.0) + be.comm.rank
            results = [
                c.allreduce(x), c.broadcast(x, root=1), c.allgather(x),
                c.reduce_scatter(x), c.ppermute(x, [(0, 1), (1, 0)]), c.barrier(),
            ]
            return {
                "checked": c.checked,
                "calls": spy.calls,
                "results": [None if r is None else r.tolist() for r in results],
            }

        seen = {"default": run(), "checked=False": run(checked=False)}
        os.environ["ANYXP_COMM_CHECKED"] = "0"
        seen["ANYXP_COMM_CHECKED=0"] = run()
        report(MPI.COMM_WORLD.Get_rank(), seen)
        """
    )
    out = launch("-c", code, str(tmp_path))
    assert out.returncode == 0, out.stderr[-4000:]
    unchecked = ["Allreduce", "Bcast", "Allgather", "Reduce_scatter_block", "Irecv", "Isend"]
    for rank, seen in per_rank(tmp_path).items():
        default = seen["default"]
        assert default["checked"] is True
        # One small Allreduce agrees on each call first (and is itself the barrier).
        agreed = [call for u in unchecked[:-1] for call in ("Allreduce", u)]
        assert default["calls"] == [*agreed, "Isend", "Allreduce"], rank
        for mode in ("checked=False", "ANYXP_COMM_CHECKED=0"):
            opted_out = seen[mode]
            assert opted_out["checked"] is False, mode
            assert opted_out["calls"] == [*unchecked, "Barrier"], mode
            assert opted_out["results"] == default["results"], mode


def test_non_arrays_raise_type_error_at_size_one():
    """The local comm checks its input as a comm of N ranks does (no MPI needed)."""
    comm = anyxp.backend("numpy").comm
    with pytest.raises(TypeError, match=r"allreduce takes an array.*be\.asarray\(3\.0\)"):
        comm.allreduce(3.0)
    with pytest.raises(TypeError, match=r"allgather takes an array.*be\.asarray\(\[1, 2\]\)"):
        comm.allgather([1, 2])


# -- never hang ---------------------------------------------------------------------
RAISES = {
    "main thread": """
        if rank == 1:
            raise RuntimeError("rank 1 fails on purpose")
        """,
    "worker thread": """
        import threading, time
        if rank == 1:
            def work():
                raise RuntimeError("rank 1 fails on purpose")
            threading.Thread(target=work).start()
            time.sleep(60)  # without the hook, rank 0 would wait this long, or for ever
        """,
}


@needs_mpi
@pytest.mark.parametrize(
    ("runner", "where"),
    [(MPI4PY, "main thread"), (PLAIN, "main thread"), (PLAIN, "worker thread")],
    ids=["python -m mpi4py", "plain python", "plain python, worker thread"],
)
def test_a_rank_that_raises_ends_the_job(runner, where):
    code = "import anyxp\n"
    code += 'be = anyxp.backend("numpy", comm="mpi")\nrank = be.comm.rank\n'
    code += textwrap.dedent(RAISES[where])
    code += "be.comm.allreduce(be.xp.ones(3))  # rank 0 waits here for rank 1\n"
    out, took = launch_timed("-c", code, runner=runner, timeout=60, ANYXP_COMM_TIMEOUT="10")
    assert out.returncode != 0
    assert "RuntimeError: rank 1 fails on purpose" in out.stderr
    if runner == PLAIN:
        assert "[rank 1] RuntimeError: rank 1 fails on purpose" in out.stderr
    assert "past its deadline" not in out.stderr, "the job ended by rank 0's deadline, not by abort"
    assert took < PROMPT, f"the job ended by the launcher's timeout, not by abort: {out.stderr}"


@needs_mpi
def test_a_rank_that_returns_while_another_waits_ends_the_job_at_the_deadline():
    """Rank 1 finishes its script (status 0) and waits in MPI_Finalize; rank 0's deadline ends both."""
    code = textwrap.dedent(
        """
        import anyxp
        be = anyxp.backend("numpy", comm="mpi")
        if be.comm.rank == 0:
            be.comm.allreduce(be.xp.ones(3))
        """
    )
    out, took = launch_timed("-c", code, runner=PLAIN, timeout=60, ANYXP_COMM_TIMEOUT="2")
    assert out.returncode != 0
    assert "rank 0 waited 2." in out.stderr
    assert "allreduce(op='sum') shape (3,) float64" in out.stderr
    assert "raise ANYXP_COMM_TIMEOUT" in out.stderr
    assert took < PROMPT, out.stderr


@needs_mpi
def test_timeout_comm_option_overrides_the_environment():
    code = textwrap.dedent(
        """
        import time, anyxp
        be = anyxp.backend("numpy", comm="mpi", comm_options={"timeout": 1.5})
        if be.comm.rank == 1:
            time.sleep(60)
        be.comm.broadcast(be.xp.ones((2, 3), dtype=be.xp.float32))
        """
    )
    out, took = launch_timed("-c", code, timeout=60, ANYXP_COMM_TIMEOUT="100")
    assert out.returncode != 0
    assert "rank 0 waited 1." in out.stderr
    assert "broadcast(root=0) shape (2, 3) float32, past its deadline of 1.5 s" in out.stderr
    assert took < PROMPT, out.stderr


@needs_mpi
@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "array_api_strict"])
def test_conformance_comm_suite_at_two_ranks(name):
    pytest.importorskip({"numpy": "numpy"}.get(name, name))
    out = launch(
        "-m",
        "pytest",
        "--pyargs",
        "anyxp.conformance.test_comm",
        "--anyxp-backend",
        name,
        "--anyxp-comm",
        "mpi",
        "-q",
        "-p",
        "no:cacheprovider",
        "--timeout=120",
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.count(" passed") == 2, out.stdout[-2000:]  # one summary per rank


@needs_mpi
def test_anyxp_check_launches_itself_at_two_ranks():
    """One command for a plugin author: ``anyxp check numpy --comm mpi`` starts mpiexec."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
    out = subprocess.run(
        [sys.executable, "-m", "anyxp", "check", "numpy", "--comm", "mpi"],
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.startswith("2 ranks, launched with")
    assert "rank 1: OK: every declared capability passed" in out.stdout
