"""The torch backend's factory: devices, AD through ``torch.func``, on-device random."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import array_api_compat.torch as xp
import numpy as np
import torch
import torch.func

from anyxp import Backend, BackendSpec, BackendUnavailableError
from anyxp.control_flow import EagerControlFlow
from anyxp.random import HostRandom, Key


def _tracked(x: Any) -> bool:
    """Whether a derivative may be asked of ``x`` (autograd, or a torch.func transform)."""
    return isinstance(x, torch.Tensor) and (
        x.requires_grad or torch._C._functorch.is_functorch_wrapped_tensor(x)
    )


def _plain_context(primals: tuple[Any, ...]) -> bool:
    """No derivative can be asked of a VJP taken here: grad mode is off (as in a custom
    rule's backward) and no torch.func transform is active; the primals are plain
    floating tensors."""
    return (
        not torch.is_grad_enabled()
        and torch._C._functorch.maybe_current_level() is None
        and all(
            isinstance(x, torch.Tensor)
            and x.is_floating_point()
            and not torch._C._functorch.is_functorch_wrapped_tensor(x)
            for x in primals
        )
    )


def _tape_vjp(f: Callable[..., Any], primals: tuple[Any, ...]) -> tuple[Any, Callable[..., Any]]:
    """``torch.func.vjp`` by the classic autograd tape: the same values, without
    torch.func's per-operation wrapping (a third of the time of an ODE step's VJP).
    Only where :func:`_plain_context` holds, so nothing outside can tell the two apart."""
    from torch.utils._pytree import tree_flatten, tree_map

    leaves = tuple(x.detach().requires_grad_() for x in primals)
    with torch.enable_grad():
        out = f(*leaves)
    flat, _ = tree_flatten(out)

    def pullback(cotangent: Any) -> tuple[Any, ...]:
        cots, _ = tree_flatten(cotangent)
        pairs = [
            (o, c)
            for o, c in zip(flat, cots, strict=True)
            if isinstance(o, torch.Tensor) and o.requires_grad and c is not None
        ]
        if not pairs:
            return tuple(torch.zeros_like(x) for x in primals)
        grads = torch.autograd.grad(
            [o for o, _ in pairs], leaves, [c for _, c in pairs], retain_graph=True,
            allow_unused=True,
        )  # fmt: skip
        return tuple(
            torch.zeros_like(x) if g is None else g for x, g in zip(primals, grads, strict=True)
        )

    return tree_map(lambda o: o.detach() if isinstance(o, torch.Tensor) else o, out), pullback


def _function(forward: Callable[..., Any], **rules: Callable[..., Any]) -> Any:
    """A ``torch.autograd.Function`` in the style torch.func composes with.

    ``forward(*inputs)`` returns ``(out, aux)``; the inputs are saved for the rules, and
    the ``aux`` outputs are not differentiable.
    """

    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
        ctx.save_for_backward(*inputs)
        ctx.save_for_forward(*inputs)
        ctx.out_shape = output[0].shape
        ctx.n_aux = len(output) - 1
        ctx.mark_non_differentiable(*output[1:])

    def flat_forward(*inputs: Any) -> tuple[Any, ...]:
        out, aux = forward(*inputs)
        return (out, *aux)

    namespace = {
        "forward": staticmethod(flat_forward),
        "setup_context": staticmethod(setup_context),
        **{name: staticmethod(rule) for name, rule in rules.items()},
    }
    return type("AnyxpFunction", (torch.autograd.Function,), namespace)


class TorchAD:
    """JAX-shaped AD on ``torch.func``."""

    @staticmethod
    def stop_gradient(x: Any) -> Any:
        return x.detach()

    @staticmethod
    def custom_vjp(
        fun: Callable[..., Any], fwd: Callable[..., Any], bwd: Callable[..., Any]
    ) -> Callable[..., Any]:
        def call(*args: Any) -> tuple[Any, tuple[Any, ...]]:
            if not any(_tracked(a) for a in args):
                return fun(*args)  # nothing to differentiate: no Function, no residuals
            residuals: dict[str, Any] = {}

            def forward(*inputs: Any) -> Any:
                outputs, residuals["res"] = fwd(*inputs)
                return outputs

            def backward(ctx: Any, out_bar: Any, *aux_bar: Any) -> tuple[Any, ...]:
                return tuple(bwd(ctx.saved_tensors, ctx.res, out_bar))

            def setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[Any, ...]) -> None:
                base_setup(ctx, inputs, output)
                ctx.res = residuals["res"]

            function = _function(forward, backward=backward)
            base_setup = function.setup_context
            function.setup_context = staticmethod(setup)
            out, *aux = function.apply(*args)
            return out, tuple(aux)

        return call

    @staticmethod
    def with_jacobian(fun: Callable[..., Any], jacobian: Callable[..., Any]) -> Callable[..., Any]:
        def backward(ctx: Any, out_bar: Any, *aux_bar: Any) -> tuple[Any, ...]:
            inputs = ctx.saved_tensors
            blocks = jacobian(*inputs)
            flat = out_bar.reshape(-1)
            return tuple((b.T @ flat).reshape(x.shape) for b, x in zip(blocks, inputs, strict=True))

        def jvp(ctx: Any, *tangents: Any) -> tuple[Any, ...]:
            inputs = ctx.saved_tensors
            blocks = jacobian(*inputs)
            parts = [
                b @ t.reshape(-1) for b, t in zip(blocks, tangents, strict=True) if t is not None
            ]
            out = sum(parts[1:], parts[0]).reshape(ctx.out_shape)
            return (out, *([None] * ctx.n_aux))

        function = _function(fun, backward=backward, jvp=jvp)

        def call(*args: Any) -> tuple[Any, tuple[Any, ...]]:
            if not any(_tracked(a) for a in args):
                return fun(*args)
            out, *aux = function.apply(*args)
            return out, tuple(aux)

        return call

    def grad(self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0) -> Callable[..., Any]:
        return torch.func.grad(f, argnums=argnums)

    def value_and_grad(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]:
        grad_and_value = torch.func.grad_and_value(f, argnums=argnums)

        def value_and_grad(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
            g, v = grad_and_value(*args, **kwargs)
            return v, g

        return value_and_grad

    def vjp(self, f: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[..., Any]]:
        if _plain_context(primals):
            return _tape_vjp(f, primals)
        return torch.func.vjp(f, *primals)  # type: ignore[no-any-return]

    def jvp(
        self, f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        return torch.func.jvp(f, tuple(primals), tuple(tangents))  # type: ignore[no-any-return]

    def jacobian(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]:
        return torch.func.jacrev(f, argnums=argnums)

    def hessian(
        self, f: Callable[..., Any], argnums: int | tuple[int, ...] = 0
    ) -> Callable[..., Any]:
        return torch.func.hessian(f, argnums=argnums)


class TorchRandom(HostRandom):
    """Draws with a ``torch.Generator`` on the backend's device, seeded from the key."""

    def _gen(self, key: Key) -> torch.Generator:
        return torch.Generator(device=self._device).manual_seed(key.seed64())

    def _normal(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        return torch.randn(shape, generator=self._gen(key), dtype=dtype, device=self._device)

    def _uniform01(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        return torch.rand(shape, generator=self._gen(key), dtype=dtype, device=self._device)

    def _integers(self, key: Key, shape: tuple[int, ...], minval: int, maxval: int) -> Any:
        return torch.randint(minval, maxval, shape, generator=self._gen(key), device=self._device)


def _device(spec: BackendSpec, device: Any) -> torch.device:
    try:
        dev = torch.device("cpu" if device is None else device)
    except RuntimeError as exc:
        raise BackendUnavailableError(
            f"device {device!r} is not available to backend {spec.name!r}: {exc}. "
            "Use 'cpu', 'cuda' or 'cuda:N'."
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"device {device!r} is not available to backend {spec.name!r}: torch "
                f"{torch.__version__} sees no CUDA device. Use device='cpu' or a CUDA build of torch."
            )
        if dev.index is None:  # arrays report cuda:N, so the backend names N too
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _to_numpy(x: Any) -> np.ndarray:
    try:
        return x.detach().cpu().numpy()
    except RuntimeError:
        # Inside a torch.func transform a tensor may be a wrapper without storage of its
        # own; its values are still readable (a host copy carries no derivative anyway).
        dtype = np.dtype(str(x.dtype).removeprefix("torch."))
        return np.asarray(x.tolist(), dtype=dtype).reshape(tuple(x.shape))


def _device_of(x: Any) -> Any:
    return x.device


class TorchControlFlow(EagerControlFlow):
    """Eager control flow; ``jit(fun, fuse=True)`` is ``torch.compile`` (jit.fuse).

    Only straight-line functions are compiled: a whole iterative program (Python loops)
    would be unrolled by TorchDynamo, so plain ``jit`` stays the identity.
    """

    def jit(self, fun: Callable[..., Any], fuse: bool = False, **_: Any) -> Callable[..., Any]:
        if not fuse:
            return fun
        # TorchDynamo keeps its compiled variants on the code object, at most
        # recompile_limit (8) of them, then runs eagerly: closures of one function (a
        # solver's step over different f) would share that budget. A copy of the code
        # gives each call its own.
        own = types.FunctionType(
            fun.__code__.replace(), fun.__globals__, fun.__name__, fun.__defaults__,
            fun.__closure__,
        )  # fmt: skip
        # Static shapes: a solver's step sees one state shape; scalars come as 0-d tensors,
        # so new step sizes do not recompile.
        return torch.compile(own, dynamic=False)


def create(spec: BackendSpec, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return the torch backend."""
    return Backend.from_namespace(
        spec,
        xp,
        device=_device(spec, device),
        dtype=dtype,
        ad=TorchAD(),
        random=TorchRandom,
        to_numpy=_to_numpy,
        device_of=_device_of,
        control=TorchControlFlow(xp),
    )
