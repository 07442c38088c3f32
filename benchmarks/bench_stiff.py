"""Stiff ODE solves, side by side with the anchors, at equal error.

Problems from the Bari IVP test set, with its published reference solutions: ROBER
(t to 1e11), HIRES, Van der Pol with mu = 1000 (VDPOL, t to 2000) and OREGO.

- numpy backend: anyxp rodas5p and kvaerno5 (analytic Jacobian) vs scipy ``solve_ivp``
  Radau, BDF and LSODA (the same analytic Jacobian);
- jax backend: anyxp rodas5p and kvaerno5 (Jacobian by AD, jit, warm) vs diffrax
  Kvaerno5 (jit, warm).

Every solver runs a tolerance sweep with ``atol = rtol * SCALE[problem]``. Error: Bari's
mixed measure ``max_i |y_i - ref_i| / (SCALE + |ref_i|)`` at the final time. "At equal
error" compares an anyxp run with the anchor's work-precision curve, interpolated
(log-log) to anyxp's error; outside the anchor's range it says so. Times are the best of
``--repeat`` runs.

Run:  python benchmarks/bench_stiff.py [--out benchmarks/results/ode_stiff.md] [--plot docs/_static/work_precision_stiff.png]
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("JAX_ENABLE_X64", "1")

from _common import at_error, best, work_precision_plot

from anyxp.ode import solve
from anyxp.ode.problems import PROBLEMS

TOLERANCES = (1e-4, 1e-6, 1e-8, 1e-10)
SCALE = {"robertson": 1e-10, "hires": 1e-4, "van_der_pol_stiff": 1e-3, "oregonator": 1e-2}


def mixed_error(name: str, y: Any) -> float:
    ref = np.array(PROBLEMS[name].final)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    return float(np.max(np.abs(y - ref) / (SCALE[name] + np.abs(ref))))


def numpy_runs(name: str, rtol: float, repeat: int) -> list[dict[str, Any]]:
    from scipy.integrate import solve_ivp

    p = PROBLEMS[name]
    y0, atol = np.array(p.y0), rtol * SCALE[name]
    rows = []
    for method in ("rodas5p", "kvaerno5"):
        seconds, sol = best(
            lambda m=method: solve(p.f, p.t_span, y0, method=m, rtol=rtol, atol=atol, jac=p.jac),
            repeat,
        )
        rows.append(
            {
                "impl": f"anyxp numpy {method}",
                "time": seconds,
                "err": mixed_error(name, sol.y[-1]),
                "nfev": int(sol.stats["nfev"]),
                "ok": sol.success,
            }
        )
    for method in ("Radau", "BDF", "LSODA"):
        seconds, s = best(
            lambda m=method: solve_ivp(
                p.f, p.t_span, y0, method=m, rtol=rtol, atol=atol, jac=p.jac
            ),
            repeat,
        )
        rows.append(
            {
                "impl": f"scipy {method}",
                "time": seconds,
                "err": mixed_error(name, s.y[:, -1]),
                "nfev": int(s.nfev),
                "ok": bool(s.success),
            }
        )
    return rows


def jax_runs(name: str, rtol: float, repeat: int) -> list[dict[str, Any]]:
    import diffrax
    import jax
    import jax.numpy as jnp

    p = PROBLEMS[name]
    y0, atol = jnp.asarray(p.y0), rtol * SCALE[name]
    rows = []
    for method in ("rodas5p", "kvaerno5"):
        run = jax.jit(
            lambda y, m=method: (
                (s := solve(p.f, p.t_span, y, method=m, rtol=rtol, atol=atol, max_steps=10**6)).y[
                    -1
                ],
                s.stats["nfev"],
                s.status,
            )
        )
        jax.block_until_ready(run(y0))
        seconds, (y, nfev, status) = best(lambda r=run: jax.block_until_ready(r(y0)), repeat)
        rows.append(
            {
                "impl": f"anyxp jax {method}",
                "time": seconds,
                "err": mixed_error(name, y),
                "nfev": int(nfev),
                "ok": int(status) == 0,
            }
        )
    term = diffrax.ODETerm(lambda t, y, args: p.f(t, y))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)

    @jax.jit
    def dfx(y: Any) -> Any:
        sol = diffrax.diffeqsolve(
            term,
            diffrax.Kvaerno5(),
            p.t_span[0],
            p.t_span[1],
            None,
            y,
            stepsize_controller=controller,
            max_steps=10**6,
            throw=False,  # a failed run is reported as failed, not raised
        )
        return sol.ys[-1], sol.stats["num_steps"], sol.result == diffrax.RESULTS.successful

    jax.block_until_ready(dfx(y0))
    seconds, (y, _steps, ok) = best(lambda: jax.block_until_ready(dfx(y0)), repeat)
    rows.append(
        {
            "impl": "diffrax Kvaerno5",
            "time": seconds,
            "err": mixed_error(name, y),
            "nfev": -1,  # diffrax does not count evaluations
            "ok": bool(ok),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--problems", nargs="*", default=list(SCALE))
    parser.add_argument("--no-jax", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    runs: dict[str, list[dict[str, Any]]] = {}
    for name in args.problems:
        for rtol in TOLERANCES:
            rows = numpy_runs(name, rtol, args.repeat)
            if not args.no_jax:
                rows += jax_runs(name, rtol, args.repeat)
            for r in rows:
                r["rtol"] = rtol
                runs.setdefault(f"{name}|{r['impl']}", []).append(r)
                print(
                    f"{name:18s} {rtol:8.0e} {r['impl']:22s} {r['time'] * 1e3:9.2f} ms "
                    f"err {r['err']:.1e} nfev {r['nfev']} ok {r['ok']}",
                    flush=True,
                )
    lines = [
        "# Stiff ODE benchmarks",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python "
        f"{platform.python_version()}. Produced by `python benchmarks/bench_stiff.py`. "
        "atol = rtol·SCALE; error = Bari's mixed error max |y - ref| / (SCALE + |ref|) at the "
        "final time against the Bari test set's reference solution. numpy runs get the "
        "analytic Jacobian (scipy too); jax runs differentiate f.",
        "",
        "## Every run",
        "",
        "| problem | rtol | solver | time | error | f-evaluations |",
        "|---|---|---|---|---|---|",
    ]
    for key, rows in runs.items():
        name, impl = key.split("|")
        for r in rows:
            nfev = "-" if r["nfev"] < 0 else str(r["nfev"])
            flag = "" if r["ok"] else " (failed)"
            lines.append(
                f"| {name} | {r['rtol']:g} | {impl}{flag} | {r['time'] * 1e3:.2f} ms | "
                f"{r['err']:.1e} | {nfev} |"
            )
    lines += [
        "",
        "## At equal error",
        "",
        "Each anyxp run against the anchor's curve at the same error: f-evaluation ratio "
        "(anyxp / scipy BDF) and time ratios (anyxp / anchor). '-': anyxp's error lies "
        "outside the anchor's sweep.",
        "",
        "| problem | rtol | anyxp | error | nfev / BDF | time / Radau | time / BDF | "
        "time / LSODA | time / diffrax Kvaerno5 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def ratio(value: float | None, ours: float) -> str:
        return "-" if value is None else f"{ours / value:.2f}"

    for name in args.problems:
        for impl in ("numpy rodas5p", "numpy kvaerno5", "jax rodas5p", "jax kvaerno5"):
            for r in runs.get(f"{name}|anyxp {impl}", []):
                if not r["ok"]:
                    continue

                def anchor(
                    label: str, key: str, r: dict[str, Any] = r, name: str = name
                ) -> float | None:
                    return at_error(runs.get(f"{name}|{label}", []), r["err"], key)

                lines.append(
                    f"| {name} | {r['rtol']:g} | {impl} | {r['err']:.1e} | "
                    f"{ratio(anchor('scipy BDF', 'nfev'), r['nfev'])} | "
                    f"{ratio(anchor('scipy Radau', 'time'), r['time'])} | "
                    f"{ratio(anchor('scipy BDF', 'time'), r['time'])} | "
                    f"{ratio(anchor('scipy LSODA', 'time'), r['time'])} | "
                    f"{ratio(anchor('diffrax Kvaerno5', 'time'), r['time'])} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.plot:
        panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
        for key, rows in runs.items():
            problem, label = key.split("|", 1)
            points = [(r["err"], r["time"]) for r in rows if r["ok"]]
            panels.setdefault(problem, {})[label] = points
        work_precision_plot(args.plot, panels, "mixed error at final time")


if __name__ == "__main__":
    main()
