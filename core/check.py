"""``anyxp check``: run the conformance suite on one plugin and report per capability."""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import platform
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from anyxp.capabilities import CAPABILITIES

__all__ = ["Outcome", "Report", "check_backend", "matrix_markdown", "run_check_all"]

#: Rows every backend reports on, besides the capability vocabulary.
BASE_ROWS = ("registration", "arrays", "control_flow")
ROWS = tuple(dict.fromkeys([*BASE_ROWS, *sorted(CAPABILITIES)]))


@dataclass
class Outcome:
    """What became of one conformance test."""

    nodeid: str
    capability: str
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    message: str = ""
    example: str = ""


@dataclass
class Report:
    """A plugin's conformance report."""

    backend: str
    comm: str | None
    versions: dict[str, str | None]
    declared: list[str]
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    stale_expected_failures: list[str] = field(default_factory=list)
    ok: bool = True

    def to_json(self) -> str:
        """The report as JSON."""
        return json.dumps(asdict(self), indent=2)

    def to_text(self) -> str:
        """The report for a terminal."""
        lines = [f"anyxp check {self.backend}" + (f" (comm {self.comm})" if self.comm else "")]
        lines += [f"  {k}: {v}" for k, v in self.versions.items() if v]
        lines.append("")
        width = max(len(c) for c in self.capabilities) + 2
        for cap, row in self.capabilities.items():
            counts = ", ".join(f"{n} {k}" for k, n in row["counts"].items() if n)
            lines.append(f"  {cap:<{width}}{row['status']:<20}{counts}")
        for fail in self.failures:
            lines += ["", f"FAILED {fail['nodeid']}", f"  {fail['message']}"]
            if fail["example"]:
                lines += [
                    "  reproduce with:",
                    *(f"    {ln}" for ln in fail["example"].splitlines()),
                ]
        for pattern in self.stale_expected_failures:
            lines.append(f"\nexpected failure {pattern!r} matches no test: remove it from the spec")
        lines.append("")
        lines.append("OK: every declared capability passed" if self.ok else "FAILED: see above")
        return "\n".join(lines)


def _example(text: str) -> str:
    for marker in ("Falsifying example:", "Failing test case:"):
        if marker in text:
            block = text[text.index(marker) :].splitlines()
            kept = [block[0]]
            for line in block[1:]:
                stripped = line.lstrip("E ").rstrip()
                if not stripped or stripped.startswith(
                    ("Explanation", "These lines", "You can reproduce")
                ):
                    break
                kept.append(stripped)
            return "\n".join(line.lstrip("E ").rstrip() for line in kept)
    return ""


class _Collector:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.capability_of: dict[str, str] = {}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for item in items:
            mark = item.get_closest_marker("anyxp_requires") or item.get_closest_marker(
                "anyxp_capability"
            )
            self.capability_of[item.nodeid] = mark.args[0] if mark else "arrays"

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "call" and not (report.when == "setup" and not report.passed):
            return
        outcome = report.outcome
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        text = str(report.longrepr) if report.failed else ""
        message = ""
        if report.failed:
            errors = [ln for ln in text.splitlines() if ln.startswith("E ")]
            message = errors[0][1:].strip() if errors else text.strip().splitlines()[-1]
        elif report.skipped and isinstance(report.longrepr, tuple):
            message = report.longrepr[2]
        self.outcomes.append(
            Outcome(
                report.nodeid,
                self.capability_of.get(report.nodeid, "arrays"),
                outcome,
                message,
                _example(text),
            )
        )


def _versions(name: str) -> dict[str, str | None]:
    import anyxp
    from anyxp.cli import _library_version
    from anyxp.registry import get_registry

    reg = get_registry()
    spec = reg.backend_spec(name)
    plugin = next(p.plugin for p in reg.backends[spec.name])
    return {
        "anyxp": anyxp.__version__,
        "plugin": f"{plugin.distribution} {plugin.version}",
        "library": _library_version(spec),
        "python": platform.python_version(),
    }


def check_backend(
    name: str,
    *,
    comm: str | None = None,
    profile: str = "anyxp-ci",
    max_examples: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Report:
    """Run the conformance suite on backend ``name`` in this process; return the report."""
    import pytest

    from anyxp.registry import get_registry

    spec = get_registry().backend_spec(name)
    args = [
        "--pyargs",
        "anyxp.conformance",
        "--anyxp-backend",
        spec.name,
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    args += ["--hypothesis-profile", profile, "--no-header", "-o", "console_output_style=classic"]
    if comm:
        args += ["--anyxp-comm", comm]
    if max_examples is not None:
        args += ["--anyxp-max-examples", str(max_examples)]
    collector = _Collector()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        pytest.main([*args, *extra_args], plugins=[collector])

    import anyxp

    declared = sorted(anyxp.backend(spec.name, comm=comm).capabilities)
    report = Report(spec.name, comm, _versions(spec.name), declared)
    by_cap: dict[str, list[Outcome]] = defaultdict(list)
    for o in collector.outcomes:
        by_cap[o.capability].append(o)
    for cap in ROWS:
        outcomes = by_cap.get(cap, [])
        counts = Counter(o.outcome for o in outcomes)
        required = cap in BASE_ROWS or cap in declared
        if counts["failed"] or counts["xpassed"]:
            status = "failed"
        elif not required:
            status = "unsupported"
        elif counts["xfailed"]:
            status = "expected failure"
        elif counts["passed"]:
            status = "passed"
        else:
            status = "not tested"
        report.capabilities[cap] = {
            "status": status,
            "declared": cap in declared,
            "counts": {k: counts[k] for k in ("passed", "failed", "skipped", "xfailed", "xpassed")},
        }
        if status == "failed":
            report.ok = False
    for o in collector.outcomes:
        if o.outcome in ("failed", "xpassed"):
            message = o.message or "passed, but the plugin declares it as an expected failure"
            report.failures.append({"nodeid": o.nodeid, "message": message, "example": o.example})
    report.stale_expected_failures = [
        p
        for p in spec.expected_failures
        if not any(
            fnmatch.fnmatch(o.nodeid, p) or fnmatch.fnmatch(o.nodeid.rsplit("::", 1)[-1], p)
            for o in collector.outcomes
        )
    ]
    if not collector.outcomes:
        report.ok = False
        report.failures.append(
            {"nodeid": "<session>", "message": "no test ran", "example": log.getvalue()[-3000:]}
        )
    return report


def run_check_all(names: list[str], *, profile: str = "anyxp-ci") -> dict[str, dict[str, Any]]:
    """Check each backend in its own process (JAX's x64 switch is process-wide)."""
    results = {}
    for name in names:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "anyxp",
                "check",
                name,
                "--json",
                "--hypothesis-profile",
                profile,
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        try:
            results[name] = json.loads(out.stdout[out.stdout.index("{") :])
        except ValueError:
            results[name] = {"error": (out.stderr or out.stdout)[-2000:], "capabilities": {}}
    return results


_SYMBOL = {
    "passed": "✅",
    "failed": "❌",
    "unsupported": "—",
    "expected failure": "⚠️",
    "not tested": "·",
}


def matrix_markdown(results: dict[str, dict[str, Any]]) -> str:
    """The capability-by-backend support matrix as a markdown table."""
    names = list(results)
    caps = ROWS
    lines = [
        "| capability | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for cap in caps:
        cells = []
        for name in names:
            row = results[name].get("capabilities", {}).get(cap)
            cells.append(_SYMBOL.get(row["status"], "?") if row else "error")
        lines.append(f"| `{cap}` | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "✅ declared and passed · ❌ declared and failed · ⚠️ declared, with expected failures · "
        "— not declared (using AD or float64 then raises `UnsupportedError`, checked; `jit` "
        "and loops run eagerly) · · declared, but nothing here to test it on (no GPU)"
    )
    return "\n".join(lines)
