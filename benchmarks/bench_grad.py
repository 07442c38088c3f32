"""Gradients through ODE solves, side by side with diffrax and torchdiffeq, at equal error.

Problems (the same right-hand side code for every library: each is written once over an
array namespace ``xp`` and called with ``jax.numpy`` or ``torch``):

- ``lotka_volterra``: p = [1.5, 1, 3, 1], y0 = [1, 1], stored at t = 0:0.1:10,
  loss = sum (y2 - 1)^2; gradient in p and y0.
- ``aggregation``: reversible aggregation by monomer addition (the Becker-Doering cluster
  equations truncated at 10 species). c_i is the concentration of clusters of i monomers;
  the fluxes J_i = a_i c_1 c_i - b c_{i+1} (i = 1..9) give
  c_1' = -J_1 - sum_i J_i, c_i' = J_{i-1} - J_i (i = 2..9), c_10' = J_9; mass sum i c_i is
  conserved. 10 rate parameters k = [a_1..a_9, b] with a_i = 2 / sqrt(i), b = 0.5;
  c(0) = [2, 0, ..., 0]; loss = squared distance of c at t = 1, 2, ..., 20 to a target
  trajectory (the same network with every a_i 10% larger and b 20% smaller, scipy DOP853 at
  1e-12); gradient in k and c(0).

Contenders (rtol = atol = tol for all, max_steps = 4096 for every JAX solve):

- JAX (jit of the gradient, x64; compile timed apart, then warm runs): anyxp ``solve``
  Tsit5 in each sensitivity mode under ``jax.grad``; diffrax Tsit5 with
  ``RecursiveCheckpointAdjoint`` and ``BacksolveAdjoint`` under ``jax.grad`` and
  ``ForwardMode`` under ``jax.jacfwd``.
- torch (CPU, float64, classic autograd ``loss.backward()``): anyxp ``solve`` dopri5 in each
  mode; torchdiffeq dopri5 ``odeint`` (backpropagation through the solver) and
  ``odeint_adjoint``.

Error: the relative 2-norm error of the whole gradient (p and y0 together) against a
reference: diffrax Dopri8 at rtol = atol = 1e-13 (checked against anyxp dop853 ``direct``
at 1e-13; both numbers are in the results). "At equal error" compares each anyxp run with
the anchor's time-vs-error curve interpolated (log-log) to anyxp's error; '-' where it
falls outside the anchor's sweep. anyxp runs at tol = 1e-6 and 1e-8, the anchors at
1e-5, 1e-7 and 1e-9 (their curves then bracket anyxp's errors). Times are the best of as
many warm runs as fit in 1 s (at most 50; one for a run over 1 s), after a warm-up (JAX:
one call of the compiled gradient; torch: one gradient at tol = 1e-2). A sweep stops after
a run over ``--budget`` seconds: tighter tolerances would only cost more.

Memory: one fresh subprocess per (contender, horizon) on a batched Lotka-Volterra (problem
one with ``--copies`` initial states as one state of shape (2, copies), shared p, 11 stored
times, gradient in p only) for t1 from 1 to 100 (the steps grow ~x100). Each subprocess
imports, builds and compiles the gradient (JAX: ``jit(...).lower().compile()``; torch: one
gradient over t1 = 0.5), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``),
takes the RSS then as baseline, runs the gradient once and reports
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` minus that baseline: the peak memory the
gradient call itself adds, compilation excluded. The ``forward`` and ``interpolating``
modes are left out here (one pass per input; every step's state and interpolant kept).

Run:  python benchmarks/bench_grad.py [--quick] [--out benchmarks/results/grad.md] [--plot docs/_static/grad_memory.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("JAX_ENABLE_X64", "1")

from _common import best
from bench_stiff import at_error

MODES = ("checkpointed", "direct", "backsolve", "interpolating", "forward")
TOLERANCES = (1e-6, 1e-8)  # anyxp
ANCHOR_TOLERANCES = (1e-5, 1e-7, 1e-9)  # around anyxp's: its errors fall inside
TIMING_CAP = 1.0  # seconds of repeated runs per point, beyond the first
MAX_REPEAT = 50  # runs per point at most (cheap runs: the best of many, against noise)
MAX_STEPS = 4096  # every JAX solve: diffrax's default (anyxp's, 1e5, sizes the jit buffers)
MEMORY_T1 = (1.0, 10.0, 100.0)
MEMORY_TOL = 1e-6
WARM_UP_TOL = 1e-2
MEMORY_TIMEOUT = 120.0  # seconds per memory subprocess
FLAT_MB = 5.0  # memory "flat": RSS noise of a fresh process (allocator arenas, lazy code)
#: torch's intra-op threads: on a busy 2-core machine its OpenMP kernels (from ~3e4 elements
#: on) wait for a second core for milliseconds; every problem here is smaller or batched.
TORCH_THREADS = 1
HERE = Path(__file__).resolve()


# -- the problems, written once over an array namespace ---------------------------------------
def lotka_volterra(xp: Any, y: Any, p: Any) -> Any:
    return xp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def aggregation(xp: Any, c: Any, k: Any) -> Any:
    flux = k[:9] * c[0] * c[:-1] - k[9] * c[1:]  # J_i = a_i c_1 c_i - b c_(i+1)
    return xp.concat([-flux[:1] - xp.sum(flux), flux[:-1] - flux[1:], flux[-1:]])


@dataclass(frozen=True)
class Problem:
    """A loss of a solve: ``loss(xp, ys)`` of the states stored at ``te`` in ``[0, t1]``."""

    rhs: Callable[[Any, Any, Any], Any]
    p: np.ndarray
    y0: np.ndarray
    t1: float
    te: np.ndarray
    target: np.ndarray | None = None  # compare every stored state with it (else LV's loss)
    wrt_y0: bool = True

    def loss(self, xp: Any, ys: Any) -> Any:
        if self.target is None:
            return xp.sum((ys[:, 1, ...] - 1.0) ** 2)
        return xp.sum((ys - xp.asarray(self.target, dtype=ys.dtype)) ** 2)


K_AGGREGATION = np.array([*(2.0 / np.sqrt(np.arange(1, 10))), 0.5])
C0_AGGREGATION = np.array([2.0] + [0.0] * 9)
TE_AGGREGATION = np.linspace(1.0, 20.0, 20)


@cache
def aggregation_target() -> np.ndarray:
    from scipy.integrate import solve_ivp

    k = K_AGGREGATION * np.array([1.1] * 9 + [0.8])
    sol = solve_ivp(
        lambda t, c: aggregation(np, c, k), (0.0, 20.0), C0_AGGREGATION, method="DOP853",
        t_eval=TE_AGGREGATION, rtol=1e-12, atol=1e-12,
    )  # fmt: skip
    return np.asarray(sol.y.T)


def problem(name: str, t1: float | None = None, copies: int = 1) -> Problem:
    """``lotka_volterra``, ``aggregation``, or ``memory`` (batched LV to ``t1``)."""
    p_lv = np.array([1.5, 1.0, 3.0, 1.0])
    if name == "lotka_volterra":
        return Problem(lotka_volterra, p_lv, np.array([1.0, 1.0]), 10.0, np.linspace(0, 10, 101))
    if name == "aggregation":
        return Problem(
            aggregation, K_AGGREGATION, C0_AGGREGATION, 20.0, TE_AGGREGATION, aggregation_target()
        )
    assert name == "memory" and t1 is not None
    y0 = np.stack([np.linspace(0.5, 1.5, copies), np.ones(copies)])
    return Problem(lotka_volterra, p_lv, y0, t1, np.linspace(0, t1, 11), wrt_y0=False)


# -- the contenders: each builds () -> (dp, dy0) as numpy for one problem and tolerance --------
def anyxp_jax(mode: str) -> Callable[..., Any]:
    def build(prob: Problem, tol: float, max_steps: int = MAX_STEPS) -> Any:
        import jax
        import jax.numpy as jnp

        import anyxp
        from anyxp.ode import solve

        anyxp.backend("jax", dtype="float64")

        def loss(p: Any, y0: Any) -> Any:
            sol = solve(
                lambda t, y, p: prob.rhs(jnp, y, p), (0.0, prob.t1), y0, args=(p,),
                t_eval=prob.te, rtol=tol, atol=tol, method="tsit5", sensitivity=mode,
                max_steps=max_steps,
            )  # fmt: skip
            return prob.loss(jnp, sol.y)

        return jax_gradient(jax.grad, loss, prob)

    return build


def diffrax_jax(adjoint: str) -> Callable[..., Any]:
    def build(prob: Problem, tol: float, max_steps: int = MAX_STEPS, solver: str = "Tsit5") -> Any:
        import diffrax
        import jax
        import jax.numpy as jnp

        term = diffrax.ODETerm(lambda t, y, p: prob.rhs(jnp, y, p))
        how = getattr(diffrax, adjoint)()

        def loss(p: Any, y0: Any) -> Any:
            sol = diffrax.diffeqsolve(
                term, getattr(diffrax, solver)(), 0.0, prob.t1, None, y0, args=p,
                saveat=diffrax.SaveAt(ts=jnp.asarray(prob.te)), adjoint=how,
                stepsize_controller=diffrax.PIDController(rtol=tol, atol=tol),
                max_steps=max_steps,
            )  # fmt: skip
            return prob.loss(jnp, sol.ys)

        return jax_gradient(jax.jacfwd if adjoint == "ForwardMode" else jax.grad, loss, prob)

    return build


def jax_gradient(transform: Callable[..., Any], loss: Callable[..., Any], prob: Problem) -> Any:
    """The jitted gradient as ``(compile, run)``: ``compile()`` builds the executable (timed
    apart, no run), ``run()`` calls it and returns numpy gradients."""
    import jax
    import jax.numpy as jnp

    argnums = (0, 1) if prob.wrt_y0 else (0,)
    args = (jnp.asarray(prob.p), jnp.asarray(prob.y0))
    jitted = jax.jit(transform(loss, argnums=argnums))
    compiled: list[Any] = []

    def compile_() -> None:
        compiled.append(jitted.lower(*args).compile())

    def run() -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(g) for g in jax.block_until_ready(compiled[-1](*args)))

    return compile_, run


def anyxp_torch(mode: str) -> Callable[..., Any]:
    def build(prob: Problem, tol: float, max_steps: int = MAX_STEPS) -> Any:
        import torch

        import anyxp
        from anyxp.ode import solve

        anyxp.backend("torch", dtype="float64")
        torch.set_num_threads(TORCH_THREADS)

        def run() -> tuple[np.ndarray, ...]:
            p, y0 = torch_inputs(prob)
            sol = solve(
                lambda t, y, p: prob.rhs(torch, y, p), (0.0, prob.t1), y0, args=(p,),
                t_eval=prob.te, rtol=tol, atol=tol, method="dopri5", sensitivity=mode,
            )  # fmt: skip
            prob.loss(torch, sol.y).backward()
            return torch_grads(prob, p, y0)

        return None, run

    return build


def torchdiffeq_torch(adjoint: bool) -> Callable[..., Any]:
    def build(prob: Problem, tol: float, max_steps: int = MAX_STEPS) -> Any:
        import torch
        import torchdiffeq

        torch.set_num_threads(TORCH_THREADS)

        class Rhs(torch.nn.Module):
            def __init__(self, p: Any) -> None:
                super().__init__()
                self.p = p

            def forward(self, t: Any, y: Any) -> Any:
                return prob.rhs(torch, y, self.p)

        skip = 0 if prob.te[0] == 0.0 else 1  # torchdiffeq's times start at t0
        times = torch.tensor(np.concatenate([[0.0] * skip, prob.te]), dtype=torch.float64)

        def run() -> tuple[np.ndarray, ...]:
            p, y0 = torch_inputs(prob)
            f = Rhs(p)
            opts = {"rtol": tol, "atol": tol, "method": "dopri5"}
            if adjoint:
                ys = torchdiffeq.odeint_adjoint(f, y0, times, adjoint_params=(p,), **opts)
            else:
                ys = torchdiffeq.odeint(f, y0, times, **opts)
            prob.loss(torch, ys[skip:]).backward()
            return torch_grads(prob, p, y0)

        return None, run

    return build


def torch_inputs(prob: Problem) -> tuple[Any, Any]:
    import torch

    p = torch.tensor(prob.p, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor(prob.y0, dtype=torch.float64, requires_grad=prob.wrt_y0)
    return p, y0


def torch_grads(prob: Problem, p: Any, y0: Any) -> tuple[np.ndarray, ...]:
    return (p.grad.numpy(), y0.grad.numpy()) if prob.wrt_y0 else (p.grad.numpy(),)


CONTENDERS: dict[str, tuple[str, Callable[..., Any]]] = {
    **{f"anyxp jax {m}": ("jax", anyxp_jax(m)) for m in MODES},
    "diffrax RecursiveCheckpointAdjoint": ("jax", diffrax_jax("RecursiveCheckpointAdjoint")),
    "diffrax BacksolveAdjoint": ("jax", diffrax_jax("BacksolveAdjoint")),
    "diffrax ForwardMode": ("jax", diffrax_jax("ForwardMode")),
    **{f"anyxp torch {m}": ("torch", anyxp_torch(m)) for m in MODES},
    "torchdiffeq odeint": ("torch", torchdiffeq_torch(adjoint=False)),
    "torchdiffeq odeint_adjoint": ("torch", torchdiffeq_torch(adjoint=True)),
}
#: --quick: the targets' contenders; memory of backsolve only.
QUICK = (
    "anyxp jax checkpointed",
    "diffrax RecursiveCheckpointAdjoint",
    "anyxp torch checkpointed",
    "torchdiffeq odeint_adjoint",
)
#: The anchors of the equal-error tables, per library.
ANCHORS = {
    "jax": (
        "diffrax RecursiveCheckpointAdjoint",
        "diffrax BacksolveAdjoint",
        "diffrax ForwardMode",
    ),
    "torch": ("torchdiffeq odeint", "torchdiffeq odeint_adjoint"),
}


# -- workers: each runs in its own subprocess -------------------------------------------------
def relative_error(grads: tuple[np.ndarray, ...], ref: list[float]) -> float:
    g = np.concatenate([np.ravel(x) for x in grads])
    r = np.asarray(ref)
    return float(np.linalg.norm(g - r) / np.linalg.norm(r))


def sweep_worker(label: str, name: str, tols: list[float], ref: list[float], opts: Any) -> None:
    """Time and check one contender over the tolerances; one JSON line per run."""
    prob = problem(name)
    build = CONTENDERS[label][1]
    if CONTENDERS[label][0] == "torch":
        try:  # torch's first graph and dispatch, at a loose tolerance: cheap
            build(prob, WARM_UP_TOL)[1]()
        except Exception:  # noqa: BLE001  (a solver refusing so loose a tolerance: no matter)
            pass
    for tol in tols:
        compile_, run = build(prob, tol)
        compile_s = None
        if compile_ is not None:
            start = time.perf_counter()
            compile_()
            compile_s = time.perf_counter() - start
            run()  # JAX's first dispatch of the new executable
        seconds, grads = best(run, 1)
        more = min(MAX_REPEAT - 1, int(TIMING_CAP / seconds))  # cheap runs: best of more
        if more > 0:
            seconds = min(seconds, best(run, more)[0])
        ok = bool(all(np.all(np.isfinite(g)) for g in grads))
        err = relative_error(grads, ref) if ok else math.nan
        row = {"tol": tol, "time": seconds, "compile": compile_s, "err": err, "ok": ok}
        print(json.dumps(row), flush=True)
        if seconds > opts.budget:
            break  # tighter tolerances would cost more still


def reference_worker(name: str) -> None:
    """The reference gradient (diffrax Dopri8, 1e-13) and anyxp dop853 direct at 1e-13."""
    prob = problem(name)
    compile_, run = diffrax_jax("RecursiveCheckpointAdjoint")(prob, 1e-13, 100_000, "Dopri8")
    compile_()
    ref = np.concatenate([np.ravel(g) for g in run()])

    import jax
    import jax.numpy as jnp

    import anyxp
    from anyxp.ode import solve

    anyxp.backend("jax", dtype="float64")

    def loss(p: Any, y0: Any) -> Any:
        sol = solve(
            lambda t, y, p: prob.rhs(jnp, y, p), (0.0, prob.t1), y0, args=(p,), t_eval=prob.te,
            rtol=1e-13, atol=1e-13, method="dop853", sensitivity="direct", max_steps=8192,
        )  # fmt: skip
        return prob.loss(jnp, sol.y)

    ours = jax.jit(jax.grad(loss, argnums=(0, 1)))(jnp.asarray(prob.p), jnp.asarray(prob.y0))
    check = relative_error(tuple(np.asarray(g) for g in ours), list(ref))
    print(json.dumps({"ref": ref.tolist(), "check": check}), flush=True)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_worker(label: str, t1: float, max_steps: int, copies: int) -> None:
    """Peak memory a gradient call adds, after imports, build and compilation."""
    build = CONTENDERS[label][1]
    prob = problem("memory", t1, copies)
    compile_, run = build(prob, MEMORY_TOL, max_steps)
    if compile_ is not None:
        compile_()
    else:
        build(problem("memory", 0.5, copies), MEMORY_TOL)[1]()  # first torch graph
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS mark restarts from the current RSS
        baseline = rss_mb()
    except OSError:
        baseline = peak_mb()  # no reset: the peak so far is the baseline
    start = time.perf_counter()
    grads = run()
    seconds = time.perf_counter() - start
    ok = bool(all(np.all(np.isfinite(g)) for g in grads))
    row = {"peak": peak_mb() - baseline, "baseline": baseline, "time": seconds, "ok": ok}
    print(json.dumps(row), flush=True)


# -- the orchestrator ------------------------------------------------------------------------
def spawn(argv: list[str], timeout: float, mem_gb: float) -> tuple[list[dict[str, Any]], str]:
    """Run this file as a worker; its JSON lines, and '' or why it stopped."""

    def limit() -> None:
        cap = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        proc = subprocess.run(
            [sys.executable, str(HERE), *argv], capture_output=True, text=True,
            timeout=timeout, preexec_fn=limit, check=False,
        )  # fmt: skip
        out, why = proc.stdout, "" if proc.returncode == 0 else _failure(proc.stderr)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        why = f"timeout ({timeout:.0f} s)"
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rows, why


def _failure(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "crashed"
    return "out of memory" if "MemoryError" in stderr or "RESOURCE_EXHAUSTED" in stderr else last


def steps_to(t1: float, method: str, copies: int) -> int:
    """Accepted steps of the memory problem's forward solve (anyxp on numpy)."""
    from anyxp.ode import solve

    prob = problem("memory", t1, copies)
    sol = solve(
        lambda t, y, p: prob.rhs(np, y, p), (0.0, t1), prob.y0, args=(prob.p,), t_eval=prob.te,
        rtol=MEMORY_TOL, atol=MEMORY_TOL, method=method,
    )  # fmt: skip
    return int(sol.stats["accepted"])


def versions() -> str:
    from importlib.metadata import version

    names = ("anyxp", "jax", "diffrax", "torch", "torchdiffeq", "numpy")
    return ", ".join(f"{n} {version(n)}" for n in names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--quick", action="store_true", help="a 1-2 minute smoke run")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds per run, at most")
    parser.add_argument("--mem-gb", type=float, default=6.0, help="address space per worker")
    parser.add_argument("--copies", type=int, default=1024, help="memory problem: LV copies")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--worker", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.worker:
        kind, *rest = args.worker
        if kind == "sweep":
            label, name, tols, ref = rest
            sweep_worker(label, name, json.loads(tols), json.loads(ref), args)
        elif kind == "reference":
            reference_worker(rest[0])
        else:
            memory_worker(rest[0], float(rest[1]), int(rest[2]), args.copies)
        return
    report = run_all(args)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


def run_all(args: Any) -> str:
    started = time.perf_counter()
    names = ["lotka_volterra"] if args.quick else ["lotka_volterra", "aggregation"]
    tols = [1e-6] if args.quick else list(TOLERANCES)
    anchor_tols = [1e-5, 1e-7] if args.quick else list(ANCHOR_TOLERANCES)
    flags = [f"--budget={args.budget}", f"--copies={args.copies}"]
    refs: dict[str, dict[str, Any]] = {}
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    notes: dict[tuple[str, str], str] = {}
    for name in names:
        rows, why = spawn(["--worker", "reference", name], 600, args.mem_gb)
        if not rows:
            raise SystemExit(f"reference gradient for {name} failed: {why}")
        refs[name] = rows[0]
        print(f"{name}: reference ready (anyxp dop853 direct 1e-13 differs by "
              f"{rows[0]['check']:.1e})", flush=True)  # fmt: skip
        for label in QUICK if args.quick else CONTENDERS:
            sweep = anchor_tols if label.split()[0] != "anyxp" else tols
            argv = ["--worker", "sweep", label, name, json.dumps(sweep), json.dumps(rows[0]["ref"])]
            runs[(name, label)], notes[(name, label)] = spawn(
                argv + flags, 600, args.mem_gb
            )  # fmt: skip
            for r in runs[(name, label)]:
                print(f"{name:15s} {label:36s} {r['tol']:7.0e} {r['time'] * 1e3:10.2f} ms  "
                      f"err {r['err']:.1e}", flush=True)  # fmt: skip
            if notes[(name, label)]:
                print(f"{name:15s} {label:36s} stopped: {notes[(name, label)]}", flush=True)
    memory = {} if args.no_memory else measure_memory(args, flags)
    elapsed = time.perf_counter() - started
    text = render(args, names, refs, runs, notes, memory, elapsed)
    if args.plot and memory:
        memory_plot(args.plot, memory)
    return text


def measure_memory(args: Any, flags: list[str]) -> dict[str, list[dict[str, Any]]]:
    horizons = (1.0, 10.0) if args.quick else MEMORY_T1
    labels = [label for label in CONTENDERS if not label.endswith((" forward", " interpolating"))]
    if args.quick:
        labels = ["anyxp jax backsolve", "anyxp torch backsolve"]
    steps = {
        lib: {t1: steps_to(t1, method, args.copies) for t1 in horizons}
        for lib, method in (("jax", "tsit5"), ("torch", "dopri5"))
    }
    memory: dict[str, list[dict[str, Any]]] = {}
    for label in labels:
        lib = CONTENDERS[label][0]
        for t1 in horizons:
            n = steps[lib][t1]
            max_steps = max(64, 2 ** math.ceil(math.log2(2 * n)))
            argv = ["--worker", "memory", label, str(t1), str(max_steps), *flags]
            rows, why = spawn(argv, MEMORY_TIMEOUT, args.mem_gb)
            row = rows[0] if rows else {"peak": math.nan, "ok": False, "time": math.nan}
            row.update(t1=t1, steps=n, max_steps=max_steps, why=why)
            memory.setdefault(label, []).append(row)
            print(f"memory {label:36s} t1 {t1:6g} steps {n:6d} peak +{row['peak']:8.1f} MB "
                  f"({row['time']:.1f} s) {why}", flush=True)  # fmt: skip
            if why or row["time"] * 10 > MEMORY_TIMEOUT:
                break  # the next horizon, 10x the steps, would fail or run out of time
    return memory


# -- the report ------------------------------------------------------------------------------
def equal_error(
    runs: dict[tuple[str, str], list[dict[str, Any]]], name: str, label: str, anchor: str
) -> list[tuple[dict[str, Any], float | None]]:
    """Each run of ``label`` with its time over the anchor's at the same error."""
    curve = runs.get((name, anchor), [])
    out = []
    for r in runs.get((name, label), []):
        theirs = at_error(curve, r["err"], "time") if r["ok"] else None
        out.append((r, None if theirs is None else r["time"] / theirs))
    return out


def summary(ratios: list[float | None]) -> str:
    have = sorted(x for x in ratios if x is not None)
    if not have:
        return "-"
    median = float(np.median(have))
    if len(have) == 1:
        return f"{median:.2f} (1 point)"
    return f"{median:.2f} ({have[0]:.2f}-{have[-1]:.2f}, {len(have)} points)"


def render(
    args: Any,
    names: list[str],
    refs: dict[str, dict[str, Any]],
    runs: dict[tuple[str, str], list[dict[str, Any]]],
    notes: dict[tuple[str, str], str],
    memory: dict[str, list[dict[str, Any]]],
    elapsed: float,
) -> str:
    command = " ".join(["python benchmarks/bench_grad.py", *sys.argv[1:]])
    lines = [
        "# Gradients through ODE solves",
        "",
        f"Produced by `{command}` in {elapsed / 60:.1f} min. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores, CPU only; Python {platform.python_version()}; {versions()}.",
        "",
        "Problems, contenders and measures: see the docstring of `benchmarks/bench_grad.py`. "
        "rtol = atol = tol; error = relative 2-norm error of the gradient (parameters and "
        "initial state) against diffrax Dopri8 at 1e-13. JAX: jit of the gradient, Tsit5, "
        f"max_steps = {MAX_STEPS}, compile timed apart; torch: dopri5, classic autograd. "
        "Ratio = anyxp time / anchor time at anyxp's error, the anchor's curve interpolated "
        "log-log (< 1: anyxp faster; '-': outside the anchor's sweep).",
        "",
        "Reference check (anyxp dop853 `direct` at 1e-13 vs the reference): "
        + ", ".join(f"{n} {refs[n]['check']:.1e}" for n in names)
        + ".",
        "",
        "## At equal error: time ratios, median (range)",
        "",
        "| problem | anyxp | " + " | ".join(f"/ {a}" for a in ANCHORS["jax"]) + " |",
        "|---|---|---|---|---|",
    ]
    for lib in ("jax", "torch"):
        if lib == "torch":
            lines += [
                "",
                "| problem | anyxp | " + " | ".join(f"/ {a}" for a in ANCHORS["torch"]) + " |",
                "|---|---|---|---|",
            ]
        for name in names:
            for mode in MODES:
                label = f"anyxp {lib} {mode}"
                cells = [
                    summary([x for _, x in equal_error(runs, name, label, a)]) for a in ANCHORS[lib]
                ]
                lines.append(f"| {name} | {lib} {mode} | " + " | ".join(cells) + " |")
    lines += targets(names, runs, memory)
    lines += [
        "",
        "## Every run",
        "",
        "Time: after a warm-up, the best of as many runs as fit in "
        f"{TIMING_CAP:g} s (at most {MAX_REPEAT}; one for a run over {TIMING_CAP:g} s); a sweep "
        f"stops after a run over --budget = {args.budget:g} s. Compile: JAX's lower + compile "
        "of the jitted gradient (not in the time).",
        "",
        "| problem | contender | tol | time | compile | gradient error |",
        "|---|---|---|---|---|---|",
    ]
    for (name, label), rows in runs.items():
        for r in rows:
            compile_s = "-" if r["compile"] is None else f"{r['compile']:.1f} s"
            err = f"{r['err']:.1e}" if r["ok"] else "non-finite"
            lines.append(
                f"| {name} | {label} | {r['tol']:g} | {r['time'] * 1e3:.2f} ms | {compile_s} "
                f"| {err} |"
            )
        if notes[(name, label)]:
            lines.append(f"| {name} | {label} | | stopped: {notes[(name, label)]} | | |")
    lines += [
        "",
        "## Every anyxp run at equal error",
        "",
        "| problem | anyxp | tol | error | time | ratios to the anchors |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        for lib in ("jax", "torch"):
            for mode in MODES:
                label = f"anyxp {lib} {mode}"
                per_anchor = [equal_error(runs, name, label, a) for a in ANCHORS[lib]]
                for k, r in enumerate(runs.get((name, label), [])):
                    cells = []
                    for anchor, pairs in zip(ANCHORS[lib], per_anchor, strict=True):
                        x = pairs[k][1]
                        cells.append(f"{anchor.split()[-1]} {'-' if x is None else f'{x:.2f}'}")
                    lines.append(
                        f"| {name} | {lib} {mode} | {r['tol']:g} | {r['err']:.1e} | "
                        f"{r['time'] * 1e3:.2f} ms | {', '.join(cells)} |"
                    )
    if memory:
        lines += memory_table(args, memory)
    return "\n".join(lines) + "\n"


def targets(
    names: list[str],
    runs: dict[tuple[str, str], list[dict[str, Any]]],
    memory: dict[str, list[dict[str, Any]]],
) -> list[str]:
    def ratios(name: str, label: str, anchor: str) -> list[float]:
        return [x for _, x in equal_error(runs, name, label, anchor) if x is not None]

    out = ["", "## Targets", ""]
    for name in names:
        have = ratios(name, "anyxp jax checkpointed", "diffrax RecursiveCheckpointAdjoint")
        med = float(np.median(have)) if have else math.nan
        verdict = "no data" if not have else ("met" if med <= 1.0 else "missed")
        out.append(
            f"- {name}: jax checkpointed ≤ 1.0x diffrax RecursiveCheckpointAdjoint at equal "
            f"error: **{verdict}** (median ratio {med:.2f}, {summary(list(have))})."
        )
    for name in names:
        medians = {
            mode: float(np.median(have))
            for mode in MODES
            if (have := ratios(name, f"anyxp torch {mode}", "torchdiffeq odeint_adjoint"))
        }
        fastest = min(medians, key=medians.__getitem__, default=None)
        for what, mode in (("the default, checkpointed", "checkpointed"), ("fastest", fastest)):
            if mode not in medians or (what == "fastest" and mode == "checkpointed"):
                continue
            speedup = 1 / medians[mode]
            out.append(
                f"- {name}: torch ≥ 3x faster than torchdiffeq odeint_adjoint at equal error, "
                f"{what} mode ({mode}): **{'met' if speedup >= 3 else 'missed'}** "
                f"({speedup:.1f}x faster: median time ratio {medians[mode]:.2f})."
            )
    for lib in ("jax", "torch"):
        rows = [r for r in memory.get(f"anyxp {lib} backsolve", []) if r["ok"]]
        if len(rows) < 2:
            continue
        first, last = rows[0], rows[-1]
        growth = last["peak"] - first["peak"]
        flat = growth <= max(FLAT_MB, 0.5 * max(first["peak"], 0.0))
        out.append(
            f"- {lib} backsolve memory flat as the steps grow "
            f"x{last['steps'] / first['steps']:.0f} ({first['steps']} → {last['steps']}): "
            f"**{'met' if flat else 'missed'}** ({first['peak']:.1f} → {last['peak']:.1f} MB "
            f"above baseline; flat means growth ≤ {FLAT_MB:g} MB or ≤ 50%)."
        )
    return out


def memory_table(args: Any, memory: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "",
        "## Peak memory",
        "",
        f"Batched Lotka-Volterra: {args.copies} copies as one state (2, {args.copies}), shared "
        f"p, 11 stored times, tol {MEMORY_TOL:g}, gradient in p. Peak = ru_maxrss during one "
        "gradient call minus the RSS just before it (fresh process; imports, build and "
        "compilation done, peak mark reset). JAX solves get max_steps = the power of two ≥ "
        "2 x steps. anyxp's forward and interpolating modes are left out (one pass per "
        f"input, and the state alone has {2 * args.copies} components; every step's state "
        "and interpolant kept); diffrax ForwardMode differentiates p only.",
        "",
        "| contender | t1 | steps | max_steps (JAX) | peak above baseline | time |",
        "|---|---|---|---|---|---|",
    ]
    for label, rows in memory.items():
        jax_run = CONTENDERS[label][0] == "jax"
        for r in rows:
            peak = f"{r['peak']:.1f} MB" if r["ok"] else (r["why"] or "non-finite")
            lines.append(
                f"| {label} | {r['t1']:g} | {r['steps']} | "
                f"{r['max_steps'] if jax_run else '-'} | {peak} | {r['time']:.2f} s |"
            )
    return lines


def memory_plot(path: Path, memory: dict[str, list[dict[str, Any]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, lib in zip(axes, ("jax", "torch"), strict=True):
        for label, rows in memory.items():
            if CONTENDERS[label][0] != lib:
                continue
            pts = [(r["steps"], max(r["peak"], 0.1)) for r in rows if r["ok"]]
            if pts:
                x, y = zip(*pts, strict=True)
                style = "-o" if label.startswith("anyxp") else "--s"
                ax.loglog(x, y, style, label=label.replace(f"anyxp {lib} ", "anyxp "), ms=4)
        ax.set_title(f"{lib} (CPU)")
        ax.set_xlabel("accepted steps of the forward solve")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("peak memory of one gradient, MB above baseline")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
