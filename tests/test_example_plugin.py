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
    rows = report["capabilities"]
    assert rows["arrays"]["status"] == "expected failure"
    assert rows["arrays"]["counts"]["passed"] > rows["arrays"]["counts"]["xfailed"] > 0
    assert rows["random"]["status"] == "passed"
    assert rows["ad.grad"]["status"] == "unsupported"
    # sparse has no linalg extension and does not declare it: stiff solvers refuse it.
    assert rows["linalg"]["status"] == "unsupported" and rows["linalg"]["counts"]["passed"] == 1
    reasons = {x["reason"] for x in report["expected_failures"]}
    assert "sparse has no arange" in reasons, reasons
    assert not report["not_provided"]
