"""Random numbers: explicit keys, reproducible for a seed, on the backend's device."""

from __future__ import annotations

import numpy as np
import pytest

from ._helpers import native, requires

pytestmark = requires("random")


def test_same_key_same_numbers(backend):
    r = backend.random
    a = backend.to_numpy(r.normal(r.key(42), (64,)))
    b = backend.to_numpy(r.normal(r.key(42), (64,)))
    np.testing.assert_array_equal(a, b)
    c = backend.to_numpy(r.normal(r.key(43), (64,)))
    assert not np.array_equal(a, c), "different seeds gave the same numbers"


def test_split_keys_give_independent_streams(backend):
    r = backend.random
    key = r.key(0)
    k1, k2 = r.split(key)
    draws = [backend.to_numpy(r.uniform(k, (64,))) for k in (key, k1, k2)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not np.array_equal(draws[i], draws[j])
    again = r.split(r.key(0))
    np.testing.assert_array_equal(backend.to_numpy(r.uniform(again[1], (64,))), draws[2])


def test_draws_are_native_with_backend_dtype(backend):
    r = backend.random
    for x in (r.normal(r.key(1), (3, 2)), r.uniform(r.key(2), (5,), minval=-1.0, maxval=2.0)):
        native(backend, x)
        assert x.dtype == backend.float_dtype
    assert tuple(r.normal(r.key(1), (3, 2)).shape) == (3, 2)


def test_distribution_moments(backend):
    r = backend.random
    n = 20_000
    z = backend.to_numpy(r.normal(r.key(7), (n,))).astype(np.float64)
    u = backend.to_numpy(r.uniform(r.key(8), (n,), minval=-1.0, maxval=3.0)).astype(np.float64)
    # Five standard errors: a correct generator fails this about once in 3.5 million.
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.std() - 1) < 5 * np.sqrt(0.5 / n)
    assert u.min() >= -1.0 and u.max() < 3.0
    assert abs(u.mean() - 1.0) < 5 * (4 / np.sqrt(12)) / np.sqrt(n)


def test_bad_seed_is_a_clear_error(backend):
    with pytest.raises(ValueError, match="seed"):
        backend.random.key(-1)
