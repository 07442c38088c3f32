"""The plugins' records and the rules that read them: what an entry point is, whether it
is blocked, built in or broken, and who owns a name or an array type (see
:mod:`anyxp.registry` for the rules in words)."""

from __future__ import annotations

import difflib
import importlib.metadata
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from anyxp._warnings import warn_user
from anyxp.spec import BackendSpec, CommSpec

ENTRY_POINT_GROUP = "anyxp"
#: The distribution, and the package inside it, that the built-in plugins come from.
BUILTIN_DISTRIBUTION = "anyxp"
BUILTIN_PACKAGE = "anyxp.plugins"
#: Built-in plugins that cannot be blocked: the default backend lives there.
ALWAYS_ENABLED = frozenset({"numpy"})
ALLOW_VAR = "ANYXP_PLUGINS"
DENY_VAR = "ANYXP_DISABLED_PLUGINS"
STRICT_VAR = "ANYXP_STRICT_PLUGINS"
BLOCK_ONE = f"Uninstall one, or block one with {DENY_VAR}=<entry point name>."
IMPORT_FAILED = "import failed: "


@dataclass(frozen=True)
class PluginInfo:
    """One entry point of the ``anyxp`` group and what became of it."""

    name: str
    distribution: str
    version: str
    module: str
    error: str | None = None
    #: The variables that keep it from being imported (empty: not blocked).
    blocked_by: tuple[str, ...] = ()
    builtin: bool = False

    @property
    def blocked(self) -> bool:
        """Whether ``ANYXP_PLUGINS`` or ``ANYXP_DISABLED_PLUGINS`` blocks this plugin."""
        return bool(self.blocked_by)

    def label(self) -> str:
        """How messages name this plugin: its distribution and entry point."""
        origin = "built-in, " if self.builtin else ""
        return f"{self.distribution} ({origin}entry point {self.name!r})"

    def unusable_reason(self) -> str | None:
        """Why the plugin provides nothing (blocked or broken) and what to do, or ``None``."""
        who = f"plugin {self.name!r} from distribution {self.distribution!r}"
        if self.blocked_by:
            steps = []
            if DENY_VAR in self.blocked_by:
                steps.append(f"remove {self.name!r} from {DENY_VAR}")
            if ALLOW_VAR in self.blocked_by:
                steps.append(f"add {self.name!r} to {ALLOW_VAR} (or unset it)")
            return (
                f"{who} is blocked by {' and '.join(self.blocked_by)}; "
                f"{' and '.join(steps)} to enable it."
            )
        if self.error is not None:
            detail = self.error.removeprefix(IMPORT_FAILED)
            what = "failed to import" if detail != self.error else "is broken"
            return f"{who} {what}: {detail.rstrip('.')}. Fix or reinstall {self.distribution}."
        return None


@dataclass(frozen=True)
class Provided:
    """A spec together with the plugin that provided it."""

    spec: Any  # BackendSpec | CommSpec
    plugin: PluginInfo


@dataclass(frozen=True)
class Conflict:
    """Several plugins claiming one name or array type, and the one that keeps it."""

    kind: str  # "backend", "comm" or "array type"
    name: str
    claimants: tuple[Provided, ...]
    owner: Provided | None  # None: nobody owns it, and using it raises PluginError

    def message(self) -> str:
        """The conflict, who keeps the name, and what to do about it."""
        who = " and ".join(p.plugin.label() for p in self.claimants)
        head = f"{self.kind} {self.name!r} is claimed by more than one plugin: {who}"
        if self.owner is None:
            return f"{head}; anyxp refuses to guess. {BLOCK_ONE}"
        others = sorted({p.plugin.distribution for p in self.claimants if p is not self.owner})
        fix = "stop declaring it" if self.kind == "array type" else f"rename the {self.kind}"
        return (
            f"{head}; {self.owner.plugin.distribution} keeps it and the other claims are "
            f"ignored. Uninstall {', '.join(others)}, or ask its maintainers to {fix}."
        )


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _info(ep: importlib.metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist.name if ep.dist is not None else "<unknown>"
    version = ep.dist.version if ep.dist is not None else ""
    module = ep.value.partition(":")[0].strip()
    builtin = _canonical(dist) == BUILTIN_DISTRIBUTION and module.startswith(BUILTIN_PACKAGE + ".")
    return PluginInfo(ep.name, dist, version, ep.value, builtin=builtin)


def entry_points() -> list[tuple[PluginInfo, importlib.metadata.EntryPoint]]:
    """Every entry point of the group, built-ins first (so they register first)."""
    seen: set[tuple[str, str, str]] = set()
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        info = _info(ep)
        # A distribution visible twice on sys.path lists its entry points twice; another
        # distribution repeating our entry point is a different plugin, so key on both.
        key = (_canonical(info.distribution), ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            found.append((info, ep))
    return sorted(found, key=lambda pair: not pair[0].builtin)


def blocking_vars(
    info: PluginInfo, allow: frozenset[str] | None, deny: frozenset[str] | None
) -> tuple[str, ...]:
    if info.builtin and info.name in ALWAYS_ENABLED:
        return ()
    by = []
    if allow is not None and info.name not in allow:
        by.append(ALLOW_VAR)
    if deny is not None and info.name in deny:
        by.append(DENY_VAR)
    return tuple(by)


def warn_unmatched(var: str, names: frozenset[str] | None, known: set[str]) -> None:
    for name in sorted((names or frozenset()) - known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        warn_user(
            f"{var} names {name!r}, but no installed plugin has an entry point of that "
            f"name; it has no effect.{hint} Entry points: {', '.join(sorted(known))}."
        )


def library_names(info: PluginInfo) -> set[str]:
    """Top-level module names a plugin's arrays are likely to come from (no import)."""
    names = {info.name, info.module.partition(":")[0].partition(".")[0]}
    names.add(_canonical(info.distribution).removeprefix("anyxp-").replace("-", "_"))
    return names - {"anyxp", ""}


def qualname(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


def collect(function: Any, hook: str, kind: type) -> tuple[list[Any], list[str]]:
    """Call one hook implementation; return its valid specs and what was wrong."""
    try:
        result: Any = function()
    except Exception as exc:  # noqa: BLE001 -- a plugin's failure is reported, never fatal
        return [], [f"{hook}() raised {type(exc).__name__}: {exc}"]
    if isinstance(result, str | bytes | Mapping | BackendSpec | CommSpec) or not isinstance(
        result, Iterable
    ):
        shown = repr(result) if len(repr(result)) <= 60 else repr(result)[:57] + "..."
        return [], [
            f"{hook}() returned {shown}: expected an iterable of {kind.__name__}, got "
            f"{type(result).__name__}; return a list, e.g. [anyxp.{kind.__name__}(...)]"
        ]
    try:
        items = list(result)
    except Exception as exc:  # noqa: BLE001
        return [], [f"iterating what {hook}() returned raised {type(exc).__name__}: {exc}"]
    specs, errors = [], []
    for spec in items:
        if type(spec) is kind:
            specs.append(spec)
        else:
            errors.append(f"{hook}() returned {spec!r}, expected anyxp.{kind.__name__}")
    return specs, errors


def owner_of(claims: list[Provided]) -> Provided | None:
    """The one claimant that owns a name: the only one, or the only built-in among them."""
    if len(claims) == 1:
        return claims[0]
    builtins = [p for p in claims if p.plugin.builtin]
    return builtins[0] if len(builtins) == 1 else None


def declares(provided: Provided, tp: type) -> bool:
    """Whether a backend spec declares ``tp`` (or a base of it) among its array types."""
    return any(_owns(qual, tp) for qual in provided.spec.array_types)


def _owns(qualname: str, tp: type) -> bool:
    """Whether ``tp`` is (a subclass of) the type named ``qualname``, if already imported."""
    parts = qualname.split(".")
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is None:
            continue
        obj: Any = module
        for attr in parts[i:]:
            obj = getattr(obj, attr, None)
        return isinstance(obj, type) and issubclass(tp, obj)
    return False
