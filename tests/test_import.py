"""``import anyxp`` and declaring plugins import no backend library, nor the algorithm
families: those come on first use, ``anyxp.ode.solve(...)``."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
import sys

import pytest

HEAVY = ["torch", "jax", "jaxlib", "cupy", "dask", "mpi4py", "array_api_strict"]


def _loaded_after(code: str, modules: list[str] = HEAVY) -> list[str]:
    probe = (
        code
        + f"\nimport sys, json; print(json.dumps([m for m in {modules!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_anyxp_imports_no_backend_library():
    assert _loaded_after("import anyxp") == []


def test_building_the_registry_imports_no_backend_library():
    assert _loaded_after("import anyxp; anyxp.get_registry(); anyxp.backend('numpy')") == []


def test_pytest_plugin_imports_no_backend_library():
    assert _loaded_after("import anyxp.testing.pytest_plugin") == []


def test_using_a_backend_imports_only_its_library():
    assert _loaded_after("import anyxp; anyxp.backend('torch')") == ["torch"]


def test_import_anyxp_imports_no_algorithm_family():
    assert _loaded_after("import anyxp", ["anyxp.ode", "anyxp.testing"]) == []


def test_families_are_imported_on_first_attribute_access():
    code = """
import anyxp
assert "ode" in dir(anyxp) and "testing" in dir(anyxp)
sol = anyxp.ode.solve(lambda t, y: -y, (0.0, 1.0), anyxp.backend("numpy").asarray([1.0]))
assert abs(float(sol.y[-1, 0]) - 0.36787944) < 1e-5
assert callable(anyxp.testing.assert_close)
try:
    anyxp.no_such_family
except AttributeError as exc:
    assert "no_such_family" in str(exc)
else:
    raise AssertionError("no AttributeError")
"""
    assert _loaded_after(code, ["anyxp.ode", "anyxp.testing"]) == ["anyxp.ode", "anyxp.testing"]


def test_families_not_written_yet_are_not_listed():
    import anyxp

    present = {n for n in anyxp._SUBPACKAGES if importlib.util.find_spec(f"anyxp.{n}")}
    assert {"ode", "testing"} <= present
    assert {n for n in anyxp._SUBPACKAGES if n in dir(anyxp)} == present
    for name in set(anyxp._SUBPACKAGES) - present:
        with pytest.raises(AttributeError):
            getattr(anyxp, name)


def test_version_comes_from_the_distribution_metadata():
    import anyxp

    assert anyxp.__version__ == importlib.metadata.version("anyxp")
    assert "__version__" in dir(anyxp)
