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
            capabilities={"arrays", "float64", "linalg", "random"},
            # dask.array.linalg factors one 2-D matrix held in square chunks. Reading it
            # with rechunk({-2: -1, -1: -1}) and numpy per block would lift both limits.
            expected_failures={
                "*test_linalg_*batch-*": "dask.array.linalg has no batch over leading axes",
                "*test_linalg_on_assembled_matrices*": "dask.array.linalg needs square "
                "chunks; a matrix stacked from columns has one chunk per column",
                "*test_sorting_and_ranks*": "array-api-compat's dask namespace has no "
                "take_along_axis (MCMC's rank diagnostics use it; MCMC needs AD anyway)",
            },
            description="dask.array (lazy, chunked); runs on dask.distributed clusters",
        )
    ]
