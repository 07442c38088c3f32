"""``python -m pytest`` runs every Python example of README.md and docs/ (conftest.py, Sybil).

The examples themselves are the tests; these check that none is left out of them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: A fenced block's opening line, with or without a MyST directive: ```python, ~~~py,
#: ```{code-block} python3 ...
FENCE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*(?:\{[\w-]+\}[ \t]*)?([\w+-]*)", re.MULTILINE)
PYTHON = {"py", "python", "python3", "ipython", "ipython3", "pycon"}
SKIP = re.compile(r"^<!-- skip: ", re.MULTILINE)


def test_the_test_command_collects_the_docs(request):
    testpaths = request.config.getini("testpaths")
    assert "README.md" in testpaths and "docs" in testpaths, testpaths


def test_every_python_block_is_collected():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + [str(p.relative_to(ROOT)) for p in PAGES],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    collected = [line.split("::")[0] for line in out.stdout.splitlines() if "::line:" in line]
    for page in PAGES:
        text = page.read_text()
        blocks = [m for m in FENCE.finditer(text) if m.group(1).lower() in PYTHON]
        # Sybil makes one item per ```python block and one per skip comment; a block
        # fenced as ```py or ```python3 would be shown but never run.
        plain = [m for m in blocks if m.group(0).strip().lstrip("`~").strip() == "python"]
        assert len(plain) == len(blocks), f"{page.name}: fence Python blocks as ```python"
        expected = len(blocks) + len(SKIP.findall(text))
        assert collected.count(str(page.relative_to(ROOT))) == expected, page.name
