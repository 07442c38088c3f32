"""Training the spiral neural ODE: time per iteration of anyxp against torchdiffeq and diffrax.

The problem of ``anyxp.nn.train_spiral`` (torchdiffeq's ``ode_demo``): a 2 -> 50 -> 2 tanh
network ``y' = MLP(y^3)`` fitted with Adam to windows of 10 data times from 20 random
start points, float32, loss mean |prediction - data|. Every implementation starts from the
same weights (anyxp's for the seed), solves at the same tolerances, and one iteration is:
draw the windows, solve the batch of 20 windows as one state of shape (20, 2), take the
gradient through the solve, update with Adam, read the loss back.

- torch: ``anyxp.nn.train_spiral("torch", method="dopri5")`` against ``torchdiffeq.odeint``
  (backpropagation through the solver's steps) and ``odeint_adjoint`` (the continuous
  adjoint solved backwards), dopri5, with ``torch.optim.Adam``.
- jax: ``train_spiral("jax")`` (the whole step under ``jax.jit``) against
  ``diffrax.diffeqsolve`` with Tsit5 and its three adjoints, jitted the same way, with the
  same Adam (``anyxp.nn.adam``: plain array operations, traced into the step).

Pairings compare like with like: anyxp ``direct`` and ``checkpointed`` differentiate the
discrete steps (as ``odeint``, ``DirectAdjoint`` and ``RecursiveCheckpointAdjoint`` do),
anyxp ``backsolve`` is ``odeint_adjoint``'s and ``BacksolveAdjoint``'s method. Time per
iteration is the median over iterations 2..N; on jax the first iteration (tracing and
compiling) is reported apart. ``steps`` counts the steps each library's solver takes on
the same fixed batches of windows with the initial network (forward solves), to show
whether a difference in time is one of work or of overhead. Every implementation draws
the same windows from anyxp's keys and starts from the same weights, so the losses
compare too. Ratio = anyxp time / anchor time (< 1: anyxp faster).

Then (not with ``--quick``) what training reaches: ``train_spiral``'s defaults for 1000
iterations on each backend, and the loss curve of docs/neural-ode.md with ``--plot``.

Run:  python benchmarks/bench_neural_ode.py [--quick] [--iterations 100] [--out benchmarks/results/neural_ode.md] [--plot docs/_static/neural_ode_loss.png]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from typing import Any

# One thread per library: the machines these run on are shared, and at these sizes (20 x 2
# states, a 50-wide layer) threads only add synchronisation.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)

import numpy as np

import anyxp
from anyxp import nn

BATCH_SIZE, BATCH_TIME, SEED, LR = 20, 10, 0, 1e-2
PROBES = 20  # batches of windows on which the solvers' steps are counted
SLOW_ITERATIONS = 6  # for the modes too slow to train long here: forward, interpolating
RTOL = float(100 * np.finfo(np.float32).eps)  # the tightest float32 resolves: anyxp's floor
ATOL = 1e-9


def initial_params(be: anyxp.Backend) -> Any:
    """The network ``train_spiral(be, seed=SEED)`` starts from (its key, split the same way)."""
    key_init, _ = be.random.split(be.random.key(SEED))
    return nn.mlp_init(key_init, [2, 50, 2], backend=be)


def first_key(be: anyxp.Backend) -> Any:
    """The key ``train_spiral(be, seed=SEED)`` splits each iteration's draw from: every
    implementation draws the same windows, so their losses can be compared."""
    return be.random.split(be.random.key(SEED))[1]


def fixed_starts(data: nn.SpiralData) -> list[np.ndarray]:
    """The initial states of PROBES batches of windows, drawn once with numpy: ``(20, 2)`` each."""
    y = data.backend.to_numpy(data.y)
    rng = np.random.default_rng(SEED)
    return [y[rng.integers(0, y.shape[0] - BATCH_TIME, BATCH_SIZE)] for _ in range(PROBES)]


def median_ms(seconds: list[float] | np.ndarray) -> float:
    return float(np.median(np.asarray(seconds)[1:]) * 1e3)


# -- anyxp -----------------------------------------------------------------------------------
def anyxp_rows(name: str, method: str, modes: tuple[str, ...], n: int) -> list[dict[str, Any]]:
    from anyxp.ode import solve

    be = anyxp.backend(name, dtype="float32")
    data = nn.spiral_data(be)
    te, start = data.t[:BATCH_TIME], initial_params(be)

    def steps_from(y0: Any) -> Any:
        sol = solve(
            nn.spiral_rhs, (0.0, float(te[-1])), y0, args=(start,), t_eval=te,
            method=method, rtol=RTOL, atol=ATOL,
        )  # fmt: skip
        return sol.stats["steps"]

    count = be.jit(steps_from)  # on jax: compiled once for every batch
    steps = np.mean([int(count(be.asarray(y0))) for y0 in fixed_starts(data)])
    rows = []
    for mode in modes:
        fit = nn.train_spiral(
            be, iterations=n, seed=SEED, sensitivity=mode, lr=LR, method=method,
            rtol=RTOL, atol=ATOL, data=data,
        )  # fmt: skip
        rows.append(
            {
                "impl": f"anyxp {name} {method}",
                "mode": mode,
                "ms": median_ms(fit.seconds),
                "first_s": float(fit.seconds[0]),
                "steps": steps,
                "loss1": float(fit.losses[0]),
                "loss": float(np.mean(fit.losses[-10:])),
                "n": n,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# -- torchdiffeq -----------------------------------------------------------------------------
def torchdiffeq_rows(n: int) -> list[dict[str, Any]]:
    import torch
    import torchdiffeq

    be = anyxp.backend("torch", dtype="float32")
    data = nn.spiral_data(be)
    true_y = data.y
    t_window = torch.as_tensor(data.t[:BATCH_TIME], dtype=torch.float32)
    start = initial_params(be)

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2)
            )
            with torch.no_grad():  # anyxp's w is (n_in, n_out), torch's weight (n_out, n_in)
                self.net[0].weight.copy_(start[0]["w"].T)
                self.net[0].bias.copy_(start[0]["b"])
                self.net[2].weight.copy_(start[1]["w"].T)
                self.net[2].bias.copy_(start[1]["b"])
            self.nfev = 0

        def forward(self, t: Any, y: Any) -> Any:
            self.nfev += 1
            return self.net(y**3)

    counts = []
    for y0 in fixed_starts(data):
        probe = Model()
        with torch.no_grad():
            torchdiffeq.odeint(
                probe, torch.as_tensor(y0), t_window, rtol=RTOL, atol=ATOL, method="dopri5"
            )
        counts.append((probe.nfev - 2) / 6)  # dopri5: 6 evaluations a step (FSAL), 2 to start
    steps = np.mean(counts)

    rows = []
    for label, odeint in (("odeint", torchdiffeq.odeint), ("odeint_adjoint", None)):
        func = Model()
        solver = odeint or torchdiffeq.odeint_adjoint
        opt = torch.optim.Adam(func.parameters(), lr=LR)
        key = first_key(be)
        offsets = torch.arange(BATCH_TIME)[:, None]
        seconds, losses = [], []
        for _ in range(n):
            key, key_batch = be.random.split(key)
            begin = time.perf_counter()
            starts = be.random.integers(key_batch, (BATCH_SIZE,), 0, true_y.shape[0] - BATCH_TIME)
            batch = true_y[starts[None, :] + offsets]  # (BATCH_TIME, BATCH_SIZE, 2)
            pred = solver(func, batch[0], t_window, rtol=RTOL, atol=ATOL, method="dopri5")
            loss = torch.mean(torch.abs(pred - batch))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            seconds.append(time.perf_counter() - begin)
        rows.append(
            {
                "impl": "torchdiffeq dopri5",
                "mode": label,
                "ms": median_ms(seconds),
                "first_s": seconds[0],
                "steps": steps,
                "loss1": losses[0],
                "loss": float(np.mean(losses[-10:])),
                "n": n,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# -- diffrax ---------------------------------------------------------------------------------
def diffrax_rows(n: int) -> list[dict[str, Any]]:
    import diffrax
    import jax
    import jax.numpy as jnp

    be = anyxp.backend("jax", dtype="float32")
    data = nn.spiral_data(be)
    true_y = data.y
    te = jnp.asarray(data.t[:BATCH_TIME], dtype=jnp.float32)
    term = diffrax.ODETerm(lambda t, y, p: nn.spiral_rhs(t, y, p))
    controller = diffrax.PIDController(rtol=RTOL, atol=ATOL)

    def solve(params: Any, y0: Any, adjoint: Any) -> Any:
        return diffrax.diffeqsolve(
            term, diffrax.Tsit5(), t0=0.0, t1=te[-1], dt0=None, y0=y0, args=params,
            stepsize_controller=controller, saveat=diffrax.SaveAt(ts=te),
            adjoint=adjoint or diffrax.RecursiveCheckpointAdjoint(), max_steps=256,
        )  # fmt: skip

    steps = np.mean(
        [
            int(solve(initial_params(be), jnp.asarray(y0), None).stats["num_steps"])
            for y0 in fixed_starts(data)
        ]
    )

    adjoints = {
        "RecursiveCheckpointAdjoint": diffrax.RecursiveCheckpointAdjoint(),
        "DirectAdjoint": diffrax.DirectAdjoint(),
        "BacksolveAdjoint": diffrax.BacksolveAdjoint(),
    }
    rows = []
    for label, adjoint in adjoints.items():
        opt = nn.adam(LR)

        def loss_fn(params: Any, batch: Any, adjoint: Any = adjoint) -> Any:
            return jnp.mean(jnp.abs(solve(params, batch[0], adjoint).ys - batch))

        @jax.jit
        def step(params: Any, state: Any, key: Any, opt: Any = opt, loss_fn: Any = loss_fn) -> Any:
            starts = jax.random.randint(key, (BATCH_SIZE,), 0, true_y.shape[0] - BATCH_TIME)
            batch = true_y[starts[None, :] + jnp.arange(BATCH_TIME)[:, None]]
            value, grads = jax.value_and_grad(loss_fn)(params, batch)
            params, state = opt.update(grads, state, params)
            return params, state, value

        params = initial_params(be)
        state = opt.init(params)
        key = first_key(be)
        seconds, losses = [], []
        for _ in range(n):
            key, sub = be.random.split(key)
            begin = time.perf_counter()
            params, state, value = step(params, state, sub)
            losses.append(float(value))
            seconds.append(time.perf_counter() - begin)
        rows.append(
            {
                "impl": "diffrax Tsit5 (jit)",
                "mode": label,
                "ms": median_ms(seconds),
                "first_s": seconds[0],
                "steps": steps,
                "loss1": losses[0],
                "loss": float(np.mean(losses[-10:])),
                "n": n,
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


# -- where the time goes ----------------------------------------------------------------------
def torch_breakdown(n: int) -> dict[str, Any]:
    """Evaluations of the network per iteration in each mode, the cost of one evaluation
    through ``nn.mlp_apply`` (its argument checks included) against the bare torch ops, and
    how jax's ``direct`` and ``checkpointed`` grow with ``max_steps``."""
    import torch

    import anyxp.nn._spiral as spiral

    be = anyxp.backend("torch", dtype="float32")
    data = nn.spiral_data(be)
    apply, calls = spiral.mlp_apply, [0]

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return apply(*args, **kwargs)

    out: dict[str, Any] = {"evaluations": {}}
    spiral.mlp_apply = counted  # type: ignore[assignment]
    try:
        for mode in ("checkpointed", "direct", "backsolve"):
            calls[0] = 0
            nn.train_spiral(be, iterations=n, sensitivity=mode, method="dopri5", data=data,
                            rtol=RTOL, atol=ATOL)  # fmt: skip
            out["evaluations"][mode] = calls[0] / n
    finally:
        spiral.mlp_apply = apply  # type: ignore[assignment]
    jax_data = nn.spiral_data("jax")
    out["jax_max_steps"] = {}
    for mode in ("direct", "checkpointed"):
        for steps in (32, 256, 1024):
            fit = nn.train_spiral("jax", iterations=n, sensitivity=mode, max_steps=steps,
                                  data=jax_data, rtol=RTOL, atol=ATOL)  # fmt: skip
            out["jax_max_steps"].setdefault(mode, {})[steps] = median_ms(fit.seconds)
    p, y = initial_params(be), torch.as_tensor(fixed_starts(data)[0])

    def bare() -> Any:
        return torch.tanh((y**3) @ p[0]["w"] + p[0]["b"]) @ p[1]["w"] + p[1]["b"]

    for label, fn in (("mlp_apply_us", lambda: nn.spiral_rhs(0.0, y, p)), ("bare_us", bare)):
        begin = time.perf_counter()
        for _ in range(2000):
            fn()
        out[label] = (time.perf_counter() - begin) / 2000 * 1e6
    return out


# -- what training reaches ---------------------------------------------------------------------
REACH = 1000  # iterations of the long runs (the loss curve of docs/neural-ode.md)


def reach(plot: str | None) -> list[str]:
    """Train ``train_spiral``'s defaults for REACH iterations (and 300, the CLI's default)
    on each backend; the Markdown lines of what they reach, and the loss curve to ``plot``."""
    fits = {name: nn.train_spiral(name, iterations=REACH, seed=SEED) for name in ("torch", "jax")}
    short = {
        name: nn.train_spiral(name, iterations=300, seed=SEED, data=fit.data)
        for name, fit in fits.items()
    }
    if plot:
        from anyxp.cli import _plot_losses  # the plot of `anyxp demo neural-ode --plot`

        _plot_losses(plot, {name: fit.losses for name, fit in fits.items()}, 50)

    def cells(value: Any) -> str:
        return " | ".join(value(name) for name in fits)

    losses = {name: fit.losses for name, fit in fits.items()}
    lines = [
        "",
        f"## What training reaches: `train_spiral`'s defaults, seed {SEED}",
        "",
        "tsit5 at `solve`'s default tolerances (rtol raised to 1.2e-5 in float32), "
        f"`checkpointed`; {REACH} iterations on each backend"
        + (f", loss curve in `{plot}`" if plot else "")
        + ". Trajectory = mean |y - data| over the whole interval, followed from y0.",
        "",
        "| | " + " | ".join(fits) + " |",
        "|---|---|---|",
        "| minibatch loss, mean of iterations 1-50 | "
        + cells(lambda k: f"{losses[k][:50].mean():.4f}")
        + " |",
        "| minibatch loss, mean of iterations 251-300 | "
        + cells(lambda k: f"{losses[k][250:300].mean():.4f}")
        + " |",
        f"| minibatch loss, mean of iterations {REACH - 49}-{REACH} | "
        + cells(lambda k: f"{losses[k][-50:].mean():.4f}")
        + " |",
        f"| trajectory: untrained, after 300, after {REACH} | "
        + cells(
            lambda k: (
                f"{fits[k].trajectory_loss(fits[k].initial_params):.2f}, "
                f"{short[k].trajectory_loss():.2f}, {fits[k].trajectory_loss():.2f}"
            )
        )
        + " |",
        "| ms per iteration (median) | "
        + cells(lambda k: f"{median_ms(fits[k].seconds):.2f}")
        + " |",
        "| first iteration (jax: tracing and compiling; torch: warmed by the runs above) | "
        + cells(lambda k: f"{fits[k].seconds[0]:.2f} s")
        + " |",
    ]
    return lines


# -- the report ------------------------------------------------------------------------------
PAIRS = (
    # (anyxp impl, anyxp mode, anchor impl, anchor mode)
    ("anyxp torch dopri5", "checkpointed", "torchdiffeq dopri5", "odeint"),
    ("anyxp torch dopri5", "direct", "torchdiffeq dopri5", "odeint"),
    ("anyxp torch dopri5", "backsolve", "torchdiffeq dopri5", "odeint_adjoint"),
    ("anyxp jax tsit5", "checkpointed", "diffrax Tsit5 (jit)", "RecursiveCheckpointAdjoint"),
    ("anyxp jax tsit5", "direct", "diffrax Tsit5 (jit)", "DirectAdjoint"),
    ("anyxp jax tsit5", "backsolve", "diffrax Tsit5 (jit)", "BacksolveAdjoint"),
)


def report(rows: list[dict[str, Any]], n: int, command: str, where: dict[str, Any] | None) -> str:
    import diffrax
    import jax
    import torch
    import torchdiffeq

    found = {(r["impl"], r["mode"]): r for r in rows}
    load = os.getloadavg()[0]
    lines = [
        "# Neural ODE training: time per iteration",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared); Python "
        f"{platform.python_version()}; torch {torch.__version__}, torchdiffeq "
        f"{torchdiffeq.__version__}, jax {jax.__version__}, diffrax {diffrax.__version__}; one "
        f"thread per library; load average {load:.1f} at the end (other work on the machine "
        f"slows every row alike). Produced by `{command}`.",
        "",
        f"The spiral of `anyxp.nn.train_spiral`: float32, rtol = {RTOL:.3g} (100 float32 "
        f"epsilons), atol = {ATOL:g}, {BATCH_SIZE} windows of {BATCH_TIME} times, Adam lr = "
        f"{LR:g}, the same initial weights. ms = median time of iterations 2..{n}; first = "
        "the first iteration (on jax: tracing and compiling the step); steps = solver steps "
        f"(accepted and rejected) per solve, the mean over {PROBES} fixed batches of windows "
        "with the initial network (torchdiffeq's from its count of evaluations). Every "
        "implementation draws the same windows (anyxp's keys), so the losses compare: loss 1 "
        "= the first minibatch loss (the same network on the same windows: the solvers' "
        f"agreement), loss {n} = the mean of the last 10. Ratio = anyxp ms / anchor ms "
        "(< 1: anyxp faster).",
        "",
        "| pairing | anyxp ms | anchor ms | ratio | anyxp first | anchor first "
        f"| steps (anyxp / anchor) | loss 1 (anyxp / anchor) | loss {n} (anyxp / anchor) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for impl, mode, anchor, anchor_mode in PAIRS:
        a, b = found.get((impl, mode)), found.get((anchor, anchor_mode))
        if a is None or b is None:
            continue
        lines.append(
            f"| {impl} `{mode}` vs {anchor} `{anchor_mode}` | {a['ms']:.2f} | {b['ms']:.2f} "
            f"| {a['ms'] / b['ms']:.2f} | {a['first_s']:.2f} s | {b['first_s']:.2f} s "
            f"| {a['steps']:.1f} / {b['steps']:.1f} | {a['loss1']:.5f} / {b['loss1']:.5f} "
            f"| {a['loss']:.4f} / {b['loss']:.4f} |"
        )
    lines += [
        "",
        "Every row (`interpolating` and `forward`: only a few iterations, too slow for more; "
        "their loss is the mean of all but says little):",
        "",
        "| implementation | sensitivity | iterations | ms | first | loss, mean of the last 10 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['impl']} | `{r['mode']}` | {r['n']} | {r['ms']:.2f} | {r['first_s']:.2f} s "
            f"| {r['loss']:.4f} |"
        )
    if where is None:
        return "\n".join(lines) + "\n"
    evaluations = where["evaluations"]
    overhead = where["mlp_apply_us"] - where["bare_us"]
    lines += [
        "",
        "## Where the time goes (torch)",
        "",
        "Network evaluations per iteration (counted): "
        + ", ".join(f"`{m}` {v:.0f}" for m, v in evaluations.items())
        + ". torchdiffeq's `odeint` evaluates the network only in the forward solve (about "
        "2 + 6 per dopri5 step) and backpropagates through the graph it recorded; anyxp's "
        "`checkpointed` solves on values keeping each step's state, then replays the logged "
        "steps segment by segment under autograd (one VJP per segment), and `direct` "
        "replays them once under autograd: both two solves' worth. "
        f"One evaluation through `nn.mlp_apply` takes {where['mlp_apply_us']:.0f} us against "
        f"{where['bare_us']:.0f} us for the bare torch operations: its argument checks add "
        f"about {overhead * evaluations['checkpointed'] / 1e3:.1f} ms per `checkpointed` "
        "iteration.",
        "",
        "On jax, `direct` costs more than diffrax's `DirectAdjoint` because under `jit` it "
        "replays all `max_steps` rows of the step log (256 here, most of them masked) where "
        "a window takes about 3 steps: its cost grows with `max_steps`. Milliseconds per "
        "iteration at max_steps = "
        + ", ".join(str(m) for m in where["jax_max_steps"]["direct"])
        + ": "
        + "; ".join(
            f"`{mode}` " + ", ".join(f"{ms:.2f}" for ms in by.values())
            for mode, by in where["jax_max_steps"].items()
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100, help="per implementation")
    parser.add_argument("--quick", action="store_true", help="20 iterations, no breakdown")
    parser.add_argument("--out", help="write the Markdown report here")
    parser.add_argument("--plot", help="write the loss curve of the long runs here (PNG)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    n = 20 if args.quick else args.iterations
    rows = anyxp_rows("torch", "dopri5", ("checkpointed", "direct", "backsolve"), n)
    rows += anyxp_rows("torch", "tsit5", ("checkpointed",), n)
    rows += torchdiffeq_rows(n)
    rows += anyxp_rows("jax", "tsit5", ("checkpointed", "direct", "backsolve"), n)
    if not args.quick:  # the slow modes, a few iterations each (every row's table only)
        rows += anyxp_rows("torch", "dopri5", ("interpolating",), SLOW_ITERATIONS)
        rows += anyxp_rows("jax", "tsit5", ("interpolating", "forward"), SLOW_ITERATIONS)
    rows += diffrax_rows(n)
    where = None if args.quick else torch_breakdown(min(n, 20))
    command = "python benchmarks/bench_neural_ode.py " + " ".join(sys.argv[1:])
    text = report(rows, n, command.strip(), where)
    if not args.quick:
        text += "\n".join(reach(args.plot)) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
