"""Partial derivatives of a field with respect to its coordinates: ZCS or aligned.

A field ``fn(x)`` gives, for coordinates ``x`` of shape ``(N, d)``, values of shape
``(*batch, N)``: ``u[b, j]`` at point ``x[j]`` for each member ``b`` of a batch (a
DeepONet's ``M`` input functions). Both methods shift the coordinates by a leaf that is
zero and differentiate with respect to the shift, which is differentiating with respect
to the coordinates:

- **aligned**: the shift ``s`` has one entry per output and coordinate, shape
  ``(*batch, N, d)``, so every output has its own copy of its point and ``fn`` runs on
  ``M * N`` points. Because ``u[b, j]`` depends on ``s[b, j]`` alone, the gradient of
  ``sum(u)`` is the per-point derivative (the sum trick); each higher order pulls back the
  sum of one lower-order field again.
- **zcs** (zero coordinate shift, Leng et al. 2023): the shift is one scalar per
  dimension, ``z`` of shape ``(d,)``, shared by all points, so ``fn`` runs on the ``N``
  points once. The derivatives of the scalar ``omega(a, z) = sum(a * fn(x + z))`` with
  respect to ``z`` are ``sum(a * du)``; the gradient of each with respect to the dummy
  ``a = 1`` is the field ``du`` at every point. Nested reverse passes run over the graph
  of one scalar with ``d`` leaves ("one root, many leaves") instead of ``M * N * d``
  leaves.

Both run one :class:`~anyxp.pinn._orders.Plan` through :class:`_Partials`, written once
against ``be.ad.vjp``: one function per pull of the plan, each differentiating the
function of its parent partial. Not one function returning every partial stacked: pulling
one partial back out of such a stack with a one-hot cotangent sends zeros through the
graph of every other partial, real work for the library (measured: 2 to 5 times the work
of an order-3 spec on torch and on JAX).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

import anyxp
from anyxp.backend import Backend
from anyxp.errors import MixedBackendsError, UnsupportedError
from anyxp.pinn._orders import Orders, Plan, check_orders, plan
from anyxp.selection import name_of

__all__ = ["METHODS", "derivatives"]

#: A multi-index: one order of differentiation per coordinate.
Index = tuple[int, ...]
#: The methods of :func:`derivatives`.
METHODS = ("zcs", "aligned")


def derivatives(
    fn: Callable[[Any], Any],
    coords: Any,
    orders: Orders,
    *,
    method: str = "zcs",
    backend: str | Backend | None = None,
) -> dict[str, Any]:
    """Return the partial derivatives of the field ``fn`` with respect to its coordinates.

    Parameters
    ----------
    fn
        The field: ``fn(x)`` with ``x`` of shape ``(N, d)`` returns its values at those
        points, shape ``(*batch, N)`` (a DeepONet: ``lambda x: deeponet_apply(params, v,
        x)``, ``(M, N)``). Column ``j`` must depend on point ``x[j]`` alone, as for a
        network applied pointwise. ``method="aligned"`` also calls it with ``x`` of shape
        ``(*batch, N, d)``, each output with its own points, and expects ``(*batch, N)``
        back: :func:`anyxp.pinn.deeponet_apply` and :func:`anyxp.nn.mlp_apply` do both.
    coords
        The points, an array of shape ``(N, d)`` of the backend, in the field's dtype.
    orders
        The derivatives wanted, by name: ``{"u": (0, 0), "u_x": (1, 0), "u_xx": (2, 0),
        "u_xy": (1, 1)}``, one order of differentiation per coordinate (``d`` in all).
        Any order, mixed partials included; ``(0,) * d`` is the field itself.
    method
        ``"zcs"`` (default): zero coordinate shift, one scalar shift per coordinate, the
        network run on the ``N`` points once. ``"aligned"``: the ordinary per-point
        derivative, the network run on ``M · N`` aligned points (the reference ZCS
        saves memory against). Both give the same numbers.
    backend
        The backend; default the one of ``coords``. It needs reverse-mode AD
        (``ad.vjp``: jax, torch) unless every order is zero.

    Returns
    -------
    dict
        ``{name: array of shape (*batch, N)}`` for each name of ``orders``, in its order,
        and nothing else (a plain dict: ``be.jit`` and ``be.ad`` take it as a pytree).
        Differentiable with respect to whatever ``fn`` closes over: train through it with
        ``be.ad.grad``.

    Raises
    ------
    anyxp.UnsupportedError
        A derivative was asked on a backend without ``ad.vjp`` (numpy, array-api-strict).
    anyxp.MixedBackendsError
        ``coords`` is an array of another library than ``backend``.
    ValueError
        An unknown method, a multi-index whose length is not ``d``, or ``fn`` returning
        values that do not match the points.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("torch", dtype="float64")  # doctest: +SKIP
    >>> x = be.asarray([[0.5, 1.0], [2.0, -1.0]])  # doctest: +SKIP
    >>> d = anyxp.pinn.derivatives(  # doctest: +SKIP
    ...     lambda x: (x[:, 0] ** 3 * x[:, 1])[None, :], x, {"u_xx": (2, 0), "u_xy": (1, 1)}
    ... )
    >>> d["u_xx"], d["u_xy"]  # 6 x y and 3 x²  # doctest: +SKIP
    (tensor([[  3., -12.]], dtype=torch.float64), tensor([[ 0.7500, 12.0000]], dtype=torch.float64))
    """
    be, spec = _check(coords, orders, method, backend)
    steps = plan(spec, int(coords.shape[1]))
    if steps.order == 0:  # the field alone: no derivative, no AD, either method
        u = _values(fn, coords, None)
        return {name: u for name in spec}
    run = _zcs if method == "zcs" else _aligned
    fields = run(be, fn, coords, steps, list(dict.fromkeys(spec.values())))
    return {name: fields[index] for name, index in spec.items()}


# -- the two methods -------------------------------------------------------------------------
def _zcs(be: Backend, fn: Any, coords: Any, steps: Plan, wanted: list[Index]) -> dict[Index, Any]:
    """``{index: field}`` for the ``wanted`` partials, by zero coordinate shift."""
    xp = be.xp
    fields = {}
    zero = (0,) * steps.dims
    if zero in wanted:  # the field itself: one forward pass
        fields[zero] = _values(fn, coords, None)
        batch = tuple(int(s) for s in fields[zero].shape[:-1])
    else:
        batch = _batch_shape(fn, coords)
    n, d = (int(s) for s in coords.shape)
    like = {"dtype": coords.dtype, "device": be.device_of(coords)}
    a, z, eye = xp.ones((*batch, n), **like), xp.zeros((d,), **like), xp.eye(d, **like)

    def scalar_gradient(number: int) -> Callable[[Any], Any]:
        """``a -> (d,)``: the gradient in ``z`` of pull ``number``'s parent of ``omega``."""

        def of_a(a: Any) -> Any:
            def omega(z: Any) -> Any:
                return xp.sum(a * _values(fn, coords + z, batch))

            return _Partials(be, omega, steps).gradient(number)(z)

        return of_a

    # Each partial of omega, sum(a * du), is linear in a: its gradient in a is the field du.
    for number, children in _by_pull(steps, wanted).items():
        _, pull = be.ad.vjp(scalar_gradient(number), a)
        fields.update((index, pull(eye[dim, ...])[0]) for dim, index in children)
    return fields


def _aligned(
    be: Backend, fn: Any, coords: Any, steps: Plan, wanted: list[Index]
) -> dict[Index, Any]:
    """``{index: field}`` for the ``wanted`` partials, each output at its own point."""
    xp = be.xp
    batch = _batch_shape(fn, coords)
    n, d = (int(s) for s in coords.shape)
    shift = xp.zeros((*batch, n, d), dtype=coords.dtype, device=be.device_of(coords))
    partials = _Partials(be, lambda s: _values(fn, coords + s, batch), steps)
    fields = {}
    zero = (0,) * steps.dims
    if zero in wanted:
        fields[zero] = partials.f(shift)
    for number, children in _by_pull(steps, wanted).items():
        gradient = partials.gradient(number)(shift)
        fields.update((index, gradient[..., dim]) for dim, index in children)
    return fields


class _Partials:
    """The partials of ``f(leaf)`` as functions of the leaf, one per pull of the plan.

    ``gradient(k)(leaf)`` is the gradient of ``sum(p(leaf))`` with respect to the leaf,
    ``p`` the parent partial of pull ``k`` (for the aligned leaf, by the sum trick, the
    per-point gradient of the field ``p``); ``partial(index)`` is one component of it.
    Each function differentiates its parent's: on an eager backend a partial of order
    ``k`` recomputes its chain of ``k`` pulls, on a compiling one common chains are
    computed once.
    """

    def __init__(self, be: Backend, f: Callable[[Any], Any], steps: Plan) -> None:
        self.be, self.f, self.steps = be, f, steps

    def partial(self, index: Index) -> Callable[[Any], Any]:
        if not any(index):
            return self.f
        number, dim = self.steps.made_by[index]
        gradient = self.gradient(number)
        return lambda leaf: gradient(leaf)[..., dim]

    def gradient(self, number: int) -> Callable[[Any], Any]:
        parent = self.partial(self.steps.pulls[number].parent)
        be = self.be

        def gradient(leaf: Any) -> Any:
            value, pull = be.ad.vjp(parent, leaf)
            return pull(be.xp.ones_like(value))[0]

        return gradient


def _by_pull(steps: Plan, wanted: list[Index]) -> dict[int, list[tuple[int, Index]]]:
    """The wanted partials of order one or more, grouped by the pull giving them."""
    groups: dict[int, list[tuple[int, Index]]] = {}
    for index in wanted:
        if any(index):
            number, dim = steps.made_by[index]
            groups.setdefault(number, []).append((dim, index))
    return groups


# -- the field's contract ----------------------------------------------------------------------
def _batch_shape(fn: Callable[[Any], Any], coords: Any) -> tuple[int, ...]:
    """The batch axes of ``fn``'s values, read off the field at the first point only."""
    return tuple(int(s) for s in _values(fn, coords[:1, ...], None).shape[:-1])


def _values(fn: Callable[[Any], Any], x: Any, batch: tuple[int, ...] | None) -> Any:
    """``fn(x)``, checked to hold one value per point (and per member of ``batch``)."""
    u = fn(x)
    n = int(x.shape[-2])
    shape = tuple(getattr(u, "shape", ()))
    if not shape or int(shape[-1]) != n or (batch is not None and shape != (*batch, n)):
        aligned = x.ndim > 2
        wanted = f"{(*(batch or ()), n)}" if batch is not None else f"(..., {n})"
        raise ValueError(
            f"fn returned values of shape {shape} for points of shape {tuple(x.shape)}; it must "
            f"return one value per point, shape {wanted}, its last axis the points"
            + (
                ". method='aligned' calls fn with each output's own points, shape "
                "(*batch, N, d): write fn to take leading batch axes (deeponet_apply and "
                "mlp_apply do), or use method='zcs'"
                if aligned
                else ""
            )
        )
    return u


# -- checks ------------------------------------------------------------------------------------
def _check(
    coords: Any, orders: Any, method: Any, backend: str | Backend | None
) -> tuple[Backend, dict[str, tuple[int, ...]]]:
    """Check every argument of :func:`derivatives` up front; return the backend and spec."""
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown method {method!r}.{hint} Choose one of {', '.join(METHODS)}.")
    owner = name_of(coords)
    if owner is None:
        raise TypeError(
            f"coords must be an array of shape (N, d), got {type(coords).__name__}: make it "
            "with the backend of the network, be.asarray(coords)"
        )
    be = anyxp.backend(backend, like=coords)
    if owner != be.name:
        raise MixedBackendsError(
            f"coords is an array of {owner} but the backend is {be.name!r}: move it with "
            f"anyxp.backend({be.name!r}).asarray(coords), or leave backend out"
        )
    if coords.ndim != 2 or int(coords.shape[0]) < 1 or int(coords.shape[1]) < 1:
        raise ValueError(
            f"coords must have shape (N, d), one row per point and one column per coordinate; "
            f"got shape {tuple(coords.shape)}"
            + (" (one point: coords[None, :])" if coords.ndim == 1 else "")
        )
    if not be.xp.isdtype(coords.dtype, "real floating"):
        raise TypeError(
            f"coords has dtype {coords.dtype}; derivatives need real floating coordinates in "
            "the network's dtype: be.asarray(coords, dtype=be.float_dtype)"
        )
    spec = check_orders(orders, int(coords.shape[1]))
    if any(sum(index) for index in spec.values()) and "ad.vjp" not in be.capabilities:
        from anyxp.registry import get_registry

        raise UnsupportedError(be.name, "ad.vjp", get_registry().providers("ad.vjp"))
    return be, spec
