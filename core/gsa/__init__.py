"""Global sensitivity analysis written once against the array API: ``anyxp.gsa``.

:func:`sobol` estimates Sobol' indices (first order, total, and second order on request)
of a model's parameters, with bootstrap confidence intervals, on Saltelli's design over
Owen-scrambled Sobol' points. The model runs on any backend, in batches, across MPI ranks
(``be.comm``) or on a dask cluster; the analysis is vectorized on the backend.
:func:`saltelli_sample` returns the design itself, in SALib's row order.
"""

from __future__ import annotations

from anyxp.gsa._sobol import SobolResult, saltelli_sample, sobol

__all__ = ["SobolResult", "saltelli_sample", "sobol"]
