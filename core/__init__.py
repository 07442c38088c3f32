"""anyxp: numerical algorithms written once against the array API, run on any backend.

``import anyxp`` imports no array library but numpy; a backend's library is imported
when that backend is first used. The algorithm families (``anyxp.ode``, ...) are imported
on first access, as SciPy's subpackages are: ``import anyxp; anyxp.ode.solve(...)``.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from anyxp.backend import Backend
from anyxp.capabilities import CAPABILITIES
from anyxp.errors import (
    AnyxpError,
    BackendNotFoundError,
    BackendUnavailableError,
    CommLostError,
    CommMismatchError,
    MixedBackendsError,
    PluginError,
    UnsupportedError,
)
from anyxp.hookspecs import hookimpl
from anyxp.registry import get_registry, reload
from anyxp.selection import backend, use
from anyxp.spec import BackendSpec, CommSpec

#: Subpackages imported on first attribute access. Names of families not written yet are
#: listed too: each appears in ``dir(anyxp)`` once its folder exists.
_SUBPACKAGES = ("ode", "testing", "optimize", "mcmc", "gsa", "pinn", "nn")

__all__ = [
    "CAPABILITIES",
    "AnyxpError",
    "Backend",
    "BackendNotFoundError",
    "BackendSpec",
    "BackendUnavailableError",
    "CommLostError",
    "CommMismatchError",
    "CommSpec",
    "MixedBackendsError",
    "PluginError",
    "UnsupportedError",
    "backend",
    "get_registry",
    "hookimpl",
    "reload",
    "use",
]


def _present(name: str) -> bool:
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES and _present(name):
        return importlib.import_module(f"{__name__}.{name}")  # binds itself on this module
    if name == "__version__":
        # The installed distribution's metadata: pyproject.toml is the one source. Read on
        # first use, since it costs more than the rest of ``import anyxp``.
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("anyxp")
        except PackageNotFoundError:  # the source tree on sys.path, not installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), "__version__", *(n for n in _SUBPACKAGES if _present(n))})
