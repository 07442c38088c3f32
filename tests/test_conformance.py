"""The conformance suite passes every built-in plugin and fails every lying one.

A plugin fails when it declares a capability it does not have, or gets values wrong: on
large arrays, on Python literals, in linalg. The reports keep every failure whole."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import anyxp
import anyxp.conformance
from anyxp.capabilities import AD_CAPABILITIES
from anyxp.check import split_failure
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
    assert report["ok"] and not report["failures"] and not report["not_provided"]
    rows = report["capabilities"]
    # A built-in with known gaps (dask's linalg) declares them as expected failures.
    gaps = (
        {"expected failure"} if anyxp.get_registry().backend_spec(name).expected_failures else set()
    )
    for cap in ("registration", "arrays", "control_flow", *report["declared"]):
        # device.gpu is declared by GPU-capable plugins but has no GPU to run on here.
        allowed = {"passed", "not tested"} if cap == "device.gpu" else {"passed"}
        assert rows[cap]["status"] in allowed | gaps, (cap, rows[cap])
    for cap, row in rows.items():
        if cap not in report["declared"] and cap not in ("registration", "arrays", "control_flow"):
            assert row["status"] == "unsupported", (cap, row)


def _namespace_names(paths) -> set[str]:
    """Return every ``xp.NAME`` (and ``xp.linalg.NAME``) the sources spell out."""
    found = set()
    for path in paths:
        found |= set(re.findall(r"\bxp\.((?:linalg\.)?[A-Za-z_]\w*)", path.read_text()))
    return found - {"__name__"}


def test_the_suite_checks_every_namespace_function_anyxp_calls():
    """A plugin lacking a function anyxp calls fails ``anyxp check``, not inside ``solve``.

    The suite checks the value of every ``xp`` function anyxp's source calls."""
    core = Path(anyxp.__file__).parent
    called = _namespace_names(p for p in core.rglob("*.py") if "testing" not in p.parts)
    suite = Path(anyxp.conformance.__file__).parent
    checked = _namespace_names(suite.glob("test_*.py"))
    assert {"tensordot", "linalg.inv", "clip", "isfinite"} <= called  # the scan finds them
    missing = ", ".join(f"xp.{name}" for name in sorted(called - checked))
    assert not missing, f"anyxp calls {missing}, which no conformance test checks the value of"


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
    # The companion tests: each AD capability's functions raise UnsupportedError.
    assert f"{len(AD_CAPABILITIES)} passed" in out.stdout


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


# -- plugins whose arrays are real (array_api_strict's, with that plugin blocked) ---------
# Each tells one lie; everything else is array_api_strict and passes.
STRICT_LIAR = """
import anyxp

LIES = {lies!r}


@anyxp.hookimpl
def anyxp_backends():
    return [anyxp.BackendSpec(
        name={name!r},
        factory="{module}:create",
        array_types=("array_api_strict._array_object.Array",),
        requires=("array_api_strict",),
        capabilities={capabilities!r},
        expected_failures={expected!r},
    )]


def namespace():
    import types

    import array_api_strict as strict
    import numpy as np

    class Namespace(types.ModuleType):
        def __getattr__(self, name):
            if name == "linalg" and "no linalg" in LIES:
                raise AttributeError(f"module {{self.__name__!r}} has no attribute 'linalg'")
            return getattr(strict, name)

    xp = Namespace("lying_strict")
    if "sum past 25 elements" in LIES:
        # Right on every array hypothesis draws (at most 25 elements), wrong after.
        def sum(x, /, *, axis=None, dtype=None, keepdims=False):
            out = strict.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)
            return out * 1.001 if x.size > 25 else out

        xp.sum = sum
    if "literals through float32" in LIES:
        # Python floats parsed at single precision, then cast: the torch bug of issue 1.
        def asarray(obj, /, *, dtype=None, device=None, copy=None):
            if not hasattr(obj, "dtype") and np.asarray(obj).dtype.kind == "f":
                obj = strict.asarray(obj, dtype=strict.float32, device=device)
            return strict.asarray(obj, dtype=dtype, device=device, copy=copy)

        xp.asarray = asarray
    return xp


class ZeroGradient:
    def grad(self, f, argnums=0):
        return lambda x: x * 0.0

    def value_and_grad(self, f, argnums=0):
        return lambda x: (f(x), x * 0.0)


def create(spec, *, device=None, dtype=None):
    import numpy as np

    return anyxp.Backend.from_namespace(
        spec,
        namespace(),
        device=device,
        dtype=dtype,
        ad=ZeroGradient() if "zero gradients" in LIES else None,
        to_numpy=np.from_dlpack,
        device_of=lambda x: x.device,
    )
"""


def strict_liar(site, name, lies, capabilities=("arrays", "float64"), expected=None):
    """Add a plugin owning array_api_strict's arrays (that plugin blocked) telling ``lies``."""
    module = f"{name}_plugin"
    source = STRICT_LIAR.format(
        name=name,
        module=module,
        lies=set(lies),
        capabilities=set(capabilities),
        expected=expected or {},
    )
    site.add(f"{name}-dist", {name: module}, {module: source})


def check(site, name, *args):
    """Run ``anyxp check name *args`` beside that plugin, with array_api_strict blocked."""
    return site.run("-m", "anyxp", "check", name, *args, ANYXP_DISABLED_PLUGINS="array_api_strict")


def failed(report):
    return {f["nodeid"].rsplit("::", 1)[-1] for f in report["failures"]}


def test_the_strict_liar_without_lies_passes(site):
    """The base the lies below are told on passes: each failure is its lie's alone."""
    strict_liar(site, "plain", lies=())
    out = check(site, "plain", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"], out.stdout[-4000:] + out.stderr[-2000:]


def test_a_sum_wrong_only_past_25_elements_fails_check(site):
    strict_liar(site, "bigsum", lies={"sum past 25 elements"})
    out = check(site, "bigsum", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and not report["ok"]
    assert report["capabilities"]["arrays"]["status"] == "failed"
    # The property tests draw at most 25 elements and still pass: only the sizes catch it.
    assert "test_reductions[bigsum]" not in failed(report)
    big = {"64", "1000", "4099", "100000", "3x4099", "64x64x3"}
    assert {f"test_reductions_at_size[bigsum-{n}]" for n in big} <= failed(report)
    assert not {f"test_reductions_at_size[bigsum-{n}]" for n in ("1", "7")} & failed(report)
    message = next(f["message"] for f in report["failures"] if "[bigsum-4099]" in f["nodeid"])
    assert "sum axis=None:" in message.splitlines()[0], message  # names what is wrong


def test_literals_read_through_float32_fail_check(site):
    strict_liar(site, "narrow", lies={"literals through float32"})
    report = json.loads(check(site, "narrow", "--json").stdout)
    assert report["capabilities"]["float64"]["status"] == "failed"
    assert "test_float_literals_are_read_exactly[narrow-0.0057-float64]" in failed(report)
    message = next(f["message"] for f in report["failures"] if "0.0057-float64" in f["nodeid"])
    assert "0.00570000009611249" in message and "single precision" in message


def test_linalg_declared_but_missing_fails_check(site):
    strict_liar(site, "nolinalg", {"no linalg"}, capabilities={"arrays", "float64", "linalg"})
    report = json.loads(check(site, "nolinalg", "--json").stdout)
    assert not report["ok"]
    assert report["capabilities"]["linalg"]["status"] == "failed"
    assert report["capabilities"]["arrays"]["status"] == "passed"
    assert any("has no attribute 'linalg'" in f["message"] for f in report["failures"])


def test_linalg_undeclared_is_checked_to_raise_unsupported(site):
    strict_liar(site, "honestlinalg", {"no linalg"}, capabilities={"arrays", "float64"})
    out = check(site, "honestlinalg", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["ok"], out.stdout[-4000:]
    row = report["capabilities"]["linalg"]
    # Every linalg test is skipped; the one that runs checks the stiff solvers refuse it.
    assert row["status"] == "unsupported" and row["counts"]["passed"] == 1, row


def test_every_test_of_a_capability_expected_to_fail_is_not_provided(site):
    reason = "no linalg extension yet (issue 7)"
    strict_liar(
        site,
        "hollow",
        lies={"no linalg"},
        capabilities={"arrays", "float64", "linalg"},
        expected={"*test_linalg_*": reason},
    )
    out = check(site, "hollow", "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and not report["ok"]
    assert report["capabilities"]["linalg"]["status"] == "not provided"
    assert report["not_provided"] == ["linalg"] and not report["failures"]
    assert {x["reason"] for x in report["expected_failures"]} == {reason}
    text = check(site, "hollow").stdout
    summary = text.rstrip().splitlines()[-1]
    assert summary.startswith("NOT PROVIDED: linalg") and "OK" not in summary, summary
    assert f"test_linalg_inv[hollow-7x7]: {reason}" in text  # each reason, printed


def test_a_capability_with_some_expected_failures_is_still_provided(site):
    strict_liar(
        site,
        "partial",
        lies=(),
        capabilities={"arrays", "float64", "linalg"},
        expected={"*test_linalg_inv*": "a known gap", "*test_linalg_solve*": "another"},
    )
    report = json.loads(check(site, "partial", "--json").stdout)
    assert report["capabilities"]["linalg"]["status"] == "failed"  # strict: they pass
    assert {f["message"] for f in report["failures"]} == {
        "[XPASS(strict)] a known gap",
        "[XPASS(strict)] another",
    }


def test_reports_keep_the_whole_failure(site, tmp_path):
    """Reports keep a numpy.testing mismatch and hypothesis's example whole.

    The mismatch is many lines, the first empty: all are kept, in the text report, --json
    and report.md."""
    strict_liar(site, "zerograd", {"zero gradients"}, capabilities={"arrays", "float64", "ad.grad"})
    report = json.loads(check(site, "zerograd", "--json").stdout)
    grad = next(f for f in report["failures"] if "test_grad_matches" in f["nodeid"])
    message, example = grad["message"], grad["example"]
    assert message.startswith("AssertionError:"), message
    for line in ("Not equal to tolerance", "Mismatched elements", "ACTUAL:", "DESIRED:"):
        assert line in message, message
    assert re.match(r"(Falsifying example|Failing test case): test_grad_matches", example)
    lines = example.splitlines()
    assert "x0=" in example and lines[-1].startswith("@reproduce_failure("), example
    assert lines[-2] == ")" and "xplanation" not in example, example
    text = check(site, "zerograd", "--report", str(tmp_path)).stdout
    markdown = (tmp_path / "report.md").read_text()
    for shown in (text, markdown):
        for line in (*message.splitlines(), *lines):
            assert line.strip() in shown, line


HYPOTHESIS_FAILURE = """AssertionError: \nNot equal to tolerance rtol=1e-05, atol=1e-05

Mismatched elements: 1 / 3 (33.3%)
 ACTUAL: array([0., 0., 0.])
 DESIRED: array([1., 0., 0.])
Falsifying example: test_grad(
    backend=Backend('liar'),
    x0=array([1.]),
)
Explanation:
    These lines were always and only run by failing examples:
        /x.py:3

You can reproduce this example by temporarily adding @reproduce_failure('6.1', b'AA==') as a \
decorator on your test function"""


def test_split_failure_keeps_message_and_example_whole():
    message, example = split_failure(HYPOTHESIS_FAILURE)
    assert message.startswith("AssertionError: \nNot equal to tolerance")
    assert "DESIRED: array([1., 0., 0.])" in message and "Explanation:" in message
    assert example == (
        "Falsifying example: test_grad(\n    backend=Backend('liar'),\n    x0=array([1.]),\n)\n"
        "@reproduce_failure('6.1', b'AA==')"
    )
    assert split_failure("ValueError: bad\n  second line\n") == (
        "ValueError: bad\n  second line",
        "",
    )
