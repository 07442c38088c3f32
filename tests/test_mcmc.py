"""anyxp.mcmc: NUTS and HMC written once, and the diagnostics that judge their draws.

Heavy runs are on JAX (one compiled program each), small ones on torch (eager), and the
diagnostics alone on numpy. Statistical checks bound errors by the Monte Carlo standard
error ``sd / sqrt(ess)`` with a seed fixed, so a failure means a bias, not bad luck.
"""

from __future__ import annotations

import doctest
import importlib
import math
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_mpi import launch, needs_mpi, per_rank

import anyxp
from anyxp.mcmc import ess, hmc, nuts, r_hat
from conftest import float64_backend

# A correlated 2-D Gaussian: means, standard deviations 1 and 2, correlation 0.8.
MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 1.6], [1.6, 4.0]])

# Eight schools (Rubin 1981), non-centered: x = (mu, log tau, eta_1..8), theta = mu + tau eta.
Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
# Posterior means of mu and tau published for this model (posteriordb, Stan's and
# numpyro's documentation): the range they span.
MU_REFERENCE, TAU_REFERENCE = (4.1, 4.4), (3.6, 4.0)


def gaussian(be):
    xp = be.xp
    mean, prec = be.asarray(MEAN), be.asarray(np.linalg.inv(COV))

    def logdensity(x):
        d = x - mean
        return -0.5 * xp.sum((d @ prec) * d, axis=-1)

    return logdensity


def eight_schools(be):
    xp = be.xp
    y, sigma = be.asarray(Y), be.asarray(SIGMA)

    def logdensity(x):
        mu, log_tau, eta = x[..., 0], x[..., 1], x[..., 2:]
        tau = xp.exp(log_tau)
        theta = mu[..., None] + tau[..., None] * eta
        return (
            -0.5 * (mu / 5.0) ** 2  # mu ~ Normal(0, 5)
            - xp.log1p((tau / 5.0) ** 2)  # tau ~ HalfCauchy(5)
            + log_tau  # the log-Jacobian of tau = exp(log_tau)
            - 0.5 * xp.sum(eta**2, axis=-1)
            - 0.5 * xp.sum(((y - theta) / sigma) ** 2, axis=-1)
        )

    return logdensity


def mcse(draws: np.ndarray, ess_value: float) -> float:
    return float(draws.std(ddof=1) / math.sqrt(ess_value))


# -- samplers ----------------------------------------------------------------------------
#: (warmup, draws) per chain, and the R-hat such a run stays below.
GAUSSIAN_RUNS = {"jax": (500, 1000, 1.01), "torch": (150, 250, 1.05)}


@pytest.mark.parametrize("name", GAUSSIAN_RUNS)
def test_nuts_recovers_a_correlated_gaussian_within_monte_carlo_error(name):
    be = float64_backend(name)
    warmup, draws, r_hat_bound = GAUSSIAN_RUNS[name]
    res = nuts(gaussian(be), be.asarray([0.0, 0.0]), num_warmup=warmup, num_samples=draws, chains=4)
    x = be.to_numpy(res.samples).reshape(-1, 2)
    n_eff = be.to_numpy(res.ess)
    assert res.samples.shape == (4, draws, 2) and res.divergences == 0
    assert (be.to_numpy(res.r_hat) < r_hat_bound).all()
    assert n_eff.min() > 0.2 * x.shape[0], "NUTS mixes a Gaussian well"
    err = x.mean(axis=0) - MEAN
    assert (np.abs(err) < 4 * np.sqrt(np.diag(COV) / n_eff)).all(), err
    # Var(sample cov_ij) ~ (cov_ii cov_jj + cov_ij^2) / n for Gaussian draws.
    cov_err = np.cov(x.T) - COV
    sd = np.sqrt((np.outer(np.diag(COV), np.diag(COV)) + COV**2) / n_eff.min())
    assert (np.abs(cov_err) < 4 * sd).all(), cov_err
    # Warmup estimated the variances into the inverse mass matrix.
    assert np.allclose(be.to_numpy(res.inv_mass).mean(axis=0), np.diag(COV), rtol=0.5)


def test_eight_schools_noncentered_matches_the_reference_posterior():
    be = float64_backend("jax")
    res = nuts(
        eight_schools(be),
        be.asarray(np.zeros(10)),
        num_warmup=500,
        num_samples=1000,
        chains=4,
        target_accept=0.9,  # as usual for hierarchical models
    )
    x = be.to_numpy(res.samples)
    n_eff = be.to_numpy(res.ess)
    assert res.divergences == 0
    assert be.to_numpy(res.r_hat).max() < 1.01
    mu, tau = x[..., 0], np.exp(x[..., 1])
    # Bulk ESS is the same for tau and log tau (it depends on ranks only).
    for value, (lo, hi), n in ((mu, MU_REFERENCE, n_eff[0]), (tau, TAU_REFERENCE, n_eff[1])):
        bound = 4 * mcse(value, n)
        assert lo - bound < value.mean() < hi + bound, (value.mean(), bound)
    assert 0.7 < res.mean_accept_prob < 1.0
    assert "NUTS: 4 chains x 1000 draws" in res.summary(["mu", "log_tau", *"abcdefgh"])


def test_float32_runs_keep_float32_and_the_same_seed_gives_the_same_draws():
    be = anyxp.backend("torch", dtype="float32")
    runs = [
        hmc(gaussian(be), be.asarray([0.5, 0.5]), num_warmup=50, num_samples=20, chains=2)
        for _ in range(2)
    ]
    res = runs[0]
    assert res.divergences == 0  # the adapted step size is stable in float32 too
    for array in (res.samples, res.logdensity, res.accept_prob, res.step_size, res.inv_mass):
        assert array.dtype == be.xp.float32 and array.device == be.device
    assert bool(be.xp.all(runs[0].samples == runs[1].samples))


@pytest.mark.parametrize("sampler", [nuts, hmc])
@pytest.mark.parametrize("name", ["jax", "torch"])
def test_sequential_chains_give_the_draws_of_the_vectorized_run(name, sampler):
    # A chain's random numbers depend on its index alone, so one chain at a time (one
    # compiled program for all of them on JAX, the chain index its input) samples what
    # the batch does: the same floats on torch; on JAX, whose compiler vectorises a
    # batch of one differently, to the last bits.
    be = float64_backend(name)
    runs = [
        sampler(
            gaussian(be),
            be.asarray([0.5, 0.5]),
            num_warmup=30,
            num_samples=20,
            chains=3,
            seed=4,
            chain_method=method,
        )
        for method in ("vectorized", "sequential")
    ]
    for field in ("samples", "step_size", "inv_mass", "num_steps", "accept_prob"):
        a, b = (be.to_numpy(getattr(r, field)) for r in runs)
        if name == "torch":
            np.testing.assert_array_equal(a, b, err_msg=field)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=field)
    assert runs[1].samples.shape == (3, 20, 2)


def test_an_unknown_chain_method_names_the_ones_there_are():
    be, logdensity = torch_normal()
    with pytest.raises(ValueError, match="chain_method must be one of"):
        nuts(logdensity, be.asarray([0.0]), num_warmup=1, num_samples=1, chain_method="parallel")


# -- properties ------------------------------------------------------------------------------
@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    scales=st.lists(st.floats(0.3, 3.0), min_size=1, max_size=3),
    step=st.floats(0.05, 0.6),
    num_steps=st.integers(1, 6),
)
def test_hmc_with_a_fixed_step_leaves_a_gaussian_invariant(scales, step, num_steps):
    """Chains started from exact draws still hold exact draws after some iterations."""
    be = anyxp.backend("torch", dtype="float64")
    xp, chains = be.xp, 2000
    var = be.asarray(np.square(scales))
    start = be.asarray(np.random.default_rng(1).standard_normal((chains, len(scales))) * scales)
    res = hmc(
        lambda x: -0.5 * xp.sum(x * x / var, axis=-1),
        start,
        num_warmup=0,
        num_samples=3,
        chains=chains,
        step_size=step * min(scales),  # stable: below 2 / the highest frequency
        num_steps=num_steps,
    )
    last = be.to_numpy(res.samples[:, -1, :])
    z = last.mean(axis=0) / np.asarray(scales) * math.sqrt(chains)  # ~ N(0, 1) each
    ratio = last.var(axis=0, ddof=1) / np.square(scales)  # ~ 1 +- sqrt(2 / chains)
    assert (np.abs(z) < 4.5).all(), z
    assert (np.abs(ratio - 1) < 4.5 * math.sqrt(2 / chains)).all(), ratio


@settings(max_examples=10, deadline=None, derandomize=True)
@given(
    x0=st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    p0=st.lists(st.floats(-3, 3), min_size=3, max_size=3),
    eps=st.floats(0.001, 0.1),
    steps=st.integers(1, 20),
)
def test_leapfrog_is_reversible_and_nearly_conserves_energy(x0, p0, eps, steps):
    from anyxp.mcmc._integrator import density_and_grad, kinetic, leapfrog, logp_of, pack

    be = anyxp.backend("torch", dtype="float64")
    xp = be.xp
    precision = be.asarray([1.0, 4.0, 0.25])
    f = density_and_grad(be, lambda x: -0.5 * xp.sum(precision * x * x, axis=-1))
    inv_mass = be.asarray([[1.0, 0.5, 2.0]])
    start = pack(xp, be.asarray([x0]), *f(be.asarray([x0])))
    point, p = start, be.asarray([p0])
    for _ in range(steps):
        point, p = leapfrog(xp, f, point, p, be.asarray([eps]), inv_mass)

    def energy(point, p):
        return float(-logp_of(point)[0] + kinetic(xp, p, inv_mass)[0])

    h0 = energy(start, be.asarray([p0]))
    omega = math.sqrt(4.0 * 0.5)  # the highest frequency: sqrt(precision * inv_mass)
    assert abs(energy(point, p) - h0) <= 0.5 * (eps * omega) ** 2 * (h0 + 1.0)
    for _ in range(steps):  # back with the opposite step
        point, p = leapfrog(xp, f, point, p, be.asarray([-eps]), inv_mass)
    np.testing.assert_allclose(be.to_numpy(point), be.to_numpy(start), atol=1e-10)
    np.testing.assert_allclose(be.to_numpy(p)[0], p0, atol=1e-10)


# -- diagnostics -------------------------------------------------------------------------------
def ar1(rho: float, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.empty(shape)
    x[:, 0] = rng.standard_normal(shape[0])
    noise = rng.standard_normal(shape) * math.sqrt(1 - rho**2)
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def stan_ess(x: np.ndarray) -> float:
    """Stan's ``compute_effective_sample_size`` (2.26) transcribed as loops: the reference."""
    m, n = x.shape
    acov = np.array([np.correlate(c - c.mean(), c - c.mean(), "full")[n - 1 :] / n for c in x])
    mean_var = (acov[:, 0] * n / (n - 1)).mean()
    var_plus = mean_var * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = np.zeros(n)
    rho[0], even, odd = 1.0, 1.0, 1 - (mean_var - acov[:, 1].mean()) / var_plus
    rho[1], t = odd, 1
    while t < n - 5 and even + odd > 0:
        even = 1 - (mean_var - acov[:, t + 1].mean()) / var_plus
        odd = 1 - (mean_var - acov[:, t + 2].mean()) / var_plus
        if even + odd >= 0:
            rho[t + 1], rho[t + 2] = even, odd
        t += 2
    max_t = t
    if even > 0:
        rho[max_t + 1] = even
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2
        t += 2
    s = m * n
    tau = max(-1 + 2 * rho[:max_t].sum() + rho[max_t + 1], 1 / math.log10(s))
    return min(s / tau, s * math.log10(s))


def rank_normalized_split(x: np.ndarray) -> np.ndarray:
    from scipy.stats import norm, rankdata

    half = x.shape[1] // 2
    x = np.concatenate([x[:, :half], x[:, x.shape[1] - half :]])
    ranks = rankdata(x, method="average").reshape(x.shape)
    return norm.ppf((ranks - 0.375) / (x.size + 0.25))


def test_iid_draws_have_r_hat_one_and_ess_near_their_number():
    x = np.random.default_rng(0).standard_normal((4, 1000, 3))
    assert np.all(np.abs(r_hat(x) - 1) < 0.01)
    assert np.all(np.abs(ess(x) / 4000 - 1) < 0.1)
    assert np.all(np.abs(ess(x, kind="tail") / 4000 - 1) < 0.25)


@pytest.mark.parametrize("rho", [0.5, 0.9, -0.3])
def test_ess_of_an_ar1_chain_is_n_times_1_minus_rho_over_1_plus_rho(rho):
    x = ar1(rho, (4, 4000))
    expected = x.size * (1 - rho) / (1 + rho)
    assert abs(float(ess(x)) / expected - 1) < 0.2
    # Exactly what Stan computes from the same rank-normalized split chains.
    assert float(ess(x)) == pytest.approx(stan_ess(rank_normalized_split(x)), rel=1e-9)


def test_diagnostics_agree_with_arviz():
    az = pytest.importorskip("arviz", reason="arviz is not installed: pip install arviz")
    x = ar1(0.7, (4, 500))[..., None] * np.array([1.0, 3.0])
    data = az.convert_to_dataset(x)
    np.testing.assert_allclose(r_hat(x), az.rhat(data)["x"].values, rtol=1e-6)
    np.testing.assert_allclose(ess(x), az.ess(data, method="bulk")["x"].values, rtol=1e-6)


def test_r_hat_flags_chains_that_disagree_in_location_or_only_in_scale():
    x = np.random.default_rng(2).standard_normal((4, 500))
    assert float(r_hat(x + np.array([[0.0], [0.0], [0.0], [1.0]]))) > 1.05
    # Same centre, one chain three times wider: the folded R-hat sees it.
    assert float(r_hat(x * np.array([[1.0], [1.0], [1.0], [3.0]]))) > 1.05
    # A chain that drifts disagrees with itself: the split R-hat sees it.
    assert float(r_hat(x[:1] + np.linspace(0, 3, 500))) > 1.05


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_diagnostics_give_numpys_values_on_other_backends(name):
    be = float64_backend(name)
    x = ar1(0.6, (3, 300))[..., None] * np.array([1.0, 2.0])
    for fn in (r_hat, ess, lambda a: ess(a, kind="tail")):
        got = fn(be.asarray(x))
        assert anyxp.backend(like=got).name == name
        np.testing.assert_allclose(be.to_numpy(got), fn(x), rtol=1e-10)


def test_docstring_examples_run():
    for module in ("anyxp.mcmc._diagnostics", "anyxp.mcmc._adapt", "anyxp.mcmc._sample"):
        result = doctest.testmod(importlib.import_module(module))
        assert result.failed == 0 and result.attempted > 0, module


# -- bad input --------------------------------------------------------------------------------
def torch_normal():
    be = anyxp.backend("torch", dtype="float64")
    return be, lambda x: -0.5 * be.xp.sum(x * x, axis=-1)


def test_numpy_has_no_ad_and_the_error_names_jax_and_torch():
    _, logdensity = torch_normal()
    with pytest.raises(anyxp.UnsupportedError, match=r"'ad\.vjp'.*jax, torch.*backend="):
        nuts(logdensity, np.zeros(2), num_warmup=10, num_samples=10)


def test_a_start_outside_the_support_is_refused_before_sampling():
    be, _ = torch_normal()

    def half_normal(x):
        return be.xp.where(x[..., 0] > 0, -0.5 * x[..., 0] ** 2, -be.xp.inf)

    start = be.asarray([[1.0], [-1.0], [2.0]])
    with pytest.raises(ValueError, match=r"not finite at init for chains \[1\].*real line"):
        nuts(half_normal, start, num_warmup=10, num_samples=10, chains=3)


@pytest.mark.parametrize(
    ("init", "chains", "match"),
    [
        ([[0.0, 0.0]] * 3, 2, r"shape \(dim,\).*\(chains, dim\) = \(2, dim\).*\(3, 2\)"),
        ([[[0.0]]], 1, r"got shape \(1, 1, 1\)"),
        ([], 1, r"got shape \(0,\)"),
    ],
)
def test_an_init_of_the_wrong_shape_says_which_shapes_work(init, chains, match):
    be, logdensity = torch_normal()
    with pytest.raises(ValueError, match=match):
        hmc(logdensity, be.asarray(init), num_warmup=1, num_samples=1, chains=chains)


@pytest.mark.parametrize(
    ("option", "value"),
    [("num_samples", 0), ("num_samples", -5), ("num_warmup", -1), ("chains", 0)],
)
def test_counts_out_of_range_name_the_option(option, value):
    be, logdensity = torch_normal()
    counts = {"num_warmup": 1, "num_samples": 1, "chains": 1, option: value}
    with pytest.raises(ValueError, match=f"{option} must be an integer >= "):
        nuts(logdensity, be.asarray([0.0]), **counts)


@pytest.mark.parametrize("sampler", [hmc, nuts])
def test_divergences_are_counted_and_warned_about_and_the_draws_stay_finite(sampler):
    """A step size far past the stability limit (2 for a unit normal) blows up the energy."""
    be, logdensity = torch_normal()
    with pytest.warns(RuntimeWarning, match=r"(\d+) of 40 draws after warmup diverged.*target_"):
        res = sampler(
            logdensity, be.asarray([0.5]), num_warmup=0, num_samples=20, chains=2, step_size=4.0
        )
    divergent = be.to_numpy(res.divergent)
    assert divergent.shape == (2, 20) and res.divergences == int(divergent.sum()) > 0
    assert np.isfinite(be.to_numpy(res.samples)).all()  # a divergent move is never taken
    assert f"{res.divergences} divergences" in res.summary()


def test_a_well_tuned_run_warns_about_nothing():
    be, logdensity = torch_normal()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = nuts(logdensity, be.asarray([0.5]), num_warmup=0, num_samples=20, step_size=0.5)
    assert res.divergences == 0


def test_a_log_density_of_one_position_is_refused_with_the_batch_contract():
    be, _ = torch_normal()
    with pytest.raises(ValueError, match=r"returned shape \(\).*\(chains,\).*vmap"):
        nuts(lambda x: be.xp.sum(x * x), be.asarray([0.0, 1.0]), num_warmup=1, num_samples=1)


def test_import_anyxp_mcmc_imports_no_backend_library():
    code = textwrap.dedent(
        """
        import sys, anyxp.mcmc
        print(sorted(m for m in ("torch", "jax", "cupy", "dask") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- across MPI ranks ---------------------------------------------------------------------------
MPI_SCRIPT = """
import json, pathlib, sys, warnings
import numpy as np, anyxp
warnings.simplefilter("ignore")

def run(be):
    xp = be.xp
    scale = be.asarray([1.0, 4.0])
    res = anyxp.mcmc.nuts(
        lambda x: -0.5 * xp.sum((x - 1.0) ** 2 / scale, axis=-1),
        be.asarray(np.linspace(-1.0, 1.0, 8).reshape(4, 2)),
        num_warmup=50, num_samples=30, chains=4, seed=3,
    )
    return {"samples": be.to_numpy(res.samples).tolist(), "r_hat": be.to_numpy(res.r_hat).tolist(),
            "step_size": be.to_numpy(res.step_size).tolist()}

be = anyxp.backend("torch", comm="mpi", dtype="float64")
seen = {"size": be.comm.size, "split": run(be)}
if be.comm.rank == 0:  # the same chains in this one process
    seen["serial"] = run(anyxp.backend("torch", dtype="float64"))
pathlib.Path(sys.argv[1], f"rank{be.comm.rank}.json").write_text(json.dumps(seen))
"""


@needs_mpi
def test_chains_split_over_two_mpi_ranks_equal_the_chains_of_one_process(tmp_path):
    out = launch("-c", MPI_SCRIPT, str(tmp_path), timeout=180)
    assert out.returncode == 0, out.stderr[-4000:]
    ranks = per_rank(tmp_path)
    assert set(ranks) == {0, 1} and ranks[0]["size"] == 2
    # Every rank holds every chain after the gather, and they are the one-process chains.
    assert ranks[0]["split"] == ranks[1]["split"]
    assert ranks[0]["split"] == ranks[0]["serial"]
