"""Newton's method with a dense Jacobian, for small and medium systems.

The Jacobian comes from, in order: the user's ``jac``; the backend's automatic
differentiation where it declares ``ad.jacobian`` (no evaluations of ``F``); forward
differences (``n`` evaluations of ``F``). Each iteration solves ``J dx = -F`` with
``xp.linalg.solve`` (``O(n³)``), so Newton converges quadratically near a root at a cost
that only pays for itself while ``n`` is small: beyond a few thousand unknowns use
:func:`anyxp.optimize.newton_krylov`, which never forms ``J``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_extra as xpx

from anyxp.backend import Backend
from anyxp.optimize._checks import require
from anyxp.optimize._newton_loop import solve_rows
from anyxp.optimize._problem import nonlinear_problem, root_solution
from anyxp.optimize._result import NONFINITE, RUNNING, SINGULAR, RootSolution

__all__ = ["newton"]

Rows = Callable[[Any], Any]
COUNTS = ("nfev", "njev", "backtracks")


def newton(
    F: Callable[[Any], Any],
    x0: Any,
    *,
    jac: Callable[[Any], Any] | None = None,
    tol: float | None = None,
    rtol: float = 0.0,
    max_iter: int = 50,
    line_search: str | None = "armijo",
    batch: bool = False,
    backend: str | Backend | None = None,
) -> RootSolution:
    """Solve ``F(x) = 0`` by Newton's method with a dense Jacobian and a line search.

    Parameters
    ----------
    F
        The residual: takes an array shaped like ``x0`` and returns one of the same library,
        shape and dtype. With ``batch=True`` it takes rows ``(B, ...)`` and treats them
        independently.
    x0
        The starting point, an array of any backend, of any shape.
    jac
        The Jacobian ``jac(x)`` of the flattened ``F`` with respect to the flattened ``x``:
        shape ``(n, n)`` with ``n = x0.size``, or ``(B, n, n)`` for a batch. Without it,
        automatic differentiation where the backend declares ``ad.jacobian`` (jax, torch),
        else forward differences (``n`` evaluations of ``F``, counted in ``nfev``).
    tol, rtol, max_iter, line_search, batch, backend
        As for :func:`anyxp.optimize.newton_krylov`.

    Returns
    -------
    RootSolution
        ``x``, ``status`` (0: converged), ``message``, ``residual_norm``,
        ``residual_history`` and ``stats`` (``iterations``, ``nfev``, ``njev``,
        ``backtracks``).

    Examples
    --------
    >>> import numpy as np
    >>> from anyxp.optimize import newton
    >>> sol = newton(lambda x: x**2 - 2.0, np.array([1.0]))
    >>> sol.success, round(float(sol.x[0]), 12)
    (True, 1.414213562373)
    """
    p = nonlinear_problem(backend, F, x0, tol, rtol, max_iter, line_search, batch)
    be = p.be
    require(be, "linalg")
    direction = DenseDirection(be, *jacobian_source(be, p.F, jac, p.x, p.shape, batch))
    res = solve_rows(
        be, p.F, p.x, direction, tol=p.tol, rtol=p.rtol, max_iter=p.max_iter,
        line_search=p.line_search, counts=COUNTS,
    )  # fmt: skip
    return root_solution(be, res, p)


def jacobian_source(
    be: Backend, F: Rows, jac: Any, x: Any, shape: tuple[int, ...], batch: bool
) -> tuple[Callable[[Any, Any], Any], int]:
    """``(J(x, F(x)) -> (B, n, n), evaluations of F per Jacobian)``."""
    xp = be.xp
    rows, n = x.shape
    dtype = x.dtype
    if jac is not None:
        if not callable(jac):
            raise TypeError(f"jac must be a function x -> J(x), got {type(jac).__name__}")
        expected = (rows, n, n) if batch else (n, n)

        def given(x: Any, fx: Any) -> Any:
            arg = xp.reshape(x, (rows, *shape)) if batch else xp.reshape(x[0, :], shape)
            J = jac(arg)
            _check_jacobian(be, J, expected, dtype)
            return J if batch else J[None, ...]

        return given, 0
    if "ad.jacobian" in be.capabilities:
        jacobian = be.ad.jacobian
        if batch:
            # Rows are independent: row b of ∂(Σ_b F_b)/∂x is system b's own Jacobian, for
            # the cost of one Jacobian of an n-vector whatever B is.
            return (
                lambda x, fx: xp.permute_dims(
                    jacobian(lambda v: xp.sum(F(v), axis=0))(x), (1, 0, 2)
                ),
                0,
            )
        return (lambda x, fx: jacobian(lambda v: F(v[None, :])[0, :])(x[0, :])[None, ...]), 0
    root_eps = math.sqrt(float(xp.finfo(dtype).eps))
    pos = xp.arange(n, dtype=xp.int32, device=be.device)

    def differences(x: Any, fx: Any) -> Any:
        step = root_eps * xp.maximum(xp.abs(x), 1.0)  # (B, n)
        J = xp.zeros((rows, n, n), dtype=dtype, device=be.device)

        def column(j: Any, J: Any) -> Any:
            e = xp.where(pos == j, step, 0.0)  # (B, n): the step in component j
            hj = xp.sum(e, axis=-1)
            col = (F(x + e) - fx) / hj[:, None]
            return xpx.at(J, (slice(None), slice(None), j)).set(col, xp=xp)

        return be.fori_loop(0, n, column, J)

    return differences, n


def _check_jacobian(be: Backend, J: Any, expected: tuple[int, ...], dtype: Any) -> None:
    from anyxp.selection import name_of

    if name_of(J) != be.name:
        raise TypeError(
            f"jac returned {type(J).__module__}.{type(J).__name__}, but x0 is a {be.name} "
            "array; jac must return an array of the same library"
        )
    if tuple(J.shape) != expected:
        raise ValueError(
            f"jac returned shape {tuple(J.shape)}, expected {expected}: the Jacobian of the "
            "flattened F with respect to the flattened x"
        )
    if J.dtype != dtype:
        raise TypeError(f"jac returned dtype {J.dtype}, expected {dtype} (x0's dtype)")


def _is_linalg_error(exc: Exception) -> bool:
    # numpy and array-api-strict name it LinAlgError, torch _LinAlgError: unrelated classes
    # of one name.
    return any(cls.__name__.endswith("LinAlgError") for cls in type(exc).__mro__)


def solve_or_nan(xp: Any, J: Any, rhs: Any) -> Any:
    """``J⁻¹ rhs`` per row (``J`` (B, n, n), ``rhs`` (B, n)), NaN in a row whose ``J`` is
    singular: numpy and torch raise for the whole batch, JAX returns inf and NaN."""
    try:
        return xp.linalg.solve(J, rhs[:, :, None])[:, :, 0]
    except Exception as exc:
        if not _is_linalg_error(exc):
            raise
    if J.shape[0] == 1:
        return xp.full_like(rhs, xp.nan)
    return xp.concat(
        [solve_or_nan(xp, J[i : i + 1, ...], rhs[i : i + 1, :]) for i in range(J.shape[0])]
    )


@dataclass(frozen=True)
class DenseDirection:
    """The Newton direction from the Jacobian: ``dx = -J⁻¹ F``."""

    be: Backend
    jacobian: Callable[[Any, Any], Any]
    cost: int  # evaluations of F per Jacobian

    def init(self, batch: int) -> Any:
        return None

    def __call__(
        self, x: Any, fx: Any, f2: Any, running: Any, carry: Any
    ) -> tuple[Any, Any, dict[str, Any], Any]:
        xp, dev = self.be.xp, self.be.device
        J = self.jacobian(x, fx)
        finite = xp.all(xp.all(xp.isfinite(J), axis=-1), axis=-1)
        safe = xp.where(finite[:, None, None], J, xp.eye(J.shape[-1], dtype=J.dtype, device=dev))
        dx = solve_or_nan(xp, safe, -fx)
        solved = xp.all(xp.isfinite(dx), axis=-1)
        why = xp.full(running.shape, RUNNING, dtype=xp.int32, device=dev)
        why = xp.where(solved, why, xp.asarray(SINGULAR, dtype=xp.int32, device=dev))
        why = xp.where(finite, why, xp.asarray(NONFINITE, dtype=xp.int32, device=dev))
        dx = xp.where((solved & finite)[:, None], dx, 0.0)
        return dx, why, {"nfev": self.cost, "njev": 1}, carry

    def update(self, carry: Any, f2: Any, f2_new: Any, ftol: Any, accepted: Any) -> Any:
        return carry
