"""The torch comm's collectives, side by side with raw ``torch.distributed`` calls.

For allreduce, allgather and broadcast of float64 tensors from 1 KiB to 64 MiB, in one
run: ``torch.distributed``'s own call (the anchor: ``all_reduce`` in place on a
preallocated tensor, ``all_gather_single`` (formerly ``all_gather_into_tensor``) into a
preallocated output, ``broadcast``
in place), anyxp unchecked (``comm_options={"checked": False}``) and anyxp checked (the
default: one small ``all_reduce`` agrees on the call first), each also with ``out=`` (where
the raw call writes). Without ``out=`` anyxp returns a new tensor per call, as the comm
contract says, so it copies the input once where the raw call works in place. Every number is a per-call time: the best of ``--repeat`` repetitions, each a
loop of calls started after a barrier and timed as the slowest rank's.

Run:  python -m torch.distributed.run --standalone --nproc_per_node 2 \\
          benchmarks/bench_comm_torch.py [--out benchmarks/results/comm_torch.md]
Ratios > 1 mean anyxp is slower than raw torch.distributed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

import anyxp

COLLECTIVES = ("allreduce", "allgather", "broadcast")
GATHER_INTO = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
SIZES = [2**k for k in range(10, 27, 2)]  # 1 KiB .. 64 MiB


def show_size(nbytes: int) -> str:
    for unit, factor in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= factor:
            return f"{nbytes // factor} {unit}"
    return f"{nbytes} B"


def per_call(fn: Callable[[], Any], calls: int) -> float:
    dist.barrier()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    took = torch.tensor([(time.perf_counter() - start) / calls], dtype=torch.float64)
    dist.all_reduce(took, dist.ReduceOp.MAX)
    return float(took[0])


def best(fn: Callable[[], Any], nbytes: int, repeat: int) -> float:
    calls = max(1, min(200, (8 * 2**20) // nbytes))
    fn()  # warm-up
    return min(per_call(fn, calls) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the markdown table here (rank 0)")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    checked = anyxp.backend("torch", dtype="float64", comm="torch")
    rank, size = checked.comm.rank, checked.comm.size
    unchecked = anyxp.backend(
        "torch", dtype="float64", comm="torch", comm_options={"checked": False}
    )
    rows = []
    for nbytes in SIZES:
        n = nbytes // 8
        x = torch.full((n,), float(rank + 1), dtype=torch.float64)
        gathered = torch.empty((size * n,), dtype=torch.float64)
        raw = {
            "allreduce": lambda x=x: dist.all_reduce(x),
            "allgather": lambda x=x, out=gathered: GATHER_INTO(out, x),
            "broadcast": lambda x=x: dist.broadcast(x, 0),
        }
        for name in COLLECTIVES:
            times = {"raw": best(raw[name], nbytes, args.repeat)}
            # out=: where the raw call writes (in place; allgather into its buffer).
            into = gathered.view(size, n) if name == "allgather" else x
            for label, be in (("unchecked", unchecked), ("checked", checked)):
                call = getattr(be.comm, name)
                times[label] = best(lambda call=call, x=x: call(x), nbytes, args.repeat)
                times[f"{label}, out="] = best(
                    lambda call=call, x=x, into=into: call(x, out=into), nbytes, args.repeat
                )
            rows.append((name, nbytes, times))
    if rank != 0:
        dist.destroy_process_group()
        return
    lines = [
        "# Collectives: the torch comm against raw torch.distributed",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared; {size} ranks on one "
        f"node; torch {torch.__version__}, gloo. Produced by `python -m torch.distributed.run "
        "--standalone --nproc_per_node 2 benchmarks/bench_comm_torch.py` (best of "
        f"{args.repeat}; float64 tensors; the message size is per rank).",
        "",
        "Times are per call; brackets hold the ratio to raw torch.distributed, which works in "
        "place on preallocated tensors while anyxp returns a new tensor (one copy of the "
        "input), unless given `out=`: then it writes where the raw call does (allreduce and "
        "broadcast in place, `out=x`; allgather into the same preallocated tensor). "
        "Bandwidth is the message size over the raw call's time.",
        "",
    ]
    for name in COLLECTIVES:
        lines += [
            f"## {name}",
            "",
            "| message | raw torch.distributed | bandwidth | anyxp unchecked "
            "| anyxp unchecked, out= | anyxp checked | anyxp checked, out= |",
            "|---|---|---|---|---|---|---|",
        ]
        for cname, nbytes, t in rows:
            if cname != name:
                continue
            raw_t = t["raw"]
            cells = [
                f"{t[k] * 1e6:.1f} µs ({t[k] / raw_t:.2f})"
                for k in ("unchecked", "unchecked, out=", "checked", "checked, out=")
            ]
            lines.append(
                f"| {show_size(nbytes)} | {raw_t * 1e6:.1f} µs | {nbytes / raw_t / 1e9:.2f} GB/s "
                f"| {' | '.join(cells)} |"
            )
        lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
