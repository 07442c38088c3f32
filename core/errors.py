"""The errors anyxp raises; each message names the cause and the next step."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "AnyxpError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "CommMismatchError",
    "MixedBackendsError",
    "PluginError",
    "UnsupportedError",
]


class AnyxpError(Exception):
    """Base class of every error anyxp raises on purpose."""


class BackendNotFoundError(AnyxpError, LookupError):
    """No registered plugin provides a backend (or comm) of the requested name."""

    def __init__(self, name: str, known: Iterable[str], *, kind: str = "backend") -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(
            f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(known) or 'none'}. "
            "Run `anyxp list` to see every plugin, or install the plugin that provides it."
        )
        self.name = name
        self.known = known
        self.suggestion = close[0] if close else None


class BackendUnavailableError(AnyxpError, ImportError):
    """The backend is registered but cannot run here (library missing, no device...)."""


class UnsupportedError(AnyxpError, NotImplementedError):
    """A backend was asked for a capability it does not declare."""

    def __init__(self, backend: str, capability: str, providers: Iterable[str] = ()) -> None:
        providers = sorted(providers)
        where = (
            f"Backends that provide it: {', '.join(providers)}; pass backend=... to use one."
            if providers
            else "No installed backend provides it."
        )
        super().__init__(f"backend {backend!r} does not support {capability!r}. {where}")
        self.backend = backend
        self.capability = capability
        self.providers = providers


class MixedBackendsError(AnyxpError, TypeError):
    """Arrays from two array libraries were passed together."""


class CommMismatchError(AnyxpError, ValueError):
    """Ranks passed arrays of different shape or dtype to one collective."""


class PluginError(AnyxpError):
    """A plugin is broken, malformed, or conflicts with another plugin."""
