"""A battery of bad inputs: each ends in an error that names the argument or the pytree path, or in
documented safe behaviour checked with numbers. Nothing silently ascends; no NaN reaches the parameters
through ``apply_if_finite``.

One parametrized case per probe (``ERRORS``: the exception type and a message naming the culprit;
``SAFE``: the documented outcome). A probe that covers many optimizers counts once. The README's
reliability section lists the probes. Related cases pinned elsewhere and not repeated here:
tests/test_validation.py (float NaN/inf/negative/array/None learning rates of 12 optimizers, single
out-of-range hyperparameters), tests/test_core.py (integer params in ``adam.init`` and ``apply_updates``,
Adam's tree-mismatch messages), tests/test_wrappers_finite.py (``apply_if_finite`` against NumPy and
optax), tests/test_dtypes.py (bf16 momentum in ``lax.scan``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from bad_input_probes import error_probe
from conftest import grad, loss, make_params

import gradflow as gf

# A tree with a nested dict and a tuple node; gradients with both signs.
P = {"dense": {"w": jnp.arange(6.0).reshape(3, 2) / 10, "b": jnp.array([0.5, -0.5])}, "scale": (jnp.array(2.0),)}
G = {"dense": {"w": jnp.full((3, 2), 0.5), "b": jnp.array([-0.25, 1.0])}, "scale": (jnp.array(-2.0),)}
LR = 1e-3


def _without_b(tree):
    return {"dense": {"w": tree["dense"]["w"]}, "scale": tree["scale"]}


def _with_nan(tree, value=jnp.nan):
    return {**tree, "dense": {**tree["dense"], "w": tree["dense"]["w"].at[0, 0].set(value)}}


def _bitwise_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(la, lb)
    )


# Factories by the hyperparameter they take (each takes the learning rate first).
WITH_LEARNING_RATE = {
    "sgd": gf.sgd, "sgd_momentum": lambda lr: gf.sgd(lr, momentum=0.9), "nag": gf.nag, "adagrad": gf.adagrad,
    "rmsprop": gf.rmsprop, "adadelta": gf.adadelta, "adam": gf.adam, "adamw": gf.adamw, "nadam": gf.nadam,
    "adamax": gf.adamax, "amsgrad": gf.amsgrad, "lion": gf.lion, "sign_sgd": gf.sign_sgd, "signum": gf.signum,
    "yogi": gf.yogi, "radam": gf.radam, "adabelief": gf.adabelief, "lamb": gf.lamb, "lars": gf.lars,
    "novograd": gf.novograd, "adafactor": gf.adafactor, "rprop": gf.rprop, "clipped_polyak_sgd": gf.clipped_polyak_sgd,
    "schedule_free_adamw": gf.schedule_free_adamw, "schedule_free_sgd": gf.schedule_free_sgd, "lbfgs": gf.lbfgs,
    "newton": gf.newton,
}  # fmt: skip
WITH_B1_B2 = [gf.adam, gf.adamw, gf.nadam, gf.adamax, gf.amsgrad, gf.lion, gf.yogi, gf.radam, gf.adabelief, gf.lamb,
              gf.novograd]  # fmt: skip
# (factory, name of its decay-like argument in [0, 1)).
DECAYS = [
    (gf.rmsprop, "decay"), (gf.adadelta, "rho"), (gf.signum, "beta"), (gf.sgd, "momentum"), (gf.nag, "momentum"),
    (gf.rmsprop, "momentum"), (gf.lars, "momentum"), (gf.adafactor, "momentum"),
]  # fmt: skip
WEIGHT_DECAYS = [
    (gf.adamw, "weight_decay"), (gf.lion, "weight_decay"), (gf.lamb, "weight_decay"), (gf.lars, "weight_decay"),
    (gf.novograd, "weight_decay"), (gf.adadelta, "weight_decay"), (gf.adafactor, "weight_decay_rate"),
    (gf.schedule_free_adamw, "weight_decay"), (gf.schedule_free_sgd, "weight_decay"),
]  # fmt: skip
WITH_EPS = [gf.adam, gf.adamw, gf.rmsprop, gf.adagrad, gf.adadelta, gf.amsgrad, gf.adamax, gf.yogi, gf.radam,
            gf.adabelief, gf.lamb, gf.novograd]  # fmt: skip
# Optimizers that keep a buffer shaped like the parameters (and need no extra argument in update).
STATEFUL = {
    "sgd_momentum": gf.sgd(LR, momentum=0.9), "rmsprop": gf.rmsprop(LR), "adagrad": gf.adagrad(LR),
    "adadelta": gf.adadelta(), "adam": gf.adam(LR), "amsgrad": gf.amsgrad(LR), "adamax": gf.adamax(LR),
    "lion": gf.lion(LR), "signum": gf.signum(LR), "yogi": gf.yogi(LR), "adabelief": gf.adabelief(LR),
}  # fmt: skip
WITH_PARAMS = {"adamw": gf.adamw(LR), "lion": gf.lion(LR), "lamb": gf.lamb(LR, weight_decay=0.1)}


def _over(factories, value_of: Callable[[Any], Any], pattern: str) -> list[tuple[Callable[[], Any], str]]:
    """``(lambda: value_of(factory), pattern)`` for each factory."""
    return [(lambda f=f: value_of(f), pattern) for f in factories]


def _named(pairs, value: Any, pattern: str) -> list[tuple[Callable[[], Any], str]]:
    """``factory(LR, name=value)`` for each ``(factory, name)``, ``{name}`` of ``pattern`` filled in."""
    return [(lambda f=f, n=n: f(LR, **{n: value}), pattern.format(name=n)) for f, n in pairs]


def _traced(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` traced abstractly (``jax.eval_shape``): trace-time errors surface without compiling anything."""
    return lambda: jax.eval_shape(fn)


def _trace(tx, updates, params=P) -> Callable[[], Any]:
    """One update of ``tx`` from its init state, traced (see :func:`_traced`)."""
    return _traced(lambda: tx.update(updates, tx.init(params), params))


@jax.jit
def _step(tx, updates, params=P):
    """One update of ``tx`` from its init state: ``(updates, state)`` (the optimizer is an argument: one compilation
    per optimizer structure)."""
    return tx.update(updates, tx.init(params), params, grad_fn=grad)


LR_RANGE = r"learning_rate must be in \[0\.0, inf\)"
UNIT = r"must be in \[0\.0, 1\.0\)"
NOT_A_NUMBER = r"must be a number or an array of numbers"
FLOAT_DTYPE = r"must be a floating-point dtype"
ANY_BUFFER = r"(state\.\w+|params)"  # the first tree that the updates meet: a state buffer, or params (weight decay)
W_INT = {**P, "dense": {**P["dense"], "w": jnp.ones((3, 2), jnp.int32)}}
MASK = {"dense": {"w": True}, "scale": (False,)}  # no entry for params['dense']['b']


def _set_negative_and_step():
    tx = gf.inject_hyperparams(gf.sgd)(learning_rate=LR)
    return tx.update(G, gf.set_hyperparam(tx.init(P), "learning_rate", -0.5), P)


ERRORS = [
    # --- learning rates ---------------------------------------------------------------------------------------------
    error_probe(
        "lr-negative-every-optimizer",
        ValueError,
        *_over(WITH_LEARNING_RATE.values(), lambda f: f(-LR), LR_RANGE + r", got -0\.001"),
    ),
    error_probe(
        "lr-string-every-optimizer",
        TypeError,
        *_over(WITH_LEARNING_RATE.values(), lambda f: f("1e-3"), rf"learning_rate {NOT_A_NUMBER}, got '1e-3'"),
    ),
    error_probe(
        "lr-nan-jax-array-every-optimizer",
        ValueError,
        *_over(WITH_LEARNING_RATE.values(), lambda f: f(jnp.array(jnp.nan)), LR_RANGE + r", got Array\(nan"),
    ),
    error_probe(
        "lr-complex-every-optimizer",
        TypeError,
        *_over(WITH_LEARNING_RATE.values(), lambda f: f(LR + 0j), r"learning_rate must be a real number, got \(0\.001"),
    ),
    error_probe(
        "lr-none-where-required",
        ValueError,
        *_over(
            [gf.yogi, gf.radam, gf.adabelief, gf.lamb, gf.lars, gf.novograd, gf.rprop, gf.clipped_polyak_sgd],
            lambda f: f(None),
            r"learning_rate is required \(a finite number >= 0\), got None",
        ),
    ),
    error_probe(
        "lr-schedule-turns-negative",
        ValueError,
        (
            lambda: gf.adam(gf.linear_schedule(LR, -LR, 100)),
            rf"adam: {LR_RANGE}, but its schedule Polynomial is -[0-9.e-]+ at count 5[01]\b",
        ),
    ),
    error_probe(
        "lr-schedule-negative-from-start",
        ValueError,
        (
            lambda: gf.sgd(gf.cosine_decay_schedule(-LR, 100)),
            rf"sgd: {LR_RANGE}, but its schedule CosineDecay is -0\.001 at count 0",
        ),
    ),
    error_probe(
        "lr-schedule-function-nan",
        ValueError,
        (lambda: gf.sgd(lambda count: jnp.nan), rf"sgd: {LR_RANGE}, but its schedule <lambda> is nan at count 0"),
    ),
    error_probe(
        "lr-schedule-overflows-to-inf",
        ValueError,
        (
            lambda: gf.sgd(gf.exponential_decay(0.1, 10, 2.0)),  # growth without end_value: inf at count ≈ 1280
            rf"sgd: {LR_RANGE}, but its schedule ExponentialDecay is inf at count 2047",
        ),
    ),
    error_probe(
        "lr-schedule-returns-string",
        TypeError,
        (
            lambda: gf.adam(lambda count: "fast"),
            rf"adam: learning_rate \(the value of its schedule at count 0\) {NOT_A_NUMBER}, got 'fast'",
        ),
    ),
    error_probe(
        "b1-schedule-reaches-one",
        ValueError,
        (
            lambda: gf.adam(LR, b1=gf.linear_schedule(0.9, 1.0, 10)),
            rf"b1 {UNIT}, but its schedule Polynomial is 1 at count 10",
        ),
    ),
    # --- b1, b2, decays, weight decay, eps --------------------------------------------------------------------------
    error_probe("b1-one-adam-family", ValueError, *_over(WITH_B1_B2, lambda f: f(LR, b1=1.0), rf"b1 {UNIT}, got 1\.0")),
    error_probe(
        "b1-negative-adam-family", ValueError, *_over(WITH_B1_B2, lambda f: f(LR, b1=-0.1), rf"b1 {UNIT}, got -0\.1")
    ),
    error_probe(
        "b2-above-one-adam-family", ValueError, *_over(WITH_B1_B2, lambda f: f(LR, b2=1.5), rf"b2 {UNIT}, got 1\.5")
    ),
    error_probe(
        "b2-nan-adam-family", ValueError, *_over(WITH_B1_B2, lambda f: f(LR, b2=math.nan), rf"b2 {UNIT}, got nan")
    ),
    error_probe("decay-one-every-decay-argument", ValueError, *_named(DECAYS, 1.0, "{name} " + UNIT + r", got 1\.0")),
    error_probe(
        "decay-negative-every-decay-argument", ValueError, *_named(DECAYS, -0.5, "{name} " + UNIT + r", got -0\.5")
    ),
    error_probe(
        "weight-decay-negative",
        ValueError,
        *_named(WEIGHT_DECAYS, -1e-4, r"{name} must be in \[0\.0, inf\), got -0\.0001"),
    ),
    error_probe(
        "eps-negative-every-optimizer",
        ValueError,
        *_over(WITH_EPS, lambda f: f(LR, eps=-1e-8), r"eps must be in \[0\.0, inf\), got -1e-08"),
    ),
    error_probe(
        "hyperparameter-none",
        TypeError,
        (lambda: gf.adam(LR, b1=None), rf"scale_by_adam: b1 {NOT_A_NUMBER}, got None"),
        (lambda: gf.adam(LR, b2=None), rf"scale_by_adam: b2 {NOT_A_NUMBER}, got None"),
        (lambda: gf.adam(LR, eps=None), rf"scale_by_adam: eps {NOT_A_NUMBER}, got None"),
        (lambda: gf.rmsprop(LR, decay=None), rf"scale_by_rms: decay {NOT_A_NUMBER}, got None"),
        (lambda: gf.adamw(LR, weight_decay=None), rf"weight_decay {NOT_A_NUMBER}, got None"),
    ),
    error_probe(
        "hyperparameter-string",
        TypeError,
        (lambda: gf.adam(LR, b1="0.9"), rf"b1 {NOT_A_NUMBER}, got '0\.9'"),
        (lambda: gf.sgd(LR, momentum="0.9"), rf"sgd: momentum {NOT_A_NUMBER}, got '0\.9'"),
        (lambda: gf.adamw(LR, weight_decay="1e-4"), rf"weight_decay {NOT_A_NUMBER}, got '1e-4'"),
    ),
    error_probe(
        "state-dtype-integer",
        ValueError,
        (lambda: gf.adam(LR, mu_dtype=jnp.int32), rf"scale_by_adam: mu_dtype {FLOAT_DTYPE}, got int32"),
        (lambda: gf.adam(LR, nu_dtype=jnp.int8), rf"scale_by_adam: nu_dtype {FLOAT_DTYPE}, got int8"),
        (lambda: gf.amsgrad(LR, mu_dtype=jnp.int32), rf"scale_by_amsgrad: mu_dtype {FLOAT_DTYPE}"),
        (lambda: gf.lion(LR, mu_dtype=jnp.uint8), rf"scale_by_lion: mu_dtype {FLOAT_DTYPE}"),
        (lambda: gf.scale_by_novograd(mu_dtype=jnp.int32), rf"scale_by_novograd: mu_dtype {FLOAT_DTYPE}"),
        (lambda: gf.sgd(LR, 0.9, accumulator_dtype=jnp.int32), rf"sgd: accumulator_dtype {FLOAT_DTYPE}"),
        (lambda: gf.signum(LR, accumulator_dtype=jnp.int32), rf"signum: accumulator_dtype {FLOAT_DTYPE}"),
        (
            lambda: gf.multi_steps(gf.sgd(LR), 2, accumulator_dtype=jnp.int32),
            rf"multi_steps: accumulator_dtype {FLOAT_DTYPE}",
        ),
        (
            lambda: gf.average_params(0.9, accumulator_dtype=jnp.int32),
            rf"average_params: accumulator_dtype {FLOAT_DTYPE}",
        ),
        (lambda: gf.schedule_free_sgd(LR, state_dtype=jnp.int32), rf"schedule_free: state_dtype {FLOAT_DTYPE}"),
    ),
    error_probe(
        "state-dtype-unknown-name",
        TypeError,
        (lambda: gf.adam(LR, mu_dtype="floot"), r"scale_by_adam: mu_dtype must be a dtype or None, got 'floot'"),
        (
            lambda: gf.sgd(LR, 0.9, accumulator_dtype="f33"),
            r"sgd: accumulator_dtype must be a dtype or None, got 'f33'",
        ),
    ),
    # --- tree structure and shapes ----------------------------------------------------------------------------------
    error_probe(
        "updates-missing-leaf-every-stateful-optimizer",
        gf.TreeMismatchError,
        *_over(
            STATEFUL.values(),
            lambda tx: _trace(tx, _without_b(G))(),
            ANY_BUFFER + r"\['dense'\]\['b'\] has no counterpart in updates",
        ),
    ),
    error_probe(
        "updates-extra-leaf-every-stateful-optimizer",
        gf.TreeMismatchError,
        *_over(
            STATEFUL.values(),
            lambda tx: _trace(tx, {**G, "extra": jnp.ones(1)})(),
            r"updates\['extra'\] has no counterpart in " + ANY_BUFFER,
        ),
    ),
    error_probe(
        "updates-transposed-leaf-every-stateful-optimizer",
        gf.TreeMismatchError,
        *_over(
            STATEFUL.values(),
            lambda tx: _trace(tx, {**G, "dense": {"w": G["dense"]["w"].T, "b": G["dense"]["b"]}})(),
            r"updates\['dense'\]\['w'\] has shape \(2, 3\) but "
            + ANY_BUFFER
            + r"\['dense'\]\['w'\] has shape \(3, 2\)",
        ),
    ),
    error_probe(
        "updates-list-for-dict",
        gf.TreeMismatchError,
        (
            _traced(lambda: gf.adam(LR).update(jax.tree.leaves(G), gf.adam(LR).init(P))),
            r"updates\[0\] has no counterpart in state\.mean(.|\n)*"
            r"state\.mean\['dense'\]\['b'\] has no counterpart in updates",
        ),
        (
            _trace(gf.adam(LR), jax.tree.leaves(G)),
            r"updates\[0\] has no counterpart in params(.|\n)*params\['dense'\]\['b'\] has no counterpart in updates",
        ),
    ),
    error_probe(
        "params-missing-leaf-weight-decay",
        gf.TreeMismatchError,
        *_over(
            WITH_PARAMS.values(),
            lambda tx: _traced(lambda: tx.update(G, tx.init(P), _without_b(P)))(),
            r"updates\['dense'\]\['b'\] has no counterpart in params",
        ),
    ),
    error_probe(
        "params-wrong-shape-weight-decay",
        gf.TreeMismatchError,
        *_over(
            WITH_PARAMS.values(),
            lambda tx: _traced(lambda: tx.update(G, tx.init(P), {**P, "dense": {**P["dense"], "b": jnp.ones(3)}}))(),
            r"updates\['dense'\]\['b'\] has shape \(2,\) but params\['dense'\]\['b'\] has shape \(3,\)",
        ),
    ),
    error_probe(
        "params-omitted-where-needed",
        ValueError,
        (_traced(lambda: gf.adamw(LR).update(G, gf.adamw(LR).init(P))), r"add_decayed_weights needs the parameters"),
        (_traced(lambda: gf.lion(LR).update(G, gf.lion(LR).init(P))), r"add_decayed_weights needs the parameters"),
        (
            _traced(lambda: gf.schedule_free_sgd(LR).update(G, gf.schedule_free_sgd(LR).init(P))),
            r"needs the parameters",
        ),
    ),
    error_probe(
        "state-of-another-optimizer-or-none",
        ValueError,
        (
            _traced(lambda: gf.adam(LR).update(G, gf.rmsprop(LR).init(P), P)),
            r"chain of 2 transforms got a tuple of length 3 as its state; pass the state that this chain's init",
        ),
        (
            _traced(lambda: gf.sgd(LR, momentum=0.9).update(G, gf.adam(LR).init(P), P)),
            r"a transform whose state is a TraceState got a ScaleByAdamState as its state; pass the state",
        ),
        (
            _traced(lambda: gf.adagrad(LR).update(G, gf.sgd(LR, momentum=0.9).init(P), P)),
            r"a transform whose state is a ScaleByRssState got a TraceState as its state",
        ),
        (
            _traced(lambda: gf.rmsprop(LR).update(G, gf.adam(LR).init(P), P)),
            r"chain of 3 transforms got a tuple of length 2 as its state",
        ),
        (_traced(lambda: gf.adam(LR).update(G, None, P)), r"chain of 2 transforms got NoneType as its state"),
    ),
    error_probe(
        "apply-updates-wrong-shape-no-broadcasting",
        gf.TreeMismatchError,
        (
            lambda: gf.apply_updates(P, {**G, "dense": {**G["dense"], "b": jnp.ones(5)}}),
            r"params\['dense'\]\['b'\] has shape \(2,\) but updates\['dense'\]\['b'\] has shape \(5,\)",
        ),
        (
            lambda: gf.apply_updates(P, {**G, "dense": {**G["dense"], "w": jnp.ones(())}}),
            r"params\['dense'\]\['w'\] has shape \(3, 2\) but updates\['dense'\]\['w'\] has shape \(\)",
        ),
    ),
    error_probe(
        "stateless-sgd-wrong-shape-caught-by-apply-updates",
        gf.TreeMismatchError,
        (
            _traced(
                lambda: gf.apply_updates(P, gf.sgd(LR).update({**G, "scale": (jnp.ones(4),)}, gf.sgd(LR).init(P))[0])
            ),
            r"params\['scale'\]\[0\] has shape \(\) but updates\['scale'\]\[0\] has shape \(4,\)",
        ),
        (  # given params, the update itself refuses
            _trace(gf.sgd(LR), {**G, "scale": (jnp.ones(4),)}),
            r"updates\['scale'\]\[0\] has shape \(4,\) but params\['scale'\]\[0\] has shape \(\)",
        ),
    ),
    error_probe(
        "mask-missing-leaf",
        gf.TreeMismatchError,
        (
            lambda: gf.masked(gf.adam(LR), MASK).init(P),
            r"masked: mask must have the structure of the parameters(.|\n)*params\['dense'\]\['b'\] has no counterpart",
        ),
        (_trace(gf.adamw(LR, mask=MASK), G), r"params\['dense'\]\['b'\] has no counterpart in mask"),
    ),
    error_probe(
        "partition-unknown-label",
        ValueError,
        (
            lambda: gf.partition({"a": gf.adam(LR)}, {"dense": {"w": "a", "b": "c"}, "scale": ("a",)}).init(P),
            r"partition: no transform for the label 'c'",
        ),
    ),
    # --- parameter and gradient dtypes ------------------------------------------------------------------------------
    error_probe(
        "integer-param-every-optimizer-init",
        TypeError,
        *_over(
            WITH_LEARNING_RATE.values(),
            lambda f: f(LR).init(W_INT),
            r"params\['dense'\]\['w'\] has dtype int32: gradflow updates floating-point arrays only",
        ),
    ),
    error_probe(
        "bool-param",
        TypeError,
        (lambda: gf.sgd(LR).init({**P, "keep": jnp.ones(2, bool)}), r"params\['keep'\] has dtype bool"),
    ),
    error_probe(
        "non-array-param-leaf",
        TypeError,
        (lambda: gf.adam(LR).init({**P, "name": "layer1"}), r"params\['name'\] is a str \('layer1'\), not an array"),
        (lambda: gf.sgd(LR).init({**P, "act": jnp.tanh}), r"params\['act'\] is a \w+ .*not an array"),
    ),
    error_probe(
        "integer-gradient",
        TypeError,
        *_over(
            [gf.sgd(LR), gf.adam(LR), gf.sgd(LR, momentum=0.9)],
            lambda tx: _trace(tx, {**G, "dense": {**G["dense"], "w": jnp.ones((3, 2), jnp.int32)}})(),
            r"updates\['dense'\]\['w'\] has dtype int32: .*integer values would be silently truncated",
        ),
    ),
    # --- hyperparameters changed after construction -----------------------------------------------------------------
    error_probe(
        "set-hyperparam-would-truncate",
        TypeError,
        (
            lambda: gf.set_hyperparam(gf.inject_hyperparams(gf.sgd)(learning_rate=1).init(P), "learning_rate", 0.5),
            r"set_hyperparam: learning_rate is stored as int32 .* 0\.5 would be truncated to 0",
        ),
    ),
    error_probe(
        "injected-lr-set-negative-eager", ValueError, (_set_negative_and_step, rf"sgd: {LR_RANGE}, got Array\(-0\.5")
    ),
]


@pytest.mark.parametrize("probe", ERRORS)
def test_bad_input_is_a_clearerror_probe(probe):
    probe()


# --- documented safe behaviour -----------------------------------------------------------------------------------


def _adam_first_step(g):
    """Adam's first update: −η·g/(|g| + eps) (m̂ = g, v̂ = g²)."""
    return jax.tree.map(lambda x: -LR * x / (jnp.abs(x) + 1e-8), g)


def nan_gradient_without_guard_reaches_only_its_coordinate():
    """Documented: without a guard a NaN gradient propagates, into that coordinate only (and its moments)."""
    updates, state = _step(gf.adam(LR), _with_nan(G))
    new = gf.apply_updates(P, updates)
    assert np.isnan(new["dense"]["w"][0, 0])
    mask = np.ones((3, 2), bool)
    mask[0, 0] = False
    expected = gf.apply_updates(P, _adam_first_step(G))
    np.testing.assert_allclose(np.asarray(new["dense"]["w"])[mask], np.asarray(expected["dense"]["w"])[mask], rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["b"], expected["dense"]["b"], rtol=1e-6)
    buffers = [x for x in jax.tree.leaves(state) if jnp.shape(x) == (3, 2)]
    assert len(buffers) == 2 and all(np.isnan(x[0, 0]) and np.isfinite(np.asarray(x)[mask]).all() for x in buffers)


def inf_gradient_without_guard():
    """Documented: +Inf gives NaN in Adam (Inf/Inf) and −Inf in plain SGD, at that coordinate only."""
    adam_new = gf.apply_updates(P, _step(gf.adam(LR), _with_nan(G, jnp.inf))[0])
    sgd_new = gf.apply_updates(P, _step(gf.sgd(LR), _with_nan(G, jnp.inf))[0])
    assert np.isnan(adam_new["dense"]["w"][0, 0]) and sgd_new["dense"]["w"][0, 0] == -np.inf
    for new in (adam_new, sgd_new):
        assert np.isfinite(np.asarray(new["dense"]["w"]).ravel()[1:]).all() and np.isfinite(new["dense"]["b"]).all()


# The skip does not depend on the inner optimizer (the inner update does not even run on a non-finite gradient);
# these cover a momentum buffer, a look-ahead gradient (grad_fn), two moments and weight decay on params.
GUARDED = {
    "sgd_momentum": gf.sgd(LR, momentum=0.9), "nag": gf.nag(LR), "adam": gf.adam(LR),
    "adamw": gf.adamw(LR, weight_decay=0.1), "lion": gf.lion(LR),
}  # fmt: skip


def non_finite_gradient_with_apply_if_finite_every_optimizer():
    """A NaN, +Inf or −Inf gradient: params bit-identical, inner state bit-identical, counters +1; the next
    finite gradient is the unguarded optimizer's first step."""
    bad = [_with_nan(G, value) for value in (jnp.nan, jnp.inf, -jnp.inf)]

    @jax.jit  # one program for all of them
    def run(inners):
        results = {}
        for name, inner in inners.items():
            tx = gf.apply_if_finite(inner, max_consecutive_errors=5)
            start = tx.init(P)
            skipped = [tx.update(g, start, P, grad_fn=grad) for g in bad]
            after = tx.update(G, skipped[-1][1], P, grad_fn=grad)
            results[name] = start, skipped, after, inner.update(G, inner.init(P), P, grad_fn=grad)[0]
        return results

    for name, (start, skipped, (updates, state), expected) in run(GUARDED).items():
        for value, (skip_updates, skip_state) in zip(("nan", "inf", "-inf"), skipped):
            assert _bitwise_equal(gf.apply_updates(P, skip_updates), P), (name, value)
            assert _bitwise_equal(skip_state.inner_state, start.inner_state), (name, value)
            counters = (int(skip_state.notfinite_count), int(skip_state.total_notfinite), bool(skip_state.last_finite))
            assert counters == (1, 1, False), (name, value)
        for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9, err_msg=name)
        assert (int(state.notfinite_count), int(state.total_notfinite), bool(state.last_finite)) == (0, 1, True)


def nan_param_with_apply_if_finite():
    """A finite gradient but a NaN parameter: AdamW's weight decay would write NaN, so the step is skipped."""
    updates, state = _step(
        gf.apply_if_finite(gf.adamw(LR, weight_decay=0.1), max_consecutive_errors=5), G, _with_nan(P)
    )
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert int(state.notfinite_count) == 1


def apply_if_finite_inside_scan():
    """Six steps in lax.scan with NaN/Inf at steps 1 and 4 end where four finite steps do; two skips counted."""
    inner = gf.sgd(0.1, momentum=0.9)
    grads = [jax.tree.map(lambda x, k=k: (k + 1) * x, G) for k in range(6)]
    grads[1], grads[4] = _with_nan(grads[1]), _with_nan(grads[4], -jnp.inf)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)
    finite = jax.tree.map(lambda *xs: jnp.stack(xs), *[g for k, g in enumerate(grads) if k not in (1, 4)])

    def run(tx, gs):
        def body(carry, g):
            params, state = carry
            updates, state = tx.update(g, state, params)
            return (gf.apply_updates(params, updates), state), None

        return jax.lax.scan(body, (P, tx.init(P)), gs)[0]

    (guarded, state), (plain, _) = run(gf.apply_if_finite(inner, max_consecutive_errors=5), stacked), run(inner, finite)
    assert int(state.total_notfinite) == 2 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(guarded))
    for a, b in zip(jax.tree.leaves(guarded), jax.tree.leaves(plain)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def clip_by_global_norm_non_finite():
    """Documented: a NaN or Inf norm gives zero updates, not NaN updates."""
    tx = gf.chain(gf.clip_by_global_norm(1.0), gf.sgd(LR))
    for value in (jnp.nan, jnp.inf):
        updates, state = _step(tx, _with_nan(G, value))
        assert _bitwise_equal(gf.apply_updates(P, updates), P)
        assert state[0] == gf.ClipState()


def zero_nans_before_adam():
    """zero_nans turns the NaN coordinate into a zero gradient: Adam's step there is exactly 0."""
    updates, state = _step(gf.chain(gf.zero_nans(), gf.adam(LR)), _with_nan(G))
    expected = _adam_first_step(G)
    assert updates["dense"]["w"][0, 0] == 0.0
    np.testing.assert_allclose(
        np.asarray(updates["dense"]["w"]).ravel()[1:], np.asarray(expected["dense"]["w"]).ravel()[1:], rtol=1e-6
    )
    assert bool(state[0].found_nan["dense"]["w"]) and not bool(state[0].found_nan["dense"]["b"])


def zero_nans_lets_inf_through():
    """Documented (as optax): zero_nans replaces NaN only; an Inf reaches Adam, which makes it NaN. The guard for
    Inf is apply_if_finite."""
    tx = gf.chain(gf.zero_nans(), gf.adam(LR))
    updates, _ = _step(tx, _with_nan(G, jnp.inf))
    assert np.isnan(updates["dense"]["w"][0, 0]) and np.isfinite(np.asarray(updates["dense"]["w"]).ravel()[1:]).all()
    guarded = gf.apply_if_finite(tx, max_consecutive_errors=5)
    updates, _ = _step(guarded, _with_nan(G, jnp.inf))
    assert _bitwise_equal(gf.apply_updates(P, updates), P)


def _all_zero(tree) -> bool:
    return all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(tree))


def negative_traced_learning_rate_is_a_zero_step():
    """A negative learning rate that reaches the step as a tracer (a vmap sweep) counts as 0: no step, not +η·g."""
    tx_state = gf.sgd(LR).init(P)
    out = jax.vmap(lambda lr: gf.sgd(lr).update(G, tx_state, P)[0])(jnp.array([0.1, -0.1]))
    np.testing.assert_allclose(out["dense"]["b"][0], -0.1 * G["dense"]["b"], rtol=1e-6)
    assert _all_zero(jax.tree.map(lambda x: x[1], out))


def negative_learning_rate_set_after_construction():
    """set_hyperparam on an injected state (no factory to re-check it), stepped under jit: a zero step. (On a
    transform set_hyperparam re-checks the value: tests/test_bad_inputs_hyperparams.py.)"""
    injected = gf.inject_hyperparams(gf.sgd)(learning_rate=LR)
    state = gf.set_hyperparam(injected.init(P), "learning_rate", -0.5)
    assert _all_zero(jax.jit(lambda g, s: injected.update(g, s, P))(G, state)[0])


def warmup_rounded_below_zero_is_a_zero_step():
    """warmup_constant_schedule(0, η, k) is −1.1e-8 at count 0 under jit (XLA's fused multiply-add): the first
    step is exactly 0, not a tiny step up the gradient."""
    schedule = gf.warmup_constant_schedule(0.0, 0.2, 5)
    assert float(jax.jit(schedule)(jnp.int32(0))) <= 0.0
    assert _all_zero(_step(gf.sgd(schedule), G)[0])


def _run_steps(tx, steps):
    """``steps`` updates on the constant gradient G in lax.scan: the params after each, and the final state."""

    def body(carry, _):
        params, state = carry
        updates, state = tx.update(G, state, params)
        params = gf.apply_updates(params, updates)
        return (params, state), params

    (_, state), trajectory = jax.jit(lambda: jax.lax.scan(body, (P, tx.init(P)), length=steps))()
    return [jax.tree.map(lambda x, k=k: x[k], trajectory) for k in range(steps)], state


def schedule_turns_nan_mid_run():
    """A schedule that is fine at count 0 (the count checked for a plain function) and NaN from count 2 on:
    without a guard the parameters become NaN at step 3 (documented); with apply_if_finite they stay bit-identical
    to step 2 and the skips are counted."""
    schedule = lambda count: jnp.where(count < 2, 0.1, jnp.nan)
    plain, _ = _run_steps(gf.sgd(schedule, momentum=0.9), 4)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(plain[1]))
    assert all(np.isnan(np.asarray(x)).all() for x in jax.tree.leaves(plain[2]))
    guarded, state = _run_steps(gf.apply_if_finite(gf.sgd(schedule, momentum=0.9), max_consecutive_errors=5), 4)
    assert _bitwise_equal(guarded[3], guarded[1])
    for a, b in zip(jax.tree.leaves(guarded[1]), jax.tree.leaves(plain[1])):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert (int(state.notfinite_count), int(state.total_notfinite)) == (2, 2)


def schedule_turns_negative_mid_run():
    """A schedule that turns negative after count 0 (the count checked for a plain function): the parameters stop
    where they are, bit for bit, instead of climbing the gradient."""
    trajectory, _ = _run_steps(gf.sgd(lambda count: jnp.where(count < 1, 0.1, -0.1)), 3)
    np.testing.assert_allclose(trajectory[0]["dense"]["b"], P["dense"]["b"] - 0.1 * G["dense"]["b"], rtol=1e-6)
    assert _bitwise_equal(trajectory[2], trajectory[0])


def adadelta_without_learning_rate_descends():
    """Documented difference: adadelta(learning_rate=None) means η = 1 and descends; optax's ascends."""
    ours = _step(gf.adadelta(), G)[0]
    theirs = jax.jit(lambda: optax.adadelta(None).update(G, optax.adadelta(None).init(P), P)[0])()
    for u, v, g in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), jax.tree.leaves(G)):
        assert np.all(np.sign(u) == -np.sign(g)) and np.all(np.sign(v) == np.sign(g))
        np.testing.assert_allclose(u, -v, rtol=1e-6)


def first_step_never_ascends_every_optimizer():
    """Every named first-order optimizer, one step on the shared problem: ⟨u, ∇L⟩ < 0 and finite (one program)."""
    params = make_params()
    names = [name for name in WITH_LEARNING_RATE if name not in ("lbfgs", "newton")]

    @jax.jit
    def inner_products(params):
        g, out = grad(params), []
        for name in names:
            tx = WITH_LEARNING_RATE[name](0.01)
            updates, _ = tx.update(g, tx.init(params), params, grad_fn=grad, value=loss(params))
            out.append(sum(jnp.vdot(u, x) for u, x in zip(jax.tree.leaves(updates), jax.tree.leaves(g))))
        return jnp.stack(out)

    products = np.asarray(inner_products(params))
    assert np.all(products < 0), dict(zip(names, products))


def complex_params_match_optax():
    """Complex parameters are supported (check_float_leaves accepts inexact dtypes): Adam and SGD with momentum
    equal optax over three steps, state in complex64."""
    z = {"z": jnp.array([1 + 1j, 2 - 1j, -0.5j], jnp.complex64)}
    gz = {"z": jnp.array([0.5 - 1j, -2 + 0.25j, 1j], jnp.complex64)}
    pairs = ((gf.adam(0.1), optax.adam(0.1)), (gf.sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)))

    @jax.jit  # one program for both pairs
    def run():
        out = []
        for ours, theirs in pairs:
            s1, s2, p1, p2 = ours.init(z), theirs.init(z), z, z
            for k in range(3):
                g = jax.tree.map(lambda x, k=k: x * (1 + k), gz)
                u1, s1 = ours.update(g, s1, p1)
                u2, s2 = theirs.update(g, s2, p2)
                p1, p2 = gf.apply_updates(p1, u1), optax.apply_updates(p2, u2)
            out.append((p1, p2, s1))
        return out

    for p1, p2, state in run():
        assert p1["z"].dtype == jnp.complex64
        assert all(jnp.result_type(x) in (jnp.complex64, jnp.int32) for x in jax.tree.leaves(state))
        np.testing.assert_allclose(p1["z"], p2["z"], rtol=1e-5)


def _signature(tree):
    return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]


def _scan_signatures(tx, params, g, steps=3):
    """Whether state and params keep their signatures through ``steps`` updates in lax.scan (traced only: scan
    itself refuses a carry whose dtype drifts, and the signatures are read from the abstract result)."""

    def body(carry, _):
        p, s = carry
        updates, s = tx.update(g, s, p)
        return (gf.apply_updates(p, updates), s), None

    start = tx.init(params)
    (new_params, state), _ = jax.eval_shape(lambda c: jax.lax.scan(body, c, length=steps), (params, start))
    return _signature(start) == _signature(state), _signature(params) == _signature(new_params), state


def low_precision_params_keep_dtypes_in_scan():
    """float16 params, float32 gradients, non-weak float32 hyperparameters, schedules, injected and guarded
    optimizers: state and params keep their dtypes through lax.scan (a fixed carry)."""
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    params = jax.tree.map(lambda x: x.astype(jnp.float16), P)
    g = jax.tree.map(lambda x: x.astype(jnp.float32), G)
    for tx in (
        gf.adam(f32(LR), b1=f32(0.9), b2=f32(0.99), eps=f32(1e-3)),
        gf.rmsprop(f32(LR), decay=f32(0.9), momentum=f32(0.5)),
        gf.lion(f32(LR), b1=f32(0.9), weight_decay=f32(0.1)),
        gf.adadelta(f32(1.0), rho=f32(0.9)),
        gf.adam(gf.linear_schedule(LR, 0.0, 10), b1=gf.linear_schedule(0.8, 0.9, 5)),
        gf.inject_hyperparams(gf.amsgrad)(learning_rate=f32(LR)),
        gf.apply_if_finite(gf.sgd(f32(LR), momentum=f32(0.9)), max_consecutive_errors=5),
    ):
        assert _scan_signatures(tx, params, g)[:2] == (True, True), tx


def x64_hyperparameters_keep_dtypes_in_scan():
    """Under x64, float64 NumPy hyperparameters and schedules do not promote float32 state; counters stay int32."""
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), P)
        g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), G)
        for tx in (gf.adam(np.float64(LR), b1=np.float64(0.9)), gf.sgd(gf.exponential_decay(0.1, 10, 0.5), 0.9)):
            same_state, same_params, state = _scan_signatures(tx, params, g)
            assert same_state and same_params
            counters = [x for x in jax.tree.leaves(state) if jnp.issubdtype(jnp.result_type(x), jnp.integer)]
            assert counters and all(jnp.result_type(x) == jnp.int32 for x in counters)


def low_precision_hyperparameters_are_numbers():
    """bfloat16 hyperparameters are real numbers (np.issubdtype does not know bfloat16; the check uses jnp's)."""
    bf16 = lambda x: jnp.asarray(x, jnp.bfloat16)
    tx = gf.adam(bf16(LR), b1=bf16(0.9), b2=bf16(0.99))
    updates, _ = _step(tx, G)
    np.testing.assert_allclose(updates["dense"]["b"], -LR * np.sign(G["dense"]["b"]), rtol=1e-2)


SAFE = [
    pytest.param(nan_gradient_without_guard_reaches_only_its_coordinate, id="nan-gradient-no-guard-adam"),
    pytest.param(inf_gradient_without_guard, id="inf-gradient-no-guard-adam-sgd"),
    pytest.param(
        non_finite_gradient_with_apply_if_finite_every_optimizer,
        id="non-finite-gradient-apply-if-finite-every-optimizer",
    ),
    pytest.param(nan_param_with_apply_if_finite, id="nan-param-apply-if-finite-adamw"),
    pytest.param(apply_if_finite_inside_scan, id="apply-if-finite-inside-scan"),
    pytest.param(clip_by_global_norm_non_finite, id="clip-by-global-norm-nan-inf-zero-updates"),
    pytest.param(zero_nans_before_adam, id="zero-nans-before-adam"),
    pytest.param(zero_nans_lets_inf_through, id="zero-nans-lets-inf-through"),
    pytest.param(negative_traced_learning_rate_is_a_zero_step, id="lr-negative-traced-zero-step"),
    pytest.param(negative_learning_rate_set_after_construction, id="lr-negative-set-after-construction"),
    pytest.param(warmup_rounded_below_zero_is_a_zero_step, id="lr-warmup-rounded-below-zero-under-jit"),
    pytest.param(schedule_turns_nan_mid_run, id="lr-schedule-nan-mid-run-with-and-without-guard"),
    pytest.param(schedule_turns_negative_mid_run, id="lr-schedule-negative-mid-run"),
    pytest.param(adadelta_without_learning_rate_descends, id="adadelta-no-lr-descends"),
    pytest.param(first_step_never_ascends_every_optimizer, id="first-step-never-ascends-every-optimizer"),
    pytest.param(complex_params_match_optax, id="complex-params-match-optax"),
    pytest.param(low_precision_params_keep_dtypes_in_scan, id="float16-params-dtypes-stable-in-scan"),
    pytest.param(x64_hyperparameters_keep_dtypes_in_scan, id="x64-hyperparameters-dtypes-stable-in-scan"),
    pytest.param(low_precision_hyperparameters_are_numbers, id="bf16-hyperparameters-accepted"),
]


@pytest.mark.parametrize("probe", SAFE)
def test_bad_input_has_documented_safe_behaviour(probe):
    probe()


def test_probe_count():
    """The battery (this module and tests/test_bad_inputs_*.py) has at least 150 distinct probes across the library."""
    import test_bad_inputs_checkpoint
    import test_bad_inputs_experiments
    import test_bad_inputs_hyperparams
    import test_bad_inputs_updates

    modules = [
        test_bad_inputs_checkpoint,
        test_bad_inputs_experiments,
        test_bad_inputs_hyperparams,
        test_bad_inputs_updates,
    ]
    probes = ERRORS + SAFE + [p for module in modules for p in module.ERRORS + module.SAFE]
    ids = [p.id for p in probes]
    assert len(set(ids)) == len(ids), sorted(i for i in set(ids) if ids.count(i) > 1)
    assert len(ids) >= 150, len(ids)
