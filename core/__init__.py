"""anyxp: numerical algorithms written once against the array API, run on any backend.

``import anyxp`` imports no array library but numpy; a backend's library is imported
when that backend is first used.
"""

from __future__ import annotations

from anyxp.backend import Backend
from anyxp.capabilities import CAPABILITIES
from anyxp.errors import (
    AnyxpError,
    BackendNotFoundError,
    BackendUnavailableError,
    CommMismatchError,
    MixedBackendsError,
    PluginError,
    UnsupportedError,
)
from anyxp.hookspecs import hookimpl
from anyxp.registry import get_registry, reload
from anyxp.selection import backend, use
from anyxp.spec import BackendSpec, CommSpec

__version__ = "0.1.0"

__all__ = [
    "CAPABILITIES",
    "AnyxpError",
    "Backend",
    "BackendNotFoundError",
    "BackendSpec",
    "BackendUnavailableError",
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
