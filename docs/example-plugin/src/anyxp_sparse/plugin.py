"""Declares the ``sparse`` backend. Imported when anyxp builds its registry: keep it cheap."""

from __future__ import annotations

import anyxp


@anyxp.hookimpl
def anyxp_backends() -> list[anyxp.BackendSpec]:
    return [
        anyxp.BackendSpec(
            name="sparse",
            factory="anyxp_sparse.backend:create",
            array_types=("sparse.SparseArray",),
            requires=("sparse",),
            install="pip install anyxp-sparse",
            # No "linalg": sparse has no linalg extension, so the stiff solvers refuse it
            # up front (UnsupportedError) and the check confirms they do.
            capabilities={"arrays", "float64", "random"},
            description="pydata/sparse COO arrays (example third-party plugin)",
            # Gaps in sparse's array-API coverage, found by `anyxp check sparse`. Each
            # pattern must match a test (a stale one is reported) and fail (strict xfail).
            expected_failures={
                "*test_creation*": "sparse has no arange",
                "*test_indexing_and_shapes*": "sparse.take rejects a sparse index array",
                "*test_sorting_and_ranks*": "sparse has no argsort",
                "*test_fft_and_complex_parts*": "sparse has no fft extension",
            },
        )
    ]
