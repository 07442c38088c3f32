"""Sobol' indices: anyxp.gsa.sobol against SALib, at equal n and at equal error.

Both libraries run the whole analysis: make the Saltelli design, evaluate the model on all
its rows in one batched call, estimate S1 and ST (and S2 with ``--second-order``) with 100
bootstrap resamples at 95%. SALib is ``SALib.sample.sobol.sample`` (scipy's scrambled
Sobol' points), the model, then ``SALib.analyze.sobol.analyze``; anyxp is
``anyxp.gsa.sobol(model, bounds, n)`` on numpy. The models are the same numpy functions.

- **Ishigami** (a = 7, b = 0.1): a model that costs next to nothing, so the time is the
  libraries' own. Error = root mean square, over seeds and over the 6 indices, of the
  estimate minus the analytic index.
- **g-function** (Sobol', a = 0, 1, 4.5, 9): four parameters, kinked, not periodic.
  Error as for Ishigami, against its analytic indices.
- **Lotka-Volterra**: the mean prey and predator populations over [0, 10] as functions
  of the four rates (the example of docs/gsa.md), every trajectory in one
  ``anyxp.ode.solve_ensemble`` call: a model that costs far more than the analysis. Error
  (prey output) against the mean of both libraries' estimates at 8 times the largest n.

Equal n: seconds of each library, best of --repeat, with the time spent in the model
apart. Equal error: for each target, the smallest n of the grid at which each library's
error (over --seeds seeds) is below it, and the time there. Ratio = anyxp / SALib
(< 1: anyxp faster).

The figure of docs/gsa.md (Ishigami's indices at n = 2**14 with their intervals, and the
analytic values) is drawn to --plot; ``--plot-only`` draws it and skips the benchmark.

Run:  python benchmarks/bench_gsa.py [--out benchmarks/results/gsa.md]
      [--plot docs/_static/gsa_ishigami.png] [--plot-only]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import anyxp
from anyxp.gsa import sobol
from anyxp.ode import solve_ensemble

PI = math.pi
RESAMPLES, CONFIDENCE = 100, 0.95


# -- the models ------------------------------------------------------------------------
def ishigami(x: Any, a: float = 7.0, b: float = 0.1) -> Any:
    xp = anyxp.backend(like=x).xp
    s1 = xp.sin(x[:, 0])
    return s1 + a * xp.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * s1


def ishigami_exact(a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """S1 then ST of the three parameters."""
    v = a**2 / 8 + b * PI**4 / 5 + b**2 * PI**8 / 18 + 0.5
    v1, v2, v13 = 0.5 * (1 + b * PI**4 / 5) ** 2, a**2 / 8, b**2 * PI**8 * (1 / 18 - 1 / 50)
    return np.array([v1, v2, 0.0, v1 + v13, v2, v13]) / v


G_A = np.array([0.0, 1.0, 4.5, 9.0])


def g_function(x: Any) -> Any:
    be = anyxp.backend(like=x)
    a = be.asarray(G_A)
    return be.xp.prod((be.xp.abs(4 * x - 2) + a) / (1 + a), axis=1)


def g_exact() -> np.ndarray:
    vi = 1 / (3 * (1 + G_A) ** 2)
    v = np.prod(1 + vi) - 1
    return np.r_[vi / v, vi * np.prod(1 + vi) / (1 + vi) / v]


def lotka_volterra(t: Any, y: Any, p: Any) -> Any:
    xp = anyxp.backend(like=y).xp
    prey, predator = y[:, 0], y[:, 1]
    a, b, c, d = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    return xp.stack(
        [a * prey - b * prey * predator, -c * predator + d * prey * predator, prey, predator],
        axis=1,
    )


def mean_prey(p: Any) -> Any:
    """Mean prey over [0, 10] from (1, 1): SALib takes one output, so the prey's alone."""
    be = anyxp.backend(like=p)
    y0 = be.asarray(np.tile([1.0, 1.0, 0.0, 0.0], (p.shape[0], 1)))
    sol = solve_ensemble(lotka_volterra, (0.0, 10.0), y0, params=p, rtol=1e-8, atol=1e-10)
    return sol.y[-1, :, 2] / 10.0


PROBLEMS: dict[str, dict[str, Any]] = {
    "Ishigami": {"model": ishigami, "bounds": [(-PI, PI)] * 3, "exact": ishigami_exact()},
    "g-function": {"model": g_function, "bounds": [(0.0, 1.0)] * 4, "exact": g_exact()},
    "Lotka-Volterra": {
        "model": mean_prey,
        "bounds": [(1.0, 2.0), (0.5, 1.5), (2.0, 4.0), (0.5, 1.5)],
        "exact": None,
    },
}


# -- one run of each library -----------------------------------------------------------
class Timed:
    """``model``, counting the seconds spent in it."""

    def __init__(self, model: Callable[[Any], Any]) -> None:
        self.model, self.seconds = model, 0.0

    def __call__(self, x: Any) -> Any:
        start = time.perf_counter()
        out = self.model(x)
        self.seconds += time.perf_counter() - start
        return out


def run_anyxp(problem: dict[str, Any], n: int, seed: int, second_order: bool) -> dict[str, Any]:
    model = Timed(problem["model"])
    start = time.perf_counter()
    res = sobol(
        model, problem["bounds"], n, second_order=second_order, seed=seed,
        resamples=RESAMPLES, confidence=CONFIDENCE,
    )  # fmt: skip
    total = time.perf_counter() - start
    return {"seconds": total, "model": model.seconds, "indices": np.r_[res.S1, res.ST]}


def run_salib(problem: dict[str, Any], n: int, seed: int, second_order: bool) -> dict[str, Any]:
    from SALib.analyze import sobol as analyze
    from SALib.sample import sobol as sample

    d = len(problem["bounds"])
    spec = {"num_vars": d, "names": [f"x{j}" for j in range(d)], "bounds": problem["bounds"]}
    model = Timed(problem["model"])
    start = time.perf_counter()
    x = sample.sample(spec, n, calc_second_order=second_order, seed=seed)
    y = model(x)
    res = analyze.analyze(
        spec, y, calc_second_order=second_order, num_resamples=RESAMPLES,
        conf_level=CONFIDENCE, seed=seed + 1,
    )  # fmt: skip
    total = time.perf_counter() - start
    return {"seconds": total, "model": model.seconds, "indices": np.r_[res["S1"], res["ST"]]}


RUNNERS = {"anyxp": run_anyxp, "SALib": run_salib}


def best(run: Callable[[], dict[str, Any]], repeat: int) -> dict[str, Any]:
    """The run with the fewest seconds of ``repeat``."""
    return min((run() for _ in range(repeat)), key=lambda r: r["seconds"])


# -- the two comparisons ---------------------------------------------------------------
def equal_n(name: str, ns: list[int], repeat: int, second_order: bool) -> list[str]:
    problem = PROBLEMS[name]
    rows = []
    for n in ns:
        got = {
            lib: best(lambda run=run, n=n: run(problem, n, 0, second_order), repeat)
            for lib, run in RUNNERS.items()
        }
        a, s = got["anyxp"], got["SALib"]
        ratio = a["seconds"] / s["seconds"]
        own = (a["seconds"] - a["model"]) / (s["seconds"] - s["model"])
        rows.append(
            f"| {name} | {'S1, ST, S2' if second_order else 'S1, ST'} | {n} | "
            f"{a['seconds']:.4f} | {s['seconds']:.4f} | {ratio:.2f} | "
            f"{a['model']:.4f} | {a['seconds'] - a['model']:.4f} | "
            f"{s['seconds'] - s['model']:.4f} | {own:.2f} |"
        )
        print(rows[-1], flush=True)
    return rows


def errors(name: str, ns: list[int], seeds: int) -> dict[str, dict[int, tuple[float, float]]]:
    """Each library's (error, median seconds) at each n."""
    problem = PROBLEMS[name]
    exact = problem["exact"]
    if exact is None:  # a reference from many more samples, half from each library's design
        runs = [run(problem, 8 * ns[-1], 10_000, False) for run in RUNNERS.values()]
        exact = np.mean([r["indices"] for r in runs], axis=0)
    out: dict[str, dict[int, tuple[float, float]]] = {lib: {} for lib in RUNNERS}
    for lib, run in RUNNERS.items():
        for n in ns:
            runs = [run(problem, n, seed, False) for seed in range(seeds)]
            err = np.sqrt(np.mean([(r["indices"] - exact) ** 2 for r in runs]))
            out[lib][n] = (float(err), float(np.median([r["seconds"] for r in runs])))
            print(f"{name} {lib} n={n}: error {err:.2e}, {out[lib][n][1]:.4f} s", flush=True)
    return out


def equal_error(
    name: str, errs: dict[str, dict[int, tuple[float, float]]], targets: list[float]
) -> list[str]:
    rows = []
    for target in targets:
        reached = {
            lib: next(((n, s) for n, (e, s) in sorted(by_n.items()) if e <= target), None)
            for lib, by_n in errs.items()
        }
        a, s = reached["anyxp"], reached["SALib"]
        if a is None or s is None:
            rows.append(f"| {name} | {target:g} | {_cell(a)} | {_cell(s)} | — |")
            continue
        rows.append(f"| {name} | {target:g} | {_cell(a)} | {_cell(s)} | {a[1] / s[1]:.2f} |")
    return rows


def _cell(reached: tuple[int, float] | None) -> str:
    return "not reached" if reached is None else f"n = {reached[0]}: {reached[1]:.4f} s"


# -- the figure of docs/gsa.md ---------------------------------------------------------
def plot_ishigami(path: Path) -> None:
    """Bars of S1 and ST with their 95% intervals, and a mark at each analytic index."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = sobol(ishigami, PROBLEMS["Ishigami"]["bounds"], 2**14)
    exact = ishigami_exact()
    pos = np.arange(3)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.bar(
        pos - 0.2, res.S1, 0.4, yerr=res.S1_conf, capsize=3, label="first order S1 (95% interval)"
    )
    ax.bar(pos + 0.2, res.ST, 0.4, yerr=res.ST_conf, capsize=3, label="total ST (95% interval)")
    ax.scatter(
        np.r_[pos - 0.2, pos + 0.2], exact, marker="D", s=22, color="crimson", zorder=3,
        label="analytic value",
    )  # fmt: skip
    ax.set_xticks(pos, ["x1", "x2", "x3"])
    ax.set_ylabel("share of the variance")
    ax.set_title("Ishigami function (a = 7, b = 0.1), n = 2**14")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=Path("docs/_static/gsa_ishigami.png"))
    parser.add_argument("--plot-only", action="store_true", help="draw --plot, nothing else")
    args = parser.parse_args()
    plot_ishigami(args.plot)
    if args.plot_only:
        return
    warnings.filterwarnings("ignore", category=UserWarning)  # SALib's and pandas' notices
    from importlib.metadata import version

    ish_n = [2**k for k in (8, 10, 12, 14)]
    lv_n = [2**k for k in (6, 7, 8, 9)]
    table = equal_n("Ishigami", ish_n, args.repeat, False)
    table += equal_n("Ishigami", ish_n, args.repeat, True)
    table += equal_n("g-function", ish_n[-2:], args.repeat, False)
    table += equal_n("Lotka-Volterra", [2**8, 2**10], 2, False)
    cheap_n = [2**k for k in range(6, 15)]
    errs = {
        "Ishigami": errors("Ishigami", cheap_n, args.seeds),
        "g-function": errors("g-function", cheap_n, args.seeds),
        "Lotka-Volterra": errors("Lotka-Volterra", lv_n, max(2, args.seeds // 2)),
    }
    accuracy = equal_error("Ishigami", errs["Ishigami"], [0.03, 0.01, 0.003, 0.001])
    accuracy += equal_error("g-function", errs["g-function"], [0.03, 0.01, 0.003, 0.001])
    accuracy += equal_error("Lotka-Volterra", errs["Lotka-Volterra"], [0.03, 0.02, 0.01])
    by_n = [
        f"| {name} | {n} | {e['anyxp'][n][0]:.2e} | {e['SALib'][n][0]:.2e} |"
        for name, e in errs.items()
        for n in sorted(e["anyxp"])
    ]
    command = "python benchmarks/bench_gsa.py" + (f" --out {args.out}" if args.out else "")
    threads = os.environ.get("OPENBLAS_NUM_THREADS")
    if threads:  # one BLAS thread: a shared machine's spare cores are not spare
        command = f"OPENBLAS_NUM_THREADS={threads} {command}"
    text = "\n".join(
        [
            "# Sobol' indices: anyxp.gsa against SALib",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs); "
            f"Python {platform.python_version()}; numpy {np.__version__}, SALib "
            f"{version('SALib')}. Produced by `{command}`.",
            "",
            "Both run the whole analysis: design, one batched call of the same numpy model, "
            f"S1 and ST (and S2) with {RESAMPLES} bootstrap resamples at {CONFIDENCE:.0%}. "
            "SALib: `SALib.sample.sobol.sample` (scipy's scrambled Sobol' points), the model, "
            "`SALib.analyze.sobol.analyze`. anyxp: `anyxp.gsa.sobol` on numpy. "
            "Ratio = anyxp / SALib (< 1: anyxp faster).",
            "",
            "The estimators are SALib's (on the same outputs anyxp gives SALib's S1, ST and S2 "
            "to 1e-12: tests/test_gsa.py), so at equal n the errors differ by the design alone "
            "(Owen's nested scrambling here, scipy's linear matrix scrambling with a digital "
            "shift there), and where the model is costly (Lotka-Volterra) the time is the "
            "model's: the `own` columns hold the libraries' difference.",
            "",
            f"## Equal n (best of {args.repeat}; Lotka-Volterra: best of 2)",
            "",
            "`model` = seconds in the model (the same function for both); `own` = the rest: "
            "design and analysis.",
            "",
            "| problem | indices | n | anyxp s | SALib s | ratio | model s | anyxp own s "
            "| SALib own s | own ratio |",
            "|---|---|---|---|---|---|---|---|---|---|",
            *table,
            "",
            f"## Equal error (S1 and ST; {args.seeds} seeds for Ishigami and the g-function, "
            f"{max(2, args.seeds // 2)} for Lotka-Volterra)",
            "",
            "Error: RMS over seeds and indices of estimate - exact (Ishigami, g-function: "
            "analytic; "
            "Lotka-Volterra: the mean of both libraries at 8x the largest n). For each target, "
            "the smallest n of "
            "the grid (powers of two) at which a library's error is below it, and its "
            "median time there.",
            "",
            "| problem | target error | anyxp | SALib | time ratio |",
            "|---|---|---|---|---|",
            *accuracy,
            "",
            "Error at each n:",
            "",
            "| problem | n | anyxp error | SALib error |",
            "|---|---|---|---|",
            *by_n,
            "",
        ]
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
