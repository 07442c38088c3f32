"""Data-parallel training throughput: anyxp (torch comm) against PyTorch's DDP, in one run.

The same MLP regression (an MLP of widths ``--widths``, tanh, mean squared error, Adam)
trained for ``--steps`` steps on a global batch of ``--batch`` rows split evenly across
the ranks, at 1 and 2 ranks (this script starts itself under ``torchrun`` for each):

- anyxp: ``anyxp.nn`` parameters, ``be.ad.value_and_grad``, one
  ``anyxp.nn.mean_over_ranks`` allreduce of the raveled gradients per step, ``nn.adam``;
- DDP: ``torch.nn.Sequential`` of the same widths wrapped in
  ``DistributedDataParallel`` (gloo, bucketed allreduce overlapped with the backward
  pass), ``torch.optim.Adam``.

Throughput is global samples per second (the slowest rank's time), after five warm-up
steps. Ratios > 1 mean anyxp trains faster than DDP.

Run:  python benchmarks/bench_data_parallel.py [--ranks 1 2] [--steps 50]
          [--out benchmarks/results/data_parallel.md]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def one_job(widths: list[int], batch: int, steps: int) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    import anyxp
    from anyxp import nn
    from anyxp.control_flow import tree_map

    be = anyxp.backend("torch", dtype="float32", comm="torch")
    comm, xp = be.comm, be.xp
    rng = np.random.default_rng(0)
    x_all = rng.standard_normal((batch, widths[0])).astype(np.float32)
    y_all = np.sin(x_all.sum(axis=1, keepdims=True)).astype(np.float32)
    rows = nn.batch_block(batch, comm)
    x, y = be.asarray(x_all[rows]), be.asarray(y_all[rows])

    # anyxp
    params = tree_map(be.asarray, nn.mlp_init(anyxp.backend("numpy").random.key(0), widths))
    params = tree_map(lambda a: be.xp.astype(a, be.xp.float32), params)
    opt = nn.adam(lr=1e-3)
    state = opt.init(params)

    def loss(p):
        r = nn.mlp_apply(p, x) - y
        return xp.mean(r * r)

    def anyxp_step():
        nonlocal params, state
        value, grads = be.ad.value_and_grad(loss)(params)
        grads = nn.mean_over_ranks(grads, comm)
        params, state = opt.update(grads, state, params)
        return value

    # DDP
    layers: list[torch.nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(*layers[:-1]))
    torch_opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def ddp_step():
        torch_opt.zero_grad()
        value = torch.mean((model(x) - y) ** 2)
        value.backward()
        torch_opt.step()
        return value

    results = {}
    for name, step in (("anyxp", anyxp_step), ("ddp", ddp_step)):
        for _ in range(5):  # warm-up: torch's first steps allocate and tune (13 vs 7 ms)
            step()
        dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        took = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(took, dist.ReduceOp.MAX)
        results[name] = batch * steps / float(took[0])
    if comm.rank == 0:
        print("RESULT " + json.dumps({"ranks": comm.size, **results}))
    dist.destroy_process_group()


def launch(ranks: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(ranks), str(HERE), "--job"]
    command += ["--steps", str(args.steps), "--batch", str(args.batch), "--widths"]
    command += [str(w) for w in args.widths]
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // ranks)))
    out = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
    raise SystemExit(f"the {ranks}-rank job failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 256, 256, 1])
    parser.add_argument("--out")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job:
        one_job(args.widths, args.batch, args.steps)
        return
    import torch

    runs = [launch(r, args) for r in args.ranks]
    lines = [
        "# Data-parallel training: anyxp against PyTorch DDP",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared; torch "
        f"{torch.__version__} (CPU), gloo; the cores shared evenly between the ranks "
        f"(OMP_NUM_THREADS). Produced by `python benchmarks/bench_data_parallel.py --ranks "
        f"{' '.join(map(str, args.ranks))} --steps {args.steps}`.",
        "",
        f"MLP {args.widths}, tanh, MSE, Adam; global batch {args.batch} split across the ranks; "
        f"{args.steps} steps after five warm-up steps. Samples per second over the whole job.",
        "",
        "| ranks | anyxp | DDP | anyxp / DDP |",
        "|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['ranks']} | {r['anyxp']:,.0f} /s | {r['ddp']:,.0f} /s | "
            f"{r['anyxp'] / r['ddp']:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
