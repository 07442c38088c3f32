"""A multilayer perceptron with explicit parameters: ``mlp_init`` and ``mlp_apply``.

The parameters are a plain pytree, a list with one ``{"w": (n_in, n_out), "b": (n_out,)}``
dict per layer, so that ``jax.grad``, ``torch.func.grad``, ``jax.jit``, ``jax.vmap`` and
the optimizers of :mod:`anyxp.nn` all take them as they are. Layer ``i`` computes
``h @ w + b`` followed by the activation (``final_activation`` after the last layer).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyxp
from anyxp.backend import Backend
from anyxp.nn._activations import check_activation, resolve_activation
from anyxp.nn._tree import backend_of, leaves
from anyxp.random import HostRandom, Key
from anyxp.selection import name_of

__all__ = ["Activation", "Params", "mlp_apply", "mlp_init", "num_params"]

#: An activation: a name from :data:`anyxp.nn.ACTIVATIONS`, a function of one array, or
#: ``None`` for none.
Activation = str | Callable[[Any], Any] | None
#: The parameters of an MLP: one ``{"w": (n_in, n_out), "b": (n_out,)}`` dict per layer.
Params = list[dict[str, Any]]

_MAKE = "make them with anyxp.nn.mlp_init(key, sizes)"


def mlp_init(
    key: Any,
    sizes: Sequence[int],
    *,
    backend: str | Backend | None = None,
    device: Any = None,
    dtype: Any = None,
) -> Params:
    """Return the initial parameters of an MLP with layer widths ``sizes``.

    Weights are drawn Glorot (Xavier) uniform, ``U(-a, a)`` with
    ``a = sqrt(6 / (n_in + n_out))``, i.e. variance ``2 / (n_in + n_out)``; biases are
    zero. Glorot's scaling keeps the variance of activations and of gradients roughly
    constant through layers of a symmetric, saturating activation such as ``tanh`` (the
    default of :func:`mlp_apply` and the usual choice for PINNs and neural ODEs), and a
    uniform draw has no outliers that start a unit saturated.

    Parameters
    ----------
    key
        A random key of the backend, ``be.random.key(seed)``. Each layer draws from its
        own key split from it, so the same key always gives the same parameters.
    sizes
        The layer widths, input first and output last: ``[1, 32, 32, 1]`` is two hidden
        layers of 32 between one input and one output.
    backend
        The backend (a name or an :class:`anyxp.Backend`) to make the arrays with.
        Default: the backend whose key ``key`` is (a JAX key gives jax), else the current
        default (``anyxp.use``, ``ANYXP_BACKEND``, numpy).
    device, dtype
        Where the parameters live and their floating dtype; default the backend's.

    Returns
    -------
    list of dict
        ``[{"w": (sizes[0], sizes[1]), "b": (sizes[1],)}, ...]``, one dict per layer.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> params = anyxp.nn.mlp_init(be.random.key(0), [2, 16, 1], backend=be)
    >>> [tuple(layer["w"].shape) for layer in params], anyxp.nn.num_params(params)
    ([(2, 16), (16, 1)], 65)
    """
    sizes = _check_sizes(sizes)
    be = _init_backend(key, backend, device, dtype)
    _check_key(be, key)
    xp, dt = be.xp, be.float_dtype
    params: Params = []
    keys = be.random.split(key, len(sizes) - 1)
    for k, (n_in, n_out) in zip(keys, itertools.pairwise(sizes), strict=True):
        limit = math.sqrt(6.0 / (n_in + n_out))
        w = be.random.uniform(k, (n_in, n_out), dtype=dt, minval=-limit, maxval=limit)
        params.append({"w": w, "b": xp.zeros((n_out,), dtype=dt, device=be.device)})
    return params


def mlp_apply(
    params: Sequence[Mapping[str, Any]],
    x: Any,
    *,
    activation: Activation = "tanh",
    final_activation: Activation = None,
) -> Any:
    """Return the MLP with parameters ``params`` applied to ``x``.

    Parameters
    ----------
    params
        One ``{"w": (n_in, n_out), "b": (n_out,)}`` mapping per layer, as
        :func:`mlp_init` makes them; all arrays of one library, dtype and device.
    x
        Inputs of shape ``(..., n_in)``: the last axis holds the features, leading axes
        are a batch. An array of the parameters' library and dtype (Python data is read
        at the parameters' dtype).
    activation
        After every layer but the last: a name from :data:`anyxp.nn.ACTIVATIONS`
        (``"tanh"``, ``"relu"``, ``"softplus"``, ``"sigmoid"``, ``"gelu"`` (tanh
        approximation), ``"sin"``), a function of one array, or ``None``.
    final_activation
        After the last layer, the same choices; default ``None`` (a linear output).

    Returns
    -------
    array
        Shape ``(..., n_out)``, of the parameters' library, dtype and device.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> params = anyxp.nn.mlp_init(be.random.key(0), [2, 16, 1], backend=be)
    >>> x = be.xp.ones((5, 3, 2))
    >>> anyxp.nn.mlp_apply(params, x, activation="relu").shape
    (5, 3, 1)
    """
    check_activation(activation, "activation")
    check_activation(final_activation, "final_activation")
    widths = _check_params(params)
    be = backend_of({"params": params, "x": x}, "mlp_apply")
    x = _check_input(be, params, x, widths[0])
    xp = be.xp
    hidden = resolve_activation(activation, "activation", xp)
    last = resolve_activation(final_activation, "final_activation", xp)
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        h = last(h) if i == len(params) - 1 else hidden(h)
    return h


def num_params(params: Any) -> int:
    """Return the number of scalars in a pytree of arrays (the MLP's parameter count).

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> anyxp.nn.num_params(anyxp.nn.mlp_init(be.random.key(0), [1, 32, 32, 1], backend=be))
    1153
    """
    return sum(math.prod(int(n) for n in leaf.shape) for leaf in leaves(params))


# -- checks ------------------------------------------------------------------------------
def _check_sizes(sizes: Sequence[int]) -> list[int]:
    example = "e.g. [1, 32, 32, 1] for one input, two hidden layers of 32 and one output"
    try:
        items = list(sizes)
    except TypeError:
        raise TypeError(
            f"sizes must be a list of layer widths ({example}), got {sizes!r}"
        ) from None
    if len(items) < 2 or not all(
        isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1 for n in items
    ):
        raise ValueError(
            f"sizes must list at least two positive integer widths, input first and output "
            f"last ({example}); got {sizes!r}"
        )
    return [int(n) for n in items]


def _init_backend(key: Any, backend: str | Backend | None, device: Any, dtype: Any) -> Backend:
    if isinstance(backend, Backend):
        if device is None and dtype is None:
            return backend
        device = backend.device if device is None else device
        dtype = backend.float_dtype if dtype is None else dtype
        return anyxp.backend(backend.name, device=device, dtype=dtype)
    # A host key (anyxp.random.Key) belongs to no library: it is the default backend's.
    return anyxp.backend(
        backend if backend is not None else name_of(key), device=device, dtype=dtype
    )


def _check_key(be: Backend, key: Any) -> None:
    # Host-drawing backends take anyxp.random.Key and say so themselves; a backend with
    # its own keys (JAX) would fail on one deep inside its library.
    if isinstance(key, Key) and not isinstance(be.random, HostRandom):
        raise TypeError(
            f"key {key!r} is a host key, not a key of backend {be.name!r}: make the key with "
            f"the backend the parameters are for, anyxp.backend({be.name!r}).random.key(seed)"
        )


def _check_params(params: Any) -> list[int]:
    """Return the layer widths ``params`` implement, or raise naming the bad layer."""
    if not isinstance(params, Sequence) or isinstance(params, str) or not params:
        raise TypeError(
            f"params must be a non-empty list of {{'w', 'b'}} dicts, one per layer; "
            f"got {type(params).__name__}: {_MAKE}"
        )
    widths: list[int] = []
    for i, layer in enumerate(params):
        if not isinstance(layer, Mapping) or "w" not in layer or "b" not in layer:
            raise TypeError(f"params[{i}] must be a dict with keys 'w' and 'b': {_MAKE}")
        if not (hasattr(layer["w"], "shape") and hasattr(layer["b"], "shape")):
            raise TypeError(
                f"params[{i}] holds {type(layer['w']).__name__} and {type(layer['b']).__name__}, "
                "not arrays: make them arrays with be.asarray, or make the parameters with "
                "anyxp.nn.mlp_init(key, sizes)"
            )
        w_shape, b_shape = tuple(layer["w"].shape), tuple(layer["b"].shape)
        if len(w_shape) != 2 or b_shape != w_shape[1:]:
            raise ValueError(
                f"layer {i} has w of shape {w_shape} and b of shape {b_shape}; a layer needs "
                f"w of shape (n_in, n_out) and b of shape (n_out,): {_MAKE}"
            )
        if widths and w_shape[0] != widths[-1]:
            raise ValueError(
                f"layer {i} takes {w_shape[0]} inputs (w of shape {w_shape}) but layer {i - 1} "
                f"gives {widths[-1]} outputs: layer i's w must have shape (sizes[i], "
                f"sizes[i + 1]); {_MAKE}"
            )
        widths.extend(w_shape if not widths else w_shape[1:])
    return widths


def _check_input(be: Backend, params: Sequence[Mapping[str, Any]], x: Any, n_in: int) -> Any:
    """Return ``x`` as an array of the parameters' dtype, or raise saying how to fix it."""
    w = params[0]["w"]
    if name_of(x) is None:  # Python data: read it at the parameters' dtype and device
        x = be.asarray(x, dtype=w.dtype)
    if x.dtype != w.dtype:
        raise TypeError(
            f"x has dtype {x.dtype} but the parameters have {w.dtype}: cast one, e.g. "
            "x = anyxp.backend(like=x).xp.astype(x, params[0]['w'].dtype), or make the "
            "parameters with mlp_init(..., dtype=...)"
        )
    shape = tuple(x.shape)
    if not shape or shape[-1] != n_in:
        hint = " (one feature: pass x[..., None])" if n_in == 1 else ""
        raise ValueError(
            f"x has shape {shape} but the first layer takes {n_in} inputs: the last axis of x "
            f"holds the features{hint}"
        )
    x_dev, w_dev = be.device_of(x), be.device_of(w)
    if x_dev is not None and w_dev is not None and x_dev != w_dev:
        raise ValueError(
            f"x is on device {x_dev} but the parameters on {w_dev}: move x with "
            "anyxp.backend(like=params).asarray(x)"
        )
    return x
