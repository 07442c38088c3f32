"""The array-api-strict backend: the standard and nothing else, to prove algorithms use only it."""

from __future__ import annotations

from anyxp import BackendSpec, hookimpl


@hookimpl
def anyxp_backends() -> list[BackendSpec]:
    """Declare the array_api_strict backend."""
    return [
        BackendSpec(
            name="array_api_strict",
            factory="anyxp.plugins.array_api_strict._backend:create",
            array_types=("array_api_strict._array_object.Array",),
            requires=("array_api_strict",),
            install="pip install 'anyxp[strict]'",
            capabilities={"arrays", "arrays.inplace", "float64", "linalg", "dlpack", "random"},
            aliases=("strict",),
            description="the array API standard with no extensions beyond it",
        )
    ]
