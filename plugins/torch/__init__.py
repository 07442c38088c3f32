"""The PyTorch backend: array-api-compat's namespace, AD through ``torch.func``."""

from __future__ import annotations

from anyxp import BackendSpec, hookimpl
from anyxp.capabilities import AD_CAPABILITIES


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
                "device.gpu",
            },
            aliases=("pytorch",),
            description="PyTorch tensors; AD through torch.func; eager",
        )
    ]
