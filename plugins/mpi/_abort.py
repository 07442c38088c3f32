"""Ending every rank when one of them cannot go on, so that an MPI job never hangs.

Two ways a job hangs, and what ends it:

- A rank raises and its exception is not caught. ``python -m mpi4py script.py`` then
  calls ``MPI.COMM_WORLD.Abort``; a plain ``python script.py`` would print the traceback
  and wait in ``MPI_Finalize`` while the other ranks wait in their next collective. The
  hooks installed here (``sys.excepthook`` and ``threading.excepthook``, chaining the
  ones before them) print the traceback with the rank in front and call ``Abort``.
- A rank waits in a collective that another rank never joins: that rank returned from
  its script (MPICH's ``MPI_Finalize`` then waits for every rank too), caught an
  exception, or called another collective with ``checked=False``. One daemon thread per
  process watches the collective each comm is in; past the comm's deadline it prints
  what was waited for and calls ``Abort``.

The collective itself stays the blocking mpi4py call, which releases the GIL and lets
MPI progress at full speed. Polling a nonblocking request instead (``Test`` with a
sleep) was measured to stall MPI's progress while it sleeps: a 1 MiB allreduce that
meets a late rank took 5.3 ms instead of 1.3 ms on two CPU ranks (the last table of
``benchmarks/results/comm.md``).
"""

from __future__ import annotations

import math
import sys
import threading
import time
import traceback
import weakref
from types import TracebackType
from typing import Any

from mpi4py import MPI

__all__ = ["DEFAULT_TIMEOUT", "watch"]

#: Seconds a rank may wait in one collective. Long enough for a rank that compiles
#: (JAX), checkpoints or loads data while the others wait; short enough that a job
#: stuck at its first collective ends within minutes, not at the batch system's limit.
DEFAULT_TIMEOUT = 300.0

_lock = threading.Lock()
_watched: weakref.WeakSet[Any] = weakref.WeakSet()
_watchdog: threading.Thread | None = None
_hooks_installed = False


def watch(comm: Any) -> None:
    """End the job when ``comm`` waits past ``comm.timeout``, or when a rank raises.

    ``comm`` has ``rank``, ``timeout`` and ``waiting`` (``None``, or the
    ``(monotonic start, call)`` of the collective it is in). The hooks and the watching
    thread are installed once per process, whatever the number of comms.
    """
    global _watchdog
    with _lock:
        _watched.add(comm)
        if _watchdog is None:
            _watchdog = threading.Thread(target=_watch, name="anyxp-comm-deadline", daemon=True)
            _watchdog.start()
        _install_hooks(MPI.COMM_WORLD.Get_rank())


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
        comms = list(_watched)
    now = time.monotonic()
    for comm in comms:
        waiting = comm.waiting
        if waiting is not None and now - waiting[0] > comm.timeout and comm.waiting is waiting:
            _expire(comm, waiting[1], now - waiting[0])


def _expire(comm: Any, call: Any, elapsed: float) -> None:
    sys.stderr.write(
        f"[rank {comm.rank}] anyxp: rank {comm.rank} waited {elapsed:.1f} s in "
        f"{call.describe()}, past its deadline of {comm.timeout:g} s. Another rank has not "
        "joined it: it may have returned from its script, caught an exception, called a "
        "different collective with checked=False, or still be working. Ending every rank "
        "with MPI Abort. If a rank is this slow on purpose, raise ANYXP_COMM_TIMEOUT "
        "(seconds) or pass comm_options={'timeout': seconds}.\n"
    )
    _end_job(1)


def _install_hooks(rank: int) -> None:
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
        _abort(rank, exc)

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
        _abort(rank, args.exc_value)

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


def _abort(rank: int, exc: BaseException | None) -> None:
    sys.stderr.write(
        f"[rank {rank}] anyxp: an uncaught exception on rank {rank} ends every rank "
        "(MPI Abort), so that none waits for ever in a collective.\n"
    )
    # The exit status mpi4py's own runner gives: 130 for Ctrl-C, 1 otherwise.
    _end_job(130 if isinstance(exc, KeyboardInterrupt) else 1)


#: Seconds between writing the reason and aborting. ``Abort`` makes the launcher kill
#: every process at once, and it may do so before it has forwarded what this rank wrote to
#: its pipe: under load the message was lost in CI and the job ended without a word.
FORWARD_GRACE = 1.0


def _end_job(status: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken: nothing more to save
            pass
    time.sleep(FORWARD_GRACE)
    MPI.COMM_WORLD.Abort(status)


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
