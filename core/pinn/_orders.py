"""The derivative spec and the plan that computes it: which gradient gives which partial.

A spec names partial derivatives by multi-index, one order per coordinate:
``{"u": (0, 0), "u_x": (1, 0), "u_xx": (2, 0), "u_xy": (1, 1)}``. Reverse-mode AD gives
all ``d`` first partials of one quantity in one pass, so the partials of order ``k + 1``
come from pulling back a few of order ``k``: ``u_xx`` and ``u_xy`` both from ``u_x``.
The :class:`Plan` is that choice written down as data: the pulls, lower orders first,
each naming the partial it differentiates and the partials it gives. Both methods of
:func:`anyxp.pinn.derivatives` run the same plan; only what a partial is differs (a
scalar for ZCS, a field for the aligned method).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Orders", "Plan", "Pull", "check_orders", "plan"]

#: A derivative spec: a name for each partial derivative wanted, and its multi-index.
Orders = Mapping[str, Sequence[int]]

_EXAMPLE = (
    'e.g. {"u": (0, 0), "u_x": (1, 0), "u_xx": (2, 0), "u_xy": (1, 1)} for coordinates '
    "(x, y): one order per coordinate"
)


@dataclass(frozen=True)
class Pull:
    """One reverse pass: the gradient of the partial ``parent`` gives ``children``.

    ``children`` holds ``(dim, index)`` pairs: component ``dim`` of the gradient is the
    partial with multi-index ``index`` (``parent`` with order ``dim`` raised by one).
    """

    parent: tuple[int, ...]
    children: tuple[tuple[int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Plan:
    """How to compute a spec: its pulls, and which pull gives each partial.

    ``pulls`` are ordered by the total order of their parents, lowest first;
    ``made_by[index]`` is ``(number of the pull in pulls, dim)`` for every partial of
    total order one or more that the plan computes (wanted, or the parent of one).
    """

    dims: int
    pulls: tuple[Pull, ...]
    made_by: Mapping[tuple[int, ...], tuple[int, int]]

    @property
    def order(self) -> int:
        """The highest total order the plan computes."""
        return max((sum(index) for index in self.made_by), default=0)


def check_orders(orders: Any, dims: int) -> dict[str, tuple[int, ...]]:
    """Return ``orders`` as ``{name: multi-index}``, or raise saying what is wrong and how.

    ``dims`` is the number of coordinates: every multi-index has that many orders.
    """
    if not isinstance(orders, Mapping) or not orders:
        raise TypeError(
            f"orders must be a non-empty dict from a name to a multi-index ({_EXAMPLE}); "
            f"got {orders!r}"
        )
    spec: dict[str, tuple[int, ...]] = {}
    for name, index in orders.items():
        if not isinstance(name, str):
            raise TypeError(f"orders' keys name the derivatives and must be str, got {name!r}")
        if isinstance(index, str) or not isinstance(index, Sequence):
            raise TypeError(
                f"orders[{name!r}] must be a tuple of {dims} non-negative ints ({_EXAMPLE}); "
                f"got {index!r}"
            )
        if len(index) != dims:
            raise ValueError(
                f"orders[{name!r}] = {tuple(index)} has {len(index)} orders but the coordinates "
                f"have {dims} dimensions (coords of shape (N, {dims})): give one order per "
                f"coordinate, {_EXAMPLE}"
            )
        if not all(_natural(n) for n in index):
            raise ValueError(
                f"orders[{name!r}] = {tuple(index)} must hold non-negative ints, one order of "
                f"differentiation per coordinate; 0 means not differentiated along it"
            )
        spec[name] = tuple(int(n) for n in index)
    return spec


def plan(spec: Mapping[str, tuple[int, ...]], dims: int) -> Plan:
    """Return the plan computing every multi-index of ``spec`` (checked by :func:`check_orders`).

    Each order is planned from the top down: the partials of order ``k`` are covered by as
    few parents of order ``k - 1`` as a greedy set cover finds (one pull gives ``d``
    partials), preferring parents that are wanted anyway, and those parents join the
    partials wanted at order ``k - 1``.
    """
    wanted: dict[int, set[tuple[int, ...]]] = {}
    for index in spec.values():
        wanted.setdefault(sum(index), set()).add(index)
    chosen: dict[int, list[tuple[tuple[int, ...], list[tuple[int, tuple[int, ...]]]]]] = {}
    for order in range(max(wanted), 0, -1):
        wanted.setdefault(order - 1, set())
        chosen[order] = _cover(wanted.get(order, set()), wanted[order - 1])
        wanted[order - 1].update(parent for parent, _ in chosen[order])
    pulls: list[Pull] = []
    made_by: dict[tuple[int, ...], tuple[int, int]] = {}
    for order in sorted(chosen):
        for parent, children in chosen[order]:
            made_by.update((child, (len(pulls), dim)) for dim, child in children)
            pulls.append(Pull(parent, tuple(children)))
    return Plan(dims, tuple(pulls), made_by)


def _cover(
    targets: set[tuple[int, ...]], preferred: set[tuple[int, ...]]
) -> list[tuple[tuple[int, ...], list[tuple[int, tuple[int, ...]]]]]:
    """Parents (one order lower) whose gradients hold every target, each with its targets."""
    left = set(targets)
    cover = []
    while left:
        gives: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for child in left:
            for dim, n in enumerate(child):
                if n:
                    parent = (*child[:dim], n - 1, *child[dim + 1 :])
                    gives.setdefault(parent, []).append((dim, child))
        # Most targets first; then a parent wanted anyway; then a fixed order (reproducible).
        parent = max(gives, key=lambda p: (len(gives[p]), p in preferred, p))
        children = sorted(gives[parent])
        cover.append((parent, children))
        left.difference_update(child for _, child in children)
    return cover


def _natural(n: Any) -> bool:
    return isinstance(n, numbers.Integral) and not isinstance(n, bool) and int(n) >= 0
