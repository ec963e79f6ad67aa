"""Hyperparameters that are schedules, inject_hyperparams, get_hyperparam and set_hyperparam."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow.core import Schedule, ScheduleState, pytree_dataclass

STEPS = 6


@pytree_dataclass
class Harmonic(Schedule):
    """A test schedule written here, independent of gradflow.schedules: value0 / (1 + rate·t)."""

    value0: Any
    rate: Any

    def __call__(self, count):
        return self.value0 / (1.0 + self.rate * count)


def numpy_harmonic(value0, rate, t):
    return value0 / (1.0 + rate * t)


def quadratic_grad(x):
    return np.array([2.0, -1.0, 0.5]) * x + np.array([0.1, 0.2, -0.3])


def test_scheduled_learning_rate_and_momentum_follow_numpy():
    """sgd with momentum where both the learning rate and the momentum are schedules, step by step."""
    with jax.enable_x64(True):
        lr, mu = Harmonic(0.1, 0.5), Harmonic(0.9, 0.1)
        tx = gf.sgd(lr, momentum=mu)
        x = np.array([1.0, -2.0, 0.5])
        params, state = jnp.asarray(x), tx.init(jnp.asarray(x))
        trace = np.zeros(3)
        update = jax.jit(tx.update)
        for t in range(STEPS):
            u, state = update(jnp.asarray(quadratic_grad(x)), state, params)
            trace = numpy_harmonic(0.9, 0.1, t) * trace + quadratic_grad(x)
            step = -numpy_harmonic(0.1, 0.5, t) * trace
            np.testing.assert_allclose(u, step, rtol=1e-13, atol=0)
            x = x + step
            params = gf.apply_updates(params, u)
        counts = [s.count for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, ScheduleState))
                  if isinstance(s, ScheduleState)]  # fmt: skip
        assert [int(c) for c in counts] == [STEPS, STEPS]
        assert float(gf.get_hyperparam(state, "learning_rate")) == pytest.approx(numpy_harmonic(0.1, 0.5, STEPS - 1))


def test_plain_function_is_a_schedule_like_in_optax():
    tx, reference = gf.adam(lambda t: 0.1 * 0.5**t), optax.adam(lambda t: 0.1 * 0.5**t)
    params = {"w": jnp.array([1.0, -2.0])}
    state, ref_state = tx.init(params), reference.init(params)
    for _ in range(STEPS):
        grads = jax.tree.map(lambda p: 2 * p, params)
        u, state = tx.update(grads, state, params)
        v, ref_state = reference.update(grads, ref_state, params)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-5)  # the float32 tolerance of tests/test_optax_parity.py
        params = gf.apply_updates(params, u)


def test_one_compile_and_vmap_over_schedules():
    traces = []

    @jax.jit
    def step(tx, params, state):
        traces.append(None)
        updates, state = tx.update(params, state, params)
        return gf.apply_updates(params, updates), state

    params = jnp.array([1.0, 2.0])
    for value0 in (0.1, 0.3):
        tx = gf.sgd(Harmonic(value0, 0.5))
        step(tx, params, tx.init(params))
    assert len(traces) == 1

    batch = gf.sgd(Harmonic(jnp.array([0.1, 0.2, 0.4]), jnp.array([0.0, 0.5, 1.0])))
    batched = jax.vmap(lambda tx: step(tx, params, tx.init(params))[0])(batch)
    for i, (value0, rate) in enumerate([(0.1, 0.0), (0.2, 0.5), (0.4, 1.0)]):
        single = step(gf.sgd(Harmonic(value0, rate)), params, gf.sgd(Harmonic(value0, rate)).init(params))[0]
        np.testing.assert_allclose(batched[i], single, rtol=1e-6)


def test_gradient_flows_into_schedule_parameters():
    params = jnp.array([1.0, -1.0])

    def final_loss(value0):
        tx = gf.sgd(Harmonic(value0, 1.0))
        p, state = params, tx.init(params)
        for _ in range(3):
            u, state = tx.update(2 * p, state, p)
            p = gf.apply_updates(p, u)
        return jnp.sum(p**2)

    h = 1e-3
    numeric = (final_loss(0.1 + h) - final_loss(0.1 - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(final_loss)(0.1), numeric, rtol=1e-3)


def test_state_without_schedule_state_is_a_clear_error():
    tx = gf.scale_by_learning_rate(Harmonic(0.1, 1.0))
    with pytest.raises(ValueError, match=r"learning_rate are schedules.*ScheduleState"):
        tx.update({"w": jnp.ones(1)}, gf.EmptyState())


# --- inject_hyperparams ----------------------------------------------------------------------------------------------


def test_inject_hyperparams_equals_optax_when_the_state_is_changed_mid_run():
    tx = gf.inject_hyperparams(gf.adam)(learning_rate=0.1, b1=0.8)
    reference = optax.inject_hyperparams(optax.adam)(learning_rate=0.1, b1=0.8)
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    state, ref_state = tx.init(params), reference.init(params)
    ours, theirs = params, params
    for t in range(STEPS):
        if t == 3:
            state = gf.set_hyperparam(state, "learning_rate", 0.01)
            state = gf.set_hyperparam(state, "b1", 0.5)
            ref_state.hyperparams["learning_rate"] = jnp.asarray(0.01)
            ref_state.hyperparams["b1"] = jnp.asarray(0.5)
        u, state = tx.update(jax.tree.map(jnp.sin, ours), state, ours)
        v, ref_state = reference.update(jax.tree.map(jnp.sin, theirs), ref_state, theirs)
        np.testing.assert_allclose(u["w"], v["w"], rtol=1e-5, atol=1e-7)
        ours, theirs = gf.apply_updates(ours, u), optax.apply_updates(theirs, v)
    assert float(gf.get_hyperparam(state, "learning_rate")) == pytest.approx(0.01)


def test_inject_hyperparams_with_a_schedule_writes_its_value_to_the_state():
    tx = gf.inject_hyperparams(gf.sgd)(learning_rate=Harmonic(1.0, 1.0), momentum=0.5)
    params = jnp.array([2.0])
    state = tx.init(params)
    seen = []
    for _ in range(3):
        _, state = jax.jit(tx.update)(params, state, params)
        seen.append(float(gf.get_hyperparam(state, "learning_rate")))
    np.testing.assert_allclose(seen, [1.0, 0.5, 1.0 / 3.0], rtol=1e-6)
    assert int(state.count) == 3


def test_inject_hyperparams_keeps_non_numeric_arguments_static():
    tx = gf.inject_hyperparams(gf.adam)(learning_rate=0.1, nu_dtype=jnp.bfloat16)
    state = tx.init({"w": jnp.ones(2)})
    assert set(state.hyperparams) == {"learning_rate"}
    assert {x.dtype for x in jax.tree.leaves(state.inner)} == {jnp.dtype(t) for t in ("float32", "bfloat16", "int32")}
    tx = gf.inject_hyperparams(gf.sgd, static_args=("momentum",))(learning_rate=0.1, momentum=0.9)
    assert set(tx.init(jnp.ones(1)).hyperparams) == {"learning_rate"}


def test_set_hyperparam_keeps_dtype_and_shape_in_the_state():
    tx = gf.inject_hyperparams(gf.sgd)(learning_rate=0.1)
    state = tx.init(jnp.ones(2))
    new = gf.set_hyperparam(state, "learning_rate", 1)  # an int: stored as the old float32 scalar
    assert new.hyperparams["learning_rate"].dtype == jnp.float32
    assert new.hyperparams["learning_rate"].shape == ()


def test_get_and_set_on_transforms():
    tx = gf.chain(gf.clip_by_global_norm(2.0), gf.adamw(0.01, weight_decay=0.1))
    assert gf.get_hyperparam(tx, "max_norm") == 2.0
    assert gf.get_hyperparam(tx, "weight_decay") == 0.1
    changed = gf.set_hyperparam(tx, "learning_rate", Harmonic(0.1, 1.0))
    assert isinstance(gf.get_hyperparam(changed, "learning_rate"), Harmonic)
    assert gf.get_hyperparam(tx, "learning_rate") == 0.01  # the original is unchanged
    state = changed.init({"w": jnp.ones(1)})
    assert float(gf.get_hyperparam(state, "learning_rate")) == pytest.approx(0.1)


def test_errors_name_what_exists():
    with pytest.raises(KeyError, match=r"no hyperparameter 'momentum'.*learning_rate"):
        gf.get_hyperparam(gf.sgd(0.1), "momentum")
    with pytest.raises(KeyError, match=r"no hyperparameter 'b3'.*b1, b2"):
        gf.set_hyperparam(gf.inject_hyperparams(gf.adam)(learning_rate=0.1, b1=0.9, b2=0.99), "b3", 1.0)
    state = gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).init(jnp.ones(1))
    with pytest.raises(KeyError, match="'momentum' in this injected state; it has: learning_rate"):
        gf.set_hyperparam(state, "momentum", 0.9)
    with pytest.raises(TypeError, match="by keyword"):
        gf.inject_hyperparams(gf.sgd)(0.1)
    with pytest.raises(ValueError, match="learning_rate must be in"):
        gf.inject_hyperparams(gf.sgd)(learning_rate=-1.0)
    with pytest.raises(ValueError, match="needs the InjectHyperparamsState"):
        gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).update(jnp.ones(1), gf.EmptyState())
