"""Convergence diagnostics written against the array API: split-R-hat and ESS.

Both follow Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC":

- every chain is split in halves (the middle draw of an odd length is dropped), so a
  drifting chain disagrees with itself;
- **rank normalization**: the pooled draws of a parameter are replaced by the normal
  scores ``Phi^{-1}((rank - 3/8) / (S + 1/4))`` of their average ranks, which makes both
  diagnostics well defined for heavy tails and invariant to monotone transforms;
- **R-hat** is the larger of the classic split-R-hat (Gelman et al., BDA3) of the
  rank-normalized draws (bulk) and of the rank-normalized ``|draw - median|`` (folded:
  it sees chains that differ in scale only);
- **bulk ESS** is the effective sample size of the rank-normalized split chains, with
  the autocorrelations of all chains combined as Stan does and Geyer's initial
  monotone sequence estimator (with Stan's improvement for antithetic chains); **tail
  ESS** is the smaller ESS of the indicators of the 5% and 95% quantiles.

Autocovariances come from the FFT (``xp.fft``); ``Phi^{-1}`` is Wichura's AS241.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import anyxp

__all__ = ["ess", "r_hat"]

# Wichura (1988), Algorithm AS241 (PPND16): rational approximations of the normal
# quantile, coefficients highest power first: (numerator, denominator) for
# |p - 1/2| <= 0.425 in r = 0.180625 - q^2, then for r = sqrt(-log(min(p, 1-p))) - 1.6
# while r <= 5, then r - 5 beyond.
_CENTRAL = (
    (
        2.5090809287301226727e3,
        3.3430575583588128105e4,
        6.7265770927008700853e4,
        4.5921953931549871457e4,
        1.3731693765509461125e4,
        1.9715909503065514427e3,
        1.3314166789178437745e2,
        3.3871328727963666080e0,
    ),
    (
        5.2264952788528545610e3,
        2.8729085735721942674e4,
        3.9307895800092710610e4,
        2.1213794301586595867e4,
        5.3941960214247511077e3,
        6.8718700749205790830e2,
        4.2313330701600911252e1,
        1.0,
    ),
)
_NEAR_TAIL = (
    (
        7.74545014278341407640e-4,
        2.27238449892691845833e-2,
        2.41780725177450611770e-1,
        1.27045825245236838258e0,
        3.64784832476320460504e0,
        5.76949722146069140550e0,
        4.63033784615654529590e0,
        1.42343711074968357734e0,
    ),
    (
        1.05075007164441684324e-9,
        5.47593808499534494600e-4,
        1.51986665636164571966e-2,
        1.48103976427480074590e-1,
        6.89767334985100004550e-1,
        1.67638483018380384940e0,
        2.05319162663775882187e0,
        1.0,
    ),
)
_FAR_TAIL = (
    (
        2.01033439929228813265e-7,
        2.71155556874348757815e-5,
        1.24266094738807843860e-3,
        2.65321895265761230930e-2,
        2.96560571828504891230e-1,
        1.78482653991729133580e0,
        5.46378491116411436990e0,
        6.65790464350110377720e0,
    ),
    (
        2.04426310338993978564e-15,
        1.42151175831644588870e-7,
        1.84631831751005468180e-5,
        7.86869131145613259100e-4,
        1.48753612908506148525e-2,
        1.36929880922735805310e-1,
        5.99832206555887937690e-1,
        1.0,
    ),
)

#: Tail ESS watches these quantiles.
TAIL_QUANTILES = (0.05, 0.95)


def r_hat(samples: Any, /) -> Any:
    """Return the rank-normalized split-R-hat of each parameter (Vehtari et al. 2021).

    Parameters
    ----------
    samples
        Draws of shape ``(chains, draws)`` or ``(chains, draws, *params)``, an array of
        any array-API library; at least 4 draws per chain.

    Returns
    -------
    array
        Shape ``params`` (0-d for one parameter), of the input's library. Values near 1
        mean the chains agree; above 1.01 they have not mixed (run longer, or
        reparametrize). NaN for a parameter that never varies.

    Examples
    --------
    >>> import numpy as np
    >>> from anyxp.mcmc import r_hat
    >>> draws = np.random.default_rng(0).standard_normal((4, 1000))
    >>> bool(abs(r_hat(draws) - 1.0) < 0.01)
    True
    >>> bool(r_hat(draws + np.arange(4)[:, None]) > 1.5)  # chains centred apart
    True
    """
    be, x, shape = _prepare(samples, "r_hat")
    return be.xp.reshape(_compiled(be, "r_hat")(x), shape)


def ess(samples: Any, /, *, kind: str = "bulk") -> Any:
    """Return the effective sample size of each parameter (Vehtari et al. 2021).

    Parameters
    ----------
    samples
        Draws of shape ``(chains, draws)`` or ``(chains, draws, *params)``, an array of
        any array-API library; at least 4 draws per chain.
    kind
        ``"bulk"``: the ESS of the rank-normalized draws, for the mean and central
        quantities (the usual Monte Carlo error of a posterior mean is about
        ``sd / sqrt(ess)``). ``"tail"``: the smaller ESS of the 5% and 95% quantiles.

    Returns
    -------
    array
        Shape ``params`` (0-d for one parameter), of the input's library; at most
        ``S * log10(S)`` for ``S`` draws in all (antithetic chains exceed ``S``).

    Examples
    --------
    >>> import numpy as np
    >>> from anyxp.mcmc import ess
    >>> rng = np.random.default_rng(0)
    >>> x = np.zeros((4, 2000))
    >>> for t in range(1, 2000):  # AR(1) chains with rho = 0.9: ESS ~ S (1 - rho) / (1 + rho)
    ...     x[:, t] = 0.9 * x[:, t - 1] + rng.standard_normal(4)
    >>> 300 < float(ess(x)) < 600
    True
    """
    if kind not in ("bulk", "tail"):
        raise ValueError(f"kind must be 'bulk' or 'tail', got {kind!r}")
    be, x, shape = _prepare(samples, "ess")
    return be.xp.reshape(_compiled(be, f"ess_{kind}")(x), shape)


# -- the computations, on draws of shape (chains, draws, P) ------------------------------------
def _r_hat(xp: Any, x: Any) -> Any:
    split = _split(xp, x)
    bulk = _rhat(xp, _rank_normalize(xp, split))
    folded = _rhat(xp, _rank_normalize(xp, xp.abs(split - _median(xp, split))))
    return xp.maximum(bulk, folded)


def _ess_bulk(xp: Any, x: Any) -> Any:
    return _ess(xp, _rank_normalize(xp, _split(xp, x)))


def _ess_tail(xp: Any, x: Any) -> Any:
    split = _split(xp, x)
    flat = _pooled_sorted(xp, split)
    tails = [
        _ess(xp, xp.astype(split <= _quantile(xp, flat, q)[None, None, :], split.dtype))
        for q in TAIL_QUANTILES
    ]
    return xp.minimum(*tails)


_COMPUTATIONS = {"r_hat": _r_hat, "ess_bulk": _ess_bulk, "ess_tail": _ess_tail}


@functools.lru_cache(maxsize=32)
def _compiled(be: anyxp.Backend, which: str) -> Callable[[Any], Any]:
    """The computation ``which``, compiled where the backend compiles (one program, not
    one dispatch per operation)."""
    return be.jit(functools.partial(_COMPUTATIONS[which], be.xp))


# -- shared steps ----------------------------------------------------------------------------
def _prepare(samples: Any, who: str) -> tuple[anyxp.Backend, Any, tuple[int, ...]]:
    """The backend, the draws as ``(chains, draws, P)`` floats, and the params' shape."""
    if not hasattr(samples, "shape"):
        raise TypeError(
            f"{who} takes an array of shape (chains, draws[, ...]), got "
            f"{type(samples).__name__}; pass numpy.asarray(...) or a backend's array"
        )
    be = anyxp.backend(like=samples)
    xp = be.xp
    shape = tuple(samples.shape)
    if len(shape) < 2 or shape[1] < 4:
        raise ValueError(
            f"{who} needs draws of shape (chains, draws[, params...]) with at least 4 draws "
            f"per chain, got shape {shape}; a single chain is shape (1, draws)"
        )
    x = samples
    if not xp.isdtype(x.dtype, "real floating"):
        x = xp.astype(x, be.float_dtype)
    params = shape[2:]
    return be, xp.reshape(x, (shape[0], shape[1], math.prod(params))), params


def _split(xp: Any, x: Any) -> Any:
    """Each chain's first and second half as separate chains: ``(2m, n // 2, P)``."""
    n = x.shape[1]
    half = n // 2
    return xp.concat([x[:, :half, :], x[:, n - half :, :]], axis=0)


def _pooled_sorted(xp: Any, x: Any) -> Any:
    """Each parameter's draws pooled over chains and sorted: ``(P, S)``."""
    m, n, p = x.shape
    return xp.sort(xp.reshape(xp.permute_dims(x, (2, 0, 1)), (p, m * n)), axis=1)


def _quantile(xp: Any, flat_sorted: Any, q: float) -> Any:
    """The ``q`` quantile of each row of ``flat_sorted`` (linear interpolation): ``(P,)``."""
    s = flat_sorted.shape[1]
    pos = q * (s - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, s - 1)
    frac = pos - lo
    return flat_sorted[:, lo] * (1.0 - frac) + flat_sorted[:, hi] * frac


def _median(xp: Any, x: Any) -> Any:
    """Each parameter's median over all draws, shaped to broadcast against ``x``."""
    return xp.reshape(_quantile(xp, _pooled_sorted(xp, x), 0.5), (1, 1, x.shape[2]))


def _rank_normalize(xp: Any, x: Any) -> Any:
    """The normal scores of the pooled average ranks (ties share their mean rank)."""
    m, n, p = x.shape
    s = m * n
    values = xp.reshape(xp.permute_dims(x, (2, 0, 1)), (p, s))
    z = _ndtri(xp, (_average_ranks(xp, values) - 0.375) / (s + 0.25))
    return xp.permute_dims(xp.reshape(z, (p, m, n)), (1, 2, 0))


def _average_ranks(xp: Any, values: Any) -> Any:
    """Each row's ranks from 1, tied values sharing the mean of their ranks: ``(P, S)``.

    Ties are common: a rejected HMC proposal repeats the previous draw.
    """
    p, s = values.shape
    order = xp.argsort(values, axis=1, stable=True)
    ordered = xp.take_along_axis(values, order, axis=1)
    index = xp.astype(xp.arange(s, device=_device(values)), values.dtype)[None, :]
    change = ordered[:, 1:] != ordered[:, :-1]
    edge = xp.ones((p, 1), dtype=xp.bool, device=_device(values))
    starts = xp.concat([edge, change], axis=1)
    ends = xp.concat([change, edge], axis=1)
    # Each position's tie group: its first index (running max of the group starts) and
    # last index (running min of the group ends, from the right).
    first = -_running_min(xp, xp.where(starts, -index, xp.inf))
    last = xp.flip(_running_min(xp, xp.flip(xp.where(ends, index, xp.inf), axis=1)), axis=1)
    ranks = (first + last) / 2.0 + 1.0
    return xp.take_along_axis(ranks, xp.argsort(order, axis=1), axis=1)


def _rhat(xp: Any, x: Any) -> Any:
    """The classic R-hat of chains ``x`` ``(m, n, P)`` (BDA3, eq. 11.4): ``(P,)``."""
    n = x.shape[1]
    within = xp.mean(xp.var(x, axis=1, correction=1), axis=0)
    between = n * xp.var(xp.mean(x, axis=1), axis=0, correction=1)
    var_plus = (n - 1) / n * within + between / n
    return xp.sqrt(var_plus / within)


def _ess(xp: Any, x: Any) -> Any:
    """Stan's ESS of chains ``x`` ``(m, n, P)``: ``(P,)``."""
    m, n, p = x.shape
    s = m * n
    dt = x.dtype
    chain_mean = xp.mean(x, axis=1)
    centred = xp.permute_dims(x - chain_mean[:, None, :], (0, 2, 1))  # (m, P, n)
    size = 1 << (2 * n - 1).bit_length()  # zero padding: no circular wrap-around
    spectrum = xp.fft.rfft(centred, n=size, axis=-1)
    acov = xp.fft.irfft(spectrum * xp.conj(spectrum), n=size, axis=-1)
    acov = acov[..., :n] / n  # (m, P, n), biased as Stan's
    chain_var = acov[..., 0] * (n / (n - 1))
    mean_var = xp.mean(chain_var, axis=0)
    var_plus = mean_var * ((n - 1) / n)
    if m > 1:
        var_plus = var_plus + xp.var(chain_mean, axis=0, correction=1)
    rho = 1.0 - (mean_var[:, None] - xp.mean(acov, axis=0)) / var_plus[:, None]  # (P, n)
    rho = xp.concat([xp.ones((p, 1), dtype=dt, device=_device(x)), rho[:, 1:]], axis=1)

    # Geyer's initial positive sequence over pairs of lags (2k, 2k+1), as far as Stan
    # looks (lags below n - 3), then his initial monotone sequence.
    pairs = max((n - 3) // 2, 1)
    even = rho[:, 0 : 2 * pairs + 1 : 2]  # (P, pairs + 1)
    sums = even[:, :pairs] + rho[:, 1 : 2 * pairs : 2]
    kept = _running_min(xp, xp.astype(sums >= 0, dt))  # 1 up to the first negative pair
    monotone = _running_min(xp, sums)
    tau = -1.0 + 2.0 * xp.sum(monotone * kept, axis=1)
    # Stan's improvement: add the first dropped pair's even lag when it is positive.
    first_dropped = xp.astype(xp.sum(kept, axis=1), xp.int32)
    at = xp.arange(pairs + 1, dtype=xp.int32, device=_device(x))[None, :]
    next_even = xp.sum(xp.where(at == first_dropped[:, None], even, 0.0), axis=1)
    tau = tau + xp.maximum(next_even, 0.0)
    tau = xp.maximum(tau, 1.0 / math.log10(s))
    return xp.minimum(s / tau, s * math.log10(s))


def _running_min(xp: Any, a: Any) -> Any:
    """The running minimum along the last axis (Hillis-Steele: log2 n passes)."""
    n, shift = a.shape[-1], 1
    while shift < n:
        pad = xp.full((*a.shape[:-1], shift), xp.inf, dtype=a.dtype, device=_device(a))
        a = xp.minimum(a, xp.concat([pad, a[..., :-shift]], axis=-1))
        shift *= 2
    return a


def _ndtri(xp: Any, p: Any) -> Any:
    """The standard normal quantile of ``p`` in (0, 1) (Wichura's AS241)."""
    q = p - 0.5
    r = 0.180625 - q * q
    central = q * _ratio(_CENTRAL, r)
    r = xp.sqrt(-xp.log(xp.where(q <= 0, p, 1.0 - p)))
    tail = xp.where(r <= 5.0, _ratio(_NEAR_TAIL, r - 1.6), _ratio(_FAR_TAIL, r - 5.0))
    tail = xp.where(q < 0, -tail, tail)
    return xp.where(xp.abs(q) <= 0.425, central, tail)


def _ratio(table: tuple[tuple[float, ...], tuple[float, ...]], r: Any) -> Any:
    """A rational function of ``r``: Horner's rule on both polynomials of ``table``."""
    num, den = 0.0 * r, 0.0 * r
    for a in table[0]:
        num = num * r + a
    for b in table[1]:
        den = den * r + b
    return num / den


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)
