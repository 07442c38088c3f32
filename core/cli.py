"""The ``anyxp`` command: list plugins, describe one backend."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import warnings
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
        names = get_registry().available_backends()
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


def _problem_names() -> list[str]:
    from anyxp.ode.problems import PROBLEMS

    return sorted(PROBLEMS)


def _methods() -> tuple[str, ...]:
    from anyxp.ode import METHODS

    return METHODS


def _run_problem(name: str, backend: str | None, **options: Any) -> tuple[Any, Any, float]:
    import time

    import anyxp
    from anyxp.ode import solve
    from anyxp.ode.problems import PROBLEMS
    from anyxp.ode.tableaux import STIFF_TABLEAUX as STIFF_METHODS

    if name not in PROBLEMS:
        raise anyxp.BackendNotFoundError(name, PROBLEMS, kind="problem")
    problem = PROBLEMS[name]
    dtype = options.pop("dtype", "float64")
    with warnings.catch_warnings():
        # The command asks for float64 on purpose; JAX's x64 notice adds nothing here.
        warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")
        be = anyxp.backend(backend, dtype=dtype)
    y0 = be.asarray(problem.y0)
    t_eval = options.pop("t_eval", None)
    options["method"] = options.get("method") or problem.method
    if problem.atol is not None:  # components far below 1: the problem's own scale
        options["atol"] = min(options.get("atol", 1e-10), problem.atol)
    if options["method"] in STIFF_METHODS and problem.jac is not None:
        options["jac"] = problem.jac
    start = time.perf_counter()
    sol = solve(problem.f, problem.t_span, y0, t_eval=t_eval, backend=be, **options)
    final = be.to_numpy(sol.y[-1, ...])
    return sol, final, time.perf_counter() - start


def _solve(args: argparse.Namespace) -> int:
    from anyxp.ode.problems import PROBLEMS

    sol, final, seconds = _run_problem(
        args.problem,
        args.backend,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        dtype=args.dtype,
        progress=args.progress,
    )
    stats = {k: int(v) for k, v in sol.stats.items()}
    result = {
        "problem": args.problem,
        "backend": sol.backend.name,
        "device": str(sol.backend.device),
        "method": sol.method,
        "t_span": list(PROBLEMS[args.problem].t_span),
        "y_final": [float(v) for v in final.reshape(-1)],
        "status": int(sol.status),
        "message": sol.message,
        "stats": stats,
        "seconds": seconds,
    }
    known = PROBLEMS[args.problem].final
    if known is not None:
        result["relative_error_vs_reference"] = float(
            max(abs(a - b) / abs(b) for a, b in zip(result["y_final"], known, strict=True) if b)
        )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.problem} on {result['backend']} ({result['device']}), {sol.method}, "
            f"rtol={args.rtol:g} atol={args.atol:g}"
        )
        print(
            f"  y({result['t_span'][1]:g}) = [{', '.join(f'{v:.10g}' for v in result['y_final'])}]"
        )
        if "relative_error_vs_reference" in result:
            print(
                "  max |y - reference| / |reference| = "
                f"{result['relative_error_vs_reference']:.3g} (the published reference)"
            )
        print(f"  {sol.message} (status {result['status']})")
        print("  " + ", ".join(f"{k} {v}" for k, v in stats.items()))
        print(f"  {seconds * 1e3:.1f} ms")
    return 0 if result["status"] == 0 else 1


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from anyxp.ode.problems import PROBLEMS
    from anyxp.selection import backend

    available = get_registry().available_backends()
    names = sorted(available, key=lambda n: (n != "numpy", n))  # numpy first: the reference
    problem = PROBLEMS[args.problem]
    t_eval = np.linspace(problem.t_span[0], problem.t_span[1], 5)
    print(
        f"{args.problem} on every available backend ({problem.method}, rtol={args.rtol:g}, "
        f"atol={args.atol:g})"
    )
    print(f"{'backend':<18}{'status':<8}{'steps':>7}{'seconds':>10}  max |y - y_numpy| at 5 times")
    reference: Any = None
    worst = 0.0
    for name in names:
        if backend(name).materialize_fn is not None:
            print(
                f"{name:<18}skipped: lazy arrays build a task graph per step (about 1 ms per "
                "array operation), far too slow for one small trajectory"
            )
            continue
        try:
            sol, _, seconds = _run_problem(
                args.problem, name, rtol=args.rtol, atol=args.atol, t_eval=t_eval
            )
        except Exception as exc:  # noqa: BLE001 - a third-party backend may fail in any way
            print(f"{name:<18}failed: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        ys = sol.backend.to_numpy(sol.y).astype(np.float64)
        reference = ys if reference is None else reference
        diff = float(np.max(np.abs(ys - reference)))
        worst = max(worst, diff)
        steps = int(sol.stats["accepted"])
        print(f"{name:<18}{int(sol.status):<8}{steps:>7}{seconds:>10.3f}  {diff:.2e}")
    scale = 1.0 if reference is None else max(1.0, float(np.max(np.abs(reference))))
    return 0 if worst < 1e-6 * scale else 1


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
    p_solve = sub.add_parser("solve", help="solve a reference ODE problem on one backend")
    p_solve.add_argument("problem", help="one of: " + ", ".join(_problem_names()))
    p_solve.add_argument("--backend", default=None, help="default: numpy (or ANYXP_BACKEND)")
    p_solve.add_argument(
        "--method",
        default=None,
        help="one of: " + ", ".join(_methods()) + " (default: rodas5p for stiff problems, "
        "else tsit5)",
    )
    p_solve.add_argument("--rtol", type=float, default=1e-8)
    p_solve.add_argument("--atol", type=float, default=1e-10)
    p_solve.add_argument("--dtype", default="float64")
    p_solve.add_argument("--progress", action="store_true", help="show a progress bar")
    p_solve.add_argument("--json", action="store_true", help="print JSON")
    p_demo = sub.add_parser("demo", help="solve one problem on every available backend")
    p_demo.add_argument("problem", nargs="?", default="lorenz")
    p_demo.add_argument("--rtol", type=float, default=1e-8)
    p_demo.add_argument("--atol", type=float, default=1e-10)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return _check(args)
        if args.command == "solve":
            return _solve(args)
        if args.command == "demo":
            return _demo(args)
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
