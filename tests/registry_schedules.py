"""Registry entries (``name -> factory(learning_rate)``) of the schedules family, merged into registry.py.

Each entry holds at least one schedule whose leaves depend on ``lr`` or on fixed numbers, as the
learning rate or as another hyperparameter (momentum, b1, weight decay), so the laws (stable state in
scan, jit == eager, one compilation for any lr, vmap == loop, grad through lr, dtypes) cover the
ScheduleState machinery and every schedule class. The law runs take 5 steps: the step counts below put
boundaries inside them.
"""

from __future__ import annotations

import gradflow as gf
from gradflow import schedules
from gradflow.transforms.plateau import reduce_on_plateau

OPTIMIZERS: dict = {
    "adam_warmup_cosine": lambda lr: gf.adam(
        schedules.warmup_cosine_decay_schedule(0.0, lr, warmup_steps=2, decay_steps=6, end_value=0.1 * lr)
    ),
    "sgd_momentum_schedule": lambda lr: gf.sgd(lr, momentum=schedules.linear_schedule(0.5, 0.9, transition_steps=3)),
    # Seed 003's decay η₀·10^(−t/r) with r = 2.
    "sgd_seed_exponential_decay": lambda lr: gf.sgd(
        schedules.exponential_decay(lr, transition_steps=2, decay_rate=0.1)
    ),
    "adamw_weight_decay_schedule": lambda lr: gf.adamw(
        schedules.cosine_decay_schedule(lr, decay_steps=4, alpha=0.1),
        weight_decay=schedules.piecewise_constant_schedule(1e-2, {2: 0.5, 4: 0.0}),
    ),
    "adam_b1_schedule": lambda lr: gf.adam(lr, b1=schedules.polynomial_schedule(0.5, 0.9, power=2, transition_steps=4)),
    "rmsprop_onecycle": lambda lr: gf.rmsprop(schedules.linear_onecycle_schedule(6, lr)),
    "sgd_sgdr_then_staircase": lambda lr: gf.sgd(
        schedules.join_schedules(
            [
                schedules.sgdr_schedule([dict(init_value=0.0, peak_value=lr, warmup_steps=1, decay_steps=2)] * 2),
                schedules.exponential_decay(lr, 1, 0.5, staircase=True, end_value=0.2 * lr),
            ],
            [3],
        ),
        momentum=0.9,
    ),
    # reads the value= extra argument, which the law suite passes to every update
    "adam_reduce_on_plateau": lambda lr: gf.chain(gf.adam(lr), reduce_on_plateau(factor=0.5, patience=1)),
}
