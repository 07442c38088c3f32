"""Reference nonlinear problems on a grid, for the tests, the docs and the benchmarks.

Each residual takes the namespace of its input, so it runs (and differentiates) on every
backend, and acts on the last one or two axes: leading axes are a batch of independent
grids. Grids are the interior points of the unit interval or square, spacing
``h = 1/(n + 1)``, with ``u = 0`` on the boundary, and residuals are scaled by ``h²`` (the
five-point Laplacian's stencil is then ``[1, -4, 1]``-like and of size one).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

__all__ = ["BRATU_CRITICAL", "bratu", "laplacian", "laplacian_inverse", "reaction_diffusion"]

#: The turning points of the Bratu problem ``Δu + λ e^u = 0``: two solutions below, none
#: above. In one dimension λ* = 3.513830719; on the unit square λ* ≈ 6.80812.
BRATU_CRITICAL = {1: 3.513830719, 2: 6.80812}


def _xp(u: Any) -> Any:
    from anyxp.selection import backend

    return backend(like=u).xp


def _check_dim(dim: int) -> None:
    if dim not in (1, 2):
        raise ValueError(f"dim must be 1 or 2, got {dim!r}")


def laplacian(u: Any, dim: int = 1) -> Any:
    """``h²·Δu`` by the (2·dim + 1)-point stencil on the last ``dim`` axes (``u = 0`` outside)."""
    _check_dim(dim)
    xp = _xp(u)
    out = -2.0 * dim * u
    for axis in range(u.ndim - dim, u.ndim):
        n = u.shape[axis]
        pad = xp.zeros_like(_take(u, axis, 0, 1))
        out = out + xp.concat([pad, _take(u, axis, 0, n - 1)], axis=axis)
        out = out + xp.concat([_take(u, axis, 1, n), pad], axis=axis)
    return out


def _take(u: Any, axis: int, start: int, stop: int) -> Any:
    index = [slice(None)] * u.ndim
    index[axis] = slice(start, stop)
    return u[tuple(index)]


def bratu(n: int, lam: float, dim: int = 1) -> Callable[[Any], Any]:
    """The Bratu (Liouville-Gelfand) problem ``Δu + λ e^u = 0``, ``u = 0`` on the boundary.

    Returns the residual ``F(u) = h²(Δ_h u + λ e^u)`` of ``u`` of shape ``(n,)`` (``dim=1``)
    or ``(n, n)`` (``dim=2``), with any leading batch axes. For ``λ`` below the turning
    point :data:`BRATU_CRITICAL` there are two solutions; Newton from ``u = 0`` finds the
    lower one.
    """
    _check_dim(dim)
    h2 = 1.0 / (n + 1) ** 2

    def F(u: Any) -> Any:
        xp = _xp(u)
        return laplacian(u, dim) + (h2 * lam) * xp.exp(u)

    return F


def reaction_diffusion(n: int, amplitude: float = 100.0) -> Callable[[Any], Any]:
    """The steady state of ``u_t = Δu - u - u³ + s(x, y)`` on the unit square.

    ``s`` is a Gaussian source of height ``amplitude`` at the centre (width 0.1). The
    reaction ``-u - u³`` is monotone, so the steady state is unique. Returns
    ``F(u) = h²(Δ_h u - u - u³ + s)`` of ``u`` of shape ``(n, n)``, with any leading batch
    axes.
    """
    h = 1.0 / (n + 1)
    grid = [(i + 1) * h for i in range(n)]
    source = [
        [amplitude * math.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) / 0.02) for y in grid]
        for x in grid
    ]

    def F(u: Any) -> Any:
        from anyxp.selection import backend

        be = backend(like=u)
        s = be.xp.asarray(source, dtype=u.dtype, device=be.device_of(u))
        return laplacian(u, 2) + (h * h) * (s - u - u * u * u)

    return F


def laplacian_inverse(n: int, dim: int = 1) -> Callable[[Any], Any]:
    """``v -> (h²Δ_h)⁻¹ v``: the fast Poisson solver, by sine transforms through ``xp.fft``.

    The eigenvectors of the discrete Laplacian with ``u = 0`` on the boundary are sines, so
    two sine transforms (each an FFT of twice the length) and a division invert it in
    ``O(n log n)``. A preconditioner for problems whose Jacobian is the Laplacian plus a
    smaller term (Bratu, reaction-diffusion): ``newton_krylov(..., preconditioner=...)``.
    Uses the standard's FFT extension (``xp.fft``), which every built-in backend has.
    """
    _check_dim(dim)
    eig = [-4.0 * math.sin(math.pi * (k + 1) / (2 * (n + 1))) ** 2 for k in range(n)]
    scale = (2.0 / (n + 1)) ** dim  # the sine transform is its own inverse up to this

    def solve(v: Any) -> Any:
        from anyxp.selection import backend

        be = backend(like=v)
        xp = be.xp
        lam = xp.asarray(eig, dtype=v.dtype, device=be.device_of(v))
        if dim == 2:
            lam = lam[:, None] + lam[None, :]
        w = v
        for axis in range(v.ndim - dim, v.ndim):
            w = _sine_transform(xp, w, axis)
        w = w / lam
        for axis in range(v.ndim - dim, v.ndim):
            w = _sine_transform(xp, w, axis)
        return scale * w

    return solve


def _sine_transform(xp: Any, x: Any, axis: int) -> Any:
    """The type-I discrete sine transform ``Σ_j x_j sin(π j k/(n + 1))`` along ``axis``,
    as the imaginary part of an FFT of the odd extension ``[0, x, 0, -reversed(x)]``."""
    x = xp.moveaxis(x, axis, -1)
    n = x.shape[-1]
    zero = xp.zeros_like(x[..., :1])
    odd = xp.concat([zero, x, zero, -xp.flip(x, axis=-1)], axis=-1)
    out = -0.5 * xp.imag(xp.fft.rfft(odd, axis=-1)[..., 1 : n + 1])
    return xp.moveaxis(xp.astype(out, x.dtype), -1, axis)
