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


def _persist(*arrays: Any, progress: bool = False) -> tuple[Any, ...]:
    """Compute ``arrays`` together; ``progress``: show it per task, on the active
    ``distributed`` client (its own progress bar, a widget in notebooks) or, with no
    client, on dask's local scheduler (``dask.diagnostics.ProgressBar``)."""
    import dask

    if not progress:
        return tuple(dask.persist(*arrays))
    client = _active_client()
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar():
            return tuple(dask.persist(*arrays))
    from distributed import progress as show_progress

    persisted = client.persist(list(arrays))
    show_progress(*persisted)  # in a terminal it returns when the tasks are done
    return tuple(persisted)


def _active_client() -> Any:
    """The ``distributed.Client`` dask would run on, or ``None``."""
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:  # distributed is installed, but no client is active
        return None


def _map_row_blocks(fn: Any, arrays: tuple[Any, ...], outputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """One task per block of rows: the work of each runs wherever dask schedules it."""
    import dask
    import dask.array as da

    rows = arrays[0].chunks[0]
    blocks = []
    for a in arrays:
        a = a.rechunk({0: rows, **{axis: -1 for axis in range(1, a.ndim)}})
        blocks.append(a.to_delayed().reshape(-1))
    tasks = [
        dask.delayed(fn, nout=len(outputs), pure=True)(*(b[i] for b in blocks))
        for i in range(len(rows))
    ]
    joined = []
    for k, (axis, shape, dtype) in enumerate(outputs):
        parts = [
            da.from_delayed(task[k], shape=shape(n), dtype=dtype)
            for task, n in zip(tasks, rows, strict=True)
        ]
        joined.append(da.concatenate(parts, axis=axis))
    return tuple(joined)


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
        map_row_blocks=_map_row_blocks,
    )
