"""One generic explicit Runge-Kutta stepper, and the eager loop that drives it.

The stepper is array-API code only. The eager loop runs it from Python with Python
floats for step control (low per-step overhead on numpy and torch). Compiled solves and
ensembles use the masked loop of ``anyxp.ode._masked`` instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from anyxp.backend import Backend
from anyxp.ode.tableaux import Tableau

SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0

RUNNING, SUCCESS, MAX_STEPS, STEP_COLLAPSED, NONFINITE, STIFF, TERMINATED = -1, 0, 1, 2, 3, 4, 5
MESSAGES = {
    SUCCESS: "The solver reached the end of the interval.",
    MAX_STEPS: "The solver took max_steps steps without reaching the end of the interval; "
    "raise max_steps, or check whether the problem is stiff.",
    STEP_COLLAPSED: "The step size fell below the resolution of the time variable: the "
    "solution may blow up or the problem may be stiff or singular here.",
    NONFINITE: "The state became NaN or infinite; the solution may blow up here, or f "
    "returned a non-finite value.",
    STIFF: "The problem became stiff: stability, not accuracy, limits the step of this "
    "explicit method. Use method='rodas5p' (or 'kvaerno5').",
    TERMINATED: "A terminal event ended the solve.",
}

# Hairer's stiffness test (DOPRI5, DOP853): from the NSTIFF-th accepted step on, a method
# whose steps sit at its stability boundary STIFF_STEPS times in a row (NONSTIFF_STEPS
# steps below it reset the count) stops with STIFF.
NSTIFF, STIFF_STEPS, NONSTIFF_STEPS, STIFF_MARGIN = 1000, 15, 6, 0.95


@dataclass(frozen=True)
class Span:
    """What both loops are asked: the interval, the tolerances, the step, the budget."""

    t0: float
    t1: float
    rtol: Any  # a float, or an array with one tolerance per state component
    atol: Any
    h: float | None  # the first step (adaptive) or the step (fixed); None: choose one
    fixed: bool
    max_steps: int
    max_step: float = math.inf
    #: The direction of integration, given where ``t0`` and ``t1`` are arrays whose values
    #: may not be known (a traced interval in the masked loop).
    sign: float | None = None
    #: The comm a state split across ranks lives on (``None``: the whole state is here).
    #: Every norm is then global, so every rank takes the same steps.
    comm: Any = None

    @property
    def direction(self) -> float:
        if self.sign is not None:
            return self.sign
        return 1.0 if self.t1 >= self.t0 else -1.0

    @property
    def resolution(self) -> float:
        """Below this a step cannot move ``t`` (a few float64 ulps of the span's ends)."""
        return 10 * math.ulp(max(abs(self.t0), abs(self.t1)))


@dataclass(frozen=True)
class Attempt:
    """One attempted step: what every method's ``attempt`` returns to the loops.

    ``err`` is the local error vector (``None`` for a fixed step); ``converged`` is
    ``None`` for a method without iterations, else whether they converged (an array for a
    batch); ``record`` is what the method's ``interpolate`` needs; ``counts`` adds to the
    solve's ``nfev``, ``njev`` and ``nlu``.
    """

    y_new: Any
    f_new: Any
    err: Any
    converged: Any
    record: Any
    counts: dict[str, Any]


_T = TypeVar("_T")


class once(Generic[_T]):
    """``functools.cached_property`` without its lock: computed on first access, then an
    instance attribute. (Before Python 3.12 the standard one takes an ``RLock`` on every
    access, which ``torch.compile`` cannot trace: a compiled step reads these.)"""

    def __init__(self, fn: Callable[[Any], _T]) -> None:
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, cls: type | None = None) -> _T:
        if obj is None:
            return self  # type: ignore[return-value]
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


def on_flat(
    xp: Any, f: Callable[..., Any], shape: tuple[int, ...], args: tuple[Any, ...], rows: bool
) -> Callable[[Any, Any], Any]:
    """``f(t, y, *args)`` on the flat states the steppers take: reshaped around ``f`` for a
    state of ``shape``, as it is for a flat one or for rows of a batch (``rows``), and
    ``f`` itself, no wrapper, when there are no ``args`` either."""
    if len(shape) == 1 or rows:
        return f if not args else (lambda t, y: f(t, y, *args))
    return lambda t, y: xp.reshape(f(t, xp.reshape(y, shape), *args), (-1,))


@functools.lru_cache(maxsize=32)
def _tableau_matrix(tab: Tableau) -> tuple[np.ndarray, tuple[slice, slice] | None]:
    """Rows ``b``, ``e``, ``a`` (zero-padded) and the dense matrix's rows of ``tab`` as one
    float64 matrix, and the index of the dense matrix in it (``None``: none)."""
    width = max(tab.stages, len(tab.dense[0]) if tab.dense else 0)
    rows = [tab.b, tab.e or (), *tab.a, *(tab.dense or ())]
    host = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        host[i, : len(row)] = row
    if tab.dense is None:
        return host, None
    start = 2 + len(tab.a)
    return host, (slice(start, start + len(tab.dense)), slice(0, len(tab.dense[0])))


def weighted_sum(weights: tuple[float, ...], ks: list[Any]) -> Any:
    """``Σ w_i k_i`` over the non-zero weights (``None`` when every weight is zero)."""
    out = None
    for w, k in zip(weights, ks, strict=True):
        if w != 0.0:
            out = w * k if out is None else out + w * k
    return out


def _col(v: Any, batched: bool) -> Any:
    """A per-trajectory scalar shaped to scale rows of a batch (or itself, unbatched)."""
    return v[:, None] if batched else v


def time_dtype(xp: Any, dtype: Any) -> Any:
    """The real dtype of times, steps and errors for a state of ``dtype`` (real or complex)."""
    if xp.isdtype(dtype, "complex floating"):
        return xp.float64 if dtype == xp.complex128 else xp.float32
    return dtype


@dataclass(frozen=True)
class Stepper:
    """An explicit tableau bound to a backend and a right-hand side on flat states.

    Unbatched, ``f(t, y)`` takes a Python float and a state of shape (n,); batched, ``t``
    has shape (B,) and ``y`` shape (B, n), and ``t`` and ``hs`` are per-row arrays.
    """

    be: Backend
    tab: Tableau
    f: Callable[[Any, Any], Any]
    dtype: Any
    batched: bool = False

    @property
    def order(self) -> int:
        return self.tab.error_order or self.tab.order

    @property
    def adaptive(self) -> bool:
        return self.tab.error_order is not None

    @property
    def has_dense(self) -> bool:
        return self.tab.has_dense

    @once
    def coefficients(self) -> tuple[Any, Any, Any, list[Any]]:
        """``b``, ``e``, the dense matrix and the rows of ``a`` as arrays of the state's
        dtype and device, made once per solve (not once per step): one array from a host
        matrix of them all, then views of its rows (one conversion instead of some twenty
        small ones, which on numpy cost more than a short solve's steps)."""
        tab, xp = self.tab, self.be.xp
        host, dense_at = _tableau_matrix(tab)
        m = xp.asarray(host, dtype=self.dtype, device=self.be.device)
        b, e = m[0, ...], m[1, ...]
        a_rows = [m[2 + i, : len(row)] for i, row in enumerate(tab.a)]
        dense = None if dense_at is None else m[dense_at]
        return b, e, dense, a_rows

    def error_norm(
        self, err: Any, y: Any, y_new: Any, rtol: float, atol: float, comm: Any = None
    ) -> Any:
        """The scaled error of an attempt (per row of a batch): 1 is the tolerance.

        With a second estimate (``tab.e3``, DOP853) ``err`` is the pair of both, blended as
        Hairer's code does: ``|e5|² / sqrt(n (|e5|² + 0.01 |e3|²))``, which stays honest
        where the 5th-order estimate alone is accidentally small. ``comm``: see
        :func:`error_norm`.
        """
        if self.tab.e3 is None:
            return error_norm(self.be.xp, err, y, y_new, rtol, atol, comm)
        xp = self.be.xp
        scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
        q5, q3 = (xp.abs(e) / scale for e in err)
        if comm is None:
            e5, e3, n, bad = _sum_of_squares(xp, q5), _sum_of_squares(xp, q3), y.shape[-1], 0
        else:
            (e5, e3), n, bad = global_sums(xp, comm, [q5**2, q3**2], y_new)
        denom = e5 + 0.01 * e3
        norm = e5 / xp.sqrt(xp.where(denom > 0, denom, 1.0) * n)
        return norm if comm is None else xp.where(bad > 0, xp.nan, norm)

    def _error(self, hs: Any, ks: Any) -> Any:
        """The error estimate(s) of an attempt from its stages (a list, or stacked)."""
        tab = self.tab
        if isinstance(ks, list):
            e5 = hs * weighted_sum(tab.e or (), ks)
            return e5 if tab.e3 is None else (e5, hs * weighted_sum(tab.e3, ks))
        xp, e = self.be.xp, self.coefficients[1]
        if ks.ndim == 2:  # one trajectory's stages, (s, n): a matrix product
            e5 = hs * (e @ ks)
            return e5 if tab.e3 is None else (e5, hs * (self.e3 @ ks))
        e5 = hs * xp.tensordot(e, ks, axes=1)
        if tab.e3 is None:
            return e5
        return e5, hs * xp.tensordot(self.e3, ks, axes=1)

    @once
    def e3(self) -> Any:
        """DOP853's 3rd-order error weights as an array (made once per solve)."""
        return self.be.xp.asarray(self.tab.e3, dtype=self.dtype, device=self.be.device)

    @property
    def predictive(self) -> bool:
        return False  # the I-controller (see :func:`step_factor`)

    #: Whether the error norm is already NaN for a non-finite step (the loop checks else).
    nonfinite_err = False

    @property
    def stiffness_bound(self) -> float | None:
        """The ``|h·λ|`` beyond which a step counts as stiff (``None``: no test)."""
        if self.tab.stiffness_stage is None:
            return None
        return STIFF_MARGIN * self.tab.stability_boundary

    def stiffness(
        self, hs: Any, y: Any, y_new: Any, f_new: Any, record: Any, comm: Any = None
    ) -> Any:
        """Hairer's estimate of ``|h·λ|`` for the dominant eigenvalue ``λ`` (per row).

        The stage taken at the step's end and ``f(t + h, y_new)`` differ by about
        ``J (y_s - y_new)``: their ratio of norms estimates ``|λ|`` at no extra evaluation
        (of the whole state, with a ``comm``).
        """
        xp = self.be.xp
        i = self.tab.stiffness_stage
        assert i is not None
        _, ks = record
        ks = ks if isinstance(ks, list) else [ks[j, ...] for j in range(i + 1)]
        y_stage = y + _col(hs, self.batched) * weighted_sum(self.tab.a[i], ks[:i])
        num = xp.sum(xp.abs(f_new - ks[i]) ** 2, axis=-1)
        den = xp.sum(xp.abs(y_new - y_stage) ** 2, axis=-1)
        if comm is not None:
            (num, den), _, _ = global_sums(xp, comm, [num, den], y_new)
        return abs(hs) * xp.sqrt(num / xp.where(den > 0, den, 1.0)) * xp.astype(den > 0, num.dtype)

    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        """One step of signed size ``hs`` from ``(t, y)`` where ``f(t, y) = f0``."""
        tab = self.tab
        if self.batched:
            return self._attempt_batched(t, y, f0, hs, fixed=fixed)
        if self.inplace:
            return self._attempt_in_buffer(t, y, f0, hs, fixed=fixed)
        ks = [f0]
        for i in range(1, tab.stages):
            incr = weighted_sum(tab.a[i], ks)
            yi = y if incr is None else y + hs * incr
            ks.append(self.f(t + tab.c[i] * hs, yi))
        y_new = y + hs * weighted_sum(tab.b, ks)
        f_new = ks[-1] if tab.fsal else self.f(t + hs, y_new)
        y_new, f_new = self.be.materialize(y_new, f_new)
        err = None if fixed else self._error(hs, ks)
        nfev = tab.stages - 1 + (0 if tab.fsal else 1)
        return Attempt(y_new, f_new, err, None, (t, ks), {"nfev": nfev})

    @once
    def inplace(self) -> bool:
        """Whether stages go into one preallocated matrix (backends with ``arrays.inplace``).

        Each stage's sum ``Σ a_ij k_j`` is then one product with a slice of that matrix
        instead of a Python loop of scaled additions: on small states, where every array
        operation costs its call overhead, DOP853's twelve stages take a tenth of the time.
        """
        return "arrays.inplace" in self.be.capabilities and not self.be.lazy

    def _attempt_in_buffer(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        """:meth:`attempt` with the stages written into the rows of one matrix."""
        xp, tab = self.be.xp, self.tab
        b, _, _, a_rows = self.coefficients
        stages, c, f = tab.stages, tab.c, self.f
        K = xp.empty((stages, *y.shape), dtype=y.dtype, device=self.be.device)
        K[0, ...] = f0
        for i in range(1, stages):
            K[i, ...] = f(t + c[i] * hs, y + hs * (a_rows[i][:i] @ K[:i, ...]))
        y_new = y + hs * (b @ K)
        f_new = K[-1, ...] if tab.fsal else self.f(t + hs, y_new)
        err = None if fixed else self._error(hs, K)
        nfev = tab.stages - 1 + (0 if tab.fsal else 1)
        return Attempt(y_new, f_new, err, None, (t, K), {"nfev": nfev})  # K: a fresh buffer

    def _attempt_batched(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        xp, tab = self.be.xp, self.tab
        b, _, _, a_rows = self.coefficients
        h = hs[:, None]
        ks = [f0]
        for i in range(1, tab.stages):
            incr = xp.tensordot(a_rows[i], xp.stack(ks), axes=1)  # (B, n)
            ks.append(self.f(t + tab.c[i] * hs, y + h * incr))
        K = xp.stack(ks)  # (s, B, n)
        y_new = y + h * xp.tensordot(b, K, axes=1)
        f_new = ks[-1] if tab.fsal else self.f(t + hs, y_new)
        err = None if fixed else self._error(h, K)
        nfev = tab.stages - 1 + (0 if tab.fsal else 1)
        return Attempt(y_new, f_new, err, None, (t, K), {"nfev": nfev})

    def record_rows(self, record: Any) -> tuple[Any, ...]:
        """A batched step's record as arrays with the batch axis first (to store by row)."""
        t, K = record
        return t, self.be.xp.permute_dims(K, (1, 0, 2))

    def from_rows(self, rows: tuple[Any, ...]) -> Any:
        """The record back from :meth:`record_rows`."""
        t, K = rows
        return t, self.be.xp.permute_dims(K, (1, 0, 2))

    def interpolate(self, theta: Any, hs: Any, y: Any, y_new: Any, record: Any) -> Any:
        """States at fractions ``theta`` of a step: shape (m, n), or (m, B, n) batched.

        ``theta`` has shape (m,), or (m, B) batched (each trajectory its own step).
        """
        xp = self.be.xp
        t, K = record
        if self.tab.extra_dense is not None:
            return self._interpolate_extended(theta, hs, t, y, y_new, K)
        dense = self.coefficients[2]
        if dense is None:  # a method without an interpolant: linear
            return y[None, ...] + theta[..., None] * (y_new - y)[None, ...]
        q = dense.shape[1]
        powers = xp.stack([theta ** (j + 1) for j in range(q)], axis=-1)  # (m, [B,] q)
        powers = xp.astype(powers, dense.dtype)  # real times, maybe complex states
        if self.batched and getattr(self.be.control, "compiled", False):
            # Elementwise products summed: one fused loop each, not two small dots.
            weights = xp.sum(powers[..., None] * dense.T[None, None, :, :], axis=-2)  # (m, B, s)
            mix = xp.sum(weights[..., None] * xp.permute_dims(K, (1, 0, 2))[None, ...], axis=2)
            return y[None, :, :] + hs[None, :, None] * mix
        weights = powers @ xp.permute_dims(dense, (1, 0))  # (m, [B,] s)
        if not self.batched:  # K: the stages as a list, or stacked (s, n)
            return y[None, :] + hs * (weights @ (xp.stack(K) if isinstance(K, list) else K))
        mix = xp.permute_dims(weights, (1, 0, 2)) @ xp.permute_dims(K, (1, 0, 2))  # (B, m, n)
        return y[None, :, :] + hs[None, :, None] * xp.permute_dims(mix, (1, 0, 2))

    def _interpolate_extended(self, theta: Any, hs: Any, t: Any, y: Any, y_new: Any, K: Any) -> Any:
        """DOP853's 7th-order interpolant: three more stages, then seven coefficients.

        The extra evaluations of ``f`` happen only for steps that are interpolated and are
        not counted in ``nfev``.
        """
        xp, tab = self.be.xp, self.tab
        ks = list(K) if isinstance(K, list) else [K[i, ...] for i in range(K.shape[0])]
        h = _col(hs, self.batched)
        for c, row in zip(tab.extra_c or (), tab.extra_a or (), strict=True):
            ks.append(self.f(t + c * hs, y + h * weighted_sum(row, ks)))
        dy, f_old, f_new = y_new - y, ks[0], ks[self.tab.stages - 1]
        coefficients = [dy, h * f_old - dy, 2 * dy - h * (f_new + f_old)]
        coefficients += [h * weighted_sum(row, ks) for row in tab.extra_dense or ()]
        x = theta[..., None]
        out = xp.zeros_like(x * y[None, ...])
        for i, coefficient in enumerate(reversed(coefficients)):
            out = (out + coefficient[None, ...]) * (x if i % 2 == 0 else 1 - x)
        return y[None, ...] + out


class Method(Protocol):
    """What the loops need of a method: explicit (:class:`Stepper`) or implicit."""

    be: Backend
    f: Callable[[Any, Any], Any]
    dtype: Any
    batched: bool

    @property
    def order(self) -> int: ...
    @property
    def adaptive(self) -> bool: ...
    @property
    def has_dense(self) -> bool: ...
    @property
    def stiffness_bound(self) -> float | None: ...
    @property
    def predictive(self) -> bool: ...

    nonfinite_err: bool

    def stiffness(
        self, hs: Any, y: Any, y_new: Any, f_new: Any, record: Any, comm: Any = None
    ) -> Any: ...
    def record_rows(self, record: Any) -> tuple[Any, ...]: ...
    def from_rows(self, rows: tuple[Any, ...]) -> Any: ...
    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt: ...
    def error_norm(
        self, err: Any, y: Any, y_new: Any, rtol: float, atol: float, comm: Any = None
    ) -> Any: ...
    def interpolate(self, theta: Any, hs: Any, y: Any, y_new: Any, record: Any) -> Any: ...


def error_norm(
    xp: Any, err: Any, y: Any, y_new: Any, rtol: float, atol: float, comm: Any = None
) -> Any:
    """The RMS norm of ``err`` scaled by ``atol + rtol·max(|y|, |y_new|)`` (per row).

    With a ``comm`` (a state split across ranks) the norm is of the whole state, from one
    collective, and NaN on every rank when ``y_new`` is non-finite on any.
    """
    scale = atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))
    q = xp.abs(err) / scale
    if comm is None:
        return xp.sqrt(_sum_of_squares(xp, q) / q.shape[-1])
    (total,), count, bad = global_sums(xp, comm, [q**2], y_new)
    return xp.where(bad > 0, xp.nan, xp.sqrt(total / count))


def _sum_of_squares(xp: Any, q: Any) -> Any:
    """``Σ q²`` over the last axis of a real array: for one state a dot product (as scipy's
    norm; numpy's sum and mean cost several Python calls on a small state)."""
    return q @ q if q.ndim == 1 else xp.sum(q * q, axis=-1)


def global_sums(xp: Any, comm: Any, parts: list[Any], y: Any) -> tuple[list[Any], Any, Any]:
    """Over a state split across ranks, by one ``allreduce``: the sum of each of ``parts``,
    the whole state's length, and how many entries of ``y`` are non-finite."""
    local = [xp.sum(p) for p in parts]
    local.append(xp.zeros_like(local[0]) + parts[0].shape[-1])
    local.append(xp.sum(xp.astype(~xp.isfinite(y), local[0].dtype)))
    total = comm.allreduce(xp.stack(local))
    return [total[i] for i in range(len(parts))], total[-2], total[-1]


def initial_step(st: Method, t0: Any, y0: Any, f0: Any, span: Span) -> Any:
    """Hairer, Nørsett & Wanner's starting step (Solving ODEs I, II.4), per row of a batch.

    Bounded by the interval and ``max_step``, so that ``f`` is never evaluated outside
    ``[t0, t1]`` (as scipy's ``select_initial_step`` does).
    """
    xp, b, comm = st.be.xp, st.batched, span.comm
    scale = span.atol + xp.abs(y0) * span.rtol

    def rms(*vs: Any) -> list[Any]:  # per row; of the whole split state with a comm
        if comm is None:
            return [xp.sqrt(xp.mean((xp.abs(v) / scale) ** 2, axis=-1)) for v in vs]
        sums, n, _ = global_sums(xp, comm, [(xp.abs(v) / scale) ** 2 for v in vs], vs[0])
        return [xp.sqrt(total / n) for total in sums]

    d0, d1 = rms(y0, f0)
    bound = xp.minimum(xp.zeros_like(d0) + abs(span.t1 - span.t0), span.max_step)
    tiny = xp.minimum(xp.full_like(d0, 1e-6), bound)
    h0 = xp.where((d0 < 1e-5) | (d1 < 1e-5), tiny, 0.01 * d0 / xp.where(d1 == 0, 1.0, d1))
    h0 = xp.minimum(h0, bound)
    f1 = st.f(t0 + span.direction * h0, y0 + span.direction * _col(h0, b) * f0)
    d2 = rms(f1 - f0)[0] / h0
    big = xp.maximum(d1, d2)
    h1 = xp.where(
        big <= 1e-15,
        xp.maximum(tiny, h0 * 1e-3),
        (0.01 / xp.where(big <= 1e-15, 1.0, big)) ** (1.0 / (st.order + 1)),
    )
    return xp.minimum(xp.minimum(100 * h0, h1), bound)


def step_factor(
    err: float, exponent: float, previous: tuple[float, float, float] | None = None
) -> float:
    """The step-size factor after an attempt with scaled error ``err`` (I-controller).

    ``previous``: the last accepted step's size and error ``(h_old, err_old)`` and this
    accepted step's size ``h`` as a third element, for Gustafsson's predictive controller
    (Hairer & Wanner IV.8, RADAU5's): the factor is also held below
    ``SAFETY · (h/h_old) · (err_old/err)^(1/(q+1)) · err^(-1/(q+1))``, which stops a step
    from growing while its errors grow. It takes the stiff methods through VDPOL's and
    OREGO's transitions with a quarter to a seventh of the rejected steps.
    """
    if err == 0.0:
        return MAX_FACTOR
    factor = SAFETY * err**exponent
    if previous is not None:
        h_old, err_old, h = previous
        factor *= min(1.0, (h / h_old) * (err_old / err) ** -exponent)
    return min(MAX_FACTOR, max(MIN_FACTOR, factor))


#: The smallest error the predictive controller remembers (Hairer's ``ERRACC`` floor).
ERR_FLOOR = 1e-2


# ---------------------------------------------------------------------------------------
# The eager loop: Python floats for control, a list of accepted steps.
# ---------------------------------------------------------------------------------------
class StiffnessTest:
    """Hairer's bookkeeping of stiff-looking steps for one trajectory (DOPRI5's test)."""

    def __init__(self, bound: float | None) -> None:
        self.bound = bound
        self.stiff_steps = self.nonstiff_steps = 0

    def due(self, accepted: int) -> bool:
        """Whether the accepted step number ``accepted`` is tested."""
        return self.bound is not None and (accepted % NSTIFF == 0 or self.stiff_steps > 0)

    def update(self, h_lambda: float) -> bool:
        """Count one tested step; ``True`` once the problem is judged stiff."""
        assert self.bound is not None
        if h_lambda > self.bound:
            self.nonstiff_steps = 0
            self.stiff_steps += 1
        else:
            self.nonstiff_steps += 1
            if self.nonstiff_steps == NONSTIFF_STEPS:
                self.stiff_steps = 0
        return self.stiff_steps >= STIFF_STEPS


#: ``keep_states``: a forward solve keeps each accepted step's starting ``(y, f)`` while
#: all of them fit in this many bytes (past it, none: the reverse sweep replays them).
KEPT_BYTES = 16 * 2**20


def kept_fit(rows: int, y: Any) -> bool:
    """Whether ``rows`` copies of a state like ``y`` and of its ``f`` fit in
    :data:`KEPT_BYTES`."""
    return rows * 2 * math.prod(y.shape) * getattr(y.dtype, "itemsize", 8) <= KEPT_BYTES


def run_eager(
    st: Method,
    span: Span,
    y0: Any,
    *,
    t_eval: np.ndarray | None,
    keep_dense: bool,
    progress: Any,
    events: Any = None,
    keep_states: bool = False,
) -> dict[str, Any]:
    """Integrate one flat state from Python, storing every step or the ``t_eval`` times.

    ``events`` (an ``EagerEvents`` watch) records event occurrences and may end the solve.
    ``keep_states``: the result's ``kept`` lists each accepted step's starting ``(y, f)``
    (``None`` past :data:`KEPT_BYTES`), the checkpoints a reverse sweep starts from.
    """
    xp, be = st.be.xp, st.be
    f0 = st.f(span.t0, y0)
    counts = {"nfev": 1, "njev": 0, "nlu": 0}
    loop = _EagerLoop(st, span, t_eval, keep_dense, progress, counts)
    loop.events = events
    if keep_states:
        loop.kept = []
    loop.store_start(y0)
    finite = xp.all(xp.isfinite(f0))
    if span.comm is not None:  # every rank must end together
        finite = span.comm.allreduce(xp.astype(xp.reshape(finite, (1,)), xp.int32), "min")[0]
    if not bool(finite):
        return loop.result(NONFINITE)  # f(t0, y0) is already NaN or infinite
    h = span.h
    if h is None:
        t0 = xp.asarray(span.t0, dtype=time_dtype(xp, st.dtype), device=be.device)
        h = float(initial_step(st, t0, y0, f0, span))
        counts["nfev"] += 1
    # A too-long trial step may overflow; the loop notices and retries shorter, so numpy's
    # warnings about it would only alarm (on other libraries this changes nothing).
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return loop.run(y0, f0, h)


class _EagerLoop:
    """The accept/reject loop of one trajectory, with its output and its counters."""

    def __init__(
        self,
        st: Method,
        span: Span,
        t_eval: np.ndarray | None,
        keep_dense: bool,
        progress: Any,
        counts: dict[str, int],
    ) -> None:
        self.st, self.span, self.t_eval = st, span, t_eval
        self.keep_dense, self.progress, self.counts = keep_dense, progress, counts
        self.ts: list[float] = []
        self.ys: list[Any] = []
        self.steps: list[tuple[float, float, Any, Any, Any]] = []
        self.next_eval = 0
        self.accepted = self.rejected = 0
        self.log: tuple[list[float], list[float]] = ([], [])  # each accepted step's t, h
        self.events: Any = None  # an EagerEvents watch, when the solve has events
        self.kept: list[tuple[Any, Any]] | None = None  # see run_eager's keep_states

    def store_start(self, y0: Any) -> None:
        t0, te = self.span.t0, self.t_eval
        if te is None:
            self.ts.append(t0)
            self.ys.append(y0)
            return
        while self.next_eval < len(te) and te[self.next_eval] == t0:
            self.ts.append(t0)
            self.ys.append(y0)
            self.next_eval += 1

    def store_step(
        self,
        t: float,
        hs: float,
        t_new: float,
        y: Any,
        y_new: Any,
        record: Any,
        y_end: Any = None,
    ) -> None:
        """Store what the step ``[t, t + hs]`` covers up to ``t_new`` (the step's end, or
        a terminal event inside it, where the state is ``y_end``)."""
        st, te = self.st, self.t_eval
        if te is None:
            self.ts.append(t_new)
            self.ys.append(y_new if y_end is None else y_end)
        else:
            direction, stop = self.span.direction, self.next_eval
            while stop < len(te) and direction * (te[stop] - t_new) <= 0:
                stop += 1
            if stop > self.next_eval:
                xp = st.be.xp
                theta = xp.asarray(
                    (te[self.next_eval : stop] - t) / hs,
                    dtype=time_dtype(xp, st.dtype),
                    device=st.be.device,
                )
                vals = st.interpolate(theta, hs, y, y_new, record)
                self.ts.extend(te[self.next_eval : stop].tolist())
                self.ys.extend(vals[i, ...] for i in range(stop - self.next_eval))
                self.next_eval = stop
        if self.keep_dense:
            self.steps.append((t, hs, y, y_new, record))

    def run(self, y: Any, f0: Any, h: float) -> dict[str, Any]:
        st, span = self.st, self.span
        xp = st.be.xp
        t0, t1, fixed = span.t0, span.t1, span.fixed
        direction, length, resolution = span.direction, abs(t1 - t0), span.resolution
        exponent = -1.0 / (st.order + 1)
        stiffness = StiffnessTest(None if fixed else st.stiffness_bound)
        t = t0
        rejected_last = nonfinite_last = False
        predictive = st.predictive and not fixed
        accepted_last: tuple[float, float] | None = None  # h and err, for `predictive`
        while True:
            if self.accepted + self.rejected >= span.max_steps:
                return self.result(MAX_STEPS)
            remaining = abs(t1 - t)
            h_try = min(h, span.max_step)
            # The last step lands on t1 exactly, also when what would be left after this
            # one is below the resolution of t (rk4 with dt = 0.1 on [0, 1]).
            last = h_try >= remaining - resolution
            if last:
                h_try = remaining
            if h_try <= 10 * math.ulp(t):  # t + h would round back to t
                return self.result(NONFINITE if nonfinite_last else STEP_COLLAPSED)
            hs = direction * h_try
            step = st.attempt(t, y, f0, hs, fixed=fixed)
            for key, n in step.counts.items():
                self.counts[key] += int(n)
            y_new = step.y_new
            if step.converged is not None and not bool(step.converged):
                # The iterations did not converge: a shorter step makes them contract.
                h = h_try * 0.5
                self.rejected += 1
                rejected_last = True
                continue
            comm = span.comm
            err = (
                0.0
                if fixed
                else float(st.error_norm(step.err, y, y_new, span.rtol, span.atol, comm))
            )
            # (Split across ranks, a non-finite y_new anywhere already made err NaN
            # everywhere: a rank's own check could disagree with the others'.)
            if not math.isfinite(err) or (
                comm is None and not st.nonfinite_err and not bool(xp.all(xp.isfinite(y_new)))
            ):
                # Retry smaller: a too-long step can overflow where a shorter one does not.
                if fixed:
                    return self.result(NONFINITE)
                h = h_try * MIN_FACTOR
                self.rejected += 1
                rejected_last = nonfinite_last = True
                continue
            nonfinite_last = False
            if err > 1.0:
                h = h_try * step_factor(err, exponent)
                self.rejected += 1
                rejected_last = True
                continue
            t_new = t1 if last else t + hs
            stop = None
            if self.events is not None:
                stop = self.events.after_step(st, t, hs, y, y_new, step.record)
            if stop is not None:  # a terminal event inside the step: the solve ends there
                self.store_step(t, hs, stop[0], y, y_new, step.record, y_end=stop[1])
            else:
                self.store_step(t, hs, t_new, y, y_new, step.record)
            self.log[0].append(t)
            self.log[1].append(hs)
            if self.kept is not None:
                self.kept.append((y, f0))
                if not kept_fit(len(self.kept), y):
                    self.kept = None
            if self.progress is not None:
                self.progress(abs(t_new - t0) / length)
            self.accepted += 1
            if stop is not None:
                return self.result(TERMINATED)
            if last:
                return self.result(SUCCESS)
            if stiffness.due(self.accepted) and stiffness.update(
                float(st.stiffness(hs, y, y_new, step.f_new, step.record, span.comm))
            ):
                return self.result(STIFF)
            t, y, f0 = t_new, y_new, step.f_new
            if not fixed:
                previous = None
                if predictive:
                    previous = None if accepted_last is None else (*accepted_last, h_try)
                    accepted_last = (h_try, max(err, ERR_FLOOR))
                factor = step_factor(err, exponent, previous)
                h = h_try * (min(1.0, factor) if rejected_last else factor)
            rejected_last = False

    def result(self, status: int) -> dict[str, Any]:
        return {
            "t": self.ts,
            "y": self.ys,
            "status": status,
            "stats": {
                **self.counts,
                "steps": self.accepted + self.rejected,
                "accepted": self.accepted,
                "rejected": self.rejected,
            },
            "steps": self.steps,
            "log": self.log,
            "kept": self.kept,
        }
