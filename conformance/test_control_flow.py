"""Control flow: the same answers eager and under ``be.jit``; compiled where declared."""

from __future__ import annotations

import numpy as np

from ._helpers import about, check, requires

pytestmark = about("control_flow")


def _programs(be):
    xp = be.xp

    def newton_sqrt(a):
        # while_loop with a tuple carry: Newton's iteration for sqrt(a), 20 steps.
        def cond(state):
            i, _ = state
            return i < 20

        def body(state):
            i, y = state
            return i + 1, 0.5 * (y + a / y)

        return be.while_loop(cond, body, (0, xp.ones_like(a)))[1]

    def weighted_sum(x):
        return be.fori_loop(0, 5, lambda i, acc: acc + (i + 1) * x, xp.zeros_like(x))

    def cumulative(xs):
        def step(carry, x):
            carry = carry + x
            return carry, 2.0 * carry

        return be.scan(step, xp.zeros_like(xs[0, ...]), xs)

    def branch(x):
        return be.cond(xp.sum(x) > 0, lambda v: v * 2.0, lambda v: -v, x)

    return newton_sqrt, weighted_sum, cumulative, branch


def test_eager_and_jit_agree_with_reference(backend):
    a_host = np.array([2.0, 9.0, 0.25])
    xs_host = np.arange(12.0).reshape(4, 3) / 7
    a, xs = backend.asarray(a_host), backend.asarray(xs_host)
    newton_sqrt, weighted_sum, cumulative, branch = _programs(backend)
    for run in (lambda f: f, backend.jit):
        check(backend, run(newton_sqrt)(a), np.sqrt(a_host))
        check(backend, run(weighted_sum)(a), 15 * a_host)
        carry, ys = run(cumulative)(xs)
        check(backend, carry, xs_host.sum(axis=0))
        check(backend, ys, 2 * np.cumsum(xs_host, axis=0))
        check(backend, run(branch)(a), 2 * a_host)
        check(backend, run(branch)(-a), a_host)


@requires("jit")
def test_jit_traces_once(backend):
    traces = []

    def f(x):
        traces.append(1)  # a Python side effect runs only while tracing
        return backend.xp.sin(x) * 2.0

    g = backend.jit(f)
    x = backend.asarray([0.1, 0.2, 0.3])
    g(x)
    g(x + 1.0)
    check(backend, g(x), 2 * np.sin(np.array([0.1, 0.2, 0.3])))
    assert len(traces) == 1, f"be.jit re-ran the Python function {len(traces)} times"


@requires("control_flow.compiled")
def test_loops_are_traced_not_unrolled(backend):
    calls = []

    def body(i, acc):
        calls.append(1)
        return acc + 1.0

    out = backend.jit(lambda x: backend.fori_loop(0, 1000, body, x))(backend.asarray(0.0))
    check(backend, out, 1000.0)
    assert len(calls) <= 2, f"the loop body ran {len(calls)} times in Python: it was unrolled"


@requires("jit.fuse")
def test_a_fused_step_gives_the_eager_answer_for_new_scalars(backend):
    # One step of an iteration, compiled once, called with new 0-d scalars: a fused
    # function must not bake in the first call's values.
    xp = backend.xp

    def step(y, h):
        k1 = xp.sin(y)
        k2 = xp.sin(y + 0.5 * h * k1)
        return y + h * k2, xp.sqrt(xp.mean((k2 - k1) ** 2))

    fused = backend.jit(step, fuse=True)
    y = backend.asarray([0.1, 0.2, 0.3])
    for h in (0.1, 0.2, 0.05):
        hh = backend.asarray(h)
        got, want = fused(y, hh), step(y, hh)
        check(backend, got[0], backend.to_numpy(want[0]), rtol=1e-5)
        check(backend, got[1], backend.to_numpy(want[1]), rtol=1e-5)
