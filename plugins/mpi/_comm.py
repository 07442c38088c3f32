"""MPI collectives on any carried backend's arrays.

Arrays travel as contiguous buffers: numpy and torch (CPU) without a copy where they
are contiguous, jax through a host copy, cupy directly when MPI is CUDA-aware and
through the host otherwise. Results come back on the caller's device and dtype.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from anyxp.backend import Backend
from anyxp.comm import check_op, check_perm, source_of
from anyxp.errors import CommMismatchError

_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN, "mean": MPI.SUM}


def _cuda_aware() -> bool:
    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:  # noqa: BLE001 - older MPI libraries lack the MPIX extension
        return False


class MPIComm:
    """Collectives over an ``mpi4py`` communicator, for one array backend."""

    name = "mpi"

    def __init__(
        self,
        backend: Backend,
        *,
        comm: Any = None,
        checked: bool | None = None,
        cuda_aware: bool | None = None,
    ) -> None:
        self.mpi = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.mpi.Get_rank()
        self.size = self.mpi.Get_size()
        self.be = backend
        if checked is None:
            checked = os.environ.get("ANYXP_MPI_CHECKED", "") in {"1", "true", "yes"}
        self.checked = checked
        device_arrays = backend.name == "cupy"
        self._on_device = device_arrays and (_cuda_aware() if cuda_aware is None else cuda_aware)

    def __repr__(self) -> str:
        return f"MPIComm(rank={self.rank}, size={self.size}, checked={self.checked})"

    # -- moving arrays ----------------------------------------------------------
    def _buffer(self, x: Any) -> Any:
        if self._on_device:
            import cupy

            return cupy.ascontiguousarray(x)
        return np.ascontiguousarray(self.be.to_numpy(x))

    def _empty(self, shape: tuple[int, ...], like: Any) -> Any:
        if self._on_device:
            import cupy

            return cupy.empty(shape, dtype=like.dtype)
        return np.empty(shape, dtype=like.dtype)

    def _back(self, buf: Any) -> Any:
        return self.be.xp.asarray(buf, device=self.be.device)

    def _check(self, what: str, buf: Any) -> None:
        if not self.checked:
            return
        mine = (tuple(buf.shape), str(buf.dtype))
        everyone = self.mpi.allgather(mine)
        if any(other != mine for other in everyone):
            table = ", ".join(f"rank {r}: shape {s} {d}" for r, (s, d) in enumerate(everyone))
            raise CommMismatchError(
                f"{what} needs the same shape and dtype on every rank; got {table}. "
                "Pass arrays of one shape and dtype from every rank."
            )

    # -- collectives ------------------------------------------------------------
    def allreduce(self, x: Any, op: str = "sum") -> Any:
        """Return the elementwise reduction of every rank's ``x``."""
        check_op(op, x.dtype, self.be.xp)
        send = self._buffer(x)
        self._check("allreduce", send)
        recv = self._empty(send.shape, send)
        self.mpi.Allreduce(send, recv, op=_OPS[op])
        if op == "mean":
            recv /= self.size
        return self._back(recv)

    def broadcast(self, x: Any, root: int = 0) -> Any:
        """Return ``root``'s ``x`` on every rank (every rank passes an array of its shape)."""
        if not 0 <= root < self.size:
            raise ValueError(f"broadcast root {root} is outside 0..{self.size - 1}")
        # Bcast writes into the buffer, which may share memory with the caller's x.
        buf = self._buffer(x).copy()
        self._check("broadcast", buf)
        self.mpi.Bcast(buf, root=root)
        return self._back(buf)

    def allgather(self, x: Any) -> Any:
        """Return every rank's ``x`` stacked on a new axis 0."""
        send = self._buffer(x)
        self._check("allgather", send)
        recv = self._empty((self.size, *send.shape), send)
        self.mpi.Allgather(send, recv)
        return self._back(recv)

    def reduce_scatter(self, x: Any, op: str = "sum") -> Any:
        """Return this rank's block of the reduction of every rank's ``x``."""
        check_op(op, x.dtype, self.be.xp)
        if x.ndim == 0 or x.shape[0] % self.size:
            raise ValueError(
                f"reduce_scatter splits axis 0 into {self.size} blocks; got shape "
                f"{tuple(x.shape)}. Pad axis 0 to a multiple of the comm size."
            )
        send = self._buffer(x)
        self._check("reduce_scatter", send)
        recv = self._empty((send.shape[0] // self.size, *send.shape[1:]), send)
        self.mpi.Reduce_scatter_block(send, recv, op=_OPS[op])
        if op == "mean":
            recv /= self.size
        return self._back(recv)

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]]) -> Any:
        """Send ``x`` along ``(source, destination)`` pairs; unnamed receivers get zeros."""
        check_perm(perm, self.size)
        send = self._buffer(x)
        self._check("ppermute", send)
        recv = self._empty(send.shape, send)
        recv[...] = 0
        requests = []
        dest = next((d for s, d in perm if s == self.rank), None)
        src = source_of(self.rank, perm)
        if src is not None:
            requests.append(self.mpi.Irecv(recv, source=src, tag=7))
        if dest is not None:
            requests.append(self.mpi.Isend(send, dest=dest, tag=7))
        MPI.Request.Waitall(requests)
        return self._back(recv)

    def barrier(self) -> None:
        """Return when every rank has called it."""
        self.mpi.Barrier()


def create(backend: Backend, **options: Any) -> MPIComm:
    """Factory of the ``mpi`` comm; options: ``comm``, ``checked``, ``cuda_aware``."""
    return MPIComm(backend, **options)
