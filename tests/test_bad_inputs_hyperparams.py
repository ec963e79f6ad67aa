"""The battery's probes of factory arguments, set_hyperparam and the policy for traced hyperparameters.

ERRORS: flags, choices and integers of the factories (one vocabulary: gradflow.validation), set_hyperparam
re-running the declared range checks and addressing the factory's argument names, the walker
``check_hyperparameters``. SAFE: the documented policy for values known only inside ``jit``/``vmap`` (a
traced hyperparameter outside its declared range gives NaN updates; a negative learning rate a zero step),
checked with numbers. See gradflow/validation.py.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bad_input_probes import error_probe, safe_probe

import gradflow as gf
from gradflow.transforms.moments import EWMA, EWMAState
from gradflow.validation import check_hyperparameters

P = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.3])}
G = {"w": jnp.array([[0.2, -0.4], [1.0, 0.5]]), "b": jnp.array([-1.0, 0.75])}
LR = 0.1
UNIT = r"must be in \[0\.0, 1\.0\)"
FLAG = r"must be True or False"


def _first_updates(tx, params=P, grads=G):
    return tx.update(grads, tx.init(params), params)[0]


def _all_nan(tree) -> bool:
    return all(np.isnan(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def _close(a, b) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


def _member(tree, k):
    return jax.tree.map(lambda x: x[k], tree)


ERRORS = [
    # --- flags, choices and integers: one vocabulary --------------------------------------------------------------
    error_probe(
        "flag-truthy-string-nesterov",
        TypeError,
        (lambda: gf.sgd(LR, momentum=0.9, nesterov="no"), rf"sgd: nesterov {FLAG}, got 'no'"),
        (lambda: gf.adam(LR, nesterov="no"), rf"scale_by_adam: nesterov {FLAG}, got 'no'"),
        (lambda: gf.radam(LR, nesterov="False"), rf"nesterov {FLAG}"),
        (lambda: gf.trace(0.9, nesterov=1), rf"ewma: nesterov {FLAG}, got 1"),
    ),
    error_probe(
        "flag-number-or-array-rmsprop-amsgrad",
        TypeError,
        (lambda: gf.rmsprop(LR, centered=1), rf"rmsprop: centered {FLAG}, got 1"),
        (lambda: gf.rmsprop(LR, eps_in_sqrt="yes"), rf"eps_in_sqrt {FLAG}"),
        (lambda: gf.amsgrad(LR, bias_correction_nu=jnp.array([True])), rf"bias_correction_nu {FLAG}"),
        (lambda: gf.ema(0.9, debias=None), rf"ema: debias {FLAG}, got None"),
    ),
    error_probe(
        "flag-wrappers-schedules-second-order",
        TypeError,
        (lambda: gf.lookahead(gf.sgd(LR), 2, 0.5, reset_state="no"), rf"lookahead: reset_state {FLAG}"),
        (lambda: gf.exponential_decay(1.0, 10, 0.5, staircase="yes"), rf"exponential_decay: staircase {FLAG}"),
        (lambda: gf.scale_by_lbfgs(scale_init_precond="no"), rf"scale_by_lbfgs: scale_init_precond {FLAG}"),
        (lambda: gf.scale_by_learning_rate(LR, flip_sign=0), rf"flip_sign {FLAG}"),
    ),
    error_probe(
        "choice-not-among-the-allowed",
        ValueError,
        (lambda: gf.ewma(0.9, kind="Average"), r"ewma: kind must be one of 'average', 'momentum', got 'Average'"),
        (lambda: gf.scale_by_lion(mode="soft"), r"scale_by_lion: mode must be one of 'hard', 'smooth', 'refined'"),
        (lambda: gf.apply_if_finite(gf.sgd(LR), 3, after_limit="raise"), r"after_limit must be one of 'skip'"),
        (lambda: gf.multi_steps(gf.sgd(LR), 2, reduction="max"), r"reduction must be one of 'mean', 'sum'"),
        (lambda: gf.scale_by_newton(solver="qr"), r"solver must be one of 'cg', 'dense'"),
    ),
    error_probe(
        "integer-given-a-float",
        TypeError,
        (lambda: gf.stale_gradients(2.5), r"stale_gradients: delay must be an integer >= 0, got 2\.5"),
        (lambda: gf.lookahead(gf.sgd(LR), 2.0, 0.5), r"lookahead: sync_period must be an integer >= 1, got 2\.0"),
        (lambda: gf.apply_if_finite(gf.sgd(LR), 1.5), r"max_consecutive_errors must be an integer >= 0"),
        (lambda: gf.scale_by_lbfgs(memory_size=3.0), r"memory_size must be an integer >= 1"),
        (lambda: gf.debias(0.9, step_offset=1.0), r"step_offset must be an integer >= 0"),
        (lambda: gf.schedule_free_sgd(LR, warmup_steps=2.5), r"warmup_steps must be an integer >= 1"),
    ),
    error_probe(
        "integer-out-of-range",
        ValueError,
        (lambda: gf.stale_gradients(-1), r"stale_gradients: delay must be an integer >= 0, got -1"),
        (lambda: gf.lookahead(gf.sgd(LR), 0, 0.5), r"sync_period must be an integer >= 1, got 0"),
        (lambda: gf.schedule_free_sgd(LR, warmup_steps=2**40), r"warmup_steps must be an integer >= 1 and <="),
        (lambda: gf.scale_by_newton(max_cg_iterations=np.int64(0)), r"max_cg_iterations must be an integer >= 1"),
    ),
    error_probe(
        "integer-bool-is-not-a-count",
        TypeError,
        (lambda: gf.stale_gradients(True), r"delay must be an integer >= 0, got True"),
        (lambda: gf.scale_by_newton(max_cg_iterations=True), r"max_cg_iterations must be an integer"),
    ),
    # --- concrete arrays get the checks numbers get -------------------------------------------------------------
    error_probe(
        "concrete-arrays-checked-like-numbers",
        ValueError,
        (lambda: gf.adam(LR, b1=jnp.array(1.5)), rf"b1 {UNIT}"),
        (lambda: gf.sgd(LR, momentum=np.array([0.5, -3.0])), rf"sgd: momentum {UNIT}"),
        (lambda: gf.lookahead(gf.sgd(LR), 2, jnp.array(-0.5)), r"slow_step_size must be in \[0\.0, 1\.0\]"),
        (lambda: gf.ewma(np.float32(1.0)), rf"ewma: decay {UNIT}"),
        (lambda: gf.adamw(LR, weight_decay=jnp.array([0.1, jnp.nan])), r"weight_decay must be in \[0\.0, inf\)"),
    ),
    error_probe(
        "argument-names-in-every-message",
        TypeError,
        (lambda: gf.ratio("no", gf.identity()), r"ratio: numerator must be a transform"),
        (lambda: gf.join_schedules([gf.constant_schedule(1.0)] * 2, 5), r"join_schedules: boundaries must be a list"),
        (lambda: gf.inject_hyperparams(gf.sgd, static_args=3), r"static_args must be a list or tuple"),
        (lambda: gf.cosine_onecycle_schedule(10, 1.0, pct_start=np.full(2, 0.3)), r"pct_start must be a single"),
        (lambda: gf.adadelta(weight_decay_mask={"w": "no"}), r"adadelta: weight_decay_mask leaves must be"),
        (lambda: gf.scale_by_lion(mode="smooth", smooth_beta="2"), r"scale_by_lion: smooth_beta must be a number"),
    ),
    # --- set_hyperparam re-checks; names are the factory's arguments --------------------------------------------
    error_probe(
        "set-hyperparam-out-of-range-names-argument-and-path",
        ValueError,
        (
            lambda: gf.set_hyperparam(gf.adam(LR), "b1", 1.5),
            rf"set_hyperparam: b1 \(at transforms\.0\.inner\.first\.transforms\.0\.decay\) {UNIT}, got 1\.5",
        ),
        (
            lambda: gf.set_hyperparam(gf.adam(LR), "learning_rate", -1),
            r"set_hyperparam: learning_rate \(at transforms\.1\.learning_rate\) must be in \[0\.0, inf\), got -1",
        ),
        (lambda: gf.set_hyperparam(gf.sgd(LR, momentum=0.9), "momentum", -3.0), rf"momentum .* {UNIT}, got -3\.0"),
        (lambda: gf.set_hyperparam(gf.rmsprop(LR), "decay", 1.0), rf"decay .* {UNIT}, got 1\.0"),
        (lambda: gf.set_hyperparam(gf.lookahead(gf.sgd(LR), 2, 0.5), "slow_step_size", -0.5), r"\[0\.0, 1\.0\]"),
    ),
    error_probe(
        "set-hyperparam-arrays-schedules-nan",
        ValueError,
        (lambda: gf.set_hyperparam(gf.adam(LR), "b2", np.array([0.9, 1.0])), rf"b2 .* {UNIT}, got array"),
        (
            lambda: gf.set_hyperparam(gf.adam(LR), "learning_rate", gf.linear_schedule(0.1, -0.1, 10)),
            r"learning_rate .* its schedule .* at count 6",
        ),
        (lambda: gf.set_hyperparam(gf.adamw(LR), "weight_decay", math.nan), r"weight_decay .* got nan"),
        (lambda: gf.set_hyperparam(gf.adam(LR), "eps", -1e-8), r"eps \(at .*\) must be in \[0\.0, inf\)"),
    ),
    error_probe(
        "set-hyperparam-not-a-number",
        TypeError,
        (lambda: gf.set_hyperparam(gf.adam(LR), "b1", "0.5"), r"set_hyperparam: b1 .* must be a number"),
        (lambda: gf.set_hyperparam(gf.sgd(LR, momentum=0.9), "momentum", None), r"momentum .* must be a number"),
    ),
    error_probe(
        "set-hyperparam-one-name-several-meanings",
        ValueError,
        (
            lambda: gf.set_hyperparam(gf.adam(LR), "decay", 0.5),
            r"'decay' matches 4 fields with different meanings: .*\(argument b1\).*\(argument b2\)",
        ),
        (
            lambda: gf.get_hyperparam(gf.chain(gf.ewma(0.9), gf.ewma(0.5)), "decay"),
            r"'decay' matches 2 fields with different meanings: transforms\.0\.decay; transforms\.1\.decay",
        ),
        (
            lambda: gf.set_hyperparam(gf.chain(gf.adam(LR), gf.adam(LR)), "b1", 0.5),
            r"'b1' is an argument of 2 transforms here \(at transforms\.0\.transforms\.0, transforms\.1\.transform",
        ),
    ),
    error_probe(
        "set-hyperparam-injected-rechecks-by-building",
        ValueError,
        (lambda: gf.set_hyperparam(gf.inject_hyperparams(gf.adam)(learning_rate=LR), "b1", 1.5), rf"b1 {UNIT}"),
        (
            lambda: gf.set_hyperparam(gf.inject_hyperparams(gf.sgd)(learning_rate=LR), "learning_rate", -0.5),
            r"sgd: learning_rate must be in \[0\.0, inf\)",
        ),
    ),
    error_probe(
        "get-hyperparam-unknown-lists-argument-names",
        KeyError,
        (lambda: gf.get_hyperparam(gf.adam(LR), "beta1"), r"no hyperparameter 'beta1'.*b1, b2, decay, eps"),
    ),
    # --- the walker over a whole transform ----------------------------------------------------------------------
    error_probe(
        "check-hyperparameters-batched-and-direct",
        ValueError,
        (
            lambda: check_hyperparameters(jax.vmap(lambda b1: gf.adam(LR, b1=b1))(jnp.array([0.9, 1.0])), "grid"),
            rf"grid: b1 \(at transforms\.0\.inner\.first\.transforms\.0\.decay\) {UNIT}, got Array\(\[0\.9, 1\. \]",
        ),
        (lambda: check_hyperparameters(EWMA(1.5)), rf"check_hyperparameters: decay {UNIT}, got 1\.5"),
        (
            lambda: check_hyperparameters(jax.vmap(lambda s: gf.lookahead(gf.sgd(LR), 2, s))(jnp.array([0.5, -1.0]))),
            r"slow_step_size must be in \[0\.0, 1\.0\], got Array\(\[ 0\.5, -1\. \]",
        ),
    ),
]


@pytest.mark.parametrize("probe", ERRORS)
def test_bad_hyperparameter_input_is_a_clear_error(probe):
    probe()


# --- documented safe behaviour: the traced policy, with numbers ------------------------------------------------


def traced_b1_out_of_range_is_nan_under_jit():
    """b1 = 1.5, 1.0, −0.1 or NaN reaches a jitted step as a tracer: NaN updates; b1 = 0.5: the eager numbers."""
    step = jax.jit(lambda b1: _first_updates(gf.adam(LR, b1=b1)))
    for b1 in (1.5, 1.0, -0.1, math.nan):
        assert _all_nan(step(b1)), b1
    _close(step(0.5), _first_updates(gf.adam(LR, b1=0.5)))


def traced_plateau_factor_out_of_range_makes_every_update_nan():
    """reduce_on_plateau's factor outside (0, 1] (a "nan_updates" field) reaching a jitted step as a tracer:
    every leaf of the updates is NaN, in float32 and in bfloat16; factor = 0.5: the updates pass unchanged."""
    tx = lambda factor: gf.reduce_on_plateau(factor=factor)
    grads = {**G, "b": G["b"].astype(jnp.bfloat16)}
    step = jax.jit(lambda factor: tx(factor).update(grads, tx(0.5).init(P), P, value=jnp.float32(1.0))[0])
    for factor in (2.0, 0.0, math.nan):
        out = step(factor)
        assert _all_nan(out) and out["b"].dtype == jnp.bfloat16, factor
    for a, b in zip(jax.tree.leaves(step(0.5)), jax.tree.leaves(grads)):
        np.testing.assert_array_equal(a, b)


def vmapped_momentum_sweep_nan_only_outside():
    """A vmapped sweep of momentum [0.5, −3, 0.9, 1.0]: the members outside [0, 1) are NaN, the others the loop's."""
    momenta = jnp.array([0.5, -3.0, 0.9, 1.0])
    state = gf.sgd(LR, momentum=0.5).init(P)
    out = jax.vmap(lambda m: gf.sgd(LR, momentum=m).update(G, state, P)[0])(momenta)
    assert _all_nan(_member(out, 1)) and _all_nan(_member(out, 3))
    for k in (0, 2):
        _close(_member(out, k), _first_updates(gf.sgd(LR, momentum=float(momenta[k]))))


def vmapped_lookahead_slow_step_outside_is_nan():
    """The issue's example: a vmapped lookahead with a negative slow step ascended; now its updates are NaN."""
    steps = jnp.array([0.5, -0.5, 1.5, 1.0])
    tx = lambda s: gf.lookahead(gf.sgd(LR), sync_period=1, slow_step_size=s)
    state = tx(0.5).init(P)
    out = jax.vmap(lambda s: tx(s).update(G, state, P)[0])(steps)
    assert _all_nan(_member(out, 1)) and _all_nan(_member(out, 2))
    for k in (0, 3):
        _close(_member(out, k), _first_updates(tx(float(steps[k]))))


def apply_if_finite_skips_a_traced_out_of_range_step():
    """apply_if_finite around an Adam whose traced b1 = 1.5: params unchanged, the skip counted."""

    @jax.jit
    def step(b1):
        tx = gf.apply_if_finite(gf.adam(LR, b1=b1), max_consecutive_errors=3)
        return tx.update(G, tx.init(P), P)

    updates, state = step(1.5)
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))
    assert (int(state.notfinite_count), int(state.total_notfinite)) == (1, 1)
    updates, state = step(0.9)
    assert int(state.total_notfinite) == 0
    _close(updates, _first_updates(gf.adam(LR, b1=0.9)))


def negative_traced_learning_rate_stays_a_zero_step():
    """The one exception: a negative traced learning rate is a zero step (here Adam's), not NaN."""
    out = jax.vmap(lambda lr: _first_updates(gf.adam(lr)))(jnp.array([LR, -LR]))
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(_member(out, 1)))
    _close(_member(out, 0), _first_updates(gf.adam(LR)))


def value_past_the_checks_is_nan_eagerly_and_under_jit():
    """A dataclass built directly with decay 1.5 (no factory): NaN eagerly and jitted alike (jit(update) == update)."""
    tx = EWMA(1.5)
    state = EWMAState(jnp.ones(2))
    eager = tx.update(jnp.ones(2), state)[0]
    jitted = jax.jit(lambda t: t.update(jnp.ones(2), state)[0])(tx)
    assert _all_nan(eager) and _all_nan(jitted)


def gradient_through_in_range_hyperparameter_unchanged():
    """jax.grad through a traced in-range decay and learning rate: the textbook derivatives, exactly."""
    m0, g = jnp.array([2.0, -1.0]), jnp.array([0.5, 0.25])
    derivative = jax.grad(lambda d: jnp.sum(gf.ewma(d).update(g, EWMAState(m0))[0]))(0.5)
    assert float(derivative) == float(jnp.sum(m0 - g))  # d/dβ (β·m0 + (1 − β)·g)
    lr_derivative = jax.grad(lambda lr: jnp.sum(gf.sgd(lr).update(g, gf.sgd(LR).init(g))[0]))(LR)
    assert float(lr_derivative) == float(-jnp.sum(g))


def one_compilation_for_values_inside_and_outside():
    """Law 3 with the guard: one compiled step for b1 inside and outside its range (the check is data)."""

    @jax.jit
    def step(tx):
        return _first_updates(tx)

    txs = [jax.vmap(lambda b: gf.adam(LR, b1=b))(jnp.array([b])) for b in (0.5, 1.5)]
    txs = [jax.tree.map(lambda x: x[0], t) for t in txs]
    outs = [step(t) for t in txs]
    assert step._cache_size() == 1
    assert not _all_nan(outs[0]) and _all_nan(outs[1])


def scheduled_b1_leaving_its_range_mid_run_is_nan():
    """A plain function of the count as b1 (checked at count 0 only) that reaches 1.5 at count 1: step 2 is NaN."""
    tx = gf.adam(LR, b1=lambda count: jnp.where(count < 1, 0.9, 1.5))
    state = tx.init(P)
    first, state = tx.update(G, state, P)
    second, _ = tx.update(G, state, P)
    assert not _all_nan(first) and _all_nan(second)


def set_hyperparam_by_argument_name_equals_the_factory():
    """set_hyperparam(adam, "b1", 0.5) sets every field b1 feeds (two decays; NAdam's weight too): the same
    optimizer as adam(b1=0.5), leaf for leaf; rmsprop's decay and momentum stay apart."""
    for factory in (gf.adam, gf.nadam, gf.amsgrad, gf.radam, gf.adabelief, gf.yogi):
        changed = gf.set_hyperparam(factory(LR), "b1", 0.5)
        assert jax.tree.structure(changed) == jax.tree.structure(factory(LR, b1=0.5))
        assert jax.tree.leaves(changed) == jax.tree.leaves(factory(LR, b1=0.5)), factory.__name__
        assert gf.get_hyperparam(changed, "b1") == 0.5
    tx = gf.set_hyperparam(gf.rmsprop(LR, momentum=0.9), "decay", 0.5)
    assert jax.tree.leaves(tx) == jax.tree.leaves(gf.rmsprop(LR, decay=0.5, momentum=0.9))
    tx = gf.set_hyperparam(gf.rmsprop(LR, momentum=0.9), "momentum", 0.5)
    assert jax.tree.leaves(tx) == jax.tree.leaves(gf.rmsprop(LR, momentum=0.5))
    assert gf.get_hyperparam(gf.sgd(LR, momentum=0.8), "momentum") == 0.8
    assert gf.get_hyperparam(gf.signum(LR, beta=0.7), "beta") == 0.7


def injected_state_names_unchanged():
    """inject_hyperparams' state keeps the factory's names: set b1 in the state, the step uses it."""
    tx = gf.inject_hyperparams(gf.adam)(learning_rate=LR, b1=0.9)
    state = gf.set_hyperparam(tx.init(P), "b1", 0.5)
    assert float(gf.get_hyperparam(state, "b1")) == 0.5
    expected = gf.inject_hyperparams(gf.adam)(learning_rate=LR, b1=0.5)  # the same float32 hyperparameters
    _close(tx.update(G, state, P)[0], _first_updates(expected))


def concrete_integer_arrays_are_integers():
    """A concrete 0-d integer array is an integer (sync_period, delay, max_consecutive_errors): it builds."""
    assert gf.lookahead(gf.sgd(LR), jnp.array(2), 0.5).sync_period == 2
    assert gf.stale_gradients(np.int64(1)).delay == 1
    assert gf.apply_if_finite(gf.sgd(LR), jnp.int32(3)).max_consecutive_errors == 3


SAFE = [
    safe_probe(traced_b1_out_of_range_is_nan_under_jit, "traced-b1-out-of-range-nan-under-jit"),
    safe_probe(traced_plateau_factor_out_of_range_makes_every_update_nan, "traced-plateau-factor-nan-updates"),
    safe_probe(vmapped_momentum_sweep_nan_only_outside, "vmapped-momentum-sweep-nan-only-outside"),
    safe_probe(vmapped_lookahead_slow_step_outside_is_nan, "vmapped-lookahead-slow-step-outside-nan"),
    safe_probe(apply_if_finite_skips_a_traced_out_of_range_step, "traced-out-of-range-apply-if-finite-skips"),
    safe_probe(negative_traced_learning_rate_stays_a_zero_step, "traced-negative-lr-zero-step-adam"),
    safe_probe(value_past_the_checks_is_nan_eagerly_and_under_jit, "dataclass-past-checks-nan-eager-and-jit"),
    safe_probe(gradient_through_in_range_hyperparameter_unchanged, "grad-through-in-range-hyperparameter"),
    safe_probe(one_compilation_for_values_inside_and_outside, "traced-policy-one-compilation"),
    safe_probe(scheduled_b1_leaving_its_range_mid_run_is_nan, "scheduled-b1-leaves-range-mid-run-nan"),
    safe_probe(set_hyperparam_by_argument_name_equals_the_factory, "set-hyperparam-argument-name-equals-factory"),
    safe_probe(injected_state_names_unchanged, "set-hyperparam-injected-state-names"),
    safe_probe(concrete_integer_arrays_are_integers, "concrete-integer-arrays-accepted"),
]


@pytest.mark.parametrize("probe", SAFE)
def test_hyperparameter_input_has_documented_safe_behaviour(probe):
    probe()


def test_probe_count():
    """At least 25 distinct probes here."""
    ids = [p.id for p in ERRORS + SAFE]
    assert len(ids) >= 25 and len(set(ids)) == len(ids)
