"""``import anyxp`` and declaring plugins import no backend library."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "jax", "jaxlib", "cupy", "dask", "mpi4py", "array_api_strict"]


def _loaded_after(code: str) -> list[str]:
    probe = (
        code + f"\nimport sys, json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
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
