"""Builds the ``sparse`` backend. Only this module imports the array library."""

from __future__ import annotations

from typing import Any

import numpy as np
import sparse

import anyxp


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.todense())


def _on_cpu(_: Any) -> str:
    return "cpu"


def create(spec: anyxp.BackendSpec, *, device: Any = None, dtype: Any = None) -> anyxp.Backend:
    # sparse's top-level module is its array-API namespace; everything not given here
    # (no AD, eager control flow, host-drawn random numbers) comes from anyxp's defaults.
    return anyxp.Backend.from_namespace(
        spec, sparse, device=device, dtype=dtype, to_numpy=_to_numpy, device_of=_on_cpu
    )
