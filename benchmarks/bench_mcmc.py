"""NUTS: anyxp.mcmc.nuts against numpyro's NUTS, both on JAX, in effective samples per second.

Both samplers get the same log density (one JAX function of a flat position vector),
the same start, 4 chains, 500 warmup and 1000 kept draws per chain, Stan's windowed
adaptation of the step size and a diagonal mass matrix, ``max_depth = 10`` and the same
``target_accept``. The draws of both are judged by the same estimator
(``anyxp.mcmc.ess``: rank-normalized bulk ESS, Vehtari et al. 2021, checked against
Stan's in tests/test_mcmc.py), and ESS/s = the smallest ESS over the parameters divided
by the wall time of the whole run (warmup included, compilation excluded).

- **anyxp (vectorized)** and **anyxp (sequential)**: ``anyxp.mcmc.nuts(logdensity, init,
  ..., chain_method=...)`` on ``anyxp.backend("jax")``: the whole run (or, sequential,
  each chain's run, one program for all chains) is one compiled program, cached for the
  same function object, so the second call onwards does not compile.
- **numpyro (vectorized)** and **numpyro (sequential)**: numpyro's NUTS kernel
  (``numpyro.infer.hmc.hmc(potential_fn=-logdensity, algo="NUTS")``) driven as
  ``numpyro.infer.MCMC`` drives it (init, warmup by ``fori_loop``, draws by ``scan``)
  but jit-compiled once by hand: ``jax.vmap`` over the chains (``chain_method=
  "vectorized"``), or ``lax.map`` (``"sequential"``, what ``"parallel"`` falls back to on
  one CPU device). ``MCMC.run`` itself compiles again on every call (its first-call
  column shows the cost); the hand-jitted driver gives numpyro its best case.

Problems: eight schools, non-centered (Rubin 1981; 10 parameters, ``target_accept``
0.9), and a Bayesian logistic regression with 100 coefficients (N(0, 1) prior) on 1000
synthetic rows (``target_accept`` 0.8). Every run is repeated over ``--repeat`` seeds,
the samplers interleaved so that the load of a shared machine falls on all alike; the
tables give medians. Ratio = anyxp's ESS/s / numpyro's (> 1: anyxp better).

``--nproc N`` sets ``NPROC=N`` before JAX starts: the size of the thread pool XLA's CPU
runtime runs independent operations of a program on (default: one thread per core).
Both libraries run under it alike.

Run:  python benchmarks/bench_mcmc.py [--repeat 7] [--out benchmarks/results/mcmc.md] [--plot docs/_static/mcmc_eight_schools.png] [--torch] [--nproc N]

``--torch`` adds one eight-schools run of anyxp on torch (eager: no compilation, one
Python pass per leapfrog step), for scale.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np

import anyxp
from anyxp.mcmc import ess, nuts, r_hat

CHAINS, WARMUP, SAMPLES = 4, 500, 1000
Y = [28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0]
SIGMA = [15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0]
ROWS, COEFFICIENTS = 1000, 100


# -- the log densities, written once against be.xp ---------------------------------------
def eight_schools(be: anyxp.Backend) -> Callable[[Any], Any]:
    """x = (mu, log tau, eta_1..8), theta_j = mu + tau eta_j; mu ~ N(0, 5), tau ~ C+(0, 5)."""
    xp = be.xp
    y, sigma = be.asarray(Y), be.asarray(SIGMA)

    def logdensity(x: Any) -> Any:
        mu, log_tau, eta = x[..., 0], x[..., 1], x[..., 2:]
        tau = xp.exp(log_tau)
        theta = mu[..., None] + tau[..., None] * eta
        return (
            -0.5 * (mu / 5.0) ** 2
            - xp.log1p((tau / 5.0) ** 2)
            + log_tau
            - 0.5 * xp.sum(eta**2, axis=-1)
            - 0.5 * xp.sum(((y - theta) / sigma) ** 2, axis=-1)
        )

    return logdensity


def logistic_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    features = rng.standard_normal((ROWS, COEFFICIENTS))
    beta = rng.standard_normal(COEFFICIENTS) * 0.3
    labels = (rng.uniform(size=ROWS) < 1 / (1 + np.exp(-features @ beta))).astype(float)
    return features, labels


def logistic_regression(be: anyxp.Backend) -> Callable[[Any], Any]:
    """Bernoulli(sigmoid(X beta)) likelihood, beta ~ N(0, I)."""
    xp = be.xp
    features, labels = (be.asarray(a) for a in logistic_data())
    features_t = xp.permute_dims(features, (1, 0))

    def logdensity(beta: Any) -> Any:
        eta = beta @ features_t  # (..., rows)
        loglik = xp.sum(labels * eta - xp.logaddexp(xp.zeros_like(eta), eta), axis=-1)
        return loglik - 0.5 * xp.sum(beta**2, axis=-1)

    return logdensity


PROBLEMS: dict[str, tuple[Callable[[anyxp.Backend], Callable[[Any], Any]], int, float]] = {
    "eight schools (10-d)": (eight_schools, 10, 0.9),
    "logistic regression (100-d)": (logistic_regression, COEFFICIENTS, 0.8),
}


# -- the samplers: each returns draws (chains, draws, dim), steps and divergences --------
Run = Callable[[int], tuple[np.ndarray, int, int]]


def anyxp_sampler(
    be: anyxp.Backend,
    logdensity: Callable[[Any], Any],
    dim: int,
    ta: float,
    how: str = "vectorized",
) -> Run:
    init = be.asarray(np.zeros(dim))

    def run(seed: int) -> tuple[np.ndarray, int, int]:
        res = nuts(
            logdensity,
            init,
            num_warmup=WARMUP,
            num_samples=SAMPLES,
            chains=CHAINS,
            seed=seed,
            target_accept=ta,
            chain_method=how,
        )
        steps = int(be.to_numpy(res.num_steps).sum())
        return be.to_numpy(res.samples), steps, res.divergences

    return run


def numpyro_sampler(logdensity: Callable[[Any], Any], dim: int, ta: float, how: str) -> Run:
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    init_kernel, sample_kernel = hmc(potential_fn=lambda x: -logdensity(x), algo="NUTS")

    def one_chain(key: Any, x0: Any) -> Any:
        state = init_kernel(x0, WARMUP, target_accept_prob=ta, rng_key=key)
        state = jax.lax.fori_loop(0, WARMUP, lambda i, s: sample_kernel(s), state)

        def draw(s: Any, _: Any) -> Any:
            s = sample_kernel(s)
            return s, (s.z, s.num_steps, s.diverging)

        return jax.lax.scan(draw, state, None, length=SAMPLES)[1]

    if how == "vectorized":
        program = jax.jit(jax.vmap(one_chain))
    else:
        program = jax.jit(lambda k, x: jax.lax.map(lambda a: one_chain(*a), (k, x)))
    init = jnp.zeros((CHAINS, dim))

    def run(seed: int) -> tuple[np.ndarray, int, int]:
        keys = jax.random.split(jax.random.PRNGKey(seed), CHAINS)
        z, steps, divergent = program(keys, init)
        return np.asarray(z), int(steps.sum()), int(divergent.sum())

    return run


def numpyro_mcmc_call(logdensity: Callable[[Any], Any], dim: int, ta: float) -> float:
    """Seconds of the second ``MCMC.run`` call (the first compiles) of the usual API."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer import MCMC, NUTS

    kernel = NUTS(potential_fn=lambda x: -logdensity(x), target_accept_prob=ta)
    mcmc = MCMC(
        kernel,
        num_warmup=WARMUP,
        num_samples=SAMPLES,
        num_chains=CHAINS,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(0), init_params=jnp.zeros((CHAINS, dim)))
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(1), init_params=jnp.zeros((CHAINS, dim)))
    jax.block_until_ready(mcmc.get_samples())
    return time.perf_counter() - start


# -- measuring ------------------------------------------------------------------------------
def measure(run: Run, seed: int) -> dict[str, Any]:
    start, cpu = time.perf_counter(), time.process_time()
    draws, steps, divergences = run(seed)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    bulk = np.asarray(ess(draws))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "ess": float(bulk.min()),
        "ess_per_s": float(bulk.min()) / seconds,
        "ess_per_cpu_s": float(bulk.min()) / cpu,
        "steps": steps,
        "divergences": divergences,
        "r_hat": float(np.asarray(r_hat(draws)).max()),
        "draws": draws,
    }


def bench_problem(name: str, repeat: int, torch: bool) -> dict[str, Any]:
    make, dim, ta = PROBLEMS[name]
    jax_be = anyxp.backend("jax", dtype="float64")
    logdensity = make(jax_be)
    samplers: dict[str, Run] = {
        "anyxp (vectorized)": anyxp_sampler(jax_be, logdensity, dim, ta, "vectorized"),
        "anyxp (sequential)": anyxp_sampler(jax_be, logdensity, dim, ta, "sequential"),
        "numpyro (vectorized)": numpyro_sampler(logdensity, dim, ta, "vectorized"),
        "numpyro (sequential)": numpyro_sampler(logdensity, dim, ta, "sequential"),
    }
    first = {}
    for label, run in samplers.items():  # compile (and a first run) before timing
        start = time.perf_counter()
        run(0)
        first[label] = time.perf_counter() - start
        print(f"{name}: {label} first call {first[label]:.1f} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in samplers}
    for seed in range(1, repeat + 1):
        for label, run in samplers.items():
            m = measure(run, seed)
            runs[label].append(m)
            print(
                f"  seed {seed} {label}: {m['seconds']:.3f} s ({m['cpu']:.3f} s CPU), "
                f"ESS {m['ess']:.0f}, {m['ess_per_s']:.0f}/s ({m['ess_per_cpu_s']:.0f}/CPU s), "
                f"{m['divergences']} divergences",
                flush=True,
            )
    if torch and name.startswith("eight"):  # eager torch: minutes on the larger problem
        torch_be = anyxp.backend("torch", dtype="float64")
        label = "anyxp (torch, eager)"
        runs[label] = [measure(anyxp_sampler(torch_be, make(torch_be), dim, ta), 1)]
        first[label] = float("nan")
        print(f"  {label}: {runs[label][0]['seconds']:.1f} s", flush=True)
    first["numpyro MCMC.run, 2nd call"] = numpyro_mcmc_call(logdensity, dim, ta)
    return {"runs": runs, "first": first}


# -- the report -------------------------------------------------------------------------------
def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(results: dict[str, dict[str, Any]], repeat: int, command: str) -> list[str]:
    import jax
    import numpyro

    lines = [
        "# NUTS: anyxp.mcmc against numpyro (both on JAX, CPU)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs: "
        f"single timings scatter, medians over seeds are given); Python "
        f"{platform.python_version()}, jax {jax.__version__}, numpyro {numpyro.__version__}."
        f" Produced by `{command}`. XLA's CPU thread pool: "
        + (f"NPROC={os.environ['NPROC']} thread(s)" if "NPROC" in os.environ else "default")
        + ".",
        "",
        f"{CHAINS} chains, {WARMUP} warmup + {SAMPLES} draws each, float64, the same log "
        "density and start for every sampler. ESS = the smallest bulk ESS over the "
        "parameters (anyxp.mcmc.ess for every sampler); seconds = wall time of the whole "
        "run, warmup included, compilation excluded; CPU s = the process's CPU time for "
        "the same run (all threads): on a shared machine wall time also counts waiting "
        "for a core, CPU time does not, so ESS per CPU second is the steadier measure "
        "here; grads/ESS = leapfrog steps of the kept draws per effective sample (the "
        "sampler's efficiency, free of timing). "
        f"Medians over {repeat} seeds. Ratios = anyxp's ESS/s / numpyro's (> 1: anyxp "
        "better).",
        "",
    ]
    for name, res in results.items():
        runs, first = res["runs"], res["first"]
        lines += [
            f"## {name}",
            "",
            "| sampler | seconds | CPU s | min ESS | ESS/s | ESS/CPU s | grads/ESS "
            "| divergences (all seeds) | max R-hat | first call s |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, rs in runs.items():
            steps_per_ess = statistics.median(r["steps"] / r["ess"] for r in rs)
            lines.append(
                f"| {label} | {median(rs, 'seconds'):.3f} | {median(rs, 'cpu'):.3f} "
                f"| {median(rs, 'ess'):.0f} | {median(rs, 'ess_per_s'):.0f} "
                f"| {median(rs, 'ess_per_cpu_s'):.0f} | {steps_per_ess:.1f} "
                f"| {sum(r['divergences'] for r in rs)} | {max(r['r_hat'] for r in rs):.3f} "
                f"| {first.get(label, float('nan')):.1f} |"
            )
        for how in ("vectorized", "sequential"):
            ours, theirs = runs[f"anyxp ({how})"], runs[f"numpyro ({how})"]
            wall, cpu = (
                median(ours, key) / median(theirs, key) for key in ("ess_per_s", "ess_per_cpu_s")
            )
            lines.append("")
            lines.append(
                f"anyxp / numpyro, both {how}: ESS per wall second **{wall:.2f}x**, "
                f"ESS per CPU second **{cpu:.2f}x**"
            )

        ours, theirs = fastest(runs, "anyxp"), fastest(runs, "numpyro")
        best = median(runs[ours], "ess_per_s") / median(runs[theirs], "ess_per_s")
        lines += [
            "",
            f"Each library's faster mode here, {ours} / {theirs}: ESS per wall second "
            f"**{best:.2f}x**",
        ]
        lines += [
            "",
            f"numpyro's `MCMC.run` (vectorized), second call with the same kernel: "
            f"{first['numpyro MCMC.run, 2nd call']:.1f} s (it compiles again).",
            "",
        ]
        if name.startswith("eight"):
            lines += eight_schools_means(runs)
    return lines


def fastest(runs: dict[str, list[dict[str, Any]]], library: str) -> str:
    """The label of ``library``'s JAX sampler with the most ESS per second (median)."""
    labels = [label for label in runs if label.startswith(library + " (") and "torch" not in label]
    return max(labels, key=lambda label: median(runs[label], "ess_per_s"))


def eight_schools_means(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "Posterior means over all seeds' draws (published reference: mu 4.1-4.4, tau 3.6-4.0):",
        "",
        "| sampler | mu | tau |",
        "|---|---|---|",
    ]
    for label, rs in runs.items():
        x = np.concatenate([r["draws"].reshape(-1, r["draws"].shape[-1]) for r in rs])
        lines.append(f"| {label} | {x[:, 0].mean():.3f} | {np.exp(x[:, 1]).mean():.3f} |")
    return [*lines, ""]


def plot(path: Path, results: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tau, ax_bar) = plt.subplots(1, 2, figsize=(10, 3.8))
    runs = results["eight schools (10-d)"]["runs"]
    bins = np.linspace(-4, 3.5, 60)
    for label, style in (("anyxp (vectorized)", "-"), ("numpyro (vectorized)", "--")):
        x = np.concatenate([r["draws"][..., 1].ravel() for r in runs[label]])
        ax_tau.hist(x, bins=bins, density=True, histtype="step", ls=style, lw=1.5, label=label)
    ax_tau.set_xlabel("log tau")
    ax_tau.set_ylabel("posterior density")
    ax_tau.set_title("eight schools: log tau, all draws")
    ax_tau.legend(fontsize=8)

    labels = [
        "anyxp (vectorized)",
        "anyxp (sequential)",
        "numpyro (vectorized)",
        "numpyro (sequential)",
    ]
    width = 0.8 / len(labels)
    names = list(results)
    for i, label in enumerate(labels):
        values = [median(results[n]["runs"][label], "ess_per_s") for n in names]
        offset = (i - (len(labels) - 1) / 2) * width
        ax_bar.bar(np.arange(len(names)) + offset, values, width, label=label)
    ax_bar.set_xticks(np.arange(len(names)), [n.split(" (")[0] for n in names])
    ax_bar.set_yscale("log")
    ax_bar.set_ylabel("min bulk ESS per second")
    ax_bar.set_title("NUTS on JAX (CPU), median over seeds")
    ax_bar.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/mcmc.md"))
    parser.add_argument("--plot", type=Path, default=Path("docs/_static/mcmc_eight_schools.png"))
    parser.add_argument(
        "--torch", action="store_true", help="one eight-schools run on torch (eager) too"
    )
    parser.add_argument("--only", choices=["eight", "logistic"], help="one problem only")
    parser.add_argument(
        "--nproc", type=int, help="XLA's CPU thread pool size (NPROC), for both libraries"
    )
    args = parser.parse_args()
    if args.nproc is not None:
        if "jax" in sys.modules:
            raise SystemExit("--nproc must be set before JAX starts")
        os.environ["NPROC"] = str(args.nproc)
    warnings.filterwarnings("ignore")
    names = [n for n in PROBLEMS if args.only is None or n.startswith(args.only)]
    results = {name: bench_problem(name, args.repeat, args.torch) for name in names}
    command = "python benchmarks/bench_mcmc.py " + " ".join(sys.argv[1:])
    lines = report(results, args.repeat, command.strip())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    if len(results) == len(PROBLEMS):
        try:
            plot(args.plot, results)
            print(f"wrote {args.plot}")
        except ImportError:
            print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
