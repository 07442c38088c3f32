"""ZCS against aligned derivatives: memory and time of one physics-informed training step.

The scaling setup of the ZCS paper (Leng et al. 2023): a DeepONet with branch
[50, 128, 128, 128] and trunk [2, 128, 128, 128], tanh, M = 80 input functions, N points in
[0, 1]^2, and the loss mean((sum_{k=1..3} (d/dx + d/dy)^k u - f)^2), which reads every
partial derivative of u of order 1 to 3 (nine of them) at every point of every function.
One training iteration is: the loss through :func:`anyxp.pinn.pinn_loss`, its gradient
with respect to the parameters (``be.ad.value_and_grad``), one Adam update; float32; on
JAX the whole step is one ``be.jit`` program. The only difference between the rows of a
pair is ``method="zcs"`` (the trunk on the N points once, derivatives with respect to one
scalar shift per coordinate) or ``method="aligned"`` (the trunk on M*N points, the
per-point derivative).

Each configuration runs in its own Python process (one thread per library), so the
numbers of one do not leak into another. Time: the median of the timed iterations, after
a first one (JAX compiles there). Memory ("step MB"): what one iteration adds to the
process's resident set at its peak, over the resting state before it. To make the
resident set follow what the libraries hold, glibc is told (``mallopt``) to serve every
block of 16 KiB or more by its own mapping, returned to the system when freed; before each
measured iteration the process sleeps a moment (JAX frees buffers asynchronously) and
trims the heap; the largest of a few such iterations is reported. A parent process watches
each run and kills it when its resident set passes ``--cap-mb``; aligned runs whose
extrapolated memory would pass the cap are not started (the full-size aligned step needs
tens of GB on a CPU).

Then the diffusion-reaction operator of :func:`anyxp.pinn.train_diffusion_reaction` is
trained longer than the tests can afford, on torch and on JAX, to state its test error.

Run:  python benchmarks/bench_pinn.py [--points 50 100 200] [--full 8000]
      [--train-iterations 4000] [--out benchmarks/results/pinn.md]
      [--plot docs/_static/pinn_zcs.png]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

M, SENSORS, WIDTH, ORDER = 80, 50, 128, 3
#: Every partial derivative of order 1 to ORDER in (x, y).
PARTIALS = {
    f"u_{i}{j}": (i, j) for i in range(ORDER + 1) for j in range(ORDER + 1) if 0 < i + j <= ORDER
}
MEASURED = 2  # iterations whose memory is measured, the largest reported
START = time.perf_counter()


# -- one configuration, in a child process ---------------------------------------------------
def child(name: str, method: str, n_points: int, iterations: int) -> dict[str, Any]:
    """Time ``iterations`` training steps after one untimed step; then measure memory."""
    import math

    import numpy as np

    import anyxp
    from anyxp import nn, pinn

    _one_thread(name)
    be = anyxp.backend(name, dtype="float32")
    rng = np.random.default_rng(0)
    points = be.asarray(rng.uniform(0.0, 1.0, (n_points, 2)))
    data = {
        "v": be.asarray(rng.standard_normal((M, SENSORS))),
        "f": be.asarray(rng.standard_normal((M, n_points))),
    }
    params = pinn.deeponet_init(
        be.random.key(0), [SENSORS, WIDTH, WIDTH, WIDTH], [2, WIDTH, WIDTH, WIDTH], backend=be
    )

    def residual(d: dict[str, Any], x: Any, data: Any) -> Any:
        total = -data["f"]
        for k in range(1, ORDER + 1):
            for i in range(k + 1):
                total = total + math.comb(k, i) * d[f"u_{i}{k - i}"]
        return total

    term = pinn.Term("pde", points, residual, orders=PARTIALS)
    net = lambda p, data, x: pinn.deeponet_apply(p, data["v"], x)  # noqa: E731
    loss = pinn.pinn_loss(net, [term], method=method)
    opt = nn.adam(1e-3)

    @be.jit
    def step(params: Any, state: Any, data: Any) -> tuple[Any, Any, Any]:
        value, grads = be.ad.value_and_grad(loss)(params, data)
        params, state = opt.update(grads, state, params)
        return params, state, value

    state = opt.init(params)
    begin = time.perf_counter()
    params, state, value = step(params, state, data)
    losses = [float(value)]
    first_s = time.perf_counter() - begin
    seconds = []
    for _ in range(iterations):
        begin = time.perf_counter()
        params, state, value = step(params, state, data)
        losses.append(float(value))  # waits for the step
        seconds.append(time.perf_counter() - begin)

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 16 * 1024)  # M_MMAP_THRESHOLD: blocks >= 16 KiB get their own mapping
    libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD: hand freed heap tops back at once
    step_mb = 0.0
    for _ in range(MEASURED):
        gc.collect()
        time.sleep(0.5)  # let asynchronous frees (JAX) land
        libc.malloc_trim(0)
        _reset_peak()
        before = _status("VmRSS")
        params, state, value = step(params, state, data)
        losses.append(float(value))
        step_mb = max(step_mb, (_status("VmHWM") - before) / 1024)
    return {
        "backend": name,
        "method": method,
        "points": n_points,
        "ms": float(np.median(seconds) * 1e3),
        "first_s": first_s,
        "step_mb": step_mb,
        "losses": losses,
    }


def train_child(name: str, iterations: int) -> dict[str, Any]:
    """Train the diffusion-reaction operator (ZCS, the defaults) and report its test error."""
    import numpy as np

    from anyxp import pinn

    _one_thread(name)
    begin = time.perf_counter()
    fit = pinn.train_diffusion_reaction(name, iterations=iterations)
    return {
        "backend": name,
        "iterations": iterations,
        "error_before": fit.relative_error(fit.initial_params),
        "error": fit.relative_error(),
        "losses": fit.losses.tolist(),
        "ms": float(np.median(fit.seconds) * 1e3),
        "total_s": time.perf_counter() - begin,
    }


def _one_thread(name: str) -> None:
    if name == "torch":
        import torch

        torch.set_num_threads(1)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: 5 resets VmHWM to VmRSS
        fh.write("5")


def _status(field: str, pid: int | str = "self") -> int:
    """A field of /proc/PID/status, in kB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


# -- the parent: one process per configuration, under a memory cap ---------------------------
def run(arguments: list[str], cap_mb: float) -> dict[str, Any] | None:
    """Run ``bench_pinn.py --child ARGUMENTS``; ``None`` when it passed ``cap_mb`` (killed)."""
    env = dict(os.environ)
    env.update(
        XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
        JAX_ENABLE_X64="0",
        OMP_NUM_THREADS="1",
    )
    command = [sys.executable, __file__, "--child", *arguments]
    # Files, not pipes: the parent reads nothing while it watches, and a full pipe would
    # stop the child.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        while proc.poll() is None:
            if _status("VmRSS", proc.pid) / 1024 > cap_mb:
                proc.kill()
                proc.wait()
                print(f"{arguments}: over {cap_mb:.0f} MB, killed", file=sys.stderr, flush=True)
                return None
            time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{arguments} failed:\n{stderr[-3000:]}")
    row: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    brief = {k: v for k, v in row.items() if k != "losses"}
    print(brief, file=sys.stderr, flush=True)
    return row


def extrapolate(rows: list[dict[str, Any]], name: str, method: str, n: int, key: str) -> float:
    """``key`` of ``(name, method)`` at ``n`` points: the least-squares line in N through all."""
    import numpy as np

    done = [(r["points"], r[key]) for r in rows if r["backend"] == name and r["method"] == method]
    if len({points for points, _ in done}) < 2:
        return float("nan")
    slope, intercept = np.polyfit(*zip(*done, strict=True), 1)
    return float(slope * n + intercept)


# -- the report -------------------------------------------------------------------------------
def report(
    rows: list[dict[str, Any]], trains: list[dict[str, Any]], args: argparse.Namespace
) -> str:
    import jax
    import torch

    found = {(r["backend"], r["method"], r["points"]): r for r in rows}
    command = "python benchmarks/bench_pinn.py " + " ".join(sys.argv[1:])
    lines = [
        "# Physics-informed DeepONet: ZCS against aligned derivatives",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs, load "
        f"average {os.getloadavg()[0]:.1f} at the end: times are noisy, ratios within a row "
        f"are what to read), CPU only; Python {platform.python_version()}; torch "
        f"{torch.__version__}, jax {jax.__version__}; one thread per library; float32. "
        f"Produced by `{command.strip()}`.",
        "",
        "## Memory and time per training iteration",
        "",
        f"The paper's scaling setup: M = {M} functions, {SENSORS} sensors, branch "
        f"[{SENSORS}, {WIDTH}, {WIDTH}, {WIDTH}], trunk [2, {WIDTH}, {WIDTH}, {WIDTH}], tanh, "
        f"loss mean((sum_k=1..{ORDER} (d/dx + d/dy)^k u - f)^2): {len(PARTIALS)} partial "
        f"derivatives of order 1 to {ORDER}. One iteration = loss, gradient, Adam update (on "
        "jax one compiled step). step MB = what one iteration adds to the resident set at its "
        f"peak (the largest of {MEASURED}); ms = median of {args.iterations} timed iterations "
        "after a first (first s: the first, on jax the compilation). Ratio = ZCS / aligned.",
        "",
        f"The paper measures N = 8000 points on a GPU. On this CPU the pairs run at N = "
        f"{', '.join(map(str, args.points))} with M kept at {M}; both methods grow linearly "
        f"in N. At N = {args.full} ZCS is measured; an aligned run whose extrapolated memory "
        f"passes the cap of {args.cap_mb:,.0f} MB is not started, and its numbers are "
        "extrapolated by the least-squares line in N through the measured ones (marked ~).",
        "",
        "| backend | N | ZCS step MB | aligned step MB | memory ratio | ZCS ms | aligned ms "
        "| time ratio | first s (ZCS / aligned) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in args.backends:
        for n in [*args.points, args.full]:
            z, a = found.get((name, "zcs", n)), found.get((name, "aligned", n))
            if z is None:
                continue
            if a is None:
                mb = extrapolate(rows, name, "aligned", n, "step_mb")
                ms = extrapolate(rows, name, "aligned", n, "ms")
                if mb != mb:  # nan: fewer than two aligned runs fitted under the cap
                    lines.append(
                        f"| {name} | {n} | {z['step_mb']:,.0f} | over the cap | - "
                        f"| {z['ms']:,.0f} | - | - | {z['first_s']:.1f} / - |"
                    )
                    continue
                a_mb, a_ms, a_first, mark = f"~{mb:,.0f}", f"~{ms:,.0f}", "-", "~"
            else:
                mb, ms = a["step_mb"], a["ms"]
                a_mb, a_ms, a_first, mark = f"{mb:,.0f}", f"{ms:,.0f}", f"{a['first_s']:.1f}", ""
            lines.append(
                f"| {name} | {n} | {z['step_mb']:,.0f} | {a_mb} | {mark}{z['step_mb'] / mb:.3f} "
                f"| {z['ms']:,.0f} | {a_ms} | {mark}{z['ms'] / ms:.3f} "
                f"| {z['first_s']:.1f} / {a_first} |"
            )
    lines += [
        "",
        "Both methods compute the same loss: first loss of each pair (ZCS / aligned), from "
        "the same weights and data:",
        "",
    ]
    for name in args.backends:
        for n in args.points:
            z, a = found.get((name, "zcs", n)), found.get((name, "aligned", n))
            if z and a:
                lines.append(f"- {name} N={n}: {z['losses'][0]:.7g} / {a['losses'][0]:.7g}")
    if trains:
        lines += [
            "",
            "## The diffusion-reaction operator, trained longer",
            "",
            "`anyxp.pinn.train_diffusion_reaction(name, iterations=...)` with its defaults: "
            "100 training sources, 400 collocation points, 50 initial and 50 boundary points, "
            "branch [21, 32, 32, 32], trunk [2, 32, 32, 32], Adam lr 3e-3, full batch, ZCS. "
            "Error = relative L2 error on 20 unseen sources against the method-of-lines "
            "reference on a 101 x 26 grid.",
            "",
            "| backend | iterations | error untrained | error trained | final loss (mean of last "
            "100) | ms / iteration | total s |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in trains:
            last = sum(t["losses"][-100:]) / len(t["losses"][-100:])
            lines.append(
                f"| {t['backend']} | {t['iterations']} | {t['error_before']:.3f} "
                f"| {t['error']:.4f} | {last:.3g} | {t['ms']:.1f} | {t['total_s']:.0f} |"
            )
    lines += ["", f"Whole run: {(time.perf_counter() - START) / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], trains: list[dict[str, Any]], full: int, path: str) -> None:
    """Memory and time per iteration against N (dotted: extrapolated); the training's loss."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if trains else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6))
    colors = {"torch": "tab:red", "jax": "tab:blue"}
    for name in colors:
        for method, style in (("zcs", "-o"), ("aligned", "--s")):
            got = sorted(
                (r["points"], r["step_mb"], r["ms"])
                for r in rows
                if r["backend"] == name and r["method"] == method
            )
            if not got:
                continue
            n, mb, ms = zip(*got, strict=True)
            label = f"{name} {method}"
            axes[0].loglog(n, mb, style, color=colors[name], label=label)
            axes[1].loglog(n, ms, style, color=colors[name], label=label)
            if method == "aligned" and full > n[-1]:  # where it would not fit: extrapolated
                for ax, key in ((axes[0], "step_mb"), (axes[1], "ms")):
                    guess = extrapolate(rows, name, method, full, key)
                    ax.loglog([n[-1], full], [mb[-1] if key == "step_mb" else ms[-1], guess],
                              ":", color=colors[name])  # fmt: skip
    axes[0].set(xlabel="points N (M = 80 functions)", ylabel="MB per iteration",
                title="memory of one training step")  # fmt: skip
    axes[1].set(xlabel="points N (M = 80 functions)", ylabel="ms per iteration",
                title="time of one training step")  # fmt: skip
    axes[0].legend(fontsize=8)
    if trains:
        for t in trains:
            axes[2].semilogy(t["losses"], color=colors[t["backend"]], lw=0.8,
                             label=f"{t['backend']}: test error {t['error']:.3f}")  # fmt: skip
        axes[2].set(xlabel="Adam iteration", ylabel="loss",
                    title="diffusion-reaction operator (ZCS)")  # fmt: skip
        axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        if sys.argv[2] == "train":
            out = train_child(sys.argv[3], int(sys.argv[4]))
        else:
            name, method, n_points, iterations = sys.argv[2:6]
            out = child(name, method, int(n_points), int(iterations))
        print(json.dumps(out), flush=True)
        return
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[50, 100, 200],
                        help="N of the ZCS/aligned pairs")  # fmt: skip
    parser.add_argument("--full", type=int, default=8000, help="N of the full-size ZCS runs")
    parser.add_argument("--iterations", type=int, default=2, help="timed, per configuration")
    parser.add_argument("--cap-mb", type=float, default=8000.0, help="kill a run past this RSS")
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"])
    parser.add_argument("--train-iterations", type=int, default=4000,
                        help="of the diffusion-reaction training (0: skip)")  # fmt: skip
    parser.add_argument("--out", help="write the Markdown report here")
    parser.add_argument("--plot", help="write the figure here (PNG)")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in args.backends:
        for n in args.points:
            for method in ("zcs", "aligned"):
                row = run([name, method, str(n), str(args.iterations)], args.cap_mb)
                if row is not None:
                    rows.append(row)
        row = run([name, "zcs", str(args.full), str(args.iterations)], args.cap_mb)
        if row is not None:
            rows.append(row)
        if extrapolate(rows, name, "aligned", args.full, "step_mb") < 0.8 * args.cap_mb:
            row = run([name, "aligned", str(args.full), str(args.iterations)], args.cap_mb)
            if row is not None:
                rows.append(row)
    trains = []
    if args.train_iterations:
        for name in args.backends:
            row = run(["train", name, str(args.train_iterations)], args.cap_mb)
            if row is not None:
                trains.append(row)
    text = report(rows, trains, args)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    if args.plot:
        plot(rows, trains, args.full, args.plot)


if __name__ == "__main__":
    main()
