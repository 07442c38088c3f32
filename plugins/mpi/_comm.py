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
from time import monotonic
from typing import Any

import numpy as np
from mpi4py import MPI

from anyxp._comm_faults import in_collective, settings
from anyxp.backend import Backend
from anyxp.comm import (
    check_array,
    check_blocks,
    check_op,
    check_out,
    check_perm,
    check_root,
    source_of,
    write_into,
)

from ._abort import watch
from ._agree import Call, mpi_agreement

_SUM = MPI.SUM
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
        # The backend's arrays are numpy's own: contiguous ones travel as they are and
        # results need no conversion back (a microsecond a call at small sizes).
        self._native = type(backend.xp.asarray(0.0)) is np.ndarray
        self._lean = self._native and self._agree is None  # see _lean_recv
        if self.size > 1:
            watch(self)

    def __repr__(self) -> str:
        return (
            f"MPIComm(rank={self.rank}, size={self.size}, checked={self.checked}, "
            f"timeout={self.timeout:g})"
        )

    # -- moving arrays ----------------------------------------------------------
    def _buffer(self, what: str, x: Any) -> Any:
        """``x`` as a contiguous buffer MPI reads; a ``TypeError`` naming ``what`` (the
        collective) unless it is an array."""
        if self._native and type(x) is np.ndarray and x.flags.c_contiguous:
            return x
        check_array(what, x)
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
        if self._native:
            return buf
        return self.be.xp.asarray(buf, device=self.be.device)

    def _into(self, what: str, out: Any, shape: tuple[int, ...], x: Any) -> Any:
        """The buffer for the result: ``out`` itself where MPI can write into it, else a
        new one (whose values :meth:`_give` copies into ``out``)."""
        if out is None:
            return None
        check_out(what, out, shape, x.dtype)
        native = self._native and type(out) is np.ndarray
        if (native or self._on_device) and out.flags.c_contiguous:
            return out
        return None

    def _give(self, what: str, buf: Any, out: Any) -> Any:
        """The result: ``buf`` as the backend's array, or ``out`` holding it."""
        if out is None:
            return buf if self._native else self._back(buf)
        return out if buf is out else write_into(what, out, self._back(buf))

    def _run(
        self, call: Call | tuple[Any, ...], collective: Callable[..., Any] | None, *args: Any
    ) -> None:
        """Agree on ``call`` (when checked), then run ``collective(*args)``, under the deadline."""
        if self._agree is None and collective is not None:
            self._bare(call, collective, *args)
            return
        with in_collective(self, call, self._agree):
            if collective is not None:
                collective(*args)

    def _bare(self, call: tuple[Any, ...], collective: Callable[..., Any], *args: Any) -> None:
        """``in_collective`` without agreement, inlined: a quarter of a microsecond a call."""
        self.waiting = (monotonic(), call)
        try:
            collective(*args)
        finally:
            self.waiting = None

    def _lean_recv(self, x: Any, out: Any, lead: tuple[int, ...] = ()) -> Any:
        """The result buffer of the lean path, or ``None`` where it does not apply.

        Unchecked, with a contiguous numpy ``x`` and ``out`` either ``None`` or a contiguous
        numpy array of the result's shape (``lead + x.shape``) and dtype, a collective needs
        none of the checks and conversions of the general path: half a microsecond less.
        """
        if not self._lean or type(x) is not np.ndarray or not x.flags.c_contiguous:
            return None
        shape = (*lead, *x.shape) if lead else x.shape
        if out is None:
            return np.empty(shape, x.dtype)
        if (
            type(out) is np.ndarray
            and out.flags.c_contiguous
            and out.shape == shape
            and out.dtype == x.dtype
        ):
            return out
        return None

    # -- collectives ------------------------------------------------------------
    def allreduce(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return the elementwise reduction of every rank's ``x`` (into ``out``, if given:
        ``out=x`` reduces in place)."""
        if op == "sum":
            recv = self._lean_recv(x, out)
            if recv is not None:
                send = MPI.IN_PLACE if recv is x else x
                self._bare(
                    ("allreduce", x.shape, x.dtype, op), self.mpi.Allreduce, send, recv, _SUM
                )
                return recv
        send = self._buffer("allreduce", x)
        if op != "sum":  # sum is always valid: skip the call on the hot path
            check_op(op, x.dtype, self.be.xp)
        recv = self._into("allreduce", out, send.shape, x)
        if recv is None:
            recv = self._empty(send.shape, send)
        # The call's fields as a plain tuple: in_collective builds the Call only if needed.
        call = ("allreduce", send.shape, send.dtype, op)
        self._run(call, self.mpi.Allreduce, MPI.IN_PLACE if recv is send else send, recv, _OPS[op])
        if op == "mean":
            recv /= self.size
        return self._give("allreduce", recv, out)

    def broadcast(self, x: Any, root: int = 0, *, out: Any = None) -> Any:
        """Return ``root``'s ``x`` on every rank (every rank passes an array of its shape;
        into ``out``, if given: ``out=x`` receives in place)."""
        check_root(root, self.size)
        buf = self._lean_recv(x, out)
        if buf is not None:
            if buf is not x:  # Bcast writes into its buffer: never into the caller's x
                buf[...] = x
            self._bare(("broadcast", x.shape, x.dtype, None, root), self.mpi.Bcast, buf, root)
            return buf
        send = self._buffer("broadcast", x)
        buf = self._into("broadcast", out, send.shape, x)
        if buf is None:
            # Bcast writes into the buffer, which may share memory with the caller's x.
            buf = send.copy()
        elif buf is not send:
            buf[...] = send
        call = ("broadcast", buf.shape, buf.dtype, None, root)
        self._run(call, self.mpi.Bcast, buf, root)
        return self._give("broadcast", buf, out)

    def allgather(self, x: Any, *, out: Any = None) -> Any:
        """Return every rank's ``x`` stacked on a new axis 0 (into ``out``, if given)."""
        recv = self._lean_recv(x, out, (self.size,))
        if recv is not None:
            self._bare(("allgather", x.shape, x.dtype), self.mpi.Allgather, x, recv)
            return recv
        send = self._buffer("allgather", x)
        recv = self._into("allgather", out, (self.size, *send.shape), x)
        if recv is None:
            recv = self._empty((self.size, *send.shape), send)
        self._run(("allgather", send.shape, send.dtype), self.mpi.Allgather, send, recv)
        return self._give("allgather", recv, out)

    def reduce_scatter(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return this rank's block of the reduction of every rank's ``x`` (into ``out``,
        if given)."""
        send = self._buffer("reduce_scatter", x)
        check_op(op, x.dtype, self.be.xp)
        check_blocks(tuple(send.shape), self.size)
        shape = (send.shape[0] // self.size, *send.shape[1:])
        recv = self._into("reduce_scatter", out, shape, x)
        if recv is None:
            recv = self._empty(shape, send)
        call = Call("reduce_scatter", send.shape, send.dtype, op=op)
        source = MPI.IN_PLACE if recv is send else send
        self._run(call, self.mpi.Reduce_scatter_block, source, recv, _OPS[op])
        if op == "mean":
            recv /= self.size
        return self._give("reduce_scatter", recv, out)

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]], *, out: Any = None) -> Any:
        """Send ``x`` along ``(source, destination)`` pairs; unnamed receivers get zeros
        (into ``out``, if given)."""
        send = self._buffer("ppermute", x)
        check_perm(perm, self.size)
        recv = self._into("ppermute", out, send.shape, x)
        if recv is None:
            recv = self._empty(send.shape, send)
        elif recv is send:  # out=x: what is sent must not be overwritten while it goes
            send = send.copy()
        recv[...] = 0
        dest = next((d for s, d in perm if s == self.rank), None)
        src = source_of(self.rank, perm)
        pairs = tuple((int(s), int(d)) for s, d in perm)
        call = Call("ppermute", send.shape, send.dtype, perm=pairs)
        self._run(call, self._exchange, send, recv, src, dest)
        return self._give("ppermute", recv, out)

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
