"""Jacobian-free Newton-Krylov: Newton directions by GMRES on products ``J(x)·v``.

The Jacobian is never formed. Each product ``J(x)·v`` is a directional derivative of
``F``: by the backend's forward-mode automatic differentiation where it declares
``ad.jvp`` (exact, no evaluations of ``F`` counted), else by one forward difference
``(F(x + s·v) - F(x))/s`` with the step ``s = √ε·(1 + ‖x‖)/‖v‖`` (the step grows with ‖x‖,
so that ``x + s·v`` differs from ``x`` in about half its digits).
GMRES solves each Newton system only as far as the Eisenstat-Walker forcing term asks
(``‖F + J dx‖ ≤ η‖F‖``): loosely far from the root, tightly near it, so no product is
spent on accuracy the next Newton step would throw away.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyxp.backend import Backend
from anyxp.optimize._checks import check_choice, check_count, require, rows_function
from anyxp.optimize._gmres import gmres_rows, norm
from anyxp.optimize._newton_loop import ARMIJO_ALPHA, solve_rows
from anyxp.optimize._problem import nonlinear_problem, root_solution
from anyxp.optimize._result import BREAKDOWN, NONFINITE, RUNNING, SINGULAR, RootSolution

__all__ = ["EW_ETA0", "EW_ETA_MAX", "EW_GAMMA", "jacobian_product", "newton_krylov"]

#: Eisenstat & Walker's choice 2 (gamma = 0.9, exponent 2), from a first forcing term η₀,
#: never above η_max.
EW_GAMMA, EW_ETA0, EW_ETA_MAX = 0.9, 0.1, 0.9

Rows = Callable[[Any], Any]
JVP_MODES = ("auto", "ad", "fd")


def newton_krylov(
    F: Callable[[Any], Any],
    x0: Any,
    *,
    tol: float | None = None,
    rtol: float = 0.0,
    max_iter: int = 50,
    inner: str = "gmres",
    inner_maxiter: int | None = None,
    restart: int = 30,
    line_search: str | None = "armijo",
    jvp: str = "auto",
    preconditioner: Callable[[Any], Any] | None = None,
    batch: bool = False,
    backend: str | Backend | None = None,
) -> RootSolution:
    """Solve ``F(x) = 0`` by Jacobian-free Newton-Krylov (JFNK).

    Parameters
    ----------
    F
        The residual: takes an array shaped like ``x0`` and returns one of the same library,
        shape and dtype (compute with the namespace of its input,
        ``anyxp.backend(like=x).xp``). With ``batch=True`` it takes rows ``(B, ...)`` and
        must treat them independently: row ``b`` of ``F(x)`` depends on row ``b`` of ``x``.
    x0
        The starting point, an array of any backend (its backend, device and floating
        dtype are the solve's), of any shape.
    tol, rtol
        A system has converged when ``‖F(x)‖∞ ≤ max(tol, rtol·‖F(x0)‖∞)``. ``tol`` defaults
        to ``ε^(2/3)`` of the dtype (3.7e-11 in float64, 2.4e-5 in float32).
    max_iter
        The most Newton iterations.
    inner, inner_maxiter, restart
        The linear solver (``"gmres"``), the most products ``J(x)·v`` per Newton iteration
        (default ``20·restart``) and its restart length.
    line_search
        ``"armijo"`` (backtracking until ``‖F‖₂`` decreases sufficiently) or ``None`` (the
        full Newton step).
    jvp
        How ``J(x)·v`` is computed: ``"ad"`` (the backend's forward-mode AD), ``"fd"`` (a
        forward difference, one evaluation of ``F`` each) or ``"auto"`` (AD where the
        backend declares ``ad.jvp``: jax, torch).
    preconditioner
        A function ``v -> M v`` with ``M ≈ J(x)⁻¹`` (shapes as ``F``'s), applied on the
        right inside GMRES: fewer products per Newton iteration.
    batch
        ``x0`` holds independent systems along its first axis; each converges on its own.
    backend
        The backend; default inferred from ``x0``.

    Returns
    -------
    RootSolution
        ``x``, ``status`` (0: converged), ``message``, ``residual_norm``,
        ``residual_history`` and ``stats`` (``iterations``, ``linear_iterations``,
        ``nfev``, ``njvp``, ``backtracks``).

    Examples
    --------
    >>> import numpy as np
    >>> from anyxp.optimize import newton_krylov
    >>> sol = newton_krylov(lambda x: x**3 - np.array([8.0, 27.0]), np.array([1.0, 1.0]))
    >>> sol.success, np.round(sol.x, 8)
    (True, array([2., 3.]))
    """
    check_choice(inner, "inner solver", ("gmres",))
    check_choice(jvp, "jvp", JVP_MODES)
    p = nonlinear_problem(backend, F, x0, tol, rtol, max_iter, line_search, batch)
    be, n = p.be, p.x.shape[1]
    restart = min(check_count(restart, "restart"), max(n, 1))
    inner_maxiter = (
        20 * restart if inner_maxiter is None else check_count(inner_maxiter, "inner_maxiter")
    )
    if jvp == "ad" or (jvp == "auto" and "ad.jvp" in be.capabilities):
        require(be, "ad.jvp")
        mode = "ad"
    else:
        mode = "fd"
    precond = None
    if preconditioner is not None:
        precond = rows_function(
            be, preconditioner, p.shape, p.x.dtype, batch=batch, who="preconditioner", what="x0"
        )
    direction = KrylovDirection(be, p.F, p.x.dtype, mode, precond, restart, inner_maxiter)
    res = solve_rows(
        be, p.F, p.x, direction, tol=p.tol, rtol=p.rtol, max_iter=p.max_iter,
        line_search=p.line_search, counts=COUNTS,
    )  # fmt: skip
    return root_solution(be, res, p)


COUNTS = ("nfev", "njvp", "linear_iterations", "backtracks")


def jacobian_product(be: Backend, F: Rows, x: Any, fx: Any, mode: str) -> Rows:
    """``v -> J(x)·v`` on rows ``(B, n)``, ``J`` the Jacobian of ``F`` (rows to rows).

    ``mode="ad"``: the backend's forward-mode AD (``be.ad.jvp``); ``"fd"``: one forward
    difference per product, ``(F(x + s·v) - F(x))/s`` with ``s = √ε·(1 + ‖x‖)/‖v‖`` per row
    (``fx`` is ``F(x)``). What any matrix-free Newton needs (an implicit ODE stepper's
    ``I - h·gamma·J`` too: ``v - h·gamma·J(x)·v``).
    """
    xp = be.xp
    if mode == "ad":
        jvp = be.ad.jvp
        return lambda v: jvp(F, (x,), (v,))[1]
    root_eps = math.sqrt(float(xp.finfo(x.dtype).eps))
    scale = root_eps * (1.0 + norm(xp, x))

    def difference(v: Any) -> Any:
        v_norm = norm(xp, v)
        moving = v_norm > 0  # a finished row's vector is zero: its product is too
        sigma = scale / xp.where(moving, v_norm, 1.0)
        jv = (F(x + sigma[:, None] * v) - fx) / sigma[:, None]
        return xp.where(moving[:, None], jv, 0.0)

    return difference


@dataclass(frozen=True)
class KrylovDirection:
    """The inexact Newton direction: GMRES to the forcing term η of each row."""

    be: Backend
    F: Rows
    dtype: Any
    mode: str  # "ad" or "fd"
    precond: Rows | None
    restart: int
    maxiter: int

    @property
    def rank_rtol(self) -> float:
        """What GMRES takes for a zero pivot, relative to the largest ``‖J v‖``.

        A product by finite differences is accurate to about ``√ε·‖J‖``, hence ``10·√ε``.
        One by AD is exact, but on a singular ``J`` the rounding of the Arnoldi process
        leaves pivots far above ``ε`` (1e-11 on a rank-deficient 12 x 12 system), and a
        Newton direction along them is noise magnified, hence ``√ε``: a ``J`` whose
        Krylov triangle is that ill-conditioned is singular for Newton's purposes."""
        eps = float(self.be.xp.finfo(self.dtype).eps)
        return (10 if self.mode == "fd" else 1) * math.sqrt(eps)

    def init(self, batch: int) -> Any:
        return self.be.xp.full((batch,), EW_ETA0, dtype=self.dtype, device=self.be.device)

    def __call__(
        self, x: Any, fx: Any, f2: Any, running: Any, eta: Any
    ) -> tuple[Any, Any, dict[str, Any], Any]:
        xp, dev = self.be.xp, self.be.device
        sol = gmres_rows(
            self.be, jacobian_product(self.be, self.F, x, fx, self.mode), -fx,
            precond=self.precond, tol=eta, atol=0.0, restart=self.restart,
            maxiter=self.maxiter, active=running, true_residual=False,
            rank_rtol=self.rank_rtol,
        )  # fmt: skip
        dx = sol["x"]
        why = xp.full(running.shape, RUNNING, dtype=xp.int32, device=dev)
        # No direction, or a breakdown that leaves the linear model's residual where it
        # was: J is singular and -F has (almost) no component in its range, so no step
        # along dx can decrease ‖F‖ as the line search asks (the Armijo slope).
        stuck = (sol["status"] == BREAKDOWN) & (sol["residual"] > (1.0 - ARMIJO_ALPHA) * f2)
        singular = (norm(xp, dx) == 0) | stuck
        why = xp.where(singular, xp.asarray(SINGULAR, dtype=xp.int32, device=dev), why)
        nonfinite = xp.asarray(NONFINITE, dtype=xp.int32, device=dev)
        why = xp.where(sol["status"] == NONFINITE, nonfinite, why)
        products = sol["matvecs"]
        counts = {
            "njvp": products,
            "nfev": products if self.mode == "fd" else 0,
            "linear_iterations": sol["iterations"],
        }
        return dx, why, counts, eta

    def update(self, eta: Any, f2: Any, f2_new: Any, ftol: Any, accepted: Any) -> Any:
        """Eisenstat & Walker's choice 2, safeguarded, and never below what ``tol`` needs."""
        xp = self.be.xp
        ratio = f2_new / xp.where(f2 > 0, f2, 1.0)
        new = EW_GAMMA * ratio * ratio
        guard = EW_GAMMA * eta * eta
        new = xp.where(guard > 0.1, xp.maximum(new, guard), new)
        # Solving the linear system beyond what the nonlinear tolerance needs is waste
        # (Kelley): η‖F‖ need not go below tol/2.
        floor = 0.5 * ftol / xp.where(f2_new > 0, f2_new, 1.0)
        new = xp.minimum(xp.maximum(new, floor), EW_ETA_MAX)
        return xp.where(accepted, new, eta)
