"""Testing helpers for code written with anyxp: a pytest plugin, and comparisons."""

from __future__ import annotations

from anyxp.testing._assert import assert_close

__all__ = ["assert_close"]
