"""Collectives that carry derivatives: each one's transpose is another collective.

A loss that rank ``r`` computes from collective results is one term of the job's total
loss ``L = Σ_r L_r``; the derivative each rank gets for its own inputs is that of ``L``,
as in every SPMD framework. So the reverse of each collective is:

- ``allreduce(x, "sum")`` → ``allreduce(ḡ, "sum")``; ``"mean"`` → ``allreduce(ḡ, "mean")``;
  ``"max"``/``"min"`` → the summed cotangent where ``x`` is the extremum (ties share);
  ``"prod"`` → ``allreduce(ḡ·out, "sum") / x``;
- ``broadcast(x, root)`` → ``allreduce(ḡ, "sum")`` on ``root``, zero elsewhere;
- ``allgather(x)`` → ``reduce_scatter(ḡ, "sum")`` (each rank takes its own slot back);
- ``reduce_scatter(x, "sum")`` → ``allgather(ḡ)`` laid out along axis 0 (``"mean"``
  divides by the size);
- ``ppermute(x, perm)`` → ``ppermute(ḡ, inverse of perm)``.

Each rule is itself made of collectives and array operations, so it has derivatives of its
own. The wrapper costs nothing when no derivative is being taken (torch skips the rule;
JAX calls the plain collective).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyxp.comm import check_array

__all__ = ["DifferentiableComm", "differentiable"]


class DifferentiableComm:
    """A comm whose collectives have derivative rules (see the module docstring)."""

    def __init__(self, comm: Any, backend: Any) -> None:
        self.inner = comm
        self.be = backend

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)  # name, rank, size, checked, ...

    def __repr__(self) -> str:
        return repr(self.inner)

    def _rule(self, what: str, forward: Any, backward: Any, x: Any) -> Any:
        """``forward(x)`` whose reverse mode is ``backward(x, out_bar)``."""
        check_array(what, x)  # a Python number gets the collective's own TypeError

        def fun(x: Any) -> Any:
            # The collective itself needs no graph: its derivative is the rule below.
            return forward(self.be.ad.stop_gradient(x)), ()

        def fwd(x: Any) -> Any:
            return fun(x), None

        def bwd(args: tuple[Any, ...], _: Any, out_bar: Any) -> tuple[Any, ...]:
            (x,) = args
            return (backward(x, out_bar),)

        out, _ = self.be.ad.custom_vjp(fun, fwd, bwd)(x)
        return out

    def allreduce(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """``allreduce`` with its derivative (none into ``out``)."""
        inner, xp = self.inner, self.be.xp
        if out is not None:
            return inner.allreduce(x, op, out=out)

        def back(x: Any, bar: Any) -> Any:
            if op in ("sum", "mean"):
                return inner.allreduce(bar, op)
            out = inner.allreduce(self.be.ad.stop_gradient(x), op)
            if op == "prod":
                return inner.allreduce(bar * out, "sum") / x
            total = inner.allreduce(bar, "sum")  # max, min: to where x is the extremum
            hit = xp.astype(x == out, x.dtype)
            return total * hit / inner.allreduce(hit, "sum")

        return self._rule("allreduce", lambda x: inner.allreduce(x, op), back, x)

    def broadcast(self, x: Any, root: int = 0, *, out: Any = None) -> Any:
        """``broadcast`` with its derivative (none into ``out``)."""
        inner, xp = self.inner, self.be.xp
        if out is not None:
            return inner.broadcast(x, root, out=out)

        def back(x: Any, bar: Any) -> Any:
            total = inner.allreduce(bar, "sum")
            return total if inner.rank == root else xp.zeros_like(total)

        return self._rule("broadcast", lambda x: inner.broadcast(x, root), back, x)

    def allgather(self, x: Any, *, out: Any = None) -> Any:
        """``allgather`` with its derivative (none into ``out``)."""
        inner, xp = self.inner, self.be.xp
        if out is not None:
            return inner.allgather(x, out=out)

        def back(x: Any, bar: Any) -> Any:
            return xp.reshape(inner.reduce_scatter(bar, "sum"), x.shape)

        return self._rule("allgather", inner.allgather, back, x)

    def reduce_scatter(self, x: Any, op: str = "sum", *, out: Any = None) -> Any:
        """``reduce_scatter`` with its derivative (``sum`` and ``mean``; none into ``out``)."""
        inner, xp = self.inner, self.be.xp
        if out is not None:
            return inner.reduce_scatter(x, op, out=out)

        def back(x: Any, bar: Any) -> Any:
            if op not in ("sum", "mean"):
                raise NotImplementedError(
                    f"the derivative of reduce_scatter(op={op!r}) is not provided; use "
                    "op='sum' or 'mean', or allreduce then take your block"
                )
            gathered = xp.reshape(inner.allgather(bar), x.shape)
            return gathered / inner.size if op == "mean" else gathered

        return self._rule("reduce_scatter", lambda x: inner.reduce_scatter(x, op), back, x)

    def ppermute(self, x: Any, perm: Sequence[tuple[int, int]], *, out: Any = None) -> Any:
        """``ppermute`` with its derivative: the inverse permutation (none into ``out``)."""
        inner = self.inner
        if out is not None:
            return inner.ppermute(x, perm, out=out)
        inverse = [(int(d), int(s)) for s, d in perm]
        return self._rule(
            "ppermute",
            lambda x: inner.ppermute(x, perm),
            lambda x, bar: inner.ppermute(bar, inverse),
            x,
        )

    def barrier(self) -> None:
        """``barrier``: nothing to differentiate."""
        self.inner.barrier()


def differentiable(comm: Any, backend: Any) -> Any:
    """``comm`` with derivative rules where the backend can take them (``ad.custom``)."""
    if "ad.custom" not in backend.spec.capabilities or isinstance(comm, DifferentiableComm):
        return comm
    return DifferentiableComm(comm, backend)
