"""The spiral neural ODE, written once: data, model and training on any backend with AD.

The classic demonstration of neural ODEs (torchdiffeq's ``ode_demo``). The data is the
trajectory of ``y' = (y³) A``, ``A = [[-0.1, 2], [-2, -0.1]]`` (the row vector ``y³`` times
``A``), from ``y0 = [2, 0]`` at 1000 times in ``[0, 25]``: a spiral into the origin. The
model is ``y' = MLP(y³)``, a ``2 → 50 → 2`` tanh network, fitted with Adam on minibatches
of short windows: ``batch_size`` random start points, each followed for ``batch_time``
consecutive data times, the loss the mean ``|prediction - data|`` over the windows.

All windows are one :func:`anyxp.ode.solve` of a batched state of shape
``(batch_size, 2)`` stored at the window's times (they share the network, and the
problem is autonomous, so every window starts at ``t = 0``). Its gradient goes through
``solve(..., sensitivity=...)``; on JAX the whole step (draw, solve, gradient, Adam
update) is one compiled program, ``be.jit``.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import anyxp
from anyxp.backend import Backend
from anyxp.errors import UnsupportedError
from anyxp.nn._mlp import Params, mlp_apply, mlp_init
from anyxp.nn._optim import Schedule, adam

__all__ = ["SpiralData", "SpiralFit", "spiral_data", "spiral_rhs", "train_spiral"]

#: The true dynamics, ``y' = (y³) A``, and the initial state.
TRUE_A = ((-0.1, 2.0), (-2.0, -0.1))
Y0 = (2.0, 0.0)


@dataclass(frozen=True, eq=False)
class SpiralData:
    """The spiral's trajectory: ``y[i]`` is the state at ``t[i]``.

    ``t`` is a float64 numpy array of shape ``(n,)`` (concrete times: they are the
    ``t_eval`` of the solves), ``y`` an array of the backend of shape ``(n, 2)``.
    """

    t: np.ndarray
    y: Any
    backend: Backend = field(repr=False)


@dataclass(frozen=True, eq=False)
class SpiralFit:
    """What :func:`train_spiral` returns: the loss history and the trained network.

    ``losses[i]`` is the minibatch loss at iteration ``i`` (before that iteration's
    update) and ``seconds[i]`` how long the iteration took, the loss read back included;
    on JAX ``seconds[0]`` includes tracing and compiling the step. ``initial_params`` are
    the network before training, ``params`` after.
    """

    losses: np.ndarray
    seconds: np.ndarray
    params: Params = field(repr=False)
    initial_params: Params = field(repr=False)
    data: SpiralData = field(repr=False)
    sensitivity: str
    _trajectory: Callable[[Params], Any] = field(repr=False, compare=False)

    @property
    def backend(self) -> Backend:
        """The backend the network was trained on."""
        return self.data.backend

    def trajectory(self, params: Params | None = None) -> Any:
        """Return the model's trajectory from the data's ``y0`` at the data's times.

        Parameters
        ----------
        params
            The network to follow; default the trained one, ``self.params``.

        Returns
        -------
        array
            Shape ``(n, 2)``, of the backend: comparable with ``self.data.y``.
        """
        return self._trajectory(self.params if params is None else params)

    def trajectory_loss(self, params: Params | None = None) -> float:
        """Return the mean ``|trajectory - data|`` over the whole trajectory from ``y0``.

        The measure torchdiffeq's demo prints: how well the network reproduces the spiral
        when it is followed from the start, not just over short windows.
        """
        xp = self.backend.xp
        return float(xp.mean(xp.abs(self.trajectory(params) - self.data.y)))


def spiral_data(
    backend: str | Backend | None = None,
    *,
    n_points: int = 1000,
    t_end: float = 25.0,
    dtype: Any = "float32",
) -> SpiralData:
    """Return the spiral ``y' = (y³) A`` from ``y0 = [2, 0]``, solved with :func:`anyxp.ode.solve`.

    Parameters
    ----------
    backend
        The backend to solve on and to hold the data (a name or an :class:`anyxp.Backend`).
    n_points
        How many equally spaced times in ``[0, t_end]`` store the state.
    t_end
        The end of the interval.
    dtype
        The floating dtype of the state: ``"float32"`` (as torchdiffeq's demo),
        ``"float64"``, or ``None`` for the backend's own. The solve has
        :func:`anyxp.ode.solve`'s default tolerances (``rtol`` raised to ``1.2e-5`` in
        float32), far below the losses a network reaches on this data.

    Returns
    -------
    SpiralData
        ``t`` (numpy, ``(n_points,)``) and ``y`` (the backend's, ``(n_points, 2)``).

    Examples
    --------
    >>> import anyxp
    >>> data = anyxp.nn.spiral_data("numpy", n_points=5)
    >>> data.y.shape, float(data.y[0, 0])
    ((5, 2), 2.0)
    """
    be = _backend(backend, dtype)
    _positive_int(n_points, "n_points", minimum=2)
    if not isinstance(t_end, numbers.Real) or not math.isfinite(t_end) or t_end <= 0:
        raise ValueError(f"t_end must be a positive finite number, got {t_end!r}")
    t = np.linspace(0.0, float(t_end), int(n_points))
    trajectory = _cached(_true_trajectory, be, tuple(float(x) for x in t))
    return SpiralData(t, trajectory(be.asarray(Y0), be.asarray(TRUE_A)), be)


def spiral_rhs(t: Any, y: Any, params: Params) -> Any:
    """Return the model's derivative, ``MLP(y³)``, at states ``y`` of shape ``(..., 2)``.

    The right-hand side the network is trained as: ``solve(spiral_rhs, t_span, y0,
    args=(params,))`` follows it. Cubing the state first, as the data's dynamics do, is
    torchdiffeq's choice too: the network then only has to learn the linear map ``A``.
    """
    return mlp_apply(params, y**3, activation="tanh")


def train_spiral(
    backend: str | Backend | None = None,
    *,
    iterations: int = 300,
    seed: int = 0,
    sensitivity: str = "checkpointed",
    lr: Schedule = 1e-2,
    batch_size: int = 20,
    batch_time: int = 10,
    hidden: int = 50,
    method: str = "tsit5",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 256,
    dtype: Any = "float32",
    data: SpiralData | None = None,
    jit: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> SpiralFit:
    """Return a ``2 → hidden → 2`` neural ODE trained on the spiral, and its loss history.

    Each iteration draws ``batch_size`` start points uniformly from the data (with
    replacement; from a key split off ``be.random.key(seed)``), solves the model from the
    data there for ``batch_time`` data times as one batched :func:`anyxp.ode.solve`,
    takes the gradient of the mean ``|prediction - data|`` through the solve and updates
    the network with :func:`anyxp.nn.adam`. ``backend`` is the only switch between
    libraries: the same code runs on torch and on JAX, reproducibly for a seed on each.

    Parameters
    ----------
    backend
        A backend with automatic differentiation (``"torch"``, ``"jax"``, or an
        :class:`anyxp.Backend`); default the current one (``anyxp.use``,
        ``ANYXP_BACKEND``).
    iterations
        The number of Adam steps.
    seed
        Seeds the network's initial weights and the windows drawn.
    sensitivity
        How the solve is differentiated: ``"checkpointed"`` (default), ``"direct"``,
        ``"backsolve"`` (the adjoint of torchdiffeq's ``odeint_adjoint``),
        ``"interpolating"`` or ``"forward"`` (one pass per parameter: slow here). See
        :func:`anyxp.ode.solve`.
    lr
        Adam's learning rate: a number, or a schedule (a function of the step count, as
        :func:`anyxp.nn.adam` takes), e.g. ``lambda step: 1e-2 * 0.1 ** (step / 1000)``.
    batch_size, batch_time
        The number of windows per iteration and the data times in each (torchdiffeq's
        demo: 20 and 10).
    hidden
        The width of the network's hidden layer.
    method, rtol, atol
        The solver of the windows and its tolerances (default :func:`anyxp.ode.solve`'s,
        raised to what ``dtype`` resolves).
    max_steps
        The most steps one window's solve may take. A window spans ``batch_time - 1``
        data intervals, which tsit5 crosses in about 2 to 10 steps at the default
        tolerances; under ``jax.jit`` the bound also sizes the step buffers that
        ``"direct"`` and ``"interpolating"`` differentiate, so their cost grows with it.
    dtype
        The floating dtype of data and network: ``"float32"`` (default, as torchdiffeq's
        demo), ``"float64"``, or ``None`` for the backend's own.
    data
        The data to fit; default :func:`spiral_data` on the backend, in ``dtype``.
    jit
        Compile the training step with ``be.jit`` (JAX; a no-op on eager backends). The
        compiled step is kept: a later call with the same options (another ``seed``,
        more ``iterations``, data of the same size) runs it without compiling again.
    callback
        Called after each iteration as ``callback(iteration, loss)``, ``iteration``
        counting from 1.

    Returns
    -------
    SpiralFit
        ``losses`` and ``seconds`` per iteration, the trained ``params``, the
        ``initial_params``, the ``data``; ``trajectory()`` and ``trajectory_loss()``
        follow the model over the whole interval.

    Raises
    ------
    anyxp.UnsupportedError
        The backend has no automatic differentiation of solves (numpy, array-api-strict).
    ValueError
        An option out of range, or a loss that stopped being finite (training diverged).

    Examples
    --------
    >>> import anyxp
    >>> fit = anyxp.nn.train_spiral("torch", iterations=5)  # doctest: +SKIP
    >>> fit.losses.shape, fit.trajectory().shape  # doctest: +SKIP
    ((5,), (1000, 2))
    """
    be = _check_options(
        backend, dtype, data, iterations, seed, sensitivity, lr, batch_size, batch_time, hidden,
        max_steps,
    )  # fmt: skip
    data = spiral_data(be, dtype=None) if data is None else data
    if batch_time > data.t.shape[0] - 1:
        raise ValueError(
            f"batch_time={batch_time} needs more than {batch_time} data times, the data has "
            f"{data.t.shape[0]}: lower batch_time or pass more points to spiral_data"
        )
    solver = (("method", method), ("rtol", rtol), ("atol", atol), ("max_steps", max_steps))
    t_window = tuple(float(x) for x in data.t[:batch_time] - data.t[0])
    n_starts = int(data.t.shape[0]) - batch_time
    opt, step = _cached(_training_step, be, lr, sensitivity, batch_size, t_window, n_starts,
                        solver, jit)  # fmt: skip
    key_init, key = be.random.split(be.random.key(seed))
    params = mlp_init(key_init, [2, hidden, 2], backend=be)
    initial = params
    state = opt.init(params)
    losses, seconds = [], []
    for i in range(1, iterations + 1):
        key, key_batch = be.random.split(key)
        start = time.perf_counter()
        params, state, value = step(params, state, key_batch, data.y)
        loss = float(value)  # waits for the step: the time below is the step's
        seconds.append(time.perf_counter() - start)
        if not math.isfinite(loss):
            raise ValueError(
                f"the loss became {loss} at iteration {i}: training diverged, or a window's "
                f"solve ran out of its max_steps={max_steps}. Lower lr, or raise max_steps"
            )
        losses.append(loss)
        if callback is not None:
            callback(i, loss)
    full = _cached(_trajectory, be, tuple(float(x) for x in data.t), solver)
    y0 = data.y[0, ...]

    def trajectory(params: Params) -> Any:
        return full(params, y0)

    return SpiralFit(
        np.asarray(losses), np.asarray(seconds), params, initial, data, sensitivity, trajectory
    )


# -- the pieces of a training run -------------------------------------------------------
def _true_rhs(t: Any, y: Any, a: Any) -> Any:
    return (y**3) @ a


def _true_trajectory(be: Backend, t: tuple[float, ...]) -> Callable[[Any, Any], Any]:
    """Return ``(y0, A) -> (n, 2)``: the data's dynamics solved from ``y0`` at the times ``t``,
    compiled with ``be.jit`` (on JAX a third of the cost of the solve run eagerly)."""
    from anyxp.ode import solve

    t_eval = np.asarray(t)

    def run(y0: Any, a: Any) -> Any:
        return solve(_true_rhs, (t[0], t[-1]), y0, args=(a,), t_eval=t_eval).y

    return be.jit(run)


def _cached(build: Callable[..., Any], *key: Any) -> Any:
    """``build(*key)``, made once per ``key`` where the key can be hashed.

    On JAX a training step is a program compiled at its first call (seconds); a later run
    with the same options (another seed, more iterations, other data of the same size)
    calls the same jitted function again and reuses it. Everything the step closes over is
    in the key; the data and the random key are its arguments.
    """
    try:
        return _built(build, *key)
    except TypeError:  # an unhashable option (an array rtol): build afresh
        return build(*key)


@functools.lru_cache(maxsize=16)
def _built(build: Callable[..., Any], *key: Any) -> Any:
    return build(*key)


def _training_step(
    be: Backend,
    lr: Schedule,
    sensitivity: str,
    batch_size: int,
    t_window: tuple[float, ...],
    n_starts: int,
    solver: tuple[tuple[str, Any], ...],
    jit: bool,
) -> tuple[Any, Callable[[Params, Any, Any, Any], tuple[Params, Any, Any]]]:
    """Return Adam and ``step(params, state, key, y) -> (params, state, loss)``: one update
    on ``batch_size`` windows of the data ``y`` at the times ``t_window`` from their start,
    drawn from the first ``n_starts`` rows of ``y``."""
    from anyxp.ode import solve

    xp = be.xp
    options = dict(solver)
    batch_time = len(t_window)
    t_eval = np.asarray(t_window)  # autonomous: every window starts at 0
    offsets = xp.arange(batch_time, device=be.device)
    opt = adam(lr)

    def windows(key: Any, y: Any) -> Any:
        """``(batch_time, batch_size, 2)``: the data over the windows of the draw ``key``."""
        starts = be.random.integers(key, (batch_size,), 0, n_starts)
        rows = xp.reshape(starts[None, :] + xp.astype(offsets, starts.dtype)[:, None], (-1,))
        return xp.reshape(xp.take(y, rows, axis=0), (batch_time, batch_size, 2))

    def loss(params: Params, true: Any) -> Any:
        sol = solve(
            spiral_rhs, (0.0, t_window[-1]), true[0, ...], args=(params,), t_eval=t_eval,
            sensitivity=sensitivity, **options,
        )  # fmt: skip
        if sol.y.shape[0] != batch_time:  # an eager solve stores only the times it reached
            raise ValueError(
                f"a window's solve stopped at t={float(sol.t[-1]):.3g} of {t_window[-1]:.3g} "
                f"(status {sol.status}, max_steps={options['max_steps']}): {sol.message} "
                "A network that training made stiff does this too: then lower lr."
            )
        return xp.mean(xp.abs(sol.y - true))

    def step(params: Params, state: Any, key: Any, y: Any) -> tuple[Params, Any, Any]:
        value, grads = be.ad.value_and_grad(loss)(params, windows(key, y))
        params, state = opt.update(grads, state, params)
        return params, state, value

    return opt, be.jit(step) if jit else step


def _trajectory(
    be: Backend, t: tuple[float, ...], solver: tuple[tuple[str, Any], ...]
) -> Callable[[Params, Any], Any]:
    """Return ``(params, y0) -> (n, 2)``: the model followed from ``y0`` at the times ``t``."""
    from anyxp.ode import solve

    t_eval = np.asarray(t)
    options = {**dict(solver), "max_steps": 100_000}  # the whole interval, not one window

    def run(params: Params, y0: Any) -> Any:
        return solve(spiral_rhs, (t[0], t[-1]), y0, args=(params,), t_eval=t_eval, **options).y

    return be.jit(run)


# -- checks --------------------------------------------------------------------------------
def _name(backend: str | Backend | None) -> str | None:
    return backend.name if isinstance(backend, Backend) else backend


def _backend(backend: str | Backend | None, dtype: Any) -> Backend:
    """The backend called ``backend`` in ``dtype`` (``None``: the backend's own)."""
    if isinstance(backend, Backend):
        wanted = getattr(backend.xp, dtype, None) if isinstance(dtype, str) else dtype
        if dtype is None or wanted == backend.float_dtype:
            return backend  # itself: a step compiled for it is found again (_cached)
        return anyxp.backend(backend.name, device=backend.device, dtype=dtype)
    return anyxp.backend(backend, dtype=dtype)


def _positive_int(value: Any, name: str, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_options(
    backend: str | Backend | None,
    dtype: Any,
    data: SpiralData | None,
    iterations: Any,
    seed: Any,
    sensitivity: Any,
    lr: Any,
    batch_size: Any,
    batch_time: Any,
    hidden: Any,
    max_steps: Any,
) -> Backend:
    """Check every option of :func:`train_spiral` up front; return the backend to train on."""
    if data is not None:
        if not isinstance(data, SpiralData):
            raise TypeError(f"data must be made by anyxp.nn.spiral_data, got {type(data).__name__}")
        be = data.backend
        if backend is not None and _name(backend) != be.name:
            raise ValueError(
                f"data is on backend {be.name!r} but backend={_name(backend)!r}: make the data "
                f"with anyxp.nn.spiral_data({_name(backend)!r}) or leave backend out"
            )
    else:
        be = _backend(backend, dtype)
    if "ad.custom" not in be.capabilities:
        from anyxp.registry import get_registry

        raise UnsupportedError(be.name, "ad.custom", get_registry().providers("ad.custom"))
    _positive_int(iterations, "iterations")
    _positive_int(batch_size, "batch_size")
    _positive_int(batch_time, "batch_time", minimum=2)
    _positive_int(hidden, "hidden")
    _positive_int(max_steps, "max_steps")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    from anyxp.ode._sensitivity import MODES

    if sensitivity not in MODES:
        raise ValueError(f"unknown sensitivity {sensitivity!r}; choose one of {', '.join(MODES)}")
    number = isinstance(lr, numbers.Real) and not isinstance(lr, bool)
    if not callable(lr) and not (number and 0 < float(lr) < math.inf):
        raise ValueError(f"lr must be a positive finite number or a schedule, got {lr!r}")
    return be
