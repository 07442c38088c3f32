"""Butcher tableaux of the explicit Runge-Kutta methods: data, not code.

One generic stepper (``anyxp.ode._explicit``) serves every method here. A tableau gives
the stages (``c``, ``a``), the solution weights ``b``, the error weights ``e`` (the
difference between the solution and its embedded lower-order partner, over all stages,
the FSAL stage included), and optionally ``dense``: the interpolant weights
``b_i(θ) = Σ_j dense[i][j] θ^(j+1)`` so that ``y(t0 + θh) = y0 + h Σ_i b_i(θ) k_i``.

Sources: Dormand & Prince (1980) with Shampine's (1986) dense output, as tabulated by
Hairer, Nørsett & Wanner; Tsitouras (2011), with the interpolant of the same paper.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOPRI5", "RK4", "TABLEAUX", "TSIT5", "Tableau"]


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method."""

    name: str
    order: int
    error_order: int | None
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...] | None = None
    dense: tuple[tuple[float, ...], ...] | None = None
    fsal: bool = False

    @property
    def stages(self) -> int:
        return len(self.c)


_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)

DOPRI5 = Tableau(
    name="dopri5",
    order=5,
    error_order=4,
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=_DP_A,
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0),
    e=(71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40),
    dense=(
        (1.0, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432),
        (0.0, 0.0, 0.0, 0.0),
        (0.0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799),
        (0.0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072),
        (0.0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632),
        (0.0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844),
        (0.0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423),
    ),
    fsal=True,
)

_TS_B = (
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
)
_TS_BHAT = (
    0.09468075576583945,
    0.009183565540343254,
    0.4877705284247616,
    1.234297566930479,
    -2.7077123499835256,
    1.866628418170587,
    1 / 66,
)

TSIT5 = Tableau(
    name="tsit5",
    order=5,
    error_order=4,
    c=(0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0),
    a=(
        (),
        (0.161,),
        (-0.008480655492356989, 0.335480655492357),
        (2.8971530571054935, -6.359448489975075, 4.3622954328695815),
        (5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525),
        (
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ),
        _TS_B[:6],
    ),
    b=_TS_B,
    e=tuple(b - bh for b, bh in zip(_TS_B, _TS_BHAT, strict=True)),
    dense=(
        (1.0, -2.763706197274826, 2.9132554618219126, -1.0530884977290216),
        (0.0, 0.1317, -0.2234, 0.1017),
        (0.0, 3.930296236894751, -5.941033872131505, 2.490627285651253),
        (0.0, -12.411077166933676, 30.338188630282318, -16.548102889244902),
        (0.0, 37.50931341651104, -88.1789048947664, 47.37952196281928),
        (0.0, -27.896526289197286, 65.09189467479368, -34.87065786149661),
        (0.0, 1.5, -4.0, 2.5),
    ),
    fsal=True,
)

RK4 = Tableau(
    name="rk4",
    order=4,
    error_order=None,
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
)

TABLEAUX = {t.name: t for t in (TSIT5, DOPRI5, RK4)}
