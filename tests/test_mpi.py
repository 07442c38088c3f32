"""Collectives at two ranks, launched from inside the suite under ``mpiexec``.

Every launch has two timeouts: MPICH's own (``MPIEXEC_TIMEOUT``) and the subprocess's,
so a deadlock fails the test instead of hanging CI. Ranks run ``python -m mpi4py``,
which aborts every rank when one raises.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import mpiexec

pytest.importorskip("mpi4py")
MPIEXEC = mpiexec()
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec: pip install 'anyxp[mpi]'")
LAUNCH_TIMEOUT = 240


def launch(
    *args: str, n: int = 2, timeout: int = LAUNCH_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
    env["MPIEXEC_TIMEOUT"] = str(timeout - 30)
    env.setdefault("JAX_PLATFORMS", "cpu")
    return subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, "-m", "mpi4py", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# Ranks share one stdout, where their lines can interleave: each reports to its own file.
REPORT = """
import pathlib, sys
def report(rank, text):
    pathlib.Path(sys.argv[1], f"rank{rank}.txt").write_text(str(text))
"""


def per_rank(folder) -> dict[int, str]:
    return {int(p.stem[4:]): p.read_text() for p in sorted(folder.glob("rank*.txt"))}


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
    assert per_rank(tmp_path) == {0: "[2.0, 2.0, 2.0]", 1: "[2.0, 2.0, 2.0]"}


def test_a_rank_that_raises_ends_the_job():
    code = textwrap.dedent(
        """
        import anyxp
        be = anyxp.backend("numpy", comm="mpi")
        if be.comm.rank == 1:
            raise RuntimeError("rank 1 fails on purpose")
        be.comm.allreduce(be.xp.ones(3))  # rank 0 would wait here for ever
        """
    )
    start = time.monotonic()
    out = launch("-c", code, timeout=120)
    assert out.returncode != 0
    assert "rank 1 fails on purpose" in out.stderr
    assert time.monotonic() - start < 100, "the job ended by the launcher's timeout, not by abort"


def test_checked_mode_reports_mismatched_shapes_on_every_rank(tmp_path):
    code = REPORT + textwrap.dedent(
        """
        import anyxp
        be = anyxp.backend("numpy", comm="mpi", comm_options={"checked": True})
        try:
            be.comm.allreduce(be.xp.ones(3 + be.comm.rank))
        except anyxp.CommMismatchError as exc:
            report(be.comm.rank, exc)
        """
    )
    out = launch("-c", code, str(tmp_path))
    assert out.returncode == 0, out.stderr
    seen = per_rank(tmp_path)
    assert set(seen) == {0, 1}
    assert "rank 0: shape (3,)" in seen[0] and "rank 1: shape (4,)" in seen[0]


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
