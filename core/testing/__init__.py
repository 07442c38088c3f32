"""Testing helpers for code written with anyxp.

- :func:`assert_close`: compare arrays of any backend, checking namespace, dtype,
  device and shape as well as values.
- :func:`assert_backends_agree`: run one function on several backends and compare.
- :mod:`anyxp.testing.strategies`: hypothesis strategies for arrays, matrices and ODE
  problems on any backend.
- the pytest plugin (loaded automatically): a ``backend`` fixture over every installed
  backend and the ``anyxp_requires`` marker.
"""

from __future__ import annotations

from anyxp.testing._assert import assert_close
from anyxp.testing.differential import assert_backends_agree

__all__ = ["assert_backends_agree", "assert_close"]
