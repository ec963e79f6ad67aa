"""Registry entries (``name -> factory(learning_rate)``) of the wrappers family, merged into registry.py.

The parameters of the law suites are ``{"dense": {"w": (3, 2), "b": (2,)}, "scale": ((),)}``. Label and
mask functions are defined once here: they are static data of the optimizer, and a new function
object per factory call would recompile the jitted step (the compile-once law would catch that).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gradflow as gf
from gradflow import wrappers


def by_rank(params):
    """Label matrices and vectors/scalars apart."""
    return jax.tree.map(lambda p: "matrix" if jnp.ndim(p) >= 2 else "other", params)


def matrices(params):
    """Mask: the leaves of rank >= 2."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


OPTIMIZERS: dict = {
    # a prefix label: "scale" labels the whole tuple subtree
    "partition_adam_sgd": lambda lr: wrappers.partition(
        {"fast": gf.adam(lr), "slow": gf.sgd(lr, momentum=0.9)}, {"dense": {"w": "fast", "b": "slow"}, "scale": "slow"}
    ),
    "partition_by_rank": lambda lr: wrappers.partition(
        {"matrix": gf.adamw(lr, weight_decay=1e-2), "other": gf.rmsprop(lr)}, by_rank
    ),
    "masked_weight_decay_adam": lambda lr: gf.chain(
        wrappers.masked(gf.add_decayed_weights(1e-2), matrices), gf.adam(lr)
    ),
    "freeze_bias_sgd": lambda lr: gf.chain(
        gf.sgd(lr, momentum=0.9), wrappers.freeze({"dense": {"w": False, "b": True}, "scale": False})
    ),
    "apply_if_finite_adam": lambda lr: wrappers.apply_if_finite(gf.adam(lr), max_consecutive_errors=5),
    "zero_nans_sgd": lambda lr: gf.chain(wrappers.zero_nans(), gf.sgd(lr, momentum=0.9)),
    "multi_steps_adam": lambda lr: wrappers.multi_steps(gf.adam(lr), every_k_schedule=2),
    "lookahead_adam": lambda lr: wrappers.lookahead(gf.adam(lr), sync_period=2, slow_step_size=0.5, reset_state=True),
    "ema_params_sgd": lambda lr: gf.chain(gf.sgd(lr, momentum=0.9), wrappers.average_params(0.9, debias=True)),
}
