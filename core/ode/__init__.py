"""ODE solvers written once against the array API: ``anyxp.ode.solve``."""

from __future__ import annotations

from anyxp.ode._solve import METHODS, Solution, solve

__all__ = ["METHODS", "Solution", "solve"]
