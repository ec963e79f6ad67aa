"""Registry entries (``name -> factory(learning_rate)``) of optax's building blocks, merged into registry.py.

scale_by_schedule, scale_by_sign, keep_params_nonnegative, apply_every, named_chain, flatten, the
conditional wrappers, monitor / measure_with_ema / snapshot and selective_transform, each in a small
optimizer. Measure and condition functions are defined once here: they are static data of the optimizer,
and a new function object per factory call would recompile the jitted step.
"""

from __future__ import annotations

import gradflow as gf


def odd_steps(step):
    """The condition of the conditional wrappers: every other step, from the second."""
    return step % 2 == 1


def norm(updates):
    """The measure of the monitoring entries (``None`` leaves are skipped)."""
    return gf.tree.global_norm(updates)


OPTIMIZERS: dict = {
    # the schedule holds the learning rate as a leaf: vmapped over like any hyperparameter
    "scale_by_schedule_descent": lambda lr: gf.scale_by_schedule(gf.linear_schedule(-lr, -0.5 * lr, 4)),
    "scale_by_sign_descent": lambda lr: gf.chain(gf.scale_by_sign(), gf.scale_by_learning_rate(lr)),
    "nonnegative_sgd": lambda lr: gf.chain(gf.sgd(lr), gf.keep_params_nonnegative()),
    "apply_every_sgd": lambda lr: gf.chain(gf.sgd(lr, momentum=0.9), gf.apply_every(2)),
    "named_chain_adam": lambda lr: gf.named_chain(("scale", gf.scale(0.5)), ("adam", gf.adam(lr))),
    "flatten_adam": lambda lr: gf.flatten(gf.adam(lr)),
    "conditionally_mask_sgd": lambda lr: gf.conditionally_mask(gf.sgd(lr, momentum=0.9), odd_steps),
    "conditionally_transform_clip_sgd": lambda lr: gf.chain(
        gf.conditionally_transform(gf.clip(0.1), odd_steps), gf.sgd(lr)
    ),
    "monitor_sgd": lambda lr: gf.chain(
        gf.sgd(lr, momentum=0.9),
        gf.monitor({"norm": norm, "norm_ema": gf.measure_with_ema(norm, 0.9)}),
        gf.snapshot("last", norm),
    ),
    # freeze nothing: the "freeze" group is empty, which selective_transform accepts (partition would not)
    "selective_adam": lambda lr: gf.selective_transform(gf.adam(lr), freeze_mask=False),
}
