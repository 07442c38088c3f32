"""The activations ``mlp_apply`` knows by name: data, one function of ``(xp, x)`` each.

Each is written with the array API standard alone, so it runs (and differentiates) the
same on every backend. The standard has no ``erf``, so ``gelu`` is the tanh approximation
that ``jax.nn.gelu`` uses by default and ``torch.nn.functional.gelu(approximate="tanh")``.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["ACTIVATIONS", "check_activation", "resolve_activation"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _tanh(xp: ModuleType, x: Any) -> Any:
    return xp.tanh(x)


def _relu(xp: ModuleType, x: Any) -> Any:
    return xp.maximum(x, xp.zeros_like(x))


def _softplus(xp: ModuleType, x: Any) -> Any:
    # log(1 + e^x) without overflow for large x.
    return xp.logaddexp(x, xp.zeros_like(x))


def _sigmoid(xp: ModuleType, x: Any) -> Any:
    # 1 / (1 + e^-x) as exp(-softplus(-x)): accurate in its tails, and neither it nor its
    # gradient overflows (1 / (1 + inf) differentiates to 0 * inf = NaN).
    return xp.exp(-xp.logaddexp(-x, xp.zeros_like(x)))


def _gelu(xp: ModuleType, x: Any) -> Any:
    return 0.5 * x * (1.0 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))))


def _sin(xp: ModuleType, x: Any) -> Any:
    return xp.sin(x)


_TABLE: dict[str, Callable[[ModuleType, Any], Any]] = {
    "tanh": _tanh,
    "relu": _relu,
    "softplus": _softplus,
    "sigmoid": _sigmoid,
    "gelu": _gelu,
    "sin": _sin,
}

#: The activation names ``mlp_apply`` accepts; a callable of one array works too.
ACTIVATIONS: tuple[str, ...] = tuple(_TABLE)


def _identity(x: Any) -> Any:
    return x


def check_activation(activation: Any, argument: str) -> None:
    """Raise a clear error unless ``activation`` is a known name, a callable or ``None``."""
    if activation is None or callable(activation):
        return
    if isinstance(activation, str) and activation in _TABLE:
        return
    close = difflib.get_close_matches(str(activation), ACTIVATIONS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown {argument} {activation!r}.{hint} Choose one of {', '.join(ACTIVATIONS)}, "
        "None (no activation), or pass a function of one array."
    )


def resolve_activation(activation: Any, argument: str, xp: ModuleType) -> Callable[[Any], Any]:
    """Return ``activation`` as a function of one array of namespace ``xp``."""
    check_activation(activation, argument)
    if activation is None:
        return _identity
    if isinstance(activation, str):
        return functools.partial(_TABLE[activation], xp)
    return activation  # type: ignore[no-any-return]
