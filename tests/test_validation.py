"""Bad hyperparameters give a ValueError/TypeError at construction that names the argument and range."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

LEARNING_RATE_OPTIMIZERS = [
    gf.sgd, gf.nag, gf.adagrad, gf.rmsprop, gf.adam, gf.adamw, gf.nadam,
    gf.adamax, gf.amsgrad, gf.lion, gf.sign_sgd, gf.signum,
]  # fmt: skip


@pytest.mark.parametrize("factory", LEARNING_RATE_OPTIMIZERS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, np.array([0.1, -1.0])])
def test_bad_learning_rate(factory, bad):
    with pytest.raises(ValueError, match=rf"{factory.__name__}: learning_rate must be in \[0.0, inf\)"):
        factory(bad)


@pytest.mark.parametrize("factory", LEARNING_RATE_OPTIMIZERS, ids=lambda f: f.__name__)
def test_missing_learning_rate(factory):
    with pytest.raises(ValueError, match=rf"{factory.__name__}: learning_rate is required"):
        factory(None)


@pytest.mark.parametrize("bad", ["0.1", True, [0.1], object()])
def test_non_numeric_learning_rate(bad):
    with pytest.raises(TypeError, match="learning_rate must be a"):
        gf.adam(bad)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: gf.adam(0.1, b1=1.0), r"b1 must be in \[0.0, 1.0\), got 1.0"),
        (lambda: gf.adam(0.1, b2=-0.5), r"b2 must be in \[0.0, 1.0\), got -0.5"),
        (lambda: gf.adam(0.1, b2=math.nan), r"b2 must be in \[0.0, 1.0\)"),
        (lambda: gf.adam(0.1, eps=-1e-8), r"eps must be in \[0.0, inf\)"),
        (lambda: gf.adam(0.1, eps_root=-1.0), r"eps_root must be in \[0.0, inf\)"),
        (lambda: gf.rmsprop(0.1, decay=1.5), r"decay must be in \[0.0, 1.0\)"),
        (lambda: gf.rmsprop(0.1, momentum=1.0), r"rmsprop: momentum must be in \[0.0, 1.0\)"),
        (lambda: gf.sgd(0.1, momentum=-0.1), r"sgd: momentum must be in \[0.0, 1.0\)"),
        (lambda: gf.nag(0.1, momentum=2.0), r"nag: momentum must be in \[0.0, 1.0\)"),
        (lambda: gf.adadelta(rho=1.0), r"rho must be in \[0.0, 1.0\)"),
        (lambda: gf.adadelta(-1.0), r"adadelta: learning_rate must be in"),
        (lambda: gf.adagrad(0.1, initial_accumulator_value=-1.0), r"initial_accumulator_value must be in"),
        (lambda: gf.lion(0.1, weight_decay=-1.0), r"weight_decay must be in \[0.0, inf\)"),
        (lambda: gf.signum(0.1, beta=1.0), r"signum: beta must be in \[0.0, 1.0\)"),
        (lambda: gf.ewma(0.9, kind="sum"), r"kind must be one of 'average', 'momentum'"),
        (lambda: gf.clip(-1.0), r"clip: max_delta must be in \[0.0, inf\)"),
        (lambda: gf.clip_by_global_norm(math.nan), r"max_norm must be in"),
        (lambda: gf.debias(0.9, step_offset=-1), r"step_offset must be an integer >= 0"),
        (
            lambda: gf.add_decayed_weights(0.1, mask={"w": 1.5}),
            r"add_decayed_weights: mask leaves must be Python booleans",
        ),
    ],
)
def test_bad_hyperparameters(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_traced_hyperparameters_are_accepted():
    """Inside jit/vmap/grad a hyperparameter is a tracer: factories must build without checking it."""
    lrs = jnp.array([0.1, 0.2])
    batch = jax.vmap(lambda lr, b1: gf.adam(lr, b1=b1))(lrs, jnp.array([0.8, 0.9]))
    assert batch.transforms[1].learning_rate.shape == (2,)
    assert jax.jit(lambda lr: gf.sgd(lr, momentum=0.9))(0.3).transforms[1].learning_rate == pytest.approx(0.3)
