"""The one vocabulary of capability strings that plugins declare and everything else reads."""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["AD_CAPABILITIES", "CAPABILITIES", "COMM_CAPABILITIES", "check_capabilities"]

#: Every capability anyxp knows, with what declaring it promises.
CAPABILITIES = MappingProxyType(
    {
        "arrays": "the array-API surface anyxp's algorithms use (creation, elementwise, "
        "reductions, indexing, products) at every size",
        "arrays.inplace": "x[i, ...] = v writes into x in place, so an algorithm may fill a "
        "preallocated buffer (the stages of a Runge-Kutta step) instead of building arrays",
        "float64": "double precision arrays (dtype='float64')",
        "linalg": "xp.linalg.solve and xp.linalg.inv, batched over leading axes",
        "dlpack": "arrays export through DLPack (numpy.from_dlpack works on them)",
        "ad.grad": "be.ad.grad and be.ad.value_and_grad",
        "ad.vjp": "be.ad.vjp (reverse mode)",
        "ad.jvp": "be.ad.jvp (forward mode)",
        "ad.jacobian": "be.ad.jacobian",
        "ad.hessian": "be.ad.hessian",
        "ad.custom": "be.ad.custom_vjp and be.ad.with_jacobian: functions that bring their own "
        "derivative rules (an ODE solve's adjoint), composing with grad, vjp, jvp and second "
        "derivatives",
        "jit": "be.jit compiles a function",
        "jit.fuse": "be.jit(fun, fuse=True) compiles a function of arrays with no "
        "data-dependent Python control flow (one step of an iteration) into fused kernels, "
        "reused while its inputs keep their shapes and dtypes (0-d arrays for scalars that "
        "change from call to call)",
        "control_flow.compiled": "while_loop, fori_loop, scan and cond trace into compiled code",
        "random": "be.random draws reproducible numbers from explicit keys",
        "device.gpu": "arrays can live on a GPU",
        "comm.allreduce": "comm.allreduce with sum, prod, max, min, mean",
        "comm.broadcast": "comm.broadcast",
        "comm.allgather": "comm.allgather",
        "comm.reduce_scatter": "comm.reduce_scatter",
        "comm.ppermute": "comm.ppermute",
        "comm.barrier": "comm.barrier",
        "comm.out": "every collective but barrier takes out=: it writes the result into a "
        "preallocated array of the result's shape and dtype and returns it, with no new "
        "buffer per call (where arrays can be written into: immutable ones, as JAX's, raise "
        "TypeError)",
    }
)

AD_CAPABILITIES = ("ad.grad", "ad.vjp", "ad.jvp", "ad.jacobian", "ad.hessian", "ad.custom")

#: What a comm with every collective declares (the local comm among them); ``comm.out``
#: is declared apart, by comms whose collectives also write into given arrays.
COMM_CAPABILITIES = frozenset(c for c in CAPABILITIES if c.startswith("comm.") and c != "comm.out")


def check_capabilities(declared: frozenset[str]) -> None:
    """Raise ``ValueError`` naming any capability outside the vocabulary."""
    unknown = sorted(declared - CAPABILITIES.keys())
    if unknown:
        raise ValueError(
            f"unknown capabilities {unknown}; the vocabulary is anyxp.capabilities.CAPABILITIES: "
            f"{', '.join(sorted(CAPABILITIES))}"
        )
