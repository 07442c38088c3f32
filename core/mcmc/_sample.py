"""The public samplers, ``nuts`` and ``hmc``: checks, the shared loop, the result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyxp._warnings import warn_user
from anyxp.backend import Backend
from anyxp.mcmc._checks import (
    Setup,
    check_count,
    check_step_size,
    check_unit_interval,
    prepare,
)
from anyxp.mcmc._driver import STATS, Config, run
from anyxp.mcmc._result import MCMCResult

__all__ = ["hmc", "nuts"]

#: 2**MAX_TREE_DEPTH leapfrog steps per iteration at most: beyond, a sampler is lost.
MAX_TREE_DEPTH = 20


def nuts(
    logdensity: Callable[[Any], Any],
    init: Any,
    *,
    num_warmup: int,
    num_samples: int,
    chains: int = 1,
    seed: int = 0,
    max_depth: int = 10,
    target_accept: float = 0.8,
    step_size: float | None = None,
    chain_method: str = "vectorized",
    backend: str | Backend | None = None,
) -> MCMCResult:
    """Sample with the No-U-Turn sampler (multinomial, generalized criterion), as Stan.

    Each iteration doubles a trajectory in random directions until it turns back on
    itself (Betancourt's generalized no-U-turn criterion), a step diverges, or
    ``max_depth`` doublings are done, and draws a point of it in proportion to its
    density. Warmup adapts each chain's step size (dual averaging) and diagonal mass
    matrix (Stan's windows). All chains run as one batch: one call of ``logdensity``
    per leapfrog step for all of them, and a chain that finishes its trajectory starts
    the next at once. On JAX the whole run is one compiled program.

    Parameters
    ----------
    logdensity
        The log density, up to a constant, of positions in a batch: it takes an array
        ``x`` of shape ``(chains, dim)`` of the backend and returns ``(chains,)``, each
        value depending on its own row only (see the docs, "the log density"). Write it
        with ``x[..., i]`` and ``axis=-1`` and the same function serves one position
        too; a function of one position becomes one with ``jax.vmap(f)`` or
        ``torch.func.vmap(f)``. Pass the same function object again to reuse a
        compiled program.
    init
        Where the chains start: ``(dim,)`` for all of them, or ``(chains, dim)``, an
        array of the backend (or a list), where the log density is finite.
    num_warmup
        Adaptation iterations per chain, not returned (0 turns adaptation off).
    num_samples
        Draws per chain after warmup, at least 1.
    chains
        Independent chains (at least 2 for R-hat to mean much). With an MPI comm
        (``anyxp.backend("jax", comm="mpi")``) they are split evenly over the ranks.
    seed
        Seeds ``be.random``: the same seed, backend and chain count give the same draws.
    max_depth
        The most doublings of one trajectory (``2**max_depth - 1`` leapfrog steps).
    target_accept
        The mean acceptance statistic warmup aims for; raise it (0.9, 0.99) to shrink
        the step size when there are divergences.
    step_size
        A fixed step size: no warmup adaptation at all (``num_warmup`` iterations are
        then discarded as burn-in). Default: found at the start, then adapted.
    chain_method
        ``"vectorized"`` (default): all chains (of this rank) as one batch, one call of
        ``logdensity`` per leapfrog step for all of them. ``"sequential"``: one chain
        after another, each a batch of one (on JAX one compiled program serves them
        all). Both give the same draws; sequential is faster where a batch of chains
        costs more than the chains one by one (a CPU, a log density dominated by a
        matrix product: XLA's CPU matrix product of a few rows is slower than as many
        matrix-vector products; see the MCMC benchmark), vectorized everywhere else.
    backend
        A backend with reverse-mode AD (``"jax"``, ``"torch"``), or one's name; default
        inferred from ``init``.

    Returns
    -------
    MCMCResult
        ``samples`` ``(chains, num_samples, dim)``, per-draw statistics (divergences,
        acceptance, steps, depth), each chain's step size and inverse mass matrix, and
        the diagnostics ``r_hat``, ``ess`` and ``ess_tail``; ``summary()`` tabulates them.

    Raises
    ------
    anyxp.UnsupportedError
        The backend has no reverse-mode AD (numpy, ...): the message names those with it.
    ValueError
        A count out of range, ``init`` of the wrong shape, or a log density that is not
        finite at ``init``.

    Warns
    -----
    RuntimeWarning
        Draws after warmup diverged (``divergences > 0``): the message says how many and
        what to do; ``divergent`` says which.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("torch", dtype="float64")
    >>> def logdensity(x):  # a standard normal in 2-D, for a batch of positions
    ...     return -0.5 * be.xp.sum(x**2, axis=-1)
    >>> res = anyxp.mcmc.nuts(logdensity, be.asarray([1.0, -1.0]),
    ...                       num_warmup=100, num_samples=200, chains=2, seed=1)
    >>> res.samples.shape, res.divergences
    (torch.Size([2, 200, 2]), 0)
    """
    check_count(max_depth, "max_depth", 1)
    if max_depth > MAX_TREE_DEPTH:
        raise ValueError(f"max_depth must be at most {MAX_TREE_DEPTH}, got {max_depth}")
    return _sample(
        "nuts",
        max_depth,
        logdensity,
        init,
        num_warmup=num_warmup,
        num_samples=num_samples,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        step_size=step_size,
        chain_method=chain_method,
        backend=backend,
    )


def hmc(
    logdensity: Callable[[Any], Any],
    init: Any,
    *,
    num_warmup: int,
    num_samples: int,
    step_size: float | None = None,
    num_steps: int = 10,
    target_accept: float = 0.8,
    chains: int = 1,
    seed: int = 0,
    chain_method: str = "vectorized",
    backend: str | Backend | None = None,
) -> MCMCResult:
    """Sample with static Hamiltonian Monte Carlo: ``num_steps`` leapfrog steps, then a
    Metropolis test.

    The arguments are those of :func:`nuts` (see there), with ``num_steps`` in place of
    ``max_depth``. The step size adapts during warmup unless ``step_size`` is given;
    then nothing adapts and ``num_warmup`` iterations are burn-in. A fixed trajectory
    length suits targets whose scales are known; :func:`nuts` chooses it per iteration.

    Parameters
    ----------
    logdensity, init, num_warmup, num_samples, chains, seed, target_accept, chain_method, backend
        As for :func:`nuts`.
    step_size
        A fixed step size (no adaptation), or ``None`` to adapt it and the mass matrix.
    num_steps
        Leapfrog steps per iteration.

    Returns
    -------
    MCMCResult
        As for :func:`nuts`; ``tree_depth`` is 0.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("torch", dtype="float64")
    >>> res = anyxp.mcmc.hmc(lambda x: -0.5 * be.xp.sum(x**2, axis=-1), be.asarray([0.0]),
    ...                      num_warmup=0, num_samples=100, step_size=0.3, num_steps=5)
    >>> res.samples.shape, res.mean_accept_prob > 0.9
    (torch.Size([1, 100, 1]), True)
    """
    check_count(num_steps, "num_steps", 1)
    return _sample(
        "hmc",
        num_steps,
        logdensity,
        init,
        num_warmup=num_warmup,
        num_samples=num_samples,
        chains=chains,
        seed=seed,
        target_accept=target_accept,
        step_size=step_size,
        chain_method=chain_method,
        backend=backend,
    )


#: How the chains of one process run: all as one batch, or one after another.
CHAIN_METHODS = ("vectorized", "sequential")


def _sample(
    kernel: str,
    option: int,
    logdensity: Callable[[Any], Any],
    init: Any,
    *,
    num_warmup: int,
    num_samples: int,
    chains: int,
    seed: int,
    target_accept: float,
    step_size: float | None,
    chain_method: str,
    backend: str | Backend | None,
) -> MCMCResult:
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    num_warmup = check_count(num_warmup, "num_warmup", 0)
    num_samples = check_count(num_samples, "num_samples", 1)
    chains = check_count(chains, "chains", 1)
    target_accept = check_unit_interval(target_accept, "target_accept")
    fixed = check_step_size(step_size)
    setup = prepare(logdensity, init, chains=chains, backend=backend)
    be, xp = setup.be, setup.be.xp
    sequential = chain_method == "sequential"
    config = Config(
        kernel=kernel,
        kernel_option=int(option),
        num_warmup=num_warmup,
        num_samples=num_samples,
        search_step=fixed is None,
        adapt=fixed is None and num_warmup > 0,
        target_accept=target_accept,
        chains=chains,
        batch=1 if sequential else setup.x0.shape[0],
        dim=setup.dim,
    )
    key = be.random.key(check_count(seed, "seed", 0))
    eps0 = xp.full(
        (setup.x0.shape[0],),
        1.0 if fixed is None else fixed,
        dtype=setup.x0.dtype,
        device=be.device,
    )
    first, stop = setup.rows
    if sequential:
        parts = [
            run(
                be,
                logdensity,
                key,
                setup.x0[i : i + 1, ...],
                eps0[i : i + 1],
                _index(be, first + i),
                config,
            )
            for i in range(stop - first)
        ]
        out = tuple(xp.concat(arrays, axis=0) for arrays in zip(*parts, strict=True))
    else:
        out = run(be, logdensity, key, setup.x0, eps0, _index(be, first), config)
    result = _result(setup, kernel, num_warmup, *_gather(setup, out))
    _warn_divergences(result)
    return result


def _index(be: Backend, i: int) -> Any:
    """A chain index as a 0-d int32 array: an input, not a constant, of the program."""
    return be.xp.asarray(i, dtype=be.xp.int32, device=be.device)


def _warn_divergences(result: MCMCResult) -> None:
    """Say so when draws after warmup diverged: they bias every estimate."""
    count = result.divergences
    if count:
        warn_user(
            f"{count} of {result.chains * result.draws} draws after warmup diverged (an "
            "energy error above 1000: the step size is too large for the curvature met "
            "there), so the draws are biased; raise target_accept (0.9, 0.99) or "
            "reparametrize (e.g. non-centered hierarchies). result.divergent says which.",
            RuntimeWarning,
        )


def _gather(setup: Setup, arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """Every rank's chains, on every rank (the arrays themselves at size 1)."""
    comm, xp = setup.be.comm, setup.be.xp
    if comm.size == 1:
        return arrays
    gathered = (comm.allgather(a) for a in arrays)
    return tuple(xp.reshape(g, (setup.chains, *g.shape[2:])) for g in gathered)


def _result(
    setup: Setup, method: str, num_warmup: int, samples: Any, stats: Any, eps: Any, inv_mass: Any
) -> MCMCResult:
    xp = setup.be.xp
    column = {name: stats[..., i] for i, name in enumerate(STATS)}
    return MCMCResult(
        samples=samples,
        logdensity=column["logdensity"],
        accept_prob=column["accept_prob"],
        divergent=column["divergent"] > 0.5,
        num_steps=xp.astype(column["num_steps"], xp.int32),
        tree_depth=xp.astype(column["tree_depth"], xp.int32),
        step_size=eps,
        inv_mass=inv_mass,
        method=method,
        num_warmup=num_warmup,
        backend=setup.be,
    )
