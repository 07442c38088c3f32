"""Large stiff ODEs: kvaerno5 with matrix-free GMRES against scipy's BDF with a sparse
Jacobian, and against kvaerno5 with its dense Jacobian inverse, reported as ratios.

The problem is a method-of-lines PDE: the 2-D Brusselator (reaction-diffusion, two
species on an N x N grid, zero Dirichlet boundaries, 5-point Laplacian),
``n = 2 N²`` states. On the numpy backend anyxp's products ``J·v`` are forward differences
(one evaluation of f each, counted in nfev). scipy's BDF gets the Jacobian's sparsity
pattern (``jac_sparsity``), so it forms the Jacobian by grouped differences (a few
evaluations of f) and factors it with a sparse LU: the strongest anchor for this problem.
Both solve at the same rtol/atol; the error is measured at the final time against scipy BDF
at ``--ref-rtol`` (same grid), or, without it, as the difference of the two solutions. Times are the best of ``--repeat`` runs.
Ratio = anyxp / anchor (< 1: anyxp faster or cheaper).

Run:  python benchmarks/bench_krylov_ode.py [--out benchmarks/results/krylov_ode.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _common import best

from anyxp.ode import solve

ALPHA = 0.02  # diffusion
T1 = 1.0


def laplacian(u: np.ndarray, dx: float) -> np.ndarray:
    out = -4.0 * u
    out[1:, :] += u[:-1, :]
    out[:-1, :] += u[1:, :]
    out[:, 1:] += u[:, :-1]
    out[:, :-1] += u[:, 1:]
    return out / dx**2


def problem(N: int) -> tuple[Any, np.ndarray, float]:
    dx = 1.0 / (N + 1)

    def f(t: Any, y: np.ndarray) -> np.ndarray:
        u, v = y[0], y[1]
        uuv = u * u * v
        du = 1.0 + uuv - 4.4 * u + ALPHA * laplacian(u, dx)
        dv = 3.4 * u - uuv + ALPHA * laplacian(v, dx)
        return np.stack([du, dv])

    x = np.arange(1, N + 1) * dx
    y0 = np.stack([0.5 + np.outer(np.sin(np.pi * x), x), 1.0 + np.outer(x, 1 - x)])
    return f, y0, dx


def sparsity(N: int) -> Any:
    """The Jacobian's pattern: each species' 5-point stencil, plus the reaction coupling."""
    import scipy.sparse as sp

    one = sp.diags([1, 1, 1], [-1, 0, 1], shape=(N, N))
    eye = sp.identity(N)
    stencil = sp.kron(one, eye) + sp.kron(eye, one)
    return sp.kron(np.ones((2, 2)), sp.identity(N * N)) + sp.kron(sp.identity(2), stencil)


def diffusion_preconditioner(N: int, dx: float) -> Any:
    """``(I - h·gamma·alpha·L)^{-1}`` per species by a sine transform (L's eigenbasis):
    the stiff part of the Jacobian, exactly, in O(n log n)."""
    from scipy.fft import dstn, idstn

    k = np.arange(1, N + 1)
    s = np.sin(k * np.pi * dx / 2) ** 2
    lam = -4.0 / dx**2 * (s[:, None] + s[None, :])

    def apply(t: Any, y: np.ndarray, hg: Any, v: np.ndarray) -> np.ndarray:
        spec = dstn(v, type=1, axes=(1, 2), norm="ortho")
        return idstn(spec / (1.0 - float(hg) * ALPHA * lam), type=1, axes=(1, 2), norm="ortho")

    return apply


def scipy_bdf(N: int, rtol: float, atol: float) -> Any:
    from scipy.integrate import solve_ivp

    f, y0, _ = problem(N)
    shape = y0.shape

    def flat(t: float, y: np.ndarray) -> np.ndarray:
        return f(t, y.reshape(shape)).reshape(-1)

    return solve_ivp(
        flat, (0.0, T1), y0.reshape(-1), method="BDF", rtol=rtol, atol=atol,
        jac_sparsity=sparsity(N),
    )  # fmt: skip


def ours(N: int, rtol: float, atol: float, linear_solver: str, precond: bool) -> Any:
    f, y0, dx = problem(N)
    kw: dict[str, Any] = {"linear_solver": linear_solver}
    if precond:
        kw["preconditioner"] = diffusion_preconditioner(N, dx)
    return solve(f, (0.0, T1), y0, method="kvaerno5", rtol=rtol, atol=atol, t_eval=[T1], **kw)


def err(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(y.reshape(-1) - ref)) / np.max(np.abs(ref)))


def row(label: str, t: float, nfev: int, e: float, t0: float, nfev0: int, extra: str) -> str:
    return (
        f"| {label} | {t:.2f} s | {nfev} | {e:.1e} | {t / t0:.2f} | {nfev / nfev0:.2f} | {extra} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/krylov_ode.md"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--large", type=int, default=224, help="grid N: n = 2 N^2 states")
    parser.add_argument("--small", type=int, nargs="+", default=[16, 24])
    parser.add_argument("--ref-rtol", type=float, default=None, help="reference rtol (slow)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rtol, atol = 1e-6, 1e-9
    lines = [
        "# Large stiff ODEs: kvaerno5 + GMRES (matrix-free) vs scipy BDF (sparse) and vs "
        "dense kvaerno5",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared (load average "
        f"{os.getloadavg()[0]:.1f} at the start); Python {platform.python_version()}; numpy "
        f"{np.__version__}. Produced by `python benchmarks/bench_krylov_ode.py` (best of "
        f"{args.repeat}). 2-D Brusselator, alpha = {ALPHA}, t in [0, {T1}], rtol = {rtol}, "
        f"atol = {atol}; numpy backend (products J·v by forward differences, counted in nfev). "
        "Error: max-norm difference at t1 to "
        + (
            "scipy BDF at the same tolerance (no --ref-rtol)"
            if args.ref_rtol is None
            else f"scipy BDF at rtol {args.ref_rtol}"
        )
        + ", relative to the solution's max. Ratios: anyxp / anchor.",
        "",
    ]
    N = args.large
    n = 2 * N * N
    print(f"large: N={N}, n={n}", flush=True)
    t0, s0 = best(lambda: scipy_bdf(N, rtol, atol), args.repeat)
    # A tight reference at this size takes scipy many minutes: optional.
    ref = s0.y[:, -1] if args.ref_rtol is None else scipy_bdf(N, args.ref_rtol, 1e-12).y[:, -1]
    lines += [
        f"## n = {n} states (N = {N}); a dense inverse would be {8 * n * n / 1e9:.0f} GB",
        "",
        "| solver | time | nfev | error | time ratio | nfev ratio | notes |",
        "|---|---|---|---|---|---|---|",
        f"| scipy BDF, jac_sparsity | {t0:.2f} s | {s0.nfev} | {err(s0.y[:, -1], ref):.1e} "
        f"| 1 | 1 | {s0.njev} Jacobians, {s0.nlu} sparse LU |",
    ]
    for precond in (False, True):
        t, s = best(lambda p=precond: ours(N, rtol, atol, "gmres", p), args.repeat)
        label = "kvaerno5 gmres" + (" + diffusion preconditioner (DST)" if precond else "")
        st = s.stats
        extra = f"{st['accepted']} accepted, {st['rejected']} rejected; status {s.status}"
        lines.append(row(label, t, st["nfev"], err(np.asarray(s.y[-1]), ref), t0, s0.nfev, extra))
        print(lines[-1], flush=True)
    lines += [
        "",
        "## Dense vs GMRES kvaerno5, where both fit",
        "",
        "The dense solver forms J by differences (n evaluations of f) and inverts "
        "I - h·gamma·J (n³) every step; GMRES forms nothing. Ratio: gmres / dense.",
        "",
        "| n | dense time | dense nfev | gmres time | gmres nfev | time ratio | nfev ratio "
        "| max difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for Ns in args.small:
        td, d = best(lambda m=Ns: ours(m, rtol, atol, "dense", False), args.repeat)
        tg, g = best(lambda m=Ns: ours(m, rtol, atol, "gmres", False), args.repeat)
        diff = err(np.asarray(g.y[-1]), np.asarray(d.y[-1]).reshape(-1))
        lines.append(
            f"| {2 * Ns * Ns} | {td:.2f} s | {d.stats['nfev']} | {tg:.2f} s | {g.stats['nfev']} "
            f"| {tg / td:.3f} | {g.stats['nfev'] / d.stats['nfev']:.3f} | {diff:.1e} |"
        )
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
