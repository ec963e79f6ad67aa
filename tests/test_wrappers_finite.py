"""apply_if_finite and zero_nans: NumPy references, optax parity, the documented difference from optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches, describe

import gradflow as gf
from gradflow import wrappers

NAN, INF = np.nan, np.inf
_rng = np.random.default_rng(3)
# 12 gradients of a (2,)-leaf and a ()-leaf; steps 2, 5–9 (five in a row) and 11 are not finite.
BAD = {
    2: ("w", 0, NAN),
    5: ("w", 1, INF),
    6: ("s", None, NAN),
    7: ("w", 0, -INF),
    8: ("w", 1, NAN),
    9: ("s", None, INF),
}
BAD[11] = ("w", 1, NAN)


def gradients():
    out = []
    for t in range(12):
        g = {"w": _rng.normal(size=2), "s": np.float64(_rng.normal())}
        if t in BAD:
            key, index, value = BAD[t]
            if index is None:
                g[key] = np.float64(value)
            else:
                g[key][index] = value
        out.append(g)
    return out


GRADS = gradients()
PARAMS = {"w": np.array([0.5, -1.0]), "s": np.float64(2.0)}


def run(tx, grads, params):
    step = jax.jit(lambda g, s: tx.update(g, s, params))
    state, history = tx.init(params), []
    for g in grads:
        u, state = step(g, state)
        history.append((u, state))
    return history


def test_apply_if_finite_matches_numpy_reference():
    """Momentum SGD (η=0.1, γ=0.9) that skips non-finite steps; counters at every step."""
    with jax.enable_x64(True):
        history = run(wrappers.apply_if_finite(gf.sgd(0.1, momentum=0.9), 10), GRADS, PARAMS)
    m = {"w": np.zeros(2), "s": 0.0}
    consecutive = total = 0
    for t, (g, (u, state)) in enumerate(zip(GRADS, history)):
        finite = all(np.all(np.isfinite(x)) for x in g.values())
        if finite:
            m = {k: 0.9 * m[k] + g[k] for k in m}
            expected, consecutive = {k: -0.1 * m[k] for k in m}, 0
        else:
            expected, consecutive, total = {k: 0.0 * m[k] for k in m}, consecutive + 1, total + 1
        assert u["w"].dtype == jnp.float64
        np.testing.assert_allclose(u["w"], expected["w"], rtol=1e-12, err_msg=f"step {t}")
        np.testing.assert_allclose(u["s"], expected["s"], rtol=1e-12, err_msg=f"step {t}")
        np.testing.assert_allclose(state.inner_state[0].trace["w"], m["w"], rtol=1e-12)  # optax's TraceState
        assert int(state.notfinite_count) == consecutive and int(state.total_notfinite) == total
        assert bool(state.last_finite) == finite
    assert total == len(BAD) == 7


def test_skipped_step_leaves_inner_state_bit_for_bit():
    tx = wrappers.apply_if_finite(gf.adam(0.1), 10)
    g32 = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in GRADS]
    history = run(tx, g32, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS))
    for t in range(1, len(GRADS)):
        if t in BAD:
            for a, b in zip(jax.tree.leaves(history[t][1].inner_state), jax.tree.leaves(history[t - 1][1].inner_state)):
                np.testing.assert_array_equal(a, b)
            assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(history[t][0]))


def test_non_finite_inner_output_is_skipped():
    """A finite gradient whose inner update overflows (1e30 · 1e10 in float32) is not applied either."""
    tx = wrappers.apply_if_finite(gf.chain(gf.ewma(0.5, kind="momentum"), gf.scale(1e30)), 0)
    params = jnp.zeros(2)
    state = tx.init(params)
    u, state = tx.update(jnp.array([1.0, 2.0]), state, params)
    np.testing.assert_allclose(u, [1e30, 2e30], rtol=1e-6)
    u, state = tx.update(jnp.array([1e10, 1.0]), state, params)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    np.testing.assert_array_equal(state.inner_state[0].mean, [1.0, 2.0])  # the momentum did not advance
    assert int(state.notfinite_count) == 1 and not bool(state.last_finite)


def test_matches_optax_while_bad_steps_stay_below_its_limit():
    """With max_consecutive_errors above the longest run of bad steps, optax skips the same steps."""
    g32 = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in GRADS]
    p32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
    ours = run(wrappers.apply_if_finite(gf.adam(0.1), max_consecutive_errors=5), g32, p32)
    theirs = run(optax.apply_if_finite(optax.adam(0.1), max_consecutive_errors=5), g32, p32)
    for (u1, s1), (u2, s2) in zip(ours, theirs):
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert int(s1.notfinite_count) == int(s2.notfinite_count)
        assert int(s1.total_notfinite) == int(s2.total_notfinite)
        assert bool(s1.last_finite) == bool(s2.last_finite)


def test_never_applies_a_non_finite_update_unlike_optax():
    """Documented difference: optax gives up after max_consecutive_errors and applies NaNs; gradflow never."""
    g32 = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in GRADS[5:10]]  # five bad in a row
    p32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
    tx = wrappers.apply_if_finite(gf.sgd(0.1), max_consecutive_errors=2)
    ours = run(tx, g32, p32)
    theirs = run(optax.apply_if_finite(optax.sgd(0.1), max_consecutive_errors=2), g32, p32)
    assert all(np.all(np.isfinite(np.asarray(x))) for u, _ in ours for x in jax.tree.leaves(u))
    non_finite = [not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(u)) for u, _ in theirs]
    assert non_finite == [False, False, True, True, True]  # optax applies the 3rd bad step in a row, and on
    assert int(ours[-1][1].notfinite_count) == 5
    # the limit marks the run as diverged: after the 3rd bad step in a row, where optax gives up
    assert [bool(tx.exceeded(state)) for _, state in ours] == [False, False, True, True, True]
    for (_, s1), (_, s2) in zip(ours, theirs):  # the counters are optax's
        assert (int(s1.notfinite_count), int(s1.total_notfinite)) == (int(s2.notfinite_count), int(s2.total_notfinite))


def test_after_limit_apply_is_optax_rule():
    """after_limit="apply": optax's numbers, NaNs included, at every step (five bad steps in a row, limit 2)."""
    g32 = [jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g) for g in GRADS[3:12]]
    p32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
    hyper = {"learning_rate": np.float32(0.05), "momentum": np.float32(0.9)}
    ours = run(wrappers.apply_if_finite(gf.sgd(**hyper), 2, after_limit="apply"), g32, p32)
    theirs = run(optax.apply_if_finite(optax.sgd(**hyper), max_consecutive_errors=2), g32, p32)
    applied_nan = 0
    for t, ((u1, s1), (u2, s2)) in enumerate(zip(ours, theirs)):
        for a, b in zip(jax.tree.leaves((u1, s1.inner_state)), jax.tree.leaves((u2, s2.inner_state))):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"step {t}")  # NaN == NaN here
        applied_nan += not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(u1))
        assert int(s1.notfinite_count) == int(s2.notfinite_count)
        assert int(s1.total_notfinite) == int(s2.total_notfinite)
    assert applied_nan >= 3  # not vacuous: optax's rule let NaN through, and so did ours


def key_paths(tree):
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_state_layout_and_signature_are_optax():
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
    ours = wrappers.apply_if_finite(optax.adam(0.1), 3).init(params)
    theirs = optax.apply_if_finite(optax.adam(0.1), 3).init(params)
    assert describe(ours) == describe(theirs)
    assert key_paths(ours) == key_paths(theirs)  # the same leaves in the same order (orbax's keys)
    # an optax state (a checkpoint of one) runs in gradflow's apply_if_finite, and gives optax's next step
    tx, ref = wrappers.apply_if_finite(gf.sgd(0.1, momentum=0.9), 3), optax.apply_if_finite(optax.sgd(0.1, 0.9), 3)
    state = ref.update(params, ref.init(params), params)[1]
    mine = jax.tree.unflatten(jax.tree.structure(tx.init(params)), jax.tree.leaves(state))
    np.testing.assert_allclose(tx.update(params, mine, params)[0]["w"], ref.update(params, state, params)[0]["w"])
    assert_signature_matches(wrappers.apply_if_finite, optax.apply_if_finite, {"after_limit"})


def test_apply_if_finite_errors():
    with pytest.raises(TypeError, match=r"max_consecutive_errors"):
        wrappers.apply_if_finite(gf.sgd(0.1))  # required, as in optax
    for bad in (2.5, True, None, "3", jnp.ones(2, jnp.int32)):
        with pytest.raises(TypeError, match=r"apply_if_finite: max_consecutive_errors must be an integer >= 0"):
            wrappers.apply_if_finite(gf.sgd(0.1), bad)
    with pytest.raises(ValueError, match=r"apply_if_finite: max_consecutive_errors must be an integer >= 0, got -1"):
        wrappers.apply_if_finite(gf.sgd(0.1), -1)
    with pytest.raises(ValueError, match=r"apply_if_finite: after_limit must be one of 'skip', 'apply', got 'raise'"):
        wrappers.apply_if_finite(gf.sgd(0.1), 3, after_limit="raise")
    with pytest.raises(TypeError, match=r"apply_if_finite: inner must be a transform with init and update"):
        wrappers.apply_if_finite(0.1, 3)
    for good in (0, np.int64(3), jnp.int32(3)):  # concrete integers of any kind
        assert wrappers.apply_if_finite(gf.sgd(0.1), good).max_consecutive_errors == int(good)


def test_zero_nans_matches_optax():
    tx, ref = wrappers.zero_nans(), optax.zero_nans()
    for g in GRADS:
        g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)
        u, state = tx.update(g, tx.init(g))
        u_ref, state_ref = ref.update(g, ref.init(g))
        for a, b in zip(jax.tree.leaves((u, state)), jax.tree.leaves((u_ref, state_ref))):
            np.testing.assert_array_equal(a, b)
        expected = {k: np.where(np.isnan(v), 0.0, v) for k, v in g.items()}  # ±Inf pass through
        for k in g:
            np.testing.assert_array_equal(u[k], expected[k].astype(np.float32))
            assert bool(state.found_nan[k]) == bool(np.any(np.isnan(g[k])))
