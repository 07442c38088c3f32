"""Optimizers as pure functions over pytrees: ``adam`` (with AdamW's decay) and ``sgd``.

Shaped like optax, but ``update`` returns the new parameters::

    opt = adam(lr=1e-3)
    state = opt.init(params)
    params, state = opt.update(grads, state, params)

``init`` and ``update`` read and make arrays of the parameters' library only (their
dtype and device), keep no hidden state, and hold the step count as a 0-d integer array in
the state, so ``update`` traces under ``jax.jit`` once and for all steps.

The learning rate is a number or a schedule: a function of the step count returning a
number or a 0-d array. The schedule receives the count as a 0-d array of the parameters'
floating dtype (0 at the first update), so that ``lr(step) = 1e-2 * 0.1 ** (step / 1000)``
is computed at the parameters' precision, traces under ``jax.jit``, and runs on
array-api-strict (which refuses to divide integer arrays).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from anyxp.backend import Backend
from anyxp.control_flow import tree_map
from anyxp.nn._tree import backend_of, check_same_structure, leaves
from anyxp.selection import name_of

__all__ = ["SGD", "Adam", "AdamState", "Optimizer", "SGDState", "Schedule", "adam", "sgd"]

#: A learning rate: a number, or a function of the step count (0 at the first update).
Schedule = float | Callable[[Any], Any]

_GRADS_FIX = (
    "Pass the gradient of the loss with respect to these parameters: be.ad.grad(loss)(params)."
)
_STATE_FIX = "Pass the state that this optimizer's init(params) made, updated by update()."


class Optimizer(Protocol):
    """What ``adam`` and ``sgd`` return: a pair of pure functions over pytrees."""

    def init(self, params: Any) -> Any:
        """Return the optimizer's state for ``params``."""
        ...

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        """Return ``(params, state)`` one step on, given the gradients at ``params``."""
        ...


class AdamState(NamedTuple):
    """Adam's state: the step count and the moving averages of the gradient and its square."""

    step: Any
    mu: Any
    nu: Any


class SGDState(NamedTuple):
    """SGD's state: the step count and the momentum buffer (``None`` without momentum)."""

    step: Any
    velocity: Any


def _check_lr(lr: Schedule) -> None:
    if callable(lr):
        return
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise ValueError(
            f"lr must be a finite number > 0 or a schedule (a function of the step count), got {lr!r}"
        )


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}; Adam's defaults are 0.9, 0.999")


def _backend(grads: Any, state: Any, params: Any, where: str) -> Backend:
    check_same_structure(grads, params, "grads", _GRADS_FIX)
    return backend_of({"params": params, "grads": grads, "state": state}, where)


def _start(params: Any, where: str) -> tuple[Any, Callable[[Any], Any]]:
    """Step 0 on the parameters' device, and ``zeros_like`` of their namespace."""
    be = backend_of({"params": params}, where)
    return be.xp.zeros((), dtype=be.xp.int32, device=be.device), be.xp.zeros_like


def _rate(lr: Schedule, step: Any, params: Any, be: Backend) -> Callable[[Any], Any]:
    """The learning rate, as a function of the leaf it moves (a schedule's array is cast)."""
    if not callable(lr):
        return lambda p: lr
    first = leaves(params)
    value = lr(be.xp.astype(step, first[0].dtype) if first else step)
    if name_of(value) == be.name:
        return lambda p: be.xp.astype(value, p.dtype)
    return lambda p: value


@dataclasses.dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction and decoupled weight decay (AdamW).

    Make it with :func:`adam`.
    """

    lr: Schedule = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        _check_fraction("b1", self.b1)
        _check_fraction("b2", self.b2)
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def init(self, params: Any) -> AdamState:
        """Return the state for ``params``: step 0 and zero moments of their shapes."""
        step, zeros_like = _start(params, "adam.init")
        return AdamState(step, tree_map(zeros_like, params), tree_map(zeros_like, params))

    def update(self, grads: Any, state: AdamState, params: Any) -> tuple[Any, AdamState]:
        """Return ``(params, state)`` after one Adam step with gradients ``grads``."""
        if not isinstance(state, AdamState):
            raise TypeError(f"state is a {type(state).__name__}, not an AdamState. {_STATE_FIX}")
        check_same_structure(state.mu, params, "the state's moments", _STATE_FIX)
        be = _backend(grads, state, params, "adam.update")
        xp = be.xp
        b1, b2, eps, wd = self.b1, self.b2, self.eps, self.weight_decay
        rate = _rate(self.lr, state.step, params, be)
        step = state.step + 1
        mu = tree_map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, grads)
        nu = tree_map(lambda v, g: b2 * v + (1.0 - b2) * (g * g), state.nu, grads)

        def move(p: Any, m: Any, v: Any) -> Any:
            t = xp.astype(step, p.dtype)
            direction = (m / (1.0 - b1**t)) / (xp.sqrt(v / (1.0 - b2**t)) + eps)
            if wd:
                direction = direction + wd * p  # decoupled: not fed through the moments
            return p - rate(p) * direction

        return tree_map(move, params, mu, nu), AdamState(step, mu, nu)


@dataclasses.dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent, with heavy-ball momentum as torch.optim.SGD has it.

    Make it with :func:`sgd`.
    """

    lr: Schedule = 1e-2
    momentum: float = 0.0

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    def init(self, params: Any) -> SGDState:
        """Return the state for ``params``: step 0 and, with momentum, a zero buffer."""
        step, zeros_like = _start(params, "sgd.init")
        return SGDState(step, tree_map(zeros_like, params) if self.momentum else None)

    def update(self, grads: Any, state: SGDState, params: Any) -> tuple[Any, SGDState]:
        """Return ``(params, state)`` after one step against the gradients ``grads``."""
        if not isinstance(state, SGDState):
            raise TypeError(f"state is a {type(state).__name__}, not an SGDState. {_STATE_FIX}")
        be = _backend(grads, state, params, "sgd.update")
        rate = _rate(self.lr, state.step, params, be)
        velocity, direction = None, grads
        if self.momentum:
            check_same_structure(state.velocity, params, "the state's momentum", _STATE_FIX)
            mom = self.momentum
            velocity = direction = tree_map(lambda v, g: mom * v + g, state.velocity, grads)
        new = tree_map(lambda p, d: p - rate(p) * d, params, direction)
        return new, SGDState(state.step + 1, velocity)


def adam(
    lr: Schedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    weight_decay: float = 0.0,
) -> Adam:
    """Return the Adam optimizer (AdamW when ``weight_decay > 0``).

    One step, at step count ``t`` (1 at the first update), for each parameter ``p`` with
    gradient ``g``::

        m = b1 m + (1 - b1) g                 v = b2 v + (1 - b2) g²
        p = p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) - lr weight_decay p

    as ``torch.optim.Adam`` and ``AdamW`` and ``optax.adam`` and ``adamw`` compute it.
    The weight decay is decoupled (Loshchilov & Hutter): it shrinks the parameters
    directly instead of adding to the gradient, so it is not rescaled by ``v``.

    Parameters
    ----------
    lr
        The learning rate, or a schedule: a function of the step count (a 0-d array of
        the parameters' floating dtype, 0 at the first update) returning it.
    b1, b2
        Decay rates of the moving averages of the gradient and of its square.
    eps
        Added to the denominator, against division by zero.
    weight_decay
        The decoupled weight decay factor (0: plain Adam).

    Returns
    -------
    Optimizer
        ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> params = {"x": be.asarray([1.0, -2.0])}
    >>> opt = anyxp.nn.adam(lr=0.1)
    >>> state = opt.init(params)
    >>> params, state = opt.update({"x": 2 * params["x"]}, state, params)
    >>> params["x"], int(state.step)
    (array([ 0.9, -1.9]), 1)
    """
    return Adam(lr=lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)


def sgd(lr: Schedule = 1e-2, momentum: float = 0.0) -> SGD:
    """Return gradient descent, ``p = p - lr g``, with optional heavy-ball momentum.

    With ``momentum`` ``μ > 0`` it is ``v = μ v + g``, ``p = p - lr v``, as
    ``torch.optim.SGD`` computes it.

    Parameters
    ----------
    lr
        The learning rate, or a schedule (a function of the step count, 0 first).
    momentum
        The momentum factor in ``[0, 1)`` (0: plain gradient descent, no buffer).

    Returns
    -------
    Optimizer
        ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> params = [be.asarray([1.0])]
    >>> opt = anyxp.nn.sgd(lr=0.25)
    >>> params, state = opt.update([2 * params[0]], opt.init(params), params)
    >>> params
    [array([0.5])]
    """
    return SGD(lr=lr, momentum=momentum)
