"""The ``mpi4jax`` comm at two ranks: collectives inside ``jax.jit``, compiled loops and AD.

Each test launches one job under ``mpiexec`` (the ``launch`` helper of ``test_mpi``, with
its two timeouts). Expected values are computed here with numpy from what each rank
passed, not by another comm.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from test_mpi import MPIEXEC, PLAIN, PROMPT, REPORT, launch, launch_timed, per_rank

pytestmark = pytest.mark.skipif(
    MPIEXEC is None
    or any(importlib.util.find_spec(m) is None for m in ("mpi4py", "mpi4jax", "jax")),
    reason="no mpiexec, mpi4py, jax or mpi4jax: pip install nanobind, then "
    "pip install --no-build-isolation mpi4jax (mpicc on PATH)",
)

#: Collectives inside one jit'd function, a compiled while_loop, and gradients, run once
#: with the default (checked) comm and once with checked=False.
JITTED = REPORT + textwrap.dedent(
    """
    import jax, jax.numpy as jnp, anyxp
    from anyxp.capabilities import COMM_CAPABILITIES
    from anyxp.plugins.jax._comm import create

    be = anyxp.backend("jax", comm="mpi4jax")
    unchecked = anyxp.backend("jax").with_comm(create(anyxp.backend("jax"), checked=False),
                                               COMM_CAPABILITIES)
    seen = {}
    for mode, b in (("checked", be), ("unchecked", unchecked)):
        c = b.comm
        r = c.rank
        x = jnp.arange(3.0) * (r + 1)

        @jax.jit
        def step(x):
            return {
                "sum": c.allreduce(x), "max": c.allreduce(x, "max"),
                "mean": c.allreduce(x, "mean"), "gather": c.allgather(x),
                "ring": c.ppermute(x, [(0, 1), (1, 0)]), "partial": c.ppermute(x, [(0, 1)]),
                "bcast": c.broadcast(x, root=1),
                "scatter": c.reduce_scatter(jnp.arange(4.0) * (r + 1)),
            }

        def loop(x):
            def body(carry):
                i, y = carry
                c.barrier()
                return i + 1, c.allreduce(y, "mean") + c.ppermute(y, [(0, 1)])
            return jax.lax.while_loop(lambda carry: carry[0] < 3, body, (0, x))[1]

        loss = lambda x: jnp.sum(c.allreduce(x) ** 2)
        ring = lambda x: jnp.sum(c.ppermute(x, [(0, 1), (1, 0)]) ** 2) * (r + 1)
        out = {k: v.tolist() for k, v in step(x).items()}
        out["loop"] = jax.jit(loop)(x).tolist()
        out["grad"] = jax.grad(jax.jit(loss))(x).tolist()
        out["jit_grad"] = jax.jit(jax.grad(loss))(x).tolist()
        out["jit_grad_ring"] = jax.jit(jax.grad(ring))(x).tolist()
        seen[mode] = out
    report(be.comm.rank, seen)
    """
)


def _loop_reference(xs: list[np.ndarray]) -> list[np.ndarray]:
    ys = [x.copy() for x in xs]
    for _ in range(3):
        mean = (ys[0] + ys[1]) / 2
        ys = [mean, mean + ys[0]]
    return ys


def test_collectives_inside_jit_while_loop_and_grad(tmp_path):
    out = launch("-c", JITTED, str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    seen = per_rank(tmp_path)
    assert set(seen) == {0, 1}
    xs = [np.arange(3.0) * (r + 1) for r in (0, 1)]
    total = xs[0] + xs[1]
    loops = _loop_reference(xs)
    for r in (0, 1):
        for mode in ("checked", "unchecked"):
            got = {k: np.asarray(v) for k, v in seen[r][mode].items()}
            np.testing.assert_allclose(got["sum"], total)
            np.testing.assert_allclose(got["max"], np.maximum(xs[0], xs[1]))
            np.testing.assert_allclose(got["mean"], total / 2)
            np.testing.assert_allclose(got["gather"], np.stack(xs))
            np.testing.assert_allclose(got["ring"], xs[1 - r])
            np.testing.assert_allclose(got["partial"], xs[0] if r == 1 else np.zeros(3))
            np.testing.assert_allclose(got["bcast"], xs[1])
            scattered = 3 * np.arange(4.0)
            np.testing.assert_allclose(got["scatter"], scattered[2 * r : 2 * r + 2])
            np.testing.assert_allclose(got["loop"], loops[r], rtol=1e-6)
            # d/dx_r of sum over ranks of sum(allreduce(x)^2) = 2 * size * total
            np.testing.assert_allclose(got["grad"], 4 * total, rtol=1e-6)
            np.testing.assert_allclose(got["jit_grad"], 4 * total, rtol=1e-6)
            # rank s's loss is (s + 1) * |x_{other}|^2: x_r is weighted by the other rank
            np.testing.assert_allclose(got["jit_grad_ring"], 2 * (2 - r) * xs[r], rtol=1e-6)


def test_conformance_comm_suite_at_two_ranks():
    out = launch(
        "-m",
        "pytest",
        "--pyargs",
        "anyxp.conformance.test_comm",
        "--anyxp-backend",
        "jax",
        "--anyxp-comm",
        "mpi4jax",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        "--timeout=120",
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert out.stdout.count(" passed") == 2, out.stdout[-2000:]  # one summary per rank


MISMATCH = "c.allgather(jnp.ones(4 if c.rank == 0 else 2))"
VIEWS = "rank 0: allgather shape (4,) float32; rank 1: allgather shape (2,) float32"


def test_eager_disagreement_raises_on_both_ranks_which_stay_in_step(tmp_path):
    code = REPORT + textwrap.dedent(
        f"""
        import jax.numpy as jnp, anyxp
        c = anyxp.backend("jax", comm="mpi4jax").comm
        try:
            {MISMATCH}
            seen = {{"error": None}}
        except anyxp.CommMismatchError as exc:
            seen = {{"error": str(exc), "views": list(exc.views)}}
        seen["after"] = c.allreduce(jnp.ones(2)).tolist()
        report(c.rank, seen)
        """
    )
    out = launch("-c", code, str(tmp_path), timeout=90, ANYXP_COMM_TIMEOUT="10")
    assert out.returncode == 0, out.stderr[-4000:]
    seen = per_rank(tmp_path)
    assert seen[0] == seen[1]
    assert VIEWS in seen[0]["error"]
    assert seen[0]["after"] == [2.0, 2.0]


def test_disagreement_inside_jit_ends_every_rank_naming_each_view():
    code = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, anyxp
        c = anyxp.backend("jax", comm="mpi4jax").comm
        step = lambda i, y: c.allgather(y)[0]
        jax.jit(lambda y: jax.lax.fori_loop(0, 2, step, y))(jnp.ones(4 if c.rank == 0 else 2))
        print("not reached")
        """
    )
    out, took = launch_timed("-c", code, runner=PLAIN, timeout=90, ANYXP_COMM_TIMEOUT="30")
    assert out.returncode != 0
    for r in (0, 1):
        assert f"[rank {r}] anyxp: inside a compiled program, ranks disagree" in out.stderr
    assert VIEWS in out.stderr
    assert "not reached" not in out.stdout
    assert took < PROMPT, out.stderr


def test_a_rank_that_returns_while_another_waits_ends_the_job_at_the_deadline():
    code = textwrap.dedent(
        """
        import jax.numpy as jnp, anyxp
        c = anyxp.backend("jax", comm="mpi4jax").comm
        if c.rank == 0:
            c.allreduce(jnp.ones(3))
        """
    )
    out, took = launch_timed("-c", code, runner=PLAIN, timeout=60, ANYXP_COMM_TIMEOUT="2")
    assert out.returncode != 0
    assert "rank 0 waited 2." in out.stderr
    assert "allreduce(op='sum') shape (3,) float32" in out.stderr
    assert took < PROMPT, out.stderr


def test_bad_options_and_backends_name_the_fix():
    """Alone (no mpiexec): the comm is a group of one, and its errors name the fix."""
    code = textwrap.dedent(
        """
        import jax.numpy as jnp, anyxp
        from anyxp.plugins.jax._comm import create
        be = anyxp.backend("jax", comm="mpi4jax")
        assert (be.comm.rank, be.comm.size) == (0, 1)
        assert be.comm.allreduce(jnp.ones(2)).tolist() == [1.0, 1.0]
        raw = create(anyxp.backend("jax"))  # without the derivative rules' wrapper
        for call, expected in [
            (lambda: create(anyxp.backend("jax"), ranks=2), "has no option 'ranks'"),
            (lambda: create(anyxp.backend("numpy")), "use comm='mpi'"),
            (lambda: raw.allreduce(__import__("numpy").ones(2)), "convert with be.asarray"),
        ]:
            try:
                call()
            except TypeError as exc:
                assert expected in str(exc), exc
            else:
                raise AssertionError(expected)
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
    env.setdefault("JAX_PLATFORMS", "cpu")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.strip() == "ok"
