"""``anyxp.ode.solve``: the entry point, its two paths (eager and compiled), the solution."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from anyxp._warnings import warn_user
from anyxp.backend import Backend
from anyxp.ode import _explicit
from anyxp.ode._checks import (
    check_jac,
    check_linear_solver,
    check_method,
    check_probe,
    check_span,
    check_steps,
    check_t_eval,
    check_tolerances,
    concrete,
    concrete_int,
    state_dtype,
)
from anyxp.ode._events import EagerEvents, Event, check_events, differentiable_event
from anyxp.ode._fused import check_fusable, fused_stepper
from anyxp.ode._implicit import ESDIRK, Rosenbrock, jacobian_source
from anyxp.ode._masked import run_masked
from anyxp.ode._replay import Replay, difference_jacobian
from anyxp.ode._sensitivity import DIFFERENCES, Params, Solver, check_mode, time_inputs
from anyxp.ode.tableaux import ESDIRKTableau, Tableau

__all__ = ["Solution", "make_method", "smallest", "solve", "values_of"]


@dataclass(frozen=True)
class Solution:
    """The result of :func:`solve`.

    ``t`` has shape ``(m,)`` and ``y`` shape ``(m, *y0.shape)``: ``y[i]`` is the state at
    ``t[i]``, both arrays of the solve's backend. ``status`` is 0 on success, 1 when
    ``max_steps`` ran out, 2 when the step size collapsed, 3 when the state (or ``f``)
    became non-finite, 4 when an explicit method found the problem stiff, 5 when a
    terminal event ended the solve; ``message`` says the same in words. ``stats`` counts
    ``nfev``, ``njev``, ``nlu``, ``steps``, ``accepted`` and ``rejected``. With
    ``dense_output=True``, ``sol(t)`` evaluates the solution anywhere in the interval.
    With ``events``, ``t_events[k]`` holds the times event ``k`` occurred (shape
    ``(j,)``) and ``y_events[k]`` the states there (``(j, *y0.shape)``); a compiled solve
    records each event's first occurrence (NaN where there was none).
    """

    t: Any
    y: Any
    status: int
    message: str
    stats: dict[str, int]
    method: str
    backend: Backend = field(repr=False)
    _dense: Callable[[Any], Any] | None = field(default=None, repr=False)
    t_events: list[Any] | None = None
    y_events: list[Any] | None = None
    #: With ``sensitivity="forward-differences"``: the derivatives of ``y`` with respect
    #: to ``"y0"`` (shape ``(m, *y0.shape, *y0.shape)``), ``"t_span"`` (``(m, *y0.shape,
    #: 2)``) and ``"args"`` (one array per array leaf of ``args``, ``(m, *y0.shape,
    #: *leaf.shape)``).
    sensitivities: dict[str, Any] | None = None

    @property
    def success(self) -> bool:
        """Whether the solver reached the end of the interval, or a terminal event."""
        return self.status in (0, 5)

    def __call__(self, t: Any) -> Any:
        """The interpolated solution at time(s) ``t`` (needs ``dense_output=True``)."""
        if self._dense is None:
            raise ValueError("this solution has no interpolant: solve with dense_output=True")
        return self._dense(t)


def smallest(be: Backend, tol: Any) -> float:
    """The smallest of a tolerance given as a float or as an array."""
    return tol if isinstance(tol, float) else float(np.min(be.to_numpy(tol)))


def make_method(
    be: Backend,
    tab: Any,
    f: Callable[[Any, Any], Any],
    dtype: Any,
    *,
    batched: bool,
    jac: Callable[[Any, Any], Any] | None,
    rtol: Any,
    atol: Any,
    exact_stages: bool = False,
    linear_solver: str = "dense",
    preconditioner: Callable[[Any, Any, Any, Any], Any] | None = None,
) -> _explicit.Method:
    """The stepper for a tableau: explicit Runge-Kutta, Rosenbrock or ESDIRK.

    ``exact_stages``: implicit stages with exact derivatives (sensitivities; ESDIRK).
    ``linear_solver``, ``preconditioner``: ESDIRK's linear solves (see
    :class:`anyxp.ode._implicit.KrylovSystem`); the preconditioner takes the method's own
    ``t``, ``y``, ``h·gamma`` and rows ``v``.
    """
    if isinstance(tab, Tableau):
        return _explicit.Stepper(be, tab, f, dtype, batched)
    if "linalg" not in be.capabilities:  # checked up front, not as a crash inside a step
        from anyxp.errors import UnsupportedError
        from anyxp.registry import get_registry

        raise UnsupportedError(be.name, "linalg", get_registry().providers("linalg"))
    jac_fn, _ = jacobian_source(be, f, jac, dtype, batched=batched, atol=smallest(be, atol))
    if isinstance(tab, ESDIRKTableau):
        if jac is not None:
            product_mode = "jac"
        elif "ad.jvp" in be.capabilities and not be.xp.isdtype(dtype, "complex floating"):
            product_mode = "ad"
        else:
            product_mode = "fd"
        return ESDIRK(
            be=be,
            f=f,
            dtype=dtype,
            jac=jac_fn,
            batched=batched,
            tab=tab,
            rtol=rtol,
            atol=atol,
            min_rtol=smallest(be, rtol),
            exact_stages=exact_stages,
            linear_solver=linear_solver,
            product_mode=product_mode,
            preconditioner=preconditioner,
        )
    return Rosenbrock(be=be, f=f, dtype=dtype, jac=jac_fn, batched=batched, tab=tab)


@dataclass(frozen=True)
class _Problem:
    """A checked call of :func:`solve`: everything its paths need."""

    be: Backend
    method: str
    tab: Any
    span: _explicit.Span
    y0: Any  # flat, shape (n,)
    shape: tuple[int, ...]
    f_of: Callable[[Any], Callable[[Any, Any], Any]]  # args -> f on flat states
    jac_of: Callable[[Any], Callable[[Any, Any], Any] | None]
    args: tuple[Any, ...]
    t_eval: np.ndarray | None
    dense_output: bool
    events: tuple[Event, ...] = ()
    linear_solver: str = "dense"
    #: The user's ``preconditioner(t, y, h_gamma, v, *args)`` on ``y0``'s shape, or None.
    preconditioner: Callable[..., Any] | None = None
    #: The user's ``f`` when each eager step runs compiled (``compile=True``), else None.
    fused_f: Callable[..., Any] | None = None

    def events_of(self, args: Any) -> list[Callable[[Any, Any], Any]]:
        """The event functions on flat states."""
        xp, shape = self.be.xp, self.shape

        def on_flat(g: Callable[..., Any]) -> Callable[[Any, Any], Any]:
            return lambda t, y: g(t, xp.reshape(y, shape), *args)

        return [on_flat(e.fn) for e in self.events]

    @property
    def dtype(self) -> Any:
        return self.y0.dtype

    @property
    def compiled(self) -> bool:
        return "control_flow.compiled" in self.be.capabilities

    def stepper(self, args: Any, *, batched: bool, exact_stages: bool = False) -> Any:
        """The method over ``f(t, y, *args)``: on flat states, or on rows of one (batched)."""
        f, jac = self.f_of(args), self.jac_of(args)
        precond = self.preconditioner_of(args, batched)
        if batched:
            f_one, jac_one = f, jac
            f = lambda t, y: f_one(t[0], y[0, :])[None, :]  # noqa: E731
            if jac_one is not None:
                jac = lambda t, y: jac_one(t[0], y[0, :])[None, :, :]  # noqa: E731
        span = self.span
        return make_method(
            self.be,
            self.tab,
            f,
            self.dtype,
            batched=batched,
            jac=jac,
            rtol=span.rtol,
            atol=span.atol,
            exact_stages=exact_stages,
            linear_solver=self.linear_solver,
            preconditioner=precond,
        )

    def preconditioner_of(self, args: Any, batched: bool) -> Any:
        """The user's preconditioner on the method's ``t``, ``y``, ``h·gamma`` and rows."""
        user, xp, shape = self.preconditioner, self.be.xp, self.shape
        if user is None:
            return None

        def on_rows(t: Any, y: Any, hg: Any, v: Any) -> Any:
            if batched:  # one row: t, hg (1,), y (1, n)
                t, y, hg = t[0], y[0, :], hg[0]
            out = user(t, xp.reshape(y, shape), hg, xp.reshape(v[0, :], shape), *args)
            return xp.reshape(out, (1, -1))

        return on_rows


def solve(
    f: Callable[..., Any],
    t_span: Sequence[float],
    y0: Any,
    *,
    method: str = "tsit5",
    rtol: Any = None,
    atol: Any = None,
    t_eval: Any = None,
    args: tuple[Any, ...] = (),
    dense_output: bool = False,
    max_steps: int = 100_000,
    first_step: float | None = None,
    max_step: float | None = None,
    jac: Callable[..., Any] | None = None,
    dt: float | None = None,
    backend: str | Backend | None = None,
    progress: bool = False,
    sensitivity: str | None = None,
    checkpoints: int | None = None,
    events: Any = None,
    comm: Any = None,
    linear_solver: str = "dense",
    preconditioner: Callable[..., Any] | None = None,
    compile: bool = False,
) -> Solution:
    """Solve the initial value problem ``y' = f(t, y, *args)``, ``y(t0) = y0``.

    Parameters
    ----------
    f
        The right-hand side; returns an array shaped like ``y`` of the same library.
    t_span
        ``(t0, t1)``; ``t1 < t0`` integrates backwards; ``t0 == t1`` returns ``y0``.
    y0
        The initial state, an array of any backend (or a list: then ``backend`` decides),
        real or complex. Integer states are solved in the backend's ``float_dtype``.
    method
        Non-stiff: ``"tsit5"`` (default), ``"dopri5"`` (both adaptive, 5th order, with
        dense output), ``"dop853"`` (adaptive, 8th order: for tight tolerances) or
        ``"rk4"`` (fixed step ``dt``). Stiff: ``"rodas5p"`` (Rosenbrock,
        L-stable, 5th order: the first choice for stiff problems of moderate size) or
        ``"kvaerno5"`` (ESDIRK, L-stable, 5th order, Newton iterations). An explicit
        method that finds the problem stiff stops with status 4 (Hairer's test).
    rtol, atol
        Relative and absolute tolerances of the local error: numbers, or arrays with one
        tolerance per state component. Default ``1e-6`` and ``1e-9``. Tolerances below what
        the state's precision resolves are raised to ``100·eps`` (``rtol``) and the
        smallest normal number (``atol``), with a warning when you asked for them.
    t_eval
        Times at which to store the solution (interpolated). Without it the eager
        backends store every step; a compiled backend stores ``t0`` and ``t1``.
    args
        Extra arguments passed to ``f`` (and to ``jac``).
    dense_output
        Keep an interpolant: ``sol(t)`` (eager backends).
    max_steps
        The most steps (accepted and rejected) before giving up with status 1.
    first_step, max_step, dt
        The first step of an adaptive method (default: Hairer's estimate) and the
        longest step it may take (default: unbounded); ``dt`` fixes the step (any
        method; ``rk4`` needs it). All positive: the direction comes from ``t_span``.
    jac
        For the stiff methods: ``jac(t, y, *args)`` returns the Jacobian ``∂f/∂y`` of shape
        ``(n, n)`` (``n = y0.size``). Without it the Jacobian comes from the backend's
        automatic differentiation where it has one (jax, torch), else from finite
        differences (``n`` evaluations of ``f``, counted in ``stats["nfev"]``).
    backend
        The backend; default inferred from ``y0``.
    progress
        Show a progress bar (tqdm; eager backends).
    events
        A function ``g(t, y, *args)`` returning a real number, or a list of them: the times
        where ``g`` crosses zero are found on the solution's interpolant and returned in
        ``sol.t_events`` and ``sol.y_events``. As in scipy, ``g.terminal = True`` (or a count
        of occurrences) ends the solve there (status 5), and ``g.direction`` (``> 0``
        upward, ``< 0`` downward crossings only) filters them. Event times are
        differentiable like the solution.
    comm
        A comm (``be.comm``) the state is split across: each rank passes its part of
        ``y0`` and an ``f`` that exchanges what it needs with the others (``ppermute``). The
        error norm, step acceptance and stopping are then global (one ``allreduce`` a
        step), so every rank takes the same steps; at size 1 it is the ordinary solve.
        Explicit methods on eager backends.
    sensitivity, checkpoints
        How derivatives of the solution with respect to ``y0``, the array leaves of
        ``args`` and the ends of ``t_span`` (when they are arrays) are computed, on a
        backend with automatic differentiation: ``"checkpointed"`` (the default there;
        ``checkpoints`` states kept, default the square root of the number of steps),
        ``"direct"``, ``"backsolve"``, ``"interpolating"`` or ``"forward"``. See the ODE
        guide's table of when to choose which. Derivatives are of ``sol.y``; the solve is
        differentiated with ``be.ad.grad``, ``jax.grad``, ``torch.func.grad``, ...
    linear_solver, preconditioner
        How ``kvaerno5`` solves the linear systems of its Newton iterations:
        ``"dense"`` (default: ``I - h·gamma·J`` formed and inverted once a step, ``n²``
        numbers) or ``"gmres"`` (matrix-free, for large states such as discretised PDEs:
        GMRES on products ``J·v`` by forward-mode AD, by ``jac`` where given, else by
        forward differences counted in ``stats["nfev"]``). ``preconditioner(t, y,
        h_gamma, v, *args)`` (GMRES only) returns an approximation of ``(I -
        h_gamma·∂f/∂y(t, y))⁻¹ v`` in ``y0``'s shape: fewer GMRES iterations. Not
        differentiable; ``rodas5p`` needs ``"dense"``.
    compile
        Run each step of an explicit method as one compiled function on an eager backend
        that declares ``jit.fuse`` (torch: ``torch.compile``): one call a step instead of
        ~100 array operations. The first solve compiles (seconds); later solves with the
        same ``f``, method and state shape reuse it (times, step sizes, ``args`` and
        tolerances are its inputs). ``f`` then receives ``t`` as a 0-d array. Derivatives
        work as without it (the compiled forward solve feeds the same reverse sweep). A
        compiled backend (jax) compiles the whole solve already.

    Examples
    --------
    >>> import anyxp
    >>> from anyxp.ode import solve
    >>> sol = solve(lambda t, y: -y, (0.0, 1.0), anyxp.backend("numpy").asarray([1.0]))
    >>> round(float(sol.y[-1, 0]), 6)
    0.367879
    """
    import anyxp

    be = anyxp.backend(backend, like=y0)
    if be.lazy and be.has_row_blocks and comm is None:
        options = {
            "method": method, "rtol": rtol, "atol": atol, "t_eval": t_eval, "args": args,
            "dense_output": dense_output, "max_steps": max_steps, "first_step": first_step,
            "max_step": max_step, "jac": jac, "dt": dt, "progress": progress,
            "sensitivity": sensitivity, "checkpoints": checkpoints, "events": events,
            "linear_solver": linear_solver, "preconditioner": preconditioner,
            "compile": compile,
        }  # fmt: skip
        return _solve_in_memory(be, f, t_span, y0, options)
    mode = check_mode(be, sensitivity, checkpoints)
    p = _prepare(
        be, f, t_span, y0, method, rtol, atol, t_eval, args, dense_output, max_steps,
        first_step, max_step, jac, dt,
    )  # fmt: skip
    linear_solver = check_linear_solver(linear_solver, preconditioner, p.tab, method, sensitivity)
    if preconditioner is not None:
        _check_preconditioner(p, preconditioner)
    p = replace(p, linear_solver=linear_solver, preconditioner=preconditioner)
    if events is not None:
        p = replace(p, events=check_events(events))
    if compile and not p.compiled:
        p = replace(p, fused_f=_check_compile(p, f, comm))
    if comm is not None and comm.size > 1:
        p = replace(p, span=replace(p.span, comm=_check_split(p, comm, events)))
    if p.span.t0 == p.span.t1 or p.y0.shape[0] == 0:
        return _solve_trivial(p)
    if mode == DIFFERENCES:
        return _solve_with_differences(p, t_span, progress)
    if mode is not None and not dense_output:
        if be.xp.isdtype(p.dtype, "complex floating"):
            if sensitivity is not None:
                raise TypeError(
                    "sensitivities of complex states are not supported; solve the real and "
                    "imaginary parts as a real state of twice the size"
                )
        else:
            return _solve_differentiable(p, mode, checkpoints, t_span, progress)
    if be.lazy:
        warn_user(
            f"solve on {be.name!r} builds and computes a task graph at every step (about "
            "1 ms per array operation), so one trajectory takes minutes. Solve it on numpy "
            "(anyxp.backend('numpy').asarray(be.to_numpy(y0))), or use solve_ensemble for "
            "many trajectories."
        )
    res = _run(p, p.args, p.y0[None, :], log=False, progress=progress)
    return _solution(p, res)


def _solve_in_memory(
    be: Backend, f: Callable[..., Any], t_span: Any, y0: Any, options: dict[str, Any]
) -> Solution:
    """One trajectory on a chunked, lazy backend (dask): solved in memory, on the library
    its blocks hold (numpy), and handed back as the backend's arrays.

    A task graph per step costs about 1 ms per array operation, minutes for one Lorenz
    solve; the whole state of one trajectory fits in one block anyway.
    """
    import anyxp
    from anyxp.control_flow import tree_map

    warn_user(
        f"solve on {be.name!r}: one trajectory is solved in memory with numpy, whose "
        f"arrays {be.name}'s blocks hold (a task graph per step would take minutes), and "
        f"the results come back as {be.name} arrays. f must work on numpy arrays, as code "
        "written against the array API does. For many trajectories use solve_ensemble, "
        f"which {be.name} runs block by block."
    )
    host = anyxp.backend("numpy")

    def to_host(x: Any) -> Any:
        return be.to_numpy(x) if hasattr(x, "shape") and hasattr(x, "dtype") else x

    y0 = be.to_numpy(y0 if hasattr(y0, "shape") else be.asarray(y0))
    options["args"] = tree_map(to_host, tuple(options["args"]))
    t_span = tuple(to_host(t) for t in t_span)
    sol = solve(f, t_span, y0, backend=host, **options)

    def back(x: Any) -> Any:
        return be.asarray(x) if hasattr(x, "shape") and hasattr(x, "dtype") else x

    dense = sol._dense
    return replace(
        sol,
        t=back(sol.t),
        y=back(sol.y),
        backend=be,
        _dense=None if dense is None else (lambda t: back(dense(to_host(t)))),
        t_events=None if sol.t_events is None else [back(t) for t in sol.t_events],
        y_events=None if sol.y_events is None else [back(y) for y in sol.y_events],
        sensitivities=None if sol.sensitivities is None else tree_map(back, sol.sensitivities),
    )


def _prepare(
    be: Backend,
    f: Callable[..., Any],
    t_span: Sequence[float],
    y0: Any,
    method: str,
    rtol: Any,
    atol: Any,
    t_eval: Any,
    args: tuple[Any, ...],
    dense_output: bool,
    max_steps: int,
    first_step: Any,
    max_step: Any,
    jac: Callable[..., Any] | None,
    dt: Any,
) -> _Problem:
    """Check every argument of :func:`solve` and probe ``f`` (and ``jac``) once."""
    xp = be.xp
    tab, fixed = check_method(method, dt)
    t0, t1 = check_span(values_of(be, t_span))
    first_step, max_step, dt = check_steps(first_step, max_step, dt, max_steps, t0, t1)
    y0 = state_dtype(be, y0)
    if concrete(lambda: not xp.all(xp.isfinite(y0))):
        raise ValueError("y0 contains NaN or infinity; the solver needs a finite initial state")
    shape, dtype = tuple(y0.shape), y0.dtype
    y_flat = xp.reshape(y0, (-1,))
    rtol, atol = check_tolerances(be, rtol, atol, dtype, y_flat.shape[0])
    te = None if t_eval is None else check_t_eval(t_eval, t0, t1)
    check_probe(be, f(t0, y0, *args), shape, dtype, "solve")
    if dense_output and not tab.has_dense:
        raise ValueError(f"method {method!r} has no interpolant; choose another for dense_output")
    if dense_output and "control_flow.compiled" in be.capabilities:
        raise ValueError(
            f"dense_output needs an eager backend; a compiled solve on {be.name!r} "
            "stores the times you pass as t_eval"
        )

    def f_of(args: Any) -> Callable[[Any, Any], Any]:
        return _explicit.on_flat(xp, f, shape, tuple(args), rows=False)

    def jac_of(args: Any) -> Callable[[Any, Any], Any] | None:
        if jac is None:
            return None
        return lambda t, y: jac(t, xp.reshape(y, shape), *args)

    jac_now = jac_of(args)
    if jac_now is not None and y_flat.shape[0]:
        check_jac(jac_now(t0, y_flat), "solve", y_flat.shape[0], None)
    span = _explicit.Span(
        t0, t1, rtol, atol, dt if fixed else first_step, fixed, max_steps, max_step
    )
    return _Problem(
        be, method, tab, span, y_flat, shape, f_of, jac_of, tuple(args), te, dense_output
    )


def _check_compile(p: _Problem, f: Callable[..., Any], comm: Any) -> Callable[..., Any]:
    """``f``, once ``compile=True`` is known to be possible for this solve."""
    check_fusable(p.be, p.tab, p.method)
    if comm is not None and comm.size > 1:
        raise ValueError(
            "compile=True runs one process's steps; for a state split across ranks, solve "
            "without it"
        )
    return f


def _check_preconditioner(p: _Problem, preconditioner: Callable[..., Any]) -> None:
    """One call of the preconditioner (``h_gamma = 0``, where it should return ``v``)."""
    if not p.y0.shape[0]:
        return
    y0 = p.be.xp.reshape(p.y0, p.shape)
    probe = preconditioner(p.span.t0, y0, 0.0, y0, *p.args)
    check_probe(p.be, probe, p.shape, p.dtype, "solve", what="preconditioner")


def values_of(be: Backend, t_span: Any) -> Any:
    """The ends of ``t_span`` as plain values: arrays (maybe being differentiated) are
    read without their derivative; under ``jit`` they must be concrete."""
    from anyxp.selection import name_of

    try:
        items = list(t_span)
    except TypeError:
        return t_span
    out = []
    for v in items:
        if name_of(v) != be.name:
            out.append(v)
            continue
        try:
            out.append(float(be.ad.stop_gradient(v)))
        except Exception:  # noqa: BLE001 - tracers refuse float() with library-specific errors
            raise ValueError(
                "t_span must hold concrete times; inside jit, pass them as Python floats "
                "or mark them static (a traced t_span cannot set the loop's bounds)"
            ) from None
    return out


def _check_split(p: _Problem, comm: Any, events: Any) -> Any:
    """A state split across ranks needs an eager backend and an explicit method."""
    if p.compiled:
        raise ValueError(
            f"a state split across ranks needs collectives inside the traced loop, which "
            f"the {getattr(comm, 'name', 'given')!r} comm does not provide on {p.be.name!r}; "
            "solve on an eager backend (numpy, torch)"
        )
    if not isinstance(p.tab, Tableau):
        raise ValueError(
            f"method {p.method!r} solves linear systems in the whole state; a state split "
            "across ranks takes an explicit method (tsit5, dopri5, dop853, rk4)"
        )
    if events is not None or p.dense_output:
        raise ValueError("events and dense_output need the whole state on one rank")
    return comm


def _stats(**counts: int) -> dict[str, int]:
    keys = ("nfev", "njev", "nlu", "steps", "accepted", "rejected")
    return {k: counts.get(k, 0) for k in keys}


def _solve_trivial(p: _Problem) -> Solution:
    """Nothing to integrate: an empty state, or ``t0 == t1``. The answer is ``y0``."""
    be, xp, span = p.be, p.be.xp, p.span
    if p.t_eval is not None:
        times = p.t_eval
    else:
        times = np.array([span.t0] if span.t0 == span.t1 else [span.t0, span.t1])
    t_out = be.asarray(times)
    y_out = xp.broadcast_to(p.y0[None, :], (len(times), p.y0.shape[0]))
    y_out = xp.reshape(xp.asarray(y_out, copy=True), (len(times), *p.shape))

    def dense(t: Any) -> Any:
        m = np.asarray(t).size
        out = xp.broadcast_to(xp.reshape(p.y0, p.shape)[None, ...], (m, *p.shape))
        return out if np.ndim(t) else out[0, ...]

    message = _explicit.MESSAGES[_explicit.SUCCESS]
    return Solution(
        t_out, y_out, 0, message, _stats(nfev=1), p.method, be, dense if p.dense_output else None
    )


def _run(
    p: _Problem,
    args: Any,
    y_rows: Any,
    *,
    log: bool,
    progress: bool = False,
    keep_states: bool = False,
) -> dict[str, Any]:
    """Solve on values: ``y`` ``(m, 1, n)``, ``t``, status, stats (and the step log).

    A compiled backend runs the masked loop on a batch of one row (one traced program);
    an eager one the Python loop, which stores every step when there is no ``t_eval``.
    """
    be, xp = p.be, p.be.xp
    if p.compiled:
        stored = p.t_eval if p.t_eval is not None else np.array([p.span.t0, p.span.t1])
        rows = tuple(
            (e, lambda t, y, g=g: xp.reshape(g(t[0], y[0, :]), (1,)))
            for e, g in zip(p.events, p.events_of(args), strict=True)
        )
        st = p.stepper(args, batched=True)
        res = run_masked(
            st, p.span, y_rows, t_eval=stored, log=log, events=rows, keep_states=keep_states
        )
        stats = {k: v[0] if getattr(v, "ndim", 0) else v for k, v in res["stats"].items()}
        out = {"y": res["y"], "t": res["t"], "status": res["status"][0], "stats": stats}
        if rows:  # each event's first occurrence (NaN: none)
            t_first, y_first, _ = res["events"]
            ids = xp.arange(len(rows), dtype=xp.int32, device=be.device)
            out["event_rows"] = (t_first, y_first, ids)
        if log:
            *out["log"], out["n_iter"] = res["log"]
            out["te"] = res["t"]
            if "kept" in res:
                out["kept"] = res["kept"]
        return out
    if p.fused_f is not None:
        span = p.span
        st = fused_stepper(
            be, p.fused_f, p.tab, p.shape, p.dtype, args, span.rtol, span.atol, span.fixed
        )
    else:
        st = p.stepper(args, batched=False)
    bar = Progress(abs(p.span.t1 - p.span.t0)) if progress else None
    watch = None
    if p.events:
        watch = EagerEvents(be, p.events, p.events_of(args), p.span.t0, y_rows[0, :])
    try:
        res = _explicit.run_eager(
            st, p.span, y_rows[0, :], t_eval=p.t_eval, keep_dense=p.dense_output, progress=bar,
            events=watch, keep_states=keep_states,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    tdt, dev = _explicit.time_dtype(xp, p.dtype), be.device
    t_out = xp.asarray(res["t"], dtype=tdt, device=dev)
    n = y_rows.shape[1]
    y_out = xp.stack(res["y"]) if res["y"] else xp.zeros((0, n), dtype=p.dtype, device=dev)
    out = {"y": y_out[:, None, :], "t": t_out, "status": res["status"], "stats": res["stats"]}
    if p.dense_output:
        out["dense"] = _dense_eval(st, res, p.shape)
    if watch is not None:  # every occurrence, as rows: times (E, 1), states (E, 1, n)
        ids = [k for k, ts in enumerate(watch.times) for _ in ts]
        times = [t for ts in watch.times for t in ts]
        states = [y for ys in watch.states for y in ys]
        out["event_rows"] = (
            xp.reshape(xp.asarray(times, dtype=tdt, device=dev), (-1, 1)),
            xp.reshape(xp.stack(states), (-1, 1, n))
            if states
            else xp.zeros((0, 1, n), dtype=p.dtype, device=dev),
            xp.asarray(ids, dtype=xp.int32, device=dev),
        )
    if log:
        ts, hs = res["log"]
        out["log"] = tuple(xp.asarray(v, dtype=tdt, device=dev)[:, None] for v in (ts, hs))
        out["n_iter"] = len(ts)
        out["te"] = t_out
        if res["kept"] is not None:
            out["kept"] = res["kept"]  # flat states: the reverse sweep shapes the ones it uses
    return out


def _solution(p: _Problem, res: dict[str, Any]) -> Solution:
    """The :class:`Solution` of a run: states in ``y0``'s shape, the status in words."""
    xp = p.be.xp
    y = xp.reshape(res["y"][:, 0, :], (res["y"].shape[0], *p.shape))
    status = res["status"]
    code = concrete_int(status)
    if code is None:  # traced (jit, vmap): no message to read
        return Solution(res["t"], y, status, "traced", res["stats"], p.method, p.be)
    stats = res["stats"]
    if not p.compiled:  # eager: plain ints, as the loop counted them
        stats = {k: int(v) for k, v in stats.items()}
        status = int(status)
    message = _explicit.MESSAGES.get(int(status), "see status")
    t_events = y_events = None
    if "event_rows" in res:
        t_events, y_events = _events_by_kind(p, res["event_rows"])
    return Solution(
        res["t"], y, status, message, stats, p.method, p.be, res.get("dense"), t_events, y_events
    )


def _events_by_kind(p: _Problem, rows: tuple[Any, Any, Any]) -> tuple[list[Any], list[Any]]:
    """Each event's times ``(j,)`` and states ``(j, *shape)`` from the rows of all events.

    On a backend with AD the rows' states are the solution's (differentiable) and the
    times are made differentiable by the implicit function theorem on ``g(t, y(t)) = 0``.
    """
    be, xp = p.be, p.be.xp
    times, states, ids = rows
    # A compiled solve records each event's first occurrence, in order: known statically.
    n_rows = ids.shape[0]
    ids_host = list(range(len(p.events))) if p.compiled else [int(ids[j]) for j in range(n_rows)]
    gs, f = p.events_of(p.args), p.f_of(p.args)
    t_events, y_events = [], []
    for k in range(len(p.events)):
        where = [j for j, kind in enumerate(ids_host) if kind == k]
        if not where:
            t_events.append(xp.zeros((0,), dtype=times.dtype, device=be.device))
            y_events.append(xp.zeros((0, *p.shape), dtype=states.dtype, device=be.device))
            continue
        t_k = xp.stack([times[j, 0] for j in where])
        y_k = xp.stack([states[j, 0, :] for j in where])
        if "ad.custom" in be.capabilities:
            moved = [
                differentiable_event(be, gs[k], f, t_k[i], y_k[i, :]) for i in range(len(where))
            ]
            t_k = xp.stack([m[0] for m in moved])
            y_k = xp.stack([m[1] for m in moved])
        t_events.append(t_k)
        y_events.append(xp.reshape(y_k, (len(where), *p.shape)))
    return t_events, y_events


def _solve_with_differences(p: _Problem, t_span: Any, progress: bool) -> Solution:
    """A solve with its forward sensitivities by central differences of its replay."""
    be, xp = p.be, p.be.xp
    if xp.isdtype(p.dtype, "complex floating"):
        raise TypeError("sensitivities of complex states are not supported")
    params = Params.split(be, p.args)
    res = _run(p, p.args, p.y0[None, :], log=True, progress=progress)
    n_iter = concrete_int(res["n_iter"])
    ts, hs = res["log"]

    def method(leaves: tuple[Any, ...]) -> Any:
        return p.stepper(params.rebuild(leaves), batched=True, exact_stages=True)

    rp = Replay(
        be, method, ts[:n_iter, ...], hs[:n_iter, ...], res["te"], p.span.t0, p.span.t1,
        p.t_eval is None, n_iter,
    )  # fmt: skip
    inputs = (p.y0[None, :], *time_inputs(be, t_span, p.dtype), *params.leaves)
    blocks = difference_jacobian(rp, inputs)
    m = res["y"].shape[0]

    def shaped(block: Any, of: tuple[int, ...]) -> Any:
        return xp.reshape(block, (m, *p.shape, *of))

    sensitivities = {
        "y0": shaped(blocks[0], p.shape),
        "t_span": xp.stack([shaped(blocks[1], ()), shaped(blocks[2], ())], axis=-1),
        "args": tuple(
            shaped(b, tuple(leaf.shape)) for b, leaf in zip(blocks[3:], params.leaves, strict=True)
        ),
    }
    return replace(_solution(p, res), sensitivities=sensitivities)


def _solve_differentiable(
    p: _Problem, mode: str, checkpoints: int | None, t_span: Any, progress: bool
) -> Solution:
    """The solve as a differentiable function of ``y0``, ``t_span`` and ``args``."""
    be = p.be
    params = Params.split(be, p.args)

    def run(y_rows: Any, leaves: tuple[Any, ...], log: bool) -> dict[str, Any]:
        # Checkpointed: the forward keeps the steps' states for the reverse sweep (within
        # KEPT_BYTES), unless checkpoints= asks for that many states and no more.
        keep = log and mode == "checkpointed" and checkpoints is None
        args = params.rebuild(leaves)
        return _run(p, args, y_rows, log=log, progress=progress, keep_states=keep)

    def method(leaves: tuple[Any, ...]) -> Any:
        return p.stepper(params.rebuild(leaves), batched=True, exact_stages=True)

    span = p.span
    numbers = replace(
        span, rtol=smallest(be, span.rtol), atol=smallest(be, span.atol),
        h=span.h if span.fixed else None,
    )  # fmt: skip

    def adjoint_method(rhs: Callable[[Any, Any], Any]) -> Any:
        return make_method(
            be, p.tab, rhs, p.dtype, batched=True, jac=None, rtol=numbers.rtol, atol=numbers.atol
        )

    solver = Solver(
        be, run, method, span.t0, span.t1, mode, checkpoints, p.t_eval is None,
        adjoint_method, numbers,
    )  # fmt: skip
    t0, t1 = time_inputs(be, t_span, p.dtype)
    res = solver(p.y0[None, :], t0, t1, params.leaves)
    if "event_times" in res:  # the rows after the stored ones are the events' states
        m = res["t"].shape[0]
        res["event_rows"] = (res["event_times"], res["y"][m:, ...], res["event_ids"])
        res["y"] = res["y"][:m, ...]
    return _solution(p, res)


def _dense_eval(
    st: _explicit.Method, res: dict[str, Any], shape: tuple[int, ...]
) -> Callable[[Any], Any]:
    be, xp = st.be, st.be.xp
    steps = res["steps"]
    if not steps:

        def nothing(t: Any) -> Any:
            raise ValueError(f"no step was accepted ({res['status']=}): nothing to interpolate")

        return nothing
    starts = np.array([s[0] for s in steps])
    ends = np.array([s[0] + s[1] for s in steps])
    direction = 1.0 if steps[0][1] > 0 else -1.0
    tdt = _explicit.time_dtype(xp, st.dtype)

    def evaluate(t: Any) -> Any:
        tq = np.atleast_1d(np.asarray(t, dtype=np.float64))
        lo, hi = (starts[0], ends[-1]) if direction > 0 else (ends[-1], starts[0])
        if np.any((tq < lo - 1e-12 * abs(hi - lo)) | (tq > hi + 1e-12 * abs(hi - lo))):
            raise ValueError(f"dense output is defined on [{lo}, {hi}], asked at {tq}")
        key = direction * ends
        idx = np.clip(np.searchsorted(key, direction * tq, side="left"), 0, len(steps) - 1)
        rows = []
        for j, i in enumerate(idx):
            t_start, hs, y0, y1, record = steps[i]
            theta = xp.asarray([(tq[j] - t_start) / hs], dtype=tdt, device=be.device)
            rows.append(st.interpolate(theta, hs, y0, y1, record)[0, ...])
        out = xp.reshape(xp.stack(rows), (len(rows), *shape))
        return out if np.ndim(t) else out[0, ...]

    return evaluate


class Progress:
    """A tqdm bar over the interval: the callback the eager loop reports fractions to."""

    def __init__(self, length: float) -> None:
        from tqdm.auto import tqdm

        self.length = length
        self.bar = tqdm(total=length, unit="t", bar_format="{l_bar}{bar}| t={n:.4g}/{total:.4g}")

    def __call__(self, fraction: float) -> None:
        self.bar.update(fraction * self.length - self.bar.n)

    def close(self) -> None:
        self.bar.close()
