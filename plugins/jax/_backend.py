"""The jax backend's factory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from anyxp import Backend, BackendSpec, BackendUnavailableError
from anyxp._warnings import warn_user
from anyxp.random import as_shape


def _zero_tangent(x: Any) -> Any:
    """The tangent of a non-differentiable output: float0 for integers (JAX's rule)."""
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


class JaxAD:
    """JAX's own transformations, under the names every backend uses."""

    grad = staticmethod(jax.grad)
    value_and_grad = staticmethod(jax.value_and_grad)
    vjp = staticmethod(jax.vjp)
    jvp = staticmethod(jax.jvp)
    jacobian = staticmethod(jax.jacrev)
    hessian = staticmethod(jax.hessian)
    stop_gradient = staticmethod(jax.lax.stop_gradient)

    @staticmethod
    def custom_vjp(
        fun: Callable[..., Any], fwd: Callable[..., Any], bwd: Callable[..., Any]
    ) -> Callable[..., Any]:
        g = jax.custom_vjp(fun)

        def g_fwd(*args: Any) -> Any:
            args = tuple(jnp.asarray(a) for a in args)  # a Python float comes as a scalar
            outputs, res = fwd(*args)
            return outputs, (args, res)

        def g_bwd(saved: Any, cotangents: Any) -> tuple[Any, ...]:
            args, res = saved
            return tuple(bwd(args, res, cotangents[0]))

        g.defvjp(g_fwd, g_bwd)
        return g

    @staticmethod
    def with_jacobian(fun: Callable[..., Any], jacobian: Callable[..., Any]) -> Callable[..., Any]:
        g = jax.custom_jvp(fun)

        @g.defjvp
        def g_jvp(primals: Any, tangents: Any) -> Any:
            primals = tuple(jnp.asarray(a) for a in primals)
            out, aux = fun(*primals)
            blocks = jacobian(*primals)
            parts = [b @ jnp.ravel(t) for b, t in zip(blocks, tangents, strict=True)]
            t_out = sum(parts[1:], parts[0]).reshape(out.shape)
            return (out, aux), (t_out, tuple(_zero_tangent(a) for a in aux))

        return g


class JaxControlFlow:
    """``jax.lax`` control flow: loops trace into one compiled program."""

    compiled = True
    while_loop = staticmethod(jax.lax.while_loop)
    fori_loop = staticmethod(jax.lax.fori_loop)
    cond = staticmethod(jax.lax.cond)

    def __init__(self, device: Any) -> None:
        self._device = device

    def scan(
        self, f: Callable[..., Any], init: Any, xs: Any = None, length: int | None = None
    ) -> Any:
        return jax.lax.scan(f, init, xs, length=length)

    def jit(
        self, fun: Callable[..., Any], fuse: bool = False, **options: Any
    ) -> Callable[..., Any]:
        return jax.jit(fun, **options)  # ``fuse``: every jitted function is fused already

    @staticmethod
    def tree_flatten(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
        """JAX's pytrees: any registered node (equinox modules, flax structs) is walked."""
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        return leaves, lambda new: jax.tree_util.tree_unflatten(treedef, new)


class JaxRandom:
    """``jax.random`` with typed keys."""

    def __init__(self, be: Backend) -> None:
        self._float_dtype = be.float_dtype
        self._device = be.device

    def key(self, seed: int) -> Any:
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        return jax.device_put(jax.random.key(int(seed)), self._device)

    def split(self, key: Any, num: int = 2) -> tuple[Any, ...]:
        return tuple(jax.random.split(key, num))

    def normal(self, key: Any, shape: int | tuple[int, ...] = (), dtype: Any = None) -> Any:
        return jax.random.normal(key, as_shape(shape), dtype=dtype or self._float_dtype)

    def uniform(
        self,
        key: Any,
        shape: int | tuple[int, ...] = (),
        dtype: Any = None,
        minval: float = 0.0,
        maxval: float = 1.0,
    ) -> Any:
        return jax.random.uniform(
            key, as_shape(shape), dtype=dtype or self._float_dtype, minval=minval, maxval=maxval
        )

    def integers(self, key: Any, shape: int | tuple[int, ...], minval: int, maxval: int) -> Any:
        return jax.random.randint(key, as_shape(shape), minval, maxval)


def _device(spec: BackendSpec, device: Any) -> Any:
    if device is None:
        return jax.devices()[0]
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        kind = {"cuda": "gpu"}.get(kind.lower(), kind.lower())
        try:
            devices = jax.devices(kind)
            return devices[int(index or 0)]
        except (RuntimeError, IndexError) as exc:
            raise BackendUnavailableError(
                f"device {device!r} is not available to backend {spec.name!r} ({exc}); "
                f"available: {', '.join(str(d) for d in jax.devices())}"
            ) from None
    return device


def _enable_x64(dtype: Any) -> None:
    wants64 = dtype in ("float64", jnp.float64) or getattr(dtype, "name", None) == "float64"
    if wants64 and not jax.config.jax_enable_x64:
        warn_user(
            "dtype='float64' on the jax backend turns on jax_enable_x64 for the whole "
            "process (JAX has no narrower switch). Set JAX_ENABLE_X64=1 to silence this."
        )
        jax.config.update("jax_enable_x64", True)


def _device_of(x: Any) -> Any:
    try:
        return x.device
    except Exception:  # noqa: BLE001 - tracers and sharded arrays have no single device
        return None


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the jax backend."""
    _enable_x64(dtype)
    dev = _device(spec, device)
    return Backend.from_namespace(
        spec,
        jnp,
        device=dev,
        dtype=dtype,
        ad=JaxAD(),
        random=JaxRandom,
        control=JaxControlFlow(dev),
        to_numpy=np.asarray,
        device_of=_device_of,
    )
