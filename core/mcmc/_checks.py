"""The checks ``hmc`` and ``nuts`` share, made once before any sampling starts."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

import anyxp
from anyxp.backend import Backend
from anyxp.errors import UnsupportedError
from anyxp.mcmc._integrator import density_and_grad
from anyxp.selection import name_of

__all__ = ["Setup", "check_count", "check_step_size", "check_unit_interval", "prepare"]

#: The capability the samplers need: every chain's gradient from one reverse pass.
NEEDS = "ad.vjp"

_BATCHED = (
    "logdensity takes positions of shape (chains, dim) and returns one value per chain, "
    "shape (chains,): index parameters as x[..., i] and reduce with axis=-1, or wrap a "
    "function of one position with jax.vmap / torch.func.vmap"
)


class Setup(NamedTuple):
    """What the checks found: the backend, this rank's initial positions, its chains."""

    be: Backend
    x0: Any  # (chains on this rank, dim)
    rows: tuple[int, int]  # this rank's chains among all: [start, stop)
    chains: int
    dim: int


def check_count(value: Any, name: str, minimum: int) -> int:
    """Return ``value`` as an int, or raise naming ``name`` and the least value allowed."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_unit_interval(value: Any, name: str) -> float:
    """Return ``value`` as a float strictly between 0 and 1, or raise naming ``name``."""
    if not isinstance(value, numbers.Real) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def check_step_size(value: Any) -> float | None:
    """Return a given step size as a float (``None``: adapt it), or raise."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or not (
        math.isfinite(float(value)) and float(value) > 0
    ):
        raise ValueError(
            f"step_size must be a positive finite number, or None to adapt it during "
            f"warmup; got {value!r}"
        )
    return float(value)


def prepare(
    logdensity: Callable[[Any], Any],
    init: Any,
    *,
    chains: int,
    backend: str | Backend | None,
) -> Setup:
    """Check the target and the start; return the backend and this rank's positions.

    ``init`` is one position ``(dim,)`` that every chain starts from, or one per chain
    ``(chains, dim)``. Chains are split evenly over the ranks of ``be.comm``.
    """
    if not callable(logdensity):
        raise TypeError(f"logdensity must be callable; got {type(logdensity).__name__}. {_BATCHED}")
    be = anyxp.backend(backend, like=init) if backend is not None else anyxp.backend(like=init)
    if NEEDS not in be.capabilities:
        raise UnsupportedError(be.name, NEEDS, anyxp.get_registry().providers(NEEDS))
    x = be.asarray(init)
    if not be.xp.isdtype(x.dtype, "real floating"):
        x = be.xp.astype(x, be.float_dtype)
    shape = tuple(x.shape)
    if len(shape) == 1 and shape[0] >= 1:
        x = be.xp.broadcast_to(x[None, :], (chains, shape[0]))
    elif len(shape) != 2 or shape[0] != chains or shape[1] < 1:
        raise ValueError(
            f"init must have shape (dim,) (every chain starts there) or (chains, dim) = "
            f"({chains}, dim) (one start per chain); got shape {shape}"
        )
    dim = int(x.shape[1])
    size, rank = be.comm.size, be.comm.rank
    if chains % size:
        raise ValueError(
            f"chains={chains} do not split evenly over {size} ranks; use a multiple of {size}"
        )
    per_rank = chains // size
    rows = (rank * per_rank, (rank + 1) * per_rank)
    x0 = be.xp.asarray(x[rows[0] : rows[1], ...], copy=True)
    _probe(be, logdensity, x0, rows[0])
    return Setup(be, x0, rows, chains, dim)


def _probe(be: Backend, logdensity: Callable[[Any], Any], x0: Any, first: int) -> None:
    """Evaluate the log density and its gradient at the start, and check both."""
    out = logdensity(x0)
    if not hasattr(out, "shape") or name_of(out) != be.name:
        raise TypeError(
            f"logdensity returned {type(out).__name__}, not an array of backend {be.name!r}; "
            f"compute it with the namespace of its input (xp = anyxp.backend(like=x).xp). "
            f"{_BATCHED}"
        )
    if tuple(out.shape) != (x0.shape[0],):
        raise ValueError(
            f"logdensity returned shape {tuple(out.shape)} for positions of shape "
            f"{tuple(x0.shape)}. {_BATCHED}"
        )
    if out.dtype != x0.dtype:
        raise TypeError(
            f"logdensity returned dtype {out.dtype} for positions of dtype {x0.dtype}; "
            "compute it in the positions' dtype (make constants with be.asarray)"
        )
    logp, grad = (be.to_numpy(v) for v in density_and_grad(be, logdensity)(x0))
    bad = ~np.isfinite(logp)
    if bad.any():
        chains = (np.flatnonzero(bad) + first).tolist()
        raise ValueError(
            f"logdensity is not finite at init for chains {chains} (values "
            f"{logp[bad].tolist()}); start every chain where the density is positive, e.g. "
            "inside the support of constrained parameters, or sample them transformed to "
            "the real line (log for positive ones, with the log-Jacobian added)"
        )
    bad = ~np.isfinite(grad).all(axis=-1)
    if bad.any():
        chains = (np.flatnonzero(bad) + first).tolist()
        raise ValueError(
            f"the gradient of logdensity is not finite at init for chains {chains}; start "
            "away from points where the density is not differentiable"
        )
