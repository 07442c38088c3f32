"""Hamiltonian Monte Carlo written once against the array API: ``anyxp.mcmc``.

:func:`nuts` (the No-U-Turn sampler, as Stan's) and :func:`hmc` (static HMC) sample a
log density of a flat position vector on any backend with reverse-mode AD (JAX, torch),
many chains as one batch, with Stan's warmup; :func:`r_hat` and :func:`ess` diagnose
draws of any array library.
"""

from __future__ import annotations

from anyxp.mcmc._diagnostics import ess, r_hat
from anyxp.mcmc._result import MCMCResult
from anyxp.mcmc._sample import hmc, nuts

__all__ = ["MCMCResult", "ess", "hmc", "nuts", "r_hat"]
