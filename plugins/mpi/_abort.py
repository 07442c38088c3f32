"""Ending every rank when one of them cannot go on, so that an MPI job never hangs.

The mechanism is :mod:`anyxp._comm_faults`; this module gives it MPI's way to end the job.

Two ways a job hangs, and what ends it:

- A rank raises and its exception is not caught. ``python -m mpi4py script.py`` then
  calls ``MPI.COMM_WORLD.Abort``; a plain ``python script.py`` would print the traceback
  and wait in ``MPI_Finalize`` while the other ranks wait in their next collective. The
  hooks installed by ``watch`` (``sys.excepthook`` and ``threading.excepthook``, chaining the
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

from typing import Any

from mpi4py import MPI

from anyxp._comm_faults import DEFAULT_TIMEOUT, check_timeout
from anyxp._comm_faults import watch as _watch

__all__ = ["DEFAULT_TIMEOUT", "check_timeout", "watch"]


def _abort_world(status: int) -> None:
    MPI.COMM_WORLD.Abort(status)


def watch(comm: Any) -> None:
    """End every MPI rank when ``comm`` waits past its deadline or a rank raises."""
    _watch(comm, _abort_world)
