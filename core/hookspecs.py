"""The hooks a plugin implements: one per kind of thing it provides.

A plugin is any module named by an entry point in the ``anyxp`` group::

    # pyproject.toml of your distribution
    [project.entry-points.anyxp]
    mylib = "anyxp_mylib.plugin"

The module is imported when anyxp first builds its registry (unless the
``ANYXP_PLUGINS`` / ``ANYXP_DISABLED_PLUGINS`` environment variables block it), so it
must stay cheap: declare specs here and put everything that imports your array library
in the module the spec's ``factory`` names.
"""

from __future__ import annotations

from collections.abc import Iterable

import pluggy

from anyxp.spec import BackendSpec, CommSpec

__all__ = ["PROJECT", "anyxp_backends", "anyxp_comms", "hookimpl", "hookspec"]

PROJECT = "anyxp"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def anyxp_backends() -> Iterable[BackendSpec]:  # type: ignore[empty-body]
    """Return the array backends this plugin provides.

    Example, a complete plugin module (``anyxp_mylib/plugin.py``)::

        import anyxp

        @anyxp.hookimpl
        def anyxp_backends():
            return [
                anyxp.BackendSpec(
                    name="mylib",
                    factory="anyxp_mylib.backend:create",
                    array_types=("mylib.Array",),
                    requires=("mylib",),
                    install="pip install mylib",
                    capabilities={"arrays", "float64", "random"},
                )
            ]

    and the module its factory names (``anyxp_mylib/backend.py``), the only one that
    imports the array library::

        import mylib
        import anyxp

        def create(spec, *, device=None, dtype=None):
            return anyxp.Backend.from_namespace(spec, mylib, device=device, dtype=dtype)
    """


@hookspec
def anyxp_comms() -> Iterable[CommSpec]:  # type: ignore[empty-body]
    """Return the communicators (collectives between processes) this plugin provides.

    Example, a complete plugin module::

        import anyxp

        @anyxp.hookimpl
        def anyxp_comms():
            return [
                anyxp.CommSpec(
                    name="mycomm",
                    factory="anyxp_mycomm.comm:create",
                    carries=("numpy", "torch"),
                    requires=("mycomm",),
                    install="pip install mycomm",
                    capabilities={"comm.allreduce", "comm.broadcast"},
                )
            ]

    where ``anyxp_mycomm.comm.create(backend, **options)`` returns an object with
    ``rank``, ``size``, ``allreduce``, ``broadcast``, ``allgather``, ``reduce_scatter``,
    ``ppermute`` and ``barrier`` (see :class:`anyxp.comm.Comm`).
    """
