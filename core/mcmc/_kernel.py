"""What the shared sampling loop asks of a kernel (HMC, NUTS): one leapfrog step at a time.

A kernel works on a batch of chains. ``start`` begins every chain's iteration from a
point and a momentum draw; ``restart`` does so for the chains of a mask only; ``step``
takes one leapfrog step for every chain and says which chains finished their iteration
with it; ``transition`` reads a finished iteration's draw. Because every call is one
step for every chain, a chain that finishes early starts its next iteration at once
while others go on: no chain waits for another's trajectory.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

__all__ = ["UNIFORMS", "Kernel", "Transition"]

#: Columns of the uniform draws each step hands a kernel, ``u`` of shape (C, UNIFORMS):
#: 0 and 1 for the step's own choices, 2 for a new direction, 3 for a restart's.
UNIFORMS = 4


class Transition(NamedTuple):
    """What a finished iteration gives each chain; every field has a leading chain axis."""

    point: Any  # the draw, a point [x | grad | logp]
    accept: Any  # acceptance statistic: drives dual averaging, reported per draw
    divergent: Any
    steps: Any  # leapfrog steps taken
    depth: Any  # tree depth (NUTS), 0 for HMC


class Kernel(Protocol):
    """A transition kernel of Hamiltonian Monte Carlo, stepped one leapfrog at a time."""

    name: str

    def start(self, point: Any, z: Any, inv_mass: Any, u: Any) -> Any:
        """Begin every chain's iteration at ``point`` with momentum ``M^{1/2} z``."""
        ...

    def restart(self, state: Any, mask: Any, point: Any, z: Any, inv_mass: Any, u: Any) -> Any:
        """Begin a new iteration for the chains where ``mask`` holds; keep the others."""
        ...

    def step(self, state: Any, eps: Any, inv_mass: Any, u: Any) -> tuple[Any, Any]:
        """Take one leapfrog step per chain; return the state and which chains finished."""
        ...

    def transition(self, state: Any, inv_mass: Any, u: Any) -> Transition:
        """Read the draw of the chains whose iteration finished with this step's ``u``."""
        ...
