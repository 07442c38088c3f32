"""anyxp.nn: the MLP against a numpy forward pass, Glorot init, gradients, Adam, training."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyxp
from anyxp import nn
from anyxp.control_flow import tree_map

# Asking jax for float64 turns on its x64 mode and says so; these tests ask on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*jax_enable_x64")

ALL = ["numpy", "torch", "jax", "array_api_strict"]
AD = ["torch", "jax"]


def make(name: str, dtype: str = "float64") -> anyxp.Backend:
    pytest.importorskip(name)
    return anyxp.backend(name, dtype=dtype)


def to_numpy(tree):
    return tree_map(lambda a: np.asarray(anyxp.backend(like=a).to_numpy(a)), tree)


def assert_trees_close(actual, desired, **tolerances):
    assert tree_map(lambda _: 0, actual) == tree_map(lambda _: 0, desired)  # same structure
    tree_map(lambda a, d: np.testing.assert_allclose(a, d, **tolerances), actual, desired)


def random_params(sizes, seed=0):
    """Numpy parameters with non-zero biases, so that a forgotten bias shows."""
    rng = np.random.default_rng(seed)
    return [
        {"w": rng.standard_normal((m, n)) / math.sqrt(m), "b": 0.3 * rng.standard_normal(n)}
        for m, n in itertools.pairwise(sizes)
    ]


# -- the forward pass, against numpy by hand ------------------------------------------------
NUMPY_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "sin": np.sin,
    None: lambda x: x,
}


def numpy_forward(params, x, activation, final=None):
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        h = NUMPY_ACTIVATIONS[final if i == len(params) - 1 else activation](h)
    return h


def test_every_activation_is_tested():
    assert set(nn.ACTIVATIONS) | {None} == set(NUMPY_ACTIVATIONS)


@pytest.mark.parametrize("activation", [*nn.ACTIVATIONS, None])
@pytest.mark.parametrize("name", ALL)
def test_forward_pass_matches_numpy_by_hand(name, activation):
    be = make(name)
    ref = random_params([3, 7, 5, 2])
    x = np.random.default_rng(1).uniform(-2, 2, (4, 6, 3))
    out = nn.mlp_apply(tree_map(be.asarray, ref), be.asarray(x), activation=activation)
    assert anyxp.backend(like=out).name == name and tuple(out.shape) == (4, 6, 2)
    np.testing.assert_allclose(
        be.to_numpy(out), numpy_forward(ref, x, activation), rtol=1e-12, atol=1e-14
    )


@pytest.mark.parametrize("name", ALL)
def test_final_activation_and_callables(name):
    be = make(name)
    ref = random_params([2, 5, 3])
    x = np.random.default_rng(2).uniform(-2, 2, (7, 2))
    params, xb = tree_map(be.asarray, ref), be.asarray(x)
    out = nn.mlp_apply(params, xb, activation="relu", final_activation="sigmoid")
    np.testing.assert_allclose(be.to_numpy(out), numpy_forward(ref, x, "relu", "sigmoid"))
    square = nn.mlp_apply(params, xb, activation=lambda h: h * h)
    h = (x @ ref[0]["w"] + ref[0]["b"]) ** 2
    np.testing.assert_allclose(be.to_numpy(square), h @ ref[1]["w"] + ref[1]["b"], rtol=1e-12)
    single = nn.mlp_apply(params, xb[0, ...])  # no batch axis: (n_in,) -> (n_out,)
    np.testing.assert_allclose(be.to_numpy(single), numpy_forward(ref, x[0], "tanh"), rtol=1e-12)


def _activation_alone(be, x, name):
    """The activation applied to x, through a one-layer network with w = I and b = 0."""
    eye = be.asarray(np.eye(x.shape[-1]))
    layer = {"w": eye, "b": be.xp.zeros((x.shape[-1],), dtype=be.float_dtype)}
    return nn.mlp_apply([layer], x, final_activation=name)


@pytest.mark.parametrize("name", AD)
def test_activations_are_the_libraries_own_and_do_not_overflow(name):
    """gelu is the tanh approximation torch and jax name; softplus and sigmoid stay finite."""
    be = make(name)
    x = be.asarray(np.array([[-800.0, -30.0, -1.5, 0.0, 0.7, 30.0, 800.0]]))
    if name == "torch":
        import torch.nn.functional as F

        native = {
            "gelu": lambda x: F.gelu(x, approximate="tanh"),
            "softplus": F.softplus,
            "sigmoid": F.sigmoid,
        }
    else:
        import jax

        native = {"gelu": jax.nn.gelu, "softplus": jax.nn.softplus, "sigmoid": jax.nn.sigmoid}
    for act, fn in native.items():
        np.testing.assert_allclose(
            be.to_numpy(_activation_alone(be, x, act)), be.to_numpy(fn(x)), rtol=1e-12, atol=0
        )
        grad = be.ad.grad(lambda z, act=act: be.xp.sum(_activation_alone(be, z, act)))(x)
        assert np.all(np.isfinite(be.to_numpy(grad))), act


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
    batch=st.tuples(st.integers(1, 4), st.integers(1, 3)),
    activation=st.sampled_from(nn.ACTIVATIONS),
    seed=st.integers(0, 2**16),
)
def test_a_batch_is_the_stack_of_its_single_applications(sizes, batch, activation, seed):
    be = anyxp.backend("numpy")
    params = nn.mlp_init(be.random.key(seed), sizes, backend=be)
    x = np.random.default_rng(seed).normal(size=(*batch, sizes[0]))
    together = nn.mlp_apply(params, x, activation=activation)
    apart = np.stack(
        [nn.mlp_apply(params, xi, activation=activation) for xi in x.reshape(-1, sizes[0])]
    )
    assert together.shape == (*batch, sizes[-1])
    np.testing.assert_allclose(together.reshape(apart.shape), apart, rtol=1e-12, atol=1e-14)


# -- initialisation ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_init_is_glorot_uniform(name):
    from scipy import stats

    be = make(name)
    n_in, n_out = 300, 500
    layer = to_numpy(nn.mlp_init(be.random.key(1), [n_in, n_out], backend=be))[0]
    w, n = layer["w"].ravel(), n_in * n_out
    limit, variance = math.sqrt(6 / (n_in + n_out)), 2 / (n_in + n_out)
    assert np.all(np.abs(w) <= limit) and np.abs(w).max() > 0.999 * limit
    # Sampling errors of a uniform's mean and variance (Var X² = 4a⁴/45 for U(-a, a)).
    assert abs(w.mean()) < 5 * math.sqrt(variance / n)
    assert abs(w.var() - variance) < 5 * variance * math.sqrt(4 / 5) / math.sqrt(n)
    assert stats.kstest(w, "uniform", args=(-limit, 2 * limit)).pvalue > 1e-4
    assert np.all(layer["b"] == 0)


@pytest.mark.parametrize("name", ALL)
def test_init_is_reproducible_from_its_key(name):
    be = make(name)
    sizes = [4, 4, 4]
    first = to_numpy(nn.mlp_init(be.random.key(7), sizes, backend=be))
    assert_trees_close(to_numpy(nn.mlp_init(be.random.key(7), sizes, backend=be)), first, rtol=0)
    other = to_numpy(nn.mlp_init(be.random.key(8), sizes, backend=be))
    assert not np.any(other[0]["w"] == first[0]["w"])
    assert not np.any(first[0]["w"] == first[1]["w"])  # each layer draws from its own key


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ALL)
def test_parameters_and_outputs_keep_the_backend_dtype_and_device(name, dtype):
    be = make(name, dtype)
    for params in (
        nn.mlp_init(be.random.key(0), [3, 5, 2], backend=be),
        nn.mlp_init(be.random.key(0), [3, 5, 2], backend=name, dtype=dtype),
        nn.mlp_init(be.random.key(0), [3, 5, 2], backend=make(name), dtype=dtype),
    ):
        out = nn.mlp_apply(params, be.xp.ones((4, 3), dtype=be.float_dtype, device=be.device))
        for a in (*(leaf for layer in params for leaf in layer.values()), out):
            assert anyxp.backend(like=a).name == name
            assert a.dtype == be.float_dtype and be.device_of(a) == be.device
        state = nn.adam().init(params)
        new, _ = nn.adam().update(params, state, params)
        assert all(layer["w"].dtype == be.float_dtype for layer in new)
        assert be.device_of(state.step) == be.device


def test_the_backend_follows_the_key_or_the_default():
    jax_be = make("jax", "float32")
    params = nn.mlp_init(jax_be.random.key(0), [2, 3])
    assert anyxp.backend(like=params).name == "jax"
    torch = pytest.importorskip("torch")
    with anyxp.use("torch"):
        params = nn.mlp_init(anyxp.backend("numpy").random.key(0), [2, 3])
    assert isinstance(params[0]["w"], torch.Tensor)


# -- gradients ----------------------------------------------------------------------------------
def mse(be, x, y):
    def loss(params):
        r = nn.mlp_apply(params, x) - y
        return be.xp.mean(r * r)

    return loss


def test_gradients_agree_between_torch_and_jax_and_with_finite_differences():
    rng = np.random.default_rng(3)
    ref = random_params([2, 8, 8, 1], seed=3)
    x = rng.uniform(-1, 1, (16, 2))
    y = np.sin(x.sum(axis=1, keepdims=True))
    grads = {}
    for name in AD:
        be = make(name)
        loss = mse(be, be.asarray(x), be.asarray(y))
        params = tree_map(be.asarray, ref)
        grads[name] = to_numpy(be.ad.grad(loss)(params))
        value, same = be.ad.value_and_grad(loss)(params)
        assert_trees_close(to_numpy(same), grads[name], rtol=1e-14)
        np.testing.assert_allclose(float(value), np.mean((numpy_forward(ref, x, "tanh") - y) ** 2))
    assert_trees_close(grads["torch"], grads["jax"], rtol=1e-10, atol=1e-14)

    numpy_loss = mse(anyxp.backend("numpy"), x, y)

    def shifted(delta):
        params = tree_map(np.copy, ref)
        params[1]["w"][2, 3] += delta
        return numpy_loss(params)

    h = 1e-6
    central = (shifted(h) - shifted(-h)) / (2 * h)
    assert abs(grads["jax"][1]["w"][2, 3]) > 1e-3  # a parameter that matters
    np.testing.assert_allclose(grads["jax"][1]["w"][2, 3], central, rtol=1e-6)


# torch's forward-mode AD (inside torch.func.hessian) loads decompositions through the
# deprecated torch.jit.script, once per process: torch's own warning, nothing of ours.
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_derivatives_with_respect_to_the_input_agree():
    """What a PINN asks of the network: u(x) and its first and second derivatives in x."""
    ref = random_params([1, 16, 16, 1], seed=5)
    found = {}
    for name in AD:
        be = make(name)
        params = tree_map(be.asarray, ref)

        def u(x, be=be, params=params):
            return nn.mlp_apply(params, x)[0]

        x0 = be.asarray([0.3])
        found[name] = (
            float(be.ad.grad(u)(x0)[0]),
            float(be.ad.hessian(u)(x0)[0, 0]),
        )
    np.testing.assert_allclose(found["torch"], found["jax"], rtol=1e-10)
    h = 1e-4
    f = [float(numpy_forward(ref, np.array([0.3 + k * h]), "tanh")[0]) for k in (-1, 0, 1)]
    np.testing.assert_allclose(found["jax"][0], (f[2] - f[0]) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(found["jax"][1], (f[2] - 2 * f[1] + f[0]) / h**2, rtol=1e-4)


def test_jax_jit_vmap_and_ensembles_of_networks():
    jax = pytest.importorskip("jax")
    be = make("jax")
    key_a, key_b, key_x = be.random.split(be.random.key(0), 3)
    params = nn.mlp_init(key_a, [3, 16, 2], backend=be)
    x = be.random.normal(key_x, (10, 3))
    eager = be.to_numpy(nn.mlp_apply(params, x))
    np.testing.assert_allclose(be.to_numpy(jax.jit(nn.mlp_apply)(params, x)), eager, rtol=1e-12)
    per_row = jax.vmap(lambda xi: nn.mlp_apply(params, xi))(x)
    np.testing.assert_allclose(be.to_numpy(per_row), eager, rtol=1e-12)
    # vmap over the parameters: an ensemble of two networks in one call.
    other = nn.mlp_init(key_b, [3, 16, 2], backend=be)
    stacked = jax.vmap(lambda k: nn.mlp_init(k, [3, 16, 2]))(be.xp.stack([key_a, key_b]))
    assert_trees_close(to_numpy(stacked)[0]["w"][1], to_numpy(other)[0]["w"], rtol=0)
    both = jax.vmap(nn.mlp_apply, in_axes=(0, None))(stacked, x)
    np.testing.assert_allclose(be.to_numpy(both[1]), be.to_numpy(nn.mlp_apply(other, x)))
    loss = mse(be, x, be.xp.zeros((10, 2)))
    assert_trees_close(
        to_numpy(jax.jit(jax.grad(loss))(params)), to_numpy(jax.grad(loss)(params)), rtol=1e-12
    )


# -- optimizers --------------------------------------------------------------------------------
CURVATURE = np.array([0.5, 1.0, 2.0, 4.0, 0.25, 3.0, 1.5])
CENTRE = np.linspace(-1.0, 1.0, 7)
START = np.array([0.3, -0.8, 1.2, 0.0, 2.0, -0.4, 0.9])


def quadratic_tree(numbers):
    """A pytree of the seven numbers: a dict of a vector and a list of one matrix."""
    xp = anyxp.backend(like=numbers).xp
    return {"x": numbers[:3], "y": [xp.reshape(numbers[3:7], (2, 2))]}


def flat(tree):
    return np.concatenate([np.ravel(tree["x"]), np.ravel(tree["y"][0])])


def numpy_adam(steps, lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
    """Kingma & Ba's Algorithm 1, with AdamW's decoupled decay, as a reference."""
    p = START.copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t in range(1, steps + 1):
        g = CURVATURE * (p - CENTRE)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        rate = lr(t - 1) if callable(lr) else lr
        p = p - rate * ((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) + weight_decay * p)
    return p


def run(be, opt, steps, update=None):
    curvature, centre = quadratic_tree(be.asarray(CURVATURE)), quadratic_tree(be.asarray(CENTRE))
    params = quadratic_tree(be.asarray(START))
    state = opt.init(params)
    for _ in range(steps):
        grads = tree_map(lambda p, a, c: a * (p - c), params, curvature, centre)
        params, state = (update or opt.update)(grads, state, params)
    return flat(to_numpy(params)), state


ADAM_CASES = {
    "adam": {"lr": 0.1},
    "adamw": {"lr": 0.1, "weight_decay": 0.05},
    "schedule": {"lr": lambda step: 0.1 * 0.5 ** (step / 2), "b1": 0.8, "b2": 0.99},
}


@pytest.mark.parametrize("case", sorted(ADAM_CASES))
@pytest.mark.parametrize("name", ALL)
def test_adam_matches_a_numpy_reference(name, case):
    kwargs = ADAM_CASES[case]
    params, state = run(make(name), nn.adam(**kwargs), 5)
    np.testing.assert_allclose(params, numpy_adam(5, **kwargs), rtol=1e-12, atol=1e-12)
    assert int(state.step) == 5
    assert not np.allclose(params, START, atol=1e-3)  # it moved


@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_matches_torch_optim(weight_decay):
    torch = pytest.importorskip("torch")
    p = torch.tensor(START, requires_grad=True)
    kind = torch.optim.AdamW if weight_decay else torch.optim.Adam
    opt = kind([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    for _ in range(5):
        p.grad = torch.tensor(CURVATURE) * (p.detach() - torch.tensor(CENTRE))
        opt.step()
    ours, _ = run(make("torch"), nn.adam(lr=0.1, weight_decay=weight_decay), 5)
    np.testing.assert_allclose(ours, p.detach().numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_matches_torch_optim(momentum):
    torch = pytest.importorskip("torch")
    p = torch.tensor(START, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=momentum)
    for _ in range(5):
        p.grad = torch.tensor(CURVATURE) * (p.detach() - torch.tensor(CENTRE))
        opt.step()
    for name in ("numpy", "array_api_strict"):
        ours, state = run(make(name), nn.sgd(lr=0.1, momentum=momentum), 5)
        np.testing.assert_allclose(ours, p.detach().numpy(), rtol=1e-12, atol=1e-12)
        assert (state.velocity is None) == (momentum == 0)


def test_adam_under_jax_jit_equals_eager():
    jax = pytest.importorskip("jax")
    be = make("jax")
    opt = nn.adam(**ADAM_CASES["schedule"], weight_decay=0.01)
    traces = []

    def update(grads, state, params):
        traces.append(1)
        return opt.update(grads, state, params)

    eager, _ = run(be, opt, 5)
    jitted, state = run(be, opt, 5, update=jax.jit(update))
    np.testing.assert_allclose(jitted, eager, rtol=1e-12, atol=1e-14)
    assert len(traces) == 1  # the step count is an array: one program for every step
    assert isinstance(state.step, jax.Array) and int(state.step) == 5


# -- the same training script on torch and jax ---------------------------------------------
STEPS, TARGET = 1000, 1e-4


def fit_sine(name):
    """Fit y = sin(x) on [-π, π] with a [1, 32, 32, 1] tanh MLP; only `name` changes."""
    be = anyxp.backend(name, dtype="float64")
    xp = be.xp
    x = xp.reshape(
        xp.linspace(-math.pi, math.pi, 64, dtype=be.float_dtype, device=be.device), (-1, 1)
    )
    y = xp.sin(x)
    params = nn.mlp_init(be.random.key(0), [1, 32, 32, 1], backend=be)
    opt = nn.adam(lr=3e-3)
    state = opt.init(params)

    def loss(p):
        r = nn.mlp_apply(p, x) - y
        return xp.mean(r * r)

    @be.jit
    def step(p, s):
        value, grads = be.ad.value_and_grad(loss)(p)
        p, s = opt.update(grads, s, p)
        return p, s, value

    first = float(loss(params))
    for _ in range(STEPS):
        params, state, _ = step(params, state)
    return first, float(loss(params))


@pytest.mark.parametrize("name", AD)
def test_adam_fits_a_sine_with_the_same_script_on_each_backend(name):
    pytest.importorskip(name)
    first, last = fit_sine(name)
    assert first > 0.05
    assert last < TARGET, f"{name}: loss {last:.2e} after {STEPS} steps"


# -- bad input ------------------------------------------------------------------------------
NUMPY = anyxp.backend("numpy")
KEY = NUMPY.random.key(0)


@pytest.mark.parametrize("sizes", [[3], [], [3, 0], [3, 2.5], [3, True], "32"])
def test_bad_sizes_say_what_sizes_are(sizes):
    with pytest.raises((ValueError, TypeError), match=r"\[1, 32, 32, 1\]"):
        nn.mlp_init(KEY, sizes)


def test_mismatched_layers_name_the_layer():
    params = random_params([3, 4, 2])
    params[1]["w"] = np.ones((5, 2))
    with pytest.raises(ValueError, match=r"layer 1 takes 5 inputs .* layer 0 gives 4 outputs"):
        nn.mlp_apply(params, np.ones((1, 3)))
    params = random_params([3, 4])
    params[0]["b"] = np.ones(3)
    with pytest.raises(ValueError, match=r"b of shape \(3,\).*mlp_init"):
        nn.mlp_apply(params, np.ones((1, 3)))
    with pytest.raises(TypeError, match="one per layer"):
        nn.mlp_apply({"w": np.ones((3, 4))}, np.ones(3))
    with pytest.raises(TypeError, match=r"not arrays: make them arrays with be\.asarray"):
        nn.mlp_apply([{"w": [[1.0]], "b": [0.0]}], np.ones(1))
    with pytest.raises(TypeError, match="keys 'w' and 'b'"):
        nn.mlp_apply([{"weight": np.ones((3, 4))}], np.ones(3))


def test_inputs_of_the_wrong_width_or_dtype():
    params = random_params([1, 4, 1])
    with pytest.raises(ValueError, match=r"shape \(10,\).*pass x\[\.\.\., None\]"):
        nn.mlp_apply(params, np.ones(10))
    with pytest.raises(TypeError, match=r"float32.*astype"):
        nn.mlp_apply(params, np.ones((10, 1), dtype=np.float32))
    out = nn.mlp_apply(params, [[0.5], [1.0]])  # Python data is read at the params' dtype
    assert out.shape == (2, 1) and out.dtype == np.float64


def test_unknown_activation_suggests_the_close_one():
    params = random_params([2, 3])
    with pytest.raises(ValueError, match=r"'tanhh'.*Did you mean 'tanh'.*relu"):
        nn.mlp_apply(params, np.ones(2), activation="tanhh")
    with pytest.raises(ValueError, match="final_activation 'softmax'"):
        nn.mlp_apply(params, np.ones(2), final_activation="softmax")


def test_arrays_of_two_libraries_say_how_to_move_them():
    be = make("torch")
    params = random_params([2, 3, 1])
    mixed = [tree_map(be.asarray, params[0]), params[1]]
    with pytest.raises(anyxp.MixedBackendsError, match=r"params: numpy, torch.*tree_map"):
        nn.mlp_apply(mixed, np.ones(2))
    with pytest.raises(anyxp.MixedBackendsError, match=r"params: numpy; x: torch"):
        nn.mlp_apply(params, be.asarray([1.0, 2.0]))
    opt = nn.adam()
    with pytest.raises(anyxp.MixedBackendsError, match=r"adam.update.*grads: torch"):
        opt.update(tree_map(be.asarray, params), opt.init(params), params)


def test_a_key_of_another_backend():
    jax_be = make("jax", "float32")
    with pytest.raises(TypeError, match=r"anyxp.backend\('jax'\).random.key\(seed\)"):
        nn.mlp_init(KEY, [2, 3], backend=jax_be)
    with pytest.raises(TypeError, match=r"be.random.key\(seed\)"):
        nn.mlp_init(jax_be.random.key(0), [2, 3], backend="numpy")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"lr": math.inf}, "lr must be a finite number > 0"),
        ({"lr": "fast"}, "schedule"),
        ({"b1": 1.0}, r"b1 must be in \[0, 1\)"),
        ({"b2": -0.1}, "b2"),
        ({"eps": -1.0}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nn.adam(**kwargs)


def test_gradients_or_state_that_do_not_fit_the_parameters():
    params = random_params([2, 3, 1])
    opt = nn.adam()
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"grads do not have the structure.*be.ad.grad"):
        opt.update(params[:1], state, params)
    with pytest.raises(TypeError, match=r"not an AdamState.*init"):
        opt.update(params, nn.sgd().init(params), params)
    with pytest.raises(ValueError, match="the state's moments"):
        opt.update(params[:1], opt.init(params[:1]), params[:1] + params[:1])


def test_numpy_has_no_gradients_and_says_where_they_are():
    loss = mse(NUMPY, np.ones((2, 2)), np.ones((2, 1)))
    with pytest.raises(anyxp.UnsupportedError, match=r"jax.*torch"):
        NUMPY.ad.grad(loss)(random_params([2, 1]))


def test_importing_nn_imports_no_backend_library():
    code = "import sys, anyxp.nn; print(sorted({'torch', 'jax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["anyxp.nn._mlp", "anyxp.nn._optim"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
