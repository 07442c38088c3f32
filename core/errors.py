"""The errors anyxp raises; each message names the cause and the next step."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = [
    "AnyxpError",
    "BackendNotFoundError",
    "BackendUnavailableError",
    "CommLostError",
    "CommMismatchError",
    "MixedBackendsError",
    "PluginError",
    "UnsupportedError",
]


class AnyxpError(Exception):
    """Base class of every error anyxp raises on purpose."""


class BackendNotFoundError(AnyxpError, LookupError):
    """No enabled plugin provides the requested backend or comm, or owns an array's type.

    ``reason``, when given, replaces "unknown backend ..." with what is known: a blocked
    or broken plugin of that name, or an array type no enabled plugin owns.
    """

    def __init__(
        self, name: str, known: Iterable[str], *, kind: str = "backend", reason: str | None = None
    ) -> None:
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        next_step = (
            "Run `anyxp list` to see every plugin and its state."
            if reason is not None
            else "Run `anyxp list` to see every plugin, or install the plugin that provides it."
        )
        cause = reason if reason is not None else f"unknown {kind} {name!r}.{hint}"
        super().__init__(f"{cause} Known {kind}s: {', '.join(known) or 'none'}. {next_step}")
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
    """Ranks called one collective with different arguments; raised on every rank.

    A checked comm compares, before each collective, which collective every rank called,
    with which ``op``, ``root`` or ``perm``, and the shape and dtype of its array.

    Attributes
    ----------
    views : tuple of str
        What each rank called, indexed by rank, e.g. ``"allgather shape (4,) float64"``.
    """

    def __init__(self, message: str, views: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.views = tuple(views)


class CommLostError(AnyxpError, RuntimeError):
    """Another rank left the job, or failed, while this one waited in a collective.

    The transport saw the other side go (a closed connection); the message names the
    collective this rank was in. Uncaught, it ends every rank like any other exception.
    """


class PluginError(AnyxpError):
    """A plugin is broken, malformed, or conflicts with another plugin."""
