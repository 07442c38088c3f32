"""A physics-informed loss: weighted mean squares of residuals at sets of points.

Every part of a PINN loss has the same shape: at some points, some derivatives of the
network's output enter a residual that should vanish. The PDE is a residual of high-order
derivatives at collocation points; a Dirichlet condition is ``u - g`` at boundary points;
an initial or a Neumann condition is the same with other derivatives. So one
:class:`Term` describes each, and :func:`pinn_loss` adds them up::

    loss(params, data) = Σ_k weight_k · mean(residual_k(derivatives at points_k, points_k, data)²)

``data`` is whatever the residuals and the network need besides the parameters (for a
DeepONet: the input functions at the sensors, a source term at the collocation points),
passed at each call so that one loss serves every batch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anyxp.pinn._derivatives import METHODS, derivatives
from anyxp.pinn._orders import check_orders

__all__ = ["PINNLoss", "Term", "pinn_loss"]

#: A residual: ``residual(d, x, data)`` with ``d`` the derivatives at the term's points
#: ``x`` (``{name: (*batch, N)}``), returning the ``(*batch, N)`` residual.
Residual = Callable[[dict[str, Any], Any, Any], Any]
#: The network as a loss sees it: ``net(params, data, x)`` of shape ``(*batch, N)``.
Net = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True, eq=False)
class Term:
    """One part of a physics-informed loss: a residual at a set of points, and its weight.

    Parameters
    ----------
    name
        What the term is, as :meth:`PINNLoss.parts` reports it: ``"pde"``, ``"initial"``.
    points
        The points, an array of shape ``(N, d)`` of the network's backend and dtype.
    residual
        ``residual(d, x, data)``: ``d`` holds the derivatives named by ``orders`` at the
        points ``x`` (each of shape ``(*batch, N)``), ``data`` is what the loss was called
        with. Returns the residual, shape ``(*batch, N)`` (or one that broadcasts to it).
    orders
        The derivatives the residual reads, as :func:`anyxp.pinn.derivatives` takes them;
        default the field alone, ``{"u": (0, ..., 0)}``.
    weight
        The term's weight in the loss (a positive number).
    """

    name: str
    points: Any
    residual: Residual
    orders: Mapping[str, Sequence[int]] | None = None
    weight: float = 1.0
    _orders: dict[str, tuple[int, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        shape = tuple(getattr(self.points, "shape", ()))
        if len(shape) != 2:
            raise ValueError(
                f"term {self.name!r}: points must be an array of shape (N, d), got "
                f"{type(self.points).__name__} of shape {shape}"
            )
        if not callable(self.residual):
            raise TypeError(
                f"term {self.name!r}: residual must be a function residual(d, x, data), got "
                f"{type(self.residual).__name__}"
            )
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not 0 < w < math.inf:
            raise ValueError(f"term {self.name!r}: weight must be a positive number, got {w!r}")
        orders = {"u": (0,) * shape[1]} if self.orders is None else self.orders
        object.__setattr__(self, "_orders", check_orders(orders, shape[1]))


@dataclass(frozen=True, eq=False)
class PINNLoss:
    """The loss :func:`pinn_loss` builds: ``loss(params, data)`` is a 0-d array.

    Differentiate it with ``be.ad.value_and_grad(loss)(params, data)`` and compile a
    training step around it with ``be.jit``; :meth:`parts` reports each term apart.
    """

    net: Net
    terms: tuple[Term, ...]
    method: str = "zcs"

    def __call__(self, params: Any, data: Any = None) -> Any:
        """Return ``Σ weight · mean(residual²)`` over the terms, a 0-d array."""
        total = None
        for term, value in zip(self.terms, self._mean_squares(params, data), strict=True):
            part = term.weight * value
            total = part if total is None else total + part
        return total

    def parts(self, params: Any, data: Any = None) -> dict[str, Any]:
        """Return ``{term name: mean(residual²)}``, unweighted, one 0-d array each."""
        return {
            t.name: v for t, v in zip(self.terms, self._mean_squares(params, data), strict=True)
        }

    def _mean_squares(self, params: Any, data: Any) -> list[Any]:
        out = []
        for term in self.terms:

            def field(x: Any, term: Term = term) -> Any:
                return self.net(params, data, x)

            d = derivatives(field, term.points, term._orders, method=self.method)
            r = _residual(term, d, data)
            out.append(_mean_square(r, term.name))
        return out


def pinn_loss(net: Net, terms: Sequence[Term], *, method: str = "zcs") -> PINNLoss:
    """Return the physics-informed loss ``Σ weight · mean(residual²)`` over ``terms``.

    Parameters
    ----------
    net
        The network: ``net(params, data, x)`` returns its output at points ``x`` of shape
        ``(N, d)``, shape ``(*batch, N)``, e.g. ``lambda p, data, x: deeponet_apply(p,
        data["v"], x)``. With ``method="aligned"`` it also takes ``x`` of shape
        ``(*batch, N, d)``, as :func:`anyxp.pinn.derivatives` says.
    terms
        The parts of the loss, one :class:`Term` each (the PDE at collocation points,
        boundary and initial conditions), with distinct names.
    method
        How the derivatives are taken: ``"zcs"`` (default) or ``"aligned"``; see
        :func:`anyxp.pinn.derivatives`.

    Returns
    -------
    PINNLoss
        ``loss(params, data)``, a 0-d array; ``loss.parts(params, data)`` per term.

    Examples
    --------
    The heat equation ``u_t = u_xx`` with ``u(x, 0) = sin(πx)``, for a network of
    ``(x, t)`` (``xp`` is the backend's namespace; a DeepONet example is in the guide):

    >>> pde = Term("pde", collocation, lambda d, x, data: d["u_t"] - d["u_xx"],
    ...            orders={"u_t": (0, 1), "u_xx": (2, 0)})  # doctest: +SKIP
    >>> initial = Term("initial", x0, lambda d, x, data: d["u"] - xp.sin(math.pi * x[:, 0]),
    ...                weight=10.0)  # doctest: +SKIP
    >>> loss = pinn_loss(lambda p, data, x: mlp_apply(p, x)[None, :, 0], [pde, initial])  # doctest: +SKIP
    """
    if not callable(net):
        raise TypeError(
            f"net must be a function net(params, data, x), got {type(net).__name__}: e.g. "
            "lambda p, data, x: anyxp.pinn.deeponet_apply(p, data['v'], x)"
        )
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    terms = tuple(terms)
    if not terms or not all(isinstance(t, Term) for t in terms):
        raise TypeError(
            "terms must be a non-empty list of anyxp.pinn.Term, e.g. [Term('pde', points, "
            "residual, orders={...}), Term('boundary', boundary_points, residual)]"
        )
    names = [t.name for t in terms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"terms must have distinct names; {', '.join(map(repr, twice))} repeat")
    return PINNLoss(net, terms, method)


def _residual(term: Term, d: dict[str, Any], data: Any) -> Any:
    """The term's residual; reading a derivative its orders do not name says how to fix it."""
    try:
        return term.residual(d, term.points, data)
    except KeyError as exc:
        missing = exc.args[0] if exc.args else None
        if not isinstance(missing, str) or missing in d:
            raise
        raise KeyError(
            f"term {term.name!r}: its residual reads d[{missing!r}], which its orders do not "
            f"ask for (they ask for {', '.join(d)}): add {missing!r} to the term's orders, "
            f"e.g. Term(..., orders={{..., {missing!r}: (2, 0)}})"
        ) from None


def _mean_square(r: Any, name: str) -> Any:
    import anyxp

    if not hasattr(r, "shape"):
        raise TypeError(
            f"term {name!r}: its residual returned {type(r).__name__}, not an array: return an "
            "array built from the derivatives d[...]"
        )
    xp = anyxp.backend(like=r).xp
    return xp.mean(r * r)
