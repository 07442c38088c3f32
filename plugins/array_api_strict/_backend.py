"""The array_api_strict backend's factory."""

from __future__ import annotations

from typing import Any

import array_api_strict as xp
import numpy as np

from anyxp import Backend, BackendSpec


def _to_numpy(x: Any) -> np.ndarray:
    return np.from_dlpack(x)


def _device_of(x: Any) -> Any:
    return x.device


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the array_api_strict backend."""
    return Backend.from_namespace(
        spec, xp, device=device, dtype=dtype, to_numpy=_to_numpy, device_of=_device_of
    )
