"""The sampling loop every kernel shares: one leapfrog step per pass, for every chain.

Each pass takes one leapfrog step in every chain (one batched call of the log density
and its gradient). A chain whose iteration ends with that step records its draw, adapts
(during warmup) and starts its next iteration right after that pass, while the others go
on: chains never wait for each other's trajectories, and the loop ends when every chain
has done ``num_warmup + num_samples`` iterations. The passes between two such ends are a
loop of the kernel's step alone (a segment); the recording, adaptation and restart run
once per segment, not once per pass. It is array code inside ``be.while_loop``,
so the whole run (warmup included) is one compiled program on JAX and a Python loop of
batched array operations on eager backends (torch).

Random numbers come from ``be.random`` only, drawn in blocks of passes: the loop is two
loops, one over blocks that draws the block's numbers with one call per kind, one over
the block's passes. (One call per pass would cost more than the pass: a random call is
a loop of its own in a compiled program on CPU.) Each block draws for *every* chain of
the run, ``(passes, chains, ...)``, and a program keeps the rows of its own chains: a
chain's numbers depend on its index and the pass alone, so chains split across MPI
ranks, or run one after another (``chain_method="sequential"``), give the draws they
give all together. Which chains a program runs is an input of it (``first``, the index
of its first chain), so one compiled program serves every chain or rank.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_extra as xpx

from anyxp.backend import Backend
from anyxp.mcmc._adapt import (
    Adaptation,
    Schedule,
    adapt_init,
    adapt_update,
    initial_step_size,
)
from anyxp.mcmc._hmc import HMCKernel
from anyxp.mcmc._integrator import density_and_grad, logp_of, pack, x_of
from anyxp.mcmc._kernel import UNIFORMS, Kernel
from anyxp.mcmc._nuts import NUTSKernel

__all__ = ["STATS", "Config", "run"]

#: The per-draw statistics, in the order of the last axis of the ``stats`` output.
STATS = ("logdensity", "accept_prob", "divergent", "num_steps", "tree_depth")

_KERNELS: dict[str, Callable[..., Kernel]] = {"hmc": HMCKernel, "nuts": NUTSKernel}


class Config(NamedTuple):
    """Everything the compiled program depends on but the arrays it is given."""

    kernel: str  # "hmc" or "nuts"
    kernel_option: int  # num_steps (hmc) or max_depth (nuts)
    num_warmup: int
    num_samples: int
    search_step: bool  # find a first step size (none was given)
    adapt: bool  # adapt step size and mass matrix during warmup
    target_accept: float
    chains: int  # chains of the whole run (all ranks)
    batch: int  # chains of this program (from the input ``first`` on)
    dim: int


class LoopState(NamedTuple):
    """The loop's carry."""

    it: Any  # (C,) iterations each chain has finished
    point: Any  # each chain's current draw: a point [x | grad | logp]
    kernel: Any  # the kernel's state
    adapt: Adaptation
    draws: Any  # the random stream's carry
    samples: Any  # (C, num_samples + 1, d): the last column takes writes of no draw
    stats: Any  # (C, num_samples + 1, len(STATS))


def run(
    be: Backend,
    logdensity: Callable[[Any], Any],
    key: Any,
    x0: Any,
    eps0: Any,
    first: Any,
    config: Config,
) -> tuple[Any, Any, Any, Any]:
    """Sample chains ``first, ..., first + C - 1`` of the run; return ``(samples, stats,
    step_size, inv_mass)``.

    ``samples`` is ``(C, num_samples, d)``, ``stats`` ``(C, num_samples, len(STATS))``,
    ``step_size`` ``(C,)`` and ``inv_mass`` ``(C, d)`` (after warmup). ``eps0`` ``(C,)``
    is the step size when none is searched for; ``first`` a 0-d int32 array.
    """
    if getattr(be.control, "compiled", False):
        program = _compiled(be, config)
        return program(logdensity, key, x0, eps0, first)  # type: ignore[no-any-return]
    return _program(be, config, logdensity, key, x0, eps0, first)


@functools.lru_cache(maxsize=32)
def _compiled(be: Backend, config: Config) -> Callable[..., Any]:
    """The compiled program for ``config``; the log density is a static argument, so the
    backend's own cache keeps one executable per function (call again with the same
    function object, not a new lambda, to skip compiling)."""
    program = functools.partial(_program, be, config)
    return be.jit(program, static_argnums=0)


def _program(
    be: Backend,
    config: Config,
    logdensity: Callable[[Any], Any],
    key: Any,
    x0: Any,
    eps0: Any,
    first: Any,
) -> tuple[Any, Any, Any, Any]:
    xp, dev = be.xp, be.device
    dt = x0.dtype
    f = density_and_grad(be, logdensity)
    kernel = _KERNELS[config.kernel](be, f, config.kernel_option)
    point = pack(xp, x0, *f(x0))
    inv_mass = xp.ones_like(x0)
    k_search, k_start, k_loop = be.random.split(key, 3)
    block = _block_size(config)

    if config.search_step:
        _, _, z_search = _first_block(_draws(be, k_search, config, block, dt, first))

        def momentum(trial: Any) -> tuple[Any, Any]:
            return trial + 1, z_search[trial % block]

        eps0 = initial_step_size(be, f, point, inv_mass, momentum, 0)
    adapt = adapt_init(xp, xp.log(eps0), inv_mass)
    schedule = Schedule.build(be, config.num_warmup)

    _, u0, z0 = _first_block(_draws(be, k_start, config, 1, dt, first))
    draws = _draws(be, k_loop, config, block, dt, first)
    c, n_rec = x0.shape[0], config.num_samples + 1
    state = LoopState(
        it=xp.zeros((c,), dtype=xp.int32, device=dev),
        point=point,
        kernel=kernel.start(point, z0[0], inv_mass, u0[0]),
        adapt=adapt,
        draws=draws.init(),
        samples=xp.zeros((c, n_rec, config.dim), dtype=dt, device=dev),
        stats=xp.zeros((c, n_rec, len(STATS)), dtype=dt, device=dev),
    )
    total = config.num_warmup + config.num_samples
    chain_index = xp.arange(c, dtype=xp.int32, device=dev)

    no_record = (
        xp.full((c,), config.num_samples, dtype=xp.int32, device=dev),
        xp.zeros((c, config.dim), dtype=dt, device=dev),
        xp.zeros((c, len(STATS)), dtype=dt, device=dev),
    )

    def finish(st: LoopState, ks: Any, ended: Any, u: Any, z: Any) -> tuple[Any, ...]:
        """Adapt and restart the chains whose iteration ended; return what they record."""
        tr = kernel.transition(ks, st.adapt.inv_mass, u)
        done = ended & (st.it < total)
        point = xp.where(done[:, None], tr.point, st.point)
        adapt = st.adapt
        if config.adapt:
            # Past warmup the update changes nothing: skip it.
            adapt = be.cond(
                xp.any(done & (st.it < config.num_warmup)),
                functools.partial(
                    adapt_update,
                    xp,
                    schedule=schedule,
                    num_warmup=config.num_warmup,
                    target_accept=config.target_accept,
                ),
                lambda state, *_: state,
                adapt,
                st.it,
                done,
                tr.accept,
                x_of(point),
            )
        record = done & (st.it >= config.num_warmup)
        column = xp.where(record, st.it - config.num_warmup, config.num_samples)
        stats = [logp_of(point), tr.accept, tr.divergent, tr.steps, tr.depth]
        row = xp.stack([xp.astype(v, dt) for v in stats], axis=-1)
        # Every chain that ended restarts, also those past their last iteration (their
        # further steps are discarded), so that no trajectory grows without bound.
        chains = (
            st.it + xp.astype(done, st.it.dtype),
            point,
            kernel.restart(ks, ended, point, z, adapt.inv_mass, u),
            adapt,
        )
        return chains, (xp.astype(column, xp.int32), x_of(point), row)

    def carry_on(st: LoopState, ks: Any, ended: Any, u: Any, z: Any) -> tuple[Any, ...]:
        return (st.it, st.point, ks, st.adapt), no_record

    def running(st: LoopState) -> Any:
        return xp.any(st.it < total)

    def one_block(st: LoopState) -> LoopState:
        carry, u_block, z_block = draws.block(st.draws)

        def in_block(outer: tuple[LoopState, Any]) -> Any:
            st, i = outer
            return (i < block) & running(st)

        def one_segment(outer: tuple[LoopState, Any]) -> tuple[LoopState, Any]:
            """Passes until a chain's iteration ends (or the block's numbers do), then
            that chain's draw, adaptation and restart: the passes in between are the
            kernel's step alone."""
            st, i = outer
            eps, inv_mass = xp.exp(st.adapt.log_eps), st.adapt.inv_mass

            def stepping(inner: tuple[Any, Any, Any]) -> Any:
                _, ended, i = inner
                return (i < block) & ~xp.any(ended)

            def one_pass(inner: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
                ks, _, i = inner
                ks, ended = kernel.step(ks, eps, inv_mass, u_block[i])
                return ks, ended, i + 1

            ks, ended, i = be.while_loop(stepping, one_pass, (st.kernel, st.it < 0, i))
            u, z = u_block[i - 1], z_block[i - 1]  # the numbers of the segment's last pass
            # The draw buffers stay out of the branch: a compiled branch that takes them
            # copies them; the write below is in place. A chain that records nothing
            # writes to the spare last column.
            (it, point, ks, adapt), (column, x, row) = be.cond(
                xp.any(ended), finish, carry_on, st, ks, ended, u, z
            )
            where = (chain_index, column)
            # Integer-array updates (JAX's .at[], setitem elsewhere): one column per chain.
            new = LoopState(
                it=it,
                point=point,
                kernel=ks,
                adapt=adapt,
                draws=st.draws,
                samples=xpx.at(st.samples, where).set(x),
                stats=xpx.at(st.stats, where).set(row),
            )
            return new, i

        st, _ = be.while_loop(in_block, one_segment, (st._replace(draws=carry), 0))
        return st  # type: ignore[no-any-return]

    state = be.while_loop(running, one_block, state)
    s = config.num_samples
    return (
        state.samples[:, :s, :],
        state.stats[:, :s, :],
        xp.exp(state.adapt.log_eps),
        state.adapt.inv_mass,
    )


# -- random numbers ------------------------------------------------------------------------
#: Random numbers per block at most (about 2 MiB in float64), and passes per block at most.
BLOCK_NUMBERS, MAX_BLOCK = 2**18, 64


def _block_size(config: Config) -> int:
    """Passes per block: ``MAX_BLOCK``, fewer where many chains make a block large."""
    per_pass = config.chains * (config.dim + UNIFORMS)
    return max(1, min(MAX_BLOCK, BLOCK_NUMBERS // per_pass))


def _draws(be: Backend, key: Any, config: Config, block: int, dtype: Any, first: Any) -> Any:
    """The random stream: keys in the carry where the loop compiles, a block counter (a
    Python int) otherwise, where a host key grows with every split."""
    cls = _KeyBlocks if getattr(be.control, "compiled", False) else _HostBlocks
    return cls(be, key, config, block, dtype, first)


def _first_block(draws: Any) -> tuple[Any, Any, Any]:
    return draws.block(draws.init())  # type: ignore[no-any-return]


class _KeyBlocks:
    """Each block splits the carried key: uniforms ``(B, C, 4)`` and normals ``(B, C, d)``,
    the rows of chains ``first, ..., first + C - 1`` of the run's."""

    def __init__(
        self, be: Backend, key: Any, config: Config, block: int, dtype: Any, first: Any
    ) -> None:
        self.be, self.key, self.dtype, self.size = be, key, dtype, block
        self.total, self.dim = config.chains, config.dim
        self.rows = None
        if config.batch < config.chains:  # (all of them: no gather)
            xp = be.xp
            self.rows = first + xp.arange(config.batch, dtype=xp.int32, device=be.device)

    def init(self) -> Any:
        return self.key

    def block(self, key: Any) -> tuple[Any, Any, Any]:
        """Return the next carry and one block's uniforms and standard normals."""
        key, k_u, k_z = self.be.random.split(key, 3)
        rnd, shape = self.be.random, (self.size, self.total)
        u = rnd.uniform(k_u, (*shape, UNIFORMS), dtype=self.dtype)
        z = rnd.normal(k_z, (*shape, self.dim), dtype=self.dtype)
        if self.rows is not None:
            xp = self.be.xp
            u, z = xp.take(u, self.rows, axis=1), xp.take(z, self.rows, axis=1)
        return key, u, z


class _HostBlocks(_KeyBlocks):
    """Block ``b``'s key is two splits deep (``FANOUT`` blocks per first-level key), so a
    host key never grows with the run's length; the carry is the block number."""

    FANOUT = 1024

    def __init__(
        self, be: Backend, key: Any, config: Config, block: int, dtype: Any, first: Any
    ) -> None:
        super().__init__(be, key, config, block, dtype, first)
        self._outer = be.random.split(key, self.FANOUT)
        self._inner: tuple[int, tuple[Any, ...]] = (-1, ())

    def init(self) -> int:
        return 0

    def block(self, number: int) -> tuple[Any, Any, Any]:  # type: ignore[override]
        outer, j = divmod(number, self.FANOUT)
        if outer >= self.FANOUT:
            raise RuntimeError(
                f"the run took more than {self.FANOUT**2 * self.size} leapfrog passes; "
                "lower max_depth or the number of iterations"
            )
        if outer != self._inner[0]:
            self._inner = (outer, self.be.random.split(self._outer[outer], self.FANOUT))
        return (number + 1, *super().block(self._inner[1][j])[1:])
