"""``solve(..., compile=True)``: each explicit step one compiled call (``jit.fuse``)."""

from __future__ import annotations

import numpy as np
import pytest

import anyxp
from anyxp.ode import solve

torch_only = pytest.mark.anyxp_requires("torch")


def oscillator(t, y, k):
    xp = anyxp.backend(like=y).xp  # the documented pattern: traced through by the compiler
    return xp.stack([y[1], -k * y[0] + 0.1 * t * xp.cos(y[0])])


def spring_grid(t, y):
    return -y * (1.0 + 0.1 * t)  # a (2, 3) state: reshaped around the compiled step


@torch_only
def test_a_compiled_solve_takes_the_eager_steps_to_the_eager_answer():
    import torch

    be = anyxp.backend("torch", dtype="float64")
    y0, k = be.asarray([1.0, 0.0]), torch.tensor(2.0, dtype=torch.float64)
    t_eval = np.linspace(0.0, 5.0, 11)
    opts = {"args": (k,), "rtol": 1e-9, "atol": 1e-12, "t_eval": t_eval, "dense_output": True}
    plain = solve(oscillator, (0.0, 5.0), y0, **opts)
    fused = solve(oscillator, (0.0, 5.0), y0, compile=True, **opts)
    assert fused.success and fused.stats == plain.stats
    np.testing.assert_allclose(be.to_numpy(fused.y), be.to_numpy(plain.y), rtol=1e-12, atol=1e-14)
    between = np.array([0.37, 2.2, 4.9])
    np.testing.assert_allclose(
        be.to_numpy(fused(between)), be.to_numpy(plain(between)), rtol=1e-12, atol=1e-14
    )
    # A new k (args are inputs of the compiled step, not constants in it): a new answer.
    other = solve(oscillator, (0.0, 5.0), y0, compile=True, **{**opts, "args": (2 * k,)})
    again = solve(oscillator, (0.0, 5.0), y0, **{**opts, "args": (2 * k,)})
    np.testing.assert_allclose(be.to_numpy(other.y), be.to_numpy(again.y), rtol=1e-12, atol=1e-14)


@torch_only
def test_dop853_compiled_on_a_shaped_state_interpolates_as_eager():
    be = anyxp.backend("torch", dtype="float64")
    y0 = be.asarray([[1.0, 2.0, 3.0], [0.5, -1.0, 0.25]])
    t_eval = np.linspace(0.0, 2.0, 7)
    opts = {"method": "dop853", "rtol": 1e-10, "atol": 1e-12, "t_eval": t_eval}
    plain = solve(spring_grid, (0.0, 2.0), y0, **opts)
    fused = solve(spring_grid, (0.0, 2.0), y0, compile=True, **opts)
    assert fused.y.shape == (7, 2, 3) and fused.stats == plain.stats
    np.testing.assert_allclose(be.to_numpy(fused.y), be.to_numpy(plain.y), rtol=1e-12, atol=1e-14)


@torch_only
def test_gradients_through_a_compiled_forward_solve_are_the_eager_ones():
    import torch

    be = anyxp.backend("torch", dtype="float64")
    k = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    y0 = be.asarray([1.0, 0.0])
    y0.requires_grad_(True)
    grads = {}
    for compile in (False, True):
        sol = solve(oscillator, (0.0, 3.0), y0, args=(k,), rtol=1e-10, atol=1e-12, compile=compile)
        grads[compile] = [g.detach().numpy() for g in torch.autograd.grad(sol.y[-1, 0], (y0, k))]
    for a, b in zip(grads[True], grads[False], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_compile_on_a_backend_without_fused_steps_names_the_ones_with_them():
    with pytest.raises(anyxp.UnsupportedError, match=r"jit\.fuse.*torch"):
        solve(lambda t, y: -y, (0.0, 1.0), np.array([1.0]), compile=True)


@torch_only
def test_compile_with_a_stiff_method_says_what_to_do():
    be = anyxp.backend("torch", dtype="float64")
    with pytest.raises(ValueError, match=r"explicit methods.*rodas5p.*without compile"):
        solve(lambda t, y: -y, (0.0, 1.0), be.asarray([1.0]), method="rodas5p", compile=True)


@pytest.mark.anyxp_requires("jax")
def test_compile_on_jax_is_the_compiled_solve_it_already_is():
    be = anyxp.backend("jax", dtype="float64")
    sol = solve(lambda t, y: -y, (0.0, 1.0), be.asarray([1.0]), rtol=1e-10, compile=True)
    assert abs(float(sol.y[-1, 0]) - np.exp(-1.0)) < 1e-8


@torch_only
def test_each_fused_function_compiles_on_its_own_budget():
    # TorchDynamo keeps at most recompile_limit variants per code object, then runs
    # eagerly: closures of one step function (one per f) must not share that budget.
    import torch
    from torch._dynamo.utils import counters

    be = anyxp.backend("torch", dtype="float64")

    def make(c):
        def step(x):
            return torch.sin(x) * c + x

        return step

    before = counters["stats"]["unique_graphs"]
    x = be.asarray([0.1, 0.2])
    with torch._dynamo.config.patch(recompile_limit=1):  # torch's own patch: restored after
        for c in (2.0, 3.0):
            got = be.to_numpy(be.jit(make(c), fuse=True)(x))
            np.testing.assert_allclose(got, np.sin([0.1, 0.2]) * c + [0.1, 0.2])
    assert counters["stats"]["unique_graphs"] - before == 2  # both compiled


@torch_only
def test_a_compiled_ensemble_takes_each_trajectory_s_eager_steps():
    import torch

    from anyxp.ode import solve_ensemble

    def rows(t, y, k):
        return torch.stack([y[:, 1], -k * y[:, 0] + 0.1 * t * torch.cos(y[:, 0])], dim=1)

    be = anyxp.backend("torch", dtype="float64")
    y0, k = be.asarray([[1.0, 0.0], [0.5, 0.5], [2.0, -1.0]]), be.asarray([1.0, 4.0, 9.0])
    opts = {"params": k, "rtol": 1e-9, "atol": 1e-12, "t_eval": np.linspace(0.0, 3.0, 7)}
    plain = solve_ensemble(rows, (0.0, 3.0), y0, **opts)
    fused = solve_ensemble(rows, (0.0, 3.0), y0, compile=True, **opts)
    assert fused.success
    assert torch.equal(fused.stats["accepted"], plain.stats["accepted"])
    assert len(set(be.to_numpy(plain.stats["accepted"]).tolist())) > 1  # own step sizes
    np.testing.assert_allclose(be.to_numpy(fused.y), be.to_numpy(plain.y), rtol=1e-12, atol=1e-14)
