"""Random numbers from explicit keys: reproducible for a seed, no hidden global state.

The interface is JAX's: ``key = be.random.key(seed)``, ``k1, k2 = be.random.split(key)``,
``be.random.normal(k1, (3,))``. JAX uses its own keys. Every other backend uses
:class:`Key`, a numpy ``SeedSequence`` address: splitting appends to the spawn path, so
streams are independent, and the same key always gives the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["HostRandom", "Key", "as_shape"]


@dataclass(frozen=True)
class Key:
    """An immutable random key: a seed and a spawn path."""

    seed: int
    path: tuple[int, ...] = ()

    def seed_sequence(self) -> np.random.SeedSequence:
        """Return the numpy ``SeedSequence`` this key names."""
        return np.random.SeedSequence(self.seed, spawn_key=self.path)

    def seed64(self) -> int:
        """Return a 63-bit integer derived from the key, to seed a library generator."""
        return int(self.seed_sequence().generate_state(1, np.uint64)[0] >> np.uint64(1))


def as_shape(shape: int | tuple[int, ...]) -> tuple[int, ...]:
    """Return ``shape`` as a tuple of ints."""
    return (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)


class HostRandom:
    """Keys and draws for a backend that has no key-based generator of its own.

    Numbers are drawn on the host with numpy's Philox generator and moved to the
    backend's device with ``asarray``; a plugin overrides :meth:`_generator_draw` to
    draw natively on its device instead.
    """

    def __init__(self, backend: Any) -> None:
        self._asarray = backend.asarray
        self._float_dtype = backend.float_dtype
        self._device = backend.device

    def key(self, seed: int) -> Key:
        """Return the key for an integer seed."""
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        return Key(int(seed))

    def split(self, key: Key, num: int = 2) -> tuple[Key, ...]:
        """Return ``num`` new independent keys derived from ``key``."""
        self._check(key)
        return tuple(Key(key.seed, (*key.path, i)) for i in range(num))

    def _check(self, key: Any) -> None:
        if not isinstance(key, Key):
            raise TypeError(
                f"expected a key from be.random.key(seed), got {type(key).__name__}; "
                "keys are explicit: make one with be.random.key(seed) and split it."
            )

    def _host(self, key: Key) -> np.random.Generator:
        return np.random.Generator(np.random.Philox(key.seed_sequence()))

    # What a plugin overrides to draw natively on its device ---------------------------
    def _normal(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._asarray(self._host(key).standard_normal(shape), dtype=dtype)

    def _uniform01(self, key: Key, shape: tuple[int, ...], dtype: Any) -> Any:
        return self._asarray(self._host(key).random(shape), dtype=dtype)

    def _integers(self, key: Key, shape: tuple[int, ...], minval: int, maxval: int) -> Any:
        return self._asarray(self._host(key).integers(minval, maxval, shape))

    # The public draws --------------------------------------------------------------------
    def normal(self, key: Key, shape: int | tuple[int, ...] = (), dtype: Any = None) -> Any:
        """Return standard normal samples of ``shape``."""
        self._check(key)
        return self._normal(key, as_shape(shape), self._float_dtype if dtype is None else dtype)

    def uniform(
        self,
        key: Key,
        shape: int | tuple[int, ...] = (),
        dtype: Any = None,
        minval: float = 0.0,
        maxval: float = 1.0,
    ) -> Any:
        """Return samples uniform on ``[minval, maxval)``."""
        self._check(key)
        u = self._uniform01(key, as_shape(shape), self._float_dtype if dtype is None else dtype)
        return u * (maxval - minval) + minval

    def integers(self, key: Key, shape: int | tuple[int, ...], minval: int, maxval: int) -> Any:
        """Return integers uniform on ``[minval, maxval)``."""
        self._check(key)
        return self._integers(key, as_shape(shape), minval, maxval)
