"""Ensembles of Lorenz systems as in the DiffEqGPU benchmarks, side by side.

rho = linspace(0, 21, N), u0 = [1, 0, 0], t in [0, 1], Tsit5; fixed dt = 1e-3 and adaptive
(rtol = atol = 1e-8). anyxp's `solve_ensemble` on numpy, torch and jax (jit) against
diffrax `jit(vmap(diffeqsolve))`, torchdiffeq (the batch as one system: one shared step
size), and a scipy `solve_ivp` loop (N <= 1000). Times: best of --repeat, compile excluded
(warm). Ratio = time / anyxp-jax time for the JAX pairing and time / scipy-loop time for the
loop pairing, as the issue's targets state them.

Run:  python benchmarks/bench_ensemble.py [--sizes 1000 10000] [--out benchmarks/results/ensemble.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("JAX_ENABLE_X64", "1")

import anyxp
from anyxp.ode import solve_ensemble


def lorenz_batch(t: Any, y: Any, rho: Any) -> Any:
    xp = anyxp.backend(like=y).xp
    x, v, z = y[:, 0], y[:, 1], y[:, 2]
    return xp.stack([10.0 * (v - x), x * (rho[:, 0] - z) - v, x * v - 8 / 3 * z], axis=1)


def best(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def anyxp_run(name: str, n: int, mode: str, device: str | None = None) -> Callable[[], Any]:
    be = anyxp.backend(name, dtype="float64", device=device if name != "jax" else None)
    y0 = be.asarray(np.tile([1.0, 0.0, 0.0], (n, 1)))
    rho = be.asarray(np.linspace(0.0, 21.0, n)[:, None])
    opts: dict[str, Any] = {"dt": 1e-3} if mode == "fixed" else {"rtol": 1e-8, "atol": 1e-8}
    if name == "jax":
        import jax

        run = jax.jit(lambda y, r: solve_ensemble(lorenz_batch, (0.0, 1.0), y, params=r, **opts).y)
        return lambda: jax.block_until_ready(run(y0, rho))

    def run_eager() -> Any:
        out = solve_ensemble(lorenz_batch, (0.0, 1.0), y0, params=rho, **opts).y
        return be.to_numpy(out[-1, :1])  # waits for the device to finish

    return run_eager


def diffrax_run(n: int, mode: str) -> Callable[[], Any]:
    import diffrax
    import jax
    import jax.numpy as jnp

    def one(y0: Any, rho: Any) -> Any:
        def f(t: Any, y: Any, args: Any) -> Any:
            return jnp.stack(
                [10.0 * (y[1] - y[0]), y[0] * (rho - y[2]) - y[1], y[0] * y[1] - 8 / 3 * y[2]]
            )

        if mode == "fixed":
            kw: dict[str, Any] = {"dt0": 1e-3, "stepsize_controller": diffrax.ConstantStepSize()}
        else:
            kw = {"dt0": None, "stepsize_controller": diffrax.PIDController(rtol=1e-8, atol=1e-8)}
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, 1.0, y0=y0, max_steps=100_000, **kw
        )
        return sol.ys[-1]

    run = jax.jit(jax.vmap(one))
    y0 = jnp.tile(jnp.array([1.0, 0.0, 0.0]), (n, 1))
    rho = jnp.linspace(0.0, 21.0, n)
    return lambda: jax.block_until_ready(run(y0, rho))


def torchdiffeq_run(n: int, mode: str) -> Callable[[], Any]:
    import torch
    import torchdiffeq

    y0 = torch.tensor(np.tile([1.0, 0.0, 0.0], (n, 1)))
    rho = torch.linspace(0.0, 21.0, n, dtype=torch.float64)[:, None]
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)

    def f(t: Any, y: Any) -> Any:
        return lorenz_batch(t, y, rho)

    if mode == "fixed":
        return lambda: torchdiffeq.odeint(f, y0, ts, method="rk4", options={"step_size": 1e-3})
    return lambda: torchdiffeq.odeint(f, y0, ts, method="dopri5", rtol=1e-8, atol=1e-8)


def scipy_loop(n: int, mode: str) -> Callable[[], Any]:
    from scipy.integrate import solve_ivp

    rhos = np.linspace(0.0, 21.0, n)

    def run() -> None:
        for r in rhos:
            solve_ivp(
                lambda t, y, r=r: [
                    10.0 * (y[1] - y[0]),
                    y[0] * (r - y[2]) - y[1],
                    y[0] * y[1] - 8 / 3 * y[2],
                ],
                (0.0, 1.0),
                [1.0, 0.0, 0.0],
                method="RK45",
                rtol=1e-8,
                atol=1e-8,
            )

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--backends", nargs="*", default=["jax", "numpy", "torch"])
    parser.add_argument("--device", default=None, help="e.g. cuda, for torch and cupy")
    parser.add_argument("--anchors", nargs="*", default=["diffrax", "torchdiffeq", "scipy"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    lines = [
        "# Ensemble benchmark (Lorenz, DiffEqGPU setup)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}. "
        "Produced by `python benchmarks/bench_ensemble.py`. Times are warm (compile excluded), best of "
        f"{args.repeat}. Fixed: dt = 1e-3 (Tsit5; torchdiffeq rk4). Adaptive: rtol = atol = 1e-8.",
        "",
        "| N | mode | implementation | seconds | ratio to anyxp jax | ratio to scipy loop |",
        "|---|---|---|---|---|---|",
    ]
    for n in args.sizes:
        for mode in ("fixed", "adaptive"):
            rows: list[tuple[str, float]] = []
            for name in args.backends:
                run = anyxp_run(name, n, mode, args.device)
                rows.append((f"anyxp {name}", best(run, args.repeat)))
            if "diffrax" in args.anchors:
                rows.append(("diffrax jit(vmap)", best(diffrax_run(n, mode), args.repeat)))
            if "torchdiffeq" in args.anchors:
                run = torchdiffeq_run(n, mode)
                rows.append(("torchdiffeq (one shared step)", best(run, args.repeat)))
            if "scipy" in args.anchors and mode == "adaptive" and n <= 1000:
                rows.append(("scipy RK45 loop", best(scipy_loop(n, mode), 1)))
            ours = rows[0][1]
            loop = next((t for label, t in rows if label.startswith("scipy")), None)
            for label, seconds in rows:
                to_loop = f"{seconds / loop:.3f}" if loop else "—"
                lines.append(
                    f"| {n} | {mode} | {label} | {seconds:.4f} | {seconds / ours:.2f} | {to_loop} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
