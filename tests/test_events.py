"""Events: zero crossings located on the interpolant, terminal or not, and differentiable."""

from __future__ import annotations

import math

import numpy as np
import pytest

import anyxp
from anyxp.ode import solve, solve_ensemble
from conftest import float64_backend

G, H = 9.81, 10.0


on = float64_backend


def fall(t, y, g):
    xp = anyxp.backend(like=y).xp
    return xp.stack([y[1], xp.zeros_like(y[1]) - g])


def ground(t, y, g):
    return y[0]


ground.terminal = True
ground.direction = -1


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("method", ["tsit5", "dop853", "rodas5p", "kvaerno5"])
def test_a_dropped_ball_hits_the_ground_on_time(name, method):
    be = on(name)
    sol = solve(
        fall, (0.0, 10.0), be.asarray([H, 0.0]), args=(G,), events=ground, method=method,
        rtol=1e-12, atol=1e-12, t_eval=np.linspace(0.0, 10.0, 21),
    )  # fmt: skip
    assert int(sol.status) == 5 and sol.success and "terminal event" in sol.message
    t_hit = float(sol.t_events[0][0])
    v_hit = float(sol.y_events[0][0, 1])
    assert abs(t_hit - math.sqrt(2 * H / G)) < 1e-9
    assert abs(v_hit + math.sqrt(2 * G * H)) < 1e-9
    stored = be.to_numpy(sol.y)[:, 0]
    if "control_flow.compiled" in be.capabilities:  # fixed size: never reached is NaN
        assert np.all(np.isnan(stored[3:])) and np.all(np.isfinite(stored[:3]))
    else:  # only the times before the event
        assert len(stored) == 3
    np.testing.assert_allclose(stored[:3], H - G * np.array([0.0, 0.5, 1.0]) ** 2 / 2, rtol=1e-10)


def test_without_t_eval_the_last_stored_point_is_the_event():
    sol = solve(fall, (0.0, 10.0), np.array([H, 0.0]), args=(G,), events=ground, rtol=1e-10)
    assert float(sol.t[-1]) == float(sol.t_events[0][0])
    assert abs(sol.y[-1, 0]) < 1e-9


@pytest.mark.parametrize("name", ["torch", "jax"])
@pytest.mark.parametrize("mode", ["checkpointed", "direct", "forward"])
def test_the_impact_time_is_differentiable(name, mode):
    be = on(name)

    def impact(g):
        sol = solve(
            fall, (0.0, 10.0), be.asarray([H, 0.0]), args=(g,), events=ground, rtol=1e-12,
            atol=1e-12, sensitivity=mode,
        )  # fmt: skip
        return sol.t_events[0][0], sol.y_events[0][0, 1]

    dt = float(be.ad.grad(lambda g: impact(g)[0])(be.asarray(G)))
    dv = float(be.ad.grad(lambda g: impact(g)[1])(be.asarray(G)))
    assert abs(dt - (-math.sqrt(2 * H) / (2 * G**1.5))) < 1e-9  # t = √(2h/g)
    assert abs(dv - (-math.sqrt(2 * H) / (2 * math.sqrt(G)))) < 1e-8  # v = -√(2gh)


def oscillator(t, y):
    xp = anyxp.backend(like=y).xp
    return xp.stack([y[1], -y[0]])


def test_every_crossing_is_found_and_direction_filters_them():
    def position(t, y):
        return y[0]

    def falling(t, y):
        return y[0]

    falling.direction = -1
    sol = solve(
        oscillator,
        (0.0, 10.0),
        np.array([1.0, 0.0]),
        events=[position, falling],
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(sol.t_events[0], np.pi / 2 + np.pi * np.arange(3), rtol=1e-8)
    np.testing.assert_allclose(sol.t_events[1], [np.pi / 2, 5 * np.pi / 2], rtol=1e-8)
    np.testing.assert_allclose(sol.y_events[0][:, 0], 0.0, atol=1e-9)
    assert sol.status == 0  # no terminal event: the solve runs on


def test_a_terminal_count_ends_at_that_occurrence():
    def position(t, y):
        return y[0]

    position.terminal = 2
    sol = solve(oscillator, (0.0, 10.0), np.array([1.0, 0.0]), events=position, rtol=1e-10)
    assert sol.status == 5
    np.testing.assert_allclose(sol.t_events[0], [np.pi / 2, 3 * np.pi / 2], rtol=1e-8)
    assert float(sol.t[-1]) == pytest.approx(3 * np.pi / 2, rel=1e-8)


def test_event_times_equal_scipys():
    from scipy.integrate import solve_ivp

    omega, k = 10.0, 123.0

    def sys3(t, w):
        return np.array([-omega * w[1], omega * w[0], k * w[2] * (1 - w[2])])

    def x_down(t, w):
        return w[0]

    def z_half(t, w):
        return w[2] - 0.6

    x_down.direction = -1
    z_half.terminal = True
    ours = solve(
        sys3,
        (0.0, 10.0),
        np.array([0.0, 1.0, 0.01]),
        events=[x_down, z_half],
        rtol=1e-11,
        atol=1e-12,
    )
    theirs = solve_ivp(
        sys3, (0.0, 10.0), [0.0, 1.0, 0.01], events=[x_down, z_half], rtol=1e-11, atol=1e-12
    )
    for a, b in zip(ours.t_events, theirs.t_events, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_each_trajectory_of_an_ensemble_has_its_own_events(name):
    be = on(name)
    gravity = be.asarray([[9.81], [1.62], [3.71]])  # Earth, Moon, Mars

    def fall_batch(t, y, g):
        xp = anyxp.backend(like=y).xp
        return xp.stack([y[:, 1], xp.zeros_like(y[:, 1]) - g[:, 0]], axis=1)

    def lands(t, y, g):
        return y[:, 0]

    lands.terminal = True
    sol = solve_ensemble(
        fall_batch, (0.0, 3.0), be.asarray([[H, 0.0]] * 3), params=gravity, events=lands,
        rtol=1e-12, atol=1e-12,
    )  # fmt: skip
    g = be.to_numpy(gravity)[:, 0]
    hit = np.sqrt(2 * H / g)
    t_first = be.to_numpy(sol.t_events[0])
    np.testing.assert_allclose(t_first[[0, 2]], hit[[0, 2]], rtol=1e-10)
    assert np.isnan(t_first[1])  # the Moon's ball is still falling at t = 3
    np.testing.assert_array_equal(be.to_numpy(sol.status), [5, 0, 5])
    if name != "numpy":
        d = be.ad.grad(lambda gr: be.xp.sum(solve_ensemble(
            fall_batch, (0.0, 3.0), be.asarray([[H, 0.0]] * 3), params=gr, events=lands,
            rtol=1e-12, atol=1e-12,
        ).t_events[0][0]))(gravity)  # fmt: skip
        assert abs(float(d[0, 0]) + math.sqrt(2 * H) / (2 * G**1.5)) < 1e-9


@pytest.mark.parametrize(
    ("attribute", "value", "error", "match"),
    [
        ("terminal", -1, ValueError, "terminal must be a bool or a non-negative int"),
        ("terminal", 1.5, ValueError, "terminal"),
        ("direction", "down", ValueError, "direction must be a number"),
    ],
)
def test_bad_event_options_are_clear_errors(attribute, value, error, match):
    def g(t, y):
        return y[0]

    setattr(g, attribute, value)
    with pytest.raises(error, match=match):
        solve(oscillator, (0.0, 1.0), np.array([1.0, 0.0]), events=g)


def test_an_event_that_is_not_callable_is_a_type_error():
    with pytest.raises(TypeError, match="events must be callables"):
        solve(oscillator, (0.0, 1.0), np.array([1.0, 0.0]), events=[0.5])


def test_continuous_adjoints_say_to_use_a_discrete_mode_for_events():
    be = on("jax")

    def impact(g):
        sol = solve(
            fall,
            (0.0, 10.0),
            be.asarray([H, 0.0]),
            args=(g,),
            events=ground,
            sensitivity="backsolve",
        )
        return sol.t_events[0][0]

    with pytest.raises(NotImplementedError, match="'checkpointed', 'direct' or 'forward'"):
        be.ad.grad(impact)(be.asarray(G))
