"""The accepted steps of a solve, replayed as a differentiable function of its inputs.

A forward solve logs each accepted step's start ``t`` and size ``h`` (see ``StepLog``).
Holding those fixed, the solution at the requested times is a composition of steps
``(y, f) -> (y', f')`` and interpolations: the discretised solution that every
"discretise-then-differentiate" mode differentiates, whatever the step-size controller did.
The replay is written once for a batch of rows ``(B, n)`` (a single solve is one row) and
takes ``(y0, t0, t1, *leaves)``: the initial states, the interval (the logged steps are
stretched with it, so its ends have derivatives too) and the array leaves of the
parameters.

- :func:`outputs` replays every step for the backend's AD to differentiate directly
  (``direct``; with ``forward_jacobian`` in forward mode, ``forward``).
- :func:`reverse` is the reverse sweep of ``checkpointed``: states are kept at
  ``checkpoints`` steps, each segment between them is recomputed once and swept back with
  one VJP per step (two-level checkpointing: memory ``checkpoints + steps / checkpoints``
  states, at most one recomputation of each step). Compiled, by default every step's
  state is kept while they fit in 16 MiB (no recomputation), else ``sqrt(steps)``;
  eager, ``sqrt(steps)`` states and one VJP per segment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import array_api_extra as xpx

from anyxp.backend import Backend
from anyxp.ode._explicit import Method, kept_fit

__all__ = ["Replay", "difference_jacobian", "forward_jacobian", "outputs", "reverse"]

Inputs = tuple[Any, ...]  # (y0 (B, n), t0 (), t1 (), *leaves)


@dataclass(frozen=True)
class Replay:
    """A logged forward solve: what :func:`outputs` and :func:`reverse` replay.

    ``method(leaves)`` is the batched method whose ``f`` sees those parameter leaves;
    ``ts``/``hs`` are the log (``(I, B)``, ``h = 0`` where a row took no step);
    ``te`` the stored times, ``(m,)`` for every row or ``(m, B)`` per row (event times);
    ``moving`` says which of them stretch with the interval (every step of an eager solve,
    or ``t0`` and ``t1`` themselves): a bool for all, or one per stored time;
    ``n_iter`` how many log rows to replay.
    """

    be: Backend
    method: Callable[[tuple[Any, ...]], Method]
    ts: Any
    hs: Any
    te: Any
    t0: float
    t1: float
    moving: Any
    n_iter: Any
    #: Each log row's starting ``(y, f)`` as the forward solve computed them, where it
    #: kept them (a list of pairs, eager; two ``(rows, B, n)`` buffers, compiled), else
    #: ``None``.
    kept: Any = None
    _last: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def direction(self) -> float:
        return 1.0 if self.t1 >= self.t0 else -1.0

    def method_for(self, leaves: tuple[Any, ...]) -> Method:
        """``method(leaves)``, built once for the same leaves (every step of an eager sweep;
        a compiled one traces each step once anyway, and a method made inside one trace
        must not leak into another)."""
        if getattr(self.be.control, "compiled", False):
            return self.method(leaves)
        last = self._last.get("method")
        if last is not None and len(last[0]) == len(leaves):
            if all(a is b for a, b in zip(last[0], leaves, strict=True)):
                return last[1]  # type: ignore[no-any-return]
        built = self.method(leaves)
        self._last["method"] = (leaves, built)
        return built

    @property
    def times(self) -> Any:
        """The stored times per row, ``(m, B)`` (or ``(m, 1)`` when shared)."""
        return self.te if self.te.ndim == 2 else self.te[:, None]

    @property
    def starts(self) -> Any:
        """Which stored times are ``t0``, per row (``(m, B or 1)``): their rows are ``y0``."""
        return self.times == self.t0

    def scale(self, t0: Any, t1: Any) -> Any:
        """How much the interval ``[t0, t1]`` stretches the logged one."""
        return (t1 - t0) / (self.t1 - self.t0)

    def f0(self, y0: Any, t0: Any, leaves: tuple[Any, ...]) -> Any:
        """``f(t0, y0)`` for every row."""
        xp = self.be.xp
        t = xp.zeros((y0.shape[0],), dtype=self.ts.dtype, device=self.be.device) + t0
        return self.method_for(leaves).f(t, y0)

    def step(
        self, i: Any, y: Any, f0: Any, inputs: Inputs, *, rows: bool = True
    ) -> tuple[Any, Any, Any]:
        """Log row ``i``: ``(y', f', stored)`` where ``stored`` has, for each stored time
        inside the step, the interpolated state (zero elsewhere), shape ``(m, B, n)``."""
        xp = self.be.xp
        _, t0, t1, *leaves = inputs
        st = self.method_for(tuple(leaves))
        t_log, h_log = self.ts[i, ...], self.hs[i, ...]
        scale = self.scale(t0, t1)
        t = t0 + (t_log - self.t0) * scale
        h = h_log * scale
        moved = xp.where(h_log == 0, 0.0, h)
        attempt = st.attempt(t, y, f0, moved, fixed=True)
        took = (h_log != 0)[:, None]
        y_new = xp.where(took, attempt.y_new, y)
        f_new = xp.where(took, attempt.f_new, f0)
        if not rows:
            return y_new, f_new, None
        d = self.direction
        te = self.times
        covered = (h_log != 0)[None, :] & (d * (te - t_log[None, :]) > 0)
        # The step's end: t1 itself for the last step, which the forward loop snapped to
        # t1 where t + h rounds a few ulps short of it (in float32 that missed the last
        # stored time: a zero gradient there).
        end = t_log + h_log
        slack = 4 * float(xp.finfo(end.dtype).eps) * max(abs(self.t0), abs(self.t1), 1.0)
        end = xp.where(xp.abs(end - self.t1) <= slack, xp.zeros_like(end) + self.t1, end)
        covered = covered & (d * (te - end[None, :]) <= 0)  # (m, B)
        stretched = t0 + (te - self.t0) * scale
        if isinstance(self.moving, bool):
            times = stretched if self.moving else xp.zeros_like(te) + te
        else:
            times = xp.where(self.moving[:, None], stretched, te)
        theta = (times - t[None, :]) / xp.where(h_log == 0, 1.0, h)[None, :]
        zero = xp.zeros((te.shape[0], *y.shape), dtype=y.dtype, device=self.be.device)
        stored = self.be.cond(
            xp.any(covered),
            lambda: xp.where(
                covered[:, :, None],
                st.interpolate(theta, moved, y, attempt.y_new, attempt.record),
                zero,
            ),
            lambda: zero,
        )
        return y_new, f_new, stored

    def first(self, inputs: Inputs) -> tuple[Any, Any, Any]:
        """The state before the first step, and the stored rows at ``t0`` (``y0``)."""
        xp = self.be.xp
        y0, t0, _, *leaves = inputs
        stored = xp.where(self.starts[:, :, None], y0[None, ...], 0.0)
        return y0, self.f0(y0, t0, tuple(leaves)), stored


def _indices(be: Backend, n: int) -> Any:
    return be.xp.arange(n, device=be.device)


def outputs(rp: Replay, inputs: Inputs) -> Any:
    """The stored states ``(m, B, n)`` as a function of the inputs, step by step.

    Every step's intermediate values stay alive for the backend's reverse mode (memory
    grows with the steps); forward mode keeps none.
    """
    be = rp.be
    y, f, stored = rp.first(inputs)

    def body(carry: Any, i: Any) -> tuple[Any, None]:
        y, f, stored = carry

        def advance() -> Any:
            y_new, f_new, rows = rp.step(i, y, f, inputs)
            return y_new, f_new, stored + rows

        return be.cond(i < rp.n_iter, advance, lambda: (y, f, stored)), None

    (_, _, stored), _ = be.scan(body, (y, f, stored), _indices(be, rp.ts.shape[0]))
    return stored


def checkpoint_slots(n_log: int, y: Any, checkpoints: int | None) -> int:
    """How many states pass one keeps: ``checkpoints``; by default every step's while
    they fit in :data:`KEPT_BYTES` (what the forward solve keeps), else ``sqrt(steps)``."""
    if checkpoints is not None:
        return max(1, min(n_log, checkpoints))
    if kept_fit(n_log, y):
        return max(1, n_log)
    return max(1, min(n_log, math.ceil(math.sqrt(n_log))))


def reverse(rp: Replay, inputs: Inputs, stored_bar: Any, checkpoints: int | None) -> Inputs:
    """The cotangents of the inputs, given those of the stored states (checkpointed).

    Pass one: replay storing the state at every ``S``-th step (``S = ceil(I / C)``), or
    take them from the states the forward solve kept. Pass two, segment by segment from
    the last: replay the segment keeping its states, then sweep it back with one VJP per
    step (with every state kept, ``S = 1``: one loop of VJPs).
    """
    if not getattr(rp.be.control, "compiled", False):
        return _reverse_by_segments(rp, inputs, stored_bar, checkpoints)
    be, xp = rp.be, rp.be.xp
    ad = be.ad
    n_log = rp.ts.shape[0]
    y, f, _ = rp.first(inputs)
    slots = checkpoint_slots(n_log, y, checkpoints)
    span = max(1, math.ceil(n_log / slots))  # steps per segment
    n = rp.n_iter

    def save(buffer: Any, k: Any, value: Any) -> Any:
        return xpx.at(buffer, k).set(value)

    # Pass one: the checkpoints, unless the forward solve kept every iteration's state.
    if isinstance(rp.kept, tuple) and rp.kept[0].shape[0] == n_log:
        keep_y, keep_f = rp.kept[0][::span, ...], rp.kept[1][::span, ...]
    else:
        keep_y = xp.zeros((slots, *y.shape), dtype=y.dtype, device=be.device)
        keep_f = xp.zeros_like(keep_y)

        def forward(i: Any, carry: Any) -> Any:
            y, f, keep_y, keep_f = carry
            at_start = i % span == 0
            keep_y, keep_f = be.cond(
                at_start,
                lambda: (save(keep_y, i // span, y), save(keep_f, i // span, f)),
                lambda: (keep_y, keep_f),
            )
            y, f, _ = rp.step(i, y, f, inputs, rows=False)
            return y, f, keep_y, keep_f

        _, _, keep_y, keep_f = be.fori_loop(0, n, forward, (y, f, keep_y, keep_f))

    # Pass two: segments from the last, each recomputed once and swept back.
    def vjp_step(i: Any, y: Any, f: Any, cot: tuple[Any, ...]) -> tuple[Any, ...]:
        def g(y: Any, f: Any, *rest: Any) -> Any:
            return rp.step(i, y, f, (inputs[0], *rest))

        _, pullback = ad.vjp(g, y, f, *inputs[1:])
        return tuple(pullback(cot))

    y_bar = xp.zeros_like(y)
    f_bar = xp.zeros_like(f)
    rest_bar = tuple(xp.zeros_like(x) for x in inputs[1:])
    if span == 1:  # every step's state kept: one VJP per step, straight from them

        def back(kk: Any, carry: Any) -> Any:
            y_bar, f_bar, rest_bar = carry
            i = n - 1 - kk
            bars = vjp_step(i, keep_y[i, ...], keep_f[i, ...], (y_bar, f_bar, stored_bar))
            return bars[0], bars[1], tuple(a + b for a, b in zip(rest_bar, bars[2:], strict=True))

        y_bar, f_bar, rest_bar = be.fori_loop(0, n, back, (y_bar, f_bar, rest_bar))
        return _through_the_start(rp, inputs, stored_bar, y_bar, f_bar, rest_bar)
    n_segments = (n + span - 1) // span
    seg_y = xp.zeros((span, *y.shape), dtype=y.dtype, device=be.device)

    def segment(kk: Any, carry: Any) -> Any:
        y_bar, f_bar, rest_bar, seg_y, seg_f = carry
        k = n_segments - 1 - kk
        start = k * span

        def recompute(j: Any, state: Any) -> Any:
            y, f, seg_y, seg_f = state
            i = start + j
            live = (i < n) & (j < span - 1)  # the segment's last step feeds nothing kept
            seg_y, seg_f = save(seg_y, j, y), save(seg_f, j, f)
            y, f = be.cond(live, lambda: rp.step(i, y, f, inputs, rows=False)[:2], lambda: (y, f))
            return y, f, seg_y, seg_f

        _, _, seg_y, seg_f = be.fori_loop(
            0, span, recompute, (keep_y[k, ...], keep_f[k, ...], seg_y, seg_f)
        )

        def sweep(jj: Any, state: Any) -> Any:
            y_bar, f_bar, rest_bar = state
            j = span - 1 - jj
            i = start + j

            def back() -> Any:
                bars = vjp_step(i, seg_y[j, ...], seg_f[j, ...], (y_bar, f_bar, stored_bar))
                rest = tuple(a + b for a, b in zip(rest_bar, bars[2:], strict=True))
                return bars[0], bars[1], rest

            return be.cond(i < n, back, lambda: (y_bar, f_bar, rest_bar))

        y_bar, f_bar, rest_bar = be.fori_loop(0, span, sweep, (y_bar, f_bar, rest_bar))
        return y_bar, f_bar, rest_bar, seg_y, seg_f

    y_bar, f_bar, rest_bar, _, _ = be.fori_loop(
        0, n_segments, segment, (y_bar, f_bar, rest_bar, seg_y, xp.zeros_like(seg_y))
    )
    return _through_the_start(rp, inputs, stored_bar, y_bar, f_bar, rest_bar)


def _reverse_by_segments(
    rp: Replay, inputs: Inputs, stored_bar: Any, checkpoints: int | None
) -> Inputs:
    """:func:`reverse` on an eager backend: the same pass one (``sqrt(steps)`` states by
    default; none where the forward solve kept its steps' states), then one VJP per
    segment over all its steps, its forward recomputed with the graph. An eager library
    pays per VJP call far more than per step (torch.func builds its transform each time),
    so a call per segment rather than per step; the graph held is one segment's."""
    ad, xp = rp.be.ad, rp.be.xp
    n = int(rp.n_iter)
    y, f, _ = rp.first(inputs)
    slots = max(1, min(n, checkpoints or math.ceil(math.sqrt(max(n, 1)))))
    span = max(1, math.ceil(n / slots))
    if isinstance(rp.kept, list) and len(rp.kept) == n:
        # The forward solve kept them: no pass one. (They equal the replay's states to
        # rounding: the replay's times are the logged ones stretched by exactly 1.)
        shape = inputs[0].shape  # an eager solve kept flat states
        starts = [(xp.reshape(y, shape), xp.reshape(f, shape)) for y, f in rp.kept[::span]]
    else:
        starts = []
        for i in range(n):  # pass one: the segments' first states
            if i % span == 0:
                starts.append((y, f))
            y, f, _ = rp.step(i, y, f, inputs, rows=False)
    y_bar, f_bar = xp.zeros_like(y), xp.zeros_like(f)
    rest_bar = tuple(xp.zeros_like(x) for x in inputs[1:])
    for k in range(len(starts) - 1, -1, -1):
        steps = range(k * span, min((k + 1) * span, n))

        def segment(y: Any, f: Any, *rest: Any, steps: range = steps) -> tuple[Any, Any, Any]:
            full = (inputs[0], *rest)
            stored = None
            for i in steps:
                y, f, rows = rp.step(i, y, f, full)
                stored = rows if stored is None else stored + rows
            return y, f, stored

        _, pullback = ad.vjp(segment, *starts[k], *inputs[1:])
        y_bar, f_bar, *bars = pullback((y_bar, f_bar, stored_bar))
        rest_bar = tuple(a + b for a, b in zip(rest_bar, bars, strict=True))
    return _through_the_start(rp, inputs, stored_bar, y_bar, f_bar, rest_bar)


def _through_the_start(
    rp: Replay, inputs: Inputs, stored_bar: Any, y_bar: Any, f_bar: Any, rest_bar: Inputs
) -> Inputs:
    """The inputs' cotangents from those of the first step's ``y`` and ``f`` and of the
    steps' ``(t0, t1, *leaves)``: ``f(t0, y0)`` fed the first step, and the rows stored at
    ``t0`` are ``y0``."""
    xp = rp.be.xp
    _, pullback = rp.be.ad.vjp(
        lambda y0, t0, *leaves: rp.f0(y0, t0, tuple(leaves)), inputs[0], inputs[1], *inputs[3:]
    )
    y0_bar, t0_bar, *leaves_bar = pullback(f_bar)
    y0_bar = y0_bar + y_bar + xp.sum(xp.where(rp.starts[:, :, None], stored_bar, 0.0), axis=0)
    t0_bar = t0_bar + rest_bar[0]
    leaves_bar = [a + b for a, b in zip(leaves_bar, rest_bar[2:], strict=True)]
    return (y0_bar, t0_bar, rest_bar[1], *leaves_bar)


def forward_jacobian(rp: Replay, inputs: Inputs) -> list[Any]:
    """d(stored states)/d(input), one block ``(m·B·n, input.size)`` per input, by one
    forward-mode pass (a JVP) per input component."""
    be, xp = rp.be, rp.be.xp
    sizes = [math.prod(x.shape) for x in inputs]
    offsets = [sum(sizes[:k]) for k in range(len(sizes))]
    out_size = math.prod((rp.te.shape[0], *inputs[0].shape))
    dtype = inputs[0].dtype
    jac = xp.zeros((out_size, sum(sizes)), dtype=dtype, device=be.device)

    def column(e: Any, jac: Any) -> Any:
        tangents = tuple(
            xp.reshape(xp.astype(_indices(be, size) == (e - offset), x.dtype), x.shape)
            for x, size, offset in zip(inputs, sizes, offsets, strict=True)
        )
        _, tangent = be.ad.jvp(lambda *a: outputs(rp, a), inputs, tangents)
        return xpx.at(jac, (slice(None), e)).set(xp.reshape(tangent, (-1,)))

    jac = be.fori_loop(0, sum(sizes), column, jac)
    return [jac[:, o : o + s] for o, s in zip(offsets, sizes, strict=True)]


def difference_jacobian(rp: Replay, inputs: Inputs) -> list[Any]:
    """d(stored states)/d(input) by central differences of the replay (no AD needed).

    The steps are held fixed, so the differences see the smooth discretised solution, not
    the step-size controller's jumps: their error is that of the differences alone
    (about ``eps^(2/3)`` relative, from the step ``eps^(1/3)·max(1, |x|)``).
    """
    xp = rp.be.xp
    blocks = []
    for k, x in enumerate(inputs):
        flat = xp.reshape(x, (-1,))
        eps = float(xp.finfo(x.dtype).eps)
        columns = []
        for j in range(flat.shape[0]):
            h = eps ** (1 / 3) * max(1.0, abs(float(flat[j])))
            bump = xp.reshape(xp.astype(xp.arange(flat.shape[0]) == j, x.dtype) * h, x.shape)
            up = (*inputs[:k], x + bump, *inputs[k + 1 :])
            down = (*inputs[:k], x - bump, *inputs[k + 1 :])
            columns.append(xp.reshape((outputs(rp, up) - outputs(rp, down)) / (2 * h), (-1,)))
        blocks.append(xp.stack(columns, axis=1))
    return blocks
