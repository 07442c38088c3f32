"""The dask backend's factory."""

from __future__ import annotations

from typing import Any

import array_api_compat.dask.array as xp
import numpy as np

from anyxp import Backend, BackendSpec


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.compute() if hasattr(x, "compute") else x)


def _on_cpu(_: Any) -> str:
    return "cpu"


def _persist(*arrays: Any) -> tuple[Any, ...]:
    import dask

    return tuple(dask.persist(*arrays))


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the dask backend."""
    return Backend.from_namespace(
        spec,
        xp,
        device=device,
        dtype=dtype,
        to_numpy=_to_numpy,
        device_of=_on_cpu,
        materialize=_persist,
    )
