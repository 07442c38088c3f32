"""Events: times where a function of the solution crosses zero, found on its interpolant.

An event is a function ``g(t, y, *args)`` returning a real number (per trajectory in an
ensemble). With scipy's conventions, its attribute ``terminal`` (``True`` or a count)
ends the solve at that occurrence, and ``direction`` (``> 0``: only upward crossings,
``< 0``: only downward, ``0``: both) filters crossings. After every accepted step the
loops compare ``g`` at the step's ends; a crossing is located on the step's interpolant
by Illinois false position (superlinear, always bracketed) to a few ulps of ``t``.

The eager loop records every occurrence; the masked loop (compiled solves, ensembles)
records each event's first occurrence per trajectory, which is what fixed-size outputs
allow. Event times are differentiable (see :func:`differentiable_event`): the implicit
function theorem, as one Newton step on ``g(t, y(t)) = 0`` from the located time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EagerEvents", "Event", "check_events", "crossed", "differentiable_event", "locate"]

#: Illinois iterations at most; each narrows the bracket superlinearly.
MAX_ITERATIONS = 60


@dataclass(frozen=True)
class Event:
    """One event function with its options (from the function's attributes)."""

    fn: Callable[..., Any]
    terminal: int  # occurrences that end the solve; 0: never
    direction: float


def check_events(events: Any) -> tuple[Event, ...]:
    """The events as :class:`Event` records, with clear errors for bad options."""
    if events is None:
        return ()
    items: Sequence[Any] = [events] if callable(events) else list(events)
    out = []
    for fn in items:
        if not callable(fn):
            raise TypeError(f"events must be callables g(t, y, *args), got {fn!r}")
        terminal = getattr(fn, "terminal", False)
        if isinstance(terminal, bool):
            count = int(terminal)
        elif isinstance(terminal, int) and terminal >= 0:
            count = terminal
        else:
            raise ValueError(
                f"event {getattr(fn, '__name__', fn)!r}: terminal must be a bool or a "
                f"non-negative int (the occurrence that ends the solve), got {terminal!r}"
            )
        direction = getattr(fn, "direction", 0.0)
        if not isinstance(direction, int | float) or isinstance(direction, bool):
            raise ValueError(
                f"event {getattr(fn, '__name__', fn)!r}: direction must be a number "
                f"(> 0 upward, < 0 downward, 0 both), got {direction!r}"
            )
        out.append(Event(fn, count, float(direction)))
    return tuple(out)


def crossed(xp: Any, g_old: Any, g_new: Any, direction: float) -> Any:
    """Whether ``g`` crossed zero between two values, the way ``direction`` asks.

    As scipy's: leaving zero counts (an event at ``t0`` where ``g(t0) = 0``), staying at
    zero does not.
    """
    moved = g_old != g_new
    up = (g_old <= 0) & (g_new >= 0) & moved
    down = (g_old >= 0) & (g_new <= 0) & moved
    if direction > 0:
        return up
    if direction < 0:
        return down
    return up | down


def locate(
    be: Any, g_of_theta: Callable[[Any], Any], g_lo: Any, g_hi: Any, active: Any, tol: Any
) -> Any:
    """The fraction ``θ ∈ (0, 1]`` of a step where ``g`` is zero, per entry.

    Illinois false position between ``θ = 0`` (value ``g_lo``) and ``θ = 1`` (``g_hi``),
    with ``g_of_theta`` evaluating ``g`` on the step's interpolant; entries not ``active``
    are left at 1. Stops when every bracket is narrower than ``tol`` (in ``θ``).
    """
    xp = be.xp
    zero, one = xp.zeros_like(g_lo), xp.ones_like(g_lo)

    def cond(state: Any) -> Any:
        lo, hi, _, _, it = state
        return xp.any(active & (hi - lo > tol)) & (it < MAX_ITERATIONS)

    def body(state: Any) -> Any:
        lo, hi, f_lo, f_hi, it = state
        span = f_hi - f_lo
        guess = xp.where(span != 0, lo - f_lo * (hi - lo) / xp.where(span != 0, span, 1.0), 0.5)
        guess = xp.where((guess > lo) & (guess < hi), guess, 0.5 * (lo + hi))
        f_mid = g_of_theta(guess)
        left = f_lo * f_mid < 0  # the root is in [lo, guess]
        exact = f_mid == 0
        new_lo = xp.where(left | exact, lo, guess)
        new_hi = xp.where(left | exact, guess, hi)
        new_lo = xp.where(exact, guess, new_lo)
        # Illinois: halve the stale end's value so that the next guess moves it.
        f_lo2 = xp.where(left, f_lo * 0.5, f_mid)
        f_hi2 = xp.where(left, f_mid, f_hi * 0.5)
        keep = active & (hi - lo > tol)
        return (
            xp.where(keep, new_lo, lo),
            xp.where(keep, new_hi, hi),
            xp.where(keep, f_lo2, f_lo),
            xp.where(keep, f_hi2, f_hi),
            it + 1,
        )

    state = (zero, one, g_lo, g_hi, 0 if not be.control.compiled else xp.asarray(0))
    _, hi, _, _, _ = be.while_loop(cond, body, state)
    hi = xp.where(g_lo == 0, zero, hi)  # g left zero at the step's start: the event is there
    return xp.where(active, hi, one)


class EagerEvents:
    """Every occurrence of every event along one trajectory (the eager loop's watch).

    ``gs`` are the events on flat states, ``g(t, y) -> 0-d array``.
    """

    def __init__(
        self, be: Any, events: tuple[Event, ...], gs: list[Callable[..., Any]], t0: float, y0: Any
    ) -> None:
        self.be, self.events, self.gs = be, events, gs
        self.previous = [float(g(t0, y0)) for g in gs]
        self.times: list[list[float]] = [[] for _ in events]
        self.states: list[list[Any]] = [[] for _ in events]

    def after_step(
        self, st: Any, t: float, hs: float, y: Any, y_new: Any, record: Any
    ) -> tuple[float, Any] | None:
        """Record the occurrences inside the accepted step ``[t, t + hs]``; return
        ``(t, y)`` of the one that ends the solve, if one does."""
        xp = self.be.xp
        current = [float(g(t + hs, y_new)) for g in self.gs]
        eps = float(xp.finfo(_real(xp, y.dtype)).eps)
        tol = 4 * eps * (abs(t) + abs(hs)) / abs(hs)
        found = []
        for k, (event, g) in enumerate(zip(self.events, self.gs, strict=True)):
            if not bool(crossed(xp, self.previous[k], current[k], event.direction)):
                continue

            def at(theta: Any, g: Any = g) -> Any:
                state = st.interpolate(xp.reshape(theta, (1,)), hs, y, y_new, record)[0, ...]
                return g(t + theta * hs, state)

            lo, hi = xp.asarray(self.previous[k]), xp.asarray(current[k])
            theta = float(locate(self.be, at, lo, hi, xp.asarray(True), tol))
            found.append((theta, k))
        self.previous = current
        for theta, k in sorted(found):
            t_event = t + theta * hs
            y_event = st.interpolate(
                xp.asarray([theta], dtype=_real(xp, y.dtype), device=self.be.device),
                hs, y, y_new, record,
            )[0, ...]  # fmt: skip
            self.times[k].append(t_event)
            self.states[k].append(y_event)
            terminal = self.events[k].terminal
            if terminal and len(self.times[k]) >= terminal:
                return t_event, y_event
        return None


def _real(xp: Any, dtype: Any) -> Any:
    if xp.isdtype(dtype, "complex floating"):
        return xp.float64 if dtype == xp.complex128 else xp.float32
    return dtype


def differentiable_event(
    be: Any,
    g: Callable[[Any, Any], Any],
    f: Callable[[Any, Any], Any],
    t_star: Any,
    y_at: Any,
) -> tuple[Any, Any]:
    """The event time and state as functions of the solve's inputs.

    ``y_at`` is the (differentiable) solution at the located time ``t_star``. One Newton
    step on ``g(t, y(t)) = 0`` from ``t_star``, with ``ġ = ∂g/∂t + ∇g·f`` taken as a
    constant, leaves the value where it is (``g ≈ 0`` there) and gives the implicit
    function theorem's derivative ``dt/dθ = -(dg/dθ) / ġ``; the state moves with it
    along ``f``.
    """
    ad, xp = be.ad, be.xp
    y_fixed = ad.stop_gradient(y_at)
    f_fixed = ad.stop_gradient(f(t_star, y_fixed))
    one = xp.ones_like(t_star)
    _, rate = ad.jvp(g, (t_star, y_fixed), (one, f_fixed))
    rate = ad.stop_gradient(rate)
    safe = xp.where(rate == 0, math.inf, rate)
    t_event = t_star - g(t_star, y_at) / safe
    moved = t_event - t_star  # a time per trajectory: one axis fewer than the states
    moved = xp.reshape(moved, (*moved.shape, *([1] * (y_at.ndim - moved.ndim))))
    return t_event, y_at + f_fixed * moved
