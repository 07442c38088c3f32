"""The ``anyxp`` command: list and check plugins, solve reference ODE problems.

A mistake in what the user typed ends with one line, ``anyxp: error: ...``, naming the
cause and the next step, and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib.metadata
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from anyxp.errors import AnyxpError
from anyxp.registry import Registry, get_registry

__all__ = ["ATOL", "RTOL", "main", "plugin_table"]

#: The tolerances of ``anyxp solve`` and ``anyxp demo``: tighter than ``anyxp.ode.solve``'s
#: (1e-6, 1e-9) on purpose. Their problems come with published reference solutions and the
#: command prints the error against them: at 1e-6, Arenstorf's orbit ends 2e-3 and Pleiades
#: 3e-4 off their references; at these, 8e-6 and 1e-6. See docs/ode.md, "Tolerances".
RTOL, ATOL = 1e-8, 1e-10


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
    conflicts = reg.conflicts

    def rows(table: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        out = []
        in_use = reg.owners(kind)
        for name, provided in sorted(table.items()):
            for p in provided:
                mine = [c.message() for c in conflicts if any(x is p for x in c.claimants)]
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
                    "builtin": p.plugin.builtin,
                    # False: a built-in keeps this name, or another plugin shares it.
                    "in_use": any(x is p for x in in_use),
                }
                if mine:
                    row["conflict"] = " ".join(mine)
                out.append(row)
        return out

    return {
        "backends": rows(reg.backends, "backend"),
        "comms": rows(reg.comms, "comm"),
        "conflicts": [
            {
                "kind": c.kind,
                "name": c.name,
                "claimed_by": [p.plugin.distribution for p in c.claimants],
                "owner": c.owner.plugin.distribution if c.owner is not None else None,
                "message": c.message(),
            }
            for c in conflicts
        ],
        "plugins": [
            {
                "name": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "module": p.module,
                "builtin": p.builtin,
                "blocked": p.blocked,
                "blocked_by": list(p.blocked_by),
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
            if not row["in_use"]:
                state = "not used (see conflicts below)"
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
        print("blocked (not imported):")
        for p in blocked:
            print(f"  {p['name']} from {p['distribution']}: by {' and '.join(p['blocked_by'])}")
    if table["conflicts"]:
        print("conflicts:")
        for c in table["conflicts"]:
            print(f"  {c['message']}")


def _info(name: str) -> dict[str, Any]:
    from anyxp.capabilities import CAPABILITIES

    reg = get_registry()
    spec = reg.backend_spec(name)
    rows = plugin_table(reg)["backends"]
    row = next(r for r in rows if r["name"] == spec.name and r.get("in_use", True))
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
    ranks = _check_ranks(args)
    if ranks > 1:
        return _check_at_ranks(args, ranks)
    report = check_backend(
        args.name, comm=args.comm, profile=args.hypothesis_profile, max_examples=args.max_examples
    )
    if args.rank_reports:  # one rank of a job that `anyxp check --ranks N` launched
        import anyxp

        rank = anyxp.backend(args.name, comm=args.comm).comm.rank
        Path(args.rank_reports, f"rank{rank}.json").write_text(report.to_json())
        return 0 if report.ok else 1
    if args.report:
        folder = Path(args.report)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(report.to_json())
        (folder / "report.md").write_text("```\n" + report.to_text() + "\n```\n")
    print(report.to_json() if args.json else report.to_text())
    return 0 if report.ok else 1


def _check_ranks(args: argparse.Namespace) -> int:
    """How many ranks ``anyxp check`` runs: ``--ranks``, else 2 for a comm with a launcher
    when this process was not itself launched as one rank of many, else 1."""
    from anyxp.check import launched

    if args.ranks is not None:
        if args.ranks < 1:
            raise ValueError(f"--ranks must be at least 1, got {args.ranks}")
        if args.ranks > 1 and not args.comm:
            raise ValueError("--ranks needs --comm: the comm that carries the collectives")
        return int(args.ranks)
    if not args.comm or launched():
        return 1
    return 2 if get_registry().comm_spec(args.comm).launcher else 1


def _check_at_ranks(args: argparse.Namespace, ranks: int) -> int:
    """Launch the check at ``ranks`` processes; print rank 0's report and every failing one's."""
    from anyxp.check import check_at_ranks

    reports = check_at_ranks(
        args.name, args.comm, ranks, profile=args.hypothesis_profile,
        max_examples=args.max_examples,
    )  # fmt: skip
    if args.json:
        print(json.dumps([json.loads(r.to_json()) for r in reports], indent=2))
    else:
        words = get_registry().comm_spec(args.comm).launcher
        launcher = " ".join(w.format(n=ranks, python="python") for w in words)
        print(f"{ranks} ranks, launched with {launcher}: rank 0's report")
        print(reports[0].to_text())
        for rank, report in enumerate(reports[1:], start=1):
            print(f"\nrank {rank}: " + (report.summary() if report.ok else report.to_text()))
    return 0 if all(r.ok for r in reports) else 1


def _problem_names() -> list[str]:
    from anyxp.ode.problems import PROBLEMS

    return sorted(PROBLEMS)


def _methods() -> tuple[str, ...]:
    from anyxp.ode import METHODS

    return tuple(METHODS)


def _unknown(kind: str, name: str, known: Sequence[str], choose: str) -> ValueError:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}.{hint} {choose}: {', '.join(known)}")


def _problem(name: str) -> Any:
    """The reference problem called ``name``; a ``ValueError`` naming the known ones."""
    from anyxp.ode.problems import PROBLEMS

    if name not in PROBLEMS:
        raise _unknown("problem", name, _problem_names(), "Choose one of")
    return PROBLEMS[name]


def _check_method(method: str | None, dt: float | None) -> None:
    """Refuse an unknown method, or a fixed-step one without ``--dt``, in the CLI's terms."""
    if method is None:
        return
    if method not in _methods():
        raise _unknown("method", method, _methods(), "--method takes one of")
    from anyxp.ode.tableaux import TABLEAUX

    if dt is None and method in TABLEAUX and TABLEAUX[method].error_order is None:
        adaptive = [m for m, tab in TABLEAUX.items() if tab.error_order is not None]
        raise ValueError(
            f"method {method!r} takes a fixed step: pass --dt, e.g. --dt 1e-3, or choose an "
            f"adaptive method ({', '.join(adaptive)})"
        )


_STATS_ORDER = {
    k: i for i, k in enumerate(("nfev", "njev", "nlu", "steps", "accepted", "rejected"))
}


@dataclasses.dataclass(frozen=True)
class _Run:
    """One problem solved by the command: the solution and how long it took."""

    sol: Any
    final: Any  # the numpy state at t_span[1]
    t_span: tuple[float, float]
    atol: float  # the one used: the problem's own scale may lower the one asked for
    seconds: float  # the first run: tracing and compilation included where the backend compiles
    seconds_warm: float | None  # a second run of the compiled solve; None on eager backends


def _timed(run: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any, float]:
    start = time.perf_counter()
    out, final = run()  # `final` is on the host: the work is done, also on async devices
    return out, final, time.perf_counter() - start


def _run_problem(
    name: str,
    backend: str | None,
    *,
    method: str | None = None,
    rtol: float = RTOL,
    atol: float = ATOL,
    dtype: str = "float64",
    dt: float | None = None,
    t_end: float | None = None,
    t_eval: Any = None,
    progress: bool = False,
) -> _Run:
    import anyxp
    from anyxp.ode import Solution, solve
    from anyxp.ode.tableaux import STIFF_TABLEAUX

    problem = _problem(name)
    _check_method(method, dt)
    with warnings.catch_warnings():
        # The command asks for float64 on purpose; JAX's x64 notice adds nothing here.
        warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")
        be = anyxp.backend(backend, dtype=dtype)
    t_span = (problem.t_span[0], problem.t_span[1] if t_end is None else t_end)
    options: dict[str, Any] = {"method": method or problem.method, "rtol": rtol, "atol": atol}
    if problem.atol is not None:  # components far below 1: the problem's own scale
        options["atol"] = min(atol, problem.atol)
    if options["method"] in STIFF_TABLEAUX and problem.jac is not None:
        options["jac"] = problem.jac
    if dt is not None:
        options["dt"] = dt
    if t_eval is not None:
        options["t_eval"] = t_eval
    y0 = be.asarray(problem.y0)

    def run(y0: Any, **extra: Any) -> Any:
        return solve(problem.f, t_span, y0, backend=be, **options, **extra)

    if "control_flow.compiled" not in be.capabilities:

        def eager() -> tuple[Any, Any]:
            sol = run(y0, progress=progress)
            return sol, be.to_numpy(sol.y[-1, ...])

        sol, final, seconds = _timed(eager)
        return _Run(sol, final, t_span, options["atol"], seconds, None)

    # A compiling backend: the first call traces and compiles the whole solve, the second
    # runs the compiled program. Both times are reported, apart.
    def fields(y0: Any) -> tuple[Any, ...]:
        sol = run(y0)
        return sol.t, sol.y, sol.status, sol.stats

    compiled = be.jit(fields)

    def once() -> tuple[Any, Any]:
        out = compiled(y0)
        return out, be.to_numpy(out[1][-1, ...])

    _, _, seconds = _timed(once)
    (t, y, status, stats), final, warm = _timed(once)
    from anyxp.ode._explicit import MESSAGES

    message = MESSAGES.get(int(status), "see status")
    # jit returns dicts with sorted keys; show them in the eager solver's order.
    stats = dict(sorted(stats.items(), key=lambda kv: _STATS_ORDER.get(kv[0], len(_STATS_ORDER))))
    sol = Solution(t, y, int(status), message, stats, options["method"], be)
    return _Run(sol, final, t_span, options["atol"], seconds, warm)


#: The problem whose state is split across the ranks of ``--comm`` (row blocks of a grid).
SPLIT = "gray-scott"


def _solve_split(args: argparse.Namespace) -> int:
    """``anyxp solve gray-scott [--comm mpi] [--grid N]``: one PDE, each rank a row block."""
    import anyxp
    from anyxp.ode import solve
    from anyxp.ode.problems import gray_scott

    _check_method(args.method, args.dt)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")
        be = anyxp.backend(args.backend, dtype=args.dtype, comm=args.comm)
    grid = 128 if args.grid is None else args.grid
    if grid < 4:
        raise ValueError(f"--grid must be at least 4, got {grid}")
    p = gray_scott(grid, backend=be, t_end=200.0 if args.t_end is None else args.t_end)
    comm, xp = be.comm, be.xp
    options: dict[str, Any] = {"method": args.method or "tsit5", "rtol": args.rtol}
    options["atol"] = args.atol
    if args.dt is not None:
        options["dt"] = args.dt
    comm.barrier()
    start = time.perf_counter()
    sol = solve(
        p.f, p.t_span, p.y0, comm=comm, progress=args.progress and comm.rank == 0, **options
    )
    seconds = time.perf_counter() - start
    # Whole-grid summaries, from every rank's block.
    u, v = (xp.reshape(sol.y[-1], (2, -1))[i, ...] for i in range(2))
    sums = comm.allreduce(xp.stack([xp.sum(u), xp.sum(v)]))
    cells = grid * grid
    result = {
        "problem": SPLIT,
        "backend": be.name,
        "comm": comm.name,
        "ranks": comm.size,
        "grid": [grid, grid],
        "states": 2 * cells,
        "method": sol.method,
        "t_span": list(p.t_span),
        "status": int(sol.status),
        "message": sol.message,
        "stats": {k: int(v) for k, v in sol.stats.items()},
        "mean_u": float(sums[0]) / cells,
        "mean_v": float(sums[1]) / cells,
        "seconds": seconds,
    }
    if comm.rank == 0:
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(
                f"{SPLIT}: {grid} x {grid} grid ({2 * cells} states) on {be.name}, {comm.size} "
                f"rank(s) of the {comm.name} comm, {sol.method}, rtol={args.rtol:g} "
                f"atol={args.atol:g}"
            )
            print(
                f"t = {p.t_span[1]:g}: mean u {result['mean_u']:.6f}, mean v {result['mean_v']:.6f}"
            )
            stats = ", ".join(f"{k}={v}" for k, v in result["stats"].items())
            print(f"{sol.message} ({stats}); {seconds:.2f} s")
    return 0 if result["status"] == 0 else 1


def _solve(args: argparse.Namespace) -> int:
    if args.problem == SPLIT:
        return _solve_split(args)
    if args.comm is not None or args.grid is not None:
        raise ValueError(
            f"--comm and --grid apply to 'anyxp solve {SPLIT}', whose state is split across "
            f"ranks; {args.problem!r} is solved on one process"
        )
    run = _run_problem(
        args.problem,
        args.backend,
        method=args.method,
        rtol=args.rtol,
        atol=args.atol,
        dtype=args.dtype,
        dt=args.dt,
        t_end=args.t_end,
        progress=args.progress,
    )
    sol, problem = run.sol, _problem(args.problem)
    stats = {k: int(v) for k, v in sol.stats.items()}
    result = {
        "problem": args.problem,
        "backend": sol.backend.name,
        "device": str(sol.backend.device),
        "method": sol.method,
        "rtol": args.rtol,
        "atol": run.atol,
        "dt": args.dt,
        "t_span": list(run.t_span),
        "y_final": [float(v) for v in run.final.reshape(-1)],
        "status": int(sol.status),
        "message": sol.message,
        "stats": stats,
        "compiled": run.seconds_warm is not None,
        "seconds": run.seconds,
        "seconds_warm": run.seconds_warm,
    }
    if problem.final is not None and run.t_span == problem.t_span:
        result["relative_error_vs_reference"] = float(
            max(
                abs(a - b) / abs(b)
                for a, b in zip(result["y_final"], problem.final, strict=True)
                if b
            )
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0 if result["status"] == 0 else 1
    step = (
        f"dt={args.dt:g}" if args.dt is not None else f"rtol={args.rtol:g} atol={result['atol']:g}"
    )
    print(f"{args.problem} on {result['backend']} ({result['device']}), {sol.method}, {step}")
    print(f"  y({run.t_span[1]:g}) = [{', '.join(f'{v:.10g}' for v in result['y_final'])}]")
    if "relative_error_vs_reference" in result:
        print(
            "  max |y - reference| / |reference| = "
            f"{result['relative_error_vs_reference']:.3g} (the published reference)"
        )
    print(f"  {sol.message} (status {result['status']})")
    print("  " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    if run.seconds_warm is None:
        print(f"  {run.seconds * 1e3:.1f} ms")
    else:
        print(
            f"  {run.seconds * 1e3:.1f} ms first run, compilation included; "
            f"{run.seconds_warm * 1e3:.1f} ms warm (the compiled solve run again)"
        )
    return 0 if result["status"] == 0 else 1


#: The demo that trains instead of solving: ``anyxp demo neural-ode``.
NEURAL_ODE = "neural-ode"
#: The options of ``anyxp demo neural-ode`` (``None`` where not given).
_NEURAL_ODE_OPTIONS = ("backend", "iterations", "seed", "sensitivity", "lr", "every", "plot")


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from anyxp.selection import backend

    if args.problem == NEURAL_ODE:
        return _demo_neural_ode(args)
    if args.problem not in _problem_names():
        raise _unknown("problem", args.problem, [*_problem_names(), NEURAL_ODE], "Choose one of")
    given = [f"--{o}" for o in _NEURAL_ODE_OPTIONS if getattr(args, o) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)} applies to 'anyxp demo {NEURAL_ODE}' only; 'anyxp demo "
            f"{args.problem}' solves the problem on every available backend"
        )
    problem = _problem(args.problem)
    available = get_registry().available_backends()
    names = sorted(available, key=lambda n: (n != "numpy", n))  # numpy first: the reference
    t_eval = np.linspace(problem.t_span[0], problem.t_span[1], 5)
    print(
        f"{args.problem} on every available backend ({problem.method}, rtol={args.rtol:g}, "
        f"atol={args.atol:g})"
    )
    print(
        f"{'backend':<18}{'status':<8}{'steps':>7}{'seconds':>10}{'warm':>10}"
        "  max |y - y_numpy| at 5 times"
    )
    reference: Any = None
    worst = 0.0
    compiled = False
    for name in names:
        if backend(name).materialize_fn is not None:
            print(
                f"{name:<18}skipped: lazy arrays build a task graph per step (about 1 ms per "
                "array operation), far too slow for one small trajectory"
            )
            continue
        try:
            run = _run_problem(args.problem, name, rtol=args.rtol, atol=args.atol, t_eval=t_eval)
        except Exception as exc:  # noqa: BLE001 - a third-party backend may fail in any way
            print(f"{name:<18}failed: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        sol = run.sol
        ys = sol.backend.to_numpy(sol.y).astype(np.float64)
        reference = ys if reference is None else reference
        diff = float(np.max(np.abs(ys - reference)))
        worst = max(worst, diff)
        steps = int(sol.stats["accepted"])
        warm = "-" if run.seconds_warm is None else f"{run.seconds_warm:.3f}"
        compiled |= run.seconds_warm is not None
        print(f"{name:<18}{int(sol.status):<8}{steps:>7}{run.seconds:>10.3f}{warm:>10}  {diff:.2e}")
    if compiled:
        print(
            "seconds: the first run, compilation included where the backend compiles; "
            "warm: the compiled solve run again"
        )
    scale = 1.0 if reference is None else max(1.0, float(np.max(np.abs(reference))))
    return 0 if worst < 1e-6 * scale else 1


def _neural_ode_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``anyxp demo neural-ode`` with their defaults, each checked."""
    from anyxp.ode._sensitivity import MODES

    iterations: int = 300 if args.iterations is None else args.iterations
    every: int = args.every if args.every is not None else max(1, iterations // 10)
    seed: int = 0 if args.seed is None else args.seed
    sensitivity: str = args.sensitivity or "checkpointed"
    lr: float = 1e-2 if args.lr is None else args.lr
    for flag, value in (("--iterations", iterations), ("--every", every)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed}")
    if not 0 < lr < float("inf"):
        raise ValueError(f"--lr must be a positive number, got {lr:g}")
    if sensitivity not in MODES:
        raise _unknown("sensitivity", sensitivity, MODES, "--sensitivity takes one of")
    if args.plot is not None:
        import importlib.util
        from pathlib import Path

        if importlib.util.find_spec("matplotlib") is None:
            raise ValueError(
                "--plot needs matplotlib, which is not installed: pip install matplotlib "
                "(or pip install 'anyxp[plot]')"
            )
        if not Path(args.plot).resolve().parent.is_dir():
            raise ValueError(f"--plot {args.plot}: its folder does not exist; create it first")
    return {
        "iterations": iterations,
        "every": every,
        "seed": seed,
        "sensitivity": sensitivity,
        "lr": lr,
    }


def _demo_neural_ode(args: argparse.Namespace) -> int:
    """Train the spiral neural ODE on one backend, printing the loss as it falls."""
    import numpy as np

    from anyxp.nn import spiral_data, train_spiral

    options = _neural_ode_options(args)
    iterations, every = options.pop("iterations"), options.pop("every")
    be = _neural_ode_backend(args.backend)
    compiled = "control_flow.compiled" in be.capabilities
    print(
        f"neural ODE y' = MLP(y^3) (2 -> 50 -> 2, tanh) fitted to the spiral y' = (y^3) A on "
        f"{be.name} ({be.device}), {be.float_dtype}; Adam lr={options['lr']:g}, 20 windows of "
        f"10 times, tsit5, sensitivity={options['sensitivity']}, seed {options['seed']}"
    )
    start = time.perf_counter()
    data = spiral_data(be)
    took = f"{time.perf_counter() - start:.2f} s" + (" (compilation included)" if compiled else "")
    print(f"data: {data.t.shape[0]} times in [0, {data.t[-1]:g}], solved in {took}")
    print(f"{'iteration':>10}{'loss':>12}{'ms/iteration':>15}   (loss: mean of the block)")
    block: list[float] = []
    clock = [time.perf_counter()]

    def report(i: int, loss: float) -> None:
        block.append(loss)
        if i % every == 0 or i == iterations:
            now = time.perf_counter()
            ms = (now - clock[0]) / len(block) * 1e3
            note = "   (compiling the step included)" if compiled and i == every else ""
            print(f"{i:>10}{np.mean(block):>12.5f}{ms:>15.2f}{note}")
            block.clear()
            clock[0] = now

    fit = train_spiral(be, iterations=iterations, data=data, callback=report, **options)
    tail = fit.losses[-min(every, iterations) :]
    print(f"final loss {float(np.mean(tail)):.5f} (mean of the last {tail.shape[0]} minibatches)")
    print(
        f"whole trajectory from y0, mean |y - data|: {fit.trajectory_loss(fit.initial_params):.4f}"
        f" untrained, {fit.trajectory_loss():.4f} trained"
    )
    first = "tracing and compiling the step included" if compiled else "warm-up included"
    if iterations > 1:
        print(
            f"time per iteration: {np.median(fit.seconds[1:]) * 1e3:.2f} ms (median of "
            f"iterations 2-{iterations}); the first took {fit.seconds[0]:.2f} s, {first}"
        )
    else:
        print(f"time: {fit.seconds[0]:.2f} s for the one iteration, {first}")
    if args.plot is not None:
        _plot_losses(args.plot, {be.name: fit.losses}, every)
        print(f"loss curve written to {args.plot}")
    return 0


def _neural_ode_backend(name: str | None) -> Any:
    """The backend ``anyxp demo neural-ode`` trains on: ``name``, else jax, else torch."""
    import anyxp
    from anyxp.registry import get_registry

    reg = get_registry()
    providers = reg.providers("ad.custom")
    if name is None:
        available = reg.available_backends()
        name = next((n for n in ("jax", "torch") if n in available), None)
        if name is None:
            raise ValueError(
                "anyxp demo neural-ode needs a backend with automatic differentiation and "
                "none is installed: pip install 'anyxp[jax]' or 'anyxp[torch]'"
            )
    be = anyxp.backend(name, dtype="float32")
    if "ad.custom" not in be.capabilities:
        raise ValueError(
            f"backend {be.name!r} cannot differentiate a solve (it does not support "
            f"'ad.custom'), which training needs: use "
            + " or ".join(f"--backend {p}" for p in sorted(providers))
        )
    return be


def _plot_losses(path: str, curves: dict[str, Any], every: int) -> None:
    """Write the loss curves ``{label: losses}`` to ``path``: each iteration faint, and the
    mean of every ``every`` iterations on top."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no window: works without a display
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    for label, losses in curves.items():
        losses = np.asarray(losses)
        steps = np.arange(1, losses.shape[0] + 1)
        (line,) = ax.plot(steps, losses, alpha=0.25, linewidth=0.8)
        k = min(every, losses.shape[0])
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, color=line.get_color(), label=f"{label} (mean of {k})")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("minibatch loss, mean |prediction - data|")
    ax.set_title("neural ODE on the spiral")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    from anyxp import __version__

    parser = argparse.ArgumentParser(prog="anyxp", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
    p_check.add_argument(
        "--comm",
        help="check with this comm: between processes it launches itself at 2 ranks with the "
        "comm's launcher (mpiexec, torchrun), unless already launched",
    )
    p_check.add_argument(
        "--ranks", type=int, help="how many processes to check the comm at (1: this one)"
    )
    p_check.add_argument("--rank-reports", metavar="DIR", help=argparse.SUPPRESS)
    p_check.add_argument(
        "--hypothesis-profile", default="anyxp-ci", help="anyxp-ci (default) or anyxp-thorough"
    )
    p_check.add_argument("--max-examples", type=int, help="hypothesis examples per property test")
    tolerances = (
        "(default %(default)g: tighter than anyxp.ode.solve's 1e-6 and 1e-9, to compare with "
        "the problems' published reference solutions)"
    )
    p_solve = sub.add_parser(
        "solve",
        help="solve a reference ODE problem on one backend",
        description="Solve a reference ODE problem on one backend and print its final state, "
        "its error against the published reference solution where there is one, the "
        "solver's statistics and the time (on a compiling backend, JAX: the first run with "
        "compilation, and a second, warm run).",
    )
    p_solve.add_argument(
        "problem", help="one of: " + ", ".join(_problem_names()) + f"; or {SPLIT} (a 2-D PDE)"
    )
    p_solve.add_argument(
        "--comm",
        help=f"{SPLIT} only: split the grid across the ranks of this comm, e.g. mpi under "
        f"mpiexec -n 4 anyxp solve {SPLIT} --comm mpi",
    )
    p_solve.add_argument("--grid", type=int, help=f"{SPLIT} only: grid side (default 128)")
    p_solve.add_argument("--backend", default=None, help="default: numpy (or ANYXP_BACKEND)")
    p_solve.add_argument(
        "--method",
        default=None,
        help="one of: " + ", ".join(_methods()) + " (default: rodas5p for stiff problems, "
        "else tsit5)",
    )
    p_solve.add_argument(
        "--rtol", type=float, default=RTOL, help="relative tolerance " + tolerances
    )
    p_solve.add_argument(
        "--atol", type=float, default=ATOL, help="absolute tolerance " + tolerances
    )
    p_solve.add_argument(
        "--dt", type=float, default=None, help="a fixed step (needed by rk4; fixes any method)"
    )
    p_solve.add_argument(
        "--t-end", type=float, default=None, help="end time (default: the problem's own)"
    )
    p_solve.add_argument("--dtype", default="float64", help="float64 (default) or float32")
    p_solve.add_argument(
        "--progress", action="store_true", help="show a progress bar (eager backends)"
    )
    p_solve.add_argument("--json", action="store_true", help="print JSON")
    p_demo = sub.add_parser(
        "demo",
        help="solve one problem on every available backend, or train a neural ODE",
        description="Solve a reference problem on every available backend and compare each "
        f"with numpy's answer; or, with '{NEURAL_ODE}', train a neural ODE on the spiral "
        "(torchdiffeq's ode_demo) on one backend, through the solve's derivatives.",
    )
    p_demo.add_argument(
        "problem",
        nargs="?",
        default="lorenz",
        help="one of: " + ", ".join(_problem_names()) + f" (default lorenz); or {NEURAL_ODE}",
    )
    p_demo.add_argument("--rtol", type=float, default=RTOL, help="relative tolerance " + tolerances)
    p_demo.add_argument("--atol", type=float, default=ATOL, help="absolute tolerance " + tolerances)
    node = p_demo.add_argument_group(f"{NEURAL_ODE} only")
    node.add_argument("--backend", help="jax or torch (default: jax if installed, else torch)")
    node.add_argument("--iterations", type=int, help="Adam steps (default 300)")
    node.add_argument("--seed", type=int, help="seeds the weights and the windows (default 0)")
    node.add_argument(
        "--sensitivity",
        help="how the solve is differentiated: checkpointed (default), direct, backsolve, "
        "interpolating or forward",
    )
    node.add_argument("--lr", type=float, help="Adam's learning rate (default 0.01)")
    node.add_argument("--every", type=int, help="print the loss every K iterations (default N/10)")
    node.add_argument("--plot", metavar="PNG", help="write the loss curve here (needs matplotlib)")
    return parser


def _run(args: argparse.Namespace) -> int:
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
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``anyxp`` command line."""
    args = _parser().parse_args(argv)  # a usage error exits 2 here, argparse's way
    try:
        code = _run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left (`anyxp list --json | head -1`). Send what is left to devnull so
        # that the flush at exit does not fail again, and end quietly (Python's advice in
        # the `signal` module's notes on SIGPIPE).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a file (captured by a caller)
            pass
        return 1
    except KeyboardInterrupt:
        return 130
    except (AnyxpError, ValueError, TypeError) as exc:
        # What the user typed, refused by the library with a message that names the fix.
        print(f"anyxp: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
