"""The runtime object users hold: a native array namespace plus what the standard lacks."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from anyxp._comm_ad import differentiable
from anyxp._warnings import warn_user
from anyxp.ad import AD, DeclaredAD
from anyxp.capabilities import COMM_CAPABILITIES
from anyxp.comm import Comm, LocalComm
from anyxp.control_flow import EagerControlFlow
from anyxp.errors import BackendUnavailableError, UnsupportedError
from anyxp.random import HostRandom
from anyxp.spec import BackendSpec

__all__ = ["Backend", "resolve_device", "resolve_dtype"]

_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")


def resolve_dtype(spec: BackendSpec, xp: ModuleType, dtype: Any, device: Any = None) -> Any:
    """Return the native floating dtype for ``dtype`` (a name, a native dtype or ``None``).

    ``None`` gives float64 where the backend declares it and its library can make float64
    arrays now, else the library's default: numerics do not depend on a library's mutable
    global default (``torch.set_default_dtype``). JAX makes float64 only in x64 mode, which
    only an explicit ``dtype="float64"`` turns on.
    """
    if dtype is None:
        wide = "float64" in spec.capabilities and _makes_float64(xp, device)
        # float64 not declared (or JAX outside x64 mode): single precision.
        dtype = "float64" if wide else "float32"
    if isinstance(dtype, str):
        if dtype not in _FLOAT_NAMES or not hasattr(xp, dtype):
            raise ValueError(
                f"dtype {dtype!r} is not a floating dtype of backend {spec.name!r}; use one of "
                f"{', '.join(n for n in _FLOAT_NAMES if hasattr(xp, n))}"
            )
        dtype = getattr(xp, dtype)
        if isinstance(dtype, type):  # numpy and jax name scalar types; arrays carry np.dtype
            dtype = np.dtype(dtype)
    elif not xp.isdtype(dtype, "real floating"):
        raise ValueError(f"backend dtype must be a real floating dtype, got {dtype!r}")
    if dtype == xp.float64 and "float64" not in spec.capabilities:
        from anyxp.registry import get_registry

        raise UnsupportedError(spec.name, "float64", get_registry().providers("float64"))
    return dtype


def _makes_float64(xp: ModuleType, device: Any) -> bool:
    """Whether ``xp`` holds float64 arrays now (JAX outside x64 mode makes float32)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # JAX warns that it truncates to float32
        try:
            return bool(xp.zeros((1,), dtype=xp.float64, device=device).dtype == xp.float64)
        except Exception:  # noqa: BLE001 - a library may refuse float64 on this device
            return False


def resolve_device(spec: BackendSpec, xp: ModuleType, device: Any) -> Any:
    """Return the native device for ``device``, checked against the library's devices."""
    info = xp.__array_namespace_info__()
    if device is None:
        return info.default_device()
    devices = list(info.devices())
    for d in devices:
        if device == d or (isinstance(device, str) and device.lower() == str(d).lower()):
            return d
    raise BackendUnavailableError(
        f"device {device!r} is not available to backend {spec.name!r}; available: "
        f"{', '.join(str(d) for d in devices)}"
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Backend:
    """An array backend: its native namespace, device, dtype, AD, comm, random, control flow.

    Arrays are the library's own; ``be.xp`` is an array-API namespace over them.
    Build one with :func:`anyxp.backend`; a plugin's factory builds it with
    :meth:`from_namespace` and overrides only what its library does natively.
    """

    spec: BackendSpec
    xp: ModuleType
    device: Any
    float_dtype: Any
    ad: AD
    random: Any
    control: Any
    comm: Comm
    to_numpy_fn: Callable[[Any], np.ndarray] = dataclasses.field(repr=False)
    device_of: Callable[[Any], Any] = dataclasses.field(repr=False)
    comm_capabilities: frozenset[str] = COMM_CAPABILITIES | {"comm.out"}  # the local comm
    materialize_fn: Callable[..., tuple[Any, ...]] | None = dataclasses.field(
        default=None, repr=False
    )
    map_row_blocks_fn: Callable[..., tuple[Any, ...]] | None = dataclasses.field(
        default=None, repr=False
    )

    @classmethod
    def from_namespace(
        cls,
        spec: BackendSpec,
        xp: ModuleType,
        *,
        device: Any = None,
        dtype: Any = None,
        ad: AD | None = None,
        random: Any = None,
        control: Any = None,
        to_numpy: Callable[[Any], np.ndarray] | None = None,
        device_of: Callable[[Any], Any] | None = None,
        materialize: Callable[..., tuple[Any, ...]] | None = None,
        map_row_blocks: Callable[..., tuple[Any, ...]] | None = None,
    ) -> Backend:
        """Build a backend from an array-API namespace, with defaults for the rest.

        The defaults: no AD, eager control flow, host-drawn random numbers moved to the
        device, ``numpy.asarray`` for ``to_numpy``, ``array_api_compat.device``, and
        arrays that are already concrete (``materialize`` does nothing), and no blocks
        (``map_row_blocks``: see :meth:`Backend.map_row_blocks`).
        """
        if device is None or isinstance(device, str):
            device = resolve_device(spec, xp, device)
        float_dtype = resolve_dtype(spec, xp, dtype, device)
        if device_of is None:
            import array_api_compat

            device_of = array_api_compat.device
        be = cls(
            spec=spec,
            xp=xp,
            device=device,
            float_dtype=float_dtype,
            ad=DeclaredAD(spec.name, ad, spec.capabilities),
            random=None,
            control=control if control is not None else EagerControlFlow(xp),
            comm=None,  # type: ignore[arg-type]
            to_numpy_fn=to_numpy if to_numpy is not None else np.asarray,
            device_of=device_of,
            materialize_fn=materialize,
            map_row_blocks_fn=map_row_blocks,
        )
        rnd = (random if random is not None else HostRandom)(be)
        object.__setattr__(be, "random", rnd)
        object.__setattr__(be, "comm", differentiable(LocalComm(be), be))
        return be

    # -- identity ---------------------------------------------------------------
    @property
    def name(self) -> str:
        """The backend's registered name."""
        return self.spec.name

    @property
    def capabilities(self) -> frozenset[str]:
        """What this backend (and its comm) promise, in anyxp's capability vocabulary."""
        return self.spec.capabilities | self.comm_capabilities

    def with_comm(self, comm: Comm, capabilities: frozenset[str]) -> Backend:
        """Return this backend with ``comm`` (declaring ``capabilities``) as its collectives."""
        return dataclasses.replace(
            self, comm=differentiable(comm, self), comm_capabilities=frozenset(capabilities)
        )

    def __repr__(self) -> str:
        return (
            f"Backend({self.name!r}, device={self.device!r}, float_dtype={self.float_dtype}, "
            f"comm={getattr(self.comm, 'name', self.comm)!r})"
        )

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # Used by IPython and by hypothesis when it prints a falsifying example.
        p.text(repr(self))

    # -- arrays -----------------------------------------------------------------
    @property
    def complex_dtype(self) -> Any:
        """The complex dtype of ``float_dtype``'s precision (complex64 below float64)."""
        wide = self.float_dtype == self.xp.float64
        return self.xp.complex128 if wide else self.xp.complex64

    def _default_dtype(self, dtype: Any) -> Any:
        """The dtype floating data of ``dtype`` takes here (``None``: keep it)."""
        xp = self.xp
        if xp.isdtype(dtype, "real floating"):
            return self.float_dtype
        if xp.isdtype(dtype, "complex floating"):
            return self.complex_dtype
        return None

    def asarray(self, obj: Any, dtype: Any = None, *, copy: bool | None = None) -> Any:
        """Return ``obj`` as a native array on this backend's device.

        Real floating data gets ``float_dtype`` and complex data the complex dtype of the
        same precision, unless ``dtype`` is given. Python scalars and (nested) lists are
        read at that precision directly, never through a library's float32 default.
        Arrays of another backend are moved through the host.
        """
        from anyxp.selection import name_of

        other = name_of(obj)
        xp = self.xp
        if other == self.name and copy is None and self.device_of(obj) in (None, self.device):
            # Already ours and in place: no round trip through asarray, which a traced
            # value (a JAX tracer under vmap) may not survive.
            target = dtype if dtype is not None else self._default_dtype(obj.dtype)
            return obj if target is None or obj.dtype == target else xp.astype(obj, target)
        if other is not None and other != self.name:
            from anyxp.selection import backend

            obj = backend(like=obj).to_numpy(obj)
        if dtype is None:
            if other is None and not hasattr(obj, "dtype"):
                # Python data: numpy reads literals exactly (float64, complex128), which
                # tells the kind; the library then parses them at the target precision.
                kind = np.asarray(obj).dtype.kind
                if kind in "fc":
                    dtype = self.float_dtype if kind == "f" else self.complex_dtype
                    return xp.asarray(obj, dtype=dtype, device=self.device, copy=copy)
            arr = xp.asarray(obj, device=self.device, copy=copy)
            target = self._default_dtype(arr.dtype)
            return arr if target is None or arr.dtype == target else xp.astype(arr, target)
        return xp.asarray(obj, dtype=dtype, device=self.device, copy=copy)

    def materialize(self, *arrays: Any, progress: bool = False) -> tuple[Any, ...]:
        """Compute lazy arrays now, together, and return them (eager arrays unchanged).

        Iterative algorithms call it once per iteration on their state, so that a lazy
        backend (dask) does not grow one graph across all iterations. With
        ``progress=True`` the plugin's ``materialize`` is asked to show the computation's
        progress (dask: per task); one that takes no ``progress`` keyword computes
        without it, with a warning.
        """
        if self.materialize_fn is None:
            return arrays
        if not progress:
            return self.materialize_fn(*arrays)
        if "progress" not in inspect.signature(self.materialize_fn).parameters:
            warn_user(
                f"the {self.name} backend's materialize takes no progress keyword, so no "
                "progress is shown; its plugin can add one (see writing-a-plugin)"
            )
            return self.materialize_fn(*arrays)
        return self.materialize_fn(*arrays, progress=True)

    @property
    def lazy(self) -> bool:
        """Whether arrays are computed only when asked (dask): see :meth:`materialize`."""
        return self.materialize_fn is not None

    @property
    def has_row_blocks(self) -> bool:
        """Whether arrays are split in blocks of rows that can be worked on apart (dask)."""
        return self.map_row_blocks_fn is not None

    def map_row_blocks(
        self,
        fn: Callable[..., tuple[Any, ...]],
        arrays: tuple[Any, ...],
        outputs: tuple[tuple[int, Callable[[int], tuple[int, ...]], Any], ...],
    ) -> tuple[Any, ...]:
        """Run ``fn`` on each block of rows of ``arrays``; join its outputs' blocks.

        ``fn`` receives one block of rows of each array, as arrays of the blocks' own
        library (numpy for dask), possibly on another machine of a cluster, and returns one
        array per entry of ``outputs``: ``(row_axis, shape(rows), dtype)``. The result holds
        this backend's (lazy) arrays, each joined along its row axis.
        """
        if self.map_row_blocks_fn is None:
            raise UnsupportedError(self.name, "row blocks", [])
        return self.map_row_blocks_fn(fn, arrays, outputs)

    def to_numpy(self, x: Any) -> np.ndarray:
        """Return ``x`` as a numpy array on the host (a copy when it lives elsewhere)."""
        return self.to_numpy_fn(x)

    # -- control flow -----------------------------------------------------------
    def while_loop(
        self, cond_fun: Callable[..., Any], body_fun: Callable[..., Any], init_val: Any
    ) -> Any:
        """``lax.while_loop``: apply ``body_fun`` while ``cond_fun`` holds."""
        return self.control.while_loop(cond_fun, body_fun, init_val)

    def fori_loop(self, lower: int, upper: int, body_fun: Callable[..., Any], init_val: Any) -> Any:
        """``lax.fori_loop``: fold ``body_fun(i, val)`` over ``range(lower, upper)``."""
        return self.control.fori_loop(lower, upper, body_fun, init_val)

    def scan(
        self, f: Callable[..., Any], init: Any, xs: Any = None, length: int | None = None
    ) -> Any:
        """``lax.scan``: fold ``f(carry, x) -> (carry, y)`` over ``xs``, stacking ys."""
        return self.control.scan(f, init, xs, length)

    def cond(
        self, pred: Any, true_fun: Callable[..., Any], false_fun: Callable[..., Any], *operands: Any
    ) -> Any:
        """``lax.cond``: ``true_fun(*operands)`` if ``pred`` else ``false_fun(*operands)``."""
        return self.control.cond(pred, true_fun, false_fun, *operands)

    def jit(self, fun: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        """Compile ``fun`` where the backend compiles; return it unchanged otherwise.

        ``fuse=True`` asks for a straight-line function (one step of an iteration, no
        data-dependent Python control flow) to be compiled into fused kernels: backends
        that declare ``jit.fuse`` do (torch through ``torch.compile``), others return it
        unchanged.
        """
        return self.control.jit(fun, **options)  # type: ignore[no-any-return]

    def tree_flatten(self, tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
        """The leaves of a pytree and ``rebuild(leaves)``: nested tuples, lists and dicts,
        and whatever else the backend's library treats as a tree (JAX's registered nodes).
        """
        from anyxp.control_flow import tree_flatten

        flatten = getattr(self.control, "tree_flatten", tree_flatten)
        return flatten(tree)  # type: ignore[no-any-return]
