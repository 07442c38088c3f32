"""The plugin manager: finds plugins through entry points, calls each in isolation.

One broken plugin never breaks the others: its failure is recorded and shown by
``anyxp list`` (``ANYXP_STRICT_PLUGINS=1`` turns it into an error). The environment
variables ``ANYXP_PLUGINS`` (allow-list) and ``ANYXP_DISABLED_PLUGINS`` (deny-list) act on
entry-point names before the plugin module is imported. ``numpy`` is the embedded default
and cannot be disabled.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from anyxp import hookspecs
from anyxp._warnings import warn_user
from anyxp.errors import BackendNotFoundError, PluginError
from anyxp.spec import BackendSpec, CommSpec

__all__ = ["ENTRY_POINT_GROUP", "PluginInfo", "Registry", "get_registry", "reload"]

ENTRY_POINT_GROUP = "anyxp"
ALWAYS_ENABLED = frozenset({"numpy"})


@dataclass(frozen=True)
class PluginInfo:
    """One entry point of the ``anyxp`` group and what became of it."""

    name: str
    distribution: str
    version: str
    module: str
    error: str | None = None
    blocked: bool = False


@dataclass(frozen=True)
class Provided:
    """A spec together with the plugin that provided it."""

    spec: Any  # BackendSpec | CommSpec
    plugin: PluginInfo


def _env_list(var: str) -> frozenset[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def _strict() -> bool:
    return os.environ.get("ANYXP_STRICT_PLUGINS", "").strip().lower() in {"1", "true", "yes"}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    seen: set[tuple[str, str]] = set()
    eps = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        # A distribution visible twice on sys.path lists its entry points twice.
        key = (ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            eps.append(ep)
    return eps


def _blocked(name: str, allow: frozenset[str] | None, deny: frozenset[str] | None) -> bool:
    if name in ALWAYS_ENABLED:
        return False
    if allow is not None and name not in allow:
        return True
    return deny is not None and name in deny


class Registry:
    """Every backend and comm the installed, enabled plugins declare."""

    def __init__(self) -> None:
        self.plugins: list[PluginInfo] = []
        self.backends: dict[str, list[Provided]] = {}
        self.comms: dict[str, list[Provided]] = {}
        self._aliases: dict[str, str] = {}
        self._type_cache: dict[type, str | None] = {}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    # -- building -------------------------------------------------------------
    @classmethod
    def from_entry_points(cls) -> Registry:
        """Build the registry from the ``anyxp`` entry-point group and the environment."""
        reg = cls()
        allow, deny = _env_list("ANYXP_PLUGINS"), _env_list("ANYXP_DISABLED_PLUGINS")
        if deny and deny & ALWAYS_ENABLED:
            warn_user(
                "ANYXP_DISABLED_PLUGINS names numpy, the embedded default backend, which "
                "cannot be disabled; it stays enabled."
            )
        for ep in _entry_points():
            dist = ep.dist.name if ep.dist is not None else "<unknown>"
            version = ep.dist.version if ep.dist is not None else ""
            info = PluginInfo(ep.name, dist, version, ep.value)
            if _blocked(ep.name, allow, deny):
                reg.plugins.append(PluginInfo(ep.name, dist, version, ep.value, blocked=True))
                continue
            try:
                module = ep.load()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                reg._fail(info, f"import failed: {type(exc).__name__}: {exc}")
                continue
            reg.register(module, info)
        return reg

    def _fail(self, info: PluginInfo, error: str) -> None:
        if _strict():
            raise PluginError(
                f"plugin {info.name!r} from distribution {info.distribution!r} is broken: "
                f"{error}. Unset ANYXP_STRICT_PLUGINS to skip it, or fix or uninstall "
                f"{info.distribution}."
            )
        self.plugins.append(
            PluginInfo(info.name, info.distribution, info.version, info.module, error=error)
        )

    def register(self, module: Any, info: PluginInfo) -> None:
        """Register one plugin object and collect its specs, isolating its failures."""
        try:
            self.pm.register(module, name=info.name)
        except Exception as exc:  # noqa: BLE001
            self._fail(info, f"registration failed: {type(exc).__name__}: {exc}")
            return
        errors = []
        for hook, kind, table in (
            (self.pm.hook.anyxp_backends, BackendSpec, self.backends),
            (self.pm.hook.anyxp_comms, CommSpec, self.comms),
        ):
            for impl in hook.get_hookimpls():
                if impl.plugin is not module:
                    continue
                try:
                    result: Any = impl.function()
                except Exception as exc:  # noqa: BLE001
                    errors.append(f"{hook.name}() raised {type(exc).__name__}: {exc}")
                    continue
                if isinstance(result, BackendSpec | CommSpec) or not hasattr(result, "__iter__"):
                    errors.append(f"{hook.name}() must return a list of specs, got {result!r}")
                    continue
                specs = list(result)
                for spec in specs:
                    if type(spec) is not kind:
                        errors.append(
                            f"{hook.name}() returned {spec!r}, expected anyxp.{kind.__name__}"
                        )
                        continue
                    table.setdefault(spec.name, []).append(Provided(spec, info))
                    for alias in getattr(spec, "aliases", ()):
                        self._aliases.setdefault(alias, spec.name)
        if errors:
            self._fail(info, "; ".join(errors))
        else:
            self.plugins.append(info)

    # -- lookup ---------------------------------------------------------------
    def _one(self, table: dict[str, list[Provided]], name: str, kind: str) -> Provided:
        if table is self.backends:
            name = self._aliases.get(name, name)
        providers = table.get(name)
        if not providers:
            raise BackendNotFoundError(name, table.keys(), kind=kind)
        if len(providers) > 1:
            who = " and ".join(
                f"{p.plugin.distribution} (entry point {p.plugin.name!r})" for p in providers
            )
            raise PluginError(
                f"{kind} {name!r} is provided by more than one plugin: {who}. Uninstall one, "
                "or block one with ANYXP_DISABLED_PLUGINS=<entry point name>."
            )
        return providers[0]

    def backend_spec(self, name: str) -> BackendSpec:
        """Return the spec of the backend called ``name`` (or one of its aliases)."""
        spec: BackendSpec = self._one(self.backends, name, "backend").spec
        return spec

    def comm_spec(self, name: str) -> CommSpec:
        """Return the spec of the comm called ``name``."""
        spec: CommSpec = self._one(self.comms, name, "comm").spec
        return spec

    def available_backends(self) -> list[str]:
        """Sorted names of the backends that can run here (and that one plugin provides)."""
        return sorted(
            name
            for name, provided in self.backends.items()
            if len(provided) == 1 and provided[0].spec.unavailable_reason() is None
        )

    def providers(self, capability: str) -> list[str]:
        """Names of the registered backends and comms that declare ``capability``."""
        return sorted(
            name
            for table in (self.backends, self.comms)
            for name, provided in table.items()
            if any(capability in p.spec.capabilities for p in provided)
        )

    def name_for_type(self, tp: type) -> str | None:
        """Return the backend owning arrays of type ``tp``, importing nothing."""
        try:
            return self._type_cache[tp]
        except KeyError:
            pass
        found = None
        for name, provided in self.backends.items():
            if any(_owns(qual, tp) for p in provided for qual in p.spec.array_types):
                found = name
                break
        self._type_cache[tp] = found
        return found


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


_lock = threading.Lock()
_registry: Registry | None = None
_reload_callbacks: list[Any] = []


def get_registry() -> Registry:
    """Return the process-wide registry, building it on first use."""
    global _registry
    reg = _registry
    if reg is None:
        with _lock:
            if _registry is None:
                _registry = Registry.from_entry_points()
            reg = _registry
    return reg


def reload() -> Registry:
    """Forget the registry and every cached backend, and build them again.

    Call it after installing a plugin or changing ``ANYXP_PLUGINS`` in a running process.
    """
    global _registry
    with _lock:
        _registry = None
    for callback in _reload_callbacks:
        callback()
    return get_registry()


def on_reload(callback: Any) -> Any:
    """Register ``callback`` to run when :func:`reload` drops the caches."""
    _reload_callbacks.append(callback)
    return callback
