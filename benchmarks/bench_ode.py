"""Non-stiff ODE solves, side by side with the anchors, reported as ratios.

- numpy backend: anyxp tsit5 vs scipy ``solve_ivp`` RK45, anyxp dop853 vs scipy DOP853
- jax backend (anyxp tsit5, jit, warm) vs diffrax Tsit5 (jit, warm)
- torch backend (anyxp tsit5, eager and with ``compile=True``, warm) vs torchdiffeq dopri5;
  the compiled rows' first solve (compilation included) is listed after the table

Each pairing solves the same problem with the same rtol/atol, and the error of each is
measured at the final time against scipy DOP853 at rtol = atol = 1e-13. Times are the best
of ``--repeat`` runs. Ratio = anyxp time / anchor time (< 1: anyxp faster).

tsit5 and RK45 are different methods (tsit5 is several times more accurate at the same
tolerance), so the same rtol is not the same work: a second table compares them at equal
error, scipy RK45's time log-log interpolated at anyxp's error on a sweep of RK45 over
rtol 1e-2..1e-12. dop853 and DOP853 take identical steps: the first table is already at
equal error.

Run:  python benchmarks/bench_ode.py [--out benchmarks/results/ode_nonstiff.md] [--plot docs/_static/work_precision.png]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("JAX_ENABLE_X64", "1")

from _common import at_error, best, work_precision_plot

import anyxp
from anyxp.ode import solve
from anyxp.ode.problems import PROBLEMS

TOLERANCES = (1e-3, 1e-6, 1e-8, 1e-10)
#: scipy RK45's sweep for the equal-error table: it must bracket anyxp tsit5's errors.
SWEEP = tuple(10.0**-k for k in range(2, 13))
NAMES = ("lorenz", "lotka_volterra", "pleiades")


def reference(name: str) -> np.ndarray:
    from scipy.integrate import solve_ivp

    p = PROBLEMS[name]
    sol = solve_ivp(p.f, p.t_span, np.array(p.y0), method="DOP853", rtol=1e-13, atol=1e-13)
    return sol.y[:, -1]


def err(y: Any, ref: np.ndarray) -> float:
    return float(
        np.max(np.abs(np.asarray(y, dtype=np.float64) - ref)) / max(1.0, np.max(np.abs(ref)))
    )


def numpy_vs_scipy(name: str, rtol: float, repeat: int, ref: np.ndarray) -> list[dict[str, Any]]:
    from scipy.integrate import solve_ivp

    p = PROBLEMS[name]
    y0 = np.array(p.y0)
    atol = rtol * 1e-3
    rows = []
    for method in ("tsit5", "dop853"):
        t_ours, sol = best(
            lambda m=method: solve(p.f, p.t_span, y0, method=m, rtol=rtol, atol=atol), repeat
        )
        rows.append(
            {
                "impl": f"anyxp numpy {method}",
                "time": t_ours,
                "err": err(sol.y[-1], ref),
                "nfev": sol.stats["nfev"],
            }
        )
    for method in ("RK45", "DOP853"):
        t_sp, s = best(
            lambda m=method: solve_ivp(p.f, p.t_span, y0, method=m, rtol=rtol, atol=atol), repeat
        )
        rows.append(
            {"impl": f"scipy {method}", "time": t_sp, "err": err(s.y[:, -1], ref), "nfev": s.nfev}
        )
    return rows


def jax_vs_diffrax(name: str, rtol: float, repeat: int, ref: np.ndarray) -> list[dict[str, Any]]:
    import diffrax
    import jax

    p = PROBLEMS[name]
    atol = rtol * 1e-3
    be = anyxp.backend("jax", dtype="float64")
    y0 = be.asarray(p.y0)
    t_eval = np.array(p.t_span)
    ours = jax.jit(lambda y: solve(p.f, p.t_span, y, rtol=rtol, atol=atol, t_eval=t_eval).y[-1])
    jax.block_until_ready(ours(y0))
    t_ours, y = best(lambda: jax.block_until_ready(ours(y0)), repeat)
    term = diffrax.ODETerm(lambda t, y, args: p.f(t, y))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    @jax.jit
    def theirs(y):
        s = diffrax.diffeqsolve(
            term,
            diffrax.Tsit5(),
            p.t_span[0],
            p.t_span[1],
            None,
            y,
            stepsize_controller=controller,
            max_steps=100_000,
        )
        return s.ys[-1], s.stats["num_steps"]

    jax.block_until_ready(theirs(y0))
    t_theirs, (yd, _) = best(lambda: jax.block_until_ready(theirs(y0)), repeat)
    return [
        {"impl": "anyxp jax tsit5 (jit)", "time": t_ours, "err": err(y, ref), "nfev": None},
        {"impl": "diffrax Tsit5 (jit)", "time": t_theirs, "err": err(yd, ref), "nfev": None},
    ]


def torch_vs_torchdiffeq(
    name: str, rtol: float, repeat: int, ref: np.ndarray
) -> list[dict[str, Any]]:
    import torch
    import torchdiffeq

    p = PROBLEMS[name]
    atol = rtol * 1e-3
    be = anyxp.backend("torch", dtype="float64")
    y0 = be.asarray(p.y0)
    t_ours, sol = best(lambda: solve(p.f, p.t_span, y0, rtol=rtol, atol=atol), repeat)
    start = time.perf_counter()
    solve(p.f, p.t_span, y0, rtol=rtol, atol=atol, compile=True)
    first = time.perf_counter() - start
    t_fused, fused = best(
        lambda: solve(p.f, p.t_span, y0, rtol=rtol, atol=atol, compile=True), repeat
    )
    ts = torch.tensor(p.t_span, dtype=torch.float64)
    t_theirs, yt = best(
        lambda: torchdiffeq.odeint(p.f, y0, ts, rtol=rtol, atol=atol, method="dopri5"), repeat
    )
    return [
        {
            "impl": "anyxp torch tsit5",
            "time": t_ours,
            "err": err(be.to_numpy(sol.y[-1]), ref),
            "nfev": sol.stats["nfev"],
        },
        {
            "impl": "anyxp torch tsit5 (compile)",
            "time": t_fused,
            "err": err(be.to_numpy(fused.y[-1]), ref),
            "nfev": fused.stats["nfev"],
            "first": first,
        },
        {
            "impl": "torchdiffeq dopri5",
            "time": t_theirs,
            "err": err(yt[-1].numpy(), ref),
            "nfev": None,
        },
    ]


def rk45_sweep(name: str, repeat: int, ref: np.ndarray) -> list[dict[str, Any]]:
    """scipy RK45's time and error at every rtol of :data:`SWEEP` (atol = rtol·1e-3)."""
    from scipy.integrate import solve_ivp

    p = PROBLEMS[name]
    y0 = np.array(p.y0)
    rows = []
    for rtol in SWEEP:
        t, s = best(
            lambda r=rtol: solve_ivp(p.f, p.t_span, y0, method="RK45", rtol=r, atol=r * 1e-3),
            repeat,
        )
        rows.append({"rtol": rtol, "time": t, "err": err(s.y[:, -1], ref)})
    return rows


def equal_error_table(ours: dict[str, list[dict[str, Any]]], sweeps: dict[str, Any]) -> list[str]:
    """anyxp numpy tsit5 against scipy RK45 at anyxp's error."""
    lines = [
        "",
        "## numpy tsit5 vs scipy RK45 at equal error",
        "",
        "scipy RK45's time at anyxp tsit5's error, log-log interpolated on RK45's sweep over "
        "rtol 1e-2..1e-12 (same run). Ratio = anyxp time / RK45 time at that error "
        "(< 1: anyxp faster); '-': anyxp's error lies outside the sweep.",
        "",
        "| problem | anyxp rtol | anyxp error | anyxp time | RK45 time at that error | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in ours.items():
        for r in rows:
            theirs = at_error(sweeps[name], r["err"], "time")
            ratio = "-" if theirs is None else f"{r['time'] / theirs:.2f}"
            anchor = "-" if theirs is None else f"{theirs * 1e3:.2f} ms"
            lines.append(
                f"| {name} | {r['rtol']:g} | {r['err']:.1e} | {r['time'] * 1e3:.2f} ms | "
                f"{anchor} | {ratio} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--problems", nargs="*", default=list(NAMES))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    lines = [
        "# Non-stiff ODE benchmarks",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}. "
        "Produced by `python benchmarks/bench_ode.py`. atol = rtol·1e-3; error = max abs error "
        "at the final time (relative to max(1, |y|)) against scipy DOP853 at 1e-13. "
        "Ratio = anyxp time / anchor time.",
        "",
        "| problem | rtol | pairing | anyxp time | anchor time | ratio | anyxp error | anchor error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, list[tuple[float, float]]] = {}
    firsts = [
        "",
        "torch `compile=True`: the first solve of each row (compilation included) and the warm one",
        "",
        "| problem | rtol | first solve | warm solve |",
        "|---|---|---|---|",
    ]
    tsit5_rows: dict[str, list[dict[str, Any]]] = {}
    sweeps: dict[str, list[dict[str, Any]]] = {}
    for name in args.problems:
        ref = reference(name)
        sweeps[name] = rk45_sweep(name, args.repeat, ref)
        for rtol in TOLERANCES:
            rows = numpy_vs_scipy(name, rtol, args.repeat, ref)
            tsit5 = next(r for r in rows if r["impl"] == "anyxp numpy tsit5")
            tsit5_rows.setdefault(name, []).append({"rtol": rtol, **tsit5})
            rows += jax_vs_diffrax(name, rtol, args.repeat, ref)
            rows += torch_vs_torchdiffeq(name, rtol, args.repeat, ref)
            by_impl = {r["impl"]: r for r in rows}
            for r in rows:
                curves.setdefault(f"{name}: {r['impl']}", []).append((r["err"], r["time"]))
            pairings = [
                ("numpy vs scipy RK45", "anyxp numpy tsit5", "scipy RK45"),
                ("numpy dop853 vs scipy DOP853", "anyxp numpy dop853", "scipy DOP853"),
                ("jax vs diffrax", "anyxp jax tsit5 (jit)", "diffrax Tsit5 (jit)"),
                ("torch vs torchdiffeq", "anyxp torch tsit5", "torchdiffeq dopri5"),
                (
                    "torch compile=True vs torchdiffeq",
                    "anyxp torch tsit5 (compile)",
                    "torchdiffeq dopri5",
                ),
            ]
            r = by_impl["anyxp torch tsit5 (compile)"]
            firsts.append(f"| {name} | {rtol:g} | {r['first']:.2f} s | {r['time'] * 1e3:.2f} ms |")
            for label, ours_impl, anchor in pairings:
                ours, theirs = by_impl[ours_impl], by_impl[anchor]
                lines.append(
                    f"| {name} | {rtol:g} | {label} | {ours['time'] * 1e3:.2f} ms | "
                    f"{theirs['time'] * 1e3:.2f} ms | {ours['time'] / theirs['time']:.2f} | "
                    f"{ours['err']:.1e} | {theirs['err']:.1e} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines + firsts + equal_error_table(tsit5_rows, sweeps)) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.plot:
        panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for key, pts in curves.items():
            problem, label = key.split(": ", 1)
            panels.setdefault(problem, {})[label] = pts
        work_precision_plot(args.plot, panels, "error at final time")


if __name__ == "__main__":
    main()
