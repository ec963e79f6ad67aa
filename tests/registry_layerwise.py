"""Registry entries (``name -> factory(learning_rate)``) of the layerwise family, merged into registry.py.

LARS, LAMB and Rprop, and the per-leaf transforms of issue 5 (block-RMS and adaptive clipping, gradient
centralization, the trust ratio) each inside a small optimizer, so that every one of them meets the laws.
"""

from __future__ import annotations

import jax

import gradflow as gf
from gradflow.optimizers.layerwise import lamb, lars
from gradflow.optimizers.rprop import rprop
from gradflow.transforms.centralize import centralize
from gradflow.transforms.clipping import adaptive_grad_clip, clip_by_block_rms
from gradflow.transforms.rprop import scale_by_rprop
from gradflow.transforms.trust_ratio import scale_by_trust_ratio


def _vectors(params):
    """A callable mask: the leaves of rank 1 (biases)."""
    return jax.tree.map(lambda p: p.ndim == 1, params)


OPTIMIZERS: dict = {
    "lars": lambda lr: lars(lr),
    "lars_nesterov_decay_masked": lambda lr: lars(
        lr,
        weight_decay=1e-2,
        weight_decay_mask={"dense": {"w": True, "b": False}, "scale": False},
        trust_coefficient=0.02,
        eps=1e-6,
        trust_ratio_mask={"dense": True, "scale": False},
        momentum=0.8,
        nesterov=True,
    ),
    "lamb": lambda lr: lamb(lr),
    "lamb_weight_decay_mask": lambda lr: lamb(lr, b1=0.8, eps_root=1e-8, weight_decay=0.1, mask=_vectors),
    "rprop": lambda lr: rprop(lr),
    "rprop_backtracking": lambda lr: rprop(lr, eta_minus=0.4, eta_plus=1.3, weight_backtracking=True),
    "rprop_bounded_in_chain": lambda lr: gf.chain(
        scale_by_rprop(lr, min_step_size=1e-3, max_step_size=0.02), gf.scale_by_learning_rate(1.0)
    ),
    "block_rms_clipped_sgd": lambda lr: gf.chain(clip_by_block_rms(0.3), gf.sgd(lr, momentum=0.9)),
    "adaptive_clipped_sgd": lambda lr: gf.chain(adaptive_grad_clip(0.05), gf.sgd(lr, momentum=0.9)),
    "adaptive_clipped_adam": lambda lr: gf.chain(adaptive_grad_clip(0.1, eps=1e-2), gf.adam(lr)),
    "centralized_adam": lambda lr: gf.chain(centralize(), gf.adam(lr)),
    "centralized_sgd_axis0": lambda lr: gf.chain(centralize(axis=0), gf.sgd(lr)),
    "trust_ratio_sgd": lambda lr: gf.chain(
        scale_by_trust_ratio(min_norm=0.1, trust_coefficient=0.5, eps=1e-3), gf.sgd(lr)
    ),
}
