"""Small neural building blocks written once against the array API: ``anyxp.nn``.

An MLP with explicit parameters (:func:`mlp_init`, :func:`mlp_apply`) and functional
optimizers (:func:`adam`, :func:`sgd`), for the algorithms that train networks (neural
ODEs, PINNs, DeepONets) on any backend. Gradients come from the backend, ``be.ad``.
"""

from __future__ import annotations

from anyxp.nn._activations import ACTIVATIONS
from anyxp.nn._mlp import Activation, Params, mlp_apply, mlp_init, num_params
from anyxp.nn._optim import AdamState, Optimizer, Schedule, SGDState, adam, sgd
from anyxp.nn._parallel import batch_block, mean_over_ranks
from anyxp.nn._spiral import SpiralData, SpiralFit, spiral_data, spiral_rhs, train_spiral

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "AdamState",
    "Optimizer",
    "Params",
    "SGDState",
    "Schedule",
    "SpiralData",
    "SpiralFit",
    "adam",
    "batch_block",
    "mean_over_ranks",
    "mlp_apply",
    "mlp_init",
    "num_params",
    "sgd",
    "spiral_data",
    "spiral_rhs",
    "train_spiral",
]
