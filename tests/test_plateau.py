"""reduce_on_plateau: optax.contrib's numbers and a NumPy reference on scripted values, errors, and the laws.

The transform needs the ``value=`` extra argument at every update, which two of the registry-wide law
tests do not pass, so its laws are checked here instead of in the registry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow.transforms.plateau import ReduceOnPlateau, ReduceOnPlateauState, reduce_on_plateau

_rng = np.random.default_rng(7)
# Scripted values: improvements, exact repeats, tiny improvements below rtol, a long plateau, jumps, then a
# noisy slow decline (which exercises accumulation).
SCRIPTED = [10.0, 9.0, 9.5, 9.2, 9.1, 9.0, 9.0005, 8.9999, 9.0, 9.0, 9.0, 9.0, 9.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 6.0]
SCRIPTED += [7.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.99, 3.99, 3.99, 3.99, 3.99, 3.99, 3.99]
NOISY = list(3.0 + 0.3 * np.cos(np.arange(160) / 3.0) - 0.004 * np.arange(160) + 0.05 * _rng.normal(size=160))
VALUES = np.asarray(SCRIPTED + NOISY, np.float32)

SETTINGS = {
    "defaults": {},
    "patience_2": dict(factor=0.5, patience=2),
    "cooldown": dict(factor=0.5, patience=2, cooldown=3),
    "min_scale": dict(factor=0.3, patience=1, min_scale=0.05),
    "accumulate": dict(factor=0.5, patience=2, accumulation_size=4, cooldown=1),
    "atol_only": dict(factor=0.7, patience=3, rtol=0.0, atol=0.05),
    "rtol_and_atol": dict(factor=0.8, patience=1, rtol=0.01, atol=0.01, cooldown=2, min_scale=0.2),
    "patience_0": dict(factor=0.9, patience=0),
}
FIELDS = ReduceOnPlateauState._fields


def np_reduce_on_plateau(
    values, factor=0.1, patience=10, rtol=1e-4, atol=0.0, cooldown=0, accumulation_size=1, min_scale=0.0
):
    """The rule, in float64: returns the scale after each value."""
    scale, best, plateau, cooling, total, n, scales = 1.0, np.inf, 0, 0, 0.0, 0, []
    for value in values:
        total, n = total + float(value), n + 1
        if n == accumulation_size:
            mean, total, n = total / accumulation_size, 0.0, 0
            if mean < (1 - rtol) * best - atol:
                best, plateau = mean, 0
            else:
                plateau += 1
            if cooling > 0:
                cooling, plateau = cooling - 1, 0
            elif plateau == patience:
                scale, plateau, cooling = max(scale * factor, min_scale), 0, cooldown
            else:
                scale = max(scale, min_scale)
        scales.append(scale)
    return np.array(scales)


@jax.jit
def _update_with_value(tx, state, params, value):
    # module level, the transform an argument: one compiled program for every setting
    return tx.update(jnp.ones_like(params), state, params, value=value)


def run(tx, values=VALUES, params=None):
    """Feed ``values`` one by one; return the updates (of a gradient of ones) and states after each."""
    params = jnp.zeros(3) if params is None else params
    state = tx.init(params)
    outs, states = [], []
    for value in values:
        updates, state = _update_with_value(tx, state, params, jnp.float32(value))
        outs.append(np.asarray(updates))
        states.append(state)
    return np.array(outs), states


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_matches_optax_contrib_state_by_state(name):
    kwargs = SETTINGS[name]
    ours, our_states = run(reduce_on_plateau(**kwargs))
    reference = optax.contrib.reduce_on_plateau(**kwargs)
    params = jnp.zeros(3)
    state = reference.init(params)
    update = jax.jit(reference.update)
    for i, value in enumerate(VALUES):
        updates, state = update(jnp.ones(3), state, params, value=jnp.float32(value))
        np.testing.assert_array_equal(ours[i], updates, err_msg=f"updates at step {i}")
        for field in FIELDS:
            np.testing.assert_array_equal(
                getattr(our_states[i], field), getattr(state, field), err_msg=f"{field} at step {i}"
            )


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_matches_numpy_reference(name):
    kwargs = SETTINGS[name]
    updates, states = run(reduce_on_plateau(**kwargs))
    expected = np_reduce_on_plateau(VALUES, **kwargs)
    np.testing.assert_allclose([float(s.scale) for s in states], expected, rtol=1e-6)
    np.testing.assert_allclose(updates, np.repeat(expected[:, None], 3, axis=1), rtol=1e-6)
    assert expected[-1] < 1  # the script makes every setting reduce the scale


def test_scripted_sequence_reductions_by_hand():
    """patience 2, factor 0.5, cooldown 1: the scale after each value, worked out by hand."""
    values = [5.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0]
    # best 5, then 4 | plateau 1, 2 -> halve, cooldown 1 | cooldown ends (plateau held at 0) | plateau 1, 2 ->
    # halve, cooldown 1 | 3 improves while the cooldown ends | plateau 1, 2 -> halve.
    expected = [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]
    _, states = run(reduce_on_plateau(factor=0.5, patience=2, cooldown=1), np.asarray(values, np.float32))
    assert [float(s.scale) for s in states] == expected
    assert [int(s.cooldown_count) for s in states] == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    assert [int(s.plateau_count) for s in states] == [0, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    assert float(states[-1].best_value) == 3.0


def test_accumulation_averages_values_before_deciding():
    tx = reduce_on_plateau(factor=0.5, patience=1, accumulation_size=3)
    _, states = run(tx, np.asarray([3.0, 6.0, 0.0, 1.0, 2.0, 9.0], np.float32))
    assert [int(s.count) for s in states] == [1, 2, 0, 1, 2, 0]
    np.testing.assert_allclose([float(s.avg_value) for s in states], [3.0, 4.5, 0.0, 1.0, 1.5, 0.0])
    # First mean 3 (best), second mean 4: no improvement, patience 1 -> halved.
    assert [float(s.best_value) for s in states] == [np.inf, np.inf, 3.0, 3.0, 3.0, 3.0]
    assert [float(s.scale) for s in states] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]


def test_missing_value_raises_an_error_naming_it():
    tx = reduce_on_plateau()
    params = jnp.ones(2)
    with pytest.raises(ValueError, match="value= extra argument"):
        tx.update(params, tx.init(params), params)
    chained = gf.chain(gf.adam(0.1), tx)
    with pytest.raises(ValueError, match="reduce_on_plateau: update needs the monitored metric as the value="):
        chained.update(params, chained.init(params), params)
    with pytest.raises(ValueError, match="value must be a scalar"):
        tx.update(params, tx.init(params), params, value=jnp.ones(2))
    with pytest.raises(ValueError, match="ReduceOnPlateauState"):
        tx.update(params, (), params, value=1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(factor=1.0), r"factor must be in \(0.0, 1.0\)"),
        (dict(factor=0.0), r"factor must be in \(0.0, 1.0\)"),
        (dict(patience=-1), r"patience must be in \[0.0, inf\)"),
        (dict(patience=2.5), "patience must be an integer >= 0"),
        (dict(rtol=-0.1), r"rtol must be in \[0.0, 1.0\]"),
        (dict(rtol=1.5), r"rtol must be in \[0.0, 1.0\]"),
        (dict(atol=-1.0), r"atol must be in \[0.0, inf\)"),
        (dict(rtol=0.0, atol=0.0), "rtol and atol must not both be 0"),
        (dict(cooldown=-2), r"cooldown must be in \[0.0, inf\)"),
        (dict(accumulation_size=0), r"accumulation_size must be in \[1.0, inf\)"),
        (dict(min_scale=-0.1), r"min_scale must be in \[0.0, 1.0\]"),
        (dict(factor="a"), "factor must be a number"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=f"reduce_on_plateau: {message}"):
        reduce_on_plateau(**kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# The laws of DESIGN.md (here because the transform needs ``value``).
# ----------------------------------------------------------------------------------------------------------------------


def make_params(dtype=jnp.float32):
    return {"w": jnp.ones((3, 2), dtype), "b": (jnp.zeros(2, dtype),)}


def loss(params):
    return jnp.sum(jnp.square(params["w"].astype(jnp.float32) - 2.0)) + jnp.sum(
        jnp.square(params["b"][0].astype(jnp.float32) + 1)
    )


def scan_run(tx, params, steps=12):
    def body(carry, _):
        params, state = carry
        value = loss(params)
        updates, state = tx.update(jax.grad(loss)(params), state, params, value=value)
        return (gf.apply_updates(params, updates), state), state.scale if isinstance(state, ReduceOnPlateauState) else 0

    return jax.lax.scan(body, (params, tx.init(params)), length=steps)


def signature(tree):
    return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_is_stable_through_scan_and_updates_keep_dtype(dtype):
    tx = gf.chain(gf.sgd(0.5), reduce_on_plateau(factor=0.5, patience=1, accumulation_size=2))
    params = make_params(dtype)
    (new_params, state), _ = jax.jit(scan_run)(tx, params)
    assert signature(state) == signature(tx.init(params))
    assert signature(new_params) == signature(params)
    updates, _ = tx.update(jax.grad(loss)(params), tx.init(params), params, value=loss(params))
    assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
    assert tx.init(params)[-1].scale.dtype == jnp.float32  # at least float32 whatever the params


def test_pure_and_jit_equals_eager():
    tx = reduce_on_plateau(factor=0.5, patience=1)
    params = make_params()
    state = tx.init(params)
    for value in (3.0, 3.0, 3.0):
        eager = tx.update(params, state, params, value=value)
        again = tx.update(params, state, params, value=value)
        jitted = jax.jit(lambda tx, s, v: tx.update(params, s, params, value=v))(tx, state, value)
        for a, b, c in zip(jax.tree.leaves(eager), jax.tree.leaves(again), jax.tree.leaves(jitted)):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, c)
        state = eager[1]
    assert float(state.scale) == 0.25  # best 3, then two evaluations without improvement


def test_compiles_once_for_any_hyperparameter_values():
    traces = []

    @jax.jit
    def step(tx, state, value):
        traces.append(1)
        return tx.update(jnp.ones(2), state, None, value=value)

    for kwargs in [dict(), dict(factor=0.5, patience=3, cooldown=2), dict(rtol=0.0, atol=0.1, min_scale=0.01)]:
        tx = reduce_on_plateau(**kwargs)
        state = tx.init(jnp.ones(2))
        for value in (1.0, 1.0):
            _, state = step(tx, state, value)
    assert len(traces) == 1


def test_vmap_over_a_batch_of_settings_equals_a_loop():
    settings = [SETTINGS[name] for name in ("patience_2", "cooldown", "min_scale", "rtol_and_atol")]
    full = [{**dict(factor=0.1, patience=10, rtol=1e-4, atol=0.0, cooldown=0, min_scale=0.0), **s} for s in settings]
    batch = jax.vmap(lambda **kw: reduce_on_plateau(**kw))(
        **{
            k: jnp.asarray([s[k] for s in full])
            for k in ("factor", "patience", "rtol", "atol", "cooldown", "min_scale")
        }
    )
    assert isinstance(batch, ReduceOnPlateau)
    values = jnp.asarray(VALUES[:60])

    def scales(tx):
        def body(state, value):
            _, state = tx.update(jnp.ones(2), state, None, value=value)
            return state, state.scale

        return jax.lax.scan(body, tx.init(jnp.ones(2)), values)[1]

    batched = jax.jit(jax.vmap(scales))(batch)
    single = jax.jit(scales)  # one compiled program for the four settings of the loop
    for i, kwargs in enumerate(settings):
        np.testing.assert_array_equal(batched[i], single(reduce_on_plateau(**kwargs)))
        np.testing.assert_allclose(batched[i], np_reduce_on_plateau(VALUES[:60], **kwargs), rtol=1e-6)


def test_in_a_chain_after_adam_and_inside_optax_chain():
    params = make_params()
    tx = gf.chain(gf.adam(0.5), reduce_on_plateau(factor=0.5, patience=1))
    reference = optax.chain(
        optax.adam(0.5, b1=np.float32(0.9), b2=np.float32(0.999), eps=np.float32(1e-8)),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=1),
    )
    ours, theirs = params, params
    state, ref_state = tx.init(params), reference.init(params)

    @jax.jit  # jitted steps (25 eager steps compile op by op): both sides are compared after every step
    def step(ours, state, theirs, ref_state):
        updates, state = tx.update(jax.grad(loss)(ours), state, ours, value=loss(ours))
        ref_updates, ref_state = reference.update(jax.grad(loss)(theirs), ref_state, theirs, value=loss(theirs))
        return gf.apply_updates(ours, updates), state, optax.apply_updates(theirs, ref_updates), ref_state

    for _ in range(25):
        ours, state, theirs, ref_state = step(ours, state, theirs, ref_state)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert float(state[-1].scale) == float(ref_state[1].scale) < 1
    # As an element of optax.chain (through as_optax, which keeps the extra arguments).
    mixed = optax.chain(optax.sgd(0.1), reduce_on_plateau(factor=0.5, patience=1).as_optax())
    mixed_state = mixed.init(params)
    for _ in range(3):
        _, mixed_state = mixed.update(params, mixed_state, params, value=1.0)
    assert float(mixed_state[1].scale) == 0.25  # best 1.0, then two evaluations without improvement


def test_float64_params_keep_a_float64_state():
    with jax.enable_x64(True):
        state = reduce_on_plateau().init({"w": jnp.ones(2, jnp.float64)})
        assert state.best_value.dtype == jnp.float64 and state.scale.dtype == jnp.float64
    assert reduce_on_plateau().init(None).scale.dtype == jnp.float32
