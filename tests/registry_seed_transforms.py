"""Registry entries (``name -> factory(learning_rate)``) of the seed transforms family, merged into registry.py.

Annealed gradient noise (seed 003), Polyak's step size and its clipped form (seed 004), and the
normalised gradient of seed 004's ODE view. The Polyak entries need the ``value`` extra argument.
"""

from __future__ import annotations

import gradflow as gf
from gradflow.optimizers.polyak import clipped_polyak_sgd, polyak_sgd
from gradflow.transforms.noise import add_noise
from gradflow.transforms.normalize import normalize_by_update_norm


def _decaying_eta(count):
    """A plain function of the step count as ``eta`` (module level, so jit sees the same static schedule)."""
    return 0.1 / (1.0 + count)


OPTIMIZERS: dict = {
    "noisy_sgd": lambda lr: gf.chain(add_noise(0.01, 0.55, key=0), gf.sgd(lr)),
    "noisy_adam_schedule": lambda lr: gf.chain(add_noise(_decaying_eta, 1.0, seed=3), gf.adam(lr)),
    "polyak_sgd": lambda lr: polyak_sgd(scaling=lr),
    "polyak_sgd_plus_capped": lambda lr: polyak_sgd(max_learning_rate=lr, f_min=0.5, eps=1e-3, variant="sps+"),
    "clipped_polyak_sgd": lambda lr: clipped_polyak_sgd(lr, max_inverse_norm=2.0),
    "stale_sgd": lambda lr: gf.chain(gf.stale_gradients(2), gf.sgd(lr, momentum=0.5)),
    "normalized_sgd": lambda lr: gf.chain(normalize_by_update_norm(eps=0.0), gf.scale_by_learning_rate(lr)),
}

# Optimizers whose update needs the ``value`` extra argument (the loss at params).
NEEDS_VALUE = {"polyak_sgd", "polyak_sgd_plus_capped", "clipped_polyak_sgd"}
