"""Every optimizer gradflow ships, as ``name -> factory(learning_rate)``, for the law suites.

A new optimizer joins the laws of DESIGN.md by adding one line here, or in the registry module of its
family (``registry_<family>.py``, merged below).
"""

from __future__ import annotations

import importlib

import gradflow as gf

FAMILIES = (
    "schedules",
    "wrappers",
    "seed_transforms",
    "layerwise",
    "adaptive",
    "second_order",
    "second_order_lbfgs",
    "optax_blocks",
)

OPTIMIZERS = {
    "sgd": lambda lr: gf.sgd(lr),
    "sgd_momentum": lambda lr: gf.sgd(lr, momentum=0.9),
    "sgd_nesterov": lambda lr: gf.sgd(lr, momentum=0.9, nesterov=True),
    "nag": lambda lr: gf.nag(lr, momentum=0.9),
    "adagrad": lambda lr: gf.adagrad(lr),
    "adagrad_textbook": lambda lr: gf.adagrad(lr, initial_accumulator_value=0.0, eps=1e-10),
    "rmsprop": lambda lr: gf.rmsprop(lr),
    "rmsprop_centered_momentum": lambda lr: gf.rmsprop(lr, centered=True, momentum=0.9),
    "adadelta": lambda lr: gf.adadelta(lr, weight_decay=1e-3),
    "adam": lambda lr: gf.adam(lr),
    "adam_textbook": lambda lr: gf.adam(lr, eps=0.0, eps_root=1e-8),
    "adamw": lambda lr: gf.adamw(lr, weight_decay=1e-2),
    "nadam": lambda lr: gf.nadam(lr),
    "adamax": lambda lr: gf.adamax(lr),
    "amsgrad": lambda lr: gf.amsgrad(lr),
    "amsgrad_paper": lambda lr: gf.amsgrad(lr, bias_correction_mu=False, bias_correction_nu=False),
    "lion": lambda lr: gf.lion(lr),
    "sign_sgd": lambda lr: gf.sign_sgd(lr),
    "signum": lambda lr: gf.signum(lr),
    "clipped_adamw": lambda lr: gf.chain(gf.clip_by_global_norm(1.0), gf.clip(0.5), gf.adamw(lr)),
    "injected_adam": lambda lr: gf.inject_hyperparams(gf.adam)(learning_rate=lr, b1=0.8),
}

# Optimizers whose update needs the ``grad_fn`` extra argument.
NEEDS_GRAD_FN = {"nag"}

for _family in FAMILIES:
    _module = importlib.import_module(f"registry_{_family}")
    _clash = sorted(set(_module.OPTIMIZERS) & set(OPTIMIZERS))
    assert not _clash, f"registry_{_family} repeats {_clash}"
    OPTIMIZERS.update(_module.OPTIMIZERS)
    NEEDS_GRAD_FN |= getattr(_module, "NEEDS_GRAD_FN", set())
