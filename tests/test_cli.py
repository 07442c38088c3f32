"""The ``anyxp`` command line."""

from __future__ import annotations

import json
import subprocess
import sys


def anyxp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyxp", *args], capture_output=True, text=True, timeout=120
    )


def test_list_json_names_every_builtin():
    out = anyxp("list", "--json")
    assert out.returncode == 0, out.stderr
    table = json.loads(out.stdout)
    backends = {b["name"]: b for b in table["backends"]}
    assert {"numpy", "array_api_strict", "torch", "jax", "dask", "cupy"} <= set(backends)
    assert {"mpi", "local"} <= {c["name"] for c in table["comms"]}
    for name in ("numpy", "array_api_strict", "torch", "jax", "dask"):
        assert backends[name]["available"], backends[name]["unavailable_reason"]
        assert backends[name]["distribution"] == "anyxp"
        assert "arrays" in backends[name]["capabilities"]
    cupy = backends["cupy"]
    assert cupy["available"] or cupy["unavailable_reason"]
    assert "ad.grad" in backends["torch"]["capabilities"]
    assert "ad.grad" not in backends["numpy"]["capabilities"]


def test_info_describes_a_backend():
    out = anyxp("info", "torch", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["name"] == "torch" and info["device"] == "cpu" and "torch" in info["namespace"]
    assert "jit" in info["missing_capabilities"]


def test_info_on_a_misspelt_name_suggests():
    out = anyxp("info", "nmupy")
    assert out.returncode == 2
    assert "Did you mean 'numpy'?" in out.stderr
