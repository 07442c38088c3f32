"""ODE solvers written once against the array API: ``anyxp.ode.solve``."""

from __future__ import annotations

from anyxp.ode._checks import METHODS
from anyxp.ode._solve import Solution, solve
from anyxp.ode.ensemble import EnsembleSolution, solve_ensemble

__all__ = ["METHODS", "EnsembleSolution", "Solution", "solve", "solve_ensemble"]
