"""Data-parallel training: at two ranks, each with half the batch and gradients averaged
by ``anyxp.nn.mean_over_ranks``, the parameters equal one process's on the whole batch.

The same training function runs in this process (size 1) and under each launcher. It
uses SGD, whose update is linear in the gradient: Adam's first steps are ``sign(g)``,
which turns the last-bit difference between one mean and a mean of two half-means into
a whole step wherever a gradient is near zero.
"""

from __future__ import annotations

import json
import random
import socket
import textwrap

import numpy as np
import pytest
from test_mpi import launch, needs_mpi
from test_torch_dist import needs_torchrun

TRAIN = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import anyxp
    from anyxp import nn
    from anyxp.control_flow import tree_map

    def train(be, steps=15):
        xp, comm = be.xp, be.comm
        x = np.linspace(-2.0, 3.0, 64).reshape(-1, 1)
        rows = nn.batch_block(x.shape[0], comm)
        xs = be.asarray(x[rows])
        ys = xp.sin(xs)
        start = nn.mlp_init(anyxp.backend("numpy").random.key(0), [1, 16, 16, 1])
        params = tree_map(be.asarray, start)       # every rank starts from the same weights
        opt = nn.sgd(lr=0.1, momentum=0.9)
        state = opt.init(params)

        def loss(p):
            r = nn.mlp_apply(p, xs) - ys
            return xp.mean(r * r)

        for _ in range(steps):
            grads = nn.mean_over_ranks(be.ad.grad(loss)(params), comm)
            params, state = opt.update(grads, state, params)
        leaves, _ = be.tree_flatten(params)
        return [be.to_numpy(leaf).tolist() for leaf in leaves]

    if __name__ == "__main__":
        name, comm, out = sys.argv[1:4]
        be = anyxp.backend(name, dtype="float64", comm=comm)
        params = train(be)
        if be.comm.rank == 0:
            with open(out, "w") as f:
                json.dump(params, f)
    """
)


def _alone(name: str, steps: int = 15) -> list[np.ndarray]:
    """The training in this process, one rank, the whole batch."""
    pytest.importorskip(name)
    namespace: dict = {"__name__": "train"}
    exec(TRAIN, namespace)
    import anyxp

    be = anyxp.backend(name, dtype="float64")
    return [np.asarray(p) for p in namespace["train"](be, steps)]


def _check(tmp_path, name: str, out) -> None:
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    together = [np.asarray(p) for p in json.loads((tmp_path / "params.json").read_text())]
    alone = _alone(name)
    assert len(together) == len(alone)
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # Training moved the weights: equal parameters are not just the common start.
    start = _alone(name, steps=0)
    assert max(np.max(np.abs(a - b)) for a, b in zip(alone, start, strict=True)) > 1e-3


@needs_mpi
@pytest.mark.parametrize("name", ["torch", "jax"])
def test_two_mpi_ranks_train_to_one_process_parameters(tmp_path, name):
    pytest.importorskip(name)
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    out = launch(str(script), name, "mpi", str(tmp_path / "params.json"))
    _check(tmp_path, name, out)


@needs_mpi
@needs_torchrun
def test_two_torch_distributed_ranks_train_to_one_process_parameters(tmp_path):
    """The torch comm launched by mpiexec: it starts its group from MPICH's variables."""
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    out = launch(
        str(script), "torch", "torch", str(tmp_path / "params.json"), MASTER_PORT=_free_port()
    )
    _check(tmp_path, "torch", out)


def _free_port() -> str:
    """A free port below the kernel's ephemeral range (32768-60999 on Linux).

    A port from ``bind(0)`` lies inside that range, and while rank 0 still imports torch,
    rank 1 keeps reconnecting to it, each attempt from a new ephemeral port: one of them
    can be the port itself, and rank 0's bind then fails (a flake seen about 1 run in 30).
    """
    rng = random.Random()
    for _ in range(100):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return str(port)
    raise RuntimeError("no free port in 20000-32000")


def test_mean_over_ranks_at_one_rank_is_the_identity():
    import anyxp
    from anyxp import nn

    be = anyxp.backend("numpy")
    tree = {"w": be.xp.ones((2, 3)), "b": [be.xp.zeros(3)]}
    assert nn.mean_over_ranks(tree, be.comm) is tree


def test_a_batch_smaller_than_the_ranks_is_refused():
    from anyxp import nn

    class Three:  # a comm's shape is all batch_block reads
        size, rank = 3, 0

    assert nn.batch_block(7, Three()) == slice(0, 2)
    with pytest.raises(ValueError, match="cannot give each of 3 ranks a row"):
        nn.batch_block(2, Three())
