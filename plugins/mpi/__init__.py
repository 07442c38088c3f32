"""The ``mpi`` comm: checked collectives with deadlines between MPI processes, via mpi4py."""

from __future__ import annotations

from anyxp import CommSpec, hookimpl
from anyxp.capabilities import COMM_CAPABILITIES


@hookimpl
def anyxp_comms() -> list[CommSpec]:
    """Declare the mpi comm."""
    return [
        CommSpec(
            name="mpi",
            factory="anyxp.plugins.mpi._comm:create",
            carries=("numpy", "torch", "jax", "cupy", "array_api_strict"),
            requires=("mpi4py",),
            install="pip install 'anyxp[mpi]'",
            capabilities=COMM_CAPABILITIES | {"comm.out"},
            description="MPI through mpi4py (launch with mpiexec -n N python script.py)",
            launcher=("mpiexec", "-n", "{n}", "{python}", "-m", "mpi4py"),
        )
    ]
