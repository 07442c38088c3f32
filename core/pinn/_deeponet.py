"""A DeepONet with explicit parameters: ``deeponet_init`` and ``deeponet_apply``.

Lu et al.'s unstacked DeepONet learns an operator ``G: v ↦ u`` from functions ``v``
sampled at ``m`` fixed sensors. A branch MLP maps the sensor values to ``p`` coefficients,
a trunk MLP maps a point ``x`` to ``p`` basis values, and ``G(v)(x)`` is their dot
product plus a bias. Evaluated on the Cartesian product of ``M`` functions and ``N``
points, the trunk runs on the ``N`` points once and the output is one ``(M, p) @ (p, N)``
product: the layout that :func:`anyxp.pinn.derivatives` with ``method="zcs"`` keeps.

The parameters are a pytree, ``{"branch": mlp, "trunk": mlp, "bias": 0-d array}``, the two
MLPs as :func:`anyxp.nn.mlp_init` makes them, so ``be.ad.grad``, ``be.jit`` and
:func:`anyxp.nn.adam` take them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anyxp.backend import Backend
from anyxp.nn import Activation, mlp_apply, mlp_init
from anyxp.nn._tree import backend_of

__all__ = ["DeepONetParams", "deeponet_apply", "deeponet_init"]

#: A DeepONet's parameters: ``{"branch": [...], "trunk": [...], "bias": 0-d array}``.
DeepONetParams = dict[str, Any]

_MAKE = "make them with anyxp.pinn.deeponet_init(key, branch_sizes, trunk_sizes)"


def deeponet_init(
    key: Any,
    branch_sizes: Sequence[int],
    trunk_sizes: Sequence[int],
    *,
    backend: str | Backend | None = None,
    device: Any = None,
    dtype: Any = None,
) -> DeepONetParams:
    """Return the initial parameters of a DeepONet with the given branch and trunk widths.

    Parameters
    ----------
    key
        A random key of the backend, ``be.random.key(seed)``; the branch and the trunk
        draw from keys split from it.
    branch_sizes
        The branch MLP's widths: the number of sensors ``m`` first, the number of basis
        functions ``p`` last, e.g. ``[50, 128, 128, 128]``.
    trunk_sizes
        The trunk MLP's widths: the number of coordinates ``d`` first, ``p`` last, e.g.
        ``[2, 128, 128, 128]`` for ``(x, t)``.
    backend, device, dtype
        Where the parameters live, as for :func:`anyxp.nn.mlp_init` (default: the
        backend of ``key``).

    Returns
    -------
    dict
        ``{"branch": mlp, "trunk": mlp, "bias": 0-d zero}``: Glorot-uniform weights and
        zero biases (:func:`anyxp.nn.mlp_init`).

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> params = anyxp.pinn.deeponet_init(be.random.key(0), [50, 64, 32], [2, 64, 32], backend=be)
    >>> anyxp.nn.num_params(params)
    7457
    """
    branch_sizes, trunk_sizes = list(branch_sizes), list(trunk_sizes)
    if branch_sizes and trunk_sizes and branch_sizes[-1] != trunk_sizes[-1]:
        raise ValueError(
            f"the branch ends in {branch_sizes[-1]} outputs and the trunk in "
            f"{trunk_sizes[-1]}: both give the p coefficients of one dot product, so their "
            f"last widths must be equal (e.g. branch_sizes=[..., {trunk_sizes[-1]}])"
        )
    k_branch, k_trunk = _split(key, backend)
    options = {"backend": backend, "device": device, "dtype": dtype}
    branch = mlp_init(k_branch, branch_sizes, **options)
    trunk = mlp_init(k_trunk, trunk_sizes, **options)
    w = branch[0]["w"]
    be = backend_of({"params": branch}, "deeponet_init")
    return {
        "branch": branch,
        "trunk": trunk,
        "bias": be.xp.zeros((), dtype=w.dtype, device=be.device_of(w)),
    }


def deeponet_apply(
    params: Mapping[str, Any],
    u_sensors: Any,
    coords: Any,
    *,
    activation: Activation = "tanh",
) -> Any:
    """Return the DeepONet's output for ``M`` functions at ``N`` points, shape ``(M, N)``.

    ``out[i, j] = branch(u_sensors[i]) · trunk(x_j) + bias``. The trunk's last layer is
    activated too (as in Lu et al. and DeepXDE): its outputs are bounded basis values.

    Parameters
    ----------
    params
        As :func:`deeponet_init` makes them.
    u_sensors
        The input functions at the sensors, shape ``(M, m)``.
    coords
        The points, shape ``(N, d)``: every function at every point (the Cartesian
        product; the trunk runs once on the ``N`` points). Or shape ``(M, N, d)``: function
        ``i`` at its own points ``coords[i]`` (the aligned layout; the trunk runs on
        ``M · N`` points).
    activation
        The activation of both MLPs, as :func:`anyxp.nn.mlp_apply` takes it.

    Returns
    -------
    array
        Shape ``(M, N)``, of the parameters' library, dtype and device.

    Examples
    --------
    >>> import anyxp
    >>> be = anyxp.backend("numpy")
    >>> params = anyxp.pinn.deeponet_init(be.random.key(0), [5, 16, 8], [2, 16, 8], backend=be)
    >>> v, x = be.xp.ones((3, 5)), be.xp.zeros((100, 2))
    >>> anyxp.pinn.deeponet_apply(params, v, x).shape
    (3, 100)
    """
    branch, trunk, bias = _check_params(params)
    be = backend_of({"params": params, "u_sensors": u_sensors, "coords": coords}, "deeponet_apply")
    xp = be.xp
    shape_v, shape_x = tuple(getattr(u_sensors, "shape", ())), tuple(getattr(coords, "shape", ()))
    if len(shape_v) != 2:
        raise ValueError(
            f"u_sensors must have shape (M, m), one row of sensor values per function; got "
            f"shape {shape_v}"
            + (" (one function: u_sensors[None, :])" if len(shape_v) == 1 else "")
        )
    if len(shape_x) not in (2, 3) or (len(shape_x) == 3 and shape_x[0] != shape_v[0]):
        raise ValueError(
            f"coords must have shape (N, d), every function at the same points, or "
            f"(M, N, d) = ({shape_v[0]}, N, d), each function at its own; got shape {shape_x}"
        )
    b = mlp_apply(branch, u_sensors, activation=activation)
    t = mlp_apply(trunk, coords, activation=activation, final_activation=activation)
    if len(shape_x) == 2:
        return b @ xp.matrix_transpose(t) + bias
    return xp.matmul(t, b[:, :, None])[..., 0] + bias


def _split(key: Any, backend: str | Backend | None) -> tuple[Any, Any]:
    import anyxp
    from anyxp.selection import name_of

    be = backend if isinstance(backend, Backend) else anyxp.backend(backend or name_of(key))
    k_branch, k_trunk = be.random.split(key)
    return k_branch, k_trunk


def _check_params(params: Any) -> tuple[Any, Any, Any]:
    if not isinstance(params, Mapping) or not {"branch", "trunk", "bias"} <= set(params):
        raise TypeError(
            f"params must be a dict with keys 'branch', 'trunk' and 'bias', got "
            f"{type(params).__name__}: {_MAKE}"
        )
    branch, trunk = params["branch"], params["trunk"]
    try:
        p_branch, p_trunk = int(branch[-1]["w"].shape[1]), int(trunk[-1]["w"].shape[1])
    except (TypeError, KeyError, IndexError, AttributeError):
        raise TypeError(f"params['branch'] and params['trunk'] must be MLPs: {_MAKE}") from None
    if p_branch != p_trunk:
        raise ValueError(
            f"the branch gives {p_branch} coefficients but the trunk {p_trunk} basis values: "
            f"their last layers must have the same width; {_MAKE}"
        )
    return branch, trunk, params["bias"]
