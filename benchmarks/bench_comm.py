"""The cost of anyxp's collectives, side by side with raw mpi4py buffer calls.

For allreduce, allgather and broadcast of float64 messages from 1 KiB to 64 MiB, in one
run: mpi4py's own buffer call on numpy arrays (``Allreduce`` into a preallocated
buffer: the anchor), the same into a new output array per call (the allocation that
anyxp's result needs too), anyxp unchecked (``comm_options={"checked": False}``), anyxp
checked (the default: one small Allreduce agrees on the call first), each also with
``out=`` (into the same preallocated buffer as the raw call; broadcast in place), and
anyxp checked on torch tensors. Every number is a per-call time: the best of ``--repeat`` repetitions,
each a loop of calls started after a barrier and timed as the slowest rank's.

A last table shows why the deadline is kept by a watchdog thread around the blocking
call rather than by polling a nonblocking request: how long an allreduce takes after a
late rank arrives, waited for with ``Wait`` or with a ``Test`` loop that sleeps.

Run:  mpiexec -n 2 python benchmarks/bench_comm.py [--out benchmarks/results/comm.md]
      [--sizes 1KiB 1MiB 64MiB] [--repeat 30] [--late-repeat 10]
Ratios > 1 mean anyxp is slower than raw mpi4py.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpi4py
import numpy as np
from mpi4py import MPI

import anyxp

WORLD = MPI.COMM_WORLD
COLLECTIVES = ("allreduce", "allgather", "broadcast")
#: The columns after raw mpi4py, each with its ratio to it.
VARIANTS = (
    "raw, new output",
    "anyxp unchecked",
    "anyxp unchecked, out=",
    "anyxp checked",
    "anyxp checked, out=",
    "anyxp checked, torch",
)
UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "B": 1}


def parse_size(text: str) -> int:
    """Bytes in ``1KiB``, ``64MiB`` or ``4096``."""
    for unit, factor in UNITS.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def show_size(nbytes: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if nbytes >= UNITS[unit] and nbytes % UNITS[unit] == 0:
            return f"{nbytes // UNITS[unit]} {unit}"
    return f"{nbytes} B"


def per_call(fn: Callable[[], Any], calls: int) -> float:
    """Seconds per call of one repetition: ``calls`` calls after a barrier, slowest rank."""
    WORLD.Barrier()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = (time.perf_counter() - start) / calls
    return WORLD.allreduce(elapsed, op=MPI.MAX)


def calls_for(nbytes: int) -> int:
    """Calls per repetition: enough to hide the barrier, few enough to dodge other load."""
    return int(np.clip(2**18 // max(nbytes, 1), 1, 10))


def variants(collective: str, nbytes: int) -> dict[str, Callable[[], Any]]:
    """One call of ``collective`` on a message of ``nbytes`` bytes, for each variant."""
    import torch

    n = nbytes // 8
    x = np.full(n, float(WORLD.rank + 1))
    unchecked = anyxp.backend("numpy", comm="mpi", comm_options={"checked": False}).comm
    checked = anyxp.backend("numpy", comm="mpi").comm
    on_torch = anyxp.backend("torch", comm="mpi").comm
    xt = torch.from_numpy(x.copy())
    out_buffer = None
    if collective == "allreduce":
        out = out_buffer = np.empty_like(x)
        raw = lambda: WORLD.Allreduce(x, out, op=MPI.SUM)  # noqa: E731
        fresh = lambda: WORLD.Allreduce(x, np.empty_like(x), op=MPI.SUM)  # noqa: E731
    elif collective == "allgather":
        out = out_buffer = np.empty((WORLD.size, n))
        raw = lambda: WORLD.Allgather(x, out)  # noqa: E731
        fresh = lambda: WORLD.Allgather(x, np.empty((WORLD.size, n)))  # noqa: E731
    else:
        raw = lambda: WORLD.Bcast(x, root=0)  # noqa: E731
        fresh = lambda: WORLD.Bcast(x.copy(), root=0)  # noqa: E731
    # out=: into the raw call's own preallocated buffer (broadcast: in place, as Bcast).
    into = x if collective == "broadcast" else out_buffer
    return {
        "raw mpi4py": raw,
        "raw, new output": fresh,
        "anyxp unchecked": lambda: getattr(unchecked, collective)(x),
        "anyxp unchecked, out=": lambda: getattr(unchecked, collective)(x, out=into),
        "anyxp checked": lambda: getattr(checked, collective)(x),
        "anyxp checked, out=": lambda: getattr(checked, collective)(x, out=into),
        "anyxp checked, torch": lambda: getattr(on_torch, collective)(xt),
    }


def measure(collective: str, nbytes: int, repeat: int) -> dict[str, float]:
    """Best per-call seconds of each variant; repetitions interleave the variants."""
    fns = variants(collective, nbytes)
    calls = calls_for(nbytes)
    for fn in fns.values():  # warm up: first-call allocations, torch's first conversion
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            best[name] = min(best[name], per_call(fn, calls))
    return best


def cell(t: dict[str, float], name: str) -> str:
    return f"{t[name] * 1e6:.1f} µs ({t[name] / t['raw mpi4py']:.2f})"


def table(collective: str, rows: list[tuple[int, dict[str, float]]]) -> list[str]:
    """Every variant at every size, with its ratio to raw mpi4py."""
    lines = [
        f"### {collective}",
        "",
        "| message | raw mpi4py | bandwidth | " + " | ".join(VARIANTS) + " |",
        "|---|---|---|" + "---|" * len(VARIANTS),
    ]
    for nbytes, t in rows:
        raw = t["raw mpi4py"]
        lines.append(
            f"| {show_size(nbytes)} | {raw * 1e6:.1f} µs | {nbytes / raw / 1e9:.2f} GB/s | "
            + " | ".join(cell(t, v) for v in VARIANTS)
            + " |"
        )
    return [*lines, ""]


def summary(results: dict[str, list[tuple[int, dict[str, float]]]]) -> list[str]:
    """The latency anyxp adds per call at 1 KiB and 1 MiB (where they were measured)."""
    lines = [
        "## Latency added per call",
        "",
        "| collective | message | raw mpi4py | raw, new output | anyxp unchecked (- raw) "
        "| anyxp unchecked, out= (- raw) | anyxp checked (- raw) | checked - unchecked |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for collective, rows in results.items():
        for nbytes, t in rows:
            if nbytes not in (UNITS["KiB"], UNITS["MiB"]):
                continue
            raw, fresh = t["raw mpi4py"], t["raw, new output"]
            unchecked, checked = t["anyxp unchecked"], t["anyxp checked"]
            into = t["anyxp unchecked, out="]
            lines.append(
                f"| {collective} | {show_size(nbytes)} | {raw * 1e6:.1f} µs | {fresh * 1e6:.1f} µs "
                f"| {unchecked * 1e6:.1f} µs ({(unchecked - raw) * 1e6:+.1f}) "
                f"| {into * 1e6:.1f} µs ({(into - raw) * 1e6:+.1f}) "
                f"| {checked * 1e6:.1f} µs ({(checked - raw) * 1e6:+.1f}) "
                f"| {(checked - unchecked) * 1e6:+.1f} µs |"
            )
    return [*lines, ""]


def poll(request: MPI.Request, spin: float = 10e-3, longest_sleep: float = 1e-3) -> None:
    """Wait as a ``Test`` loop with a deadline would: spin ``spin`` s, then sleep, doubling."""
    start = time.perf_counter()
    while time.perf_counter() - start < spin:
        if request.Test():
            return
    pause = 50e-6
    while not request.Test():
        time.sleep(pause)
        pause = min(2 * pause, longest_sleep)


def late_rank(nbytes: int, repeat: int, late: float = 0.05) -> dict[str, float]:
    """Seconds an allreduce takes after its last rank arrives ``late``, waited two ways.

    Why anyxp keeps the blocking call under a watchdog thread instead of polling: MPI
    moves a large message only while some call drives its progress, which a sleeping
    poller does not.
    """
    x = np.ones(nbytes // 8)
    out = np.empty_like(x)
    ways: dict[str, Callable[[MPI.Request], None]] = {
        "blocking wait": MPI.Request.Wait,
        "Test polling": poll,
    }
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(repeat):
        for name, wait in ways.items():
            WORLD.Barrier()
            start = time.perf_counter()
            if WORLD.rank == 1:
                time.sleep(late)
            wait(WORLD.Iallreduce(x, out, op=MPI.SUM))
            best[name] = min(best[name], time.perf_counter() - start - late)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_sizes = [f"{4**k} KiB".replace(" ", "") for k in range(9)]  # 1 KiB .. 64 MiB
    parser.add_argument("--sizes", nargs="*", default=default_sizes, help="e.g. 1KiB 1MiB")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--collectives", nargs="*", default=list(COLLECTIVES))
    parser.add_argument("--late-repeat", type=int, default=10, help="0 skips the late-rank part")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sizes = [parse_size(s) for s in args.sizes]
    load = os.getloadavg()[0]
    results = {
        c: [(nbytes, measure(c, nbytes, args.repeat)) for nbytes in sizes] for c in args.collectives
    }
    late_sizes = [nbytes for nbytes in (UNITS["MiB"], 64 * UNITS["MiB"]) if args.late_repeat]
    late = {nbytes: late_rank(nbytes, args.late_repeat) for nbytes in late_sizes}
    if WORLD.rank != 0:
        return
    library = " ".join(MPI.Get_library_version().splitlines()[0].split())
    lines = [
        "# Collectives: anyxp against raw mpi4py",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared (load average "
        f"{load:.1f} at the start); {WORLD.size} ranks on one node; Python "
        f"{platform.python_version()}; mpi4py {mpi4py.__version__}; "
        f"{library}. Produced by `mpiexec -n {WORLD.size} python benchmarks/bench_comm.py` "
        f"(best of {args.repeat}; float64 messages; the message size is per rank).",
        "",
        "Times are per call. Raw mpi4py reuses one preallocated output buffer; *raw, new "
        "output* allocates one per call, as anyxp must for the new array it returns. In the "
        "summary, brackets hold the difference to raw mpi4py and *checked - unchecked* is what "
        "checked mode (the default) costs: one Allreduce of 30 integers per call.",
        "",
    ]
    lines += summary(results)
    lines += ["## Every size", "", "Brackets hold the ratio to raw mpi4py.", ""]
    for collective, rows in results.items():
        lines += table(collective, rows)
    if late:
        lines += [
            "## Waiting for a late rank: blocking call vs Test polling",
            "",
            "Rank 1 joins an `Iallreduce` 50 ms after rank 0; the time rank 0 then still "
            "needs when it waits with `Wait`, as a blocking call does (anyxp keeps its "
            "collectives blocking, a watchdog thread keeping the deadline), or with a `Test` "
            "loop that spins 10 ms, then sleeps from 50 µs doubling up to 1 ms.",
            "",
            "| message | blocking wait | Test polling |",
            "|---|---|---|",
            *(
                f"| {show_size(nbytes)} | {t['blocking wait'] * 1e3:.2f} ms "
                f"| {t['Test polling'] * 1e3:.2f} ms |"
                for nbytes, t in late.items()
            ),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
