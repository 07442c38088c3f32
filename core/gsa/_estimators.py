"""Sobol' indices from the outputs of a Saltelli design, and their bootstrap intervals.

With ``f_A``, ``f_B``, ``f_AB^j``, ``f_BA^j`` the outputs at the design's rows and ``V`` the
variance of ``f_A`` and ``f_B`` together (the estimators of SALib, so that both give the same
numbers on the same outputs):

- first order, Saltelli et al. (2010): ``S1_j = mean(f_B (f_AB^j - f_A)) / V``;
- total, Jansen (1999): ``ST_j = mean((f_A - f_AB^j)**2) / (2 V)``;
- second order, Saltelli (2002):
  ``S2_jl = mean(f_BA^j f_AB^l - f_A f_B) / V - S1_j - S1_l``, for ``j < l``.

The outputs are first standardized (mean 0, standard deviation 1 over all rows, per
output), as SALib does: the second-order estimator is not shift-invariant, and centred
outputs make it less noisy. Every estimator works on arrays whose axis ``-2`` runs over
samples, so one call computes the indices of many bootstrap resamples at once.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.gsa._design import Design
from anyxp.gsa._evaluate import index_dtype
from anyxp.random import Key

__all__ = ["analyze"]

#: Elements of the largest temporary array of one batch of bootstrap resamples.
_BATCH_ELEMENTS = 2**23


def analyze(
    be: Backend, y: Any, design: Design, resamples: int, confidence: float, seed: int
) -> dict[str, Any]:
    """Return ``S1, ST, S2`` (``S2``: None without second order) and their ``_conf``.

    ``y`` holds the outputs at the design's rows, ``(rows, k)``, on ``be``. Indices have
    shape ``(d, k)`` and ``S2`` shape ``(d, d, k)``, NaN outside ``j < l``. A ``_conf`` is
    the half-width of a normal interval of level ``confidence`` around the index, with the
    standard deviation of ``resamples`` bootstrap estimates (rows of ``A``, ``B`` and the
    rest drawn together, with replacement); None when ``resamples`` is 0.
    """
    xp = be.xp
    y = _standardized(be, y)
    parts = _split(xp, y, design)
    s1, st, s2 = _indices(xp, *parts)
    out = {"S1": s1, "ST": st, "S2": _upper(be, s2)}
    if resamples == 0:
        return out | {"S1_conf": None, "ST_conf": None, "S2_conf": None}
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    boot = _bootstrap(be, parts, design, resamples, seed)
    for name, draws in boot.items():
        out[f"{name}_conf"] = None if draws is None else z * xp.std(draws, axis=-2, correction=1)
    out["S2_conf"] = _upper(be, out["S2_conf"])
    return out


def _standardized(be: Backend, y: Any) -> Any:
    """``y`` with mean 0 and standard deviation 1 in each column; a constant column raises."""
    xp = be.xp
    sd = xp.std(y, axis=0)
    if not bool(xp.all(sd > 0)):
        constant = np.flatnonzero(~(be.to_numpy(sd) > 0)).tolist()
        if y.shape[1] == 1:
            which, its = "the model's output is", "its"
            fix = "check that the model uses its inputs"
        else:
            which, its = f"columns {constant} of the model's output are", "their"
            fix = "check that the model uses its inputs there, or drop those columns"
        raise ValueError(
            f"{which} the same at every row, so {its} variance and Sobol' indices are "
            f"undefined: {fix}"
        )
    return (y - xp.mean(y, axis=0)) / sd


def _split(xp: Any, y: Any, design: Design) -> tuple[Any, Any, Any, Any]:
    """``f_A, f_B`` as ``(n, k)`` and ``f_AB, f_BA`` as ``(d, n, k)`` (``f_BA``: None)."""
    d, group = design.d, design.group
    g = xp.reshape(y, (design.n, group, y.shape[1]))
    ab = xp.permute_dims(g[:, 1 : d + 1, :], (1, 0, 2))
    ba = xp.permute_dims(g[:, d + 1 : 2 * d + 1, :], (1, 0, 2)) if design.second_order else None
    return g[:, 0, :], g[:, group - 1, :], ab, ba


def _indices(xp: Any, a: Any, b: Any, ab: Any, ba: Any) -> tuple[Any, Any, Any]:
    """The estimators, samples on axis -2: ``a, b`` ``(..., n, k)``, ``ab, ba`` ``(d, ..., n, k)``."""
    var = xp.var(xp.concat([a, b], axis=-2), axis=-2)
    s1 = xp.mean(b * (ab - a), axis=-2) / var
    st = 0.5 * xp.mean((a - ab) ** 2, axis=-2) / var
    if ba is None:
        return s1, st, None
    a_times_b = xp.mean(a * b, axis=-2)
    # Row j: every l at once; (d, d, ..., k), meaningful above the diagonal.
    s2 = xp.stack(
        [
            (xp.mean(ba[j, ...] * ab, axis=-2) - a_times_b) / var - s1[j, ...] - s1
            for j in range(ab.shape[0])
        ]
    )
    return s1, st, s2


def _upper(be: Backend, s2: Any) -> Any:
    """``s2`` (``(d, d, ...)``) with NaN on and below the diagonal, as SALib reports it."""
    if s2 is None:
        return None
    xp, d = be.xp, s2.shape[0]
    upper = be.asarray(
        np.triu(np.ones((d, d), dtype=bool), 1).reshape((d, d) + (1,) * (s2.ndim - 2))
    )
    return xp.where(upper, s2, xp.full(s2.shape, xp.nan, dtype=s2.dtype, device=be.device))


def _bootstrap(
    be: Backend, parts: tuple[Any, Any, Any, Any], design: Design, resamples: int, seed: int
) -> dict[str, Any]:
    """The indices of ``resamples`` resamples of the samples, stacked on axis -2.

    Resample ``r`` draws its rows from its own key (the seed's, path ``(1, r)``), on the
    host, so the intervals are the same on every backend and rank and however the
    resamples are batched.
    """
    xp = be.xp
    n, k = parts[0].shape
    batch = max(1, _BATCH_ELEMENTS // (2 * design.group * n * k))
    draws: dict[str, list[Any]] = {"S1": [], "ST": [], "S2": []}
    for lo in range(0, resamples, batch):
        count = min(batch, resamples - lo)
        rows = np.concatenate([_resample(seed, r, n) for r in range(lo, lo + count)])
        index = be.asarray(rows, dtype=index_dtype(be))
        s1, st, s2 = _indices(xp, *(_take(xp, x, index, count) for x in parts))
        draws["S1"].append(s1)
        draws["ST"].append(st)
        draws["S2"].append(s2)
    return {
        name: None if found[0] is None else xp.concat(found, axis=-2)
        for name, found in draws.items()
    }


def _take(xp: Any, x: Any, index: Any, count: int) -> Any:
    """Rows ``index`` of ``x``'s samples (axis -2) as ``count`` resamples, ``(..., count, n, k)``."""
    if x is None:
        return None
    *lead, n, k = x.shape
    return xp.reshape(xp.take(x, index, axis=x.ndim - 2), (*lead, count, n, k))


def _resample(seed: int, r: int, n: int) -> np.ndarray:
    """Resample ``r``'s rows: ``n`` of ``range(n)`` with replacement."""
    rng = np.random.Generator(np.random.Philox(Key(seed, (1, r)).seed_sequence()))
    return rng.integers(0, n, n)
