"""The cost of anyxp's dispatch, side by side with calling each library directly.

Two questions, for each CPU backend:

1. ``anyxp.backend(like=x)`` on the cached path: how long does inference take? It is
   compared with ``array_api_compat.array_namespace(x)``, the anchor for namespace lookup.
2. An array operation through ``be.xp``: how does it compare with the library's own
   function on the same array (small arrays show per-call overhead, large ones throughput)?

Run:  python benchmarks/bench_dispatch.py [--out benchmarks/results/dispatch.md]
Ratios > 1 mean anyxp is slower. Each number is the best of several repeats.
"""

from __future__ import annotations

import argparse
import platform
import timeit
from collections.abc import Callable
from pathlib import Path

import array_api_compat
import numpy as np

import anyxp


def best(fn: Callable[[], object], number: int) -> float:
    """Seconds per call: the minimum over 7 repeats of ``number`` calls."""
    fn()
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def libraries() -> dict[
    str,
    tuple[Callable[[int], object], dict[str, Callable[[object], object]], Callable[[object], None]],
]:
    """name -> (make an array of n elements, {op: direct library call}, block until done)."""
    import jax
    import jax.numpy as jnp
    import torch

    libs = {
        "numpy": (
            lambda n: np.linspace(0.0, 1.0, n),
            {
                "exp": np.exp,
                "sum": np.sum,
                "add": lambda x: np.add(x, x),
                "matmul": lambda x: x @ x,
            },
            lambda y: None,
        ),
        "torch": (
            lambda n: torch.linspace(0.0, 1.0, n, dtype=torch.float64),
            {
                "exp": torch.exp,
                "sum": torch.sum,
                "add": lambda x: torch.add(x, x),
                "matmul": lambda x: x @ x,
            },
            lambda y: None,
        ),
        "jax": (
            lambda n: jnp.linspace(0.0, 1.0, n, dtype=jnp.float32),
            {
                "exp": jnp.exp,
                "sum": jnp.sum,
                "add": lambda x: jnp.add(x, x),
                "matmul": lambda x: x @ x,
            },
            lambda y: jax.block_until_ready(y),
        ),
    }
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            libs["cupy"] = (
                lambda n: cupy.linspace(0.0, 1.0, n),
                {
                    "exp": cupy.exp,
                    "sum": cupy.sum,
                    "add": lambda x: cupy.add(x, x),
                    "matmul": lambda x: x @ x,
                },
                lambda y: cupy.cuda.Stream.null.synchronize(),
            )
    except Exception:  # noqa: BLE001 - no CuPy or no GPU: measure the CPU libraries only
        pass
    return libs


def through_xp(be: anyxp.Backend) -> dict[str, Callable[[object], object]]:
    xp = be.xp
    return {
        "exp": xp.exp,
        "sum": xp.sum,
        "add": lambda x: xp.add(x, x),
        "matmul": lambda x: xp.matmul(x, x),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = [
        "# Dispatch overhead",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}; Python "
        f"{platform.python_version()}; produced by `python benchmarks/bench_dispatch.py`.",
        "",
        "## `anyxp.backend(like=x)` (cached) vs `array_api_compat.array_namespace(x)`",
        "",
        "| library | anyxp.backend(like=x) | array_namespace(x) | ratio |",
        "|---|---|---|---|",
    ]
    libs = libraries()
    for name, (make, _, _) in libs.items():
        x = make(16)
        t_any = best(lambda x=x: anyxp.backend(like=x), 20_000)
        t_compat = best(lambda x=x: array_api_compat.array_namespace(x), 20_000)
        lines.append(
            f"| {name} | {t_any * 1e6:.2f} µs | {t_compat * 1e6:.2f} µs | {t_any / t_compat:.2f} |"
        )
    lines += [
        "",
        "## An operation through `be.xp` vs the library's own function",
        "",
        "| library | op | n | library | through be.xp | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, (make, direct, block) in libs.items():
        be = anyxp.backend(name, dtype="float32" if name == "jax" else "float64")
        ours = through_xp(be)
        for n in (16, 1_000_000):
            x = make(n)
            for op, fn in direct.items():
                if op == "matmul":
                    x2 = make(64 * 64 if n == 16 else 512 * 512).reshape(
                        (64, 64) if n == 16 else (512, 512)
                    )
                    arg, size = x2, f"{x2.shape[0]}²"
                else:
                    arg, size = x, str(n)
                number = 2000 if n == 16 else 20
                t_lib = best(lambda f=fn, a=arg, b=block: b(f(a)), number)
                t_xp = best(lambda f=ours[op], a=arg, b=block: b(f(a)), number)
                lines.append(
                    f"| {name} | {op} | {size} | {t_lib * 1e6:.2f} µs | {t_xp * 1e6:.2f} µs | {t_xp / t_lib:.2f} |"
                )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
