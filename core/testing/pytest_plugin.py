"""The anyxp pytest plugin: a ``backend`` fixture over every installed backend.

Registered through the ``pytest11`` entry point, so a project that installs anyxp gets,
with no conftest::

    def test_sum(backend):
        x = backend.asarray([1.0, 2.0])
        assert float(backend.xp.sum(x)) == 3.0

    @pytest.mark.anyxp_requires("ad.grad")
    def test_gradient(backend): ...

``--anyxp-backend NAME`` (repeatable) picks the backends; ``--anyxp-comm NAME`` gives
each one that comm. Importing this module imports no array library.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import pytest

__all__ = ["backend"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("anyxp")
    group.addoption(
        "--anyxp-backend",
        action="append",
        default=None,
        metavar="NAME",
        help="run backend-parametrized tests on this anyxp backend (repeatable; "
        "default: every available backend)",
    )
    group.addoption(
        "--anyxp-comm", default=None, metavar="NAME", help="comm plugin for those backends"
    )
    group.addoption(
        "--anyxp-max-examples",
        type=int,
        default=None,
        metavar="N",
        help="hypothesis examples per property test (overrides the active profile)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "anyxp_requires(*capabilities): skip where the backend lacks one of these capabilities",
    )
    config.addinivalue_line(
        "markers",
        "anyxp_capability(name): the capability a test reports on (for anyxp check)",
    )
    try:
        from hypothesis import settings
    except ImportError:
        return
    n = config.getoption("--anyxp-max-examples")
    if n is not None:
        settings.register_profile(
            "anyxp-custom",
            parent=settings.get_profile(settings.get_current_profile_name()),
            max_examples=n,
        )
        settings.load_profile("anyxp-custom")


def _register_profiles() -> None:
    """Hypothesis profiles for numerics; registered on import, before --hypothesis-profile
    is read."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # hypothesis is optional for users of the fixture
        return
    settings.register_profile(
        "anyxp-ci",
        max_examples=25,
        derandomize=True,
        deadline=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("anyxp-thorough", max_examples=500, deadline=None, print_blob=True)


_register_profiles()


def selected_backends(config: pytest.Config) -> list[str]:
    """Names given with ``--anyxp-backend``, or every available backend."""
    names = config.getoption("--anyxp-backend")
    if names:
        return [n for arg in names for n in arg.split(",") if n]
    from anyxp.registry import get_registry

    return get_registry().available_backends()


def _make(config: pytest.Config, name: str) -> Any:
    import anyxp

    return anyxp.backend(name, comm=config.getoption("--anyxp-comm"))


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest) -> Any:
    """The anyxp backend under test (parametrized over the selected backends).

    Backends are immutable, so one instance serves the whole session.
    """
    name = getattr(request, "param", None) or selected_backends(request.config)[0]
    return _make(request.config, name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip tests marked ``anyxp_requires`` where the backend lacks a capability."""
    marker = item.get_closest_marker("anyxp_requires")
    callspec = getattr(item, "callspec", None)
    if marker is None or callspec is None or "backend" not in callspec.params:
        return
    be = _make(item.config, callspec.params["backend"])
    missing = [c for c in marker.args if c not in be.capabilities]
    if missing:
        pytest.skip(f"backend {be.name!r} does not declare {', '.join(missing)}")


def _uses_our_fixture(metafunc: pytest.Metafunc) -> bool:
    defs = metafunc.definition._fixtureinfo.name2fixturedefs.get("backend")
    if not defs:
        return False
    func = defs[-1].func
    return getattr(func, "__module__", None) == __name__ and func.__name__ == "backend"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames and _uses_our_fixture(metafunc):
        names = selected_backends(metafunc.config)
        metafunc.parametrize("backend", names, indirect=True, ids=names)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests a plugin declares as expected failures (``expected_failures``)."""
    from anyxp.registry import get_registry

    reg = get_registry()
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec is not None else None
        if not isinstance(name, str) or name not in reg.backends:
            continue
        for pattern, reason in reg.backend_spec(name).expected_failures.items():
            if fnmatch.fnmatch(item.nodeid, pattern) or fnmatch.fnmatch(item.name, pattern):
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
