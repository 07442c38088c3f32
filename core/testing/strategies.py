"""Hypothesis strategies for property-based testing of numerics, on any backend.

Arrays are drawn by ``hypothesis.extra.array_api`` on the backend's own namespace, then
placed on the backend's device. Matrices and ODE problems are built from drawn, shrinkable
pieces (singular values, eigenvalues, rotation angles), so a failing example shrinks to a
small, well-understood one.

>>> import anyxp
>>> from anyxp.testing import strategies as axst
>>> be = anyxp.backend("numpy")
>>> a = axst.arrays(be, shape=(3,)).example()
>>> a.shape
(3,)
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.array_api import make_strategies_namespace

from anyxp.backend import Backend

__all__ = [
    "ODEProblem",
    "arrays",
    "linear_ode_problems",
    "matrices",
    "ode_problems",
    "spd_matrices",
]


@functools.cache
def _namespace(xp: Any) -> Any:
    with warnings.catch_warnings():
        # Hypothesis cannot always tell that a compat namespace follows the standard.
        warnings.simplefilter("ignore")
        return make_strategies_namespace(xp, api_version="2023.12")


def _on(be: Backend, x: Any) -> Any:
    return be.xp.asarray(x, device=be.device)


def arrays(
    backend: Backend,
    *,
    dtype: Any = None,
    shape: int | tuple[int, ...] | st.SearchStrategy[tuple[int, ...]] | None = None,
    min_value: float = -1e3,
    max_value: float = 1e3,
    allow_nan: bool = False,
    allow_infinity: bool = False,
    unique: bool = False,
) -> st.SearchStrategy[Any]:
    """Draw native arrays of ``backend`` on its device.

    Parameters
    ----------
    backend
        The backend whose arrays to draw.
    dtype
        A native dtype; default ``backend.float_dtype``.
    shape
        A shape, or a strategy of shapes; default 1 to 3 dimensions of side 1 to 5.
    min_value, max_value
        Bounds on the elements (for floating and integer dtypes).
    allow_nan, allow_infinity
        Whether non-finite elements may be drawn.
    unique
        Whether all elements must differ.
    """
    xps = _namespace(backend.xp)
    dtype = backend.float_dtype if dtype is None else dtype
    if shape is None:
        shape = xps.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
    if backend.xp.isdtype(dtype, "real floating"):
        elements: Any = {
            "min_value": min_value,
            "max_value": max_value,
            "allow_nan": allow_nan,
            "allow_infinity": allow_infinity,
            "allow_subnormal": False,  # XLA and GPUs flush subnormals to zero
        }
    elif backend.xp.isdtype(dtype, "integral"):
        info = backend.xp.iinfo(dtype)
        elements = {
            "min_value": max(int(min_value), info.min),
            "max_value": min(int(max_value), info.max),
        }
    else:
        elements = None
    strategy = xps.arrays(dtype, shape, elements=elements, unique=unique)
    return strategy.map(functools.partial(_on, backend))


def _orthogonal(n: int) -> st.SearchStrategy[np.ndarray]:
    """Products of Givens rotations: orthogonal, and shrinking to the identity."""
    angle = st.floats(-math.pi, math.pi, allow_nan=False)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]

    def build(angles: list[float]) -> np.ndarray:
        q = np.eye(n)
        for (i, j), a in zip(pairs, angles, strict=True):
            g = np.eye(n)
            g[i, i] = g[j, j] = math.cos(a)
            g[i, j], g[j, i] = -math.sin(a), math.sin(a)
            q = q @ g
        return q

    return st.lists(angle, min_size=len(pairs), max_size=len(pairs)).map(build)


def _sides(n: int | None) -> st.SearchStrategy[int]:
    return st.integers(1, 6) if n is None else st.just(n)


def matrices(
    backend: Backend, n: int | None = None, *, condition_max: float = 1e3
) -> st.SearchStrategy[Any]:
    """Draw square, well-conditioned matrices ``U diag(s) Vᵀ`` with ``cond <= condition_max``."""

    @st.composite
    def draw(data: st.DrawFn) -> Any:
        size = data(_sides(n))
        u, v = data(_orthogonal(size)), data(_orthogonal(size))
        s = np.array(data(st.lists(st.floats(1.0, condition_max), min_size=size, max_size=size)))
        signs = np.array(data(st.lists(st.sampled_from([-1.0, 1.0]), min_size=size, max_size=size)))
        return backend.asarray((u * (s * signs)) @ v.T)

    return draw()


def spd_matrices(
    backend: Backend, n: int | None = None, *, condition_max: float = 1e3
) -> st.SearchStrategy[Any]:
    """Draw symmetric positive definite matrices ``Q diag(λ) Qᵀ``, ``1 <= λ <= condition_max``."""

    @st.composite
    def draw(data: st.DrawFn) -> Any:
        size = data(_sides(n))
        q = data(_orthogonal(size))
        lam = np.array(data(st.lists(st.floats(1.0, condition_max), min_size=size, max_size=size)))
        a = (q * lam) @ q.T
        return backend.asarray((a + a.T) / 2)

    return draw()


@dataclass(frozen=True)
class ODEProblem:
    """An initial value problem ``y' = f(t, y)`` with its exact solution.

    ``f`` computes on the backend's namespace; ``solution(t)`` returns the exact state at
    time ``t`` as a numpy float64 array (the reference to compare a solver with).
    """

    name: str
    f: Callable[[Any, Any], Any]
    t_span: tuple[float, float]
    y0: Any
    solution: Callable[[float], np.ndarray]
    stiff: bool = False

    def __repr__(self) -> str:
        return f"ODEProblem({self.name}, t_span={self.t_span})"


def linear_ode_problems(
    backend: Backend,
    n: int | None = None,
    *,
    max_rate: float = 5.0,
    stiffness: float | None = None,
) -> st.SearchStrategy[ODEProblem]:
    """Draw ``y' = A y`` with ``A = Q diag(λ) Qᵀ``, so ``y(t) = Q diag(e^{λt}) Qᵀ y0``.

    Eigenvalues lie in ``[-max_rate, max_rate / 5]``; with ``stiffness`` one of them is
    ``-stiffness`` (a stiff problem).
    """

    @st.composite
    def draw(data: st.DrawFn) -> ODEProblem:
        size = data(_sides(n))
        q = data(_orthogonal(size))
        lam = np.array(
            data(st.lists(st.floats(-max_rate, max_rate / 5), min_size=size, max_size=size))
        )
        if stiffness is not None:
            lam[0] = -stiffness
        y0 = np.array(data(st.lists(st.floats(-2.0, 2.0), min_size=size, max_size=size)))
        t1 = data(st.floats(0.1, 2.0))
        a_host = (q * lam) @ q.T
        a = backend.asarray(a_host)

        def f(t: Any, y: Any) -> Any:
            return a @ y

        def solution(t: float) -> np.ndarray:
            return (q * np.exp(lam * t)) @ (q.T @ y0)

        return ODEProblem(
            f"linear(n={size})", f, (0.0, t1), backend.asarray(y0), solution, stiffness is not None
        )

    return draw()


def ode_problems(backend: Backend) -> st.SearchStrategy[ODEProblem]:
    """Draw ODE test problems with exact solutions: linear systems, a harmonic oscillator,
    exponential decay with a time-dependent rate, and the logistic equation."""
    xp = backend.xp

    @st.composite
    def oscillator(data: st.DrawFn) -> ODEProblem:
        w = data(st.floats(0.5, 5.0))
        x0, v0 = data(st.floats(-2, 2)), data(st.floats(-2, 2))

        def f(t: Any, y: Any) -> Any:
            return xp.stack([y[1], -(w**2) * y[0]])

        def solution(t: float) -> np.ndarray:
            c, s = math.cos(w * t), math.sin(w * t)
            return np.array([x0 * c + v0 / w * s, -x0 * w * s + v0 * c])

        return ODEProblem(
            f"oscillator(w={w:g})", f, (0.0, 2 * math.pi / w), backend.asarray([x0, v0]), solution
        )

    @st.composite
    def time_dependent_decay(data: st.DrawFn) -> ODEProblem:
        k = data(st.floats(0.1, 3.0))
        y0 = data(st.floats(0.1, 3.0))

        def f(t: Any, y: Any) -> Any:
            return -k * t * y  # y = y0 exp(-k t² / 2)

        def solution(t: float) -> np.ndarray:
            return np.array([y0 * math.exp(-k * t * t / 2)])

        return ODEProblem(f"decay(k={k:g})", f, (0.0, 2.0), backend.asarray([y0]), solution)

    @st.composite
    def logistic(data: st.DrawFn) -> ODEProblem:
        r = data(st.floats(0.2, 3.0))
        y0 = data(st.floats(0.05, 0.95))

        def f(t: Any, y: Any) -> Any:
            return r * y * (1 - y)

        def solution(t: float) -> np.ndarray:
            return np.array([1 / (1 + (1 / y0 - 1) * math.exp(-r * t))])

        return ODEProblem(f"logistic(r={r:g})", f, (0.0, 3.0), backend.asarray([y0]), solution)

    return st.one_of(linear_ode_problems(backend), oscillator(), time_dependent_decay(), logistic())
