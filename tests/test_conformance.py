"""The conformance suite passes on every built-in plugin this machine can run,
and fails a plugin that declares a capability it does not have."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import anyxp
from conftest import SUBPROCESS_TIMEOUT

BUILTINS = ["numpy", "array_api_strict", "torch", "jax", "dask", "cupy"]


def run_suite(*args: str, site=None) -> subprocess.CompletedProcess[str]:
    cmd = ["-m", "pytest", "--pyargs", *args, "-q", "-p", "no:cacheprovider", "-rfExX"]
    if site is not None:
        return site.run(*cmd)
    return subprocess.run(
        [sys.executable, *cmd], capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT
    )


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_plugin_passes(name):
    reason = anyxp.get_registry().backend_spec(name).unavailable_reason()
    if reason is not None:
        pytest.skip(f"{name} cannot run on this machine: {reason}")
    out = subprocess.run(
        [sys.executable, "-m", "anyxp", "check", name, "--json"],
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["ok"] and not report["failures"]
    rows = report["capabilities"]
    for cap in ("registration", "arrays", "control_flow", *report["declared"]):
        # device.gpu is declared by GPU-capable plugins but has no GPU to run on here.
        allowed = {"passed", "not tested"} if cap == "device.gpu" else {"passed"}
        assert rows[cap]["status"] in allowed, (cap, rows[cap])
    for cap, row in rows.items():
        if cap not in report["declared"] and cap not in ("registration", "arrays", "control_flow"):
            assert row["status"] == "unsupported", (cap, row)


LIAR = """
import anyxp

class Nothing:
    pass

@anyxp.hookimpl
def anyxp_backends():
    return [anyxp.BackendSpec(
        name={name!r},
        factory="{module}:create",
        array_types=("{module}.Nothing",),
        requires=("numpy",),
        capabilities={capabilities!r},
        expected_failures={expected!r},
    )]

class WrongAD:
    # Claims reverse-mode AD but returns a gradient of zeros.
    def grad(self, f, argnums=0):
        return lambda x: x * 0.0

    def value_and_grad(self, f, argnums=0):
        return lambda x: (f(x), x * 0.0)

def create(spec, *, device=None, dtype=None):
    import array_api_compat.numpy as xp
    return anyxp.Backend.from_namespace(spec, xp, device=device, dtype=dtype, ad=WrongAD())
"""


def liar(site, name, capabilities, expected=None):
    module = f"{name}_plugin"
    site.add(
        f"{name}-dist",
        {name: module},
        {
            module: LIAR.format(
                name=name, module=module, capabilities=capabilities, expected=expected or {}
            )
        },
    )


def test_a_plugin_that_lies_about_ad_fails(site):
    liar(site, "liar", {"arrays", "float64", "ad.grad"})
    out = run_suite("anyxp.conformance.test_ad", "--anyxp-backend", "liar", site=site)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "FAILED" in out.stdout
    assert "test_grad_matches_finite_differences[liar]" in out.stdout
    assert "Falsifying example" in out.stdout or "Failing test case" in out.stdout


def test_the_same_plugin_honest_about_ad_passes(site):
    liar(site, "honest", {"arrays", "float64"})
    out = run_suite("anyxp.conformance.test_ad", "--anyxp-backend", "honest", site=site)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "5 passed" in out.stdout  # the companion tests: each AD function raises


def test_declared_expected_failures_are_xfailed(site):
    liar(
        site,
        "known",
        {"arrays", "float64", "ad.grad"},
        {
            "*test_grad_matches_finite_differences*": "gradients are zeros (issue 12)",
            # Its arrays are numpy's, which it does not own: values fail the native check.
            "*test_value_and_grad*": "returns numpy arrays (issue 13)",
        },
    )
    out = run_suite("anyxp.conformance.test_ad", "--anyxp-backend", "known", site=site)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "2 xfailed" in out.stdout and "issue 12" in out.stdout


def test_check_reports_the_lie_with_test_id_and_example(site):
    liar(site, "liar", {"arrays", "float64", "ad.grad"})
    out = site.run("-m", "anyxp", "check", "liar", "--json")
    assert out.returncode == 1, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert not report["ok"]
    assert report["capabilities"]["ad.grad"]["status"] == "failed"
    assert report["capabilities"]["arrays"]["status"] == "failed"  # it owns no arrays
    grad = next(
        f for f in report["failures"] if "test_grad_matches_finite_differences" in f["nodeid"]
    )
    assert "x0=" in grad["example"], grad
    assert report["capabilities"]["ad.jvp"]["status"] == "unsupported"
    text = site.run("-m", "anyxp", "check", "liar")
    assert "test_ad.py::test_grad_matches_finite_differences[liar]" in text.stdout
    assert "reproduce with:" in text.stdout


def test_stale_expected_failure_patterns_are_reported(site):
    liar(site, "tidy", {"arrays", "float64"}, {"*test_that_does_not_exist*": "long fixed"})
    out = site.run("-m", "anyxp", "check", "tidy", "--json")
    report = json.loads(out.stdout)
    assert report["stale_expected_failures"] == ["*test_that_does_not_exist*"]
    assert "matches no test" in site.run("-m", "anyxp", "check", "tidy").stdout


def test_unexpected_pass_is_reported(site):
    liar(site, "fixed", {"arrays", "float64"}, {"*test_undeclared_ad_raises*": "was broken"})
    report = json.loads(site.run("-m", "anyxp", "check", "fixed", "--json").stdout)
    assert not report["ok"]
    xpassed = [f for f in report["failures"] if "test_undeclared_ad_raises" in f["nodeid"]]
    assert xpassed and all(f["message"] == "[XPASS(strict)] was broken" for f in xpassed)
