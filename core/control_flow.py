"""Control flow in the shape of ``jax.lax``, written once for every eager backend.

A compiling backend (JAX) maps these to its own primitives so that an algorithm's loop
is traced into one program; an eager backend runs them as plain Python loops.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

__all__ = ["EagerControlFlow", "tree_flatten", "tree_map"]

T = TypeVar("T")


def tree_map(fn: Callable[..., Any], tree: Any, *rest: Any) -> Any:
    """Apply ``fn`` to the leaves of nested tuples, lists and dicts (``None`` is empty)."""
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: tree_map(fn, v, *(r[k] for r in rest)) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        out = [tree_map(fn, *leaves) for leaves in zip(tree, *rest, strict=True)]
        return type(tree)(*out) if hasattr(tree, "_fields") else type(tree)(out)
    return fn(tree, *rest)


def _leaves(tree: Any) -> list[Any]:
    out: list[Any] = []
    tree_map(out.append, tree)
    return out


def tree_flatten(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
    """The leaves of nested tuples, lists and dicts, and the function that rebuilds the tree.

    ``rebuild(leaves)`` puts new leaves in the old ones' places.
    """
    leaves = _leaves(tree)

    def rebuild(new: list[Any]) -> Any:
        it = iter(new)
        return tree_map(lambda _: next(it), tree)

    return leaves, rebuild


class EagerControlFlow:
    """``while_loop``, ``fori_loop``, ``scan``, ``cond`` and ``jit`` as Python code."""

    compiled = False

    def __init__(self, xp: ModuleType) -> None:
        self.xp = xp

    def while_loop(
        self, cond_fun: Callable[[T], Any], body_fun: Callable[[T], T], init_val: T
    ) -> T:
        """Return ``body_fun`` applied to ``init_val`` while ``cond_fun`` holds."""
        val = init_val
        while bool(cond_fun(val)):
            val = body_fun(val)
        return val

    def fori_loop(self, lower: int, upper: int, body_fun: Callable[[int, T], T], init_val: T) -> T:
        """Return ``body_fun(i, val)`` folded over ``i`` in ``range(lower, upper)``."""
        val = init_val
        for i in range(int(lower), int(upper)):
            val = body_fun(i, val)
        return val

    def scan(
        self,
        f: Callable[[Any, Any], tuple[Any, Any]],
        init: Any,
        xs: Any = None,
        length: int | None = None,
    ) -> tuple[Any, Any]:
        """Fold ``f(carry, x) -> (carry, y)`` over the leading axis of ``xs``; stack the ys."""
        xp = self.xp
        leaves = _leaves(xs)
        if length is None:
            if not leaves:
                raise ValueError("scan needs xs or length to know how many steps to take")
            length = int(leaves[0].shape[0])
        carry, ys = init, []
        for i in range(length):
            x = tree_map(lambda leaf, i=i: leaf[i, ...], xs) if leaves else None
            carry, y = f(carry, x)
            ys.append(y)
        if not ys:
            return carry, None
        stacked = tree_map(lambda *ls: xp.stack([xp.asarray(v) for v in ls]), *ys)
        return carry, stacked

    def cond(
        self, pred: Any, true_fun: Callable[..., T], false_fun: Callable[..., T], *operands: Any
    ) -> T:
        """Return ``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)``."""
        return true_fun(*operands) if bool(pred) else false_fun(*operands)

    def jit(self, fun: Callable[..., T], **_: Any) -> Callable[..., T]:
        """Return ``fun`` unchanged: an eager backend runs it as it is."""
        return fun

    @staticmethod
    def tree_flatten(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
        """Leaves and rebuild function of nested tuples, lists and dicts (see ``tree_flatten``)."""
        return tree_flatten(tree)
