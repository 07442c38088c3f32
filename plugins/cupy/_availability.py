"""Whether CuPy can run here: installed is not enough, it needs a working GPU."""

from __future__ import annotations


def unavailable_reason() -> str | None:
    """Return why CuPy cannot run here, or ``None``."""
    try:
        import cupy

        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDA reports a missing GPU in many ways
        return f"cupy is installed but no CUDA GPU is usable: {type(exc).__name__}: {exc}"
    return None if count > 0 else "cupy is installed but this machine has no CUDA GPU"
