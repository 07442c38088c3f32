"""Stiff methods: one generic Rosenbrock stepper, one generic ESDIRK stepper with Newton.

Both are array-API code written once for a single state of shape (n,) and for a batch of
shape (B, n) (each row its own trajectory, time and step): ``_col`` shapes a per-row scalar
to scale rows, and every matrix product is written as a batched matrix times a column.
The Jacobian ``∂f/∂y`` comes from the user's ``jac``, else from the backend's automatic
differentiation, else from finite differences (see :func:`jacobian_source`). Each step
factors ``I - h·gamma·J`` once (``xp.linalg.inv``: the standard has no LU factorization, and one
inverse serves every stage as a matrix product).

For large states the ESDIRK stepper can instead solve its linear systems matrix-free
(``linear_solver="gmres"``, :class:`KrylovSystem`): restarted GMRES on products
``v - h·gamma·J·v``, ``J·v`` by forward-mode AD or a forward difference, so neither ``J``
nor an inverse (``n²`` numbers each) is ever held.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyxp.backend import Backend
from anyxp.ode._explicit import Attempt, _col, error_norm, once, time_dtype, weighted_sum
from anyxp.ode.tableaux import ESDIRKTableau, RosenbrockTableau

__all__ = [
    "ESDIRK",
    "LINEAR_SOLVERS",
    "DenseSystem",
    "KrylovSystem",
    "Rosenbrock",
    "jacobian_source",
]

#: The linear solvers of the ESDIRK stepper's Newton iterations.
LINEAR_SOLVERS = ("dense", "gmres")

JacobianFn = Callable[[Any, Any, Any], tuple[Any, int]]


@functools.lru_cache(maxsize=64)
def _eps(xp: Any, dtype: Any) -> float:
    # (Cached: finfo through the namespace costs ~6 µs, once a step.)
    return float(xp.finfo(time_dtype(xp, dtype)).eps)


def _is_linalg_error(exc: Exception) -> bool:
    # numpy, cupy and array-api-strict name it LinAlgError, torch _LinAlgError: unrelated
    # classes of one name.
    return any(cls.__name__.endswith("LinAlgError") for cls in type(exc).__mro__)


def inverse_or_nan(xp: Any, M: Any) -> Any:
    """``M⁻¹`` (batched over leading axes), with NaN where a matrix is singular.

    Libraries disagree on a singular matrix: numpy and torch raise, JAX returns inf and
    NaN. NaN everywhere makes the step's error non-finite, so every backend rejects the
    step and retries it shorter, where ``I - h·gamma·J`` is invertible again.
    """
    try:
        return xp.linalg.inv(M)
    except Exception as exc:
        if not _is_linalg_error(exc):
            raise
    if M.ndim == 2:
        return xp.full_like(M, xp.nan)
    return xp.stack([inverse_or_nan(xp, M[i, ...]) for i in range(M.shape[0])])


def jacobian_source(
    be: Backend,
    f: Callable[[Any, Any], Any],
    jac: Callable[[Any, Any], Any] | None,
    dtype: Any,
    *,
    batched: bool,
    atol: float = 1e-5,
) -> tuple[JacobianFn, str]:
    """A function ``(t, y, f(t, y)) -> (J, f-evaluations used)``, and where J comes from.

    ``J`` has shape (n, n), or (B, n, n) for a batch. Automatic differentiation takes the
    Jacobian of the batch's column sums: trajectories are independent, so row ``b`` of
    ``∂(Σ_b f_b)/∂y`` is trajectory ``b``'s own Jacobian, at the cost of one Jacobian of an
    n-vector whatever the batch size.
    """
    xp = be.xp
    if jac is not None:
        return (lambda t, y, f0: (jac(t, y), 0)), "jac"
    # A complex state's f is taken to be holomorphic (as scipy's Radau and BDF do): its
    # complex derivative is what finite differences along real increments give.
    if "ad.jacobian" in be.capabilities and not xp.isdtype(dtype, "complex floating"):
        ad = be.ad
        if batched:

            def ad_jac(t: Any, y: Any, f0: Any) -> tuple[Any, int]:
                J = ad.jacobian(lambda v: xp.sum(f(t, v), axis=0))(y)  # (n, B, n)
                return xp.permute_dims(J, (1, 0, 2)), 0

        else:

            def ad_jac(t: Any, y: Any, f0: Any) -> tuple[Any, int]:
                return ad.jacobian(lambda v: f(t, v))(y), 0

        return ad_jac, "automatic differentiation"
    eps = _eps(xp, dtype)
    # Hairer's increment sqrt(ε·max(floor, |y|)), with his floor 1e-5 lowered to atol:
    # components far below 1e-5 that the user resolves must not be swamped by it.
    floor = min(1e-5, atol) if atol > 0 else 1e-5

    def fd_jac(t: Any, y: Any, f0: Any) -> tuple[Any, int]:
        # Forward differences, one column per state.
        n = y.shape[-1]
        delta = xp.sqrt(eps * xp.maximum(xp.abs(y), floor))
        eye = xp.eye(n, dtype=dtype, device=be.device)
        columns = []
        for j in range(n):
            dj = delta[..., j]
            col = (f(t, y + _col(dj, batched) * eye[j, :]) - f0) / _col(dj, batched)
            columns.append(col)
        return xp.stack(columns, axis=-1), n

    return fd_jac, "finite differences"


def _matvec(A: Any, v: Any) -> Any:
    """``A v`` for a matrix and a vector, or row by row for a batch of each."""
    return (A @ v[..., None])[..., 0]


@dataclass(frozen=True, kw_only=True)
class _Implicit:
    """What both stiff steppers share: the backend, ``f``, the Jacobian, the shapes."""

    be: Backend
    f: Callable[[Any, Any], Any]
    dtype: Any
    jac: JacobianFn
    batched: bool = False

    @property
    def adaptive(self) -> bool:
        return True

    @property
    def has_dense(self) -> bool:
        return True

    @property
    def predictive(self) -> bool:
        return True  # Gustafsson's controller, as RADAU5 (see step_factor)

    nonfinite_err = False  # see Stepper

    @property
    def stiffness_bound(self) -> float | None:
        return None  # a stiff method has no stiffness to detect

    def stiffness(
        self, hs: Any, y: Any, y_new: Any, f_new: Any, record: Any, comm: Any = None
    ) -> Any:
        raise NotImplementedError("stiff methods have no stiffness test")

    def record_rows(self, record: Any) -> tuple[Any, ...]:
        """The record's arrays, each ``(B, n)`` already."""
        return tuple(record)

    def from_rows(self, rows: tuple[Any, ...]) -> Any:
        return list(rows)

    def error_norm(
        self, err: Any, y: Any, y_new: Any, rtol: float, atol: float, comm: Any = None
    ) -> Any:
        """The RMS error scaled by the tolerances (per row of a batch)."""
        return error_norm(self.be.xp, err, y, y_new, rtol, atol, comm)

    def iteration_matrix_inverse(self, J: Any, hg: Any) -> Any:
        """``(I - h·gamma·J)^{-1}``, for one state or for every row of a batch."""
        xp, n = self.be.xp, J.shape[-1]
        eye = self._eyes.get(n)
        if eye is None:
            eye = xp.eye(n, dtype=self.dtype, device=self.be.device)
            # Eager: made once a solve, not once a step. (A traced one is a tracer of the
            # trace that made it: no other trace may use it.)
            if not getattr(self.be.control, "compiled", False):
                self._eyes[n] = eye
        hgm = hg[:, None, None] if self.batched else hg
        return inverse_or_nan(xp, eye - hgm * J)

    @once
    def _eyes(self) -> dict[int, Any]:
        return {}

    def safe(self, hs: Any) -> Any:
        """``hs`` to divide by: a finished row of a batch tries a step of 0 (masked out)."""
        return self.be.xp.where(hs == 0, 1.0, hs) if self.batched else hs

    def time_derivative(self, t: Any, y: Any, f0: Any, hs: Any) -> Any:
        """``∂f/∂t`` by a difference into the step (one evaluation of ``f``).

        The increment goes the way of the step and no further than its end, so ``f`` is
        never evaluated outside the interval.
        """
        xp = self.be.xp
        root_eps = math.sqrt(_eps(xp, self.dtype))
        if self.batched:
            size = xp.minimum(root_eps * xp.maximum(xp.abs(t), xp.abs(hs)), xp.abs(hs))
            dt = xp.where(hs < 0, -size, size)
            t_dt = t + dt
            dt = xp.where(t_dt == t, 1.0, t_dt - t)  # a finished row (hs = 0) is masked out
        else:
            size = min(root_eps * max(abs(t), abs(hs)), abs(hs))
            t_dt = t + math.copysign(size, hs)
            dt = t_dt - t  # the increment as represented
        return (self.f(t_dt, y) - f0) / _col(dt, self.batched)

    def _hermite(self, theta: Any, hs: Any, y: Any, y_new: Any, f0: Any, f1: Any) -> Any:
        """Cubic Hermite interpolation on a step from the end values and slopes."""
        th = theta[..., None]
        h = hs[None, :, None] if self.batched else hs
        h00 = (1 + 2 * th) * (1 - th) ** 2
        h10 = th * (1 - th) ** 2
        h01 = th**2 * (3 - 2 * th)
        h11 = th**2 * (th - 1)
        return (
            h00 * y[None, ...]
            + h01 * y_new[None, ...]
            + h * (h10 * f0[None, ...] + h11 * f1[None, ...])
        )


@dataclass(frozen=True, kw_only=True)
class Rosenbrock(_Implicit):
    """A Rosenbrock method (``RosenbrockTableau``): linearly implicit, no iterations."""

    tab: RosenbrockTableau

    @property
    def order(self) -> int:
        return self.tab.error_order

    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        """One step: ``s`` linear solves with one matrix, ``s`` evaluations of ``f``."""
        tab, b = self.tab, self.batched
        if not b and self.inplace:
            return self._attempt_in_buffer(t, y, f0, hs)
        J, nfev = self.jac(t, y, f0)
        ft = self.time_derivative(t, y, f0, hs)
        hg = tab.gamma * hs
        inv = self.iteration_matrix_inverse(J, hg)
        h = _col(self.safe(hs), b)
        ks: list[Any] = []
        for i in range(tab.stages):
            if i == 0:
                rhs = f0
            else:
                incr = weighted_sum(tab.a[i], ks)
                rhs = self.f(t + tab.c[i] * hs, y if incr is None else y + incr)
            coupling = weighted_sum(tab.C[i], ks)
            if coupling is not None:
                rhs = rhs + coupling / h
            if tab.d[i] != 0.0:
                rhs = rhs + (tab.d[i] * h) * ft
            # (I/(h·gamma) - J) k = rhs  ⇔  k = h·gamma (I - h·gamma·J)^{-1} rhs
            ks.append(_col(hg, b) * _matvec(inv, rhs))
        y_new = y + weighted_sum(tab.m, ks)
        err = weighted_sum(tab.e, ks)
        f_new = self.f(t + hs, y_new)
        y_new, f_new = self.be.materialize(y_new, f_new)
        dense = [weighted_sum(row, ks) for row in tab.dense]
        counts = {"nfev": nfev + tab.stages + 1, "njev": 1, "nlu": 1}
        return Attempt(y_new, f_new, err, None, dense, counts)

    @once
    def inplace(self) -> bool:
        """Whether stages go into one preallocated matrix (``arrays.inplace``), each
        stage's sums one product with it (as the explicit steppers do)."""
        return "arrays.inplace" in self.be.capabilities and not self.be.lazy

    @once
    def coefficients(self) -> tuple[Any, Any, Any, Any]:
        """Arrays of the state's dtype, made once, for stages written into the rows of one
        matrix ``K`` whose extra last row is ``∂f/∂t``. Stage ``i``'s weights of ``K``
        are ``(2, s + 1)``: a row for its argument, a row for its right-hand side. They
        come in three parts, by how a step scales them: ``a`` (as they are), ``C`` (by
        ``1/h``) and ``d`` (by ``h``), each ``(s, 2, s + 1)``; then ``m``, ``e`` and the
        interpolant's three weights as one ``(5, s + 1)`` matrix.
        """
        xp, tab, s = self.be.xp, self.tab, self.tab.stages
        zero = [0.0] * (s + 1)

        def row(r: tuple[float, ...]) -> list[float]:
            return list(r) + [0.0] * (s + 1 - len(r))

        parts = (
            [[row(tab.a[i]), zero] for i in range(s)],
            [[zero, row(tab.C[i])] for i in range(s)],
            [[zero, [0.0] * s + [tab.d[i]]] for i in range(s)],
            [row(r) for r in (tab.m, tab.e, *tab.dense)],
        )
        dtype, dev = self.dtype, self.be.device
        a, C, d, ends = (xp.asarray(p, dtype=dtype, device=dev) for p in parts)
        return a, C, d, ends

    def _attempt_in_buffer(self, t: Any, y: Any, f0: Any, hs: Any) -> Attempt:
        """:meth:`attempt` for one state, the stages written into the rows of one matrix.

        ``h·gamma`` is folded into the inverse and ``1/h`` (``C``) and ``h`` (``d``) into
        the weights once a step, so a stage is one evaluation of ``f``, one product of
        its weights with the stages so far (argument and right-hand side together) and
        one with the inverse.
        """
        xp, tab, s = self.be.xp, self.tab, self.tab.stages
        a, C, d, ends = self.coefficients
        J, nfev = self.jac(t, y, f0)
        hg = tab.gamma * hs
        M = hg * self.iteration_matrix_inverse(J, hg)
        W = a + C / hs + d * hs
        K = xp.zeros((s + 1, *y.shape), dtype=y.dtype, device=self.be.device)
        K[s, ...] = self.time_derivative(t, y, f0, hs)
        for i in range(s):
            sums = W[i, ...] @ K  # (2, n): the argument's increment, the rhs's coupling
            rhs = f0 if i == 0 else self.f(t + tab.c[i] * hs, y + sums[0, ...])
            K[i, ...] = M @ (rhs + sums[1, ...])
        sums = ends @ K  # the step, its error and the interpolant's three coefficients
        y_new = y + sums[0, ...]
        f_new = self.f(t + hs, y_new)
        counts = {"nfev": nfev + tab.stages + 1, "njev": 1, "nlu": 1}
        return Attempt(y_new, f_new, sums[1, ...], None, [sums[r, ...] for r in (2, 3, 4)], counts)

    def interpolate(self, theta: Any, hs: Any, y: Any, y_new: Any, record: Any) -> Any:
        """Rodas's own interpolant of order ``order - 1``."""
        k1, k2, k3 = (r[None, ...] for r in record)
        th = theta[..., None]
        return (1 - th) * y[None, ...] + th * (
            y_new[None, ...] + (1 - th) * (k1 + th * (k2 + th * k3))
        )


NEWTON_MAX_ITER = 10
#: The converged correction, as a fraction of the error tolerance (SUNDIALS' ``nlscoef``:
#: a tenth of what a step may commit; 0.01 took 13% more evaluations of f on the Bari
#: problems at equal error, benchmarks/results/ode_stiff.md).
NEWTON_TOL = 0.1
#: GMRES's target for a linear residual, as a fraction of the Newton tolerance, both in
#: the error norm (SUNDIALS' default ``epslin``).
KRYLOV_FORCING = 0.05
#: GMRES's Krylov dimension before a restart, and the most products ``J·v`` per solve.
KRYLOV_RESTART, KRYLOV_MAXITER = 30, 150

#: ``(t, y, h·gamma, v) -> (I - h·gamma·J)^{-1} v`` approximately, on the method's own
#: ``t``, ``y`` and ``h·gamma`` and on rows ``v`` ``(B, n)`` (``B = 1`` for one state).
Preconditioner = Callable[[Any, Any, Any, Any], Any]


@dataclass(frozen=True)
class DenseSystem:
    """``I - h·gamma·J`` formed and inverted once a step: each solve a matrix product."""

    inv: Any

    def solve(self, rhs: Any, active: Any = None) -> tuple[Any, Any, Any]:
        """``(I - h·gamma·J)^{-1} rhs``; whether it succeeded (``None``: always); the
        evaluations of ``f`` it cost."""
        return _matvec(self.inv, rhs), None, 0


@dataclass(frozen=True)
class KrylovSystem:
    """``(I - h·gamma·J) x = rhs`` by GMRES on products, ``J`` at the step's start.

    The system is solved in the error norm's units (rows divided by ``scale``, the
    tolerance per component), to a residual of ``KRYLOV_FORCING`` times the Newton
    tolerance in that norm: where ``J``'s symmetric part is negative semi-definite
    (dissipative problems) ``‖(I - h·gamma·J)^{-1}‖₂ ≤ 1``, so the solution is as accurate
    as the residual, far inside what the Newton iteration's convergence test resolves. A
    row whose GMRES does not reach it fails, which the step treats as a diverged Newton
    iteration (rejected, retried at half the size).
    """

    be: Backend
    batched: bool
    product: Callable[[Any], Any]  # rows u -> W J W^{-1} u, W = diag(1/scale)
    hg: Any  # (B,) per row
    scale: Any  # (B, n), positive
    target: float  # the residual's 2-norm per row, in units of scale
    precond: Callable[[Any], Any] | None
    counts_fev: bool  # whether a product costs an evaluation of f (finite differences)
    rank_rtol: float | None

    def matvec(self, u: Any) -> Any:
        """``W (I - h·gamma·J) W^{-1} u`` with ``W = diag(1/scale)``."""
        return u - self.hg[:, None] * self.product(u)

    def solve(self, rhs: Any, active: Any = None) -> tuple[Any, Any, Any]:
        from anyxp.optimize._gmres import gmres_rows
        from anyxp.optimize._result import CONVERGED

        xp = self.be.xp
        rows = rhs if self.batched else rhs[None, :]
        scale, precond = self.scale, self.precond
        scaled = None
        if precond is not None:
            scaled = lambda u: precond(u * scale) / scale  # noqa: E731
        if active is not None and not self.batched:
            active = xp.reshape(active, (1,))
        res = gmres_rows(
            self.be, self.matvec, rows / scale, precond=scaled, tol=0.0, atol=self.target,
            restart=min(KRYLOV_RESTART, rows.shape[1]), maxiter=KRYLOV_MAXITER, active=active,
            true_residual=False, rank_rtol=self.rank_rtol,
        )  # fmt: skip
        x, ok = res["x"] * scale, res["status"] == CONVERGED
        nfev = res["matvecs"] if self.counts_fev else 0
        return (x, ok, nfev) if self.batched else (x[0, :], ok[0], nfev)


@dataclass(frozen=True, kw_only=True)
class ESDIRK(_Implicit):
    """An ESDIRK method (``ESDIRKTableau``) with a simplified Newton iteration per stage.

    The iteration matrix ``I - h·gamma·J`` is formed once a step (or, with
    ``linear_solver="gmres"``, never: its systems are solved by GMRES on products with
    ``J`` at the step's start, see :class:`KrylovSystem`). A stage has converged when the
    next correction is predicted to be below ``newton_tol`` in the error norm (the
    rate-based test of Hairer & Wanner, as scipy's BDF and Radau use it); a stage that
    diverges or needs more than ``NEWTON_MAX_ITER`` iterations rejects the step, which is
    retried at half the size.
    """

    tab: ESDIRKTableau
    rtol: Any  # a float or one tolerance per component
    atol: Any
    min_rtol: float  # the tightest of rtol, for the Newton tolerance
    #: Stages whose derivatives are exact (for sensitivities): see :meth:`_exact`.
    exact_stages: bool = False
    #: ``"dense"`` or ``"gmres"`` (see :data:`LINEAR_SOLVERS`).
    linear_solver: str = "dense"
    #: Products ``J·v`` for GMRES: ``"jac"`` (the user's Jacobian, formed once a step),
    #: ``"ad"`` (forward-mode AD) or ``"fd"`` (a forward difference: one evaluation of f).
    product_mode: str = "fd"
    preconditioner: Preconditioner | None = None

    @property
    def order(self) -> int:
        return self.tab.error_order

    def newton_tol(self) -> float:
        return max(10 * _eps(self.be.xp, self.dtype) / self.min_rtol, NEWTON_TOL)

    def system(
        self, t: Any, y: Any, f0: Any, hg: Any, scale: Any
    ) -> tuple[DenseSystem | KrylovSystem, dict[str, Any]]:
        """The step's linear solver for ``I - h·gamma·J`` at ``(t, y)``, and what forming
        it cost (``nfev``, ``njev``, ``nlu``)."""
        if self.linear_solver == "dense":
            J, nfev = self.jac(t, y, f0)
            inv = self.iteration_matrix_inverse(J, hg)
            return DenseSystem(inv), {"nfev": nfev, "njev": 1, "nlu": 1}
        from anyxp.optimize._newton_krylov import jacobian_product

        xp, b = self.be.xp, self.batched
        y_rows, f_rows = (y, f0) if b else (y[None, :], f0[None, :])
        scale_rows = scale if b else scale[None, :]
        scale_rows = xp.where(scale_rows > 0, scale_rows, 1.0)
        njev = 0
        # Products in the error norm's units, u = W v: a difference there steps each
        # component in proportion to its tolerance, not to the largest component.
        if self.product_mode == "jac":
            J, _ = self.jac(t, y, f0)
            J_rows = J if b else J[None, ...]
            product = lambda u: _matvec(J_rows, u * scale_rows) / scale_rows  # noqa: E731
            njev = 1
        else:
            F = (lambda v: self.f(t, v)) if b else (lambda v: self.f(t, v[0, :])[None, :])
            product = jacobian_product(
                self.be, lambda u: F(u * scale_rows) / scale_rows, y_rows / scale_rows,
                f_rows / scale_rows, self.product_mode,
            )  # fmt: skip
        real = time_dtype(xp, self.dtype)
        hg_rows = hg if b else xp.reshape(xp.asarray(hg, dtype=real, device=self.be.device), (1,))
        precond = None
        if self.preconditioner is not None:
            user = self.preconditioner
            precond = lambda v: user(t, y, hg, v)  # noqa: E731
        fd = self.product_mode == "fd"
        system = KrylovSystem(
            be=self.be,
            batched=b,
            product=product,
            hg=hg_rows,
            scale=scale_rows,
            target=KRYLOV_FORCING * self.newton_tol() * math.sqrt(y_rows.shape[1]),
            precond=precond,
            counts_fev=fd,
            # GMRES's default, 10 eps, also for products by differences: in the error
            # norm's units I - h·gamma·J of a stiff problem is ill-conditioned but regular
            # (1e8 on ROBER), and 10·sqrt(eps) called such systems singular (11% of them).
            rank_rtol=None,
        )
        return system, {"nfev": 0, "njev": njev, "nlu": 0}

    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        """One step: a Newton solve per implicit stage, all with one matrix."""
        xp, tab, b = self.be.xp, self.tab, self.batched
        hg = tab.gamma * hs
        scale = self.atol + self.rtol * xp.abs(y)
        system, counts = self.system(t, y, f0, hg, scale)
        h = _col(hs, b)
        newton_tol = self.newton_tol()
        hg_safe = _col(tab.gamma * self.safe(hs), b)
        ks = [f0]
        converged_all = None
        iterations: Any = 0
        real, eps = time_dtype(xp, self.dtype), _eps(xp, self.dtype)
        if b:
            eta = xp.full((y.shape[0],), xp.inf, dtype=real, device=self.be.device)
            newton = self._newton
        else:  # one trajectory on an eager backend: Python floats for the control
            eta, newton = math.inf, self._newton_one
        for i in range(1, tab.stages):
            base = y + h * weighted_sum(tab.a[i], ks)
            # The predictor extrapolates the stage derivatives to the step's end. (Read as a
            # prediction of the stage derivative itself, z = base + h·gamma·Σ pred·k, as
            # diffrax does, it needed 2-3x the Newton failures on ROBER.)
            z = y + h * weighted_sum(tab.predictor[i], ks)
            ti = t + tab.c[i] * hs
            # Hairer: distrust a tiny rate
            eta = xp.maximum(eta, eps) ** 0.8 if b else max(eta, eps) ** 0.8
            z, converged, eta, used = newton(ti, z, base, hg, system, scale, newton_tol, eta)
            iterations = iterations + used
            if not b and not converged:
                # One trajectory: the step is rejected already, its later stages would be
                # wasted evaluations (a batch, or a traced step, runs them all).
                counts = {**counts, "nfev": counts["nfev"] + iterations}
                return Attempt(y, f0, None, False, None, counts)
            if self.exact_stages:
                z = self._exact(ti, z, base, hg)
            converged_all = converged if converged_all is None else converged_all & converged
            # The stage derivative from the stage equation: no extra evaluation of f.
            ks.append((z - base) / hg_safe)
        y_new = z  # stiffly accurate: the step is the last stage
        # Shampine's filter: the raw estimate grows like hJ on stiff components.
        err, solved, products = system.solve(h * weighted_sum(tab.e, ks))
        if solved is not None:  # a filter GMRES could not solve rejects the step too
            converged_all = solved if converged_all is None else converged_all & solved
            iterations = iterations + products
        f_new = self.f(t + hs, y_new)
        y_new, f_new = self.be.materialize(y_new, f_new)
        counts = {**counts, "nfev": counts["nfev"] + iterations + 1}
        return Attempt(y_new, f_new, err, converged_all, (f0, f_new), counts)

    def interpolate(self, theta: Any, hs: Any, y: Any, y_new: Any, record: Any) -> Any:
        """Cubic Hermite interpolation (third order) from the step's ends."""
        return self._hermite(theta, hs, y, y_new, *record)

    def _exact(self, t: Any, z: Any, base: Any, hg: Any) -> Any:
        """The stage ``z`` again, now as a function of the inputs with exact derivatives.

        The simplified Newton iteration's derivatives (differentiated through its loop, with
        the Jacobian of the step's start) only approach the stage's. From the converged
        value, taken as a constant, two full Newton steps with the Jacobian at the stage
        give the stage's first and second derivatives exactly (the implicit function
        theorem: Newton's map has zero derivative at its root), at the value it had.
        """
        if self.linear_solver != "dense":
            raise NotImplementedError(
                f"derivatives of a solve with linear_solver={self.linear_solver!r} are not "
                "supported (they would differentiate through GMRES's iterations); use "
                "linear_solver='dense' (the default) for a differentiable solve"
            )
        hgc = _col(hg, self.batched)
        z = self.be.ad.stop_gradient(z)
        for _ in range(2):
            fz = self.f(t, z)
            J, _ = self.jac(t, z, fz)
            z = z - _matvec(self.iteration_matrix_inverse(J, hg), z - base - hgc * fz)
        return z

    def _newton_one(
        self,
        t: Any,
        z: Any,
        base: Any,
        hg: Any,
        system: DenseSystem | KrylovSystem,
        scale: Any,
        tol: float,
        eta: float,
    ) -> tuple[Any, bool, float, int]:
        """:meth:`_newton` for one trajectory on an eager backend: the same iteration and
        tests, with the rate, ``eta`` and the decisions as Python floats (a few array
        operations an iteration instead of some forty on 0-d arrays)."""
        xp = self.be.xp
        dz_prev, fev = math.inf, 0
        for it in range(1, NEWTON_MAX_ITER + 1):
            dz, solved, products = system.solve(z - base - hg * self.f(t, z))
            fev += int(products)
            dz_norm = float(xp.sqrt(xp.mean((xp.abs(dz) / scale) ** 2)))
            z = z - dz
            if not math.isfinite(dz_norm) or (solved is not None and not bool(solved)):
                return z, False, eta, it + fev
            if math.isfinite(dz_prev):
                rate = dz_norm / (dz_prev if dz_prev > 0 else 1.0)
                if rate >= 1.0:
                    return z, False, eta, it + fev
                eta = rate / (1.0 - min(rate, 0.99))
            if dz_norm == 0 or eta * dz_norm < tol:
                return z, True, eta, it + fev
            dz_prev = dz_norm
        return z, False, eta, NEWTON_MAX_ITER + fev

    def _newton(
        self,
        t: Any,
        z: Any,
        base: Any,
        hg: Any,
        system: DenseSystem | KrylovSystem,
        scale: Any,
        tol: float,
        eta: Any,
    ) -> tuple[Any, Any, Any, Any]:
        """Solve ``z = base + h·gamma f(t, z)`` from the guess ``z``.

        ``eta`` estimates ``rate / (1 - rate)`` (the previous stage's, ``inf`` at first):
        with it the first correction can already be judged converged. A linear solve that
        fails (GMRES short of its tolerance) counts as a divergence. Returns ``z``,
        whether it converged, the updated ``eta`` and the evaluations of ``f`` (the
        iterations', and the products' of a matrix-free solve by differences).
        """
        xp, b = self.be.xp, self.batched
        shape = (z.shape[0],) if b else ()
        false = xp.zeros(shape, dtype=xp.bool, device=self.be.device)
        big = xp.full(shape, xp.inf, dtype=time_dtype(xp, self.dtype), device=self.be.device)
        zero = xp.asarray(0, dtype=xp.int32, device=self.be.device)
        hgc = _col(hg, b)

        def cond(state: Any) -> Any:
            return xp.any(~state[1]) & (state[5] < NEWTON_MAX_ITER)

        def body(state: Any) -> Any:
            z, done, failed, dz_prev, eta, it, fev = state
            active = ~done
            dz, solved, products = system.solve(z - base - hgc * self.f(t, z), active)
            dz = -dz
            dz_norm = xp.sqrt(xp.mean((xp.abs(dz) / scale) ** 2, axis=-1))
            has_rate = xp.isfinite(dz_prev)
            rate = dz_norm / xp.where(has_rate & (dz_prev > 0), dz_prev, 1.0)
            diverged = (has_rate & (rate >= 1.0)) | ~xp.isfinite(dz_norm)
            if solved is not None:
                diverged = diverged | ~solved
            eta = xp.where(has_rate & (rate < 1.0), rate / (1.0 - xp.minimum(rate, 0.99)), eta)
            converged = (dz_norm == 0) | (eta * dz_norm < tol)
            z = xp.where(_col(active, b), z + dz, z)
            failed = failed | (active & diverged)
            done = done | (active & (converged | diverged))
            return z, done, failed, xp.where(active, dz_norm, dz_prev), eta, it + 1, fev + products

        state = (z, false, false, big, eta, zero, zero)
        z, done, failed, _, eta, it, fev = self.be.while_loop(cond, body, state)
        return z, done & ~failed, eta, it + fev
