"""Butcher tableaux of the explicit Runge-Kutta methods: data, not code.

One generic stepper (``anyxp.ode._explicit``) serves every method here. A tableau gives
the stages (``c``, ``a``), the solution weights ``b``, the error weights ``e`` (the
difference between the solution and its embedded lower-order partner, over all stages,
the FSAL stage included), and optionally ``dense``: the interpolant weights
``b_i(θ) = Σ_j dense[i][j] θ^(j+1)`` so that ``y(t0 + θh) = y0 + h Σ_i b_i(θ) k_i``.

The stiff methods are data too: a Rosenbrock method (``RosenbrockTableau``) and an
ESDIRK method (``ESDIRKTableau``), each served by one generic stepper in
``anyxp.ode._implicit``.

Sources: Dormand & Prince (1980) with Shampine's (1986) dense output, as tabulated by
Hairer, Nørsett & Wanner; DOP853 (Hairer, Nørsett & Wanner I, II.10) with the
coefficients of Hairer's code; Tsitouras (2011), with the interpolant of the same paper;
Steinebach (2023) for Rodas5P, in the transformed variables of Hairer & Wanner (II, IV.7)
as OrdinaryDiffEq.jl tabulates them; Kværnø (2004) for Kvaerno5, with the stage
predictors tabulated by OrdinaryDiffEq.jl and diffrax.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DOP853",
    "DOPRI5",
    "KVAERNO5",
    "RK4",
    "RODAS5P",
    "STIFF_TABLEAUX",
    "TABLEAUX",
    "TSIT5",
    "ESDIRKTableau",
    "RosenbrockTableau",
    "Tableau",
]


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method.

    Two optional extensions serve Dormand & Prince's 8(5,3) pair: ``e3``, a second (3rd
    order) error estimate that the error norm blends with ``e`` as Hairer's DOP853 does;
    and an interpolant from ``extra_c``/``extra_a`` (stages computed only when a step is
    interpolated) with ``extra_dense``, the weights of its four highest coefficients.
    """

    name: str
    order: int
    error_order: int | None
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    e: tuple[float, ...] | None = None
    dense: tuple[tuple[float, ...], ...] | None = None
    fsal: bool = False
    e3: tuple[float, ...] | None = None
    extra_c: tuple[float, ...] | None = None
    extra_a: tuple[tuple[float, ...], ...] | None = None
    extra_dense: tuple[tuple[float, ...], ...] | None = None

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def has_dense(self) -> bool:
        """Whether the method has an interpolant (else ``t_eval`` is linear between steps)."""
        return self.dense is not None or self.extra_dense is not None

    @property
    def stiffness_stage(self) -> int | None:
        """The last stage taken at the step's end (``c = 1``) before ``f(t + h, y_new)``.

        Hairer's stiffness test compares the two evaluations of ``f`` at the step's end:
        ``|f(y_new) - k_s| / |y_new - y_s|`` estimates the dominant eigenvalue. ``None``
        for a method without such a stage (or a fixed step).
        """
        last = self.stages - 1 if self.fsal else self.stages
        found = [i for i in range(1, last) if self.c[i] == 1.0]
        return found[-1] if found and self.error_order is not None else None

    @property
    def stability_boundary(self) -> float:
        """How far the stability region reaches along the negative real axis (``|h·λ|``).

        Found from the stability polynomial ``R(z) = 1 + z bᵀ(I - zA)⁻¹ 1`` (DOPRI5: 3.31,
        DOP853: 6.07): a step with ``|h·λ|`` beyond it is held back by stability, not by
        accuracy.
        """
        return _real_stability_boundary(self.a, self.b)


@functools.cache
def _real_stability_boundary(a: tuple[tuple[float, ...], ...], b: tuple[float, ...]) -> float:
    s = len(b)
    A = np.zeros((s, s))
    for i, row in enumerate(a):
        A[i, : len(row)] = row
    bv, ones = np.asarray(b), np.ones(s)

    def growth(x: float) -> float:  # |R(-x)|
        return float(abs(1.0 - x * bv @ np.linalg.solve(np.eye(s) + x * A, ones)))

    x = 1e-3
    while growth(x) <= 1.0 and x < 100.0:
        x += 1e-2
    lo, hi = x - 1e-2, x
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if growth(mid) <= 1.0 else (lo, mid)
    return float(lo)


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

# Dormand & Prince's DOP853 as Hairer's code (and scipy) tabulate it: 12 stages and the
# FSAL stage, a 5th- and a 3rd-order error estimate, and a 7th-order interpolant that
# needs three more stages.
_D8_B = (
    0.054293734116568765,
    0.0,
    0.0,
    0.0,
    0.0,
    4.450312892752409,
    1.8915178993145003,
    -5.801203960010585,
    0.3111643669578199,
    -0.1521609496625161,
    0.20136540080403034,
    0.04471061572777259,
)

DOP853 = Tableau(
    name="dop853",
    order=8,
    error_order=7,
    c=(
        *(
            0.0,
            0.05260015195876773,
            0.0789002279381516,
            0.1183503419072274,
            0.2816496580927726,
            0.3333333333333333,
            0.25,
            0.3076923076923077,
            0.6512820512820513,
            0.6,
            0.8571428571428571,
            1.0,
        ),
        1.0,
    ),
    a=(
        (),
        (0.05260015195876773,),
        (0.0197250569845379, 0.0591751709536137),
        (0.02958758547680685, 0.0, 0.08876275643042054),
        (0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792),
        (0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242),
        (0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125),
        (
            0.03709200011850479,
            0.0,
            0.0,
            0.17038392571223998,
            0.10726203044637328,
            -0.015319437748624402,
            0.008273789163814023,
        ),
        (
            0.6241109587160757,
            0.0,
            0.0,
            -3.3608926294469414,
            -0.868219346841726,
            27.59209969944671,
            20.154067550477894,
            -43.48988418106996,
        ),
        (
            0.47766253643826434,
            0.0,
            0.0,
            -2.4881146199716677,
            -0.590290826836843,
            21.230051448181193,
            15.279233632882423,
            -33.28821096898486,
            -0.020331201708508627,
        ),
        (
            -0.9371424300859873,
            0.0,
            0.0,
            5.186372428844064,
            1.0914373489967295,
            -8.149787010746927,
            -18.52006565999696,
            22.739487099350505,
            2.4936055526796523,
            -3.0467644718982196,
        ),
        (
            2.273310147516538,
            0.0,
            0.0,
            -10.53449546673725,
            -2.0008720582248625,
            -17.9589318631188,
            27.94888452941996,
            -2.8589982771350235,
            -8.87285693353063,
            12.360567175794303,
            0.6433927460157636,
        ),
        _D8_B,
    ),
    b=(*_D8_B, 0.0),
    e=(
        0.01312004499419488,
        0.0,
        0.0,
        0.0,
        0.0,
        -1.2251564463762044,
        -0.4957589496572502,
        1.6643771824549864,
        -0.35032884874997366,
        0.3341791187130175,
        0.08192320648511571,
        -0.022355307863886294,
        0.0,
    ),
    e3=(
        -0.18980075407240762,
        0.0,
        0.0,
        0.0,
        0.0,
        4.450312892752409,
        1.8915178993145003,
        -5.801203960010585,
        -0.4226823213237919,
        -0.1521609496625161,
        0.20136540080403034,
        0.02265179219836082,
        0.0,
    ),
    fsal=True,
    extra_c=(0.1, 0.2, 0.7777777777777778),
    extra_a=(
        (
            0.056167502283047954,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.25350021021662483,
            -0.2462390374708025,
            -0.12419142326381637,
            0.15329179827876568,
            0.00820105229563469,
            0.007567897660545699,
            -0.008298,
        ),
        (
            0.03183464816350214,
            0.0,
            0.0,
            0.0,
            0.0,
            0.028300909672366776,
            0.053541988307438566,
            -0.05492374857139099,
            0.0,
            0.0,
            -0.00010834732869724932,
            0.0003825710908356584,
            -0.00034046500868740456,
            0.1413124436746325,
        ),
        (
            -0.42889630158379194,
            0.0,
            0.0,
            0.0,
            0.0,
            -4.697621415361164,
            7.683421196062599,
            4.06898981839711,
            0.3567271874552811,
            0.0,
            0.0,
            0.0,
            -0.0013990241651590145,
            2.9475147891527724,
            -9.15095847217987,
        ),
    ),
    extra_dense=(
        (
            -8.428938276109013,
            0.0,
            0.0,
            0.0,
            0.0,
            0.5667149535193777,
            -3.0689499459498917,
            2.38466765651207,
            2.117034582445028,
            -0.871391583777973,
            2.2404374302607883,
            0.6315787787694688,
            -0.08899033645133331,
            18.148505520854727,
            -9.194632392478356,
            -4.436036387594894,
        ),
        (
            10.427508642579134,
            0.0,
            0.0,
            0.0,
            0.0,
            242.28349177525817,
            165.20045171727028,
            -374.5467547226902,
            -22.113666853125306,
            7.733432668472264,
            -30.674084731089398,
            -9.332130526430229,
            15.697238121770845,
            -31.139403219565178,
            -9.35292435884448,
            35.81684148639408,
        ),
        (
            19.985053242002433,
            0.0,
            0.0,
            0.0,
            0.0,
            -387.0373087493518,
            -189.17813819516758,
            527.8081592054236,
            -11.57390253995963,
            6.8812326946963,
            -1.0006050966910838,
            0.7777137798053443,
            -2.778205752353508,
            -60.19669523126412,
            84.32040550667716,
            11.99229113618279,
        ),
        (
            -25.69393346270375,
            0.0,
            0.0,
            0.0,
            0.0,
            -154.18974869023643,
            -231.5293791760455,
            357.6391179106141,
            93.40532418362432,
            -37.45832313645163,
            104.0996495089623,
            29.8402934266605,
            -43.53345659001114,
            96.32455395918828,
            -39.17726167561544,
            -149.72683625798564,
        ),
    ),
)


RK4 = Tableau(
    name="rk4",
    order=4,
    error_order=None,
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
)

TABLEAUX = {t.name: t for t in (TSIT5, DOPRI5, DOP853, RK4)}


@dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in Hairer & Wanner's transformed variables.

    With ``W = I/(h·gamma) - J``, stage ``i`` solves
    ``W k_i = f(t + c_i h, y + Σ_j a_ij k_j) + Σ_j (C_ij / h) k_j + h d_i ∂f/∂t``;
    the step is ``y + Σ_i m_i k_i`` and its error estimate ``Σ_i e_i k_i``. ``dense``
    holds the weights of the interpolant's three polynomial coefficients
    ``κ_r = Σ_i dense[r][i] k_i``:
    ``y(θ) = (1-θ) y0 + θ (y1 + (1-θ)(κ_1 + θ (κ_2 + θ κ_3)))``.
    """

    name: str
    order: int
    error_order: int
    gamma: float
    a: tuple[tuple[float, ...], ...]
    C: tuple[tuple[float, ...], ...]
    c: tuple[float, ...]
    d: tuple[float, ...]
    m: tuple[float, ...]
    e: tuple[float, ...]
    dense: tuple[tuple[float, ...], ...]

    has_dense = True  # its own interpolant (Rosenbrock) or cubic Hermite (ESDIRK)

    @property
    def stages(self) -> int:
        return len(self.c)


_R5P_A6 = (
    -7.502846399306121,
    2.561846144803919,
    -11.627539656261098,
    -0.18268767659942256,
    0.030198172008377946,
)

RODAS5P = RosenbrockTableau(
    name="rodas5p",
    order=5,
    error_order=4,
    gamma=0.21193756319429014,
    a=(
        (),
        (3.0,),
        (2.849394379747939, 0.45842242204463923),
        (-6.954028509809101, 2.489845061869568, -10.358996098473584),
        (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
        _R5P_A6,
        (*_R5P_A6, 1.0),  # stages 7 and 8 add the previous stage to the last state
        (*_R5P_A6, 1.0, 1.0),
    ),
    C=(
        (),
        (-14.155112264123755,),
        (-17.97296035885952, -2.859693295451294),
        (147.12150275711716, -1.41221402718213, 71.68940251302358),
        (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
        (
            24.854864614690072,
            -3.0009227002832186,
            47.4931110020768,
            5.5814197821558125,
            -0.6610691825249471,
        ),
        (
            30.91273214028599,
            -3.1208243349937974,
            77.79954646070892,
            34.28646028294783,
            -19.097331116725623,
            -28.087943162872662,
        ),
        (
            37.80277123390563,
            -3.2571969029072276,
            112.26918849496327,
            66.9347231244047,
            -40.06618937091002,
            -54.66780262877968,
            -9.48861652309627,
        ),
    ),
    c=(
        0.0,
        0.6358126895828704,
        0.4095798393397535,
        0.9769306725060716,
        0.4288403609558664,
        1.0,
        1.0,
        1.0,
    ),
    d=(
        0.21193756319429014,
        -0.42387512638858027,
        -0.3384627126235924,
        1.8046452872882734,
        2.325825639765069,
        0.0,
        0.0,
        0.0,
    ),
    m=(*_R5P_A6, 1.0, 1.0, 1.0),
    e=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    dense=(
        (
            25.948786856663858,
            -2.5579724845846235,
            10.433815404888879,
            -2.3679251022685204,
            0.524948541321073,
            1.1241088310450404,
            0.4272876194431874,
            -0.17202221070155493,
        ),
        (
            -9.91568850695171,
            -0.9689944594115154,
            3.0438037242978453,
            -24.495224566215796,
            20.176138334709044,
            15.98066361424651,
            -6.789040303419874,
            -6.710236069923372,
        ),
        (
            11.419903575922262,
            2.8879645146136994,
            72.92137995996029,
            80.12511834622643,
            -52.072871366152654,
            -59.78993625266729,
            -0.15582684282751913,
            4.883087185713722,
        ),
    ),
)


@dataclass(frozen=True)
class ESDIRKTableau:
    """A singly diagonally implicit Runge-Kutta method with an explicit first stage.

    Stage ``i > 1`` solves ``z_i = y + h Σ_{j<i} a_ij k_j + h gamma f(t + c_i h, z_i)`` by
    Newton's method from the predictor ``y + h Σ_j predictor[i][j] k_j``. The method is
    stiffly accurate (the step is the last stage); ``e`` weighs the stages' derivatives
    into the difference from the embedded solution.
    """

    name: str
    order: int
    error_order: int
    gamma: float
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    predictor: tuple[tuple[float, ...], ...]
    e: tuple[float, ...]

    has_dense = True  # its own interpolant (Rosenbrock) or cubic Hermite (ESDIRK)

    @property
    def stages(self) -> int:
        return len(self.c)


_KV_G = 0.26
_KV_A6 = (
    0.13855640231268224,
    0.0,
    -0.04245337201752043,
    0.02446657898003141,
    0.61943039072480676,
)
_KV_A7 = (
    0.13659751177640291,
    0.0,
    -0.05496908796538376,
    -0.04118626728321046,
    0.62993304899016403,
    0.06962479448202728,
)

KVAERNO5 = ESDIRKTableau(
    name="kvaerno5",
    order=5,
    error_order=4,
    gamma=_KV_G,
    c=(0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0),
    a=(
        (),
        (_KV_G,),
        (0.13, 0.84033320996790809),
        (0.22371961478320505, 0.47675532319799699, -0.06470895363112615),
        (0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998),
        _KV_A6,
        _KV_A7,
    ),
    predictor=(
        (),
        (1.0,),
        (-1.366025403784441, 2.3660254037844357),
        (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
        (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
        (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
        (*_KV_A6, _KV_G),
    ),
    e=(*tuple(a7 - a6 for a7, a6 in zip(_KV_A7, (*_KV_A6, _KV_G), strict=True)), _KV_G),
)

STIFF_TABLEAUX: dict[str, RosenbrockTableau | ESDIRKTableau] = {
    t.name: t for t in (RODAS5P, KVAERNO5)
}
