"""Reading anyxp's environment variables: one parser per kind, each warning on nonsense.

Every ``ANYXP_*`` variable is read through these, so ``1/true/yes/on`` mean the same
everywhere and a typo is reported instead of silently meaning "off".
"""

from __future__ import annotations

import math
import os

from anyxp._warnings import warn_user

__all__ = ["env_flag", "env_list", "env_seconds"]

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str, default: bool = False) -> bool:
    """The boolean variable ``name``: ``1/true/yes/on`` or ``0/false/no/off``, any case.

    Anything else warns, naming the variable and the accepted spellings, and gives
    ``default``.
    """
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False if value else default
    warn_user(
        f"{name}={raw!r} is not a boolean; use 1/true/yes/on or 0/false/no/off. "
        f"Using the default ({'on' if default else 'off'})."
    )
    return default


def env_list(name: str) -> frozenset[str] | None:
    """The comma-separated list ``name``, or ``None`` when unset or holding no names.

    A value with separators but no names (``" , ,"``) is ``None`` too, with a warning:
    an empty allow-list must never mean "block everything" by accident. A ``;``, ``:``
    or whitespace inside a name warns: the separator is a comma.
    """
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    names = [part.strip() for part in raw.split(",")]
    found = frozenset(n for n in names if n)
    if not found:
        warn_user(f"{name}={raw!r} names no entry; it is ignored.")
        return None
    odd = sorted(n for n in found if any(c in n for c in ";: \t"))
    if odd:
        warn_user(
            f"{name}={raw!r}: {', '.join(repr(n) for n in odd)} looks like several names; "
            "separate names with commas, e.g. torch,jax."
        )
    return found


def env_seconds(name: str, default: float) -> float:
    """The positive number of seconds ``name`` (``default`` when unset; warns on nonsense)."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        warn_user(f"{name}={raw!r} is not a positive number of seconds; using {default:g}.")
        return default
    return value
