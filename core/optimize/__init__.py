"""Nonlinear and linear solvers written once against the array API: ``anyxp.optimize``.

- :func:`gmres`: restarted GMRES for ``A x = b``, ``A`` a matrix or a function (matrix-free).
- :func:`newton_krylov`: Jacobian-free Newton-Krylov for ``F(x) = 0``.
- :func:`newton`: Newton's method with a dense Jacobian.

Each also solves a batch of independent systems (``batch=True``), every row with its own
convergence.
"""

from __future__ import annotations

from anyxp.optimize._gmres import gmres
from anyxp.optimize._newton import newton
from anyxp.optimize._newton_krylov import newton_krylov
from anyxp.optimize._result import LinearSolution, RootSolution

__all__ = ["LinearSolution", "RootSolution", "gmres", "newton", "newton_krylov"]
