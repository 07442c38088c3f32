"""Derivatives of a solve: one switch, ``sensitivity=``, over five ways to compute them.

A solve is a function of ``y0``, the interval ``(t0, t1)`` and the array leaves of
``args`` (``params`` for ensembles). On a backend with automatic differentiation
(capability ``ad.custom``), every solve is that function for the backend's own
``grad``, ``vjp``, ``jvp`` and ``jacobian``: the chosen mode decides how its derivative
is computed.

============== ===================================================================
mode           how
============== ===================================================================
checkpointed   reverse mode over the accepted steps, two-level checkpointing
               (the default)
direct         the accepted steps differentiated by the backend's own AD, any
               mode and order; memory grows with the steps
backsolve      the continuous adjoint, solved backwards with the state (O(1) memory;
               approximate, unstable for stiff or chaotic problems)
interpolating  the continuous adjoint on the forward solution's interpolant (stiff
               problems)
forward        forward sensitivities: one forward-mode pass per input component
============== ===================================================================

The first, second and fifth differentiate the discretised solution with the accepted
steps held fixed (:mod:`anyxp.ode._replay`), so they agree to rounding; the adjoints
approximate the continuous derivative to the solve's tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyxp.backend import Backend
from anyxp.errors import UnsupportedError
from anyxp.ode._checks import concrete_int
from anyxp.ode._explicit import Method, Span, time_dtype
from anyxp.ode._replay import Replay, forward_jacobian, outputs, reverse

__all__ = ["DIFFERENCES", "MODES", "Params", "Solver", "check_mode"]

MODES = ("checkpointed", "direct", "backsolve", "interpolating", "forward")
#: Forward sensitivities by differences, returned in ``sol.sensitivities``: the one way to
#: get derivatives of a solve on a backend without AD, and only when asked for by name.
DIFFERENCES = "forward-differences"
STATS = ("nfev", "njev", "nlu", "steps", "accepted", "rejected")


def check_mode(be: Backend, mode: str | None, checkpoints: int | None) -> str | None:
    """The mode to use (``None``: the solve is not differentiable here), checked."""
    if checkpoints is not None and (
        isinstance(checkpoints, bool) or not isinstance(checkpoints, int) or checkpoints < 1
    ):
        raise ValueError(f"checkpoints must be a positive int, got {checkpoints!r}")
    if mode is None:
        return "checkpointed" if "ad.custom" in be.capabilities else None
    if mode == DIFFERENCES:
        return mode
    if mode not in MODES:
        choices = ", ".join((*MODES, DIFFERENCES))
        raise ValueError(f"unknown sensitivity {mode!r}; choose one of {choices}")
    if "ad.custom" not in be.capabilities:
        from anyxp.registry import get_registry

        error = UnsupportedError(be.name, "ad.custom", get_registry().providers("ad.custom"))
        error.args = (
            f"{error.args[0]} Or, on {be.name!r}, sensitivity={DIFFERENCES!r} returns "
            "forward sensitivities by finite differences in sol.sensitivities.",
        )
        raise error
    if checkpoints is not None and mode != "checkpointed":
        raise ValueError(f"checkpoints= applies to sensitivity='checkpointed', not {mode!r}")
    return mode


@dataclass(frozen=True)
class Params:
    """The array leaves of ``args`` (what a solve is differentiated against), and how to
    put new leaves back in their places."""

    leaves: tuple[Any, ...]
    rebuild: Callable[[tuple[Any, ...]], Any]

    @classmethod
    def split(cls, be: Backend, tree: Any) -> Params:
        from anyxp.selection import name_of

        all_leaves, rebuild_all = be.tree_flatten(tree)
        where = [
            k
            for k, leaf in enumerate(all_leaves)
            if name_of(leaf) == be.name and be.xp.isdtype(leaf.dtype, "real floating")
        ]

        def rebuild(leaves: tuple[Any, ...]) -> Any:
            new = list(all_leaves)
            for k, leaf in zip(where, leaves, strict=True):
                new[k] = leaf
            return rebuild_all(new)

        # As arrays: JAX hands a Python float argument back as a weak-typed scalar.
        leaves = (all_leaves[k] for k in where)
        return cls(tuple(x if hasattr(x, "shape") else be.xp.asarray(x) for x in leaves), rebuild)


@dataclass(frozen=True)
class Solver:
    """A solve as a differentiable function of ``(y0, t0, t1, *leaves)`` for one mode.

    ``run(y0, leaves, log)`` solves on values (no derivative), returning the stored
    states ``y`` ``(m, B, n)``, their times, status, stats and, with ``log``, the step log
    and the stored times to replay (``te``, ``moving``). ``method(leaves)`` is the batched
    method (exact stage derivatives) over those leaves.
    """

    be: Backend
    run: Callable[[Any, tuple[Any, ...], bool], dict[str, Any]]
    method: Callable[[tuple[Any, ...]], Method]
    t0: float
    t1: float
    mode: str
    checkpoints: int | None
    moving: bool = False  # the stored times move with the interval (no t_eval)
    #: For the continuous adjoints: the method over an augmented right-hand side, and the
    #: forward tolerances and step bounds (as numbers) for their backward solves.
    adjoint_method: Callable[[Callable[[Any, Any], Any]], Method] | None = None
    span: Span | None = None
    per_row_params: bool = False  # every leaf has one row per trajectory (ensembles)

    def __call__(self, y0: Any, t0: Any, t1: Any, leaves: tuple[Any, ...]) -> dict[str, Any]:
        """The stored states (differentiable), with their times, status and stats."""
        inputs = (y0, t0, t1, *leaves)
        if self.mode == "direct":
            solved, aux = self._direct(inputs)
        elif self.mode == "forward":
            solved, aux = self.be.ad.with_jacobian(self._primal, self._jacobian)(*inputs)
        elif self.mode == "checkpointed":
            solved, aux = self.be.ad.custom_vjp(self._primal, self._logged, self._reverse)(*inputs)
        else:
            from anyxp.ode._adjoint import continuous_adjoint

            def bwd(args: tuple[Any, ...], logged: Any, stored_bar: Any) -> tuple[Any, ...]:
                stored = logged[5]
                return continuous_adjoint(self, self._replay(logged), args, stored_bar, stored)

            solved, aux = self.be.ad.custom_vjp(self._primal, self._logged, bwd)(*inputs)
        return {"y": solved, **self._unpack(aux)}

    # -- the forward solve, on values --------------------------------------------------
    def _values(self, inputs: tuple[Any, ...], log: bool) -> dict[str, Any]:
        """The forward solve; event states become extra rows of ``y`` (after the stored
        ones) so that they are differentiated like the rest."""
        y0, _, _, *leaves = inputs
        res = self.run(y0, tuple(leaves), log)
        if "event_rows" not in res:
            return res
        xp = self.be.xp
        times, states, _ = res["event_rows"]
        res = {**res, "y": xp.concat([res["y"], states], axis=0)}
        if log:
            te = res["te"]
            shared = xp.zeros((te.shape[0], times.shape[1]), dtype=times.dtype) + te[:, None]
            res["te"] = xp.concat([shared, times], axis=0)
            moving = [self.moving] * te.shape[0] + [False] * times.shape[0]
            res["moving"] = xp.asarray(moving, device=self.be.device)
        return res

    def _pack(self, res: dict[str, Any]) -> tuple[Any, ...]:
        """Status and counts as int32 arrays: outputs of a function with derivative rules."""
        xp, dev = self.be.xp, self.be.device

        def as_int(v: Any) -> Any:
            if hasattr(v, "dtype"):  # already an array, maybe traced: keep where it is
                return xp.astype(v, xp.int32)
            return xp.asarray(v, dtype=xp.int32, device=dev)

        packed = (res["t"], as_int(res["status"]), *(as_int(res["stats"][k]) for k in STATS))
        if "event_rows" in res:
            times, _, ids = res["event_rows"]
            packed = (*packed, times, as_int(ids))
        return packed

    @staticmethod
    def _unpack(aux: tuple[Any, ...]) -> dict[str, Any]:
        t, status, *rest = aux
        counts = rest[: len(STATS)]
        out = {"t": t, "status": status, "stats": dict(zip(STATS, counts, strict=True))}
        if len(rest) > len(STATS):
            out["event_times"], out["event_ids"] = rest[len(STATS) :]
        return out

    def _primal(self, *inputs: Any) -> tuple[Any, tuple[Any, ...]]:
        res = self._values(inputs, log=False)
        return res["y"], self._pack(res)

    def _logged(self, *inputs: Any) -> tuple[tuple[Any, tuple[Any, ...]], Any]:
        res = self._values(inputs, log=True)
        # (ts, hs, te, n_iter, moving, y, kept): kept, where the forward kept its states.
        logged = (*self._log_of(res), res["y"], res.get("kept"))
        return (res["y"], self._pack(res)), logged

    def _log_of(self, res: dict[str, Any]) -> tuple[Any, ...]:
        moving = res.get("moving", self.moving)
        return res["log"][0], res["log"][1], res["te"], res["n_iter"], moving

    def _replay(self, logged: Any) -> Replay:
        ts, hs, te, n_iter, moving = logged[:5]
        count = concrete_int(n_iter)
        if count is not None:  # known (not traced): replay the rows written, not the buffer
            ts, hs, n_iter = ts[:count, ...], hs[:count, ...], count
        kept = logged[6] if len(logged) > 6 else None
        return Replay(self.be, self.method, ts, hs, te, self.t0, self.t1, moving, n_iter, kept)

    # -- the modes -----------------------------------------------------------------------
    def _reverse(self, inputs: tuple[Any, ...], logged: Any, stored_bar: Any) -> tuple[Any, ...]:
        return reverse(self._replay(logged), inputs, stored_bar, self.checkpoints)

    def _jacobian(self, *inputs: Any) -> list[Any]:
        _, logged = self._logged(*(self.be.ad.stop_gradient(x) for x in inputs))
        return forward_jacobian(self._replay(logged), inputs)

    def _direct(self, inputs: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        """The log from a solve on values (no derivative through it), then a replay the
        backend differentiates itself."""
        res = self._values(tuple(self.be.ad.stop_gradient(x) for x in inputs), log=True)
        return outputs(self._replay(self._log_of(res)), inputs), self._pack(res)


def time_inputs(be: Backend, t_span: Any, dtype: Any) -> tuple[Any, Any]:
    """``t0`` and ``t1`` as 0-d arrays of the state's real dtype: the user's own arrays
    where they passed arrays (so derivatives reach them), else constants."""
    from anyxp.selection import name_of

    real = time_dtype(be.xp, dtype)
    out = []
    for v in t_span:
        if name_of(v) == be.name:
            out.append(be.xp.astype(v, real))
        else:
            out.append(be.xp.asarray(float(v), dtype=real, device=be.device))
    return out[0], out[1]
