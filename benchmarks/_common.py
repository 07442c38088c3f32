"""What the ODE benchmarks share: best-of-N timing, interpolation on a work-precision
curve, and the work-precision plot."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs of ``fn`` in seconds, and its (last) result."""
    out, times = None, []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def at_error(curve: list[dict[str, Any]], error: float, key: str) -> float | None:
    """A solver's ``key`` (time, f-evaluations) at ``error``, log-log interpolated on its
    sweep over tolerances; ``None`` where ``error`` lies outside the sweep. Rows of
    ``curve`` carry ``err``, ``key`` and optionally ``ok`` (failed runs are skipped)."""
    pts = sorted((r["err"], r[key]) for r in curve if r.get("ok", True) and r["err"] > 0)
    for (e0, v0), (e1, v1) in itertools.pairwise(pts):
        if e0 <= error <= e1 and e1 > e0:
            w = (np.log(error) - np.log(e0)) / (np.log(e1) - np.log(e0))
            return float(np.exp((1 - w) * np.log(v0) + w * np.log(v1)))
    return None


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
