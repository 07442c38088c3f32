"""The cupy backend's factory."""

from __future__ import annotations

from typing import Any

import array_api_compat.cupy as xp
import cupy
import numpy as np

from anyxp import Backend, BackendSpec
from anyxp.random import HostRandom, Key


class CupyRandom(HostRandom):
    """Draws on the GPU with CuPy's Philox-based generator, seeded from the key."""

    def _gen(self, key: Key) -> Any:
        return cupy.random.default_rng(key.seed64())

    def _normal(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        with self._device:
            return self._gen(key).standard_normal(shape, dtype=dtype)

    def _uniform01(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        with self._device:
            return self._gen(key).random(shape, dtype=dtype)


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
