"""lookahead: the paper's two loops in NumPy float64, optax.lookahead's numbers, slow_params, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches, describe

import gradflow as gf
from gradflow import wrappers

A = np.array([[2.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])
THETA0 = np.array([1.5, 0.3])
STEPS, K, ALPHA, LR, MOMENTUM = 11, 3, 0.4, 0.1, 0.9  # synchronizations after steps 3, 6 and 9


def grad_np(theta):
    return A @ theta - B + 0.1 * theta**3


def grad_jnp(theta):
    return jnp.asarray(A, theta.dtype) @ theta - jnp.asarray(B, theta.dtype) + 0.1 * theta**3


def reference(reset_state=False):
    """Zhang et al. (2019), Algorithm 1, with heavy-ball SGD as the inner optimizer: (θ, φ) after each step."""
    theta, slow, m = THETA0.copy(), THETA0.copy(), np.zeros(2)
    out = []
    for t in range(1, STEPS + 1):
        m = MOMENTUM * m + grad_np(theta)
        theta = theta - LR * m
        if t % K == 0:
            slow = slow + ALPHA * (theta - slow)
            theta = slow.copy()
            if reset_state:
                m = np.zeros(2)
        out.append((theta.copy(), slow.copy()))
    return out


def run(tx, theta0):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad_jnp(params), state, params)
        return gf.apply_updates(params, updates), state

    params, state, out = theta0, tx.init(theta0), []
    for _ in range(STEPS):
        params, state = step(params, state)
        out.append((params, wrappers.slow_params(state)))
    return out, state


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_matches_numpy_reference(reset_state):
    with jax.enable_x64(True):
        tx = wrappers.lookahead(gf.sgd(LR, momentum=MOMENTUM), K, ALPHA, reset_state=reset_state)
        ours, state = run(tx, jnp.asarray(THETA0))
    for t, ((params, slow), (theta, phi)) in enumerate(zip(ours, reference(reset_state))):
        assert params.dtype == jnp.float64
        np.testing.assert_allclose(params, theta, rtol=1e-10, err_msg=f"fast weights after step {t + 1}")
        np.testing.assert_allclose(slow, phi, rtol=1e-10, err_msg=f"slow weights after step {t + 1}")
    assert int(state.steps_since_sync) == STEPS % K
    # the slow weights moved at each synchronization only
    slow = [np.asarray(s) for _, s in ours]
    moved = [not np.array_equal(a, b) for a, b in zip([THETA0, *slow[:-1]], slow)]
    assert moved == [(t + 1) % K == 0 for t in range(STEPS)]


def test_lookahead_matches_optax():
    """optax carries LookaheadParams(fast, slow); its fast/slow pair equals gradflow's params/slow_params."""
    theta0 = jnp.asarray(THETA0, jnp.float32)
    # float32 hyperparameters: optax would compute 1 − b2 from a Python float in double (test_optax_parity.py)
    hyper = {"learning_rate": np.float32(0.05), "b1": np.float32(0.9), "b2": np.float32(0.999), "eps": np.float32(1e-8)}
    ours, _ = run(wrappers.lookahead(gf.adam(**hyper), K, np.float32(ALPHA)), theta0)
    ox = optax.lookahead(optax.adam(**hyper), K, np.float32(ALPHA))
    params = optax.LookaheadParams.init_synced(theta0)
    state = ox.init(params)
    for t, (fast, slow) in enumerate(ours):
        updates, state = ox.update(grad_jnp(params.fast), state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(fast, params.fast, rtol=1e-5, atol=1e-6, err_msg=f"fast after step {t + 1}")
        np.testing.assert_allclose(slow, params.slow, rtol=1e-5, atol=1e-6, err_msg=f"slow after step {t + 1}")
    assert np.abs(np.asarray(ours[-1][1]) - np.asarray(theta0)).min() > 1e-2  # not vacuous


def test_slow_params_inside_chain_and_with_scheduled_slow_step_size():
    """slow_params finds the state inside a chain and inside the ScheduleState of a scheduled α."""
    with jax.enable_x64(True):
        constant = wrappers.lookahead(gf.sgd(LR, momentum=MOMENTUM), K, ALPHA)
        scheduled = gf.chain(gf.identity(), wrappers.lookahead(gf.sgd(LR, momentum=MOMENTUM), K, lambda n: ALPHA))
        a, _ = run(constant, jnp.asarray(THETA0))
        b, _ = run(scheduled, jnp.asarray(THETA0))
    for (pa, sa), (pb, sb) in zip(a, b):
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(sa, sb)


def test_lookahead_errors():
    with pytest.raises(ValueError, match=r"lookahead: sync_period must be an integer >= 1, got 0"):
        wrappers.lookahead(gf.sgd(0.1), 0, 0.5)
    with pytest.raises(TypeError, match=r"lookahead: sync_period must be an integer >= 1, got 2.0"):
        wrappers.lookahead(gf.sgd(0.1), 2.0, 0.5)
    with pytest.raises(ValueError, match=r"lookahead: slow_step_size must be in \[0.0, 1.0\], got 1.5"):
        wrappers.lookahead(gf.sgd(0.1), 2, 1.5)
    with pytest.raises(TypeError, match=r"lookahead: fast_optimizer must be a transform"):
        wrappers.lookahead(None, 2, 0.5)
    with pytest.raises(TypeError, match=r"lookahead: reset_state must be True or False"):
        wrappers.lookahead(gf.sgd(0.1), 2, 0.5, reset_state="yes")
    with pytest.raises(TypeError, match=r"slow_step_size"):
        wrappers.lookahead(gf.sgd(0.1), 2)  # no defaults, as in optax
    tx = wrappers.lookahead(gf.sgd(0.1), 6, 0.5)
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match=r"lookahead needs the parameters"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match=r"slow_params: found no LookaheadSlowState in the state"):
        wrappers.slow_params(gf.adam(0.1).init(params))
    two = gf.chain(tx, tx)
    with pytest.raises(ValueError, match=r"slow_params: found 2 LookaheadSlowState in the state"):
        wrappers.slow_params(two.init(params))
    pair = gf.LookaheadParams.init_synced(params)
    with pytest.raises(ValueError, match=r"slow_params: this lookahead was given LookaheadParams.*params.slow"):
        wrappers.slow_params(tx.init(pair))
    with pytest.raises(ValueError, match=r"given LookaheadParams, the state must be the LookaheadState"):
        tx.update(params, tx.init(params), pair)
    with pytest.raises(ValueError, match=r"given plain parameters, the state must be the LookaheadSlowState"):
        tx.update(params, tx.init(pair), params)


# --- optax's way: LookaheadParams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_params_program_runs_unchanged_with_optax_numbers(reset_state):
    """The optax program (LookaheadParams, its updates, apply_updates) with gradflow: optax's numbers and states."""
    theta0 = jnp.asarray(THETA0, jnp.float32)
    hyper = {"learning_rate": np.float32(0.05), "b1": np.float32(0.9), "b2": np.float32(0.999), "eps": np.float32(1e-8)}
    histories = []
    for lib, fast in ((gf, gf.adam(**hyper)), (optax, optax.adam(**hyper))):
        tx = lib.lookahead(fast, K, np.float32(ALPHA), reset_state)
        params = lib.LookaheadParams.init_synced(theta0)
        state, history = tx.init(params), []
        step = jax.jit(lambda p, s, tx=tx: tx.update(grad_jnp(p.fast), s, p))
        for _ in range(STEPS):
            updates, state = step(params, state)
            assert type(updates).__name__ == "LookaheadParams"
            params = lib.apply_updates(params, updates)
            history.append((params, state))
        histories.append(history)
    for t, ((p1, s1), (p2, s2)) in enumerate(zip(*histories)):
        assert describe(s1) == describe(s2)  # optax's LookaheadState(fast_state, steps_since_sync)
        assert describe(p1) == describe(p2)
        for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"after step {t + 1}")
    final = histories[0][-1][0]
    assert np.abs(np.asarray(final.slow) - np.asarray(theta0)).min() > 1e-2  # not vacuous


def test_both_ways_give_the_same_weights():
    """Plain parameters (slow weights in the state) and LookaheadParams follow the same fast and slow weights."""
    with jax.enable_x64(True):
        tx = wrappers.lookahead(gf.sgd(LR, momentum=MOMENTUM), K, ALPHA)
        plain, _ = run(tx, jnp.asarray(THETA0))
        params = gf.LookaheadParams.init_synced(jnp.asarray(THETA0))
        state = tx.init(params)
        for t, (fast, slow) in enumerate(plain):
            updates, state = tx.update(grad_jnp(params.fast), state, params)
            params = gf.apply_updates(params, updates)
            np.testing.assert_allclose(params.fast, fast, rtol=1e-13, err_msg=f"fast after step {t + 1}")
            np.testing.assert_allclose(params.slow, slow, rtol=1e-13, err_msg=f"slow after step {t + 1}")


def test_signature_and_init_synced_are_optax():
    assert_signature_matches(wrappers.lookahead, optax.lookahead)
    assert gf.LookaheadParams._fields == optax.LookaheadParams._fields
    pair = gf.LookaheadParams.init_synced({"w": jnp.ones(2)})
    assert pair.fast is pair.slow
    state = wrappers.lookahead(gf.sgd(0.1), 3, 0.5).init(pair)
    assert gf.LookaheadState._fields == optax.LookaheadState._fields == ("fast_state", "steps_since_sync")
    assert isinstance(state, gf.LookaheadState)
    # a gradflow lookahead inside optax, and an optax optimizer inside a gradflow lookahead
    for tx in (optax.lookahead(gf.sgd(0.1), 3, 0.5), wrappers.lookahead(optax.sgd(0.1), 3, 0.5)):
        updates, _ = tx.update({"w": jnp.ones(2)}, tx.init(pair), pair)
        np.testing.assert_allclose(updates.fast["w"], [-0.1, -0.1], rtol=1e-6)
