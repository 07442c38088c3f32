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
            print(f"  {'':<18}from {row['distribution']} {row['version']}{lib and ' (library' + lib + ')'}")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``anyxp`` command line."""
    parser = argparse.ArgumentParser(prog="anyxp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every plugin, backend and comm, and their state")
    p_list.add_argument("--json", action="store_true", help="print JSON")
    p_info = sub.add_parser("info", help="one backend in detail")
    p_info.add_argument("name")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
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
