"""What ``anyxp.nn`` needs of pytrees beyond :func:`anyxp.control_flow.tree_map`.

A pytree here is what both ``jax`` and ``torch.func`` accept: nested lists, tuples
(named ones too) and dicts of arrays, ``None`` standing for an empty subtree.
"""

from __future__ import annotations

from typing import Any

import anyxp
from anyxp.control_flow import tree_map
from anyxp.errors import MixedBackendsError
from anyxp.selection import name_of

__all__ = ["backend_of", "check_same_structure", "leaves", "structure"]


def leaves(tree: Any) -> list[Any]:
    """Return the arrays of ``tree`` in the order ``tree_map`` visits them."""
    out: list[Any] = []
    tree_map(out.append, tree)
    return out


def structure(tree: Any) -> Any:
    """Return the shape of ``tree`` with its leaves replaced by ``"*"`` (for comparing).

    Lists and tuples compare equal when their items do: ``torch.func`` and ``jax`` give
    gradients in the containers of the parameters, and a user building a tree by hand
    should not have to match ``list`` against ``tuple``.
    """
    if tree is None:
        return None
    if isinstance(tree, dict):
        return {k: structure(v) for k, v in tree.items()}
    if isinstance(tree, tuple | list):
        return [structure(v) for v in tree]
    return "*"


def check_same_structure(tree: Any, like: Any, what: str, fix: str) -> None:
    """Raise ``ValueError`` naming ``what`` and ``fix`` unless ``tree`` is shaped as ``like``."""
    got, want = structure(tree), structure(like)
    if got != want:
        raise ValueError(
            f"{what} do not have the structure of the parameters: expected "
            f"{_short(want)}, got {_short(got)}. {fix}"
        )


def _short(shape: Any, limit: int = 160) -> str:
    text = repr(shape).replace("'*'", "*")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def backend_of(trees: dict[str, Any], where: str) -> anyxp.Backend:
    """Return the backend owning every array of ``trees`` (``{name: tree}``).

    Arrays of two libraries raise :class:`~anyxp.MixedBackendsError` naming which argument
    holds which library, and how to move a whole tree to one backend.
    """
    arrays = [leaf for tree in trees.values() for leaf in leaves(tree)]
    if arrays and all(type(a) is type(arrays[0]) for a in arrays) and name_of(arrays[0]):
        # One array type throughout (the usual case, once per training step): the cached
        # lookup of one array, which gives what the whole tree would.
        return anyxp.backend(like=arrays[0])
    try:
        return anyxp.backend(like=list(trees.values()))
    except MixedBackendsError:
        pass
    owners = {name: _libraries(tree) for name, tree in trees.items()}
    found = "; ".join(f"{name}: {', '.join(sorted(libs))}" for name, libs in owners.items() if libs)
    raise MixedBackendsError(
        f"{where} got arrays of more than one library ({found}). Move them to one backend "
        "first: be = anyxp.backend(NAME); params = anyxp.control_flow.tree_map(be.asarray, "
        "params); x = be.asarray(x)."
    ) from None


def _libraries(tree: Any) -> set[str]:
    return {n for n in (name_of(leaf) for leaf in leaves(tree)) if n is not None}
