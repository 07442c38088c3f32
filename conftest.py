"""Every Python block of README.md and docs/*.md runs as a test, with Sybil.

The blocks of one page run in order in one namespace, as a reader pastes them one after
another into one script (``__name__`` is ``"__main__"`` there, as in a script), from a
scratch directory. A block that cannot run here is preceded by a Sybil comment, which
neither GitHub nor the built site shows::

    <!-- skip: next "an MPI script: run it with mpiexec" -->
    <!-- skip: start if(_missing("sparse"), reason="needs sparse: pip install ...") -->
    ...
    <!-- skip: end -->

``_missing(*modules)`` is true when one of the modules cannot be imported.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from typing import Any

from sybil import Sybil
from sybil.parsers.myst import PythonCodeBlockParser, SkipParser


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(m) is None for m in modules)


def _setup(namespace: dict[str, Any]) -> None:
    scratch = tempfile.TemporaryDirectory(prefix="anyxp-docs-")
    namespace.update(__name__="__main__", _missing=_missing, _scratch=(scratch, os.getcwd()))
    os.chdir(scratch.name)  # a block that writes files writes them here


def _teardown(namespace: dict[str, Any]) -> None:
    scratch, cwd = namespace.pop("_scratch")
    os.chdir(cwd)
    scratch.cleanup()


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md"],
    excludes=["docs/*/*"],  # example-plugin/, _generated/, _build/
    setup=_setup,
    teardown=_teardown,
).pytest()
