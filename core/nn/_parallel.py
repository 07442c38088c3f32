"""Data-parallel training: each rank its block of the batch, gradients averaged over ranks."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["batch_block", "mean_over_ranks"]


def batch_block(n: int, comm: Any) -> slice:
    """The rows of a batch of ``n`` that rank ``comm.rank`` of ``comm.size`` takes.

    Blocks are contiguous and differ in length by at most one. For the averaged gradient
    to equal the whole batch's, ``n`` must be a multiple of ``comm.size`` (with a loss
    that is a mean over rows); :func:`mean_over_ranks` does not reweight uneven blocks.
    """
    if not isinstance(n, int) or n < comm.size:
        raise ValueError(
            f"a batch of {n} rows cannot give each of {comm.size} ranks a row; use a batch "
            "of at least one row per rank"
        )
    return slice(comm.rank * n // comm.size, (comm.rank + 1) * n // comm.size)


def mean_over_ranks(tree: Any, comm: Any) -> Any:
    """The mean over ranks of every array in ``tree`` (gradients, usually), by one allreduce.

    The leaves are raveled into one buffer, reduced together and split back, as
    PyTorch's DDP buckets gradients: one collective's latency per step instead of one per
    parameter array. Every rank passes a tree of the same structure, shapes and dtype.
    ``comm`` is the backend's (``be.comm``); at size 1 the tree comes back as it is.
    Collectives carry derivatives, so this may sit inside a differentiated function too.
    """
    import anyxp

    if comm.size == 1:
        return tree
    leaves, rebuild = anyxp.backend("numpy").tree_flatten(tree)
    if not leaves:
        return tree
    be = anyxp.backend(like=leaves[0])
    leaves, rebuild = be.tree_flatten(tree)  # the library's own trees (JAX's nodes)
    xp = be.xp
    dtypes = {leaf.dtype for leaf in leaves}
    if len(dtypes) > 1:
        raise TypeError(
            f"mean_over_ranks reduces one buffer and the leaves have dtypes "
            f"{sorted(map(str, dtypes))}; cast them to one dtype first"
        )
    flat = xp.concat([xp.reshape(leaf, (-1,)) for leaf in leaves])
    total = comm.allreduce(flat, "mean")
    out, start = [], 0
    for leaf in leaves:
        size = math.prod(leaf.shape)
        out.append(xp.reshape(total[start : start + size], leaf.shape))
        start += size
    return rebuild(out)
