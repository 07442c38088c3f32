"""The PyTorch backend (array-api-compat's namespace, AD through ``torch.func``) and the
``torch`` comm (``torch.distributed``)."""

from __future__ import annotations

from anyxp import BackendSpec, CommSpec, hookimpl
from anyxp.capabilities import AD_CAPABILITIES, COMM_CAPABILITIES


@hookimpl
def anyxp_backends() -> list[BackendSpec]:
    """Declare the torch backend."""
    return [
        BackendSpec(
            name="torch",
            factory="anyxp.plugins.torch._backend:create",
            array_types=("torch.Tensor",),
            requires=("torch",),
            install="pip install 'anyxp[torch]'",
            capabilities={
                "arrays",
                "float64",
                "linalg",
                "dlpack",
                "random",
                *AD_CAPABILITIES,
                "jit.fuse",
                "device.gpu",
            },
            aliases=("pytorch",),
            description="PyTorch tensors; AD through torch.func; eager; torch.compile for "
            "fused steps",
        )
    ]


@hookimpl
def anyxp_comms() -> list[CommSpec]:
    """Declare the torch comm."""
    return [
        CommSpec(
            name="torch",
            factory="anyxp.plugins.torch._dist:create",
            carries=("torch",),
            requires=("torch",),
            install="pip install 'anyxp[torch]'",
            capabilities=COMM_CAPABILITIES | {"comm.out"},
            description="torch.distributed: gloo on CPU, NCCL on CUDA (launch with torchrun, "
            "mpiexec or srun)",
            launcher=(
                "{python}",
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "{n}",
            ),
        )
    ]
