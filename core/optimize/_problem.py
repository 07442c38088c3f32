"""What ``newton_krylov`` and ``newton`` share: the checked problem, and its result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.optimize._checks import check_choice, check_count, check_tolerance, rows_function, system
from anyxp.optimize._result import NONLINEAR_MESSAGES, RootSolution, concrete_int, describe

__all__ = ["Problem", "nonlinear_problem", "root_solution"]


@dataclass(frozen=True)
class Problem:
    """A checked call of a root finder: ``F`` and ``x`` on rows ``(B, n)``."""

    be: Backend
    F: Callable[[Any], Any]
    x: Any
    shape: tuple[int, ...]  # one system's own shape
    tol: float
    rtol: float
    max_iter: int
    line_search: bool
    batch: bool


def nonlinear_problem(
    backend: str | Backend | None,
    F: Any,
    x0: Any,
    tol: float | None,
    rtol: float,
    max_iter: int,
    line_search: str | None,
    batch: bool,
) -> Problem:
    """Check the arguments every root finder takes; ``F`` on rows checks each value it returns."""
    if not callable(F):
        raise TypeError(f"F must be a function x -> F(x), got {type(F).__name__}")
    be, x, shape = system(backend, x0, "x0", batch=batch)
    eps = float(be.xp.finfo(x.dtype).eps)
    tol = eps ** (2 / 3) if tol is None else check_tolerance(tol, "tol")
    rtol = check_tolerance(rtol, "rtol", eps=eps)
    if tol == 0 and rtol == 0:
        raise ValueError("tol and rtol are both 0, so the iteration could never stop; pass tol > 0")
    max_iter = check_count(max_iter, "max_iter")
    search = check_choice(line_search, "line_search", ("armijo", None)) == "armijo"
    F_rows = rows_function(be, F, shape, x.dtype, batch=batch, who="F", what="x0")
    return Problem(be, F_rows, x, shape, tol, rtol, max_iter, search, batch)


def root_solution(be: Backend, res: dict[str, Any], p: Problem) -> RootSolution:
    """The :class:`RootSolution` of a run: plain numbers for one concrete system."""
    xp = be.xp
    x, status, resid, iters, history = (
        res[k] for k in ("x", "status", "residual", "iterations", "history")
    )
    counts = dict(res["counts"])
    rows = x.shape[0]
    if p.batch:
        x = xp.reshape(x, (rows, *p.shape))
    else:
        x, status, resid, iters = xp.reshape(x[0, :], p.shape), status[0], resid[0], iters[0]
        history = history[:, 0]
        counts = {k: v[0] if getattr(v, "ndim", 0) else v for k, v in counts.items()}
    stats = {"iterations": iters, **counts}
    probe = status if not p.batch else (status[0] if rows else 0)
    if concrete_int(probe) is None:  # traced (jit): no message to read
        return RootSolution(x, status, "traced", resid, history, stats, be)
    host = be.to_numpy(status)
    most = int(np.max(be.to_numpy(iters))) if rows else 0
    history = history[: most + 1, ...]
    detail = ""
    if p.batch:
        stats = {k: v if getattr(v, "ndim", 0) else int(v) for k, v in stats.items()}
    else:
        status, resid = int(status), float(resid)
        stats = {k: int(v) for k, v in stats.items()}
        history = np.asarray(be.to_numpy(history), dtype=np.float64)
        detail = f"‖F(x)‖∞ = {resid:.3g} after {stats['iterations']} iterations"
    message = describe(host, NONLINEAR_MESSAGES, detail)
    return RootSolution(x, status, message, resid, history, stats, be)
