"""A built wheel holds the same import tree as the editable install, and the entry points."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_matches_the_import_tree(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = tmp_path.glob("anyxp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = sorted(
        n[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        for n in names
        if n.endswith(".py")
    )
    for expected in (
        "anyxp",
        "anyxp.selection",
        "anyxp.testing.strategies",
        "anyxp.testing.pytest_plugin",
        "anyxp.plugins.torch._backend",
        "anyxp.plugins.mpi._comm",
        "anyxp.conformance.test_ad",
    ):
        assert expected in modules, expected
    # Every module in the wheel resolves in this (editable) install too, and vice versa
    # for the packages the source tree has.
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    sources = {p for p in ROOT.glob("core/**/*.py")} | {p for p in ROOT.glob("plugins/**/*.py")}
    sources |= {p for p in ROOT.glob("conformance/*.py")}
    assert len([m for m in modules if m.startswith("anyxp")]) == len(sources)
    # PEP 561: type checkers read anyxp's hints from the installed wheel.
    assert "anyxp/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[anyxp]" in text and "numpy = anyxp.plugins.numpy" in text
    assert "[pytest11]" in text and "anyxp = anyxp.testing.pytest_plugin" in text
    assert "anyxp = anyxp.cli:main" in text
