"""Choosing a backend: ``anyxp.backend(...)`` and the ``anyxp.use(...)`` context.

Order: an explicit name > the library of the ``like`` arrays > the innermost
``anyxp.use(...)`` > the ``ANYXP_BACKEND`` environment variable > ``numpy``. ``like``
never falls through: an array that no enabled plugin owns is an error (see
:mod:`anyxp.registry` for who owns what).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from anyxp.backend import Backend
from anyxp.errors import BackendUnavailableError, MixedBackendsError, PluginError
from anyxp.registry import get_registry, on_reload

__all__ = ["backend", "name_of", "use"]

DEFAULT = "numpy"
# Exact types: numpy's float64 subclasses float but is an array scalar of numpy's.
_NOT_ARRAYS = frozenset({int, float, complex, bool, str, bytes, type(None)})

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("anyxp_backend", default=None)
# type(x) -> (device_of, {(device, dtype): Backend}) for the fast ``like=x`` path.
_like_cache: dict[type, tuple[Any, dict[tuple[Any, Any], Backend]]] = {}
_cache: dict[tuple[Any, ...], Backend] = {}
_lock = threading.Lock()


@on_reload
def _clear() -> None:
    _like_cache.clear()
    _cache.clear()


def name_of(x: Any) -> str | None:
    """Return the name of the backend owning array ``x``, or ``None`` if no enabled one does.

    Raises :class:`~anyxp.PluginError` when two third-party plugins claim its type.
    """
    if type(x) in _NOT_ARRAYS:
        return None
    return get_registry().name_for_type(type(x))


def _looks_like_array(x: Any) -> bool:
    """Whether ``x`` is an array of some library (known to anyxp or not)."""
    return hasattr(x, "__array_namespace__") or (hasattr(x, "dtype") and hasattr(x, "shape"))


def _names_in(like: Any, found: dict[str, type]) -> None:
    if isinstance(like, list | tuple):
        for item in like:
            _names_in(item, found)
    elif isinstance(like, Mapping):
        for item in like.values():
            _names_in(item, found)
    else:
        name = name_of(like)
        if name is not None:
            found.setdefault(name, type(like))
        elif _looks_like_array(like):
            # An array no enabled plugin owns: falling back to the default backend would
            # silently compute with another library (a blocked torch's tensors on numpy).
            raise get_registry().unowned_type_error(type(like))


def _first_array(like: Any, name: str) -> Any:
    if isinstance(like, list | tuple):
        items: Any = like
    elif isinstance(like, Mapping):
        items = like.values()
    else:
        return like if name_of(like) == name else None
    for item in items:
        found = _first_array(item, name)
        if found is not None:
            return found
    return None


def _real_floating(be: Backend, x: Any) -> bool:
    """Whether ``x`` holds real floats (a JAX random key's dtype is no numeric dtype)."""
    try:
        return bool(be.xp.isdtype(x.dtype, "real floating"))
    except TypeError:
        return False


def _token(obj: Any) -> Any:
    """A hashable stand-in for a device or dtype (CuPy's devices are unhashable)."""
    try:
        hash(obj)
    except TypeError:
        return (type(obj).__qualname__, repr(obj))
    return obj


def _split(name: str) -> tuple[str, str | None]:
    array_name, plus, comm_name = name.partition("+")
    return array_name.strip(), (comm_name.strip() or None) if plus else None


def _build(
    name: str, device: Any, dtype: Any, comm: str | None, comm_options: Mapping[str, Any] | None
) -> Backend:
    reg = get_registry()
    spec = reg.backend_spec(name)
    reason = spec.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"backend {spec.name!r} is not available: {reason}")
    be: Backend = spec.load()(spec, device=device, dtype=dtype)
    if comm is not None:
        cspec = reg.comm_spec(comm)
        creason = cspec.unavailable_reason()
        if creason is not None:
            raise BackendUnavailableError(f"comm {cspec.name!r} is not available: {creason}")
        if not cspec.can_carry(spec.name):
            raise PluginError(
                f"comm {cspec.name!r} cannot carry {spec.name!r} arrays; it carries "
                f"{', '.join(cspec.carries)}. Choose another comm or array backend."
            )
        be = be.with_comm(cspec.load()(be, **dict(comm_options or {})), cspec.capabilities)
    return be


def _cached(
    name: str, device: Any, dtype: Any, comm: str | None, comm_options: Mapping[str, Any] | None
) -> Backend:
    if comm_options:
        return _build(name, device, dtype, comm, comm_options)
    key = (name, _token(device), _token(dtype), comm)
    try:
        return _cache[key]
    except KeyError:
        pass
    with _lock:
        if key not in _cache:
            _cache[key] = _build(name, device, dtype, comm, comm_options)
        return _cache[key]


def _from_like(
    like: Any, device: Any, dtype: Any, comm: str | None, comm_options: Mapping[str, Any] | None
) -> Backend | None:
    found: dict[str, type] = {}
    _names_in(like, found)
    if not found:
        return None
    if len(found) > 1:
        raise MixedBackendsError(
            "arrays from more than one library were passed together: "
            + ", ".join(f"{n} ({t.__module__}.{t.__qualname__})" for n, t in found.items())
            + ". Move them to one backend first, e.g. be.asarray(x)."
        )
    name = next(iter(found))
    x = _first_array(like, name)
    base = _cached(name, None, None, comm, comm_options)
    if device is None:
        device = base.device_of(x)
    if dtype is None and _real_floating(base, x):
        dtype = x.dtype
    be = _cached(name, device, dtype, comm, comm_options)
    if comm is None and not comm_options and type(like) is type(x):
        _like_cache.setdefault(type(x), (base.device_of, {}))[1][(_token(device), x.dtype)] = be
    return be


def backend(
    name: str | Backend | None = None,
    *,
    like: Any = None,
    device: Any = None,
    dtype: Any = None,
    comm: str | None = None,
    comm_options: Mapping[str, Any] | None = None,
) -> Backend:
    """Return the backend to compute with.

    Parameters
    ----------
    name
        A registered backend name or alias, optionally with a comm: ``"torch+mpi"``.
        A :class:`Backend` is returned as it is.
    like
        An array, or a (nested) list, tuple or dict of arrays: the backend owning them
        is chosen, on their device, with their floating dtype. An array that no enabled
        plugin owns raises :class:`~anyxp.BackendNotFoundError` (naming the blocked or
        broken plugin that would own it), never falls back to the default.
    device, dtype
        The device and default floating dtype (``"float32"``, ``"float64"`` or a native
        dtype). ``dtype="float64"`` on JAX turns on JAX's process-wide x64 mode.
    comm, comm_options
        A comm plugin name (``"mpi"``) and the options its factory takes.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> be.xp.sum(be.asarray([1.0, 2.0]))
    np.float64(3.0)
    """
    if name is None and like is not None:
        if device is None and dtype is None and comm is None and comm_options is None:
            hit = _like_cache.get(type(like))
            if hit is not None:
                dev = hit[0](like)
                try:
                    be = hit[1].get((dev, like.dtype))
                except TypeError:  # an unhashable device: look up its stand-in
                    be = hit[1].get((_token(dev), like.dtype))
                if be is not None:
                    return be
        found = _from_like(like, device, dtype, comm, comm_options)
        if found is not None:
            return found
    if isinstance(name, Backend):
        return name
    if name is None:
        current = _current.get()
        if isinstance(current, Backend):
            return current
        name = current or os.environ.get("ANYXP_BACKEND") or DEFAULT
    if not isinstance(name, str):
        raise TypeError(
            f"backend name must be a str or an anyxp.Backend, got {type(name).__name__}"
        )
    array_name, comm_from_name = _split(name)
    if comm_from_name is not None:
        if comm is not None and comm != comm_from_name:
            raise ValueError(f"backend {name!r} names comm {comm_from_name!r} but comm={comm!r}")
        comm = comm_from_name
    return _cached(array_name, device, dtype, comm, comm_options)


@contextlib.contextmanager
def use(name: str | Backend) -> Iterator[Backend]:
    """Make ``name`` the default backend inside a ``with`` block (thread- and task-local).

    An explicit name or ``like=`` arrays still win over it.
    """
    be = backend(name)
    token = _current.set(be)
    try:
        yield be
    finally:
        _current.reset(token)
