"""Named reference problems for the command line, the demo, the tests and the benchmarks.

Each right-hand side takes the namespace of its input, so it runs on every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PROBLEMS", "Problem"]


def _xp(y: Any) -> Any:
    from anyxp.selection import backend

    return backend(like=y).xp


@dataclass(frozen=True)
class Problem:
    """An initial value problem with, where known, its state at ``t_span[1]``."""

    name: str
    f: Callable[..., Any]
    t_span: tuple[float, float]
    y0: tuple[float, ...]
    description: str
    stiff: bool = False
    final: tuple[float, ...] | None = None


def lorenz(t: Any, y: Any, sigma: float = 10.0, rho: float = 28.0, beta: float = 8 / 3) -> Any:
    xp = _xp(y)
    return xp.stack([sigma * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - beta * y[2]])


def lotka_volterra(
    t: Any, y: Any, a: float = 1.5, b: float = 1.0, c: float = 3.0, d: float = 1.0
) -> Any:
    xp = _xp(y)
    return xp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


def van_der_pol(t: Any, y: Any, mu: float = 1.0) -> Any:
    xp = _xp(y)
    return xp.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


_MU = 0.012277471


def arenstorf(t: Any, y: Any) -> Any:
    """The restricted three-body problem (Hairer, Nørsett & Wanner I, II.0): periodic."""
    xp = _xp(y)
    mu, nu = _MU, 1 - _MU
    d1 = ((y[0] + mu) ** 2 + y[1] ** 2) ** 1.5
    d2 = ((y[0] - nu) ** 2 + y[1] ** 2) ** 1.5
    return xp.stack(
        [
            y[2],
            y[3],
            y[0] + 2 * y[3] - nu * (y[0] + mu) / d1 - mu * (y[0] - nu) / d2,
            y[1] - 2 * y[2] - nu * y[1] / d1 - mu * y[1] / d2,
        ]
    )


_PLEIADES_Y0 = (
    # x (7 bodies), y (7 bodies), x', y' (Hairer, Nørsett & Wanner I, II.10)
    3.0, 3.0, -1.0, -3.0, 2.0, -2.0, 2.0,
    3.0, -3.0, 2.0, 0.0, 0.0, -4.0, 4.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 1.75, -1.5,
    0.0, 0.0, 0.0, -1.25, 1.0, 0.0, 0.0,
)  # fmt: skip


def pleiades(t: Any, y: Any) -> Any:
    """Seven stars in the plane under gravity, masses 1..7."""
    xp = _xp(y)
    x, yy, vx, vy = y[0:7], y[7:14], y[14:21], y[21:28]
    m = xp.arange(1, 8, dtype=y.dtype, device=getattr(y, "device", None))
    dx = x[None, :] - x[:, None]
    dy = yy[None, :] - yy[:, None]
    r3 = (dx**2 + dy**2) ** 1.5
    eye = xp.eye(7, dtype=y.dtype, device=getattr(y, "device", None))
    inv = (1.0 - eye) / (r3 + eye)
    ax = xp.sum(m[None, :] * dx * inv, axis=1)
    ay = xp.sum(m[None, :] * dy * inv, axis=1)
    return xp.concat([vx, vy, ax, ay])


PROBLEMS = {
    p.name: p
    for p in (
        Problem("lorenz", lorenz, (0.0, 10.0), (1.0, 0.0, 0.0), "Lorenz attractor, chaotic"),
        Problem("lotka_volterra", lotka_volterra, (0.0, 10.0), (1.0, 1.0), "predator and prey"),
        Problem("van_der_pol", van_der_pol, (0.0, 20.0), (2.0, 0.0), "Van der Pol, mu = 1"),
        Problem(
            "arenstorf",
            arenstorf,
            (0.0, 17.0652165601579625588917206249),
            (0.994, 0.0, 0.0, -2.00158510637908252240537862224),
            "Arenstorf orbit: periodic, returns to its start",
            final=(0.994, 0.0, 0.0, -2.00158510637908252240537862224),
        ),
        Problem("pleiades", pleiades, (0.0, 3.0), _PLEIADES_Y0, "seven-body problem, 28 states"),
    )
}
