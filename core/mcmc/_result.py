"""What ``hmc`` and ``nuts`` return: the draws, per-draw statistics and diagnostics."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.mcmc._diagnostics import ess, r_hat

__all__ = ["MCMCResult"]


@dataclasses.dataclass(frozen=True, eq=False)
class MCMCResult:
    """Draws of every chain after warmup, with what a user checks before trusting them.

    Arrays are the backend's (after an MPI run: every rank's chains, on every rank).
    The diagnostics are computed together on first access by :func:`anyxp.mcmc.r_hat`
    and :func:`anyxp.mcmc.ess`, on a host copy of the draws (small next to the run,
    and no compilation per shape on JAX), and returned as the backend's arrays.

    Attributes
    ----------
    samples : array
        ``(chains, draws, dim)``: the positions, in the parameterization of
        ``logdensity``.
    logdensity : array
        ``(chains, draws)``: the log density at each draw.
    accept_prob : array
        ``(chains, draws)``: the acceptance statistic of each iteration (NUTS: the mean
        over the trajectory's leaves of ``min(1, exp(-energy error))``, as Stan's
        ``accept_stat__``). Warmup drives its mean to ``target_accept``.
    divergent : array
        ``(chains, draws)``, bool: the iteration met an energy error above 1000. Any
        divergence biases the draws: reparametrize, or raise ``target_accept``.
    num_steps : array
        ``(chains, draws)``, int32: leapfrog steps (gradient evaluations) per iteration.
    tree_depth : array
        ``(chains, draws)``, int32: trajectory doublings (NUTS; 0 for HMC). Draws at
        ``max_depth`` mean the trajectory was cut short.
    step_size : array
        ``(chains,)``: each chain's step size after warmup.
    inv_mass : array
        ``(chains, dim)``: each chain's diagonal inverse mass matrix after warmup (the
        posterior variances it estimated; ones without adaptation).
    method : str
        ``"nuts"`` or ``"hmc"``.
    num_warmup : int
        Warmup iterations per chain (not in ``samples``).
    backend : Backend
        The backend the chains ran on.
    """

    samples: Any = dataclasses.field(repr=False)
    logdensity: Any = dataclasses.field(repr=False)
    accept_prob: Any = dataclasses.field(repr=False)
    divergent: Any = dataclasses.field(repr=False)
    num_steps: Any = dataclasses.field(repr=False)
    tree_depth: Any = dataclasses.field(repr=False)
    step_size: Any = dataclasses.field(repr=False)
    inv_mass: Any = dataclasses.field(repr=False)
    method: str
    num_warmup: int
    backend: Backend = dataclasses.field(repr=False)

    @property
    def chains(self) -> int:
        """The number of chains."""
        return int(self.samples.shape[0])

    @property
    def draws(self) -> int:
        """The draws per chain after warmup."""
        return int(self.samples.shape[1])

    @property
    def dim(self) -> int:
        """The dimension of the position vector."""
        return int(self.samples.shape[2])

    @property
    def divergences(self) -> int:
        """The number of divergent iterations after warmup, over all chains."""
        return int(self.backend.to_numpy(self.divergent).sum())

    @property
    def mean_accept_prob(self) -> float:
        """The mean acceptance statistic after warmup, over all chains."""
        return float(self.backend.to_numpy(self.accept_prob).mean())

    @property
    def r_hat(self) -> Any:
        """``(dim,)``: rank-normalized split-R-hat per coordinate; below 1.01 is good."""
        return self._diagnostics["r_hat"]

    @property
    def ess(self) -> Any:
        """``(dim,)``: bulk effective sample size per coordinate."""
        return self._diagnostics["ess"]

    @property
    def ess_tail(self) -> Any:
        """``(dim,)``: tail effective sample size (5% and 95% quantiles) per coordinate."""
        return self._diagnostics["ess_tail"]

    @functools.cached_property
    def _diagnostics(self) -> dict[str, Any]:
        x = self.backend.to_numpy(self.samples)
        # A coordinate that never moved (every proposal rejected) has no variance: its
        # diagnostics are NaN, as documented, without numpy's warnings on top.
        with np.errstate(divide="ignore", invalid="ignore"):
            found = {"r_hat": r_hat(x), "ess": ess(x), "ess_tail": ess(x, kind="tail")}
        return {name: self.backend.asarray(value) for name, value in found.items()}

    def summary(self, names: Sequence[str] | None = None) -> str:
        """Return a table of each coordinate's posterior summary and diagnostics.

        Parameters
        ----------
        names
            One name per coordinate; default ``x[0]``, ``x[1]``, ...

        Returns
        -------
        str
            A header line (chains, draws, divergences, acceptance, step sizes), then per
            coordinate: mean, sd, Monte Carlo standard error of the mean
            (``sd / sqrt(ess_bulk)``), the 5%, 50% and 95% quantiles, bulk and tail ESS,
            and R-hat.
        """
        if names is None:
            names = [f"x[{i}]" for i in range(self.dim)]
        elif len(names) != self.dim:
            raise ValueError(f"names has {len(names)} entries for {self.dim} coordinates")
        host = self.backend.to_numpy
        x = host(self.samples).reshape(-1, self.dim)
        mean, sd = x.mean(axis=0), x.std(axis=0, ddof=1)
        q05, q50, q95 = np.quantile(x, [0.05, 0.5, 0.95], axis=0)
        bulk, tail, rhat = (host(v).reshape(-1) for v in (self.ess, self.ess_tail, self.r_hat))
        eps = host(self.step_size)
        head = (
            f"{self.method.upper()}: {self.chains} chains x {self.draws} draws "
            f"({self.num_warmup} warmup), {self.divergences} divergences, mean accept "
            f"{self.mean_accept_prob:.2f}, step size {eps.min():.3g}-{eps.max():.3g}"
        )
        width = max(6, *(len(n) for n in names))
        cols = ("mean", "sd", "mcse", "5%", "50%", "95%", "ess_bulk", "ess_tail", "r_hat")
        lines = [head, " " * width + "".join(f"{c:>10}" for c in cols)]
        for i, name in enumerate(names):
            stats = (mean[i], sd[i], sd[i] / np.sqrt(bulk[i]), q05[i], q50[i], q95[i])
            row = "".join(f"{v:10.3g}" for v in stats)
            row += f"{bulk[i]:10.0f}{tail[i]:10.0f}{rhat[i]:10.3f}"
            lines.append(f"{name:<{width}}{row}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MCMCResult(method={self.method!r}, chains={self.chains}, draws={self.draws}, "
            f"dim={self.dim}, divergences={self.divergences}, backend={self.backend.name!r})"
        )
