"""The rest of the array-API functions anyxp's algorithms call, each against numpy.

``test_arrays`` covers what the ODE solvers need; these are what the other families
add: sorting and ranks (MCMC diagnostics), the FFT extension (autocovariances, fast
Poisson preconditioners), products and norms (GMRES), axis moves (ensembles across
ranks) and statistics. A plugin without one of them fails ``anyxp check`` here instead
of inside an algorithm.
"""

from __future__ import annotations

import numpy as np

from ._helpers import about, check

pytestmark = about("arrays")

DATA = np.array([[0.5, -1.25, 2.0, 3.5], [1.5, 0.25, -0.75, 4.0], [2.5, 1.0, 0.125, -3.0]])


def test_sorting_and_ranks(backend):
    xp = backend.xp
    x = backend.asarray(DATA)
    check(backend, xp.sort(x, axis=1), np.sort(DATA, axis=1), what="sort")
    order = xp.argsort(x, axis=1, stable=True)
    check(backend, order, np.argsort(DATA, axis=1, kind="stable"), what="argsort")
    check(
        backend, xp.take_along_axis(x, order, axis=1), np.sort(DATA, axis=1), what="take_along_axis"
    )
    check(backend, xp.flip(x, axis=1), DATA[:, ::-1], what="flip")
    check(backend, xp.roll(x, 1, axis=1), np.roll(DATA, 1, axis=1), what="roll")


def test_axes_and_products(backend):
    xp = backend.xp
    x = backend.asarray(DATA)
    moved = xp.moveaxis(xp.reshape(x, (3, 2, 2)), 0, 2)
    check(backend, moved, np.moveaxis(DATA.reshape(3, 2, 2), 0, 2), what="moveaxis")
    check(backend, xp.matrix_transpose(x), DATA.T, what="matrix_transpose")
    check(backend, xp.vecdot(x, x), np.sum(DATA * DATA, axis=-1), what="vecdot")
    a, b = x[:, 0], x[:, 1]
    check(backend, xp.hypot(a, b), np.hypot(DATA[:, 0], DATA[:, 1]), what="hypot")
    buffer = xp.empty((2, 3), dtype=x.dtype, device=backend.device)
    assert tuple(buffer.shape) == (2, 3) and buffer.dtype == x.dtype


def test_statistics_and_logic(backend):
    xp = backend.xp
    x = backend.asarray(DATA)
    check(backend, xp.var(x, axis=0), np.var(DATA, axis=0), what="var")
    check(backend, xp.std(x, axis=1, correction=1), np.std(DATA, axis=1, ddof=1), what="std")
    check(backend, xp.log(xp.abs(x)), np.log(np.abs(DATA)), what="log")
    nan = x / xp.where(x > 0, xp.ones_like(x), xp.zeros_like(x))  # inf or nan where x <= 0
    check(backend, xp.isnan(nan), np.isnan(DATA / np.where(DATA > 0, 1.0, 0.0)), what="isnan")
    check(backend, xp.logical_not(x > 0), ~(DATA > 0), what="logical_not")
    ints = xp.asarray([0, 1, 3, 5], dtype=xp.int64, device=backend.device)
    ones = xp.ones_like(ints)
    check(backend, xp.bitwise_left_shift(ones, ints), [1, 2, 8, 32], what="bitwise_left_shift")


def test_fft_and_complex_parts(backend):
    """The standard's FFT extension, real transforms both ways, and complex parts."""
    xp = backend.xp
    x = backend.asarray(DATA)
    spectrum = xp.fft.rfft(x, n=8, axis=-1)
    expected = np.fft.rfft(DATA, n=8, axis=-1)
    check(backend, xp.real(spectrum), expected.real, what="fft.rfft (real part)")
    check(backend, xp.imag(spectrum), expected.imag, what="fft.rfft (imaginary part)")
    power = spectrum * xp.conj(spectrum)  # |X|^2: real, up to rounding of its size
    scale = float(np.max(np.abs(expected)) ** 2)
    check(backend, xp.imag(power), np.zeros(expected.shape), atol=1e-5 * scale, what="conj")
    check(backend, xp.real(power), np.abs(expected) ** 2, what="conj (real part)")
    back = xp.fft.irfft(spectrum, n=8, axis=-1)
    check(backend, back[:, :4], DATA, what="fft.irfft")
