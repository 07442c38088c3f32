"""The dask backend: lazy, chunked arrays through array-api-compat."""

from __future__ import annotations

from anyxp import BackendSpec, hookimpl


@hookimpl
def anyxp_backends() -> list[BackendSpec]:
    """Declare the dask backend."""
    return [
        BackendSpec(
            name="dask",
            factory="anyxp.plugins.dask._backend:create",
            array_types=("dask.array.Array",),
            requires=("dask",),
            install="pip install 'anyxp[dask]'",
            capabilities={"arrays", "float64", "random"},
            description="dask.array (lazy, chunked); runs on dask.distributed clusters",
        )
    ]
