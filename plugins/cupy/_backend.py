"""The cupy backend's factory."""

from __future__ import annotations

from typing import Any

import array_api_compat.cupy as xp
import cupy
import numpy as np

from anyxp import Backend, BackendSpec
from anyxp.random import HostRandom, Key, as_shape


class CupyRandom(HostRandom):
    """Draws on the GPU with CuPy's Philox-based generator, seeded from the key."""

    def __init__(self, be: Backend) -> None:
        super().__init__(be.asarray, be.float_dtype, be.xp)
        self._device = be.device

    def _gen(self, key: Key) -> Any:
        self._check(key)
        return cupy.random.default_rng(key.seed64())

    def normal(self, key: Key, shape: int | tuple[int, ...] = (), dtype: Any = None) -> Any:
        with self._device:
            return self._gen(key).standard_normal(as_shape(shape), dtype=self._dtype(dtype))

    def uniform(
        self,
        key: Key,
        shape: int | tuple[int, ...] = (),
        dtype: Any = None,
        minval: float = 0.0,
        maxval: float = 1.0,
    ) -> Any:
        with self._device:
            u = self._gen(key).random(as_shape(shape), dtype=self._dtype(dtype))
            return u * (maxval - minval) + minval


def _to_numpy(x: Any) -> np.ndarray:
    return cupy.asnumpy(x)


def _device_of(x: Any) -> Any:
    return x.device


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the cupy backend."""
    if isinstance(device, str):
        kind, _, index = device.partition(":")
        device = cupy.cuda.Device(int(index or 0)) if kind in ("cuda", "gpu") else device
    elif isinstance(device, int):
        device = cupy.cuda.Device(device)
    return Backend.from_namespace(
        spec,
        xp,
        device=device,
        dtype=dtype,
        random=CupyRandom,
        to_numpy=_to_numpy,
        device_of=_device_of,
    )
