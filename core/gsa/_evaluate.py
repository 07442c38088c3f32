"""Evaluating the model on the design: in batches here, across MPI ranks, or on dask.

Every path returns the outputs of all rows of the design, in the design's order, as one
``(rows, k)`` array, so the analysis is the same whichever path ran the model.

- **Ranks** (every eager backend; ``be.comm`` of size 1 by default): the rows split into
  ``size`` near-equal blocks; each rank evaluates its own block, in chunks of ``chunk`` rows,
  and ``allgather`` gives every rank all outputs. A block one row short of the longest
  repeats its last row (``allgather`` takes equal shapes), and that copy is dropped: at
  most ``size - 1`` extra evaluations in all. At size 1 this is one batched evaluation.
- **Row blocks** (dask): the rows become a dask array of blocks of ``chunk`` rows, and
  ``be.map_row_blocks`` runs the model on each block as a task, on a ``distributed``
  cluster when a client is active. The model sees numpy blocks there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.gsa._checks import check_output, check_width
from anyxp.gsa._design import Design
from anyxp.selection import name_of

__all__ = ["evaluate", "rank_rows"]

#: With ``progress=True`` and no ``chunk``, the rows go to the model in this many chunks,
#: so that the bar moves.
_PROGRESS_CHUNKS = 20
#: Dask's default blocks: up to this many, of at least ``_MIN_BLOCK`` rows each.
_MAX_BLOCKS, _MIN_BLOCK = 32, 1024


def evaluate(
    be: Backend, model: Callable[[Any], Any], design: Design, chunk: int | None, progress: bool
) -> tuple[Any, bool]:
    """Return the model's outputs at every row of ``design``, ``(rows, k)`` on ``be``, and
    whether the model returns one output as a vector, ``(rows,)``."""
    if be.has_row_blocks:
        return _in_row_blocks(be, model, design, chunk, progress)
    return _on_ranks(be, model, design, chunk, progress)


def rank_rows(rows: int, size: int, rank: int) -> tuple[np.ndarray, list[int]]:
    """Return ``rank``'s row indices, padded to the longest block, and every block's length."""
    counts = [rows // size + (r < rows % size) for r in range(size)]
    start = sum(counts[:rank])
    own = np.arange(start, start + counts[rank])
    filler = own[-1] if len(own) else 0  # more ranks than rows: evaluate row 0 again
    return np.concatenate([own, np.full(counts[0] - counts[rank], filler)]), counts


def _on_ranks(
    be: Backend, model: Callable[[Any], Any], design: Design, chunk: int | None, progress: bool
) -> tuple[Any, bool]:
    xp, comm = be.xp, be.comm
    index, counts = rank_rows(design.rows, comm.size, comm.rank)
    if chunk is None:
        chunk = -(-len(index) // _PROGRESS_CHUNKS) if progress else len(index)
    bar = _bar(len(index)) if progress and comm.rank == 0 else None
    parts: list[Any] = []
    vector = False
    for lo in range(0, len(index), chunk):
        x = be.asarray(design.rows_at(index[lo : lo + chunk]))
        y, vector = check_output(model(x), x, name_of, be.float_dtype, xp)
        parts.append(check_width(y, parts[0].shape[1] if parts else y.shape[1]))
        if bar is not None:
            bar.update(x.shape[0])
    if bar is not None:
        bar.close()
    mine = parts[0] if len(parts) == 1 else xp.concat(parts, axis=0)
    everyone = comm.allgather(mine)  # (size, longest block, k)
    y = xp.reshape(everyone, (-1, mine.shape[1]))
    if len(set(counts)) > 1:
        keep = np.concatenate([r * counts[0] + np.arange(c) for r, c in enumerate(counts)])
        y = xp.take(y, be.asarray(keep, dtype=index_dtype(be)), axis=0)
    return y, vector


def _in_row_blocks(
    be: Backend, model: Callable[[Any], Any], design: Design, chunk: int | None, progress: bool
) -> tuple[Any, bool]:
    import anyxp

    rows = design.rows
    x_host = design.rows_at(np.arange(rows))
    # One row on the client first: it gives the number of outputs, which the blocks'
    # shapes need, and a mistake in the model surfaces here rather than in a worker.
    first = be.to_numpy(be.asarray(x_host[:1]))  # a block of one row, as the tasks get
    xp_first = anyxp.backend(like=first).xp
    probe, vector = check_output(model(first), first, name_of, first.dtype, xp_first)
    k, dtype = probe.shape[1], probe.dtype
    block = chunk if chunk is not None else max(_MIN_BLOCK, -(-rows // _MAX_BLOCKS))
    # Concatenating one array per block makes the blocks dask's chunks, by the standard.
    x = be.xp.concat([be.asarray(x_host[lo : lo + block]) for lo in range(0, rows, block)])

    def run_block(x_block: Any) -> tuple[Any]:
        xp_block = anyxp.backend(like=x_block).xp
        y, _ = check_output(model(x_block), x_block, name_of, dtype, xp_block)
        return (xp_block.astype(check_width(y, k), dtype),)

    (y,) = be.map_row_blocks(run_block, (x,), ((0, lambda n: (n, k), dtype),))
    if progress:  # the model runs now, one tick per block; else when the indices need it
        (y,) = be.materialize(y, progress=True)
    return y, vector


def index_dtype(be: Backend) -> Any:
    """The backend's integer dtype for indexing (int32 in JAX without x64, else int64)."""
    info = be.xp.__array_namespace_info__()
    return info.default_dtypes(device=be.device)["indexing"]


def _bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="row", desc="sobol")
