"""Checked mode over MPI: the agreement of :mod:`anyxp._comm_faults` by mpi4py calls."""

from __future__ import annotations

from typing import Any

import numpy as np
from mpi4py import MPI

from anyxp._comm_faults import Agreement, Call

__all__ = ["Call", "mpi_agreement"]


def mpi_agreement(mpi: Any) -> Agreement:
    """Agree on every call over the communicator ``mpi``: one small ``Allreduce(MAX)``."""
    recv = np.zeros(0, dtype=np.int64)

    def max_allreduce(send: np.ndarray) -> np.ndarray:
        nonlocal recv
        if recv.shape != send.shape:
            recv = np.zeros_like(send)
        mpi.Allreduce(send, recv, op=MPI.MAX)
        return recv

    return Agreement(max_allreduce, mpi.allgather)
