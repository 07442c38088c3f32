"""``anyxp.gsa.sobol``: Sobol' sensitivity indices of a model, on any backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.gsa._checks import (
    check_bounds,
    check_design,
    check_finite,
    check_n,
    check_options,
)
from anyxp.gsa._design import Design
from anyxp.gsa._estimators import analyze
from anyxp.gsa._evaluate import evaluate

__all__ = ["SobolResult", "saltelli_sample", "sobol"]


@dataclass(frozen=True)
class SobolResult:
    """The result of :func:`sobol`: indices, their intervals, and what they cost.

    For a model with one output (shape ``(n,)``) ``S1``, ``ST`` and their ``_conf`` have
    shape ``(d,)`` and ``S2`` shape ``(d, d)``; for ``k`` outputs (``(n, k)``) each gains a
    leading axis of length ``k``: ``S1[i]`` are the indices of output ``i``. All are arrays
    of the backend that ran the model.

    Attributes
    ----------
    S1, ST : array
        First-order and total indices of each parameter.
    S2 : array or None
        Second-order indices: ``S2[..., j, l]`` for ``j < l``, NaN elsewhere (None unless
        ``second_order=True``).
    S1_conf, ST_conf, S2_conf : array or None
        Half-widths of the ``confidence`` intervals: the index is ``S1 ± S1_conf``. None
        when ``resamples`` is 0.
    n : int
        Base samples (rows of ``A``): a power of two.
    evaluations : int
        Rows the model was evaluated at: ``n (d + 2)``, or ``n (2d + 2)`` with second order.
    outputs : array
        The model's outputs, in the row order of :func:`saltelli_sample` (SALib's):
        ``SALib.analyze.sobol.analyze`` takes them as they are.
    confidence : float
        The level of the intervals.
    resamples : int
        Bootstrap resamples behind the intervals.
    backend : Backend
        The backend of the arrays.
    """

    S1: Any
    ST: Any
    S2: Any
    S1_conf: Any
    ST_conf: Any
    S2_conf: Any
    n: int
    evaluations: int
    outputs: Any = field(repr=False)
    confidence: float
    resamples: int
    backend: Backend = field(repr=False)


def sobol(
    model: Callable[[Any], Any],
    bounds: Any,
    n: int,
    *,
    second_order: bool = False,
    seed: int = 0,
    backend: str | Backend | None = None,
    confidence: float = 0.95,
    resamples: int = 100,
    chunk: int | None = None,
    progress: bool = False,
) -> SobolResult:
    """Estimate the Sobol' indices of ``model``'s parameters over independent uniform ranges.

    The model is evaluated on Saltelli's design over scrambled Sobol' points (see
    :func:`saltelli_sample`), in batches of rows; the indices use the estimators of Saltelli
    et al. (2010) for first order, Jansen (1999) for total and Saltelli (2002) for second
    order, with bootstrap confidence intervals, all vectorized on the backend. On an MPI
    comm (``backend="numpy+mpi"`` under ``mpiexec``) each rank evaluates a block of rows,
    and every rank gets the indices one process would compute; on dask the blocks are
    tasks, on a ``distributed`` cluster when a client is active.

    Parameters
    ----------
    model : callable
        ``model(x)`` takes an ``(rows, d)`` array of the backend (on its device, in its
        float dtype) and returns shape ``(rows,)``, or ``(rows, k)`` for ``k`` outputs.
        Write it with ``xp = anyxp.backend(like=x).xp``: on dask it is given numpy blocks.
    bounds : array_like
        ``(d, 2)``: each parameter's ``(low, high)``, the range it is uniform on.
    n : int
        Base samples: a power of two (another ``n`` is rounded up, with a warning). The
        model runs ``n (d + 2)`` times, or ``n (2d + 2)`` with ``second_order``.
    second_order : bool, optional
        Also estimate the indices of pairs, ``S2`` (default False).
    seed : int, optional
        Seeds the scrambling and the bootstrap; one seed gives the same design, outputs
        and indices on every backend and every rank.
    backend : str or Backend, optional
        The backend that runs the model (default: inferred from ``bounds``, else the
        current default). ``"numpy+mpi"`` (or any backend with ``comm="mpi"``) spreads the
        rows over MPI ranks.
    confidence : float, optional
        Level of the intervals (default 0.95).
    resamples : int, optional
        Bootstrap resamples (default 100, as SALib); 0 skips the intervals.
    chunk : int, optional
        Rows per call of ``model``, to bound its memory (default: all of a rank's rows at
        once; on dask, blocks of ``rows / 32``, at least 1024).
    progress : bool, optional
        Show a progress bar over the rows (tqdm, rank 0; without ``chunk``, 20 chunks);
        on dask, one tick per block (``distributed``'s bar on an active client).

    Returns
    -------
    SobolResult
        ``S1``, ``ST`` (and ``S2``), their ``_conf`` half-widths, ``n``, ``evaluations``
        and the ``outputs``.

    Raises
    ------
    ValueError
        For bounds with ``low >= high``, a model output of the wrong shape, an output that
        is NaN or infinite somewhere (the message names the first such row), or a
        constant output.
    TypeError
        For a model that returns something other than a real array of its input's library.

    Examples
    --------
    The Ishigami function, whose indices are known (Ishigami and Homma, 1990):

    >>> import math
    >>> import anyxp
    >>> from anyxp.gsa import sobol
    >>> def ishigami(x, a=7.0, b=0.1):
    ...     xp = anyxp.backend(like=x).xp
    ...     s1 = xp.sin(x[:, 0])
    ...     return s1 + a * xp.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * s1
    >>> res = sobol(ishigami, [(-math.pi, math.pi)] * 3, 2**12)

    An estimate of an index that is 0 may fall just below it:

    >>> res.S1.round(2).tolist(), res.ST.round(2).tolist()
    ([0.31, 0.44, -0.0], [0.56, 0.44, 0.24])
    >>> res.evaluations
    20480
    """
    import anyxp

    b = check_bounds(bounds)
    n = check_n(n)
    check_design(b.shape[0], second_order, seed)
    check_options(model, confidence, resamples, chunk)
    be = anyxp.backend(backend, like=bounds)
    design = Design.sobol(b, n, bool(second_order), int(seed))
    y, vector = evaluate(be, model, design, chunk, progress)
    # A lazy backend's outputs are small next to the model's work, and the bootstrap's
    # random gathers are what dask does worst: the analysis runs on the host there.
    here = anyxp.backend("numpy", dtype="float64") if be.lazy else be
    if be.lazy:
        y = here.asarray(be.to_numpy(y))
    check_finite(y, here.xp, here.to_numpy, design.rows_at)
    found = analyze(here, y, design, int(resamples), float(confidence), int(seed))
    indices = {name: _shaped(be, here, found[name], vector) for name in _INDICES}
    return SobolResult(
        **indices,
        n=design.n,
        evaluations=design.rows,
        outputs=_shaped(be, here, y, vector, samples_first=True),
        confidence=float(confidence),
        resamples=int(resamples),
        backend=be,
    )


_INDICES = ("S1", "ST", "S2", "S1_conf", "ST_conf", "S2_conf")


def _shaped(be: Backend, here: Backend, x: Any, vector: bool, samples_first: bool = False) -> Any:
    """``x`` (``(d, ..., k)``, or ``(rows, k)`` when ``samples_first``) as the result holds it.

    The output axis ``k`` goes first (or away, for a model that returns a vector), and an
    array the analysis made on the host (``here``) becomes one of ``be``.
    """
    if x is None:
        return None
    if vector:
        x = x[..., 0]
    elif not samples_first:
        x = here.xp.permute_dims(x, (x.ndim - 1, *range(x.ndim - 1)))
    return x if here is be else be.asarray(here.to_numpy(x))


def saltelli_sample(
    bounds: Any,
    n: int,
    *,
    second_order: bool = False,
    seed: int = 0,
    backend: str | Backend | None = None,
) -> Any:
    """Return the rows :func:`sobol` evaluates its model at, ``(n (d + 2), d)``.

    From ``n`` Owen-scrambled Sobol' points in ``2d`` dimensions (Joe and Kuo's direction
    numbers), ``A`` takes the first ``d`` coordinates and ``B`` the last ``d``. Sample ``i``
    is ``d + 2`` rows: ``A_i``; for each parameter ``j``, ``A_i`` with coordinate ``j``
    from ``B_i``; then ``B_i``. With ``second_order`` it is ``2d + 2`` rows: after those
    of ``A``, for each ``j``, ``B_i`` with coordinate ``j`` from ``A_i``. This is SALib's
    layout (``SALib.sample.sobol.sample``), scaled to ``bounds`` in the same way.

    Parameters
    ----------
    bounds, n, second_order, seed, backend
        As for :func:`sobol`.

    Returns
    -------
    array
        The design, an array of the backend.

    Examples
    --------
    >>> from anyxp.gsa import saltelli_sample
    >>> x = saltelli_sample([(0.0, 1.0), (10.0, 20.0)], 4)
    >>> x.shape  # 4 samples of d + 2 = 4 rows
    (16, 2)
    >>> a, ab0, ab1, b = x[:4]  # sample 0: A, A with x0 from B, A with x1 from B, B
    >>> bool(ab0[0] == b[0] and ab0[1] == a[1] and ab1[0] == a[0] and ab1[1] == b[1])
    True
    """
    import anyxp

    b = check_bounds(bounds)
    n = check_n(n)
    check_design(b.shape[0], second_order, seed)
    design = Design.sobol(b, n, bool(second_order), int(seed))
    return anyxp.backend(backend, like=bounds).asarray(design.rows_at(np.arange(design.rows)))
