"""Newton-Krylov side by side with scipy.optimize.newton_krylov on the 2-D Bratu problem.

The problem: ``h²(Δ_h u + λ e^u) = 0`` on an N x N interior grid of the unit square
(``anyxp.optimize.problems.bratu``), λ = 6 (below the turning point 6.808), from u = 0.
Both solvers stop at the same residual, ``‖F(u)‖∞ <= TOL`` (scipy's ``f_tol`` is the same
max-norm), and both get the same F. Counted: evaluations of F (scipy's through a counting
wrapper; anyxp's ``stats["nfev"]``, finite-difference products included), Newton
iterations, and the best-of-``--repeat`` wall time.

- unpreconditioned, N = 32, 64, 100: scipy's default inner solver (LGMRES) and (N <= 64)
  its ``method="gmres"``, against anyxp's restarted GMRES(30);
- preconditioned, N = 32, 100, 316 (n ~ 10^5 unknowns, matrix-free: a dense Jacobian
  would be n^2 float64 = 80 GB): both get the same fast Poisson solver
  ``anyxp.optimize.problems.laplacian_inverse`` (M ~ J^-1; scipy as ``inner_M``); anyxp
  on torch (forward-mode AD products, eager) and jax (AD products, the whole solve
  jit-compiled, warm) besides;
- the test problems (Bratu 1-D and 2-D, 2-D reaction-diffusion) against scipy: iteration
  counts, evaluations of F and the distance between the answers, on every backend.

BLAS runs single-threaded (both solvers use it).

Run:  python benchmarks/bench_optimize.py [--out benchmarks/results/optimize.md] [--plot docs/_static/optimize_convergence.png] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path
from typing import Any

# Single-threaded BLAS for both solvers (set before numpy loads it): on a shared machine
# BLAS threads contend with other processes, and a dot product's time scatters 100-fold.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("JAX_ENABLE_X64", "1")

import numpy as np
from _common import best

from anyxp.optimize import newton_krylov
from anyxp.optimize.problems import bratu, laplacian_inverse, reaction_diffusion

LAMBDA = 6.0
TOL = 1e-10
PLAIN_SIZES = (32, 64, 100)
PRECONDITIONED_SIZES = (32, 100, 316)


def scipy_run(N: int, method: str, precondition: bool, repeat: int) -> dict[str, Any]:
    import scipy.optimize
    from scipy.sparse.linalg import LinearOperator

    F = bratu(N, LAMBDA, dim=2)
    count, history = [0], []

    def counted(u: np.ndarray) -> np.ndarray:
        count[0] += 1
        return F(u)

    options: dict[str, Any] = {"method": method, "f_tol": TOL}
    if precondition:
        P = laplacian_inverse(N, dim=2)
        options["inner_M"] = LinearOperator(
            (N * N, N * N), matvec=lambda v: P(v.reshape(N, N)).reshape(-1), dtype=np.float64
        )

    def run() -> np.ndarray:
        count[0] = 0
        history.clear()
        history.append(float(np.abs(F(np.zeros((N, N)))).max()))
        return scipy.optimize.newton_krylov(
            counted,
            np.zeros((N, N)),
            callback=lambda x, f: history.append(float(np.abs(f).max())),
            **options,
        )

    seconds, u = best(run, repeat)
    label = f"scipy newton_krylov ({method})"
    return {
        "solver": label,
        "seconds": seconds,
        "nfev": count[0],
        "newton": len(history) - 1,
        "residual": float(np.abs(F(u)).max()),
        "u": u,
        "history": list(history),
    }


def anyxp_run(N: int, precondition: bool, repeat: int, backend: str = "numpy") -> dict[str, Any]:
    import anyxp

    F = bratu(N, LAMBDA, dim=2)
    P = laplacian_inverse(N, dim=2) if precondition else None
    be = anyxp.backend(backend, dtype="float64")
    x0 = be.asarray(np.zeros((N, N)))
    if backend == "jax":
        import jax

        compiled = jax.jit(
            lambda x: (
                lambda s: (s.x, s.status, s.stats["nfev"], s.stats["njvp"], s.stats["iterations"])
            )(newton_krylov(F, x, tol=TOL, preconditioner=P))
        )
        jax.block_until_ready(compiled(x0))  # compile once; time warm runs

        def run() -> Any:
            return jax.block_until_ready(compiled(x0))

        seconds, (u, status, nfev, njvp, iterations) = best(run, repeat)
        assert int(status) == 0
        u = np.asarray(u)
        return {
            "solver": "anyxp newton_krylov, jax (AD products, jit, warm)",
            "seconds": seconds,
            "nfev": int(nfev),
            "njvp": int(njvp),
            "newton": int(iterations),
            "residual": float(np.abs(F(u)).max()),
            "u": u,
        }
    seconds, sol = best(lambda: newton_krylov(F, x0, tol=TOL, preconditioner=P), repeat)
    assert sol.success, sol.message
    products = "FD products" if backend == "numpy" else "AD products, eager"
    return {
        "solver": f"anyxp newton_krylov, {backend} (GMRES(30), {products})",
        "seconds": seconds,
        "nfev": sol.stats["nfev"],
        "njvp": sol.stats["njvp"],
        "newton": sol.stats["iterations"],
        "residual": sol.residual_norm,
        "u": be.to_numpy(sol.x),
        "history": list(sol.residual_history),
    }


#: The problems the tests compare with scipy (tests/test_optimize.py), at the same sizes.
CHECKS = {
    "Bratu 1-D, λ = 3, n = 64": (lambda: bratu(64, 3.0, dim=1), (64,)),
    "Bratu 2-D, λ = 6, 24 x 24": (lambda: bratu(24, 6.0, dim=2), (24, 24)),
    "reaction-diffusion 2-D, 24 x 24": (lambda: reaction_diffusion(24), (24, 24)),
}


def scipy_counted(F: Any, x0: np.ndarray, f_tol: float) -> tuple[np.ndarray, int, int]:
    """scipy's answer (default LGMRES), its evaluations of F and its Newton iterations."""
    import scipy.optimize

    count = [0, 0]

    def counted(u: np.ndarray) -> np.ndarray:
        count[0] += 1
        return F(u)

    def tick(x: Any, f: Any) -> None:
        count[1] += 1

    u = scipy.optimize.newton_krylov(counted, x0, f_tol=f_tol, callback=tick)
    return u, count[0], count[1]


def checks(backends: tuple[str, ...]) -> list[str]:
    """Each test problem to ‖F‖∞ ≤ 1e-12 by scipy (default LGMRES) and by anyxp on each
    backend: the iteration counts, the evaluations of F, the distance between answers."""
    import anyxp

    out = [
        "| problem | solver | Newton iterations | inner iterations | F-evaluations | "
        "max abs(u - u_scipy) |",
        "|---|---|---|---|---|---|",
    ]
    for label, (make, shape) in CHECKS.items():
        F = make()
        ref, nfev, steps = scipy_counted(F, np.zeros(shape), 1e-12)
        out.append(f"| {label} | scipy (lgmres) | {steps} | - | {nfev} | 0 |")
        for name in backends:
            be = anyxp.backend(name, dtype="float64")
            sol = newton_krylov(F, be.asarray(np.zeros(shape)), tol=1e-12)
            assert sol.success, sol.message
            s = sol.stats
            products = "FD" if name == "numpy" else "AD"
            evaluations = str(s["nfev"]) + (
                "" if name == "numpy" else f" (+{s['njvp']} AD products)"
            )
            diff = np.abs(be.to_numpy(sol.x) - ref).max()
            out.append(
                f"| {label} | anyxp, {name} ({products} products) | {s['iterations']} | "
                f"{s['linear_iterations']} | {evaluations} | {diff:.1e} |"
            )
    return out


def table(rows: list[dict[str, Any]], reference: np.ndarray) -> list[str]:
    out = [
        "| N | n | solver | F-evaluations | Newton iterations | time | ‖F‖∞ | max abs(u - u_scipy) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        nfev = str(r["nfev"]) + (f" (+{r['njvp']} AD products)" if "AD" in r["solver"] else "")
        out.append(
            f"| {r['N']} | {r['N'] ** 2} | {r['solver']} | {nfev} | {r['newton']} | "
            f"{r['seconds'] * 1e3:.1f} ms | {r['residual']:.1e} | "
            f"{np.abs(np.asarray(r['u']) - reference[r['N']]).max():.1e} |"
        )
    return out


def ratios(rows: list[dict[str, Any]], ours: str, theirs: str, count: bool = True) -> list[str]:
    """The ratios of ``ours`` to ``theirs`` at each size: F-evaluations (unless ``count`` is
    false: AD products are no evaluations of F) and time."""
    columns = ["N", "n", *([f"F-evaluations {ours} / {theirs}"] if count else [])]
    columns.append(f"time {ours} / {theirs}")
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for N in sorted({r["N"] for r in rows}):
        a = next((r for r in rows if r["N"] == N and ours in r["solver"]), None)
        b = next((r for r in rows if r["N"] == N and theirs in r["solver"]), None)
        if a is None or b is None:
            continue
        values = [str(N), str(N * N)]
        if count:
            values.append(f"{a['nfev'] / b['nfev']:.2f}")
        values.append(f"{a['seconds'] / b['seconds']:.2f}")
        out.append("| " + " | ".join(values) + " |")
    return out


def plot(path: Path, runs: dict[str, list[float]], N: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for label, history in runs.items():
        ax.semilogy(range(len(history)), history, marker="o", label=label)
    ax.axhline(TOL, color="gray", linestyle=":", label=f"tol = {TOL:g}")
    ax.set_xlabel("Newton iteration")
    ax.set_ylabel("‖F(u)‖∞")
    ax.set_title(f"Bratu 2-D, λ = {LAMBDA}, N = {N} (n = {N * N})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/optimize.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/_static/optimize_convergence.png"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-jax", action="store_true", help="skip the jax runs")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch runs")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")
    load = os.getloadavg()[0]

    plain: list[dict[str, Any]] = []
    for N in PLAIN_SIZES:
        repeat = args.repeat if N <= 64 else 1
        runs = [scipy_run(N, "lgmres", False, repeat), anyxp_run(N, False, repeat)]
        if N <= 64:  # scipy's GMRES inner solver takes minutes beyond
            runs.insert(1, scipy_run(N, "gmres", False, repeat))
        for run in runs:
            plain.append({"N": N, **run})
            print(N, run["solver"], run["nfev"], f"{run['seconds']:.3f}s", flush=True)
    backends = (
        ("numpy",) + (() if args.no_torch else ("torch",)) + (() if args.no_jax else ("jax",))
    )
    pre: list[dict[str, Any]] = []
    for N in PRECONDITIONED_SIZES:
        repeat = args.repeat if N <= 100 else 1
        runs = [scipy_run(N, "lgmres", True, repeat), anyxp_run(N, True, repeat)]
        if not args.no_torch:
            runs.append(anyxp_run(N, True, repeat, backend="torch"))
        if not args.no_jax:
            runs.append(anyxp_run(N, True, repeat, backend="jax"))
        for run in runs:
            pre.append({"N": N, **run})
            print(
                N,
                "preconditioned",
                run["solver"],
                run["nfev"],
                f"{run['seconds']:.3f}s",
                flush=True,
            )
    reference = {r["N"]: np.asarray(r["u"]) for r in plain + pre if "lgmres" in r["solver"]}

    lines = [
        "# Newton-Krylov benchmark: anyxp vs scipy.optimize.newton_krylov",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (load average "
        f"{load:.1f} at the start: shared, so read the ratios, which come from one run); "
        f"Python {platform.python_version()}. Produced by "
        f"`python benchmarks/bench_optimize.py --repeat {args.repeat}`.",
        "",
        f"Bratu 2-D, `h²(Δ_h u + λ e^u) = 0`, λ = {LAMBDA}, from u = 0, both solvers to "
        f"‖F(u)‖∞ ≤ {TOL:g} (the same F; scipy's `f_tol` is the same max-norm). "
        "F-evaluations count every call of F, finite-difference products included; times are "
        "the best of `--repeat` runs (one run for N ≥ 100 unpreconditioned and N = 316). "
        "The last column compares each answer with scipy's (LGMRES) at that size: a residual "
        "of 1e-10 leaves each answer an error up to ‖J⁻¹‖∞·1e-10, and ‖J⁻¹‖ grows like N² "
        "here, so at N = 100 they may differ by more than 1e-8 (the tests solve to 1e-12, "
        "where they agree to 1e-8).",
        "",
        "## Without a preconditioner",
        "",
        *table(plain, reference),
        "",
        *ratios(plain, "anyxp", "lgmres"),
        "",
        *ratios(plain, "anyxp", "scipy newton_krylov (gmres)"),
        "",
        "## With the fast Poisson preconditioner (both solvers)",
        "",
        *table(pre, reference),
        "",
        *ratios(pre, "numpy", "lgmres"),
        "",
        *(ratios(pre, "torch", "lgmres", count=False) if not args.no_torch else []),
        "",
        *(ratios(pre, "jax", "lgmres", count=False) if not args.no_jax else []),
        "",
        "## The test problems against scipy",
        "",
        "The problems `tests/test_optimize.py` checks against `scipy.optimize.newton_krylov` "
        "(same answer to 1e-8 there), each from u = 0 to ‖F‖∞ ≤ 1e-12, no preconditioner. "
        "Inner iterations: GMRES iterations (products J·v) over all Newton iterations.",
        "",
        *checks(backends),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    N = 100
    curves = {
        f"{r['solver']}{' + fast Poisson M' if r in pre else ''}, {r['nfev']} F-evaluations": r[
            "history"
        ]
        for r in plain + pre
        if r["N"] == N and "history" in r and ("numpy" in r["solver"] or "lgmres" in r["solver"])
    }
    plot(args.plot, curves, N)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
