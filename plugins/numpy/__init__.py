"""The numpy backend (the embedded default) and the size-1 ``local`` comm."""

from __future__ import annotations

from anyxp import BackendSpec, CommSpec, hookimpl
from anyxp.capabilities import COMM_CAPABILITIES


@hookimpl
def anyxp_backends() -> list[BackendSpec]:
    """Declare the numpy backend."""
    return [
        BackendSpec(
            name="numpy",
            factory="anyxp.plugins.numpy._backend:create",
            array_types=("numpy.ndarray", "numpy.generic"),
            requires=("numpy",),
            install="pip install numpy",
            capabilities={"arrays", "arrays.inplace", "float64", "linalg", "dlpack", "random"},
            aliases=("np",),
            description="NumPy through array-api-compat; the default backend",
        )
    ]


@hookimpl
def anyxp_comms() -> list[CommSpec]:
    """Declare the ``local`` comm: one process, collectives of size 1."""
    return [
        CommSpec(
            name="local",
            factory="anyxp.comm:create_local",
            carries=("*",),
            capabilities=COMM_CAPABILITIES | {"comm.out"},
            description="a single process; every backend's default comm",
        )
    ]
