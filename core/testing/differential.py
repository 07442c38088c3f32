"""Differential testing: one function, several backends, the same answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from anyxp.backend import Backend
from anyxp.testing._assert import assert_close

__all__ = ["assert_backends_agree"]


def _leaves(out: Any) -> list[Any]:
    if isinstance(out, tuple | list):
        return [leaf for item in out for leaf in _leaves(item)]
    if isinstance(out, dict):
        return [leaf for key in sorted(out) for leaf in _leaves(out[key])]
    return [out]


def assert_backends_agree(
    fn: Callable[..., Any],
    *args: Any,
    backends: Iterable[str | Backend] | None = None,
    dtype: str | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    **kwargs: Any,
) -> dict[str, list[np.ndarray]]:
    """Run ``fn(*args, **kwargs)`` on several backends and assert the results agree.

    Array arguments (numpy arrays, or any backend's arrays) are moved to each backend with
    ``be.asarray``; other arguments pass through. Every array ``fn`` returns must belong
    to the backend it ran on (a function that silently falls back to numpy fails), and
    agree with the first backend's result to the tolerance of the lower precision.

    Parameters
    ----------
    fn
        The function under test; it infers its backend from its inputs.
    backends
        Names or backends; default every available backend.
    dtype
        ``"float32"`` or ``"float64"`` for every backend; default float64 where all
        declare it, else float32.

    Returns
    -------
    dict
        For each backend name, the flattened results as numpy arrays.
    """
    import anyxp
    from anyxp.selection import name_of

    chosen = list(backends) if backends is not None else anyxp.get_registry().available_backends()
    if len(chosen) < 2:
        raise ValueError(f"differential testing needs at least two backends, got {chosen}")
    if dtype is None:
        specs = [
            b.spec if isinstance(b, Backend) else anyxp.get_registry().backend_spec(b)
            for b in chosen
        ]
        dtype = "float64" if all("float64" in s.capabilities for s in specs) else "float32"
    bes = [b if isinstance(b, Backend) else anyxp.backend(b, dtype=dtype) for b in chosen]

    def move(be: Backend, value: Any) -> Any:
        if isinstance(value, np.ndarray) or name_of(value) is not None:
            return be.asarray(value)
        if isinstance(value, list | tuple):
            return type(value)(move(be, v) for v in value)
        return value

    results: dict[str, list[np.ndarray]] = {}
    for be in bes:
        out = fn(*(move(be, a) for a in args), **{k: move(be, v) for k, v in kwargs.items()})
        host = []
        for i, leaf in enumerate(_leaves(out)):
            owner = name_of(leaf)
            if owner is not None and owner != be.name:
                raise AssertionError(
                    f"on backend {be.name!r}, output {i} is a {owner} array: the function "
                    "left the backend it was given"
                )
            host.append(be.to_numpy(leaf) if owner is not None else np.asarray(leaf))
        results[be.name] = host
    first, *rest = results
    loosest = np.float32 if dtype == "float32" else np.float64
    default = 1e3 * float(np.finfo(loosest).eps)
    for name in rest:
        if len(results[name]) != len(results[first]):
            raise AssertionError(
                f"{name} returned {len(results[name])} outputs, {first} {len(results[first])}"
            )
        for i, (a, b) in enumerate(zip(results[name], results[first], strict=True)):
            assert_close(
                a,
                b,
                rtol=default if rtol is None else rtol,
                atol=default if atol is None else atol,
                check_dtype=False,
                err_msg=f"output {i}: {name} vs {first}",
            )
    return results
