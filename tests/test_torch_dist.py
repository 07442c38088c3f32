"""The ``torch`` comm (``torch.distributed``, gloo) at two ranks under ``torchrun``: the
comm conformance suite through ``anyxp check``, and the fault contract of every comm
(agreement checked, a rank's exception and a rank that leaves end the job promptly).
``tests/test_data_parallel.py`` launches it under ``mpiexec`` too.

Every launch has a timeout; a launch that tests a hang sets a deadline of a few seconds.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time

import pytest
from test_mpi import PROMPT, REPORT, per_rank

needs_torchrun = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"
)
LAUNCH_TIMEOUT = 240


def torchrun(
    *args: str, timeout: int = LAUNCH_TIMEOUT, **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node 2 *args``, killed after ``timeout`` s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
    env.update(env_vars)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return subprocess.run(
        [*command, "--nproc_per_node", "2", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _check(*options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
    command = [sys.executable, "-m", "anyxp", "check", "torch", "--comm", "torch", *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=env)


@needs_torchrun
def test_anyxp_check_launches_itself_at_two_ranks_under_torchrun():
    """One command for a plugin author: the conformance suite at two ranks, each reporting."""
    out = _check()
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "2 ranks, launched with python -m torch.distributed.run --standalone" in out.stdout
    assert "anyxp check torch (comm torch)" in out.stdout
    assert "rank 1: OK: every declared capability passed" in out.stdout
    for collective in ("allreduce", "allgather", "broadcast", "reduce_scatter", "ppermute"):
        assert f"comm.{collective}" in out.stdout
    assert "failed" not in out.stdout


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "job.py"
    path.write_text(REPORT + textwrap.dedent(body))
    return str(path)


@needs_torchrun
def test_disagreeing_ranks_both_raise_comm_mismatch_error(tmp_path):
    script = _script(
        tmp_path,
        """
        import anyxp
        be = anyxp.backend("torch", comm="torch")
        rank = be.comm.rank
        try:
            be.comm.allgather(be.xp.ones(4 if rank == 0 else 2))
        except anyxp.CommMismatchError as e:
            report(rank, str(e))
        """,
    )
    out = torchrun(script, str(tmp_path))
    assert out.returncode == 0, out.stderr[-4000:]
    seen = per_rank(tmp_path)
    assert seen[0] == seen[1]
    assert "rank 0: allgather shape (4,) float32; rank 1: allgather shape (2,)" in seen[0]


def _timed(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    out = torchrun(*args, **env)
    return out, time.monotonic() - start


@needs_torchrun
def test_a_rank_that_raises_ends_the_job(tmp_path):
    script = _script(
        tmp_path,
        """
        import anyxp
        be = anyxp.backend("torch", comm="torch")
        if be.comm.rank == 1:
            raise RuntimeError("boom on rank 1")
        be.comm.allreduce(be.xp.ones(3))
        """,
    )
    out, took = _timed(script, str(tmp_path))
    assert out.returncode != 0
    assert "boom on rank 1" in out.stderr
    assert took < PROMPT + 20, out.stderr[-2000:]


@needs_torchrun
def test_a_rank_that_returns_while_another_waits_ends_the_job(tmp_path):
    """gloo sees the leaving rank's connection close: the waiting rank raises at once."""
    script = _script(
        tmp_path,
        """
        import anyxp
        be = anyxp.backend("torch", comm="torch")
        if be.comm.rank == 0:
            be.comm.allreduce(be.xp.ones(3))
        """,
    )
    out, took = _timed(script, str(tmp_path))
    assert out.returncode != 0
    assert "CommLostError: rank 0 was in allreduce(op='sum') shape (3,) float32" in out.stderr
    assert took < PROMPT + 20, out.stderr[-2000:]


@needs_torchrun
def test_a_rank_that_stays_but_skips_a_collective_ends_the_job_at_the_deadline(tmp_path):
    script = _script(
        tmp_path,
        """
        import time
        import anyxp
        be = anyxp.backend("torch", comm="torch")
        if be.comm.rank == 0:
            be.comm.allreduce(be.xp.ones(3))
        else:
            time.sleep(60)   # busy elsewhere, never joins
        """,
    )
    out, took = _timed(script, str(tmp_path), ANYXP_COMM_TIMEOUT="2")
    assert out.returncode != 0
    assert "rank 0 waited 2." in out.stderr, out.stderr[-2000:]
    assert "allreduce(op='sum') shape (3,) float32" in out.stderr
    assert took < PROMPT + 20, out.stderr[-2000:]


def test_alone_the_torch_comm_is_a_group_of_one():
    pytest.importorskip("torch")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "PMI_RANK")}
    code = textwrap.dedent(
        """
        import anyxp
        be = anyxp.backend("torch", comm="torch")
        c = be.comm
        x = be.xp.arange(4.0)
        assert (c.rank, c.size) == (0, 1), (c.rank, c.size)
        assert bool(be.xp.all(c.allreduce(x, "mean") == x))
        assert tuple(c.allgather(x).shape) == (1, 4)
        assert bool(be.xp.all(c.ppermute(x, [(0, 0)]) == x))
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_unknown_options_name_the_options():
    pytest.importorskip("torch")
    import anyxp

    with pytest.raises(TypeError, match="its options are checked, timeout, group"):
        anyxp.backend("torch", comm="torch", comm_options={"bogus": 1})
