"""The plugin manager: finds plugins through entry points, calls each in isolation.

One broken plugin never breaks the others: its failure is recorded and shown by
``anyxp list`` (``ANYXP_STRICT_PLUGINS=1`` turns it into an error).

**Built-in plugins** are the entry points of anyxp's own distribution (``anyxp``) whose
modules live in ``anyxp.plugins``. They are told apart by where they come from, never by
their entry-point name: a third-party entry point called ``numpy`` is a third-party plugin.

**Blocking.** ``ANYXP_PLUGINS`` (allow-list) and ``ANYXP_DISABLED_PLUGINS`` (deny-list) are
comma-separated entry-point names; they act before the plugin module is imported. A name
that matches no entry point is warned about, and a value that holds no name (``" , "``) is
ignored, never read as "block everything". Only anyxp's own ``numpy`` plugin, the default
backend, cannot be blocked.

**Who owns a name or an array type.** Every backend name, backend alias, comm name and
array type belongs to at most one plugin:

- claimed by one plugin, it is that plugin's;
- claimed by a built-in and a third-party plugin, the built-in keeps it. A third-party
  backend or comm whose *name* a built-in claims is ignored as a whole (its aliases and
  array types too), so it can never stand in for the built-in;
- claimed by two third-party plugins, it is nobody's: using the name, or
  ``anyxp.backend(like=x)`` on such an array, raises :class:`~anyxp.PluginError` naming
  both distributions. Uninstall one, or block one with ``ANYXP_DISABLED_PLUGINS``.

An array type matches a declared type and its subclasses, so a built-in also keeps the
subclasses of its own types. Two plugins declaring the same type name, or the same
backend/comm name or alias, is reported when the registry is built (a warning and
``anyxp list``; ``ANYXP_STRICT_PLUGINS=1`` makes it an error). The order in which plugins
are discovered (``sys.path``) never decides anything.

**Arrays nobody owns.** ``anyxp.backend(like=x)`` on an array (it has
``__array_namespace__``, or ``dtype`` and ``shape``) that no enabled plugin owns raises
:class:`~anyxp.BackendNotFoundError` instead of falling back to the default backend. The
message names the blocked or broken plugin that would own it, found without importing it
by matching the top-level module names of the array's type and bases against the plugin's
entry-point name, module and distribution, and says how to unblock or fix it.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pluggy

from anyxp import hookspecs
from anyxp._env import env_flag, env_list
from anyxp._plugins import (
    ALLOW_VAR,
    ALWAYS_ENABLED,
    BLOCK_ONE,
    DENY_VAR,
    ENTRY_POINT_GROUP,
    IMPORT_FAILED,
    STRICT_VAR,
    Conflict,
    PluginInfo,
    Provided,
    blocking_vars,
    collect,
    declares,
    entry_points,
    library_names,
    owner_of,
    qualname,
    warn_unmatched,
)
from anyxp._warnings import warn_user
from anyxp.errors import BackendNotFoundError, PluginError
from anyxp.spec import BackendSpec, CommSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "Conflict",
    "PluginInfo",
    "Provided",
    "Registry",
    "get_registry",
    "reload",
]


class Registry:
    """Every backend and comm the installed, enabled plugins declare."""

    def __init__(self) -> None:
        self.plugins: list[PluginInfo] = []
        self.backends: dict[str, list[Provided]] = {}
        self.comms: dict[str, list[Provided]] = {}
        self.strict = env_flag(STRICT_VAR)
        # kind -> name (or alias, or array type name) -> every spec claiming it
        self._claims: dict[str, dict[str, list[Provided]]] = {
            "backend": {},
            "comm": {},
            "array type": {},
        }
        self._type_cache: dict[type, str | tuple[Provided, ...] | None] = {}
        # cached lists of specs: "backend"/"comm" owners, and "contenders" for types
        self._lists: dict[str, list[Provided]] = {}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)

    # -- building -------------------------------------------------------------
    @classmethod
    def from_entry_points(cls) -> Registry:
        """Build the registry from the ``anyxp`` entry-point group and the environment."""
        reg = cls()
        allow, deny = env_list(ALLOW_VAR), env_list(DENY_VAR)
        found = entry_points()
        names = {info.name for info, _ in found}
        warn_unmatched(ALLOW_VAR, allow, names)
        warn_unmatched(DENY_VAR, deny, names)
        for name in sorted((deny or frozenset()) & ALWAYS_ENABLED):
            others = [i.distribution for i, _ in found if i.name == name and not i.builtin]
            blocked = f" (it blocks the entry point {name!r} of {', '.join(others)})"
            warn_user(
                f"{DENY_VAR} names {name!r}: anyxp's own {name} plugin holds the default "
                f"backend and cannot be disabled, so it stays enabled{blocked if others else ''}."
                f" Remove {name!r} from {DENY_VAR} unless you mean to block a third party."
            )
        for info, ep in found:
            blocked_by = blocking_vars(info, allow, deny)
            if blocked_by:
                reg.plugins.append(replace(info, blocked_by=blocked_by))
                continue
            try:
                module = ep.load()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                reg._fail(info, f"{IMPORT_FAILED}{type(exc).__name__}: {exc}")
                continue
            reg.register(module, info)
        return reg

    def _fail(self, info: PluginInfo, error: str) -> None:
        if self.strict:
            raise PluginError(
                f"plugin {info.name!r} from distribution {info.distribution!r} is broken: "
                f"{error}. Unset {STRICT_VAR} to skip it, or fix or uninstall "
                f"{info.distribution}."
            )
        self.plugins.append(replace(info, error=error))

    def register(self, module: Any, info: PluginInfo) -> None:
        """Register one plugin object and collect its specs, isolating its failures."""
        try:
            # Keyed by distribution too: two distributions may use one entry-point name.
            self.pm.register(module, name=f"{info.distribution}:{info.name}")
        except Exception as exc:  # noqa: BLE001
            self._fail(info, f"registration failed: {type(exc).__name__}: {exc}")
            return
        errors: list[str] = []
        clashes: list[tuple[str, str]] = []
        for hook, kind in (
            (self.pm.hook.anyxp_backends, BackendSpec),
            (self.pm.hook.anyxp_comms, CommSpec),
        ):
            for impl in hook.get_hookimpls():
                if impl.plugin is module:
                    specs, problems = collect(impl.function, hook.name, kind)
                    errors += problems
                    for spec in specs:
                        clashes += self._add(Provided(spec, info))
        if clashes:
            self._report_clashes(info, clashes)
        if errors:
            self._fail(info, "; ".join(errors))
        else:
            self.plugins.append(info)

    def _add(self, provided: Provided) -> list[tuple[str, str]]:
        """Record a spec and its claims; return the ``(kind, name)`` claimed before."""
        spec = provided.spec
        kind = "backend" if isinstance(spec, BackendSpec) else "comm"
        (self.backends if kind == "backend" else self.comms).setdefault(spec.name, []).append(
            provided
        )
        claims = [(kind, n) for n in dict.fromkeys((spec.name, *getattr(spec, "aliases", ())))]
        claims += [("array type", t) for t in dict.fromkeys(getattr(spec, "array_types", ()))]
        clashes = []
        for kind_, name in claims:
            claimants = self._claims[kind_].setdefault(name, [])
            claimants.append(provided)
            if len(claimants) > 1:
                clashes.append((kind_, name))
        self._type_cache.clear()
        self._lists.clear()
        return clashes

    def _report_clashes(self, info: PluginInfo, clashes: list[tuple[str, str]]) -> None:
        """One warning (an error in strict mode) for everything a plugin claims twice."""
        parts, builtin_keeps_all = [], True
        for kind, name in clashes:
            c = self._conflict(kind, name, self._claims[kind][name])
            others = ", ".join(p.plugin.label() for p in c.claimants if p.plugin is not info)
            others = others or "another of its own specs"
            if c.owner is None:
                keeper = "nobody keeps it, so using it raises PluginError"
            else:
                keeper = f"{c.owner.plugin.distribution} keeps it"
            builtin_keeps_all &= c.owner is not None and c.owner.plugin.builtin
            parts.append(f"{kind} {name!r}, also claimed by {others}: {keeper}")
        if builtin_keeps_all:
            step = (
                f"anyxp's built-ins keep them and these claims are ignored. Uninstall "
                f"{info.distribution}, or block it with {DENY_VAR}={info.name}."
            )
        else:
            step = f"Uninstall one of them, or block one with {DENY_VAR}=<entry point name>."
        message = (
            f"plugin {info.name!r} from distribution {info.distribution!r} claims what "
            f"another plugin already claims ({'; '.join(parts)}). {step} "
            "`anyxp list` shows every conflict."
        )
        if self.strict:
            raise PluginError(
                f"{message} {STRICT_VAR} makes this an error; unset it to let anyxp apply "
                "its ownership rule (a built-in keeps its names and array types) and go on."
            )
        warn_user(message)

    # -- who owns what --------------------------------------------------------
    def _shadowed(self, kind: str, provided: Provided) -> bool:
        """Whether a built-in claims this third-party spec's name, so it is ignored."""
        return not provided.plugin.builtin and any(
            p.plugin.builtin for p in self._claims[kind].get(provided.spec.name, ())
        )

    def _candidates(self, kind: str, name: str) -> list[Provided]:
        return [p for p in self._claims[kind].get(name, ()) if not self._shadowed(kind, p)]

    def _conflict(self, kind: str, name: str, claims: list[Provided]) -> Conflict:
        if kind == "array type":
            live = [p for p in claims if not self._shadowed("backend", p)]
        else:
            live = self._candidates(kind, name)
        return Conflict(kind, name, tuple(claims), owner_of(live))

    @property
    def conflicts(self) -> list[Conflict]:
        """Every name or array type that more than one plugin claims, and who keeps it."""
        return [
            self._conflict(kind, name, claims)
            for kind, table in self._claims.items()
            for name, claims in table.items()
            if len(claims) > 1
        ]

    def provider(self, name: str, *, kind: str = "backend") -> Provided:
        """Return the spec (and its plugin) that owns the backend or comm ``name``.

        Raises :class:`BackendNotFoundError` when no enabled plugin provides it (naming
        the blocked or broken plugin of that name, if any), and :class:`PluginError`
        when two third-party plugins claim it.
        """
        candidates = self._candidates(kind, name)
        if not candidates:
            raise self._not_found(kind, name)
        owner = owner_of(candidates)
        if owner is None:
            who = " and ".join(p.plugin.label() for p in candidates)
            raise PluginError(
                f"{kind} {name!r} is provided by more than one plugin: {who}. {BLOCK_ONE}"
            )
        return owner

    def owners(self, kind: str = "backend") -> list[Provided]:
        """The specs (``kind`` ``"backend"`` or ``"comm"``) that own their name, by name.

        These are the usable ones: a spec whose name a built-in keeps, or that shares its
        name with another third-party spec, is left out.
        """
        try:
            return self._lists[kind]
        except KeyError:
            pass
        table = self.backends if kind == "backend" else self.comms
        live = [
            p
            for name in sorted(table)
            for p in table[name]
            if owner_of(self._candidates(kind, name)) is p
        ]
        self._lists[kind] = live
        return live

    def _not_found(self, kind: str, name: str) -> BackendNotFoundError:
        known = [p.spec.name for p in self.owners(kind)]
        idle = [p for p in self.plugins if name in library_names(p) and p.unusable_reason()]
        reason = None
        if idle:
            reason = f"{kind} {name!r} is not registered: " + " ".join(
                str(p.unusable_reason()) for p in idle
            )
        return BackendNotFoundError(name, known, kind=kind, reason=reason)

    # -- lookup ---------------------------------------------------------------
    def backend_spec(self, name: str) -> BackendSpec:
        """Return the spec of the backend called ``name`` (or one of its aliases)."""
        spec: BackendSpec = self.provider(name, kind="backend").spec
        return spec

    def comm_spec(self, name: str) -> CommSpec:
        """Return the spec of the comm called ``name``."""
        spec: CommSpec = self.provider(name, kind="comm").spec
        return spec

    def available_backends(self) -> list[str]:
        """Sorted names of the backends that can run here (and that one plugin owns)."""
        return [p.spec.name for p in self.owners("backend") if p.spec.unavailable_reason() is None]

    def providers(self, capability: str) -> list[str]:
        """Names of the usable backends and comms that declare ``capability``."""
        return sorted(
            p.spec.name
            for kind in ("backend", "comm")
            for p in self.owners(kind)
            if capability in p.spec.capabilities
        )

    def name_for_type(self, tp: type) -> str | None:
        """Return the backend owning arrays of type ``tp``, importing nothing.

        ``None`` when no enabled plugin owns it. Raises :class:`PluginError` when two
        third-party plugins claim it (see the module docstring for the rule).
        """
        try:
            found = self._type_cache[tp]
        except KeyError:
            found = self._type_cache[tp] = self._type_owner(tp)
        if isinstance(found, tuple):
            who = " and ".join(f"backend {p.spec.name!r} from {p.plugin.label()}" for p in found)
            raise PluginError(
                f"arrays of type {qualname(tp)} are claimed by more than one plugin: {who}; "
                f"anyxp refuses to guess. {BLOCK_ONE}"
            )
        return found

    def _contenders(self) -> list[Provided]:
        """The backend specs that may own array types: all but those a built-in shadows."""
        try:
            return self._lists["contenders"]
        except KeyError:
            pass
        found = [
            p
            for name in sorted(self.backends)
            for p in self.backends[name]
            if not self._shadowed("backend", p)
        ]
        self._lists["contenders"] = found
        return found

    def _type_owner(self, tp: type) -> str | tuple[Provided, ...] | None:
        matches = [p for p in self._contenders() if declares(p, tp)]
        if not matches:
            return None
        owner = owner_of(matches)
        # A name two third parties share resolves to PluginError later, naming both.
        return tuple(matches) if owner is None else str(owner.spec.name)

    def unowned_type_error(self, tp: type) -> BackendNotFoundError:
        """The error for an array of type ``tp`` that no enabled plugin owns, saying why."""
        qual = qualname(tp)
        tops = {c.__module__.partition(".")[0] for c in tp.__mro__} - {"builtins"}
        idle = [p for p in self.plugins if p.unusable_reason()]
        related = [p for p in idle if library_names(p) & tops]
        convert = "or convert the arrays first (e.g. numpy.asarray(x))."
        ignored = [
            p
            for provided in self.backends.values()
            for p in provided
            if self._shadowed("backend", p) and declares(p, tp)
        ]
        if ignored:
            reason = f"no enabled plugin owns arrays of type {qual}: " + " ".join(
                f"backend {p.spec.name!r} from {p.plugin.label()} declares it but is ignored, "
                f"because anyxp's built-in keeps the name {p.spec.name!r}; uninstall "
                f"{p.plugin.distribution}, or ask its maintainers to rename the backend."
                for p in ignored
            )
        elif related:
            reason = f"no enabled plugin owns arrays of type {qual}: " + " ".join(
                str(p.unusable_reason()) for p in related
            )
            reason += f" Otherwise {convert}"
        elif idle:
            listed = "; ".join(f"{p.name!r} ({', '.join(p.blocked_by) or 'broken'})" for p in idle)
            reason = (
                f"no enabled plugin owns arrays of type {qual}; it may belong to a plugin "
                f"that is blocked or broken: {listed}. Enable or fix that plugin, install "
                f"one for {', '.join(sorted(tops))}, {convert}"
            )
        else:
            reason = (
                f"no installed plugin owns arrays of type {qual}. Install an anyxp plugin "
                f"for {', '.join(sorted(tops))}, pass backend=<name>, {convert}"
            )
        known = [p.spec.name for p in self.owners("backend")]
        return BackendNotFoundError(qual, known, kind="backend", reason=reason)


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
