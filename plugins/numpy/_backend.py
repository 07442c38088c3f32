"""The numpy backend's factory."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp
import numpy as np

from anyxp import Backend, BackendSpec


def _on_cpu(_: Any) -> str:
    return "cpu"


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the numpy backend."""
    return Backend.from_namespace(
        spec, xp, device=device, dtype=dtype, to_numpy=np.asarray, device_of=_on_cpu
    )
