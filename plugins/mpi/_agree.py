"""Checked mode: before a collective, every rank agrees on what it is about to call.

Each rank encodes its call (collective, op, root, dtype, shape, and a digest of its
``perm``) as a fixed row of integers. One small ``Allreduce(MAX)`` of ``[row, -row]``
gives every rank both the largest and the smallest row, which are equal exactly when
every rank passed the same row; its cost does not grow with the number of ranks. Only
when they differ do the ranks exchange their readable views (a pickled ``allgather``),
so that every rank raises the same :class:`anyxp.CommMismatchError` naming each view.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from mpi4py import MPI

from anyxp.comm import REDUCE_OPS
from anyxp.errors import CommMismatchError

__all__ = ["Agreement", "Call"]

_COLLECTIVES = ("allreduce", "broadcast", "allgather", "reduce_scatter", "ppermute", "barrier")
_CODE = {name: i + 1 for i, name in enumerate(_COLLECTIVES)}
_OP_CODE = {op: i + 1 for i, op in enumerate(REDUCE_OPS)}
_DIMS = 8  # dims beyond these, and the perm, go into the digest
_WIDTH = 6 + _DIMS + 1  # collective, op, root, dtype kind, itemsize, ndim, dims, digest


class Call(NamedTuple):
    """One rank's collective call: what it must agree on with every other rank.

    ``shape`` and ``dtype`` are those of the buffer that travels (``()`` and ``None``
    for a barrier); ``op``, ``root`` and ``perm`` are the collective's own arguments,
    where it has them. Every field is hashable, so that encoded calls can be cached.
    """

    name: str
    shape: tuple[int, ...] = ()
    dtype: Any = None
    op: str | None = None
    root: int | None = None
    perm: tuple[tuple[int, int], ...] | None = None

    def row(self) -> list[int]:
        """Encode the call as ``_WIDTH`` non-negative integers, equal iff the calls agree."""
        if self.dtype is None:
            return [_CODE[self.name]] + [0] * (_WIDTH - 1)
        shape, dtype = self.shape, np.dtype(self.dtype)
        dims = list(shape[:_DIMS]) + [0] * (_DIMS - len(shape))
        digest = 0
        if self.perm is not None or len(shape) > _DIMS:
            perm = sorted(self.perm or ())
            raw = repr((tuple(shape[_DIMS:]), perm)).encode()
            digest = int.from_bytes(hashlib.blake2b(raw, digest_size=7).digest(), "little")
        op = _OP_CODE.get(self.op, 0) if self.op is not None else 0
        root = 0 if self.root is None else self.root + 1
        return [
            _CODE[self.name],
            op,
            root,
            ord(dtype.kind),
            dtype.itemsize,
            len(shape),
            *dims,
            digest,
        ]

    def describe(self) -> str:
        """Say what was called, e.g. ``allgather shape (4,) float64``."""
        if self.dtype is None:
            return self.name
        if self.op is not None:
            args = f"(op={self.op!r})"
        elif self.root is not None:
            args = f"(root={self.root})"
        elif self.perm is not None:
            args = f"(perm={list(self.perm)})"
        else:
            args = ""
        return f"{self.name}{args} shape {tuple(self.shape)} {np.dtype(self.dtype).name}"


@functools.lru_cache(maxsize=1024)
def _encoded(call: Call) -> np.ndarray:
    """``[row, -row]`` of ``call``; a program makes few distinct calls, so this is cached."""
    row = call.row()
    return np.array(row + [-v for v in row], dtype=np.int64)


class Agreement:
    """Raise :class:`anyxp.CommMismatchError` on every rank unless all ranks agree on a call."""

    def __init__(self, mpi: Any) -> None:
        self.mpi = mpi
        self._recv = np.zeros(2 * _WIDTH, dtype=np.int64)

    def __call__(self, call: Call) -> None:
        """Exchange ``call`` with every rank; return when all of them made the same one."""
        send = _encoded(call)
        self.mpi.Allreduce(send, self._recv, op=MPI.MAX)
        # The largest row and the largest negated row equal this rank's exactly when every
        # rank's row is the same: then every rank sees equality, else none does.
        if self._recv.tobytes() == send.tobytes():
            return
        calls = self.mpi.allgather(call)
        raise CommMismatchError(mismatch_message(calls), [c.describe() for c in calls])


def mismatch_message(calls: Sequence[Call]) -> str:
    """Name what each rank called, grouped, and what to change."""
    groups: dict[str, list[int]] = {}
    for rank, call in enumerate(calls):
        groups.setdefault(call.describe(), []).append(rank)
    table = "; ".join(f"{_ranks(ranks)}: {view}" for view, ranks in groups.items())
    return f"ranks disagree on a collective: {table}. {_next_step(calls)}"


def _next_step(calls: Sequence[Call]) -> str:
    def differ(field: str) -> bool:
        return len({repr(getattr(c, field)) for c in calls}) > 1

    if differ("name"):
        return (
            "Every rank must call the same collectives in the same order: look for a branch "
            "on be.comm.rank, or an early return, that skips or adds a collective."
        )
    args = [field for field in ("op", "root", "perm") if differ(field)]
    if args:
        return (
            f"Pass the same {' and '.join(args)} on every rank: compute it from values every "
            "rank holds, not from be.comm.rank."
        )
    if differ("dtype"):
        return "Pass one dtype from every rank: cast with xp.astype(x, dtype) first."
    return (
        "Pass arrays of one shape from every rank: for data whose length differs by rank, "
        "allgather the lengths first, then pad to the longest."
    )


def _ranks(ranks: list[int]) -> str:
    """``rank 3``, ``ranks 0, 2`` or ``ranks 0-511``: consecutive ranks shown as a range."""
    runs: list[list[int]] = []
    for r in ranks:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return f"rank {text}" if len(ranks) == 1 else f"ranks {text}"
