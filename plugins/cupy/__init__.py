"""The CuPy backend: NVIDIA GPU arrays through array-api-compat."""

from __future__ import annotations

from anyxp import BackendSpec, hookimpl


@hookimpl
def anyxp_backends() -> list[BackendSpec]:
    """Declare the cupy backend."""
    return [
        BackendSpec(
            name="cupy",
            factory="anyxp.plugins.cupy._backend:create",
            array_types=("cupy.ndarray",),
            requires=("cupy",),
            install="pip install 'anyxp[cupy]' (needs an NVIDIA GPU and CUDA 12)",
            capabilities={
                "arrays",
                "arrays.inplace",
                "float64",
                "linalg",
                "dlpack",
                "random",
                "device.gpu",
            },
            availability="anyxp.plugins.cupy._availability:unavailable_reason",
            description="CuPy arrays on an NVIDIA GPU",
        )
    ]
