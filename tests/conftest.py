"""Helpers for anyxp's own tests: throwaway plugin distributions and subprocess runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

#: Every subprocess a test starts ends within this many seconds, or the test fails.
SUBPROCESS_TIMEOUT = 300


class Site:
    """A directory of throwaway distributions, put on ``PYTHONPATH`` of subprocesses."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(
        self, dist: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.0"
    ) -> None:
        """Write a real distribution: ``*.dist-info`` with METADATA and entry points."""
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        eps = "[anyxp]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(eps)
        for name, source in modules.items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANYXP_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        env.update(extra)
        return env

    def run(
        self, *args: str, timeout: float = SUBPROCESS_TIMEOUT, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python *args`` with this site importable."""
        return subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**extra_env),
            cwd=self.root,
        )


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return Site(tmp_path / "site")


def float64_backend(name: str) -> Any:
    """The backend ``name`` in float64 (skipping when its library is missing); JAX's notice
    that this turns on its process-wide x64 mode is expected here."""
    import warnings

    import anyxp

    pytest.importorskip({"numpy": "numpy", "array_api_strict": "array_api_strict"}.get(name, name))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*jax_enable_x64.*")
        return anyxp.backend(name, dtype="float64")


def mpiexec() -> str | None:
    """The mpiexec beside this Python (the ``mpich`` wheel's), or on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")
