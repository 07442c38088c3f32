"""Saltelli's design: the rows the model is evaluated at, in SALib's order.

From ``n`` scrambled Sobol' points in ``2d`` dimensions, ``A`` holds the first ``d``
coordinates and ``B`` the last ``d``. Sample ``i`` is a group of rows, one after another:
``A_i``; ``AB_i^j`` for each parameter ``j`` (``A_i`` with coordinate ``j`` from ``B_i``);
with second-order indices, ``BA_i^j`` for each ``j`` (``B_i`` with coordinate ``j`` from
``A_i``); and ``B_i`` last. That is SALib's layout, so one matrix of outputs serves both
libraries. Rows are made on demand from ``A`` and ``B``, a block at a time, so that the
whole ``n (d + 2)`` by ``d`` matrix need never exist at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anyxp.gsa._points import scrambled
from anyxp.random import Key

__all__ = ["Design"]


@dataclass(frozen=True)
class Design:
    """The Saltelli design of ``n`` samples within ``bounds``, on the host.

    Attributes
    ----------
    base : numpy.ndarray
        ``(n, 2d)`` Sobol' points in the unit cube: ``A`` then ``B``, by columns.
    bounds : numpy.ndarray
        ``(d, 2)``: each parameter's ``(low, high)``.
    second_order : bool
        Whether the groups hold the ``BA`` rows.
    """

    base: np.ndarray
    bounds: np.ndarray
    second_order: bool

    @classmethod
    def sobol(cls, bounds: np.ndarray, n: int, second_order: bool, seed: int) -> Design:
        """The design on ``n`` (a power of two) scrambled Sobol' points of ``seed``.

        The scrambling draws from ``Key(seed, (0,))``; the bootstrap from ``(1, r)``.
        """
        return cls(scrambled(n, 2 * bounds.shape[0], Key(seed, (0,))), bounds, second_order)

    @property
    def n(self) -> int:
        """Samples: rows of ``A``, and groups of rows in the design."""
        return int(self.base.shape[0])

    @property
    def d(self) -> int:
        """Parameters."""
        return int(self.bounds.shape[0])

    @property
    def group(self) -> int:
        """Rows per sample: ``d + 2``, or ``2d + 2`` with second-order indices."""
        return (2 if self.second_order else 1) * self.d + 2

    @property
    def rows(self) -> int:
        """Rows of the design: model evaluations."""
        return self.n * self.group

    def unit_rows(self, index: np.ndarray) -> np.ndarray:
        """Return the design's rows ``index`` in the unit cube, ``(len(index), d)``."""
        d, group = self.d, self.group
        sample, slot = np.divmod(np.asarray(index, dtype=np.int64), group)
        a, b = self.base[sample, :d], self.base[sample, d:]
        column = np.arange(d)
        slot = slot[:, None]
        from_b = (slot == group - 1) | (slot == column + 1)  # B_i, AB_i^j
        if self.second_order:  # BA_i^j: all of B_i but column j
            from_b |= (slot > d) & (slot < group - 1) & (slot != column + d + 1)
        return np.where(from_b, b, a)

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        """Return the design's rows ``index`` scaled to the bounds, ``(len(index), d)``."""
        low, high = self.bounds[:, 0], self.bounds[:, 1]
        return self.unit_rows(index) * (high - low) + low
