"""Physics-informed operator learning written once against the array API: ``anyxp.pinn``.

A DeepONet with explicit parameters (:func:`deeponet_init`, :func:`deeponet_apply`), the
partial derivatives of a network's output with respect to its coordinates by zero
coordinate shift or per point (:func:`derivatives`), a physics-informed loss built from
residual terms (:class:`Term`, :func:`pinn_loss`), and a worked operator problem
(:func:`diffusion_reaction`, :func:`train_diffusion_reaction`). Derivatives come from the
backend's reverse-mode AD, ``be.ad.vjp``: jax and torch.
"""

from __future__ import annotations

from anyxp.pinn._deeponet import DeepONetParams, deeponet_apply, deeponet_init
from anyxp.pinn._derivatives import METHODS, derivatives
from anyxp.pinn._diffusion_reaction import (
    DiffusionReaction,
    OperatorFit,
    diffusion_reaction,
    train_diffusion_reaction,
)
from anyxp.pinn._loss import PINNLoss, Term, pinn_loss
from anyxp.pinn._orders import Orders

__all__ = [
    "METHODS",
    "DeepONetParams",
    "DiffusionReaction",
    "OperatorFit",
    "Orders",
    "PINNLoss",
    "Term",
    "deeponet_apply",
    "deeponet_init",
    "derivatives",
    "diffusion_reaction",
    "pinn_loss",
    "train_diffusion_reaction",
]
