"""What the solvers return: statuses, their messages, and the two result classes.

Every solver runs on a batch of rows internally and keeps one status per row. A single
system's result holds plain Python numbers (when they are concrete; inside ``jit`` they
stay the backend's 0-d arrays); a batch's holds the backend's arrays, one entry per row,
so that a caller inside a compiled loop (an ODE stepper) can mask on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anyxp.backend import Backend

__all__ = [
    "BREAKDOWN",
    "CONVERGED",
    "LINEAR_MESSAGES",
    "LINE_SEARCH",
    "MAX_ITER",
    "NONFINITE",
    "NONLINEAR_MESSAGES",
    "RUNNING",
    "SINGULAR",
    "STAGNATED",
    "LinearSolution",
    "RootSolution",
    "concrete_int",
    "describe",
]

RUNNING = -1
CONVERGED = 0
MAX_ITER = 1
BREAKDOWN = 2  # GMRES: the Krylov space became invariant short of the tolerance
SINGULAR = 2  # Newton: no direction (the same code as GMRES's breakdown)
NONFINITE = 3
STAGNATED = 4  # GMRES: a restart cycle made no progress
LINE_SEARCH = 4  # Newton: no decrease along the direction

LINEAR_MESSAGES = {
    CONVERGED: "converged: ‖b - Ax‖ ≤ max(tol·‖b‖, atol)",
    MAX_ITER: (
        "maxiter reached before ‖b - Ax‖ ≤ max(tol·‖b‖, atol); raise maxiter, or pass a "
        "preconditioner M"
    ),
    BREAKDOWN: (
        "breakdown: the Krylov space became invariant before the residual reached the "
        "tolerance, so A is singular and b is not in its range; check A, or solve a "
        "regularized system"
    ),
    NONFINITE: "A (or M) returned NaN or infinity; check the operator and the preconditioner",
    STAGNATED: (
        "stagnated: a whole restart cycle did not reduce the residual; raise restart, or "
        "pass a preconditioner M"
    ),
}

NONLINEAR_MESSAGES = {
    CONVERGED: "converged: ‖F(x)‖∞ ≤ max(tol, rtol·‖F(x0)‖∞)",
    MAX_ITER: (
        "max_iter Newton iterations reached before ‖F(x)‖∞ ≤ max(tol, rtol·‖F(x0)‖∞); "
        "raise max_iter, or start closer to a root"
    ),
    SINGULAR: (
        "the Jacobian is singular at x: the linear solve gave no Newton direction; start "
        "from another x0, or check that F's root is isolated"
    ),
    NONFINITE: (
        "F returned NaN or infinity (at x0, or in J(x)·v); start from a point where F is "
        "finite, and check F's domain"
    ),
    LINE_SEARCH: (
        "the line search found no decrease of ‖F‖ along the Newton direction: x is near a "
        "local minimum of ‖F‖ that is not a root, or the Jacobian is inaccurate; try "
        "another x0, jvp='ad', or a looser tol"
    ),
}


def concrete_int(value: Any) -> int | None:
    """``value`` as an int, or ``None`` when it is being traced (jit)."""
    try:
        return int(value)
    except Exception:  # noqa: BLE001 - tracers refuse int() with library-specific errors
        return None


def describe(status: np.ndarray, messages: dict[int, str], detail: str = "") -> str:
    """The message of one row's status, or a summary of a batch's statuses."""
    status = np.asarray(status).reshape(-1)
    if status.size == 1:
        text = messages.get(int(status[0]), f"unknown status {int(status[0])}")
        return f"{text} ({detail})" if detail else text
    if status.size == 0:
        return "an empty batch: nothing to solve"
    parts = [f"{int(np.sum(status == CONVERGED))} of {status.size} systems converged"]
    for code in sorted(set(status.tolist()) - {CONVERGED}):
        rows = np.flatnonzero(status == code).tolist()
        shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
        parts.append(f"rows [{shown}]: {messages.get(code, f'unknown status {code}')}")
    return "; ".join(parts)


@dataclass(frozen=True)
class LinearSolution:
    """The result of :func:`anyxp.optimize.gmres`.

    ``x`` is the solution, an array of ``b``'s backend and shape. ``status`` is 0 when
    ``‖b - Ax‖ ≤ max(tol·‖b‖, atol)`` (``converged``), 1 when ``maxiter`` ran out, 2 on a
    breakdown short of the tolerance (``A`` singular), 3 when ``A`` or ``M`` returned
    NaN or infinity, 4 when a restart cycle made no progress; ``message`` says the same
    in words. ``iterations`` counts products with ``A`` inside the Arnoldi process
    (``matvecs`` counts every product, residual checks included) and ``residual_norm``
    is ``‖b - Ax‖₂``. For a batch (``batch=True``) ``status``, ``iterations`` and
    ``residual_norm`` are arrays with one entry per row.
    """

    x: Any
    status: Any
    message: str
    iterations: Any
    residual_norm: Any
    matvecs: Any
    backend: Backend = field(repr=False)

    @property
    def converged(self) -> bool:
        """Whether every system reached the tolerance (needs concrete values: not in jit)."""
        return _all_zero(self.backend, self.status)


@dataclass(frozen=True)
class RootSolution:
    """The result of :func:`anyxp.optimize.newton_krylov` and :func:`anyxp.optimize.newton`.

    ``x`` is the root, an array of ``x0``'s backend and shape. ``status`` is 0 when
    ``‖F(x)‖∞ ≤ max(tol, rtol·‖F(x0)‖∞)`` (``success``), 1 when ``max_iter`` ran out, 2
    when the Jacobian was singular, 3 when ``F`` returned NaN or infinity, 4 when the
    line search found no decrease; ``message`` says the same in words.
    ``residual_norm`` is ``‖F(x)‖∞`` and ``residual_history`` its value after each Newton
    iteration (first entry: at ``x0``). ``stats`` counts ``iterations`` (Newton),
    ``linear_iterations`` (GMRES, Newton-Krylov), ``nfev`` (calls of ``F``, the
    finite-difference products ``J(x)·v`` included), ``njvp`` (products ``J(x)·v``),
    ``njev`` (Jacobians, dense Newton) and ``backtracks`` (line-search reductions).
    For a batch (``batch=True``) the per-system entries are arrays with one entry per row,
    and ``residual_history`` has shape ``(iterations + 1, B)``, NaN once a row stopped.
    """

    x: Any
    status: Any
    message: str
    residual_norm: Any
    residual_history: Any
    stats: dict[str, Any]
    backend: Backend = field(repr=False)

    @property
    def success(self) -> bool:
        """Whether every system converged (needs concrete values: not in jit)."""
        return _all_zero(self.backend, self.status)


def _all_zero(be: Backend, status: Any) -> bool:
    host = status if isinstance(status, int) else be.to_numpy(status)
    return bool(np.all(np.asarray(host) == CONVERGED))
