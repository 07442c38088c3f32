"""The small frozen records plugins return: declaring a backend imports nothing heavy."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from anyxp.capabilities import check_capabilities

__all__ = ["BackendSpec", "CommSpec", "resolve"]


def resolve(target: str) -> Any:
    """Import ``"package.module:attribute"`` and return the attribute."""
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _missing(requires: tuple[str, ...]) -> list[str]:
    missing = []
    for mod in requires:
        try:
            found = importlib.util.find_spec(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    return missing


def _check_common(kind: str, name: str, factory: str, requires: tuple[str, ...]) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} name must be an identifier-like string, got {name!r}")
    if not isinstance(factory, str) or ":" not in factory:
        raise ValueError(
            f"{kind} {name!r}: factory must be a 'module:function' string so that declaring "
            f"the plugin imports nothing, got {factory!r}"
        )
    if isinstance(requires, str) or not all(isinstance(r, str) for r in requires):
        raise ValueError(f"{kind} {name!r}: requires must be a tuple of module names")


@dataclass(frozen=True)
class BackendSpec:
    """What a plugin declares about one array backend.

    Parameters
    ----------
    name
        The name users pass: ``anyxp.backend(name)``.
    factory
        ``"module:function"``; the function is called as
        ``function(spec, device=..., dtype=...)`` and returns an :class:`anyxp.Backend`.
        It is imported only when the backend is first used.
    array_types
        Fully qualified names of the array types the backend owns
        (``"torch.Tensor"``); ``anyxp.backend(like=x)`` matches them without importing.
    requires
        Modules that must be importable for the backend to be available.
    install
        The command that makes the backend available (shown in errors and ``anyxp list``).
    capabilities
        Strings from :data:`anyxp.capabilities.CAPABILITIES` the backend promises.
    aliases
        Other names that select this backend.
    expected_failures
        ``{test-id pattern: reason}`` for conformance tests known to fail.
    availability
        Optional ``"module:function"`` returning ``None`` when usable, else the reason it
        is not (for checks beyond an import, such as a GPU being present).
    description
        One line shown by ``anyxp list``.
    """

    name: str
    factory: str
    array_types: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    install: str = ""
    capabilities: frozenset[str] = frozenset()
    aliases: tuple[str, ...] = ()
    expected_failures: Mapping[str, str] = field(default_factory=dict)
    availability: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _check_common("backend", self.name, self.factory, self.requires)
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        object.__setattr__(self, "array_types", tuple(self.array_types))
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(
            self, "expected_failures", MappingProxyType(dict(self.expected_failures))
        )
        check_capabilities(self.capabilities)
        if "arrays" not in self.capabilities:
            raise ValueError(f"backend {self.name!r} must declare the 'arrays' capability")
        for t in self.array_types:
            if not isinstance(t, str) or "." not in t:
                raise ValueError(
                    f"backend {self.name!r}: array_types holds qualified names such as "
                    f"'torch.Tensor', got {t!r}"
                )

    def unavailable_reason(self) -> str | None:
        """Return why the backend cannot be used here, or ``None`` if it can."""
        missing = _missing(self.requires)
        if missing:
            how = f"; install it with: {self.install}" if self.install else ""
            return f"{', '.join(missing)} is not installed{how}"
        if self.availability is not None:
            reason: str | None = resolve(self.availability)()
            return reason
        return None

    def is_available(self) -> bool:
        """Return whether the backend can be used here."""
        return self.unavailable_reason() is None

    def load(self) -> Callable[..., Any]:
        """Import and return the factory."""
        return resolve(self.factory)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CommSpec:
    """What a plugin declares about one communicator (collectives between processes).

    Parameters
    ----------
    name
        The name users pass: ``anyxp.backend("torch", comm=name)``.
    factory
        ``"module:function"`` called as ``function(backend, **options)``; returns a comm.
    carries
        Names of the array backends whose arrays it can move, or ``("*",)`` for any.
    requires, install, capabilities, description
        As for :class:`BackendSpec`.
    launcher
        How to start ``{n}`` processes of ``{python}``, e.g. ``("mpiexec", "-n", "{n}",
        "{python}")``: ``anyxp check NAME --comm THIS`` launches itself with it, so that a
        plugin author checks the comm between processes with one command. The first word
        is looked up beside the Python interpreter first, then on ``PATH``. Empty: the
        comm has no launcher of its own (the ``local`` comm).
    """

    name: str
    factory: str
    carries: tuple[str, ...] = ("*",)
    requires: tuple[str, ...] = ()
    install: str = ""
    capabilities: frozenset[str] = frozenset()
    description: str = ""
    launcher: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_common("comm", self.name, self.factory, self.requires)
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))
        object.__setattr__(self, "carries", tuple(self.carries))
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "launcher", tuple(self.launcher))
        check_capabilities(self.capabilities)
        if self.launcher and "{python}" not in self.launcher:
            raise ValueError(
                f"comm {self.name!r}: launcher must name {{python}}, the interpreter it "
                f"starts, got {self.launcher!r}"
            )

    def unavailable_reason(self) -> str | None:
        """Return why the comm cannot be used here, or ``None`` if it can."""
        missing = _missing(self.requires)
        if missing:
            how = f"; install it with: {self.install}" if self.install else ""
            return f"{', '.join(missing)} is not installed{how}"
        return None

    def is_available(self) -> bool:
        """Return whether the comm can be used here."""
        return self.unavailable_reason() is None

    def can_carry(self, backend_name: str) -> bool:
        """Return whether this comm moves arrays of the named backend."""
        return "*" in self.carries or backend_name in self.carries

    def load(self) -> Callable[..., Any]:
        """Import and return the factory."""
        return resolve(self.factory)  # type: ignore[no-any-return]
