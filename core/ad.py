"""Automatic differentiation as backends expose it: functional and JAX-shaped.

``be.ad.grad(f)(x)``, ``be.ad.value_and_grad(f)(x)``, ``be.ad.vjp(f, *primals)``,
``be.ad.jvp(f, primals, tangents)``, ``be.ad.jacobian(f)(x)``, ``be.ad.hessian(f)(x)``.
A backend without AD gets :class:`NoAD`, whose every function raises
:class:`anyxp.UnsupportedError` naming the backends that have it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from anyxp.errors import UnsupportedError

__all__ = ["AD", "NoAD"]


class AD(Protocol):
    """What a backend's ``ad`` attribute provides."""

    def grad(self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]: ...
    def value_and_grad(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]: ...
    def vjp(self, f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]: ...
    def jvp(self, f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, Any]: ...
    def jacobian(self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]: ...
    def hessian(self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]: ...


class NoAD:
    """The ``ad`` of a backend without automatic differentiation: every use raises."""

    _FUNCTIONS = {
        "grad": "ad.grad",
        "value_and_grad": "ad.grad",
        "vjp": "ad.vjp",
        "jvp": "ad.jvp",
        "jacobian": "ad.jacobian",
        "hessian": "ad.hessian",
    }

    def __init__(self, backend: str) -> None:
        self._backend = backend

    def __getattr__(self, attr: str) -> Any:
        capability = self._FUNCTIONS.get(attr)
        if capability is None:
            raise AttributeError(attr)
        from anyxp.registry import get_registry

        raise UnsupportedError(self._backend, capability, get_registry().providers(capability))

    def __repr__(self) -> str:
        return f"NoAD({self._backend!r})"
