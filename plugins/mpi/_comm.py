"""MPI collectives on any carried backend's arrays.

Arrays travel as contiguous buffers: numpy and torch (CPU) without a copy where they
are contiguous, jax through a host copy, cupy directly when MPI is CUDA-aware and
through the host otherwise. Results come back on the caller's device and dtype.

Every collective is checked by default (:mod:`._agree`: all ranks agree on the call, or
all raise ``CommMismatchError``) and waits under a deadline (:mod:`._abort`: past it,
every rank ends with a message instead of hanging).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from mpi4py import MPI

from anyxp._comm_faults import in_collective, settings
from anyxp.backend import Backend
from anyxp.comm import (
    check_array,
    check_blocks,
    check_op,
    check_perm,
    check_root,
    source_of,
)

from ._abort import watch
from ._agree import Call, mpi_agreement

_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN, "mean": MPI.SUM}
_OPTIONS = ("checked", "comm", "cuda_aware", "timeout")


def _cuda_aware() -> bool:
    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:  # noqa: BLE001 - older MPI libraries lack the MPIX extension
        return False


class MPIComm:
    """Collectives over an ``mpi4py`` communicator, for one array backend.

    Parameters
    ----------
    backend : Backend
        The array backend whose arrays travel.
    comm : mpi4py.MPI.Comm, optional
        The communicator; ``MPI.COMM_WORLD`` by default.
    checked : bool, optional
        Agree on every call before making it (default: ``ANYXP_COMM_CHECKED``, on).
    timeout : float, optional
        Seconds one collective may wait before every rank is ended (default:
        ``ANYXP_COMM_TIMEOUT``, else 300); ``math.inf`` waits for ever.
    cuda_aware : bool, optional
        Pass CuPy arrays to MPI directly (default: ask MPI).
    """

    name = "mpi"

    def __init__(
        self,
        backend: Backend,
        *,
        comm: Any = None,
        checked: bool | None = None,
        timeout: float | None = None,
        cuda_aware: bool | None = None,
    ) -> None:
        self.mpi = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.mpi.Get_rank()
        self.size = self.mpi.Get_size()
        self.be = backend
        self.checked, self.timeout = settings(checked, timeout)
        #: ``(monotonic start, Call)`` while in a collective, read by the deadline's thread.
        self.waiting: tuple[float, Call] | None = None
        self._agree = mpi_agreement(self.mpi) if self.checked and self.size > 1 else None
        device_arrays = backend.name == "cupy"
        self._on_device = device_arrays and (_cuda_aware() if cuda_aware is None else cuda_aware)
        if self.size > 1:
            watch(self)

    def __repr__(self) -> str:
        return (
            f"MPIComm(rank={self.rank}, size={self.size}, checked={self.checked}, "
            f"timeout={self.timeout:g})"
        )

    # -- moving arrays ----------------------------------------------------------
    def _buffer(self, x: Any) -> Any:
        if self._on_device:
            import cupy

            return cupy.asarray(x, order="C")
        # Not np.ascontiguousarray, which turns a 0-d array into shape (1,).
        return np.asarray(self.be.to_numpy(x), order="C")

    def _empty(self, shape: tuple[int, ...], like: Any) -> Any:
        if self._on_device:
            import cupy

            return cupy.empty(shape, dtype=like.dtype)
        return np.empty(shape, dtype=like.dtype)

    def _back(self, buf: Any) -> Any:
        return self.be.xp.asarray(buf, device=self.be.device)

    def _run(self, call: Call, collective: Callable[..., Any] | None, *args: Any) -> None:
        """Agree on ``call`` (when checked), then run ``collective(*args)``, under the deadline."""
        with in_collective(self, call, self._agree):
            if collective is not None:
                collective(*args)

    # -- collectives ------------------------------------------------------------
    def allreduce(self, x: Any, op: str = "sum") -> Any:
        """Return the elementwise reduction of every rank's ``x``."""
        check_array("allreduce", x)
        check_op(op, x.dtype, self.be.xp)
        send = self._buffer(x)
        recv = self._empty(send.shape, send)
        call = Call("allreduce", send.shape, send.dtype, op=op)
        self._run(call, self.mpi.Allreduce, send, recv, _OPS[op])
        if op == "mean":
            recv /= self.size
        return self._back(recv)

    def broadcast(self, x: Any, root: int = 0) -> Any:
        """Return ``root``'s ``x`` on every rank (every rank passes an array of its shape)."""
        check_array("broadcast", x)
        check_root(root, self.size)
        # Bcast writes into the buffer, which may share memory with the caller's x.
        buf = self._buffer(x).copy()
        self._run(Call("broadcast", buf.shape, buf.dtype, root=root), self.mpi.Bcast, buf, root)
        return self._back(buf)

    def allgather(self, x: Any) -> Any:
        """Return every rank's ``x`` stacked on a new axis 0."""
        check_array("allgather", x)
        send = self._buffer(x)
        recv = self._empty((self.size, *send.shape), send)
        self._run(Call("allgather", send.shape, send.dtype), self.mpi.Allgather, send, recv)
        return self._back(recv)

    def reduce_scatter(self, x: Any, op: str = "sum") -> Any:
        """Return this rank's block of the reduction of every rank's ``x``."""
        check_array("reduce_scatter", x)
        check_op(op, x.dtype, self.be.xp)
        check_blocks(tuple(x.shape), self.size)
        send = self._buffer(x)
        recv = self._empty((send.shape[0] // self.size, *send.shape[1:]), send)
        call = Call("reduce_scatter", send.shape, send.dtype, op=op)
        self._run(call, self.mpi.Reduce_scatter_block, send, recv, _OPS[op])
        if op == "mean":
            recv /= self.size
        return self._back(recv)

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]]) -> Any:
        """Send ``x`` along ``(source, destination)`` pairs; unnamed receivers get zeros."""
        check_array("ppermute", x)
        check_perm(perm, self.size)
        send = self._buffer(x)
        recv = self._empty(send.shape, send)
        recv[...] = 0
        dest = next((d for s, d in perm if s == self.rank), None)
        src = source_of(self.rank, perm)
        pairs = tuple((int(s), int(d)) for s, d in perm)
        call = Call("ppermute", send.shape, send.dtype, perm=pairs)
        self._run(call, self._exchange, send, recv, src, dest)
        return self._back(recv)

    def _exchange(self, send: Any, recv: Any, src: int | None, dest: int | None) -> None:
        requests = []
        if src is not None:
            requests.append(self.mpi.Irecv(recv, source=src, tag=7))
        if dest is not None:
            requests.append(self.mpi.Isend(send, dest=dest, tag=7))
        MPI.Request.Waitall(requests)

    def barrier(self) -> None:
        """Return when every rank has called it."""
        # Checked, the agreement is itself a barrier: no rank leaves an Allreduce before
        # every rank has entered it.
        self._run(Call("barrier"), None if self._agree is not None else self.mpi.Barrier)


def create(backend: Backend, **options: Any) -> MPIComm:
    """Build the ``mpi`` comm; options: ``comm``, ``checked``, ``timeout``, ``cuda_aware``."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"the mpi comm has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(_OPTIONS)}."
        )
    return MPIComm(backend, **options)
