"""Named reference problems for the command line, the demo, the tests and the benchmarks.

Each right-hand side takes the namespace of its input, so it runs on every backend. The
stiff problems come with their Jacobians, and where the Bari IVP test set (Mazzia &
Magherini, release 2.4) publishes a reference solution at the end of the interval, it is
``final``, digit for digit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PROBLEMS", "Problem", "SplitProblem", "gray_scott"]


def _xp(y: Any) -> Any:
    from anyxp.selection import backend

    return backend(like=y).xp


@dataclass(frozen=True)
class Problem:
    """An initial value problem with, where known, its state at ``t_span[1]``.

    ``method`` is the method to use by default (a stiff one for stiff problems);
    ``atol`` the absolute tolerance its components' scales call for (``None``: the
    caller's).
    """

    name: str
    f: Callable[..., Any]
    t_span: tuple[float, float]
    y0: tuple[float, ...]
    description: str
    stiff: bool = False
    final: tuple[float, ...] | None = None
    jac: Callable[..., Any] | None = None
    atol: float | None = None

    @property
    def method(self) -> str:
        return "rodas5p" if self.stiff else "tsit5"


def _matrix(rows: list[list[Any]], y: Any) -> Any:
    """A matrix of the backend of ``y`` from rows of numbers and 0-d arrays.

    The numbers become one array, the 0-d arrays are stacked after them, and one ``take``
    puts every entry in its place: a handful of array operations whatever the size (an
    array per entry made HIRES's 8 x 8 Jacobian cost ten evaluations of its ``f``, now
    two).
    """
    import array_api_compat

    xp = _xp(y)
    flat = [v for row in rows for v in row]
    dev = array_api_compat.device(y)
    out = xp.asarray(
        [v if isinstance(v, int | float) else 0.0 for v in flat], dtype=y.dtype, device=dev
    )
    placed = [k for k, v in enumerate(flat) if not isinstance(v, int | float)]
    if placed:
        index = np.arange(len(flat))
        index[placed] = len(flat) + np.arange(len(placed))
        out = xp.concat([out, xp.stack([flat[k] for k in placed])])
        out = xp.take(out, xp.asarray(index, device=dev))
    return xp.reshape(out, (len(rows), len(rows[0])))


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


_PLEIADES_FINAL = (
    0.3706139143970502, 0.3237284092057233e1, -0.3222559032418324e1, 0.6597091455775310,
    0.3425581707156584, 0.1562172101400631e1, -0.7003092922212495, -0.3943437585517392e1,
    -0.3271380973972550e1, 0.5225081843456543e1, -0.2590612434977470e1, 0.1198213693392275e1,
    -0.2429682344935824, 0.1091449240428980e1, 0.3417003806314313e1, 0.1354584501625501e1,
    -0.2590065597810775e1, 0.2025053734714242e1, -0.1155815100160448e1, -0.8072988170223021,
    0.5952396354208710, -0.3741244961234010e1, 0.3773459685750630, 0.9386858869551073,
    0.3667922227200571, -0.3474046353808490, 0.2344915448180937e1, -0.1947020434263292e1,
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


def robertson(t: Any, y: Any) -> Any:
    """Robertson's chemical kinetics (ROBER): rate constants 0.04, 1e4, 3e7."""
    xp = _xp(y)
    r1, r2, r3 = 0.04 * y[0], 1e4 * y[1] * y[2], 3e7 * y[1] ** 2
    return xp.stack([-r1 + r2, r1 - r2 - r3, r3])


def robertson_jac(t: Any, y: Any) -> Any:
    return _matrix(
        [
            [-0.04, 1e4 * y[2], 1e4 * y[1]],
            [0.04, -1e4 * y[2] - 6e7 * y[1], -1e4 * y[1]],
            [0.0, 6e7 * y[1], 0.0],
        ],
        y,
    )


def hires(t: Any, y: Any) -> Any:
    """High Irradiance RESponse (HIRES): eight reactions of plant photomorphogenesis."""
    xp = _xp(y)
    r = 280.0 * y[5] * y[7]
    return xp.stack(
        [
            -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
            1.71 * y[0] - 8.75 * y[1],
            -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
            8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
            -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
            -r + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
            r - 1.81 * y[6],
            -r + 1.81 * y[6],
        ]
    )


def hires_jac(t: Any, y: Any) -> Any:
    a, b = 280.0 * y[7], 280.0 * y[5]
    return _matrix(
        [
            [-1.71, 0.43, 8.32, 0, 0, 0, 0, 0],
            [1.71, -8.75, 0, 0, 0, 0, 0, 0],
            [0, 0, -10.03, 0.43, 0.035, 0, 0, 0],
            [0, 8.32, 1.71, -1.12, 0, 0, 0, 0],
            [0, 0, 0, 0, -1.745, 0.43, 0.43, 0],
            [0, 0, 0, 0.69, 1.71, -0.43 - a, 0.69, -b],
            [0, 0, 0, 0, 0, a, -1.81, b],
            [0, 0, 0, 0, 0, -a, 1.81, -b],
        ],
        y,
    )


def van_der_pol_jac(t: Any, y: Any, mu: float = 1.0) -> Any:
    return _matrix([[0.0, 1.0], [-2 * mu * y[0] * y[1] - 1.0, mu * (1 - y[0] ** 2)]], y)


def van_der_pol_stiff(t: Any, y: Any) -> Any:
    """Van der Pol with mu = 1000 on [0, 2000] (the Bari VDPOL problem, unscaled)."""
    return van_der_pol(t, y, 1e3)


def van_der_pol_stiff_jac(t: Any, y: Any) -> Any:
    return van_der_pol_jac(t, y, 1e3)


def oregonator(t: Any, y: Any) -> Any:
    """The Oregonator (OREGO): Field and Noyes's model of the Belousov-Zhabotinskii reaction."""
    xp = _xp(y)
    return xp.stack(
        [
            77.27 * (y[1] + y[0] * (1 - 8.375e-6 * y[0] - y[1])),
            (y[2] - (1 + y[0]) * y[1]) / 77.27,
            0.161 * (y[0] - y[2]),
        ]
    )


def oregonator_jac(t: Any, y: Any) -> Any:
    return _matrix(
        [
            [77.27 * (1 - 2 * 8.375e-6 * y[0] - y[1]), 77.27 * (1 - y[0]), 0.0],
            [-y[1] / 77.27, -(1 + y[0]) / 77.27, 1 / 77.27],
            [0.161, 0.0, -0.161],
        ],
        y,
    )


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
        Problem(
            "pleiades",
            pleiades,
            (0.0, 3.0),
            _PLEIADES_Y0,
            "seven-body problem, 28 states (Bari PLEI)",
            final=_PLEIADES_FINAL,
        ),
        Problem(
            "robertson",
            robertson,
            (0.0, 1e11),
            (1.0, 0.0, 0.0),
            "Robertson's chemical kinetics, stiff (Bari ROBER)",
            stiff=True,
            final=(0.2083340149701255e-07, 0.8333360770334713e-13, 0.9999999791665050),
            jac=robertson_jac,
            atol=1e-20,
        ),
        Problem(
            "hires",
            hires,
            (0.0, 321.8122),
            (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057),
            "plant photomorphogenesis, 8 states, stiff (Bari HIRES)",
            stiff=True,
            final=(
                0.7371312573325668e-3,
                0.1442485726316185e-3,
                0.5888729740967575e-4,
                0.1175651343283149e-2,
                0.2386356198831331e-2,
                0.6238968252742796e-2,
                0.2849998395185769e-2,
                0.2850001604814231e-2,
            ),
            jac=hires_jac,
            atol=1e-14,
        ),
        Problem(
            "van_der_pol_stiff",
            van_der_pol_stiff,
            (0.0, 2000.0),
            (2.0, 0.0),
            "Van der Pol, mu = 1000, stiff (Bari VDPOL)",
            stiff=True,
            final=(0.1706167732170469e1, -0.8928097010248125e-3),
            jac=van_der_pol_stiff_jac,
        ),
        Problem(
            "oregonator",
            oregonator,
            (0.0, 360.0),
            (1.0, 2.0, 3.0),
            "Belousov-Zhabotinskii reaction, stiff (Bari OREGO)",
            stiff=True,
            final=(0.1000814870318523e1, 0.1228178521549917e4, 0.1320554942846706e3),
            jac=oregonator_jac,
        ),
    )
}


@dataclass(frozen=True)
class SplitProblem:
    """A method-of-lines problem whose state is split in blocks of grid rows across a comm.

    ``f`` and ``y0`` are this rank's: pass them, with ``comm=``, to
    :func:`anyxp.ode.solve`. ``rows`` is this rank's slice of the grid's rows and ``shape``
    the whole state's ``(fields, rows, columns)``.
    """

    name: str
    f: Callable[[Any, Any], Any]
    y0: Any
    t_span: tuple[float, float]
    rows: slice
    shape: tuple[int, int, int]
    comm: Any


def gray_scott(
    n: int = 64,
    *,
    comm: Any = None,
    backend: Any = None,
    feed: float = 0.04,
    kill: float = 0.06,
    t_end: float = 200.0,
) -> SplitProblem:
    """Gray-Scott reaction-diffusion on a periodic ``n x n`` grid, split in row blocks.

    ``u' = D_u ∇²u - u v² + F (1 - u)``, ``v' = D_v ∇²v + u v² - (F + k) v`` on a square of
    side 2.5 (Pearson's setting, ``D_u = 2e-5``, ``D_v = 1e-5``) from ``u = 1, v = 0`` with
    a perturbed square in the middle. Written once for any comm: each rank holds a block of
    rows and gets the rows just outside it from its neighbours by ``ppermute`` (its own,
    periodically, at size 1), so the same code solves on one process or many.
    """
    import anyxp

    be = anyxp.backend(backend)
    comm = be.comm if comm is None else comm
    size, rank = comm.size, comm.rank
    if not 1 <= size <= n:
        raise ValueError(f"{n} grid rows cannot be split over {size} ranks; use n >= size")
    start, stop = rank * n // size, (rank + 1) * n // size
    rows = slice(start, stop)
    xp = be.xp
    spacing = 2.5 / n
    du, dv = 2e-5 / spacing**2, 1e-5 / spacing**2
    to_next = [(r, (r + 1) % size) for r in range(size)]  # my last row: the next's halo
    to_previous = [(r, (r - 1) % size) for r in range(size)]

    def laplacian(w: Any, above: Any, below: Any) -> Any:
        padded = xp.concat([above[None, :], w, below[None, :]], axis=0)
        vertical = padded[:-2, :] + padded[2:, :]
        horizontal = xp.roll(w, 1, axis=1) + xp.roll(w, -1, axis=1)
        return vertical + horizontal - 4 * w

    def f(t: Any, y: Any) -> Any:
        fields = xp.reshape(y, (2, stop - start, n))
        # One exchange each way carries both fields' boundary rows.
        above = comm.ppermute(fields[:, -1, :], to_next)
        below = comm.ppermute(fields[:, 0, :], to_previous)
        u, v = fields[0, ...], fields[1, ...]
        uvv = u * v * v
        du_dt = du * laplacian(u, above[0, :], below[0, :]) - uvv + feed * (1 - u)
        dv_dt = dv * laplacian(v, above[1, :], below[1, :]) + uvv - (feed + kill) * v
        return xp.reshape(xp.stack([du_dt, dv_dt]), (-1,))

    grid = np.zeros((2, n, n))
    grid[0] = 1.0
    middle = slice(n // 2 - n // 8, n // 2 + n // 8)
    grid[0, middle, middle], grid[1, middle, middle] = 0.5, 0.25
    grid += 0.01 * np.random.default_rng(0).random(grid.shape)  # every rank draws the same
    y0 = be.asarray(grid[:, rows, :].reshape(-1))
    return SplitProblem("gray_scott", f, y0, (0.0, t_end), rows, (2, n, n), comm)
