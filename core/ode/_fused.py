"""``solve(..., compile=True)``: an explicit step and its error norm as one compiled function.

On an eager backend every array operation of a step is a separate call (torch: a kernel
launch, a few microseconds each, ~100 a step for tsit5 on a small state). A backend that
declares ``jit.fuse`` compiles a straight-line function into fused kernels
(``torch.compile``), so the eager loop calls one compiled function a step and keeps only
its decisions (accept, reject, the next step size) in Python.

The compiled function closes over the user's ``f`` and the method, never over one solve's
objects, and takes the time, the step, ``args`` and the tolerances as inputs (``t``, ``h``
and scalar tolerances as 0-d arrays): later solves with the same ``f``, method and state
shape reuse it, and new step sizes, parameters or tolerances do not recompile.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyxp.backend import Backend
from anyxp.ode._explicit import Attempt, Stepper, on_flat, time_dtype
from anyxp.ode.tableaux import Tableau

__all__ = ["FusedStepper", "check_fusable", "fused_stepper"]

#: Compiled steps kept for reuse (least recently used first out).
CACHE_SIZE = 32
_CACHE: OrderedDict[tuple[Any, ...], Callable[..., Any]] = OrderedDict()


def check_fusable(be: Backend, tab: Any, method: str) -> None:
    """Raise unless ``compile=True`` can fuse ``method``'s steps on ``be``."""
    if "jit.fuse" not in be.capabilities:
        from anyxp.errors import UnsupportedError
        from anyxp.registry import get_registry

        raise UnsupportedError(be.name, "jit.fuse", get_registry().providers("jit.fuse"))
    if not isinstance(tab, Tableau):
        raise ValueError(
            f"compile=True compiles the explicit methods' steps; {method!r} is a stiff "
            "method: solve without compile, or on jax, where the whole solve is compiled"
        )


def _compiled(
    be: Backend,
    f: Callable[..., Any],
    tab: Tableau,
    shape: tuple[int, ...],
    fixed: bool,
    batched: bool,
) -> Callable[..., Any]:
    xp = be.xp

    def step(
        t: Any, y: Any, f0: Any, hs: Any, args: tuple[Any, ...], tols: tuple[Any, Any]
    ) -> tuple[Any, ...]:
        st = Stepper(be, tab, on_flat(xp, f, shape, args, batched), y.dtype, batched)
        a = st.attempt(t, y, f0, hs, fixed=fixed)
        ks = a.record[1]
        K = xp.stack(ks) if isinstance(ks, list) else ks
        if fixed:
            return a.y_new, a.f_new, xp.zeros_like(hs), K
        norm = st.error_norm(a.err, y, a.y_new, *tols)
        # A non-finite step makes the error NaN: the loop retries it shorter.
        norm = xp.where(xp.all(xp.isfinite(a.y_new), axis=-1), norm, xp.nan)
        return a.y_new, a.f_new, norm, K

    return be.jit(step, fuse=True)


def fused_stepper(
    be: Backend,
    f: Callable[..., Any],
    tab: Tableau,
    shape: tuple[int, ...],
    dtype: Any,
    args: tuple[Any, ...],
    rtol: Any,
    atol: Any,
    fixed: bool,
    batched: bool = False,
) -> FusedStepper:
    """The eager loop's method for ``solve(..., compile=True)`` (explicit methods), or
    the masked loop's for ``solve_ensemble(..., compile=True)`` (``batched``: ``f`` takes
    rows, ``shape`` is the batch's)."""
    xp, tdt = be.xp, time_dtype(be.xp, dtype)
    # Tolerances are inputs too (0-d, or one per component): a new rtol does not recompile.
    tols = tuple(xp.asarray(v, dtype=tdt, device=be.device) for v in (rtol, atol))
    ndims = tuple(v.ndim for v in tols)
    key = (f, tab.name, shape, str(dtype), str(be.device), fixed, batched, ndims)
    fn = _CACHE.pop(key, None)
    if fn is None:
        fn = _compiled(be, f, tab, shape, fixed, batched)
    _CACHE[key] = fn
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    flat = on_flat(xp, f, shape, tuple(args), batched)
    return FusedStepper(Stepper(be, tab, flat, dtype, batched), fn, tuple(args), tols)


@dataclass(frozen=True)
class FusedStepper:
    """A :class:`Stepper` whose attempt (with its error norm) is one compiled call.

    Everything else (interpolation, the stiffness test, orders) is the plain stepper's.
    The attempt's ``err`` is already the scaled norm, which :meth:`error_norm` passes on.
    """

    plain: Stepper
    fused: Callable[..., Any]
    args: tuple[Any, ...]
    tols: tuple[Any, Any]  # rtol, atol as arrays
    #: The compiled error norm is NaN where the step is not finite: no separate check.
    nonfinite_err = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plain, name)

    def attempt(self, t: Any, y: Any, f0: Any, hs: Any, *, fixed: bool) -> Attempt:
        be, tab = self.plain.be, self.plain.tab
        xp, tdt = be.xp, time_dtype(be.xp, self.plain.dtype)
        t_in = t
        if not self.plain.batched:  # the eager loop's Python floats, as 0-d arrays
            t = xp.full((), t, dtype=tdt, device=be.device)
            hs = xp.full((), hs, dtype=tdt, device=be.device)
        y_new, f_new, norm, K = self.fused(t, y, f0, hs, self.args, self.tols)
        nfev = tab.stages - 1 + (0 if tab.fsal else 1)
        return Attempt(y_new, f_new, norm, None, (t_in, K), {"nfev": nfev})

    def error_norm(
        self, err: Any, y: Any, y_new: Any, rtol: float, atol: float, comm: Any = None
    ) -> Any:
        return err  # computed in the compiled step
