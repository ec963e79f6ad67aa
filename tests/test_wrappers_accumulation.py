"""multi_steps: NumPy reference, optax.MultiSteps parity, and the inner optimizer runs only every k calls."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches, describe

import gradflow as gf
from gradflow import wrappers

K = 3
_rng = np.random.default_rng(11)
PARAMS = {"w": _rng.normal(size=(2, 2)), "b": _rng.normal(size=3)}
GRADS = [jax.tree.map(lambda p: _rng.normal(size=p.shape), PARAMS) for _ in range(3 * K)]


def f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def run(tx, grads, params):
    step = jax.jit(lambda g, s: tx.update(g, s, params))
    state, history = tx.init(params), []
    for g in grads:
        u, state = step(g, state)
        history.append((u, state))
    return history


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_multi_steps_matches_numpy_reference(reduction):
    """Momentum SGD (η=0.1, γ=0.9) on the mean (or sum) of every K micro-step gradients; zeros between."""
    with jax.enable_x64(True):
        tx = wrappers.multi_steps(gf.sgd(0.1, momentum=0.9), K, reduction=reduction)
        history = run(tx, GRADS, PARAMS)
    m = {k: np.zeros_like(v) for k, v in PARAMS.items()}
    for t, (u, state) in enumerate(history):
        if t % K == K - 1:
            group = GRADS[t - K + 1 : t + 1]
            combined = {k: sum(g[k] for g in group) / (K if reduction == "mean" else 1) for k in m}
            m = {k: 0.9 * m[k] + combined[k] for k in m}
            expected = {k: -0.1 * m[k] for k in m}
        else:
            expected = {k: np.zeros_like(v) for k, v in m.items()}
        for k in m:
            assert u[k].dtype == jnp.float64
            np.testing.assert_allclose(u[k], expected[k], rtol=1e-10, atol=0, err_msg=f"micro-step {t}")
        assert int(state.mini_step) == (t + 1) % K
        assert int(state.gradient_step) == (t + 1) // K
        assert bool(tx.has_updated(state)) == (t % K == K - 1)


def test_multi_steps_matches_optax():
    ours = run(wrappers.multi_steps(gf.adam(0.05), K), [f32(g) for g in GRADS], f32(PARAMS))
    theirs = run(optax.MultiSteps(optax.adam(0.05), K), [f32(g) for g in GRADS], f32(PARAMS))
    for t, ((u1, s1), (u2, s2)) in enumerate(zip(ours, theirs)):
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"micro-step {t}")
        assert int(s1.mini_step) == int(s2.mini_step) and int(s1.gradient_step) == int(s2.gradient_step)
        for a, b in zip(jax.tree.leaves(s1.acc_grads), jax.tree.leaves(s2.acc_grads)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(ours[-1][0]["w"])).max() > 1e-2  # the last call is an inner step: not vacuous


CALLS: list[int] = []


@gf.pytree_dataclass
class Counted(gf.Transform):
    """The identity, with a host callback that records every execution of its update."""

    def init(self, params):
        return gf.EmptyState()

    def update(self, updates, state, params=None, **extra):
        jax.debug.callback(lambda: CALLS.append(1))
        return updates, state


def test_inner_update_runs_only_on_the_kth_micro_step():
    """Optax issue #472: optax.MultiSteps runs the inner update on every micro-step; gradflow does not."""
    grads, params = [f32(g) for g in GRADS], f32(PARAMS)
    CALLS.clear()
    run(wrappers.multi_steps(Counted(), K), grads, params)
    jax.effects_barrier()
    assert len(CALLS) == len(GRADS) // K
    CALLS.clear()
    run(optax.MultiSteps(Counted(), K), grads, params)
    jax.effects_barrier()
    assert len(CALLS) == len(GRADS)  # the test can tell the two apart

    # In the program: the inner's callback sits inside a branch of a cond, not at the top level.
    tx = wrappers.multi_steps(Counted(), K)
    jaxpr = jax.make_jaxpr(lambda g, s: tx.update(g, s, params))(grads[0], tx.init(params)).jaxpr
    top = [eqn.primitive.name for eqn in jaxpr.eqns]
    assert "cond" in top and "debug_callback" not in top
    (cond,) = [eqn for eqn in jaxpr.eqns if eqn.primitive.name == "cond"]
    in_branches = [[e.primitive.name for e in branch.jaxpr.eqns] for branch in cond.params["branches"]]
    assert sorted("debug_callback" in names for names in in_branches) == [False, True]


def test_accumulator_dtype():
    params = {"w": jnp.ones(2, jnp.bfloat16)}
    state = wrappers.multi_steps(gf.sgd(0.1), 2).init(params)
    assert state.acc_grads["w"].dtype == jnp.float32  # bfloat16 accumulates in float32
    state = wrappers.multi_steps(gf.sgd(0.1), 2, accumulator_dtype=jnp.bfloat16).init(params)
    assert state.acc_grads["w"].dtype == jnp.bfloat16
    tx = wrappers.multi_steps(gf.sgd(1.0), 2)
    state = tx.init(params)
    u, state = tx.update({"w": jnp.full(2, 1.0, jnp.bfloat16)}, state, params)
    u, state = tx.update({"w": jnp.full(2, 2.0, jnp.bfloat16)}, state, params)
    assert u["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(u["w"], np.float32), [-1.5, -1.5])


def test_multi_steps_errors():
    with pytest.raises(ValueError, match=r"multi_steps: every_k_schedule must be an integer >= 1, got 0"):
        wrappers.multi_steps(gf.sgd(0.1), 0)
    with pytest.raises(TypeError, match=r"multi_steps: every_k_schedule must be an integer >= 1, got 2.5"):
        wrappers.multi_steps(gf.sgd(0.1), 2.5)
    with pytest.raises(TypeError, match=r"multi_steps: every_k_schedule must be an integer >= 1, got '2'"):
        wrappers.multi_steps(gf.sgd(0.1), "2")  # a function of the gradient step is accepted (as in optax)
    assert wrappers.multi_steps(gf.sgd(0.1), np.int64(2)).every_k_schedule == 2
    with pytest.raises(ValueError, match=r"multi_steps: reduction must be one of 'mean', 'sum', got 'max'"):
        wrappers.multi_steps(gf.sgd(0.1), 2, reduction="max")
    with pytest.raises(TypeError, match=r"multi_steps: inner must be a transform with init and update"):
        wrappers.multi_steps("adam", 2)


def test_cond_survives_vmap_over_hyperparameters_but_not_over_states():
    """The docstring's claim: vmapping over learning rates keeps the cond; a batched state makes it a select."""
    params = f32(PARAMS)
    batch = jax.vmap(lambda lr: wrappers.multi_steps(gf.adam(lr), K))(jnp.array([0.1, 0.2]))

    def fresh(tx):
        return tx.update(params, tx.init(params), params)[0]

    def given(tx, state):
        return tx.update(params, state, params)[0]

    primitives = lambda jaxpr: {eqn.primitive.name for eqn in jaxpr.jaxpr.eqns}
    assert "cond" in primitives(jax.make_jaxpr(jax.vmap(fresh))(batch))
    states = jax.vmap(lambda tx: tx.init(params))(batch)
    assert "cond" not in primitives(jax.make_jaxpr(jax.vmap(given))(batch, states))


# --- optax's MultiSteps class: signature, state layout, schedules, should_skip_update_fn -----------------------------


def assert_same_history(ours, theirs, rtol=1e-5, atol=1e-6):
    for t, ((u1, s1), (u2, s2)) in enumerate(zip(ours, theirs)):
        assert describe(s1) == describe(s2), f"micro-step {t}"
        for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2))):
            np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"micro-step {t}")


def test_multi_steps_class_has_optax_signature_methods_and_state():
    assert_signature_matches(gf.MultiSteps, optax.MultiSteps)
    params = f32(PARAMS)
    tx = gf.MultiSteps(gf.adam(0.05), every_k_schedule=K)
    assert describe(tx.init(params)) == describe(optax.MultiSteps(optax.adam(0.05), K).init(params))
    assert tx.inner_opt is tx.opt and tx.gradient_transformation() is tx
    init, update = tx.gradient_transformation()  # unpacks like optax's GradientTransformation
    state = init(params)
    assert not bool(tx.has_updated(state))
    for g in GRADS[:K]:
        _, state = update(f32(g), state, params)
    assert bool(tx.has_updated(state)) and int(state.gradient_step) == 1
    # an optax MultiSteps wrapping a gradflow optimizer, and the reverse, both run
    for outer in (optax.MultiSteps(gf.adam(0.05), K), gf.MultiSteps(optax.adam(0.05), K)):
        run(outer, [f32(g) for g in GRADS[:K]], params)


@pytest.mark.parametrize("use_grad_mean", [True, False])
def test_multi_steps_class_matches_optax_with_a_schedule_of_k(use_grad_mean):
    """every_k_schedule a function of the gradient step (2 micro-steps, then 3): optax's numbers and states."""
    schedule = lambda step: jnp.where(step < 2, 2, 3)
    grads, params = [f32(g) for g in GRADS * 2], f32(PARAMS)
    ours = run(gf.MultiSteps(gf.adam(np.float32(0.05)), schedule, use_grad_mean), grads, params)
    theirs = run(optax.MultiSteps(optax.adam(np.float32(0.05)), schedule, use_grad_mean), grads, params)
    assert_same_history(ours, theirs)
    emitted = [t for t, (_, s) in enumerate(ours) if int(s.mini_step) == 0]
    assert emitted[:4] == [1, 3, 6, 9]  # k = 2, 2, then 3


@pytest.mark.parametrize(
    "skip",
    [optax.skip_not_finite, functools.partial(optax.skip_large_updates, max_squared_norm=12.0)],
    ids=["skip_not_finite", "skip_large_updates"],
)
def test_should_skip_update_fn_matches_optax(skip):
    """optax's skip functions: a skipped micro-step changes nothing but skip_state; optax's numbers and states."""
    grads = [f32(g) for g in GRADS * 2]
    grads[1] = jax.tree.map(lambda x: x.at[0].set(jnp.nan), grads[1])
    grads[4] = jax.tree.map(lambda x: 10 * x, grads[4])
    grads[5] = jax.tree.map(lambda x: x.at[-1].set(jnp.inf), grads[5])
    params = f32(PARAMS)
    ours = run(gf.MultiSteps(gf.adam(np.float32(0.05)), K, should_skip_update_fn=skip), grads, params)
    theirs = run(optax.MultiSteps(optax.adam(np.float32(0.05)), K, should_skip_update_fn=skip), grads, params)
    assert_same_history(ours, theirs)
    skipped = [bool(s.skip_state["should_skip"]) for _, s in ours]
    assert skipped[1] and skipped[5] and sum(skipped) >= 2
    for t in (1, 5):  # a skipped micro-step: zero updates, accumulator and counters as before
        np.testing.assert_array_equal(ours[t][1].acc_grads["w"], ours[t - 1][1].acc_grads["w"])
        assert int(ours[t][1].mini_step) == int(ours[t - 1][1].mini_step)
        assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(ours[t][0]))
    # gradflow's multi_steps takes it too
    again = run(wrappers.multi_steps(gf.adam(np.float32(0.05)), K, should_skip_update_fn=skip), grads, params)
    assert_same_history(again, ours, rtol=0, atol=0)


def test_multi_steps_class_errors():
    with pytest.raises(ValueError, match=r"MultiSteps: every_k_schedule must be an integer >= 1, got 0"):
        gf.MultiSteps(gf.sgd(0.1), 0)
    with pytest.raises(TypeError, match=r"MultiSteps: opt must be a transform with init and update"):
        gf.MultiSteps("adam", 2)
    with pytest.raises(TypeError, match=r"MultiSteps: use_grad_mean must be True or False"):
        gf.MultiSteps(gf.sgd(0.1), 2, use_grad_mean="mean")
    with pytest.raises(TypeError, match=r"MultiSteps: should_skip_update_fn must be None or a function"):
        gf.MultiSteps(gf.sgd(0.1), 2, should_skip_update_fn=True)
    with pytest.raises(ValueError, match=r"MultiSteps: accumulator_dtype must be a floating-point dtype"):
        gf.MultiSteps(gf.sgd(0.1), 2, accumulator_dtype=jnp.int32)
    tx = gf.MultiSteps(gf.sgd(0.1), 2, should_skip_update_fn=lambda u, step, p: (jnp.int32(0), ()))
    with pytest.raises(ValueError, match=r"should_skip_update_fn must return a boolean scalar array.*int32"):
        tx.init(jnp.zeros(2))


def test_multi_steps_jit_once_and_state_stable_in_scan():
    """The wrapper is pytree data: one compilation for two learning rates; the state is a valid scan carry."""
    params, traces = f32(PARAMS), []

    @jax.jit
    def step(tx, g, state):
        traces.append(None)
        return tx.update(g, state, params)

    for lr in (0.1, 0.2):
        tx = gf.MultiSteps(gf.adam(lr), K, should_skip_update_fn=optax.skip_not_finite)
        step(tx, f32(GRADS[0]), tx.init(params))
    assert len(traces) == 1
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *[f32(g) for g in GRADS])
    final, _ = jax.lax.scan(lambda s, g: (tx.update(g, s, params)[1], None), tx.init(params), stacked)
    assert int(final.gradient_step) == len(GRADS) // K
