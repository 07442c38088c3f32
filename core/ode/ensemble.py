"""``anyxp.ode.solve_ensemble``: many independent trajectories, vectorized across the batch."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

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
    state_dtype,
)
from anyxp.ode._events import Event, check_events, differentiable_event
from anyxp.ode._explicit import time_dtype
from anyxp.ode._fused import check_fusable, fused_stepper
from anyxp.ode._masked import run_masked
from anyxp.ode._sensitivity import Solver, check_mode, time_inputs
from anyxp.ode._solve import Progress, make_method, smallest, values_of

__all__ = ["EnsembleSolution", "solve_ensemble"]


@dataclass(frozen=True)
class EnsembleSolution:
    """The result of :func:`solve_ensemble`.

    ``t`` has shape ``(m,)`` and ``y`` shape ``(m, B, n)``: ``y[i, j]`` is trajectory
    ``j`` at ``t[i]``. ``status`` has one code per trajectory (as in
    :class:`anyxp.ode.Solution`); ``stats`` holds per-trajectory ``steps``, ``accepted`` and
    ``rejected`` and the batch's ``nfev``, ``njev`` and ``nlu`` (batched evaluations of ``f``
    and of the Jacobian, batched factorizations; on dask, summed over the blocks). With
    ``events``, ``t_events[k]`` has shape ``(B,)``: each trajectory's first occurrence of
    event ``k`` (NaN: none), and ``y_events[k]`` the states there, ``(B, n)``.
    """

    t: Any
    y: Any
    status: Any
    stats: dict[str, Any]
    method: str
    backend: Backend = field(repr=False)
    t_events: list[Any] | None = None
    y_events: list[Any] | None = None

    @property
    def success(self) -> bool:
        """Whether every trajectory reached the end of the interval, or a terminal event."""
        xp = self.backend.xp
        return bool(xp.all((self.status == 0) | (self.status == 5)))


def solve_ensemble(
    f: Callable[..., Any],
    t_span: Sequence[float],
    y0: Any,
    *,
    params: Any = None,
    method: str = "tsit5",
    rtol: Any = None,
    atol: Any = None,
    t_eval: Any = None,
    max_steps: int = 100_000,
    first_step: float | None = None,
    max_step: float | None = None,
    jac: Callable[..., Any] | None = None,
    dt: float | None = None,
    backend: str | Backend | None = None,
    sensitivity: str | None = None,
    checkpoints: int | None = None,
    events: Any = None,
    comm: Any = None,
    linear_solver: str = "dense",
    preconditioner: Callable[..., Any] | None = None,
    progress: bool = False,
    compile: bool = False,
) -> EnsembleSolution:
    """Solve ``B`` independent problems ``y_j' = f(t_j, y_j, p_j)`` at once.

    Each trajectory has its own adaptive step size and accept/reject decision; a finished
    trajectory is masked out while the others go on. Trajectory ``j`` solved in the batch
    equals trajectory ``j`` solved alone, to tolerance. A trajectory that stops early
    (see ``status``) holds NaN at the requested times it did not reach.

    Parameters
    ----------
    f
        ``f(t, y)`` or, with ``params``, ``f(t, y, params)``, on a whole batch: ``t`` has
        shape ``(B,)`` (each trajectory's own time), ``y`` shape ``(B, n)``, ``params``
        shape ``(B, ...)``; returns shape ``(B, n)``.
    t_span
        ``(t0, t1)``, shared by all trajectories.
    y0
        Initial states, shape ``(B, n)``.
    params
        Optional per-trajectory parameters, passed to ``f`` as its third argument.
    t_eval
        Times at which to store every trajectory (default ``t0`` and ``t1``).
    jac
        For the stiff methods: ``jac(t, y)`` or ``jac(t, y, params)`` on the whole batch,
        returning shape ``(B, n, n)``; default automatic differentiation or finite
        differences, as for :func:`anyxp.ode.solve`.
    method, rtol, atol, max_steps, first_step, max_step, dt, backend
        As for :func:`anyxp.ode.solve` (``rtol`` and ``atol`` may hold one tolerance per
        state component, shape ``(n,)``).
    sensitivity, checkpoints
        As for :func:`anyxp.ode.solve`: derivatives of ``sol.y`` with respect to ``y0``,
        ``params`` and the ends of ``t_span``, every trajectory's from its own steps.
    events
        As for :func:`anyxp.ode.solve`, on the batch: ``g(t, y)`` (or ``g(t, y, params)``)
        returns shape ``(B,)``. Each trajectory records each event's first occurrence; a
        terminal event ends that trajectory (status 5) while the others go on.
    comm
        A comm (``be.comm``) to split the trajectories across: every rank passes the
        whole ``y0`` and ``params``, solves its block of rows, and gets every
        trajectory's result back (one ``allgather`` per output), equal to one process's
        solve of the whole batch. ``nfev``, ``njev`` and ``nlu`` are summed over ranks.
    linear_solver, preconditioner
        As for :func:`anyxp.ode.solve` (``kvaerno5``), on the batch:
        ``preconditioner(t, y, h_gamma, v)`` (or ``(..., v, params)``) takes ``t`` and
        ``h_gamma`` of shape ``(B,)`` and ``y`` and ``v`` of shape ``(B, n)``.
    progress
        Show how far the solve is. Eager backends: a tqdm bar over the interval, at the
        time the slowest running trajectory has reached. Dask: one tick per block of
        trajectories (each block is a task), with ``distributed``'s progress bar on the
        active ``distributed.Client``, or dask's ``ProgressBar`` on local threads. With
        ``comm``: rank 0's bar over its own block. Not drawn while differentiating
        (``sensitivity``). Compiled backends (jax) run the solve as one program, which
        cannot report while it runs: ``ValueError``.
    compile
        As for :func:`anyxp.ode.solve`: each step of an explicit method, on the whole
        batch, one function compiled by ``be.jit(fun, fuse=True)`` (torch); the masked
        loop's bookkeeping stays eager.
    """
    import anyxp

    if comm is not None and comm.size > 1:
        options = {
            "params": params, "method": method, "rtol": rtol, "atol": atol,
            "t_eval": t_eval, "max_steps": max_steps, "first_step": first_step,
            "max_step": max_step, "jac": jac, "dt": dt, "backend": backend,
            "sensitivity": sensitivity, "checkpoints": checkpoints, "events": events,
            "linear_solver": linear_solver, "preconditioner": preconditioner,
            "progress": progress and comm.rank == 0, "compile": compile,
        }  # fmt: skip
        return _solve_across_ranks(comm, f, t_span, y0, options)
    be = anyxp.backend(backend, like=y0)
    xp = be.xp
    if progress and getattr(be.control, "compiled", False):
        raise ValueError(
            f"progress=True needs an eager or lazy backend; {be.name} compiles the whole "
            "ensemble into one program, which cannot report while it runs. Drop progress, "
            "or split t_span into pieces and report between them."
        )
    mode = check_mode(be, sensitivity, checkpoints)
    tab, fixed = check_method(method, dt)
    fuse = compile and not getattr(be.control, "compiled", False)
    if fuse:
        check_fusable(be, tab, method)
    linear_solver = check_linear_solver(linear_solver, preconditioner, tab, method, sensitivity)
    t0, t1 = check_span(values_of(be, t_span))
    first_step, max_step, dt = check_steps(first_step, max_step, dt, max_steps, t0, t1)
    y0 = state_dtype(be, y0)
    if y0.ndim != 2:
        raise ValueError(f"y0 must have shape (trajectories, states), got {tuple(y0.shape)}")
    if concrete(lambda: not xp.all(xp.isfinite(y0))):
        raise ValueError("y0 contains NaN or infinity; the solver needs finite initial states")
    rtol, atol = check_tolerances(be, rtol, atol, y0.dtype, y0.shape[1])
    extra: tuple[Any, ...] = ()
    if params is not None:
        params = be.asarray(params)
        if params.shape[0] != y0.shape[0]:
            raise ValueError(
                f"params has {params.shape[0]} rows for {y0.shape[0]} trajectories; give one "
                "row of parameters per trajectory"
            )
        extra = (params,)

    def f_batch(t: Any, y: Any) -> Any:
        return f(t, y, *extra)

    t_probe = xp.full((y0.shape[0],), t0, dtype=time_dtype(xp, y0.dtype), device=be.device)
    check_probe(be, f_batch(t_probe, y0), tuple(y0.shape), y0.dtype, "solve_ensemble")
    jac_batch = None
    if jac is not None:

        def jac_batch(t: Any, y: Any) -> Any:
            return jac(t, y, *extra)

        check_jac(jac_batch(t_probe, y0), "solve_ensemble", y0.shape[1], y0.shape[0])
    if preconditioner is not None:  # at h_gamma = 0, where it should return v
        zeros = xp.zeros_like(t_probe)
        probe = preconditioner(t_probe, y0, zeros, y0, *extra)
        check_probe(be, probe, tuple(y0.shape), y0.dtype, "solve_ensemble", "preconditioner")
    te = np.array([t0, t1]) if t_eval is None else check_t_eval(t_eval, t0, t1)
    span = _explicit.Span(
        t0, t1, rtol, atol, dt if fixed else first_step, fixed, max_steps, max_step
    )
    if t0 == t1 or y0.shape[0] * y0.shape[1] == 0:
        return _trivial(be, method, te, y0)
    if be.has_row_blocks:
        options = {
            "method": method,
            # As host values: each block's solve runs on numpy, maybe on another machine.
            "rtol": rtol if isinstance(rtol, float) else be.to_numpy(rtol),
            "atol": atol if isinstance(atol, float) else be.to_numpy(atol),
            "t_eval": te,
            "max_steps": max_steps,
            "first_step": first_step,
            "max_step": max_step,
            "jac": jac,
            "dt": dt,
            "linear_solver": linear_solver,
            "preconditioner": preconditioner,
        }
        return _solve_in_blocks(be, f, (t0, t1), y0, params, options, progress)

    def stepper(params: Any, exact_stages: bool = False) -> Any:
        if fuse and not exact_stages:  # the forward solve; replays differentiate plain steps
            args = () if params is None else (params,)
            return fused_stepper(
                be, f, tab, tuple(y0.shape), y0.dtype, args, rtol, atol, fixed, batched=True
            )

        def rhs(t: Any, y: Any) -> Any:
            return f(t, y) if params is None else f(t, y, params)

        jac_rows = None
        if jac is not None:
            jac_rows = lambda t, y: jac(t, y) if params is None else jac(t, y, params)  # noqa: E731
        precond = None
        if preconditioner is not None:
            p_extra = () if params is None else (params,)
            precond = lambda t, y, hg, v: preconditioner(t, y, hg, v, *p_extra)  # noqa: E731
        return make_method(
            be, tab, rhs, y0.dtype, batched=True, jac=jac_rows, rtol=rtol, atol=atol,
            exact_stages=exact_stages, linear_solver=linear_solver, preconditioner=precond,
        )  # fmt: skip

    watched = check_events(events)

    def event_rows(params: Any) -> tuple[tuple[Event, Any], ...]:
        return tuple(
            (e, lambda t, y, g=e.fn: g(t, y) if params is None else g(t, y, params))
            for e in watched
        )

    if mode is not None and not xp.isdtype(y0.dtype, "complex floating"):
        solver = _solver(
            be, tab, y0.dtype, stepper, event_rows, span, te, t_eval is None, params, mode,
            checkpoints,
        )  # fmt: skip
        res = solver(y0, *time_inputs(be, t_span, y0.dtype), solver_leaves(be, params))
        if "event_times" in res:
            m = res["t"].shape[0]
            res["events"] = (res["event_times"], res["y"][m:, ...])
            res["y"] = res["y"][:m, ...]
    else:
        bar = Progress(abs(t1 - t0)) if progress else None
        try:
            res = run_masked(
                stepper(params), span, y0, t_eval=te, events=event_rows(params), progress=bar
            )
        finally:
            if bar is not None:
                bar.close()
    t_events = y_events = None
    if watched:
        times, states = res["events"][:2]
        if mode is not None and "ad.custom" in be.capabilities:
            rhs = stepper(params).f
            moved = [
                differentiable_event(be, g, rhs, times[k, ...], states[k, ...])
                for k, (_, g) in enumerate(event_rows(params))
            ]
            times = xp.stack([m[0] for m in moved])
            states = xp.stack([m[1] for m in moved])
        t_events = [times[k, ...] for k in range(len(watched))]
        y_events = [states[k, ...] for k in range(len(watched))]
    return EnsembleSolution(
        res["t"], res["y"], res["status"], res["stats"], method, be, t_events, y_events
    )


def solver_leaves(be: Backend, params: Any) -> tuple[Any, ...]:
    """The parameters an ensemble is differentiated against: ``params`` if it is floating."""
    if params is None or not be.xp.isdtype(params.dtype, "real floating"):
        return ()
    return (params,)


def _solver(
    be: Backend,
    tab: Any,
    dtype: Any,
    stepper: Callable[..., Any],
    event_rows: Callable[[Any], tuple[Any, ...]],
    span: _explicit.Span,
    te: np.ndarray,
    moving: bool,
    params: Any,
    mode: str,
    checkpoints: int | None,
) -> Solver:
    """The ensemble as a differentiable function of ``(y0, t0, t1, params)``."""

    def with_leaves(leaves: tuple[Any, ...]) -> Any:
        return leaves[0] if leaves else params

    def run(y_rows: Any, leaves: tuple[Any, ...], log: bool) -> dict[str, Any]:
        params_now = with_leaves(leaves)
        watched = event_rows(params_now)
        res = run_masked(
            stepper(params_now), span, y_rows, t_eval=te, log=log, events=watched,
            keep_states=log and mode == "checkpointed" and checkpoints is None,
        )  # fmt: skip
        if log:
            *res["log"], res["n_iter"] = res["log"]
            res["te"] = res["t"]
        if watched:  # each event's first occurrence per row: rows after the stored states
            t_first, y_first, _ = res["events"]
            ids = be.xp.arange(len(watched), dtype=be.xp.int32, device=be.device)
            res["event_rows"] = (t_first, y_first, ids)
        return res

    def method(leaves: tuple[Any, ...]) -> Any:
        return stepper(with_leaves(leaves), exact_stages=True)

    numbers = replace(
        span, rtol=smallest(be, span.rtol), atol=smallest(be, span.atol),
        h=span.h if span.fixed else None,
    )  # fmt: skip

    def adjoint_method(rhs: Callable[[Any, Any], Any]) -> Any:
        return make_method(
            be, tab, rhs, dtype, batched=True, jac=None, rtol=numbers.rtol, atol=numbers.atol
        )

    return Solver(
        be, run, method, span.t0, span.t1, mode, checkpoints, moving, adjoint_method,
        numbers, per_row_params=True,
    )  # fmt: skip


def _solve_across_ranks(
    comm: Any, f: Callable[..., Any], t_span: Any, y0: Any, options: dict[str, Any]
) -> EnsembleSolution:
    """Each rank its block of rows; every output gathered back in row order."""
    import anyxp

    be = anyxp.backend(options["backend"], like=y0)
    if be.has_row_blocks:
        raise ValueError(
            f"{be.name!r} arrays are split into blocks by {be.name} itself; pass comm= with "
            "in-memory arrays (numpy, torch, jax, cupy), or drop it"
        )
    if getattr(y0, "ndim", None) != 2:
        raise ValueError(f"y0 must have shape (trajectories, states), got {tuple(y0.shape)}")
    batch, size = y0.shape[0], comm.size
    bounds = [r * batch // size for r in range(size + 1)]
    rows = slice(bounds[comm.rank], bounds[comm.rank + 1])
    params = options.pop("params")
    own = solve_ensemble(
        f, t_span, y0[rows, ...], params=None if params is None else params[rows, ...],
        **options,
    )  # fmt: skip
    widest = -(-batch // size)  # the longest block
    xp = be.xp

    def gather(x: Any, axis: int) -> Any:
        """Every rank's ``x`` (its rows along ``axis``), joined in rank order."""
        x = xp.moveaxis(x, axis, 0)
        short = widest - x.shape[0]
        if short:
            pad = xp.zeros((short, *x.shape[1:]), dtype=x.dtype, device=be.device)
            x = xp.concat([x, pad], axis=0)
        blocks = comm.allgather(x)
        joined = xp.concat(
            [blocks[r, : bounds[r + 1] - bounds[r], ...] for r in range(size)], axis=0
        )
        return xp.moveaxis(joined, 0, axis)

    stats = dict(own.stats)
    for key in ("steps", "accepted", "rejected"):
        stats[key] = gather(stats[key], 0)
    for key in ("nfev", "njev", "nlu"):
        total = comm.allreduce(xp.asarray([int(stats[key])], dtype=xp.int64, device=be.device))
        stats[key] = int(total[0])
    t_events = y_events = None
    if own.t_events is not None and own.y_events is not None:
        t_events = [gather(t, 0) for t in own.t_events]
        y_events = [gather(y, 0) for y in own.y_events]
    return EnsembleSolution(
        own.t, gather(own.y, 1), gather(own.status, 0), stats, own.method, own.backend,
        t_events, y_events,
    )  # fmt: skip


def _trivial(be: Backend, method: str, te: np.ndarray, y0: Any) -> EnsembleSolution:
    """Nothing to integrate (``t0 == t1`` or empty states): every stored state is ``y0``."""
    xp = be.xp
    batch = y0.shape[0]
    y = xp.asarray(xp.broadcast_to(y0[None, ...], (len(te), *y0.shape)), copy=True)
    zeros = xp.zeros((batch,), dtype=xp.int32, device=be.device)
    stats = {"steps": zeros, "accepted": zeros, "rejected": zeros, "nfev": 1, "njev": 0, "nlu": 0}
    t = be.asarray(te, dtype=time_dtype(xp, y0.dtype))
    return EnsembleSolution(t, y, zeros, stats, method, be)


def _solve_in_blocks(
    be: Backend,
    f: Callable[..., Any],
    t_span: tuple[float, float],
    y0: Any,
    params: Any,
    options: dict[str, Any],
    progress: bool = False,
) -> EnsembleSolution:
    """Solve each block of trajectories as its own ensemble, where the blocks live.

    On dask every block of rows of ``y0`` becomes one task (on a ``dask.distributed``
    cluster when a client is active); inside it the block is an ensemble of the blocks'
    library (numpy). The result's arrays are lazy, persisted together.
    """
    m, n = len(options["t_eval"]), y0.shape[1]
    dtype = y0.dtype

    per_row, per_batch = ("steps", "accepted", "rejected"), ("nfev", "njev", "nlu")

    def solve_block(y_block: Any, *p_block: Any) -> tuple[Any, ...]:
        sol = solve_ensemble(f, t_span, y_block, params=p_block[0] if p_block else None, **options)
        xb, s = sol.backend.xp, sol.stats
        rows = [xb.astype(s[k], xb.int64) for k in per_row]
        counts = [xb.reshape(xb.astype(s[k], xb.int64), (1,)) for k in per_batch]
        return (sol.y, xb.astype(sol.status, xb.int64), *rows, *counts)

    int64 = np.dtype("int64")
    row_output = (0, lambda rows: (rows,), int64)
    count_output = (0, lambda rows: (1,), int64)  # one count per block, summed below
    outputs = (
        (1, lambda rows: (m, rows, n), dtype),
        row_output,
        *(row_output for _ in per_row),
        *(count_output for _ in per_batch),
    )
    arrays = (y0,) if params is None else (y0, params)
    blocks = be.map_row_blocks(solve_block, arrays, outputs)
    y, status, *rest = be.materialize(*blocks, progress=progress)
    stats = dict(zip(per_row, rest[: len(per_row)], strict=True))
    for key, counts in zip(per_batch, rest[len(per_row) :], strict=True):
        stats[key] = be.xp.sum(counts)
    t = be.asarray(options["t_eval"])
    return EnsembleSolution(t, y, status, stats, options["method"], be)
