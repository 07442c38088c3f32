"""Registration: the spec is well formed, declaring is free, selection finds the backend."""

from __future__ import annotations

import json
import subprocess
import sys

import anyxp
from anyxp.capabilities import CAPABILITIES
from anyxp.registry import get_registry

from ._helpers import about, native

pytestmark = about("registration")


def test_spec_is_well_formed(backend):
    spec = get_registry().backend_spec(backend.name)
    assert spec.name == backend.name
    assert spec.capabilities <= set(CAPABILITIES)
    assert spec.array_types, "declare the array types you own so like= inference works"
    assert spec.unavailable_reason() is None


def test_registering_imports_nothing_heavy(backend):
    """Building the registry and reading the spec must not import the array library."""
    spec = get_registry().backend_spec(backend.name)
    code = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import anyxp\n"
        f"reg = anyxp.get_registry(); reg.backend_spec({backend.name!r})\n"
        f"print(json.dumps([m for m in {list(spec.requires)!r} if m in sys.modules "
        "and m not in before and m != 'numpy']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_selected_by_name_and_aliases(backend):
    spec = get_registry().backend_spec(backend.name)
    for name in (spec.name, *spec.aliases):
        assert anyxp.backend(name).name == spec.name


def test_like_infers_backend_device_and_dtype(backend):
    x = backend.asarray([1.0, 2.0, 3.0])
    native(backend, x)
    inferred = anyxp.backend(like=x)
    assert inferred.name == backend.name
    assert inferred.float_dtype == x.dtype
    assert anyxp.backend(like=[x, {"y": x}]).name == backend.name


def test_capabilities_include_declared(backend):
    spec = get_registry().backend_spec(backend.name)
    assert spec.capabilities <= backend.capabilities
