"""The example third-party plugin (docs/example-plugin) installs and passes `anyxp check`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("anyxp_sparse", reason="pip install -e docs/example-plugin (CI does)")


def test_example_plugin_is_listed_from_its_own_distribution():
    out = subprocess.run(
        [sys.executable, "-m", "anyxp", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    row = next(b for b in json.loads(out.stdout)["backends"] if b["name"] == "sparse")
    assert row["distribution"] == "anyxp-sparse" and row["available"]


def test_example_plugin_passes_with_its_declared_gaps():
    out = subprocess.run(
        [sys.executable, "-m", "anyxp", "check", "sparse", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["ok"] and not report["stale_expected_failures"]
    assert report["capabilities"]["arrays"]["status"] == "expected failure"
    assert report["capabilities"]["arrays"]["counts"]["xfailed"] == 3
    assert report["capabilities"]["random"]["status"] == "passed"
    assert report["capabilities"]["ad.grad"]["status"] == "unsupported"
