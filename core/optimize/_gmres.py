"""Restarted GMRES(m), written once for a batch of independent systems.

Saad & Schultz's method: an Arnoldi process with modified Gram-Schmidt builds an
orthonormal basis of the Krylov space, Givens rotations turn its Hessenberg matrix into a
triangular one as it grows (so the residual norm is known at every step without solving),
and every ``restart`` steps the solution is updated and the process starts again from the
new residual. The preconditioner is applied on the right (``A M u = b``, ``x = M u``), so
the residual GMRES minimizes is the true one, ``b - A x``.

Every array has a fixed shape — the basis is ``(m + 1, B, n)``, the triangle ``(B, m, m)``
— and a row that has converged (or broken down) is masked out of the updates, so the loops
are ``be.while_loop`` and ``be.fori_loop``: Python loops on eager backends, one traced
program on JAX. The small triangular solve stays on the device too, as a back substitution
of ``m`` array operations on ``(B,)`` vectors: moving it to the host would cost a device
synchronization per cycle and would break tracing under ``jit``; on the device it costs
``O(B·m²)`` against the ``O(B·m·n)`` of the basis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import array_api_extra as xpx
import numpy as np

from anyxp.backend import Backend
from anyxp.errors import MixedBackendsError
from anyxp.optimize._checks import check_count, check_tolerance, concrete, operator, system
from anyxp.optimize._result import (
    BREAKDOWN,
    CONVERGED,
    LINEAR_MESSAGES,
    MAX_ITER,
    NONFINITE,
    RUNNING,
    STAGNATED,
    LinearSolution,
    concrete_int,
    describe,
)

__all__ = ["gmres", "gmres_rows"]

Rows = Callable[[Any], Any]


def gmres(
    A: Any,
    b: Any,
    *,
    x0: Any = None,
    tol: float = 1e-8,
    atol: float = 0.0,
    restart: int = 30,
    maxiter: int | None = None,
    M: Any = None,
    batch: bool = False,
    backend: str | Backend | None = None,
) -> LinearSolution:
    """Solve the linear system ``A x = b`` by restarted GMRES (Saad & Schultz).

    Parameters
    ----------
    A
        The matrix ``(n, n)``, or a function ``v -> A v`` of a vector ``(n,)`` returning an
        array of ``b``'s library, shape and dtype (matrix-free). With ``batch=True``: a
        matrix ``(n, n)`` shared by every row, ``(B, n, n)`` (one per row), or a function of
        rows ``(B, n)``.
    b
        The right-hand side ``(n,)``, or rows ``(B, n)`` of independent systems with
        ``batch=True``. Its backend (unless ``backend`` is given), device and floating
        dtype are the solve's.
    x0
        The initial guess, shaped like ``b`` (default zero).
    tol, atol
        A system has converged when ``‖b - A x‖₂ ≤ max(tol·‖b‖₂, atol)``. A ``tol`` below
        what the dtype resolves is raised to its machine epsilon, with a warning.
    restart
        The dimension ``m`` of the Krylov space before a restart (at most ``n``): memory
        ``(m + 1)·n`` per system, work per iteration growing with ``m``.
    maxiter
        The most iterations (products with ``A`` in the Arnoldi process) in all, default
        ``10·n``. (scipy's ``maxiter`` counts restart cycles instead.)
    M
        A preconditioner: an approximation of ``A⁻¹``, as a matrix or a function
        ``v -> M v`` (scipy's convention), applied on the right, so the residual GMRES
        minimizes and reports is the true one.
    batch
        ``b`` holds one system per row; each row converges on its own (masked).
    backend
        The backend; default inferred from ``b``.

    Returns
    -------
    LinearSolution
        ``x``, ``status`` (0: converged), ``message``, ``iterations``, ``residual_norm``
        and ``matvecs``.

    Examples
    --------
    >>> import numpy as np
    >>> from anyxp.optimize import gmres
    >>> sol = gmres(np.array([[4.0, 1.0], [1.0, 3.0]]), np.array([1.0, 2.0]))
    >>> sol.converged, np.round(sol.x, 6)
    (True, array([0.090909, 0.636364]))
    """
    be, b_rows, shape = system(backend, b, "b", batch=batch)
    if len(shape) != 1:
        want = "rows (B, n) with batch=True" if batch else "a vector (n,) (or rows with batch=True)"
        raise ValueError(f"b has shape {tuple(b_rows.shape)}; pass {want}")
    xp = be.xp
    rows, n = b_rows.shape
    dtype = b_rows.dtype
    eps = float(xp.finfo(dtype).eps)
    tol = check_tolerance(tol, "tol", eps=eps)
    atol = check_tolerance(atol, "atol")
    if tol == 0 and atol == 0:
        raise ValueError("tol and atol are both 0, so GMRES could never stop; pass tol > 0")
    restart = min(check_count(restart, "restart"), max(n, 1))
    maxiter = max(10 * n, 1) if maxiter is None else check_count(maxiter, "maxiter")
    batched = rows if batch else None
    matvec = operator(be, A, n, dtype, batch=batched, name="A")
    precond = None if M is None else operator(be, M, n, dtype, batch=batched, name="M")
    x0_rows = None if x0 is None else _initial_guess(be, x0, b_rows, batch)
    res = gmres_rows(
        be, matvec, b_rows, x0=x0_rows, precond=precond, tol=tol, atol=atol,
        restart=restart, maxiter=maxiter,
    )  # fmt: skip
    return _solution(be, res, b_rows, batch)


def _initial_guess(be: Backend, x0: Any, b_rows: Any, batch: bool) -> Any:
    from anyxp.selection import name_of

    other = name_of(x0)
    if other is not None and other != be.name:
        raise MixedBackendsError(
            f"x0 is a {other} array but b is a {be.name} array; pass x0 on b's backend"
        )
    x0 = be.asarray(x0, dtype=b_rows.dtype)
    expected = tuple(b_rows.shape) if batch else (b_rows.shape[1],)
    if tuple(x0.shape) != expected:
        raise ValueError(f"x0 has shape {tuple(x0.shape)}, expected {expected} (b's shape)")
    if concrete(lambda: not be.xp.all(be.xp.isfinite(x0))):
        raise ValueError("x0 contains NaN or infinity; pass a finite initial guess")
    return be.xp.reshape(x0, b_rows.shape)


def _solution(be: Backend, res: dict[str, Any], b_rows: Any, batch: bool) -> LinearSolution:
    """The :class:`LinearSolution` of a run: plain numbers for one concrete system."""
    status, iters, resid, matvecs = (
        res[k] for k in ("status", "iterations", "residual", "matvecs")
    )
    if batch:
        x = res["x"]
    else:
        x, status, iters, resid = res["x"][0, :], status[0], iters[0], resid[0]
    if concrete_int(status if not batch else status[0] if status.shape[0] else 0) is None:
        return LinearSolution(x, status, "traced", iters, resid, matvecs, be)
    host = be.to_numpy(status)
    detail = ""
    if not batch:
        status, iters, resid, matvecs = int(status), int(iters), float(resid), int(matvecs)
        bnorm = float(be.to_numpy(norm(be.xp, b_rows))[0])
        detail = f"‖b - Ax‖ = {resid:.3g}, ‖b‖ = {bnorm:.3g}, {iters} iterations"
    else:
        matvecs = int(matvecs)
    return LinearSolution(
        x, status, describe(host, LINEAR_MESSAGES, detail), iters, resid, matvecs, be
    )


def norm(xp: Any, v: Any) -> Any:
    """The 2-norm of each row."""
    return xp.sqrt(xp.vecdot(v, v))


def gmres_rows(
    be: Backend,
    matvec: Rows,
    b: Any,
    *,
    x0: Any = None,
    precond: Rows | None = None,
    tol: Any,
    atol: float,
    restart: int,
    maxiter: int,
    active: Any = None,
    true_residual: bool = True,
    rank_rtol: float | None = None,
) -> dict[str, Any]:
    """Solve ``A x = b`` for every row of ``b`` ``(B, n)``; ``matvec`` applies ``A`` to rows.

    ``tol`` is a number or one relative tolerance per row; a row converges when
    ``‖b - A x‖ ≤ max(tol·‖b‖, atol)``. Rows outside ``active`` are not solved (their
    ``x`` is ``x0``, or zero). With ``true_residual`` every restart recomputes ``b - A x``
    (one more product with ``A`` per cycle, as scipy does); without, the residual follows
    from the Arnoldi relation (no product: for a Jacobian by finite differences, whose
    products cost an evaluation of ``F`` each). A new diagonal entry of the triangle below
    ``rank_rtol`` (default ``10·ε``) times the largest ``‖A v‖`` is a breakdown: ``A`` is
    singular to the accuracy of its products (pass ``10·√ε`` for products by finite
    differences), and a solution along that direction would be noise magnified. Returns
    ``x``, ``status``, ``iterations`` and ``residual`` per row, and ``matvecs``, the
    products with ``A``.
    """
    xp, dev = be.xp, be.device
    batch, n = b.shape
    m = restart
    dtype = b.dtype
    eps = float(xp.finfo(dtype).eps)
    rank_rtol = 10 * eps if rank_rtol is None else rank_rtol
    ints = xp.zeros((batch,), dtype=xp.int32, device=dev)

    def const(v: int) -> Any:
        return xp.asarray(v, dtype=xp.int32, device=dev)

    target = xp.maximum(tol * norm(xp, b), atol)
    if x0 is None:
        x, r, matvecs = xp.zeros_like(b), b, 0
    else:
        x, r, matvecs = x0, b - matvec(x0), 1
    beta = norm(xp, r)
    status = xp.where(beta <= target, const(CONVERGED), const(RUNNING))
    status = xp.where(xp.isfinite(beta), status, const(NONFINITE))
    if active is not None:
        status = xp.where(active, status, const(CONVERGED))

    def cycle_cond(state: Any) -> Any:
        return xp.any(state[3] == RUNNING)

    def cycle(state: Any) -> Any:
        x, r, beta, status, iters, total, matvecs = state
        live = status == RUNNING
        safe_beta = xp.where(live & (beta > 0), beta, 1.0)
        V = xp.zeros((m + 1, batch, n), dtype=dtype, device=dev)
        V = xpx.at(V, (0, ...)).set(xp.where(live[:, None], r / safe_beta[:, None], 0.0), xp=xp)
        first = xp.arange(m + 1, dtype=xp.int32, device=dev) == 0
        g = xp.where(first[None, :], xp.where(live, beta, 0.0)[:, None], 0.0)
        R = xp.zeros((batch, m, m), dtype=dtype, device=dev)
        cs = xp.zeros((batch, m), dtype=dtype, device=dev)
        sn = xp.zeros_like(cs)
        false = ints == 1
        largest = xp.zeros((batch,), dtype=dtype, device=dev)  # the largest ‖A v‖
        arnoldi0 = (0, V, R, g, cs, sn, live, ints, false, false, iters, total, largest)

        def step_cond(s: Any) -> Any:
            j, total, running = s[0], s[11], s[6]
            return xp.any(running) & ((j < m) & (total < maxiter))

        def step(s: Any) -> Any:
            return _arnoldi_step(be, matvec, precond, target, m, eps, rank_rtol, s)

        j, V, R, g, cs, sn, _, k, broke, bad, iters, total, largest = be.while_loop(
            step_cond, step, arnoldi0
        )
        matvecs = matvecs + (total - state[5])
        y, dropped = _back_substitute(be, R, g, k, j, rank_rtol * largest)
        broke = broke | dropped
        # x += M (V y): the combination of the basis, one batched product.
        update = xp.matmul(xp.permute_dims(V[:m, ...], (1, 2, 0)), y[:, :, None])[:, :, 0]
        if precond is not None:
            update = precond(update)
        x = xp.where(live[:, None], x + update, x)
        if true_residual:
            r_new, matvecs = b - matvec(x), matvecs + 1
        else:
            r_new = _arnoldi_residual(be, V, R, g, y, cs, sn, k, j, dropped)
        r = xp.where(live[:, None], r_new, r)
        beta_new = xp.where(live, norm(xp, r), beta)
        bad = bad | (live & ~xp.isfinite(beta_new))
        done = live & (beta_new <= target)
        status = xp.where(live & broke, const(BREAKDOWN), status)
        status = xp.where(live & ~broke & (beta_new >= beta), const(STAGNATED), status)
        status = xp.where(
            live & ~broke & (beta_new < beta) & (total >= maxiter), const(MAX_ITER), status
        )
        status = xp.where(done, const(CONVERGED), status)
        status = xp.where(bad, const(NONFINITE), status)
        return x, r, beta_new, status, iters, total, matvecs

    state = (x, r, beta, status, ints, 0, matvecs)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # see the status
        x, r, beta, status, iters, _, matvecs = be.while_loop(cycle_cond, cycle, state)
    return {"x": x, "status": status, "iterations": iters, "residual": beta, "matvecs": matvecs}


def _arnoldi_step(
    be: Backend,
    matvec: Rows,
    precond: Rows | None,
    target: Any,
    m: int,
    eps: float,
    rank_rtol: float,
    s: Any,
) -> Any:
    """One Arnoldi step for every row still running: a new basis vector, a new column of
    the triangle, a new rotation, and the residual norm it gives."""
    xp = be.xp
    j, V, R, g, cs, sn, running, k, broke, bad, iters, total, largest = s
    pos = xp.arange(m + 1, dtype=xp.int32, device=be.device)
    v = V[j, ...]
    w = matvec(v if precond is None else precond(v))
    w_norm = norm(xp, w)
    h = xp.zeros(g.shape, dtype=g.dtype, device=be.device)  # (B, m + 1)

    def orthogonalize(i: Any, wh: Any) -> Any:  # modified Gram-Schmidt
        w, h = wh
        vi = V[i, ...]
        hi = xp.vecdot(w, vi)
        return w - hi[:, None] * vi, _put(xp, h, pos, i, hi)

    w, h = be.fori_loop(0, j + 1, orthogonalize, (w, h))
    h_next = norm(xp, w)

    def rotate(i: Any, h: Any) -> Any:  # the rotations of the earlier columns
        a, c = h[:, i], h[:, i + 1]
        h = _put(xp, h, pos, i, cs[:, i] * a + sn[:, i] * c)
        return _put(xp, h, pos, i + 1, cs[:, i] * c - sn[:, i] * a)

    h = be.fori_loop(0, j, rotate, h)
    a = h[:, j]
    denom = xp.hypot(a, h_next)  # the new diagonal entry of the triangle
    finite = xp.isfinite(w_norm) & xp.isfinite(h_next)
    live = running & finite
    # A diagonal entry that vanishes next to ‖A v‖ (A v lies in the span of the earlier
    # products), or next to the largest ‖A v‖ so far (R is singular to the accuracy of the
    # products): A is singular there, and this column cannot enter the triangle.
    largest = xp.where(live, xp.maximum(largest, w_norm), largest)  # an estimate of ‖A‖
    usable = live & (denom > eps * w_norm) & (denom > rank_rtol * largest)
    safe = xp.where(usable, denom, 1.0)
    c = xp.where(usable, a / safe, 1.0)
    sv = xp.where(usable, h_next / safe, 0.0)
    h = _put(xp, h, pos, j, denom)
    # A (near) zero new vector: the Krylov space is invariant, and the residual of this
    # space is final. Dividing by it would make noise, so the row stops here.
    invariant = (h_next <= eps * w_norm) | (h_next <= rank_rtol * largest)
    extend = usable & ~invariant
    safe_next = xp.where(extend, h_next, 1.0)
    v_next = xp.where(extend[:, None], w / safe_next[:, None], 0.0)
    V = xpx.at(V, (j + 1, ...)).set(v_next, xp=xp)
    column = xp.where(usable[:, None], h[:, :m], 0.0)
    R = xp.where(pos[None, None, :m] == j, column[:, :, None], R)
    cs, sn = _put(xp, cs, pos[:m], j, c), _put(xp, sn, pos[:m], j, sv)
    gj = g[:, j]
    g_top, g_bottom = xp.where(usable, c * gj, gj), xp.where(usable, -sv * gj, g[:, j + 1])
    residual = xp.abs(xp.where(usable, g_bottom, gj))
    g = _put(xp, _put(xp, g, pos, j, g_top), pos, j + 1, g_bottom)
    k = xp.where(usable, k + 1, k)
    iters = xp.where(running, iters + 1, iters)
    bad = bad | (running & ~finite)
    broke = broke | (live & ~usable) | (usable & invariant & (residual > target))
    running = extend & (residual > target)
    return j + 1, V, R, g, cs, sn, running, k, broke, bad, iters, total + 1, largest


def _put(xp: Any, a: Any, pos: Any, i: Any, value: Any) -> Any:
    """``a`` (B, p) with column ``i`` set to ``value`` (B,), by a mask: on these small
    arrays cheaper than an indexed write, and traceable with a traced ``i``."""
    return xp.where(pos == i, value[:, None], a)


def _back_substitute(
    be: Backend, R: Any, g: Any, k: Any, steps: Any, floor: Any
) -> tuple[Any, Any]:
    """``y = R⁻¹ g`` per row on its first ``k`` columns (zero beyond), and which rows
    dropped a direction: a pivot at most ``floor`` (the row's rank tolerance, known only
    once every column is in: a pivot can be small only next to a later, larger column)
    makes that entry of ``y`` zero instead of noise magnified."""
    xp = be.xp
    batch, m = R.shape[0], R.shape[2]
    y = xp.zeros((batch, m), dtype=R.dtype, device=be.device)
    dropped = xp.zeros((batch,), dtype=xp.bool, device=be.device)
    pos = xp.arange(m, dtype=xp.int32, device=be.device)

    def solve(t: Any, state: Any) -> Any:
        y, dropped = state
        i = steps - 1 - t
        pivot = R[:, i, i]
        ok = (i < k) & (xp.abs(pivot) > floor) & (pivot != 0)
        value = (g[:, i] - xp.vecdot(R[:, i, :], y)) / xp.where(ok, pivot, 1.0)
        return _put(xp, y, pos, i, xp.where(ok, value, 0.0)), dropped | ((i < k) & ~ok)

    return be.fori_loop(0, steps, solve, (y, dropped))


def _arnoldi_residual(
    be: Backend,
    V: Any,
    R: Any,
    g: Any,
    y: Any,
    cs: Any,
    sn: Any,
    k: Any,
    steps: Any,
    dropped: Any,
) -> Any:
    """``b - A x`` without a product: ``V_{k+1} Qᵀ (g - R̄ y)`` (the Arnoldi relation).

    After ``k`` steps ``A M V_k = V_{k+1} H̄_k`` and ``Q H̄_k = R̄`` (``Q`` the rotations), so
    the residual of ``y`` is ``V_{k+1} Qᵀ (g - R̄ y)``; for ``y = R⁻¹ g[:k]`` exactly,
    ``g - R̄ y`` is zero but for its last entry, ``g_k`` (computed so where no direction
    was dropped).
    """
    xp = be.xp
    m1 = g.shape[1]
    pos = xp.arange(m1, dtype=k.dtype, device=be.device)
    Ry = xp.matmul(R, y[:, :, None])[:, :, 0]
    short = g - xp.concat([Ry, xp.zeros_like(Ry[:, :1])], axis=-1)
    u = xp.where(pos[None, :] == k[:, None], g, 0.0)  # g_k e_k, per row
    u = xp.where(dropped[:, None], short, u)

    def unrotate(t: Any, u: Any) -> Any:  # Qᵀ = G_0ᵀ ... G_{k-1}ᵀ: the last one first
        i = steps - 1 - t
        use = i < k
        a, b = u[:, i], u[:, i + 1]
        c, s = cs[:, i], sn[:, i]
        u = _put(xp, u, pos, i, xp.where(use, c * a - s * b, a))
        return _put(xp, u, pos, i + 1, xp.where(use, s * a + c * b, b))

    u = be.fori_loop(0, steps, unrotate, u)
    return xp.matmul(xp.permute_dims(V, (1, 2, 0)), u[:, :, None])[:, :, 0]
