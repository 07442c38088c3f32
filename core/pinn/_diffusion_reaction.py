"""A physics-informed DeepONet for a diffusion-reaction equation, written once.

The operator learning problem of DeepXDE's PI-DeepONet example and of the ZCS paper:
learn ``G: f ↦ u`` where ``u(x, t)`` solves, on ``x, t ∈ [0, 1]``,

    u_t = D u_xx - k u² + f(x),      u(x, 0) = 0,      u(0, t) = u(1, t) = 0,

with ``D = k = 0.01``, and the sources ``f`` are draws of a Gaussian random field (squared
exponential kernel, length scale 0.2). Training sees no solution at all: only the
residual of the equation at collocation points and the initial and boundary conditions
(:func:`anyxp.pinn.pinn_loss`), for ``n_train`` sources at once. The test compares the
trained network, on ``n_test`` sources it never saw, with a finite-difference solution
(the method of lines on a grid of 101 points, solved by :func:`anyxp.ode.solve`).

The data are drawn on the host with numpy (reproducible for a seed whatever the
backend) and then moved to the backend, so torch and JAX train on the same numbers.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import anyxp
from anyxp.backend import Backend
from anyxp.errors import UnsupportedError
from anyxp.nn import Schedule, adam
from anyxp.pinn._deeponet import DeepONetParams, deeponet_apply, deeponet_init
from anyxp.pinn._derivatives import METHODS
from anyxp.pinn._loss import PINNLoss, Term, pinn_loss

__all__ = ["DiffusionReaction", "OperatorFit", "diffusion_reaction", "train_diffusion_reaction"]

#: The grid the sources are drawn on and the reference is solved on, and its test times.
GRID_POINTS, TEST_TIMES = 101, 26
LENGTH_SCALE = 0.2


@dataclass(frozen=True, eq=False)
class DiffusionReaction:
    """The data of the diffusion-reaction operator problem, on one backend.

    Arrays of the backend: ``train_sensors`` ``(n_train, m)`` (the training sources at
    the sensors), ``train_f`` ``(n_train, N)`` (the same sources at the collocation points'
    ``x``), ``collocation`` ``(N, 2)``, ``boundary`` and ``initial`` (points ``(x, t)`` on
    ``x ∈ {0, 1}`` and on ``t = 0``), ``test_sensors`` ``(n_test, m)``, ``test_coords``
    ``(G, 2)`` (a grid) and ``test_solution`` ``(n_test, G)``, the reference there.
    ``sensors`` holds the sensors' positions (numpy).
    """

    backend: Backend = field(repr=False)
    diffusivity: float
    reaction: float
    sensors: np.ndarray = field(repr=False)
    train_sensors: Any = field(repr=False)
    train_f: Any = field(repr=False)
    collocation: Any = field(repr=False)
    boundary: Any = field(repr=False)
    initial: Any = field(repr=False)
    test_sensors: Any = field(repr=False)
    test_coords: Any = field(repr=False)
    test_solution: Any = field(repr=False)

    @property
    def data(self) -> dict[str, Any]:
        """What the loss is called with: ``{"v": train_sensors, "f": train_f}``."""
        return {"v": self.train_sensors, "f": self.train_f}

    def loss(self, method: str = "zcs", weights: Sequence[float] = (1.0, 1.0, 1.0)) -> PINNLoss:
        """Return the physics-informed loss: the PDE, initial and boundary residuals.

        Parameters
        ----------
        method
            How the derivatives are taken, ``"zcs"`` or ``"aligned"``.
        weights
            The weights of the ``pde``, ``initial`` and ``boundary`` terms.
        """
        diffusivity, reaction = self.diffusivity, self.reaction

        def pde(d: Any, x: Any, data: Any) -> Any:
            return d["u_t"] - diffusivity * d["u_xx"] + reaction * d["u"] ** 2 - data["f"]

        def zero(d: Any, x: Any, data: Any) -> Any:
            return d["u"]

        w_pde, w_initial, w_boundary = weights
        terms = [
            Term(
                "pde", self.collocation, pde,
                orders={"u": (0, 0), "u_t": (0, 1), "u_xx": (2, 0)}, weight=w_pde,
            ),
            Term("initial", self.initial, zero, weight=w_initial),
            Term("boundary", self.boundary, zero, weight=w_boundary),
        ]  # fmt: skip
        return pinn_loss(operator_net, terms, method=method)

    def relative_error(self, params: DeepONetParams) -> float:
        """Return ``‖G(f) - u‖ / ‖u‖`` over the test sources and the test grid."""
        xp = self.backend.xp
        pred = deeponet_apply(params, self.test_sensors, self.test_coords)
        diff = pred - self.test_solution
        return float(xp.sqrt(xp.sum(diff * diff) / xp.sum(self.test_solution**2)))


def operator_net(params: DeepONetParams, data: Any, x: Any) -> Any:
    """The network as :func:`anyxp.pinn.pinn_loss` calls it: the DeepONet of ``data["v"]``."""
    return deeponet_apply(params, data["v"], x)


@dataclass(frozen=True, eq=False)
class OperatorFit:
    """What :func:`train_diffusion_reaction` returns: the loss history and the network.

    ``losses[i]`` is the loss at iteration ``i`` (before its update) and ``seconds[i]``
    how long the iteration took (on JAX ``seconds[0]`` includes compiling the step).
    """

    losses: np.ndarray
    seconds: np.ndarray
    params: DeepONetParams = field(repr=False)
    initial_params: DeepONetParams = field(repr=False)
    problem: DiffusionReaction = field(repr=False)
    method: str

    def relative_error(self, params: DeepONetParams | None = None) -> float:
        """Return the relative L2 test error of ``params`` (default the trained network)."""
        return self.problem.relative_error(self.params if params is None else params)


def diffusion_reaction(
    backend: str | Backend | None = None,
    *,
    n_train: int = 100,
    n_test: int = 20,
    n_sensors: int = 21,
    n_collocation: int = 400,
    n_boundary: int = 50,
    seed: int = 0,
    diffusivity: float = 0.01,
    reaction: float = 0.01,
    dtype: Any = None,
) -> DiffusionReaction:
    """Return the diffusion-reaction operator problem: sources, points and a reference.

    Parameters
    ----------
    backend
        The backend to hold the data (a name or an :class:`anyxp.Backend`).
    n_train, n_test
        How many sources to train on and to test on (drawn apart).
    n_sensors
        ``m``, the sensors, equally spaced on ``[0, 1]``: the branch's input width.
    n_collocation
        ``N``, the collocation points of the PDE residual, uniform on ``[0, 1]²``.
    n_boundary
        The points of each of the initial and the boundary condition.
    seed
        Seeds every draw (numpy's generator, on the host).
    diffusivity, reaction
        ``D`` and ``k``.
    dtype
        The floating dtype of the data (default the backend's).

    Returns
    -------
    DiffusionReaction
        The arrays, ``data`` for the loss, ``loss(method)`` and ``relative_error(params)``.

    Examples
    --------
    >>> import anyxp
    >>> p = anyxp.pinn.diffusion_reaction("numpy", n_train=4, n_test=2, n_collocation=100)
    >>> p.train_sensors.shape, p.train_f.shape, p.test_solution.shape
    ((4, 21), (4, 100), (2, 2626))
    """
    for name, value, least in (
        ("n_train", n_train, 1), ("n_test", n_test, 1), ("n_sensors", n_sensors, 2),
        ("n_collocation", n_collocation, 1), ("n_boundary", n_boundary, 1), ("seed", seed, 0),
    ):  # fmt: skip
        _int_at_least(value, name, least)
    for name, number in (("diffusivity", diffusivity), ("reaction", reaction)):
        if not isinstance(number, numbers.Real) or not 0 <= number < math.inf:
            raise ValueError(f"{name} must be a non-negative finite number, got {number!r}")
    be = _backend(backend, dtype)
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, GRID_POINTS)
    sources = _random_field(rng, grid, n_train + n_test)
    sensors = np.linspace(0.0, 1.0, n_sensors)
    at_sensors = np.stack([np.interp(sensors, grid, f) for f in sources])
    collocation = rng.uniform(0.0, 1.0, (n_collocation, 2))
    f_collocation = np.stack([np.interp(collocation[:, 0], grid, f) for f in sources[:n_train]])
    t_boundary = rng.uniform(0.0, 1.0, n_boundary)
    boundary = np.stack([np.arange(n_boundary) % 2, t_boundary], axis=1).astype(float)
    initial = np.stack([rng.uniform(0.0, 1.0, n_boundary), np.zeros(n_boundary)], axis=1)
    times = np.linspace(0.0, 1.0, TEST_TIMES)
    solution = _reference(sources[n_train:], grid, times, diffusivity, reaction)
    xx, tt = np.meshgrid(grid, times, indexing="ij")
    return DiffusionReaction(
        backend=be,
        diffusivity=float(diffusivity),
        reaction=float(reaction),
        sensors=sensors,
        train_sensors=be.asarray(at_sensors[:n_train]),
        train_f=be.asarray(f_collocation),
        collocation=be.asarray(collocation),
        boundary=be.asarray(boundary),
        initial=be.asarray(initial),
        test_sensors=be.asarray(at_sensors[n_train:]),
        test_coords=be.asarray(np.stack([xx.ravel(), tt.ravel()], axis=1)),
        test_solution=be.asarray(solution.reshape(n_test, -1)),
    )


def train_diffusion_reaction(
    backend: str | Backend | None = None,
    *,
    method: str = "zcs",
    iterations: int = 2000,
    seed: int = 0,
    lr: Schedule = 3e-3,
    width: int = 32,
    depth: int = 3,
    problem: DiffusionReaction | None = None,
    jit: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> OperatorFit:
    """Return a physics-informed DeepONet trained on the diffusion-reaction operator.

    Full-batch Adam on :meth:`DiffusionReaction.loss`: every training source at every
    collocation point at each iteration. ``backend`` is the only switch between libraries.

    Parameters
    ----------
    backend
        A backend with reverse-mode AD (``"torch"``, ``"jax"``, or an
        :class:`anyxp.Backend`); ignored when ``problem`` is given (its backend is used).
    method
        ``"zcs"`` or ``"aligned"``: how the loss differentiates the network.
    iterations
        The number of Adam steps.
    seed
        Seeds the network's weights (and the problem's draws when ``problem`` is not
        given).
    lr
        Adam's learning rate or schedule, as :func:`anyxp.nn.adam` takes it.
    width, depth
        The branch is ``[m] + [width] * depth`` and the trunk ``[2] + [width] * depth``.
    problem
        The data; default :func:`diffusion_reaction` on the backend with its defaults.
    jit
        Compile the training step with ``be.jit`` (JAX; a no-op on eager backends).
    callback
        Called after each iteration as ``callback(iteration, loss)``, from 1.

    Returns
    -------
    OperatorFit
        ``losses``, ``seconds``, ``params``, ``initial_params``, ``problem``;
        ``relative_error()`` on the test sources.

    Raises
    ------
    anyxp.UnsupportedError
        The backend has no reverse-mode AD (numpy, array-api-strict).
    ValueError
        An option out of range, or a loss that stopped being finite (lower ``lr``).

    Examples
    --------
    >>> import anyxp
    >>> fit = anyxp.pinn.train_diffusion_reaction("torch", iterations=10)  # doctest: +SKIP
    >>> fit.losses.shape  # doctest: +SKIP
    (10,)
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    for name, value, least in (("iterations", iterations, 1), ("seed", seed, 0),
                               ("width", width, 1), ("depth", depth, 1)):  # fmt: skip
        _int_at_least(value, name, least)
    if problem is None:
        problem = diffusion_reaction(backend, seed=seed)
    elif not isinstance(problem, DiffusionReaction):
        raise TypeError(
            f"problem must be made by anyxp.pinn.diffusion_reaction, got {type(problem).__name__}"
        )
    be = problem.backend
    if "ad.vjp" not in be.capabilities:
        from anyxp.registry import get_registry

        raise UnsupportedError(be.name, "ad.vjp", get_registry().providers("ad.vjp"))
    m = len(problem.sensors)
    params = deeponet_init(
        be.random.key(seed), [m] + [width] * depth, [2] + [width] * depth, backend=be,
        dtype=problem.train_sensors.dtype,
    )  # fmt: skip
    initial = params
    opt = adam(lr)
    loss = problem.loss(method)

    def step(params: Any, state: Any, data: Any) -> tuple[Any, Any, Any]:
        value, grads = be.ad.value_and_grad(loss)(params, data)
        params, state = opt.update(grads, state, params)
        return params, state, value

    run = be.jit(step) if jit else step
    state = opt.init(params)
    data = problem.data
    losses, seconds = [], []
    for i in range(1, iterations + 1):
        start = time.perf_counter()
        params, state, value = run(params, state, data)
        loss_value = float(value)  # waits for the step
        seconds.append(time.perf_counter() - start)
        if not math.isfinite(loss_value):
            raise ValueError(f"the loss became {loss_value} at iteration {i}: lower lr")
        losses.append(loss_value)
        if callback is not None:
            callback(i, loss_value)
    return OperatorFit(np.asarray(losses), np.asarray(seconds), params, initial, problem, method)


# -- data ----------------------------------------------------------------------------------
def _random_field(rng: np.random.Generator, grid: np.ndarray, n: int) -> np.ndarray:
    """``(n, len(grid))`` draws of a zero-mean GRF with a squared exponential kernel."""
    cov = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / LENGTH_SCALE) ** 2)
    w, v = np.linalg.eigh(cov)
    root = v * np.sqrt(np.clip(w, 0.0, None))  # cov = root rootᵀ; eigh, as cov is near singular
    return rng.standard_normal((n, grid.size)) @ root.T


def _reference(
    sources: np.ndarray, grid: np.ndarray, times: np.ndarray, diffusivity: float, reaction: float
) -> np.ndarray:
    """``(n, len(grid), len(times))``: the solutions, by the method of lines on ``grid``."""
    from anyxp.ode import solve

    h = grid[1] - grid[0]
    f = sources[:, 1:-1]

    def rhs(t: Any, u: Any) -> Any:
        padded = np.pad(u, ((0, 0), (1, 1)))  # u = 0 on both ends
        u_xx = (padded[:, :-2] - 2.0 * u + padded[:, 2:]) / h**2
        return diffusivity * u_xx - reaction * u**2 + f

    u0 = np.zeros_like(f)
    sol = solve(rhs, (0.0, 1.0), u0, t_eval=times, rtol=1e-8, atol=1e-10, backend="numpy")
    inner = np.moveaxis(np.asarray(sol.y), 0, -1)  # (n, interior, times)
    return np.pad(inner, ((0, 0), (1, 1), (0, 0)))


# -- checks ------------------------------------------------------------------------------------
def _backend(backend: str | Backend | None, dtype: Any) -> Backend:
    if isinstance(backend, Backend):
        if dtype is None:
            return backend
        return anyxp.backend(backend.name, device=backend.device, dtype=dtype)
    return anyxp.backend(backend, dtype=dtype)


def _int_at_least(value: Any, name: str, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
