"""``anyxp check``: run the conformance suite on one plugin and report per capability."""

from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anyxp.capabilities import CAPABILITIES

__all__ = [
    "Outcome",
    "Report",
    "check_at_ranks",
    "check_backend",
    "launched",
    "matrix_markdown",
    "run_check_all",
    "split_failure",
]

#: Rows every backend reports on, besides the capability vocabulary.
BASE_ROWS = ("registration", "arrays", "control_flow")
ROWS = tuple(dict.fromkeys([*BASE_ROWS, *sorted(CAPABILITIES)]))


@dataclass
class Outcome:
    """What became of one conformance test."""

    nodeid: str
    capability: str
    outcome: str  # passed, failed, skipped, xfailed, xpassed
    message: str = ""  # a failure's whole text, a skip's reason, an expected failure's reason
    example: str = ""  # hypothesis's falsifying example, and the decorator that replays it


@dataclass
class Report:
    """A plugin's conformance report."""

    backend: str
    comm: str | None
    versions: dict[str, str | None]
    declared: list[str]
    capabilities: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, str]] = field(default_factory=list)
    expected_failures: list[dict[str, str]] = field(default_factory=list)
    not_provided: list[str] = field(default_factory=list)
    stale_expected_failures: list[str] = field(default_factory=list)
    ok: bool = True

    def to_json(self) -> str:
        """Return the report as JSON."""
        return json.dumps(asdict(self), indent=2)

    def to_text(self) -> str:
        """Return the report for a terminal: every failure in full, then one summary line."""
        lines = [f"anyxp check {self.backend}" + (f" (comm {self.comm})" if self.comm else "")]
        lines += [f"  {k}: {v}" for k, v in self.versions.items() if v]
        lines.append("")
        width = max(len(c) for c in self.capabilities) + 2
        for cap, row in self.capabilities.items():
            counts = ", ".join(f"{n} {k}" for k, n in row["counts"].items() if n)
            lines.append(f"  {cap:<{width}}{row['status']:<20}{counts}")
        for fail in self.failures:
            lines += ["", f"FAILED {fail['nodeid']}", *_indent(fail["message"], 2)]
            if fail["example"]:
                lines += ["  reproduce with:", *_indent(fail["example"], 4)]
        if self.expected_failures:
            lines += ["", "expected failures, with the reasons the plugin declares:"]
            lines += [f"  {x['nodeid']}: {x['reason']}" for x in self.expected_failures]
        for pattern in self.stale_expected_failures:
            lines.append(f"\nexpected failure {pattern!r} matches no test: remove it from the spec")
        lines += ["", self.summary()]
        return "\n".join(lines)

    def summary(self) -> str:
        """Return one line: OK, or what is wrong and what to do about it."""
        gap = ""
        if self.not_provided:
            gap = (
                f"NOT PROVIDED: {', '.join(self.not_provided)}: declared, but every test of it "
                "is an expected failure. Remove it from the spec's capabilities; undeclared, "
                "its tests are skipped and its absence is checked to raise UnsupportedError."
            )
        if self.failures:
            return "FAILED: see above" + (f". {gap}" if gap else "")
        if gap:
            return gap
        if not self.ok:
            return "FAILED: see above"
        if self.expected_failures:
            n = len(self.expected_failures)
            return f"OK: every declared capability passed, with {n} expected failures (above)"
        return "OK: every declared capability passed"


def _indent(text: str, n: int) -> list[str]:
    return [" " * n + line if line else "" for line in text.splitlines()]


#: Where hypothesis's account of a failing example begins (wording varies by version).
_EXAMPLE_MARKERS = ("Falsifying example:", "Falsifying explicit example:", "Failing test case:")
_REPLAY = re.compile(r"You can reproduce this .* by temporarily adding (@reproduce_failure\(.*\))")
_PYTEST_PREFIX = re.compile(r"^E {0,3}")


def split_failure(text: str) -> tuple[str, str]:
    """Split a failure's text into its whole message and hypothesis's whole reproduction.

    The message is everything the exception says: a ``numpy.testing`` mismatch is many
    lines, the first of them empty. The reproduction is the falsifying example as
    hypothesis prints it, to its closing parenthesis, then the ``@reproduce_failure``
    decorator that replays it, where hypothesis printed one. Other notes stay with the
    message.
    """
    found = [i for i in (text.find(m) for m in _EXAMPLE_MARKERS) if i >= 0]
    if not found:
        return text.strip(), ""
    start = min(found)
    head, rest = text[:start].rstrip(), text[start:].splitlines()
    example, notes, replay = rest[:1], [], []
    # A call spread over lines ends with a ")" of its own; a one-line call ends at once.
    in_example = rest[0].rstrip().endswith("(")
    for line in rest[1:]:
        match = _REPLAY.search(line)
        if match:
            replay.append(match.group(1))
        elif in_example:
            example.append(line.rstrip())
            in_example = line.rstrip() != ")"
        else:
            notes.append(line.rstrip())
    message = "\n".join([head, *notes]).strip()
    return message, "\n".join([*example, *replay])


def _failure(report: Any) -> tuple[str, str]:
    """Return a failed test's whole message and its reproduction (see :func:`split_failure`).

    pytest's crash line holds all of one exception, notes included. When hypothesis found
    several distinct failures, it raised them as a group whose crash line is only a
    heading: then the message is the group as pytest printed it, every example inside.
    """
    crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)
    text = str(report.longrepr)
    if crash and (_has_example(crash) or not _has_example(text)):
        return split_failure(str(crash))
    errors = [_PYTEST_PREFIX.sub("", ln, count=1) for ln in text.splitlines() if ln[:2] == "E "]
    return ("\n".join(errors) if errors else text).strip(), ""


def _has_example(text: str) -> bool:
    return any(m in text for m in _EXAMPLE_MARKERS)


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
        outcome, message, example = report.outcome, "", ""
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
            message = report.wasxfail
        if report.failed:
            message, example = _failure(report)
        elif outcome == "skipped" and isinstance(report.longrepr, tuple):
            message = report.longrepr[2]
        capability = self.capability_of.get(report.nodeid, "arrays")
        self.outcomes.append(Outcome(report.nodeid, capability, outcome, message, example))


def _versions(name: str) -> dict[str, str | None]:
    import anyxp
    from anyxp.cli import _library_version
    from anyxp.registry import get_registry

    reg = get_registry()
    owner = reg.provider(name)  # the plugin in use (a built-in over a third party)
    spec, plugin = owner.spec, owner.plugin
    return {
        "anyxp": anyxp.__version__,
        "plugin": f"{plugin.distribution} {plugin.version}",
        "library": _library_version(spec),
        "python": platform.python_version(),
    }


def _status(counts: Counter[str], *, required: bool) -> str:
    """Return a capability's status from the outcomes of its tests.

    Declared, but with expected failures and not one passing test, it is *not provided*:
    the plugin itself says none of it works, so the declaration is refused.
    """
    if counts["failed"] or counts["xpassed"]:
        return "failed"
    if not required:
        return "unsupported"
    if counts["xfailed"]:
        return "expected failure" if counts["passed"] else "not provided"
    return "passed" if counts["passed"] else "not tested"


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
        counts = Counter(o.outcome for o in by_cap.get(cap, []))
        status = _status(counts, required=cap in BASE_ROWS or cap in declared)
        report.capabilities[cap] = {
            "status": status,
            "declared": cap in declared,
            "counts": {k: counts[k] for k in ("passed", "failed", "skipped", "xfailed", "xpassed")},
        }
        if status == "not provided":
            report.not_provided.append(cap)
        if status in ("failed", "not provided"):
            report.ok = False
    for o in collector.outcomes:
        if o.outcome in ("failed", "xpassed"):
            message = o.message or "passed, but the plugin declares it as an expected failure"
            report.failures.append({"nodeid": o.nodeid, "message": message, "example": o.example})
        elif o.outcome == "xfailed":
            report.expected_failures.append({"nodeid": o.nodeid, "reason": o.message})
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


#: Environment variables by which a process knows a launcher started it as one of many.
_LAUNCHED = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID", "RANK")


def launched() -> bool:
    """Whether this process is one rank of a job a launcher started (mpiexec, torchrun, srun)."""
    return any(v in os.environ for v in _LAUNCHED)


def check_at_ranks(
    name: str,
    comm: str,
    ranks: int,
    *,
    profile: str = "anyxp-ci",
    max_examples: int | None = None,
    timeout: float = 900.0,
) -> list[Report]:
    """Run ``anyxp check name --comm comm`` at ``ranks`` processes under the comm's launcher.

    Returns one report per rank, in rank order. Raises ``RuntimeError`` when the job
    ends without every rank's report (naming the launcher's exit status and the end of its
    output), and when it runs past ``timeout`` seconds (then it is killed).
    """
    from anyxp.registry import get_registry

    spec = get_registry().comm_spec(comm)
    if not spec.launcher:
        raise ValueError(
            f"comm {spec.name!r} declares no launcher, so anyxp cannot start its ranks; "
            f"start them yourself, e.g.: mpiexec -n {ranks} anyxp check {name} --comm {comm}"
        )
    command = [w.format(n=ranks, python=sys.executable) for w in spec.launcher]
    beside = str(Path(sys.executable).parent)
    found = shutil.which(command[0], path=beside + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise RuntimeError(
            f"the {spec.name} comm's launcher {command[0]!r} is not installed here"
            + (f"; install it with: {spec.install}" if spec.install else "")
        )
    command[0] = found
    with tempfile.TemporaryDirectory(prefix="anyxp-check-") as folder:
        command += ["-m", "anyxp", "check", name, "--comm", comm, "--ranks", "1"]
        command += ["--rank-reports", folder, "--hypothesis-profile", profile]
        if max_examples is not None:
            command += ["--max-examples", str(max_examples)]
        env = {k: v for k, v in os.environ.items() if k not in _LAUNCHED}
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError(
                f"{' '.join(command[:6])} ... ran past {timeout:g} s and was ended; a rank "
                "may wait in a collective another never calls"
            ) from e
        files = sorted(Path(folder).glob("rank*.json"), key=lambda p: int(p.stem[4:]))
        if len(files) != ranks:
            tail = (out.stdout[-1500:] + out.stderr[-2500:]).strip()
            raise RuntimeError(
                f"{len(files)} of {ranks} ranks reported; the launcher exited with status "
                f"{out.returncode}. Its output ends:\n{tail}"
            )
        return [Report(**json.loads(f.read_text())) for f in files]


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
    "not provided": "🚫",
    "not tested": "·",
}


def matrix_markdown(results: dict[str, dict[str, Any]]) -> str:
    """Return the capability-by-backend support matrix as a markdown table."""
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
        "🚫 declared, but every test an expected failure: not provided · — not declared "
        "(using AD, float64 or linalg then raises `UnsupportedError`, checked; `jit` and "
        "loops run eagerly) · · declared, but nothing here to test it on (no GPU)"
    )
    return "\n".join(lines)
