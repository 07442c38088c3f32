"""The fault contract every comm between processes keeps, whatever carries its bytes.

**Agreement** (checked mode): before a collective, every rank agrees on what it is about
to call. Each rank encodes its call (collective, op, root, dtype, shape, and a digest of
its ``perm``) as a fixed row of integers. One small max-allreduce of ``[row, -row]``
gives every rank both the largest and the smallest row, which are equal exactly when
every rank passed the same row; its cost does not grow with the number of ranks. Only
when they differ do the ranks exchange their readable views (an object allgather), so
that every rank raises the same :class:`anyxp.CommMismatchError` naming each view.

**Ending the job** (no hangs): a rank's uncaught exception, or a collective waited on
past the comm's deadline, prints why with the rank in front and ends every rank by the
transport's own means (``MPI_Abort``; under launchers that end the job when one of its
processes fails, as ``torchrun`` and ``mpiexec`` do, exiting this process).

A comm plugin for another transport reuses both, as ``anyxp.plugins.mpi`` and
``anyxp.plugins.torch._dist`` do.
"""

from __future__ import annotations

import functools
import hashlib
import math
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

from anyxp._env import env_flag, env_seconds
from anyxp.comm import REDUCE_OPS
from anyxp.errors import CommMismatchError

__all__ = [
    "DEFAULT_TIMEOUT",
    "Agreement",
    "Call",
    "check_timeout",
    "in_collective",
    "settings",
    "watch",
]

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
def _encoded(call: Call | tuple[Any, ...]) -> np.ndarray:
    """``[row, -row]`` of ``call``; a program makes few distinct calls, so this is cached
    (a Call and the plain tuple of its fields are equal keys)."""
    row = _as_call(call).row()
    return np.array(row + [-v for v in row], dtype=np.int64)


class Agreement:
    """Raise :class:`anyxp.CommMismatchError` on every rank unless all ranks agree on a call.

    Parameters
    ----------
    max_allreduce : callable
        ``max_allreduce(send)``: the elementwise maximum over ranks of an int64 numpy
        vector, as a numpy array, by the transport's own collective.
    allgather_objects : callable
        ``allgather_objects(obj)``: every rank's (picklable) ``obj``, in rank order.
    """

    def __init__(
        self,
        max_allreduce: Callable[[np.ndarray], np.ndarray],
        allgather_objects: Callable[[Any], Sequence[Any]],
    ) -> None:
        self._max = max_allreduce
        self._gather = allgather_objects

    def __call__(self, call: Call | tuple[Any, ...]) -> None:
        """Exchange ``call`` (a Call, or its fields as a plain tuple) with every rank;
        return when all of them made the same one."""
        send = _encoded(call)
        largest = self._max(send)
        # The largest row and the largest negated row equal this rank's exactly when every
        # rank's row is the same: then every rank sees equality, else none does.
        if np.asarray(largest).tobytes() == send.tobytes():
            return
        calls = list(self._gather(_as_call(call)))
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


# -- ending the job --------------------------------------------------------------


#: Seconds a rank may wait in one collective. Long enough for a rank that compiles
#: (JAX), checkpoints or loads data while the others wait; short enough that a job
#: stuck at its first collective ends within minutes, not at the batch system's limit.
DEFAULT_TIMEOUT = 300.0

_lock = threading.Lock()
_watched: weakref.WeakKeyDictionary[Any, Callable[[int], None]] = weakref.WeakKeyDictionary()
_watchdog: threading.Thread | None = None
_hooks_installed = False


def watch(comm: Any, end_job: Callable[[int], None]) -> None:
    """End the job when ``comm`` waits past ``comm.timeout``, or when a rank raises.

    ``comm`` has ``rank``, ``timeout`` and ``waiting`` (``None``, or the
    ``(monotonic start, call)`` of the collective it is in). ``end_job(status)`` ends
    every rank of the job (``MPI.COMM_WORLD.Abort``; ``os._exit`` under a launcher that
    then ends the others). The hooks and the watching thread are installed once per
    process, whatever the number of comms; the first comm's ``end_job`` serves the
    process's uncaught exceptions.
    """
    global _watchdog
    with _lock:
        _watched[comm] = end_job
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="anyxp-comm-deadline", daemon=True)
            _watchdog.start()
        _install_hooks(comm.rank, end_job)


def _watch() -> None:
    while True:
        with _lock:
            timeouts = [c.timeout for c in _watched]
        # Wake ten times per deadline (at most once a second): a deadline ends within
        # 10 % of its length, and an idle thread costs nothing measurable.
        time.sleep(min([1.0, *(t / 10 for t in timeouts)]))
        _check_deadlines()


def _check_deadlines() -> None:
    with _lock:
        comms = list(_watched.items())
    now = time.monotonic()
    for comm, end_job in comms:
        waiting = comm.waiting
        if waiting is not None and now - waiting[0] > comm.timeout and comm.waiting is waiting:
            _expire(comm, waiting[1], now - waiting[0], end_job)


def _expire(comm: Any, call: Any, elapsed: float, end_job: Callable[[int], None]) -> None:
    sys.stderr.write(
        f"[rank {comm.rank}] anyxp: rank {comm.rank} waited {elapsed:.1f} s in "
        f"{_as_call(call).describe()}, past its deadline of {comm.timeout:g} s. Another rank has not "
        "joined it: it may have returned from its script, caught an exception, called a "
        "different collective with checked=False, or still be working. Ending every rank. "
        "If a rank is this slow on purpose, raise ANYXP_COMM_TIMEOUT "
        "(seconds) or pass comm_options={'timeout': seconds}.\n"
    )
    _end_job(end_job, 1)


def _as_call(call: Call | tuple[Any, ...]) -> Call:
    return call if isinstance(call, Call) else Call(*call)


def _install_hooks(rank: int, end_job: Callable[[int], None]) -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook
    previous_thread = threading.excepthook

    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if previous is sys.__excepthook__:
            _print(rank, "", exc_type, exc, tb)
        else:
            previous(exc_type, exc, tb)
        _abort(rank, exc, end_job)

    def thread_excepthook(args: Any) -> None:
        if issubclass(args.exc_type, SystemExit):  # a thread's exit, silent as in Python
            previous_thread(args)
            return
        if previous_thread is threading.__excepthook__:
            name = args.thread.name if args.thread is not None else threading.get_ident()
            header = f"Exception in thread {name}:\n"
            _print(rank, header, args.exc_type, args.exc_value, args.exc_traceback)
        else:
            previous_thread(args)
        _abort(rank, args.exc_value, end_job)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def _print(
    rank: int,
    header: str,
    exc_type: type[BaseException],
    exc: BaseException | None,
    tb: TracebackType | None,
) -> None:
    # Ranks share one stderr, where their lines interleave: each line says whose it is.
    text = header + "".join(traceback.format_exception(exc_type, exc, tb))
    sys.stderr.write("".join(f"[rank {rank}] {line}" for line in text.splitlines(True)))


def _abort(rank: int, exc: BaseException | None, end_job: Callable[[int], None]) -> None:
    sys.stderr.write(
        f"[rank {rank}] anyxp: an uncaught exception on rank {rank} ends every rank, "
        "so that none waits for ever in a collective.\n"
    )
    # The exit status mpi4py's own runner gives: 130 for Ctrl-C, 1 otherwise.
    _end_job(end_job, 130 if isinstance(exc, KeyboardInterrupt) else 1)


#: Seconds between writing the reason and aborting. ``Abort`` makes the launcher kill
#: every process at once, and it may do so before it has forwarded what this rank wrote to
#: its pipe: under load the message was lost in CI and the job ended without a word.
FORWARD_GRACE = 1.0


def _end_job(end_job: Callable[[int], None], status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing more to save
            pass
    time.sleep(FORWARD_GRACE)
    end_job(status)


def check_timeout(timeout: Any) -> float:
    """Return ``timeout`` as seconds, or raise ``ValueError`` unless it is positive."""
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        seconds = math.nan
    if not seconds > 0:
        raise ValueError(
            f"comm option timeout={timeout!r} is not a positive number of seconds; pass e.g. "
            "timeout=60, or timeout=math.inf for no deadline."
        )
    return seconds


def settings(checked: bool | None, timeout: Any) -> tuple[bool, float]:
    """A comm's ``checked`` and ``timeout`` options: as given, else ``ANYXP_COMM_CHECKED``
    (default on) and ``ANYXP_COMM_TIMEOUT`` (default :data:`DEFAULT_TIMEOUT` seconds)."""
    on = env_flag("ANYXP_COMM_CHECKED", True) if checked is None else bool(checked)
    if timeout is None:
        return on, env_seconds("ANYXP_COMM_TIMEOUT", DEFAULT_TIMEOUT)
    return on, check_timeout(timeout)


class in_collective:
    """The block ``comm`` runs ``call`` in: under its deadline (``comm.waiting``, which
    :func:`watch` reads), after every rank agreed on it when ``agree`` is given.

    ``call`` is a :class:`Call` or the plain tuple of its fields: unchecked, a plain tuple
    is all the deadline needs (it is read only when the deadline passes), and it costs a
    third of a microsecond less per collective than building the named tuple. For the
    same reason this is a class, not a generator context manager.
    """

    __slots__ = ("agree", "call", "comm")

    def __init__(self, comm: Any, call: Call | tuple[Any, ...], agree: Agreement | None) -> None:
        self.comm, self.call, self.agree = comm, call, agree

    def __enter__(self) -> None:
        self.comm.waiting = (time.monotonic(), self.call)
        if self.agree is not None:
            try:
                self.agree(self.call)
            except BaseException:
                self.comm.waiting = None
                raise

    def __exit__(self, *exc: object) -> None:
        self.comm.waiting = None
