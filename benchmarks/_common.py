"""What the ODE benchmarks share: best-of-N timing and the work-precision plot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``fn`` in seconds, and its (last) result."""
    out, times = None, []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def work_precision_plot(
    path: Path, curves: dict[str, dict[str, list[tuple[float, float]]]], xlabel: str
) -> None:
    """One log-log panel per problem: seconds against error, one line per solver."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(4.5 * len(curves), 4), squeeze=False)
    for ax, (problem, solvers) in zip(axes[0], curves.items(), strict=True):
        for label, pts in solvers.items():
            if pts:
                e, t = zip(*sorted(pts), strict=True)
                ax.loglog(e, t, marker="o", label=label)
        ax.set_title(problem)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
