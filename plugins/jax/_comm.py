"""The ``mpi4jax`` comm: MPI collectives on JAX arrays that work inside ``jax.jit``.

Each collective is an ``mpi4jax`` primitive: an XLA custom call that hands the array's
buffer to MPI without a host copy, so it traces into a compiled program (``jax.jit``,
``lax.while_loop``, ``lax.scan``, ``lax.cond``) as well as running eagerly. The
primitives carry one ordered effect, so XLA neither reorders nor merges them: every rank
runs its collectives in program order. Derivatives are anyxp's rules
(:mod:`anyxp._comm_ad`), the same as for every comm.

The fault contract (:mod:`anyxp._comm_faults`) is kept as follows:

- **Eager calls** (concrete arrays) are the ``mpi`` comm's: the agreement before the
  call raises :class:`anyxp.CommMismatchError` on every rank, and the wait runs under
  the deadline.
- **Traced calls** (inside ``jit`` or a compiled loop) agree inside the program: one
  small max-allreduce of the encoded call, compared on the device. A compiled program
  cannot raise an exception that every rank catches, so a disagreement prints the same
  message (each rank's view of the call) and ends every rank. The deadline does not
  cover a single collective inside a compiled program: XLA waits in MPI, out of
  Python's sight.
- A rank's uncaught exception ends every rank (``MPI_Abort``), eager or compiled.

Collectives and agreements travel on two duplicates of the communicator: the data on
one (``mpi4jax``), the eager agreements on the other (``mpi4py``), so that neither
matches the other's or the user's messages.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import mpi4jax
import numpy as np
from mpi4py import MPI

from anyxp._comm_faults import (
    FORWARD_GRACE,
    Agreement,
    Call,
    in_collective,
    mismatch_message,
    settings,
    watch,
)
from anyxp.backend import Backend
from anyxp.comm import (
    check_array,
    check_blocks,
    check_op,
    check_perm,
    check_root,
    no_out,
    source_of,
)

__all__ = ["Mpi4jaxComm", "create"]

_OPTIONS = ("checked", "comm", "timeout")
_OPS = {"sum": MPI.SUM, "prod": MPI.PROD, "max": MPI.MAX, "min": MPI.MIN, "mean": MPI.SUM}
#: Bits of each int32 piece of an encoded call inside a compiled program. JAX without
#: x64 has no int64; a field wider than this is split into pieces.
_PIECE = 28


def _abort_world(status: int) -> None:
    MPI.COMM_WORLD.Abort(status)


def _traced(x: Any) -> bool:
    return isinstance(x, jax.core.Tracer)


def _trace_state_clean() -> bool:
    """Whether no JAX transformation is tracing (``barrier`` has no array to ask)."""
    from jax._src import core

    clean = getattr(core, "trace_state_clean", None)
    return True if clean is None else bool(clean())


def _pieces(row: Sequence[int]) -> np.ndarray:
    """``row`` as int32 pieces of ``_PIECE`` bits, then the same negated."""
    mask = (1 << _PIECE) - 1
    out = [part for v in row for part in (v & mask, (v >> _PIECE) & mask, v >> 2 * _PIECE)]
    return np.array(out + [-v for v in out], dtype=np.int32)


class Mpi4jaxComm:
    """Collectives through ``mpi4jax`` on JAX arrays, eager or inside ``jax.jit``.

    Parameters
    ----------
    backend : Backend
        The jax backend whose arrays travel.
    comm : mpi4py.MPI.Comm, optional
        The communicator; ``MPI.COMM_WORLD`` by default. The comm works on duplicates.
    checked : bool, optional
        Agree on every call before making it (default: ``ANYXP_COMM_CHECKED``, on);
        inside a compiled program that is one more small allreduce per collective.
    timeout : float, optional
        Seconds one eager collective may wait before every rank is ended (default:
        ``ANYXP_COMM_TIMEOUT``, else 300); ``math.inf`` waits for ever.
    """

    name = "mpi4jax"

    def __init__(
        self,
        backend: Backend,
        *,
        comm: Any = None,
        checked: bool | None = None,
        timeout: float | None = None,
    ) -> None:
        if backend.name != "jax":
            raise TypeError(
                f"the mpi4jax comm carries jax arrays only, not {backend.name!r}; "
                "use comm='mpi' for other backends"
            )
        base = MPI.COMM_WORLD if comm is None else comm
        self.be = backend
        self.rank = base.Get_rank()
        self.size = base.Get_size()
        self.checked, self.timeout = settings(checked, timeout)
        #: ``(monotonic start, Call)`` while in an eager collective, read by the deadline.
        self.waiting: tuple[float, Call] | None = None
        self.data = base.Dup()  # mpi4jax's collectives
        self.control = base.Dup()  # eager agreements, and the views after a mismatch
        self._agree: Agreement | None = None
        if self.checked and self.size > 1:
            self._agree = Agreement(self._max_rows, self.control.allgather)
        if self.size > 1:
            watch(self, _abort_world)

    def __repr__(self) -> str:
        return (
            f"Mpi4jaxComm(rank={self.rank}, size={self.size}, checked={self.checked}, "
            f"timeout={self.timeout:g})"
        )

    # -- agreement -------------------------------------------------------------------
    def _max_rows(self, send: np.ndarray) -> np.ndarray:
        recv = np.empty_like(send)
        self.control.Allreduce(send, recv, MPI.MAX)
        return recv

    def _agree_traced(self, call: Call, x: Any) -> Any:
        """Return ``x``, made to wait for an in-program agreement on ``call``."""
        mine = _pieces(call.row())
        largest = mpi4jax.allreduce(jnp.asarray(mine), op=MPI.MAX, comm=self.data)
        same = jnp.all(largest == jnp.asarray(mine))

        def disagree(x: Any) -> Any:
            # partial: a Call is a NamedTuple, which the callback would take as a pytree
            jax.debug.callback(functools.partial(self._end_mismatch, call))
            return x

        # The collective takes the cond's output, so it runs only after the agreement.
        return jax.lax.cond(same, lambda x: x, disagree, x)

    def _end_mismatch(self, call: Call) -> None:
        # Every rank saw the disagreement (the max-allreduce tells all or none).
        calls = self.control.allgather(call)
        sys.stderr.write(
            f"[rank {self.rank}] anyxp: inside a compiled program, {mismatch_message(calls)} "
            "A compiled program cannot raise on every rank, so every rank ends.\n"
        )
        sys.stderr.flush()
        time.sleep(FORWARD_GRACE)
        _abort_world(1)

    # -- running one collective ---------------------------------------------------------
    def _run(self, call: Call, x: Any, collective: Callable[[Any], Any]) -> Any:
        """Agree on ``call`` (when checked), then return ``collective(x)``."""
        if _traced(x):
            if self.checked and self.size > 1:
                x = self._agree_traced(call, x)
            return collective(x)
        with in_collective(self, call, self._agree):
            # Eager: wait here, under the deadline, and so that no MPI call of this
            # collective is still running when the next agreement starts.
            return jax.block_until_ready(collective(x))

    def _array(self, what: str, x: Any) -> Any:
        check_array(what, x)
        if not isinstance(x, (jax.Array, jax.core.Tracer)):
            raise TypeError(
                f"{what} on the mpi4jax comm takes jax arrays, got {type(x).__name__}; "
                "convert with be.asarray(x) on a jax backend"
            )
        return x

    @staticmethod
    def _call(name: str, x: Any, **args: Any) -> Call:
        return Call(name, tuple(x.shape), np.dtype(x.dtype), **args)

    # -- collectives ------------------------------------------------------------------
    def allreduce(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return the elementwise reduction of every rank's ``x``."""
        no_out(self.name, "allreduce", out)
        x = self._array("allreduce", x)
        check_op(op, x.dtype, self.be.xp)

        def reduce(x: Any) -> Any:
            out = mpi4jax.allreduce(x, op=_OPS[op], comm=self.data)
            return out / self.size if op == "mean" else out

        return self._run(self._call("allreduce", x, op=op), x, reduce)

    def broadcast(self, x: Any, root: int = 0, *, out: Any = None) -> Any:
        """Return ``root``'s ``x`` on every rank (every rank passes an array of its shape)."""
        no_out(self.name, "broadcast", out)
        x = self._array("broadcast", x)
        check_root(root, self.size)
        call = self._call("broadcast", x, root=root)
        # mpi4jax returns root's own input on root: a copy keeps "every result is new".
        return self._run(call, x, lambda x: jnp.copy(mpi4jax.bcast(x, root, comm=self.data)))

    def allgather(self, x: Any, *, out: Any = None) -> Any:
        """Return every rank's ``x`` stacked on a new axis 0."""
        no_out(self.name, "allgather", out)
        x = self._array("allgather", x)
        call = self._call("allgather", x)
        return self._run(call, x, lambda x: mpi4jax.allgather(x, comm=self.data))

    def reduce_scatter(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return this rank's block of the reduction of every rank's ``x``."""
        no_out(self.name, "reduce_scatter", out)
        x = self._array("reduce_scatter", x)
        check_op(op, x.dtype, self.be.xp)
        check_blocks(tuple(x.shape), self.size)
        block = x.shape[0] // self.size

        # mpi4jax has no reduce_scatter: the whole reduction, of which this rank keeps
        # its block (the same traffic as gloo's, twice a true reduce_scatter's).
        def reduce(x: Any) -> Any:
            out = mpi4jax.allreduce(x, op=_OPS[op], comm=self.data)
            out = out[self.rank * block : (self.rank + 1) * block]
            return out / self.size if op == "mean" else out

        return self._run(self._call("reduce_scatter", x, op=op), x, reduce)

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]], *, out: Any = None) -> Any:
        """Send ``x`` along ``(source, destination)`` pairs; unnamed receivers get zeros."""
        no_out(self.name, "ppermute", out)
        x = self._array("ppermute", x)
        check_perm(perm, self.size)
        pairs = tuple((int(s), int(d)) for s, d in perm)
        dest = next((d for s, d in pairs if s == self.rank), None)
        src = source_of(self.rank, pairs)
        call = self._call("ppermute", x, perm=pairs)

        def exchange(x: Any) -> Any:
            if dest == self.rank:  # (rank, rank): a copy, no message
                return jnp.copy(x)
            zeros = jnp.zeros_like(x)
            # A rank that sends and receives does both at once (no cycle of blocking
            # sends can form); one that only sends or only receives does that alone.
            if src is not None and dest is not None:
                return mpi4jax.sendrecv(x, zeros, src, dest, sendtag=7, recvtag=7, comm=self.data)
            if dest is not None:
                mpi4jax.send(x, dest, tag=7, comm=self.data)
            elif src is not None:
                return mpi4jax.recv(zeros, src, tag=7, comm=self.data)
            return zeros  # the send stays in the program: it carries an ordered effect

        return self._run(call, x, exchange)

    def barrier(self) -> None:
        """Return when every rank has called it; inside a compiled program, a step of it."""
        call = Call("barrier")
        if not _trace_state_clean():
            # Traced: no array to hang the wait on, but mpi4jax's effect keeps its place.
            if self.checked and self.size > 1:
                self._agree_traced(call, jnp.zeros(()))  # itself a barrier
            else:
                mpi4jax.barrier(comm=self.data)
            return
        # Checked, the agreement is itself a barrier: every rank is in its allreduce.
        with in_collective(self, call, self._agree):
            if self._agree is None:
                self.control.Barrier()


def create(backend: Backend, **options: Any) -> Mpi4jaxComm:
    """Build the ``mpi4jax`` comm; options: ``comm``, ``checked``, ``timeout``."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(
            f"the mpi4jax comm has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(_OPTIONS)}."
        )
    return Mpi4jaxComm(backend, **options)
