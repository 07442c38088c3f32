"""Collectives between processes, and the size-1 comm every backend has by default.

Semantics (the same at size 1 and size N):

- ``allreduce(x, op)``: every rank gets the elementwise reduction of all ranks' ``x``;
  ``op`` is one of ``sum, prod, max, min, mean`` (``mean`` needs a floating dtype).
- ``broadcast(x, root=0)``: every rank gets ``root``'s ``x``.
- ``allgather(x)``: every rank gets the ``x`` of all ranks stacked on a new axis 0.
- ``reduce_scatter(x, op)``: ``x.shape[0]`` is a multiple of ``size``; rank ``r`` gets
  block ``r`` of the reduction.
- ``ppermute(x, perm)``: ``perm`` lists ``(source, destination)`` pairs; a rank gets the
  ``x`` of its source, or zeros when no pair names it as destination.
- ``barrier()``: returns when every rank has called it.

Every rank calls the same collectives in the same order, with the same ``op``, ``root``
and ``perm`` and arrays of one shape and dtype. ``x`` is an array of the backend (a
Python number or list raises ``TypeError``: pass ``be.asarray(...)``), and every result
is a new array, unless the comm declares ``comm.out`` and the caller passes ``out=``: a
preallocated, contiguous array of the backend with the result's shape and dtype, which
the result is written into and which is returned (``out`` may be ``x`` itself for
``allreduce``, ``broadcast`` and ``ppermute``: in place). Results written into ``out`` carry no
derivative. Large messages gain most: a new result buffer per call costs page faults
that a reused one does not. A comm between processes may check the agreement and raise
``anyxp.CommMismatchError`` on every rank; the local comm has nothing to disagree with.
The checks of one rank's own arguments live here, so both comms raise the same errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "REDUCE_OPS",
    "Comm",
    "LocalComm",
    "check_array",
    "check_blocks",
    "check_op",
    "check_out",
    "check_perm",
    "check_root",
    "no_out",
    "source_of",
    "write_into",
]

REDUCE_OPS = ("sum", "prod", "max", "min", "mean")


class Comm(Protocol):
    """What ``be.comm`` provides."""

    name: str
    rank: int
    size: int

    def allreduce(self, x: Any, op: str = "sum", *, out: Any = None) -> Any: ...
    def broadcast(self, x: Any, root: int = 0, *, out: Any = None) -> Any: ...
    def allgather(self, x: Any, *, out: Any = None) -> Any: ...
    def reduce_scatter(self, x: Any, op: str = "sum", *, out: Any = None) -> Any: ...
    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]], *, out: Any = None) -> Any: ...
    def barrier(self) -> None: ...


def check_array(what: str, x: Any) -> None:
    """Raise ``TypeError`` unless ``x`` is an array (it has a ``shape`` and a ``dtype``).

    Parameters
    ----------
    what : str
        The collective, named in the message.
    x : object
        What the caller passed.
    """
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return
    shown = repr(x)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise TypeError(
        f"{what} takes an array of the backend, got {type(x).__name__} {shown}; "
        f"pass be.asarray({shown}) instead."
    )


def check_op(op: str, dtype: Any, xp: Any) -> None:
    """Raise ``ValueError`` for an unknown op, ``TypeError`` for a ``mean`` of integers."""
    if op not in REDUCE_OPS:
        raise ValueError(f"unknown reduction op {op!r}; choose one of {', '.join(REDUCE_OPS)}")
    if op == "mean" and not xp.isdtype(dtype, ("real floating", "complex floating")):
        raise TypeError(
            f"allreduce(op='mean') needs a floating dtype, got {dtype}; "
            "cast first with xp.astype(x, be.float_dtype)."
        )


def check_out(what: str, out: Any, shape: tuple[int, ...], dtype: Any) -> None:
    """Raise ``ValueError`` unless ``out`` can hold ``what``'s result of ``shape`` and
    ``dtype`` (``TypeError`` unless it is an array at all)."""
    if getattr(out, "shape", None) == shape and getattr(out, "dtype", None) == dtype:
        return  # the hot path: no message built
    check_array(f"{what}(out=...)", out)
    if tuple(out.shape) != tuple(shape) or out.dtype != dtype:
        raise ValueError(
            f"{what}(out=...) needs an array of shape {tuple(shape)} and dtype {dtype} "
            f"for its result, got shape {tuple(out.shape)} and dtype {out.dtype}; allocate "
            "it once with xp.empty(shape, dtype=...) and pass it to every call"
        )


def write_into(what: str, out: Any, result: Any) -> Any:
    """Write ``result`` into ``out`` and return ``out``; ``TypeError`` naming ``what``
    where ``out``'s arrays cannot be written into (JAX's)."""
    try:
        out[...] = result
    except (TypeError, NotImplementedError) as e:
        raise TypeError(
            f"{what}(out=...) writes into out, but {type(out).__name__} arrays cannot be "
            "written into; drop out= and use the returned array"
        ) from e
    return out


def no_out(comm: str, what: str, out: Any) -> None:
    """Raise ``TypeError`` when ``out`` is given to a comm that cannot write into arrays."""
    if out is not None:
        raise TypeError(
            f"{what}(out=...) is not offered by the {comm} comm (it does not declare "
            "comm.out): its arrays are immutable; drop out= and use the returned array"
        )


def check_root(root: int, size: int) -> None:
    """Raise ``ValueError`` unless ``root`` is a rank of a comm of ``size`` ranks."""
    if not 0 <= root < size:
        raise ValueError(
            f"broadcast root {root} is outside 0..{size - 1}; pass the rank that holds the data."
        )


def check_blocks(shape: tuple[int, ...], size: int) -> None:
    """Raise ``ValueError`` unless axis 0 of ``shape`` splits into ``size`` equal blocks."""
    if not shape or shape[0] % size:
        raise ValueError(
            f"reduce_scatter splits axis 0 into {size} blocks; got shape {tuple(shape)}. "
            "Pad axis 0 to a multiple of the comm size."
        )


def check_perm(perm: Sequence[tuple[int, int]], size: int) -> None:
    """Raise ``ValueError`` unless ``perm`` is a partial permutation of ``range(size)``."""
    pairs = [tuple(p) for p in perm]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"ppermute takes (source, destination) pairs, got {perm!r}")
    sources, dests = [p[0] for p in pairs], [p[1] for p in pairs]
    bad = [r for r in sources + dests if not 0 <= r < size]
    if bad:
        raise ValueError(f"ppermute ranks {bad} are outside 0..{size - 1}")
    if len(set(sources)) != len(sources) or len(set(dests)) != len(dests):
        raise ValueError(
            f"ppermute perm {perm!r} sends from or to one rank twice; each rank may appear "
            "at most once as a source and once as a destination"
        )


def source_of(rank: int, perm: Sequence[tuple[int, int]]) -> int | None:
    """Return the rank that sends to ``rank`` under ``perm``, if any."""
    for src, dst in perm:
        if dst == rank:
            return int(src)
    return None


class LocalComm:
    """One process: every collective keeps its size-N meaning with ``size == 1``."""

    name = "local"
    rank = 0
    size = 1

    def __init__(self, backend: Any) -> None:
        self.xp = backend.xp

    def _copy(self, x: Any) -> Any:
        # A real collective returns a new buffer; so does this one, so that callers who
        # mutate the result behave the same at size 1 and size N.
        # (Not asarray(copy=True): torch warns on it for a tensor that requires grad, and
        # this copy must keep the derivative.)
        return self.xp.stack([x])[0, ...]

    def _give(self, what: str, result: Any, out: Any) -> Any:
        """``result``, or ``out`` holding it."""
        if out is None:
            return result
        check_out(what, out, tuple(result.shape), result.dtype)
        return write_into(what, out, result)

    def allreduce(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return the reduction over the one rank (a copy of ``x``)."""
        check_array("allreduce", x)
        check_op(op, x.dtype, self.xp)
        return self._give("allreduce", x if out is not None else self._copy(x), out)

    def broadcast(self, x: Any, root: int = 0, *, out: Any = None) -> Any:
        """Return ``root``'s ``x``; ``root`` must be 0."""
        check_array("broadcast", x)
        check_root(root, 1)
        return self._give("broadcast", x if out is not None else self._copy(x), out)

    def allgather(self, x: Any, *, out: Any = None) -> Any:
        """Return ``x`` with a new leading axis of length 1."""
        check_array("allgather", x)
        return self._give("allgather", self.xp.stack([x]), out)

    def reduce_scatter(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """Return the reduction of ``x``, all of it being this rank's block."""
        check_array("reduce_scatter", x)
        check_op(op, x.dtype, self.xp)
        check_blocks(tuple(x.shape), 1)
        return self._give("reduce_scatter", x if out is not None else self._copy(x), out)

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]], *, out: Any = None) -> Any:
        """Return ``x`` if ``perm`` sends rank 0 to itself, else zeros."""
        check_array("ppermute", x)
        check_perm(perm, 1)
        if source_of(0, perm) != 0:
            return self._give("ppermute", self.xp.zeros_like(x), out)
        return self._give("ppermute", x if out is not None else self._copy(x), out)

    def barrier(self) -> None:
        """Return at once: there is no other rank to wait for."""

    def __repr__(self) -> str:
        return "LocalComm(rank=0, size=1)"


def create_local(backend: Any, **options: Any) -> LocalComm:
    """Build the ``local`` comm (the factory its spec names); it takes no options."""
    if options:
        raise TypeError(f"the local comm takes no options, got {sorted(options)}")
    return LocalComm(backend)
