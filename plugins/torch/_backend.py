"""The torch backend's factory: devices, AD through ``torch.func``, on-device random."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_compat.torch as xp
import numpy as np
import torch
import torch.func

from anyxp import Backend, BackendSpec, BackendUnavailableError
from anyxp.random import HostRandom, Key


class TorchAD:
    """JAX-shaped AD on ``torch.func``."""

    def grad(self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
        return torch.func.grad(f, argnums=argnums)

    def value_and_grad(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]:
        grad_and_value = torch.func.grad_and_value(f, argnums=argnums)

        def value_and_grad(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
            g, v = grad_and_value(*args, **kwargs)
            return v, g

        return value_and_grad

    def vjp(self, f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]:
        return torch.func.vjp(f, *primals)  # type: ignore[no-any-return]

    def jvp(
        self, f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        return torch.func.jvp(f, tuple(primals), tuple(tangents))  # type: ignore[no-any-return]

    def jacobian(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]:
        return torch.func.jacrev(f, argnums=argnums)

    def hessian(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]:
        return torch.func.hessian(f, argnums=argnums)


class TorchRandom(HostRandom):
    """Draws with a ``torch.Generator`` on the backend's device, seeded from the key."""

    def _gen(self, key: Key) -> torch.Generator:
        return torch.Generator(device=self._device).manual_seed(key.seed64())

    def _normal(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        return torch.randn(shape, generator=self._gen(key), dtype=dtype, device=self._device)

    def _uniform01(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        return torch.rand(shape, generator=self._gen(key), dtype=dtype, device=self._device)

    def _integers(self, key: Key, shape: tuple[int, ...], minval: int, maxval: int) -> Any:
        return torch.randint(minval, maxval, shape, generator=self._gen(key), device=self._device)


def _device(spec: BackendSpec, device: Any) -> torch.device:
    try:
        dev = torch.device("cpu" if device is None else device)
    except RuntimeError as exc:
        raise BackendUnavailableError(
            f"device {device!r} is not available to backend {spec.name!r}: {exc}. "
            "Use 'cpu', 'cuda' or 'cuda:N'."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} is not available to backend {spec.name!r}: torch "
                f"{torch.__version__} sees no CUDA device. Use device='cpu' or a CUDA build of torch."
            )
        if dev.index is None:  # arrays report cuda:N, so the backend names N too
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _to_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy()


def _device_of(x: Any) -> Any:
    return x.device


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the torch backend."""
    return Backend.from_namespace(
        spec,
        xp,
        device=_device(spec, device),
        dtype=dtype,
        ad=TorchAD(),
        random=TorchRandom,
        to_numpy=_to_numpy,
        device_of=_device_of,
    )
