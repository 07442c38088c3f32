"""The ``anyxp`` command: list plugins, describe one backend."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from collections.abc import Sequence
from typing import Any

from anyxp.errors import AnyxpError
from anyxp.registry import Registry, get_registry

__all__ = ["main", "plugin_table"]


def _library_version(spec: Any) -> str | None:
    if not spec.requires:
        return None
    top = spec.requires[0]
    try:
        dists = importlib.metadata.packages_distributions().get(top, [top])
        return importlib.metadata.version(dists[0])
    except importlib.metadata.PackageNotFoundError:
        return None


def plugin_table(reg: Registry) -> dict[str, Any]:
    """Everything ``anyxp list`` shows, as JSON-ready data."""

    def rows(table: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        out = []
        for name, provided in sorted(table.items()):
            for p in provided:
                reason = p.spec.unavailable_reason()
                row = {
                    "name": name,
                    "kind": kind,
                    "plugin": p.plugin.name,
                    "distribution": p.plugin.distribution,
                    "version": p.plugin.version,
                    "library_version": _library_version(p.spec),
                    "available": reason is None,
                    "unavailable_reason": reason,
                    "capabilities": sorted(p.spec.capabilities),
                    "description": p.spec.description,
                }
                if len(provided) > 1:
                    row["conflict"] = f"{name!r} is provided by {len(provided)} plugins"
                out.append(row)
        return out

    return {
        "backends": rows(reg.backends, "backend"),
        "comms": rows(reg.comms, "comm"),
        "plugins": [
            {
                "name": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "module": p.module,
                "blocked": p.blocked,
                "error": p.error,
            }
            for p in reg.plugins
        ],
    }


def _print_list(table: dict[str, Any]) -> None:
    for kind in ("backends", "comms"):
        print(f"{kind}:")
        for row in table[kind]:
            state = "available" if row["available"] else f"unavailable: {row['unavailable_reason']}"
            lib = f" {row['library_version']}" if row["library_version"] else ""
            print(f"  {row['name']:<18}{state}")
            print(
                f"  {'':<18}from {row['distribution']} {row['version']}{lib and ' (library' + lib + ')'}"
            )
            print(f"  {'':<18}{', '.join(row['capabilities'])}")
    broken = [p for p in table["plugins"] if p["error"]]
    blocked = [p for p in table["plugins"] if p["blocked"]]
    if broken:
        print("broken plugins (skipped):")
        for p in broken:
            print(f"  {p['name']} from {p['distribution']} {p['version']}: {p['error']}")
    if blocked:
        print("blocked by ANYXP_PLUGINS / ANYXP_DISABLED_PLUGINS (not imported):")
        print("  " + ", ".join(p["name"] for p in blocked))


def _info(name: str) -> dict[str, Any]:
    from anyxp.capabilities import CAPABILITIES

    reg = get_registry()
    spec = reg.backend_spec(name)
    row = next(r for r in plugin_table(reg)["backends"] if r["name"] == spec.name)
    row["aliases"] = list(spec.aliases)
    row["array_types"] = list(spec.array_types)
    row["install"] = spec.install
    row["expected_failures"] = dict(spec.expected_failures)
    row["missing_capabilities"] = sorted(set(CAPABILITIES) - spec.capabilities)
    if row["available"]:
        import anyxp

        be = anyxp.backend(spec.name)
        row["device"] = str(be.device)
        row["float_dtype"] = str(be.float_dtype)
        row["namespace"] = be.xp.__name__
    return row


def _check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from anyxp.check import check_backend, matrix_markdown, run_check_all

    if args.all:
        names = [
            name
            for name, provided in sorted(get_registry().backends.items())
            if provided[0].spec.unavailable_reason() is None
        ]
        results = run_check_all(names, profile=args.hypothesis_profile)
        table = matrix_markdown(results)
        if args.report:
            folder = Path(args.report)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "matrix.json").write_text(json.dumps(results, indent=2))
            (folder / "matrix.md").write_text(table + "\n")
        print(json.dumps(results, indent=2) if args.json else table)
        return 0 if all(r.get("ok") for r in results.values()) else 1
    if not args.name:
        print("anyxp: error: check needs a backend name, or --all", file=sys.stderr)
        return 2
    report = check_backend(
        args.name, comm=args.comm, profile=args.hypothesis_profile, max_examples=args.max_examples
    )
    if args.report:
        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(report.to_json())
        (folder / "report.md").write_text("```\n" + report.to_text() + "\n```\n")
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``anyxp`` command line."""
    parser = argparse.ArgumentParser(prog="anyxp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every plugin, backend and comm, and their state")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_info = sub.add_parser("info", help="one backend in detail")
    p_info.add_argument("name")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_check = sub.add_parser(
        "check", help="run the conformance suite on a plugin and report per capability"
    )
    p_check.add_argument("name", nargs="?", help="the backend to check")
    p_check.add_argument("--all", action="store_true", help="check every available backend")
    p_check.add_argument("--json", action="store_true", help="print JSON")
    p_check.add_argument("--report", metavar="DIR", help="write report.json and report.md here")
    p_check.add_argument("--comm", help="check with this comm (e.g. under mpiexec)")
    p_check.add_argument(
        "--hypothesis-profile", default="anyxp-ci", help="anyxp-ci (default) or anyxp-thorough"
    )
    p_check.add_argument("--max-examples", type=int, help="hypothesis examples per property test")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "list":
            table = plugin_table(get_registry())
            if args.json:
                print(json.dumps(table, indent=2))
            else:
                _print_list(table)
        elif args.command == "info":
            info = _info(args.name)
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                for key, value in info.items():
                    print(f"{key:>22}: {value}")
    except AnyxpError as exc:
        print(f"anyxp: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
