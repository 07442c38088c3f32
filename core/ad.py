"""Automatic differentiation as backends expose it: functional and JAX-shaped.

``be.ad.grad(f)(x)``, ``be.ad.value_and_grad(f)(x)``, ``be.ad.vjp(f, *primals)``,
``be.ad.jvp(f, primals, tangents)``, ``be.ad.jacobian(f)(x)``, ``be.ad.hessian(f)(x)``.
A function whose capability the backend does not declare raises
:class:`anyxp.UnsupportedError` naming the backends that have it.

Algorithms that know their own derivative (an ODE solve's adjoint) give it to the
backend's AD through two more functions (capability ``ad.custom``), each over a flat
tuple of input arrays and returning ``(out, aux)``: one differentiable array ``out`` and a
tuple ``aux`` of arrays that are not differentiated (counts, statuses):

- ``be.ad.custom_vjp(fun, fwd, bwd)``: reverse mode by ``fwd(*args) -> ((out, aux), res)``
  and ``bwd(args, res, out_bar) -> args_bar`` (one cotangent per input). ``bwd`` gets the
  inputs themselves: a rule that recomputes from them with differentiable operations has
  derivatives of its own (second order).
- ``be.ad.with_jacobian(fun, jacobian)``: both modes from ``jacobian(*args)``, one block
  of shape ``(out.size, arg.size)`` per input.

``be.ad.stop_gradient(x)`` is ``x`` with no derivative (``x`` itself without AD).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol

from anyxp.errors import UnsupportedError

__all__ = ["AD", "DeclaredAD"]


class AD(Protocol):
    """What a backend's ``ad`` attribute provides."""

    def grad(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]: ...
    def value_and_grad(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]: ...
    def vjp(self, f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]: ...
    def jvp(
        self, f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]: ...
    def jacobian(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]: ...
    def hessian(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]: ...
    def custom_vjp(
        self, fun: Callable[..., Any], fwd: Callable[..., Any], bwd: Callable[..., Any]
    ) -> Callable[..., Any]: ...
    def with_jacobian(
        self, fun: Callable[..., Any], jacobian: Callable[..., Any]
    ) -> Callable[..., Any]: ...
    def stop_gradient(self, x: Any) -> Any: ...


class DeclaredAD:
    """A backend's ``ad``: the plugin's functions for the capabilities it declares.

    Every other function raises :class:`anyxp.UnsupportedError` naming the backends that
    have it, whatever the plugin's object holds, so an undeclared capability behaves
    the same on every backend.
    """

    _FUNCTIONS: ClassVar[dict[str, str]] = {
        "grad": "ad.grad",
        "value_and_grad": "ad.grad",
        "vjp": "ad.vjp",
        "jvp": "ad.jvp",
        "jacobian": "ad.jacobian",
        "hessian": "ad.hessian",
        "custom_vjp": "ad.custom",
        "with_jacobian": "ad.custom",
    }

    def __init__(self, backend: str, impl: Any, declared: frozenset[str]) -> None:
        self._backend = backend
        self._impl = impl
        self._declared = declared

    def stop_gradient(self, x: Any) -> Any:
        """``x`` with no derivative: the plugin's own, or ``x`` where there is no AD."""
        impl = getattr(self._impl, "stop_gradient", None)
        return x if impl is None else impl(x)

    def __getattr__(self, attr: str) -> Any:
        capability = self._FUNCTIONS.get(attr)
        if capability is None:
            raise AttributeError(attr)
        if self._impl is None or capability not in self._declared:
            from anyxp.registry import get_registry

            raise UnsupportedError(self._backend, capability, get_registry().providers(capability))
        return getattr(self._impl, attr)

    def __dir__(self) -> list[str]:
        names = [n for n, c in self._FUNCTIONS.items() if c in self._declared and self._impl]
        return sorted([*names, "stop_gradient"])

    def __repr__(self) -> str:
        return f"DeclaredAD({self._backend!r}, {type(self._impl).__name__})"
