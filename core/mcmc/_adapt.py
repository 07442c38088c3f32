"""Warmup: the step size by dual averaging and a diagonal mass matrix in Stan's windows.

Each chain adapts its own step size and mass matrix, as in Stan, so a chain's draws do
not depend on which other chains run beside it (or on which MPI rank).

- **Step size** (Hoffman & Gelman 2014, section 3.2): dual averaging drives the mean
  acceptance statistic to ``target_accept``; after warmup the step size is the averaged
  iterate. It restarts, aimed at ten times the current step size, whenever the mass
  matrix changes.
- **Mass matrix** (Stan's reference manual, "HMC algorithm parameters"): an initial fast
  interval (75 iterations) adapts the step size only; then slow windows of doubling
  length (25, 50, 100, ...) each estimate the posterior variances with Welford's
  algorithm, and the regularized estimate becomes the inverse mass matrix at the
  window's end; a terminal fast interval (50) adapts the step size to the final metric.
  Warmups shorter than 150 iterations split 15% / 75% / 10%; below 20 only the step size
  adapts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from anyxp.backend import Backend
from anyxp.mcmc._integrator import kinetic, leapfrog, logp_of

__all__ = ["Adaptation", "Schedule", "adapt_init", "adapt_update", "initial_step_size"]

# Dual averaging (Hoffman & Gelman 2014, Algorithm 5; Stan's defaults).
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75
# Stan's windowed schedule: initial fast buffer, terminal fast buffer, first slow window.
INIT_BUFFER, TERM_BUFFER, BASE_WINDOW = 75, 50, 25
#: Shorter warmups adapt the step size only.
MIN_WARMUP_FOR_METRIC = 20
#: Stan shrinks the variance estimate towards 1e-3 with the weight of 5 pseudo-draws.
SHRINK_DRAWS, SHRINK_TARGET = 5.0, 1e-3
#: The initial step-size search doubles or halves until the one-step acceptance
#: probability crosses this (Stan's ``init_stepsize``), at most ``MAX_SEARCH`` times.
SEARCH_ACCEPT, MAX_SEARCH = 0.8, 60


def slow_windows(num_warmup: int) -> tuple[tuple[int, int], ...]:
    """Return Stan's slow adaptation windows ``(start, end)`` for ``num_warmup`` iterations.

    >>> slow_windows(1000)
    ((75, 100), (100, 150), (150, 250), (250, 450), (450, 950))
    """
    if num_warmup < MIN_WARMUP_FOR_METRIC:
        return ()
    init, term, base = INIT_BUFFER, TERM_BUFFER, BASE_WINDOW
    if init + term + base > num_warmup:
        init, term = int(0.15 * num_warmup), int(0.1 * num_warmup)
        base = num_warmup - init - term
    last = num_warmup - term
    start, size = init, base
    end = start + size
    windows = [(start, end)]
    while end < last:
        start, size = end, 2 * size
        # A window whose successor would not fit before the terminal buffer runs to it.
        end = last if start + 2 * size >= last else start + size
        windows.append((start, end))
    return tuple(windows)


class Schedule(NamedTuple):
    """Per warmup iteration: whether it feeds the variance estimate, ends a window."""

    collect: Any
    window_end: Any

    @classmethod
    def build(cls, be: Backend, num_warmup: int) -> Schedule:
        """Return the tables for ``num_warmup`` iterations, on ``be``'s device."""
        collect = np.zeros(max(num_warmup, 1), dtype=bool)
        window_end = np.zeros_like(collect)
        for start, end in slow_windows(num_warmup):
            collect[start:end] = True
            window_end[end - 1] = True
        xp = be.xp
        return cls(xp.asarray(collect, device=be.device), xp.asarray(window_end, device=be.device))


class Adaptation(NamedTuple):
    """Each chain's step size, dual-averaging state, inverse mass and Welford sums."""

    log_eps: Any  # (C,) the step size in use
    mu: Any  # (C,) where dual averaging shrinks towards
    log_eps_bar: Any  # (C,) the averaged iterate: the step size after warmup
    h_bar: Any  # (C,) the running mean of target_accept - accept
    t: Any  # (C,) iterations since the last restart
    inv_mass: Any  # (C, d)
    count: Any  # (C,) draws in the current window
    mean: Any  # (C, d)
    m2: Any  # (C, d) sum of squared deviations (Welford)


def adapt_init(xp: Any, log_eps: Any, inv_mass: Any) -> Adaptation:
    """Return the adaptation state before the first iteration."""
    zeros = xp.zeros_like(log_eps)
    return Adaptation(
        log_eps=log_eps,
        mu=log_eps + math.log(10.0),
        log_eps_bar=zeros,
        h_bar=zeros,
        t=zeros,
        inv_mass=inv_mass,
        count=zeros,
        mean=xp.zeros_like(inv_mass),
        m2=xp.zeros_like(inv_mass),
    )


def adapt_update(
    xp: Any,
    state: Adaptation,
    it: Any,
    done: Any,
    accept: Any,
    x: Any,
    *,
    schedule: Schedule,
    num_warmup: int,
    target_accept: float,
) -> Adaptation:
    """Return the state after the chains where ``done`` finished warmup iteration ``it``.

    ``accept`` ``(C,)`` is each chain's acceptance statistic and ``x`` ``(C, d)`` its new
    position. Chains not ``done``, or past warmup, keep their state.
    """
    warm = done & (it < num_warmup)
    at = xp.clip(it, 0, num_warmup - 1)
    collect = warm & xp.take(schedule.collect, at)
    window_end = warm & xp.take(schedule.window_end, at)
    last = warm & (it == num_warmup - 1)

    # Dual averaging (Hoffman & Gelman 2014, eq. 6).
    t = state.t + 1.0
    eta = 1.0 / (t + T0)
    h_bar = (1.0 - eta) * state.h_bar + eta * (target_accept - accept)
    log_eps = state.mu - xp.sqrt(t) / GAMMA * h_bar
    w = t**-KAPPA
    log_eps_bar = w * log_eps + (1.0 - w) * state.log_eps_bar

    # Welford's running variance over the slow window.
    c = collect[:, None]
    count = state.count + xp.astype(collect, state.count.dtype)
    n = xp.maximum(count, 1.0)[:, None]
    delta = x - state.mean
    mean = xp.where(c, state.mean + delta / n, state.mean)
    m2 = xp.where(c, state.m2 + delta * (x - mean), state.m2)

    # A window's end: the regularized variance becomes the inverse mass matrix, the
    # estimate restarts, and dual averaging restarts from the averaged step size.
    e = window_end[:, None]
    var = m2 / xp.maximum(n - 1.0, 1.0)
    shrunk = (n / (n + SHRINK_DRAWS)) * var + SHRINK_TARGET * (SHRINK_DRAWS / (n + SHRINK_DRAWS))
    inv_mass = xp.where(e, shrunk, state.inv_mass)
    zero = xp.zeros_like(t)
    restart = {
        "log_eps": xp.where(window_end, log_eps_bar, log_eps),
        "mu": xp.where(window_end, log_eps_bar + math.log(10.0), state.mu),
        "log_eps_bar": xp.where(window_end, zero, log_eps_bar),
        "h_bar": xp.where(window_end, zero, h_bar),
        "t": xp.where(window_end, zero, t),
    }
    # The last warmup iteration fixes the step size at the averaged iterate.
    restart["log_eps"] = xp.where(last, log_eps_bar, restart["log_eps"])
    new = Adaptation(
        **restart,
        inv_mass=inv_mass,
        count=xp.where(window_end, zero, count),
        mean=xp.where(e, xp.zeros_like(mean), mean),
        m2=xp.where(e, xp.zeros_like(m2), m2),
    )
    # Chains that did not finish a warmup iteration keep everything.
    return Adaptation(
        *(
            xp.where(xp.reshape(warm, warm.shape + (1,) * (a.ndim - 1)), a, b)
            for a, b in zip(new, state, strict=True)
        )
    )


def initial_step_size(
    be: Backend,
    f: Callable[[Any], Any],
    point: Any,
    inv_mass: Any,
    momentum: Callable[[Any], tuple[Any, Any]],
    carry: Any,
) -> Any:
    """Return a first step size per chain: doubled or halved until one leapfrog step's
    acceptance probability crosses 0.8 (Hoffman & Gelman 2014, Algorithm 4).

    ``momentum(carry) -> (carry, z)`` draws standard normals ``(C, d)``: a fresh momentum
    for each trial, as Stan does.
    """
    xp = be.xp
    log_target = math.log(SEARCH_ACCEPT)
    logp = logp_of(point)
    eps0 = xp.ones(logp.shape, dtype=logp.dtype, device=be.device)
    flags = xp.zeros(logp.shape, dtype=xp.bool, device=be.device)
    trial0 = xp.asarray(0, dtype=xp.int32, device=be.device)

    def cond(state: Any) -> Any:
        _, _, done, trial, _ = state
        return xp.logical_not(xp.all(done)) & (trial < MAX_SEARCH)

    def body(state: Any) -> Any:
        eps, up, done, trial, carry = state
        carry, z = momentum(carry)
        p = z / xp.sqrt(inv_mass)
        new, p_new = leapfrog(xp, f, point, p, eps, inv_mass)
        h0 = -logp + kinetic(xp, p, inv_mass)
        log_accept = h0 - (-logp_of(new) + kinetic(xp, p_new, inv_mass))
        log_accept = xp.where(xp.isnan(log_accept), -xp.inf, log_accept)
        first = trial == 0
        up = xp.where(first, log_accept > log_target, up)
        crossed = xp.where(up, ~(log_accept > log_target), ~(log_accept < log_target))
        stuck = (eps > 1e7) | (eps < 1e-10)
        done = done | (~first & crossed) | stuck
        eps = xp.where(done, eps, xp.where(up, 2.0 * eps, 0.5 * eps))
        return eps, up, done, trial + 1, carry

    eps, *_ = be.while_loop(cond, body, (eps0, flags, flags, trial0, carry))
    return eps
