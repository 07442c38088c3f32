"""Scrambled Sobol' points, made on the host with numpy from Joe and Kuo's table.

The points are the same on every backend and every MPI rank for one seed: they are a
design, made once on the host (a few bytes per point) and moved to the backend by the
caller. Scrambling is Owen's nested uniform scrambling, hashed as in Burley ("Practical
hash-based Owen scrambling", JCGT 9(4), 2020): the flip of each binary digit of a point is
a random bit chosen by the digits before it, drawn from a keyed hash instead of a stored
tree. It keeps each dimension's first ``2**m`` points one in each interval of width
``2**-m`` (the net property), and makes every point uniform on ``[0, 1)``.
"""

from __future__ import annotations

import functools

import numpy as np

from anyxp.gsa._directions import JOE_KUO
from anyxp.random import Key

__all__ = ["BITS", "MAX_DIMS", "direction_numbers", "scrambled", "sobol_integers"]

#: Binary digits of the unscrambled points; a design holds at most ``2**BITS`` points.
BITS = 32
#: Dimensions in the table (and the first dimension, which has no line).
MAX_DIMS = 1 + len(JOE_KUO.splitlines())

_MASK = (1 << 64) - 1


@functools.cache
def _table() -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """``(s, a, m)`` of each table line, parsed on first use."""
    rows = []
    for line in JOE_KUO.splitlines():
        _, s, a, *m = (int(v) for v in line.split())
        rows.append((s, a, tuple(m)))
    return tuple(rows)


def direction_numbers(dims: int) -> np.ndarray:
    """Return the direction numbers ``V[j, k] = m_{k+1} * 2**(BITS-k-1)`` of ``dims`` dimensions.

    Bit ``k`` of a point's index contributes ``V[:, k]`` to it (by XOR); the numbers past
    the table's ``m_1 ... m_s`` follow Joe and Kuo's recurrence of the polynomial ``a``.
    """
    if not 1 <= dims <= MAX_DIMS:
        raise ValueError(f"Sobol' points come in 1 to {MAX_DIMS} dimensions, not {dims}")
    v = np.zeros((dims, BITS), dtype=np.uint64)
    v[0] = [1 << (BITS - 1 - k) for k in range(BITS)]  # m_k = 1: van der Corput
    for j, (s, a, m) in enumerate(_table()[: dims - 1], start=1):
        row = [m[k] << (BITS - 1 - k) for k in range(min(s, BITS))]
        for k in range(s, BITS):
            new = row[k - s] ^ (row[k - s] >> s)
            for i in range(1, s):
                if (a >> (s - 1 - i)) & 1:
                    new ^= row[k - i]
            row.append(new)
        v[j] = row
    return v


def sobol_integers(n: int, dims: int) -> np.ndarray:
    """Return the first ``n`` unscrambled Sobol' points as ``BITS``-bit integers, ``(n, dims)``.

    ``n`` is a power of two. The order is the usual Gray-code order (point ``i`` is the XOR
    of the direction numbers of the set bits of ``i ^ (i >> 1)``), as in Joe and Kuo's
    code and ``scipy.stats.qmc.Sobol``; the first point is 0.
    """
    m = n.bit_length() - 1
    if n != 1 << m or m > BITS:
        raise ValueError(f"n must be a power of two up to 2**{BITS}, got {n}")
    return _integers_by_dimension(n, dims).T


def _integers_by_dimension(n: int, dims: int) -> np.ndarray:
    """:func:`sobol_integers` transposed, ``(dims, n)``: each dimension's points contiguous."""
    v = direction_numbers(dims)
    x = np.zeros((dims, n), dtype=np.uint64)
    for k in range(n.bit_length() - 1):  # natural order by doubling: x[2**k + i] = x[i] ^ V_k
        x[:, 1 << k : 2 << k] = x[:, : 1 << k] ^ v[:, k : k + 1]
    i = np.arange(n, dtype=np.uint64)
    return x[:, i ^ (i >> np.uint64(1))]


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer: a bijection of uint64 whose every output bit depends on all
    input bits (numpy's uint64 arithmetic wraps, as the hash wants)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hash(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """64 random bits for each ``counter`` under ``key``: SplitMix64's output function."""
    return _mix(key + (counter + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15))


def scrambled(n: int, dims: int, key: Key) -> np.ndarray:
    """Return the first ``n`` Owen-scrambled Sobol' points, ``(n, dims)`` floats in ``[0, 1)``.

    ``n`` is a power of two, ``2**m``. The first ``m`` digits of every point are scrambled
    one level at a time: digit ``j`` flips by a hash of the digits before it, the
    dimension's key for that level. Below digit ``m`` every point has its own prefix, so
    nested scrambling draws its remaining digits independently per point: one hash of the
    prefix gives them all, to float64's 53 bits. The hash keys come from ``key``, an
    :class:`anyxp.random.Key` (host-side: the same points on every backend).
    """
    m = n.bit_length() - 1
    u = _integers_by_dimension(n, dims)
    keys = key.seed_sequence().generate_state(dims * (m + 1), np.uint64)
    keys = keys.reshape(m + 1, dims, 1)
    top = u >> np.uint64(BITS - m)  # the first m digits, as an integer below 2**m
    # Each level's flips depend on a prefix only: 2**j hashes at level j, joined into one
    # table of every prefix's flips by doubling (n - 1 hashes a dimension in all).
    flips = np.zeros((dims, 1), dtype=np.uint64)
    for j in range(m):
        bit = _hash(np.arange(1 << j, dtype=np.uint64), keys[j]) >> np.uint64(63)
        flips = np.repeat(flips | (bit << np.uint64(m - 1 - j)), 2, axis=1)
    flips = np.take_along_axis(flips, top.astype(np.intp), axis=1)
    tail = _hash(top, keys[m]) >> np.uint64(m)  # 64 - m random digits below the first m
    out = ((top ^ flips) << np.uint64(64 - m)) | tail
    return ((out >> np.uint64(11)).astype(np.float64) * 2.0**-53).T
