"""Hamiltonian dynamics for a batch of chains: points, the leapfrog step, the energies.

Every array has a leading chain axis ``C``. A *point* is one array ``(C, 2d + 1)``
holding each chain's position, the gradient of the log density there and the log
density, ``[x | grad | logp]``: the samplers move points around with masks, and one
``where`` per point instead of three is what keeps an eager backend's loop quick.
Momenta are ``(C, d)``. The mass matrix is diagonal, given by its inverse ``inv_mass``
``(C, d)`` (each chain adapts its own). The potential energy is ``-logdensity``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyxp.backend import Backend

__all__ = [
    "MAX_ENERGY_ERROR",
    "density_and_grad",
    "grad_of",
    "kinetic",
    "leapfrog",
    "logp_of",
    "pack",
    "x_of",
]

#: An energy error past this ends a trajectory as divergent (Stan's and numpyro's bound).
MAX_ENERGY_ERROR = 1000.0


def pack(xp: Any, x: Any, logp: Any, grad: Any) -> Any:
    """Return the point ``[x | grad | logp]`` ``(C, 2d + 1)``."""
    return xp.concat([x, grad, logp[:, None]], axis=-1)


def _dim(point: Any) -> int:
    return (int(point.shape[-1]) - 1) // 2


def x_of(point: Any) -> Any:
    """Return the positions ``(C, d)`` of a point."""
    return point[:, : _dim(point)]


def grad_of(point: Any) -> Any:
    """Return the gradients ``(C, d)`` of a point."""
    d = _dim(point)
    return point[:, d : 2 * d]


def logp_of(point: Any) -> Any:
    """Return the log densities ``(C,)`` of a point."""
    return point[:, -1]


def density_and_grad(be: Backend, logdensity: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Return ``f(x) -> (logp, grad)`` for a batch ``x`` of shape ``(C, d)``.

    ``logdensity`` maps ``(C, d)`` to ``(C,)``, each chain's value depending on its own
    row only, so one reverse pass with a cotangent of ones gives every row's gradient.
    """
    vjp, xp = be.ad.vjp, be.xp

    def f(x: Any) -> tuple[Any, Any]:
        logp, pullback = vjp(logdensity, x)
        (grad,) = pullback(xp.ones_like(logp))
        return logp, grad

    return f


def kinetic(xp: Any, p: Any, inv_mass: Any) -> Any:
    """Return the kinetic energy ``p^T M^{-1} p / 2`` of each chain, ``(C,)``."""
    return 0.5 * xp.sum(inv_mass * p * p, axis=-1)


def leapfrog(
    xp: Any, f: Callable[[Any], Any], point: Any, p: Any, eps: Any, inv_mass: Any
) -> tuple[Any, Any]:
    """Return the point and momentum one leapfrog step of signed size ``eps`` ``(C,)`` on."""
    e = 0.5 * eps[:, None]
    p_half = p + e * grad_of(point)
    x = x_of(point) + (2.0 * e) * inv_mass * p_half
    logp, grad = f(x)
    return pack(xp, x, logp, grad), p_half + e * grad
