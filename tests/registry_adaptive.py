"""Registry entries (``name -> factory(learning_rate)``) of the adaptive family, merged into registry.py.

Yogi, RAdam, AdaBelief, NovoGrad, Adafactor and Schedule-Free, with default and non-default arguments.
The law problem's largest leaf is 3 × 2, so the factored Adafactor entries use
``min_dim_size_to_factor=2``; the RAdam entries with b2 = 0.9 reach ρ_t ≥ threshold within the few
steps of the scan laws (ρ_5 = 4.58), so both sides of the rectification are exercised.
"""

from __future__ import annotations

import gradflow as gf
from gradflow.optimizers import adaptive
from gradflow.schedules import warmup_constant_schedule
from gradflow.transforms.adaptive_moments import scale_by_yogi
from gradflow.transforms.schedule_free import schedule_free

OPTIMIZERS: dict = {
    "yogi": lambda lr: adaptive.yogi(lr),
    "yogi_custom": lambda lr: gf.chain(
        scale_by_yogi(0.8, 0.99, 1e-4, eps_root=1e-8, initial_accumulator_value=0.0), gf.scale_by_learning_rate(lr)
    ),
    "radam": lambda lr: adaptive.radam(lr),
    "radam_rectified_early": lambda lr: adaptive.radam(lr, b2=0.9, threshold=4.0),
    "radam_nesterov": lambda lr: adaptive.radam(lr, b1=0.8, b2=0.9, eps_root=1e-8, threshold=4.5, nesterov=True),
    "adabelief": lambda lr: adaptive.adabelief(lr),
    "adabelief_nesterov": lambda lr: adaptive.adabelief(lr, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-6, nesterov=True),
    "novograd": lambda lr: adaptive.novograd(lr),
    "novograd_weight_decay": lambda lr: adaptive.novograd(lr, b1=0.95, b2=0.5, eps=1e-8, weight_decay=1e-2),
    "adafactor": lambda lr: adaptive.adafactor(lr),
    "adafactor_factored_momentum": lambda lr: adaptive.adafactor(
        lr, min_dim_size_to_factor=2, momentum=0.9, weight_decay_rate=1e-3, clipping_threshold=0.5
    ),
    "adafactor_unfactored_no_param_scale": lambda lr: adaptive.adafactor(
        lr, decay_rate=0.5, multiply_by_parameter_scale=False, clipping_threshold=None, factored=False
    ),
    "schedule_free_sgd": lambda lr: adaptive.schedule_free_sgd(lr),
    "schedule_free_sgd_warmup": lambda lr: adaptive.schedule_free_sgd(lr, warmup_steps=3, weight_decay=1e-3),
    "schedule_free_adamw": lambda lr: adaptive.schedule_free_adamw(lr, weight_decay=1e-2),
    "schedule_free_adam_custom": lambda lr: schedule_free(
        gf.adam(warmup_constant_schedule(0.0, lr, 2), b1=0.0),
        warmup_constant_schedule(0.0, lr, 2),
        b1=0.7,
        weight_lr_power=1.0,
    ),
}
