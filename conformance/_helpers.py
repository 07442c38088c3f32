"""Small helpers the conformance tests share."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from anyxp import Backend
from anyxp.selection import name_of
from anyxp.testing import assert_close


def tol(be: Backend) -> float:
    """A relative tolerance suited to the backend's float dtype."""
    return 1e-10 if str(be.float_dtype).endswith("float64") else 1e-4


def host_dtype(be: Backend) -> np.dtype:
    """Return the numpy dtype of ``be``'s float dtype (what ``be.to_numpy`` returns)."""
    return np.dtype(str(be.float_dtype).rsplit(".", 1)[-1])


def native(be: Backend, x: Any, what: str = "") -> None:
    """Assert that ``x`` is an array of ``be``, on ``be``'s device."""
    prefix = f"{what}: " if what else ""
    assert name_of(x) == be.name, (
        f"{prefix}expected a {be.name} array, got {type(x).__module__}.{type(x).__name__}"
    )
    assert be.device_of(x) == be.device or be.device_of(x) is None, (
        f"{prefix}array on {be.device_of(x)}, backend device is {be.device}"
    )


def check(
    be: Backend,
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "",
) -> None:
    """Assert ``actual`` is ``be``'s array and equals numpy's ``expected`` to tolerance.

    The default ``atol`` is far below the values tested but above subnormals, which XLA
    flushes to zero. ``what`` names the computation in the failure message.
    """
    native(be, actual, what)
    rtol = tol(be) if rtol is None else rtol
    atol = 1e-3 * rtol if atol is None else atol
    assert_close(
        actual,
        np.asarray(expected),
        rtol=rtol,
        atol=atol,
        check_namespace=False,
        check_dtype=False,
        check_device=False,
        err_msg=what,
    )


def requires(*capabilities: str) -> pytest.MarkDecorator:
    """Mark a test as needing capabilities (skipped where the backend lacks them)."""
    return pytest.mark.anyxp_requires(*capabilities)


def about(capability: str) -> pytest.MarkDecorator:
    """Tag a test with the capability it reports on, without requiring it."""
    return pytest.mark.anyxp_capability(capability)


def lacking(be: Backend, capability: str) -> None:
    """Skip unless ``be`` lacks ``capability`` (for the companion 'raises' tests)."""
    if capability in be.capabilities:
        pytest.skip(f"{be.name} declares {capability}")


#: Hypothesis settings for conformance tests: first calls compile (JAX) or warm up
#: (torch), so a per-example deadline would measure the library, not the plugin.
conformance = settings(deadline=None)
