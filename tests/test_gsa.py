"""anyxp.gsa.sobol: known indices, one answer on every backend, rank and cluster, SALib's numbers."""

from __future__ import annotations

import doctest
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mpi import REPORT, launch, needs_mpi, per_rank

import anyxp
from anyxp.gsa import saltelli_sample, sobol
from anyxp.gsa._design import Design
from anyxp.gsa._evaluate import rank_rows
from anyxp.gsa._points import MAX_DIMS, scrambled, sobol_integers
from anyxp.ode import solve_ensemble
from anyxp.random import Key
from conftest import float64_backend

PI = math.pi
ISHIGAMI_BOUNDS = [(-PI, PI)] * 3


def ishigami(x, a=7.0, b=0.1):
    xp = anyxp.backend(like=x).xp
    s1 = xp.sin(x[:, 0])
    return s1 + a * xp.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * s1


def _ishigami_exact(a=7.0, b=0.1):
    """Ishigami and Homma's indices: S1, ST and S13 (the only interaction)."""
    v = a**2 / 8 + b * PI**4 / 5 + b**2 * PI**8 / 18 + 0.5
    v1, v2, v13 = 0.5 * (1 + b * PI**4 / 5) ** 2, a**2 / 8, b**2 * PI**8 * (1 / 18 - 1 / 50)
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v, v13 / v


S1_EXACT, ST_EXACT, S13_EXACT = _ishigami_exact()


def test_the_exact_ishigami_indices_are_the_published_ones():
    np.testing.assert_allclose(S1_EXACT, [0.3139, 0.4424, 0.0], atol=1e-4)
    np.testing.assert_allclose(ST_EXACT, [0.5576, 0.4424, 0.2437], atol=1e-4)


# -- the indices ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def ishigami_numpy():
    return sobol(ishigami, ISHIGAMI_BOUNDS, 2**14)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "array_api_strict"])
def test_ishigami_indices_match_the_analytic_ones_on_every_backend(name, ishigami_numpy):
    be = float64_backend(name)  # float32 is test_float32_stays_float32's
    res = sobol(ishigami, ISHIGAMI_BOUNDS, 2**14, backend=be)
    assert res.backend is be
    for field in ("S1", "ST", "S1_conf", "ST_conf", "outputs"):
        value = getattr(res, field)
        assert anyxp.backend(like=value).name == name, field
        assert value.dtype == be.float_dtype, field
    s1, st = be.to_numpy(res.S1), be.to_numpy(res.ST)
    np.testing.assert_allclose(s1, S1_EXACT, atol=0.02)
    np.testing.assert_allclose(st, ST_EXACT, atol=0.02)
    assert np.all(s1 <= st + 0.01)
    assert (res.n, res.evaluations) == (2**14, 2**14 * 5)
    assert res.S2 is None and res.S2_conf is None
    # One seed, one design: every backend gives numpy's numbers, to rounding.
    np.testing.assert_allclose(s1, ishigami_numpy.S1, atol=1e-12)
    np.testing.assert_allclose(be.to_numpy(res.ST_conf), ishigami_numpy.ST_conf, atol=1e-12)


def test_second_order_indices_find_ishigamis_one_interaction():
    res = sobol(ishigami, ISHIGAMI_BOUNDS, 2**14, second_order=True, seed=1)
    assert res.S2.shape == res.S2_conf.shape == (3, 3)
    assert res.evaluations == 2**14 * 8
    assert abs(res.S2[0, 2] - S13_EXACT) < 0.02
    assert abs(res.S2[0, 1]) < 0.02 and abs(res.S2[1, 2]) < 0.02
    assert np.all(np.isnan(res.S2[np.tril_indices(3)]))  # only j < l holds a pair
    np.testing.assert_allclose(res.S1, S1_EXACT, atol=0.02)


def test_second_order_indices_of_sobols_g_function():
    a = np.array([0.0, 1.0, 4.5, 9.0])
    vi = 1 / (3 * (1 + a) ** 2)
    v = np.prod(1 + vi) - 1
    s2_exact = np.outer(vi, vi) / v

    def g(x):
        be = anyxp.backend(like=x)
        coef = be.asarray(a)
        return be.xp.prod((be.xp.abs(4 * x - 2) + coef) / (1 + coef), axis=1)

    res = sobol(g, [(0.0, 1.0)] * 4, 2**12, second_order=True, resamples=0)
    np.testing.assert_allclose(res.S1, vi / v, atol=0.01)
    np.testing.assert_allclose(res.ST, vi * np.prod(1 + vi) / (1 + vi) / v, atol=0.01)
    upper = np.triu_indices(4, 1)
    np.testing.assert_allclose(res.S2[upper], s2_exact[upper], atol=0.01)
    assert res.S1_conf is None and res.S2_conf is None


def _variance_linear(lo, hi):
    return (hi - lo) ** 2 / 12


def _variance_square(lo, hi):
    w = hi - lo
    return (hi**5 - lo**5) / (5 * w) - ((hi**3 - lo**3) / (3 * w)) ** 2


def _variance_sine(lo, hi):  # of sin(3x)
    w = hi - lo
    mean = (math.cos(3 * lo) - math.cos(3 * hi)) / (3 * w)
    return 0.5 - (math.sin(6 * hi) - math.sin(6 * lo)) / (12 * w) - mean**2


def _variance_exp(lo, hi):
    w = hi - lo
    return (math.exp(2 * hi) - math.exp(2 * lo)) / (2 * w) - (
        (math.exp(hi) - math.exp(lo)) / w
    ) ** 2


# Each form g(x) and the variance of g(x) for x uniform on (lo, hi), by calculus.
FORMS = {
    "linear": (lambda xp, x: x, _variance_linear),
    "square": (lambda xp, x: x * x, _variance_square),
    "sine": (lambda xp, x: xp.sin(3 * x), _variance_sine),
    "exp": (lambda xp, x: xp.exp(x), _variance_exp),
}
term = st.tuples(
    st.sampled_from(sorted(FORMS)),
    st.floats(0.2, 3.0) | st.floats(-3.0, -0.2),
    st.floats(-2.0, 1.0),
    st.floats(0.1, 2.0),
)


def test_the_analytic_variances_are_those_of_samples():
    x = np.random.default_rng(0).uniform(-0.5, 1.5, 10**6)
    for form, variance in FORMS.values():
        np.testing.assert_allclose(np.var(form(np, x)), variance(-0.5, 1.5), rtol=0.01)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    terms=st.lists(term, min_size=1, max_size=5),
    coupled=st.just(0.0) | st.floats(0.1, 0.6),
    seed=st.integers(0, 2**16),
)
def test_first_order_indices_are_the_analytic_variance_shares(terms, coupled, seed):
    """f = sum_j c_j g_j(x_j) + gamma (x_0 - m_0)(x_1 - m_1), with m_j a mean.

    The centred product is uncorrelated with every term, so Var f is the sum of the terms'
    variances, c_j**2 Var g_j, and of the product's, gamma**2 Var x_0 Var x_1; gamma makes
    the product's share ``coupled``. Each S1_j is its term's share, ST_j adds the product's
    for j = 0, 1, and the S1 sum to 1 - coupled: to exactly 1 for an additive model.
    """
    bounds = [(low, low + width) for _, _, low, width in terms]
    mid = [(low + high) / 2 for low, high in bounds]
    coupled = coupled if len(terms) > 1 else 0.0
    parts = np.array(
        [
            c**2 * FORMS[form][1](lo, hi)
            for (form, c, _, _), (lo, hi) in zip(terms, bounds, strict=True)
        ]
    )
    product = coupled / (1 - coupled) * parts.sum()
    gamma = math.sqrt(product / math.prod(_variance_linear(*b) for b in bounds[:2]))

    def model(x):
        xp = anyxp.backend(like=x).xp
        f = sum(c * FORMS[form][0](xp, x[:, j]) for j, (form, c, _, _) in enumerate(terms))
        if coupled:
            f = f + gamma * (x[:, 0] - mid[0]) * (x[:, 1] - mid[1])
        return f

    s1 = parts / (parts.sum() + product)
    s_t = s1 + np.where(np.arange(len(terms)) < 2, coupled, 0.0)
    res = sobol(model, bounds, 2**11, seed=seed)
    # Within each index's 95% interval (conservative for a scrambled design), plus 0.005
    # for an index near 0 or 1, whose bootstrap interval is very narrow.
    assert np.all(np.abs(res.S1 - s1) <= res.S1_conf + 0.005), (res.S1, s1)
    assert np.all(np.abs(res.ST - s_t) <= res.ST_conf + 0.005), (res.ST, s_t)
    # Independent inputs: the first-order indices sum to at most 1 (within the intervals).
    spread = math.sqrt(np.sum(res.S1_conf**2)) + 0.005
    assert float(np.sum(res.S1)) <= 1 + spread
    assert abs(float(np.sum(res.S1)) - (1 - coupled)) <= spread


def test_confidence_intervals_cover_the_analytic_indices_in_most_seeds():
    covered, widths = [], []
    for seed in range(12):
        res = sobol(ishigami, ISHIGAMI_BOUNDS, 2**9, second_order=True, seed=seed)
        covered += [
            *(np.abs(res.S1 - S1_EXACT) <= res.S1_conf),
            *(np.abs(res.ST - ST_EXACT) <= res.ST_conf),
            abs(res.S2[0, 2] - S13_EXACT) <= res.S2_conf[0, 2],
        ]
        widths.append(res.S1_conf)
    assert np.mean(covered) >= 0.9
    assert np.median(widths) < 0.1  # covering, but not by being uselessly wide


def test_a_narrower_confidence_level_gives_narrower_intervals_from_the_same_resamples():
    wide = sobol(ishigami, ISHIGAMI_BOUNDS, 2**9, confidence=0.99)
    narrow = sobol(ishigami, ISHIGAMI_BOUNDS, 2**9, confidence=0.5)
    ratio = narrow.S1_conf / wide.S1_conf
    np.testing.assert_allclose(ratio, 0.6744897501960817 / 2.5758293035489004, rtol=1e-12)


def test_several_outputs_give_one_row_of_indices_each():
    def two(x):
        xp = anyxp.backend(like=x).xp
        return xp.stack([ishigami(x), x[:, 2] + 0.0 * x[:, 0]], axis=1)

    res = sobol(two, ISHIGAMI_BOUNDS, 2**10, second_order=True)
    assert res.S1.shape == res.ST_conf.shape == (2, 3)
    assert res.S2.shape == (2, 3, 3) and res.outputs.shape == (res.evaluations, 2)
    one = sobol(ishigami, ISHIGAMI_BOUNDS, 2**10, second_order=True)
    np.testing.assert_allclose(res.S1[0], one.S1, atol=1e-14)
    np.testing.assert_allclose(res.S2_conf[0], one.S2_conf, atol=1e-14)
    # The second output is x3 alone: exactly nothing from the others, all from x3.
    assert np.all(res.S1[1, :2] == 0) and np.all(res.ST[1, :2] == 0)
    np.testing.assert_allclose([res.S1[1, 2], res.ST[1, 2]], 1, atol=0.01)


def test_chunks_bound_each_call_and_change_nothing():
    rows = []

    def counted(x):
        rows.append(x.shape[0])
        return ishigami(x)

    whole = sobol(counted, ISHIGAMI_BOUNDS, 2**8)
    assert rows == [2**8 * 5]  # one batched call
    rows.clear()
    chunked = sobol(counted, ISHIGAMI_BOUNDS, 2**8, chunk=300)
    assert rows == [300] * 4 + [80]
    np.testing.assert_array_equal(chunked.S1, whole.S1)
    np.testing.assert_array_equal(chunked.ST_conf, whole.ST_conf)


def test_progress_draws_a_bar(capsys):
    sobol(ishigami, ISHIGAMI_BOUNDS, 2**6, progress=True)
    assert "sobol" in capsys.readouterr().err


def test_float32_stays_float32():
    torch = pytest.importorskip("torch")
    seen = []

    def model(x):
        seen.append(x.dtype)
        return ishigami(x)

    res = sobol(
        model,
        ISHIGAMI_BOUNDS,
        2**10,
        second_order=True,
        backend=anyxp.backend("torch", dtype="float32"),
    )
    assert seen == [torch.float32]
    assert {res.S1.dtype, res.S2.dtype, res.S2_conf.dtype, res.outputs.dtype} == {torch.float32}
    np.testing.assert_allclose(res.S1.numpy(), S1_EXACT, atol=0.03)
    np.testing.assert_allclose(res.ST.numpy(), ST_EXACT, atol=0.03)


# -- the design ---------------------------------------------------------------------
@pytest.mark.parametrize("dims", [1, 7, MAX_DIMS])
def test_unscrambled_points_are_scipys(dims):
    qmc = pytest.importorskip("scipy.stats.qmc")
    ours = sobol_integers(2**9, dims).astype(np.float64) * 2.0**-32
    np.testing.assert_array_equal(ours, qmc.Sobol(dims, scramble=False, bits=32).random(2**9))


def test_scrambled_points_keep_the_net_property_and_differ_by_seed():
    n = 2**10
    x = scrambled(n, 6, Key(3))
    cells = np.floor(x * n).astype(int)
    for j in range(6):  # one point in each interval of width 1/n, in every dimension
        np.testing.assert_array_equal(np.sort(cells[:, j]), np.arange(n))
    for a in range(11):  # and in every 2**-a by 2**(a-10) box of the first two
        boxes = np.floor(x[:, 0] * 2**a) * 2 ** (10 - a) + np.floor(x[:, 1] * 2 ** (10 - a))
        assert len(np.unique(boxes)) == n
    np.testing.assert_array_equal(x, scrambled(n, 6, Key(3)))
    assert not np.any(x == scrambled(n, 6, Key(4)))
    assert abs(x.mean() - 0.5) < 1e-3 and x.min() > 0


def test_the_design_is_salibs_layout():
    salib = pytest.importorskip("SALib.sample.sobol")
    bounds = np.array([(-1.0, 2.0), (0.0, 5.0), (10.0, 11.0)])
    problem = {"num_vars": 3, "names": ["a", "b", "c"], "bounds": bounds.tolist()}
    for second_order in (False, True):
        unscrambled = sobol_integers(2**5, 6).astype(np.float64) * 2.0**-32
        design = Design(unscrambled, bounds, second_order)
        expected = salib.sample(problem, 2**5, calc_second_order=second_order, scramble=False)
        np.testing.assert_allclose(design.rows_at(np.arange(design.rows)), expected, rtol=1e-15)


def test_saltelli_sample_is_what_sobol_evaluates():
    x = saltelli_sample(ISHIGAMI_BOUNDS, 2**6, second_order=True, seed=5, backend="numpy")
    res = sobol(ishigami, ISHIGAMI_BOUNDS, 2**6, second_order=True, seed=5)
    np.testing.assert_array_equal(ishigami(x), res.outputs)
    assert x.shape == (2**6 * 8, 3)
    assert np.all((x >= -PI) & (x < PI))


@pytest.mark.parametrize(("rows", "size"), [(10, 3), (12, 4), (2, 5)])
def test_every_row_is_one_ranks_and_blocks_are_equal(rows, size):
    blocks = [rank_rows(rows, size, r) for r in range(size)]
    counts = blocks[0][1]
    assert len({len(index) for index, _ in blocks}) == 1  # allgather needs equal shapes
    real = np.concatenate([index[:c] for (index, _), c in zip(blocks, counts, strict=True)])
    np.testing.assert_array_equal(real, np.arange(rows))


# -- an ODE's parameters -------------------------------------------------------------
LV_BOUNDS = [(1.0, 2.0), (0.5, 1.5), (2.0, 4.0), (0.5, 1.5)]
LV_HORIZON = 10.0


def lotka_volterra(t, y, p):
    """Prey and predators, and the integrals of both (to average them)."""
    xp = anyxp.backend(like=y).xp
    prey, predator = y[:, 0], y[:, 1]
    a, b, c, d = p[:, 0], p[:, 1], p[:, 2], p[:, 3]
    return xp.stack(
        [a * prey - b * prey * predator, -c * predator + d * prey * predator, prey, predator],
        axis=1,
    )


def mean_populations(p):
    """Mean prey and predators over [0, 10] from (1, 1): one trajectory per row of ``p``."""
    be = anyxp.backend(like=p)
    y0 = be.asarray(np.tile([1.0, 1.0, 0.0, 0.0], (p.shape[0], 1)))
    sol = solve_ensemble(lotka_volterra, (0.0, LV_HORIZON), y0, params=p, rtol=1e-8, atol=1e-10)
    return sol.y[-1, :, 2:] / LV_HORIZON


@pytest.fixture(scope="module")
def lotka_volterra_result():
    calls = []

    def model(p):
        calls.append(p.shape[0])
        return mean_populations(p)

    return sobol(model, LV_BOUNDS, 2**8), calls


def test_ode_parameters_are_ranked_from_one_ensemble_solve(lotka_volterra_result):
    res, calls = lotka_volterra_result
    assert calls == [2**8 * 6]  # every trajectory in one solve_ensemble
    assert res.S1.shape == res.ST.shape == (2, 4)
    # Volterra's principle: over whole cycles the mean prey is c/d and the mean predator a/b.
    # Ten time units hold a few cycles, so the other two rates barely matter.
    prey, predators = res.ST
    assert np.all(prey[[0, 1]] < 0.05) and np.all(predators[[2, 3]] < 0.05)
    assert np.all(prey[[2, 3]] > 0.2) and np.all(predators[[0, 1]] > 0.2)
    assert np.all(res.S1 <= res.ST + 0.05)


def test_same_indices_as_salib_from_the_same_outputs(lotka_volterra_result):
    salib = pytest.importorskip(
        "SALib.analyze.sobol", reason="compare with SALib: pip install SALib"
    )
    res, _ = lotka_volterra_result
    problem = {"num_vars": 4, "names": list("abcd"), "bounds": LV_BOUNDS}
    for k in range(2):
        theirs = salib.analyze(
            problem, np.asarray(res.outputs[:, k]), calc_second_order=False, seed=1
        )
        np.testing.assert_allclose(res.S1[k], theirs["S1"], atol=1e-12)
        np.testing.assert_allclose(res.ST[k], theirs["ST"], atol=1e-12)
        # The intervals come from other resamples: alike, not equal.
        np.testing.assert_allclose(res.ST_conf[k], theirs["ST_conf"], rtol=0.5, atol=1e-3)
    ish = sobol(ishigami, ISHIGAMI_BOUNDS, 2**10, second_order=True)
    theirs = salib.analyze(
        {"num_vars": 3, "names": list("abc"), "bounds": ISHIGAMI_BOUNDS},
        np.asarray(ish.outputs),
        calc_second_order=True,
        seed=1,
    )
    for k in ("S1", "ST", "S2"):  # S2: NaN where SALib's are NaN
        np.testing.assert_allclose(getattr(ish, k), theirs[k], atol=1e-12)


# -- across processes -------------------------------------------------------------------
@needs_mpi
def test_two_mpi_ranks_give_the_indices_of_one_process(tmp_path):
    code = REPORT + textwrap.dedent(
        """
        import math, anyxp
        from anyxp.gsa import sobol
        def ishigami(x, a=7.0, b=0.1):  # as above, operation for operation
            xp = anyxp.backend(like=x).xp
            s1 = xp.sin(x[:, 0])
            return s1 + a * xp.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * s1
        rows = []
        def model(x):
            rows.append(x.shape[0])
            return ishigami(x)
        be = anyxp.backend("numpy", comm="mpi")
        res = sobol(model, [(-math.pi, math.pi)] * 3, 2**9, second_order=True, backend=be, chunk=1000)
        report(be.comm.rank, {
            "rows": rows,
            **{k: getattr(res, k).tolist() for k in ("S1", "ST", "S2", "S1_conf", "S2_conf")},
        })
        """
    )
    out = launch("-c", code, str(tmp_path), timeout=120)
    assert out.returncode == 0, out.stderr[-4000:]
    seen = per_rank(tmp_path)
    assert set(seen) == {0, 1}
    assert seen[0]["rows"] == seen[1]["rows"] == [1000, 1000, 48]  # half of 4096 rows each
    one = sobol(ishigami, ISHIGAMI_BOUNDS, 2**9, second_order=True)
    for rank in (0, 1):
        for k in ("S1", "ST", "S2", "S1_conf", "S2_conf"):
            np.testing.assert_array_equal(np.array(seen[rank][k], dtype=float), getattr(one, k))


@pytest.mark.timeout(180)
def test_a_dask_cluster_evaluates_the_blocks_and_gives_the_same_indices():
    pytest.importorskip("distributed")
    from dask.distributed import Client, LocalCluster, get_task_stream

    one = sobol(ishigami, ISHIGAMI_BOUNDS, 2**9, second_order=True)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, timeout=60),
        get_task_stream() as stream,
    ):
        res = sobol(ishigami, ISHIGAMI_BOUNDS, 2**9, second_order=True, backend="dask", chunk=1024)
    blocks = [t for t in stream.data if "run_block" in str(t["key"])]
    assert len(blocks) == 4  # 4096 rows in blocks of 1024, one task each
    assert res.backend.name == "dask"
    for k in ("S1", "ST", "S2", "S2_conf"):
        np.testing.assert_array_equal(res.backend.to_numpy(getattr(res, k)), getattr(one, k))


# -- mistakes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bounds", "error", "match"),
    [
        (
            [(0.0, 1.0), (2.0, 2.0)],
            ValueError,
            r"bounds\[1\] = \(2.0, 2.0\): low must be below high",
        ),
        ([(1.0, 0.0)], ValueError, "low must be below high; give each parameter as"),
        ([(0.0, np.inf)], ValueError, "not finite"),
        ([0.0, 1.0], ValueError, r"shape \(parameters, 2\).*bounds=\[\(-3.14, 3.14\)"),
        ([("a", "b")], TypeError, "bounds must be numbers"),
        ([(0.0, 1.0)] * 513, ValueError, "at most 512 parameters"),
    ],
)
def test_bad_bounds_say_what_to_write(bounds, error, match):
    with pytest.raises(error, match=match):
        sobol(ishigami, bounds, 2**4)


def test_n_not_a_power_of_two_is_rounded_up_with_a_warning():
    with pytest.warns(UserWarning, match=r"n=1000 is not a power of two; using n=1024") as caught:
        res = sobol(ishigami, ISHIGAMI_BOUNDS, 1000, resamples=0)
    assert caught[0].filename == __file__  # points at the caller's line
    assert res.n == 1024 and res.evaluations == 1024 * 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 1}, ValueError, "n must be between 2 and"),
        ({"n": 2.0**10}, TypeError, "n must be an int"),
        ({"second_order": True, "bounds": [(0.0, 1.0)]}, ValueError, "at least 2 parameters"),
        ({"resamples": 1}, ValueError, "resamples must be 0"),
        ({"confidence": 95}, ValueError, "between 0 and 1"),
        ({"seed": -1}, ValueError, "non-negative int"),
        ({"chunk": 0}, ValueError, "positive number of rows"),
        ({"model": "ishigami"}, TypeError, "model must be a function"),
    ],
)
def test_bad_options_are_named(kwargs, error, match):
    args = {"model": ishigami, "bounds": ISHIGAMI_BOUNDS, "n": 2**4} | kwargs
    with pytest.raises(error, match=match):
        sobol(**args)


def test_a_model_of_the_wrong_library_is_told_to_use_the_samples():
    pytest.importorskip("torch")

    def numpy_model(x):
        return np.sin(np.asarray(x)[:, 0])

    with pytest.raises(TypeError, match=r"numpy.ndarray for a torch sample.*backend\(like=x\)\.xp"):
        sobol(numpy_model, ISHIGAMI_BOUNDS, 2**4, backend="torch")
    with pytest.raises(TypeError, match=r"returned a builtins\.float"):
        sobol(lambda x: 1.0, ISHIGAMI_BOUNDS, 2**4)


@pytest.mark.parametrize(
    ("model", "error", "match"),
    [
        (lambda x: x, None, None),  # (rows, d) is k = d outputs: fine
        (lambda x: x[:-1, 0], ValueError, r"shape \(79,\) for 80 rows.*\(80,\), one value per row"),
        (lambda x: x[:, :, None], ValueError, r"shape \(80, 3, 1\)"),
        (lambda x: x[:, 0] + 1j, TypeError, "complex128 values.*real part"),
        (lambda x: x[:, 0] * 0.0 + 3.0, ValueError, "output is the same at every row.*inputs"),
        (lambda x: x * [1.0, 0.0, 1.0], ValueError, r"columns \[1\] of the model's output are"),
    ],
)
def test_a_model_of_the_wrong_shape_or_kind_is_explained(model, error, match):
    if error is None:
        assert sobol(model, ISHIGAMI_BOUNDS, 2**4).S1.shape == (3, 3)
        return
    with pytest.raises(error, match=match):
        sobol(model, ISHIGAMI_BOUNDS, 2**4)


def test_integer_outputs_are_analyzed_as_floats():
    res = sobol(lambda x: (x[:, 0] > 0) * 1 + (x[:, 1] > 0) * 2, ISHIGAMI_BOUNDS, 2**8)
    np.testing.assert_allclose(res.S1, [0.2, 0.8, 0.0], atol=0.02)


def test_non_finite_outputs_name_the_row_and_parameters():
    def log_model(x):
        with np.errstate(invalid="ignore"):
            return np.log(x[:, 0])  # NaN for x0 < 0

    with pytest.raises(
        ValueError, match=r"NaN or infinity at \d+ of 64 rows \(first at row \d+, x = \["
    ):
        sobol(log_model, [(-1.0, 1.0), (0.0, 1.0)], 2**4)


# -- the package ----------------------------------------------------------------------
def test_import_anyxp_gsa_imports_no_backend_library_nor_scipy():
    probe = (
        "import sys, anyxp.gsa\n"
        "heavy = ['torch', 'jax', 'dask', 'mpi4py', 'array_api_strict', 'scipy', 'SALib']\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_docstring_examples_run():
    import anyxp.gsa._sobol as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0
