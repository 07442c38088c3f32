"""The JAX backend: ``jax.numpy``, native AD, ``jax.lax`` control flow and ``jax.jit``.

``dtype="float64"`` turns on JAX's x64 mode (``jax_enable_x64``). JAX has no
per-array switch for it, so this is process-wide: it is what diffrax and every other
float64 JAX code asks of its users too.

The ``mpi4jax`` comm moves JAX arrays with MPI inside compiled programs (see
``_comm.py``); it needs the optional mpi4jax package.
"""

from __future__ import annotations

from anyxp import BackendSpec, CommSpec, hookimpl
from anyxp.capabilities import AD_CAPABILITIES, COMM_CAPABILITIES


@hookimpl
def anyxp_backends() -> list[BackendSpec]:
    """Declare the jax backend."""
    return [
        BackendSpec(
            name="jax",
            factory="anyxp.plugins.jax._backend:create",
            array_types=("jax.Array", "jax.core.Tracer"),
            requires=("jax",),
            install="pip install 'anyxp[jax]'",
            capabilities={
                "arrays",
                "float64",
                "linalg",
                "dlpack",
                "random",
                *AD_CAPABILITIES,
                "jit",
                "jit.fuse",
                "control_flow.compiled",
                "device.gpu",
            },
            description="jax.numpy; native AD, jax.lax control flow, jit; float64 via x64 mode",
        )
    ]


@hookimpl
def anyxp_comms() -> list[CommSpec]:
    """Declare the mpi4jax comm."""
    return [
        CommSpec(
            name="mpi4jax",
            factory="anyxp.plugins.jax._comm:create",
            carries=("jax",),
            requires=("mpi4jax", "mpi4py"),
            install="pip install nanobind && pip install --no-build-isolation mpi4jax",
            capabilities=COMM_CAPABILITIES,
            description="MPI through mpi4jax: collectives inside jax.jit and compiled loops "
            "(launch with mpiexec -n N python script.py)",
            launcher=("mpiexec", "-n", "{n}", "{python}", "-m", "mpi4py"),
        )
    ]
