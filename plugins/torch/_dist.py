"""The ``torch`` comm: collectives through ``torch.distributed`` (gloo on CPU, NCCL on CUDA).

The process group is the one the user already initialised, or one this comm starts from
the environment the launcher set:

- ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``);
- ``mpiexec`` (MPICH's ``PMI_RANK``/``PMI_SIZE``, Open MPI's ``OMPI_COMM_WORLD_*``) or
  ``srun`` (``SLURM_PROCID``/``SLURM_NTASKS``), with ``MASTER_ADDR`` defaulting to
  ``127.0.0.1`` and ``MASTER_PORT`` to 29500 (set them for more than one node or job);
- none of these: a group of one process, so a script written for N ranks runs alone.

The fault contract is the mpi comm's (:mod:`anyxp._comm_faults`): checked agreement
before every collective by default, a deadline on every wait, and a rank's uncaught
exception printed with its rank. Ending the job is exiting this process with a non-zero
status, on which ``torchrun`` and ``mpiexec`` end every other process of the job.

gloo has no ``reduce_scatter`` and no average: ``reduce_scatter`` is an ``all_reduce``
of which each rank keeps its block (NCCL uses its own), ``mean`` a sum divided by the
size.
"""

from __future__ import annotations

import atexit
import datetime
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch._C import _functorch

from anyxp._comm_faults import Agreement, Call, in_collective, settings, watch
from anyxp.backend import Backend
from anyxp.comm import (
    check_array,
    check_blocks,
    check_op,
    check_out,
    check_perm,
    check_root,
    source_of,
)
from anyxp.errors import CommLostError

__all__ = ["TorchComm", "create"]

_OPTIONS = ("checked", "timeout", "group")
#: (rank, size) variables of the launchers this comm reads, in order of preference.
_LAUNCHERS = (
    ("RANK", "WORLD_SIZE"),  # torchrun
    ("PMI_RANK", "PMI_SIZE"),  # MPICH's mpiexec (hydra)
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI's mpiexec
    ("SLURM_PROCID", "SLURM_NTASKS"),  # srun
)
_OPS = {
    "sum": dist.ReduceOp.SUM,
    "prod": dist.ReduceOp.PRODUCT,
    "max": dist.ReduceOp.MAX,
    "min": dist.ReduceOp.MIN,
    "mean": dist.ReduceOp.SUM,
}
#: How gloo reports a peer that left (its process ended, its sockets went with it).
#: Gathers into one (size, ...) tensor: no list of parts, no stack copy. torch 2.13
#: renamed all_gather_into_tensor (deprecated, with a warning) to all_gather_single.
_GATHER_INTO = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_PEER_LOST = ("closed by peer", "reset by peer", "connection closed", "broken pipe")
#: Seconds torch's own timeout waits beyond the comm's deadline: the deadline, with its
#: message naming the collective, ends the job first.
_SLACK = 60.0


def launched_rank() -> tuple[int, int] | None:
    """``(rank, size)`` from the launcher's environment, or ``None`` when not launched."""
    for rank, size in _LAUNCHERS:
        if rank in os.environ and size in os.environ:
            return int(os.environ[rank]), int(os.environ[size])
    return None


def _start_group(device_type: str, timeout: float) -> None:
    """Initialise the default process group from the environment (see the module doc)."""
    wait = datetime.timedelta(seconds=timeout + _SLACK if math.isfinite(timeout) else 86400.0)
    transport = "cpu:gloo,cuda:nccl" if device_type == "cuda" else "gloo"
    atexit.register(_end_group)
    found = launched_rank()
    if found is None:  # not launched: this process alone
        store = dist.HashStore()
        dist.init_process_group(transport, store=store, rank=0, world_size=1, timeout=wait)
        return
    rank, size = found
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    dist.init_process_group(
        transport, init_method="env://", rank=rank, world_size=size, timeout=wait
    )


#: The tensors the latest collectives handed to c10d, until c10d lets go of them.
_handed: list[torch.Tensor] = []
#: Seconds the exit waits for c10d's threads to let go of them.
_RELEASE_WAIT = 5.0


def _hand(tensors: Sequence[Any]) -> None:
    """Keep the tensors a collective was given until c10d's threads have dropped them.

    A gloo worker thread drops its reference to a collective's tensors a moment *after*
    the collective returns. If that is the tensor's last reference, the thread must
    take the GIL to free its Python object; once the interpreter is finalizing, taking
    the GIL ends the thread, whose C++ frames cannot unwind: the process aborts with
    "terminate called without an active exception" (in 6 % of the runs of a two-rank
    job on a loaded machine, gloo's destructors in the core's backtrace; none in 80 with
    this). Held here, the last reference is the main thread's. ``Tensor._use_count() ==
    1``: only the Python object holds the tensor. (A comm on a group the user started
    does not end it at exit: its tensors are released at the next collective.)
    """
    _handed[:] = [t for t in _handed if t._use_count() > 1]
    _handed.extend(t for t in tensors if isinstance(t, torch.Tensor))


def _end_group() -> None:
    """At exit, end the group this comm started, then let go of the collectives' tensors
    once c10d has (see :func:`_hand`; torch.func keeps the group itself alive, so its
    worker threads outlive ``destroy_process_group``)."""
    if dist.is_initialized():
        dist.destroy_process_group()
    deadline = time.monotonic() + _RELEASE_WAIT
    while any(t._use_count() > 1 for t in _handed) and time.monotonic() < deadline:
        time.sleep(0.001)
    _handed.clear()


def _exit_job(status: int) -> None:
    # torchrun and mpiexec end every other process of the job when one exits non-zero.
    os._exit(status)


class TorchComm:
    """Collectives over a ``torch.distributed`` process group, for torch tensors.

    Parameters
    ----------
    backend : Backend
        The torch backend whose tensors travel.
    group : ProcessGroup, optional
        The group; the default group (started from the environment if need be) otherwise.
    checked : bool, optional
        Agree on every call before making it (default: ``ANYXP_COMM_CHECKED``, on).
    timeout : float, optional
        Seconds one collective may wait before every rank is ended (default:
        ``ANYXP_COMM_TIMEOUT``, else 300); ``math.inf`` waits for ever.
    """

    name = "torch"

    def __init__(
        self,
        backend: Backend,
        *,
        group: Any = None,
        checked: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        self.be = backend
        self.checked, self.timeout = settings(checked, timeout)
        device = torch.device(backend.device)
        if group is None and not dist.is_initialized():
            _start_group(device.type, self.timeout)
        self.group = group
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self.transport = dist.get_backend(group)
        # NCCL moves CUDA tensors only; gloo, CPU tensors (and the agreement's rows).
        self._nccl = device.type == "cuda" and "nccl" in str(self.transport)
        self.waiting: tuple[float, Call] | None = None
        self._agree = Agreement(self._max_rows, self._gather_objects) if self.checked else None
        if self.size == 1:
            self._agree = None
        else:
            watch(self, _exit_job)

    def __repr__(self) -> str:
        return (
            f"TorchComm(rank={self.rank}, size={self.size}, transport={self.transport!r}, "
            f"checked={self.checked}, timeout={self.timeout:g})"
        )

    # -- the agreement's transport -------------------------------------------------
    def _max_rows(self, send: np.ndarray) -> np.ndarray:
        rows = torch.from_numpy(send.copy())
        if self._nccl:
            rows = rows.to(self.be.device)
        dist.all_reduce(rows, dist.ReduceOp.MAX, group=self.group)
        _hand([rows])
        return rows.cpu().numpy()

    def _gather_objects(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, obj, group=self.group)
        return out

    # -- moving tensors -------------------------------------------------------------
    def _tensor(self, what: str, x: Any, *, written: bool = True) -> torch.Tensor:
        """``x`` as a plain contiguous tensor; a new one when the collective writes into
        it (``written``), else ``x``'s own storage where it is already contiguous."""
        check_array(what, x)
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{what} on the torch comm takes torch tensors, got {type(x).__name__}; "
                "convert with be.asarray(x) on a torch backend"
            )
        # A new, contiguous, plain tensor outside any autograd graph: collectives write
        # into it. Inside torch.func transforms x is a wrapper, which c10d cannot read;
        # the derivatives of collectives are anyxp's own rules (anyxp._comm_ad).
        while _functorch.is_functorch_wrapped_tensor(x):
            if _functorch.is_batchedtensor(x):
                raise NotImplementedError(
                    f"{what} under vmap: a collective moves whole tensors between ranks; "
                    "call it outside vmap, on the batch"
                )
            x = _functorch.get_unwrapped(x)
        with torch._C._DisableFuncTorch():
            if not written:
                return x.detach().contiguous()
            return x.detach().clone(memory_format=torch.contiguous_format)

    def _run(self, call: Call, collective: Callable[..., Any] | None, *args: Any) -> None:
        """Agree on ``call`` (when checked), then run ``collective(*args)``, under the deadline."""
        try:
            # Plain tensors in, plain tensors out (the agreement's rows too).
            with torch._C._DisableFuncTorch(), in_collective(self, call, self._agree):
                if collective is not None:
                    collective(*args)
                    _hand(args)
        except RuntimeError as e:
            if not any(sign in str(e).lower() for sign in _PEER_LOST):
                raise  # only a lost peer becomes CommLostError
            raise CommLostError(
                f"rank {self.rank} was in {call.describe()} when another rank left the job "
                f"or failed ({self.transport}: {str(e).splitlines()[0][:200]}). Look for that "
                "rank's traceback above; a rank that returned early skipped a collective."
            ) from e

    @staticmethod
    def _call(name: str, x: torch.Tensor, **args: Any) -> Call:
        try:
            dtype = np.dtype(str(x.dtype).removeprefix("torch."))
        except TypeError:  # bfloat16 and others numpy lacks: their size still tells them apart
            dtype = np.dtype(f"V{x.element_size()}")
        return Call(name, tuple(x.shape), dtype, **args)

    # -- collectives ----------------------------------------------------------------
    def _into(self, what: str, out: Any, shape: tuple[int, ...] | None, x: Any) -> Any:
        """``out`` checked as the plain, contiguous tensor the result (of ``shape``,
        default ``x``'s) is written into."""
        check_array(what, x)
        check_out(what, out, tuple(x.shape) if shape is None else shape, x.dtype)
        if not isinstance(out, torch.Tensor) or _functorch.is_functorch_wrapped_tensor(out):
            raise TypeError(f"{what}(out=...) takes a plain torch tensor, got {type(out)}")
        if not out.is_contiguous():
            raise ValueError(f"{what}(out=...) needs a contiguous tensor: pass out.contiguous()")
        return out.detach()

    def _written(self, what: str, x: Any, out: Any) -> torch.Tensor:
        """The tensor an in-place collective works on, holding ``x``: a new one, or
        ``out``'s storage (``x`` copied in, unless ``out`` is ``x``)."""
        if out is None:
            return self._tensor(what, x)
        buf = self._into(what, out, None, x)
        if out is not x:
            buf.copy_(self._tensor(what, x, written=False))
        return buf

    def allreduce(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return the elementwise reduction of every rank's ``x`` (into ``out``, if given:
        ``out=x`` reduces in place, with no copy)."""
        buf = self._written("allreduce", x, out)
        check_op(op, x.dtype, self.be.xp)
        call = self._call("allreduce", buf, op=op)
        self._run(call, dist.all_reduce, buf, _OPS[op], self.group)
        if op != "mean":
            return buf if out is None else out
        if out is None:  # not in place: inside torch.func transforms buf is captured
            return buf / self.size
        with torch._C._DisableFuncTorch():
            buf.div_(self.size)  # out's storage, detached
        return out

    def broadcast(self, x: Any, root: int = 0, *, out: Any = None) -> Any:
        """Return ``root``'s ``x`` on every rank (every rank passes a tensor of its shape;
        into ``out``, if given: ``out=x`` receives in place)."""
        buf = self._written("broadcast", x, out)
        check_root(root, self.size)
        src = dist.get_global_rank(self.group, root) if self.group is not None else root
        self._run(self._call("broadcast", buf, root=root), dist.broadcast, buf, src, self.group)
        return buf if out is None else out

    def allgather(self, x: Any, *, out: Any = None) -> Any:
        """Return every rank's ``x`` stacked on a new axis 0 (into ``out``, if given)."""
        buf = self._tensor("allgather", x, written=False)
        shape = (self.size, *buf.shape)
        if out is None:
            result = torch.empty(shape, dtype=buf.dtype, device=buf.device)
        else:
            result = self._into("allgather", out, shape, x)
        # As flat views: gloo takes only the concatenated form of the output.
        flat = (result.view(-1), buf.reshape(-1), self.group)
        self._run(self._call("allgather", buf), _GATHER_INTO, *flat)
        return result if out is None else out

    def reduce_scatter(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return this rank's block of the reduction of every rank's ``x`` (into ``out``,
        if given)."""
        buf = self._tensor("reduce_scatter", x, written=not self._nccl)
        check_op(op, x.dtype, self.be.xp)
        check_blocks(tuple(x.shape), self.size)
        block = buf.shape[0] // self.size
        shape = (block, *buf.shape[1:])
        result = None if out is None else self._into("reduce_scatter", out, shape, x)
        call = self._call("reduce_scatter", buf, op=op)
        if self._nccl:
            if result is None:
                result = torch.empty(shape, dtype=buf.dtype, device=buf.device)
            self._run(call, dist.reduce_scatter_tensor, result, buf, _OPS[op], self.group)
        else:  # gloo: the whole reduction, of which this rank keeps its block
            self._run(call, dist.all_reduce, buf, _OPS[op], self.group)
            mine = buf[self.rank * block : (self.rank + 1) * block]
            result = mine.clone() if result is None else result.copy_(mine)
        if op != "mean":
            return result if out is None else out
        if out is None:
            return result / self.size
        with torch._C._DisableFuncTorch():
            result.div_(self.size)  # out's storage, detached
        return out

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]], *, out: Any = None) -> Any:
        """Send ``x`` along ``(source, destination)`` pairs; unnamed receivers get zeros
        (into ``out``, if given)."""
        buf = self._tensor("ppermute", x, written=out is x)  # out=x: send a copy
        check_perm(perm, self.size)
        if out is None:
            recv = torch.zeros_like(buf)
        else:
            recv = self._into("ppermute", out, None, x)
            recv.zero_()
        dest = next((d for s, d in perm if s == self.rank), None)
        src = source_of(self.rank, perm)
        pairs = tuple((int(s), int(d)) for s, d in perm)
        call = self._call("ppermute", buf, perm=pairs)
        self._run(call, self._exchange, buf, recv, src, dest)
        return recv if out is None else out

    def _exchange(self, send: Any, recv: Any, src: int | None, dest: int | None) -> None:
        if dest == self.rank:  # (rank, rank): gloo has no pair to itself
            recv.copy_(send)
            src = dest = None
        ops = []
        if src is not None:
            ops.append(dist.P2POp(dist.irecv, recv, self._global(src), self.group))
        if dest is not None:
            ops.append(dist.P2POp(dist.isend, send, self._global(dest), self.group))
        if ops:
            for request in dist.batch_isend_irecv(ops):
                request.wait()

    def _global(self, rank: int) -> int:
        return dist.get_global_rank(self.group, rank) if self.group is not None else rank

    def barrier(self) -> None:
        """Return when every rank has called it."""
        # Checked, the agreement is itself a barrier (every rank is in its all_reduce).
        self._run(
            Call("barrier"),
            None if self._agree is not None else lambda: dist.barrier(group=self.group),
        )


def create(backend: Backend, **options: Any) -> TorchComm:
    """Build the ``torch`` comm; options: ``group``, ``checked``, ``timeout``."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"the torch comm has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(_OPTIONS)}."
        )
    return TorchComm(backend, **options)
