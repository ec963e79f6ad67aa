"""optax's type vocabulary on gradflow's protocol (gradflow/protocol.py) and the lazy re-exports of optax's
own functions: optax programs that build their own transforms run unchanged with ``import gradflow as optax``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow
from gradflow.protocol import FunctionTransform, Stateless


def negate_update(updates, state, params=None):
    return jax.tree.map(lambda g: -g, updates), state


def count_init(params):
    return jnp.zeros([], jnp.int32)


def count_update(updates, state, params=None):
    return updates, state + 1


PARAMS = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
GRADS = {"w": jnp.array([0.1, 0.2, -0.3]), "b": jnp.array(-1.0)}


def test_gradient_transformation_from_functions_positional_and_keyword():
    for tx in (
        gradflow.GradientTransformation(count_init, count_update),
        gradflow.GradientTransformation(init=count_init, update=count_update),
    ):
        assert isinstance(tx, FunctionTransform)
        state = tx.init(PARAMS)
        updates, state = tx.update(GRADS, state)
        assert int(state) == 1 and updates is GRADS
        init, update = tx  # unpacks like optax's NamedTuple
        assert int(update(GRADS, init(PARAMS))[1]) == 1
    assert gradflow.GradientTransformation._fields == optax.GradientTransformation._fields == ("init", "update")


def test_gradient_transformation_composes_like_optax():
    ours = gradflow.chain(gradflow.scale(0.5), gradflow.GradientTransformation(count_init, negate_update))
    theirs = optax.chain(optax.scale(0.5), optax.GradientTransformation(count_init, negate_update))
    updates, state = ours.update(GRADS, ours.init(PARAMS), PARAMS)
    expected, expected_state = theirs.update(GRADS, theirs.init(PARAMS), PARAMS)
    jax.tree.map(np.testing.assert_allclose, updates, expected)
    assert [type(s).__name__ for s in state] == [type(s).__name__ for s in expected_state]  # EmptyState, Array
    jax.tree.map(np.testing.assert_array_equal, jax.tree.leaves(state), jax.tree.leaves(expected_state))


def test_every_gradflow_transform_is_a_gradient_transformation():
    for tx in (gradflow.adam(1e-3), gradflow.chain(gradflow.sign()), gradflow.stateless(lambda u, p: u)):
        assert isinstance(tx, gradflow.GradientTransformation)
        assert isinstance(tx, gradflow.GradientTransformationExtraArgs)
    assert not isinstance(optax.adam(1e-3), gradflow.GradientTransformation)  # optax's own: a foreign object
    assert issubclass(gradflow.GradientTransformationExtraArgs, gradflow.GradientTransformation)


def test_extra_arguments_reach_an_extra_args_transform_only():
    def by_value(updates, state, params=None, *, value):  # keyword-only, no **kwargs: optax passes all extras
        return jax.tree.map(lambda g: g * value, updates), state

    tx = gradflow.chain(gradflow.GradientTransformationExtraArgs(gradflow.init_empty_state, by_value))
    updates, _ = tx.update(GRADS, tx.init(PARAMS), value=jnp.float32(3.0))
    np.testing.assert_allclose(updates["b"], -3.0)
    # A plain GradientTransformation's update takes no extras: they are dropped, as optax.chain does.
    plain = gradflow.chain(gradflow.GradientTransformation(gradflow.init_empty_state, negate_update))
    updates, _ = plain.update(GRADS, plain.init(PARAMS), value=jnp.float32(3.0))
    np.testing.assert_allclose(updates["b"], 1.0)


def test_function_transform_is_static_data_under_jit():
    tx = gradflow.GradientTransformation(count_init, negate_update)
    assert jax.tree.leaves(tx) == [] and hash(tx) == hash(gradflow.GradientTransformation(count_init, negate_update))
    step = jax.jit(lambda tx, g, s: tx.update(g, s))
    updates, _ = step(tx, GRADS, tx.init(PARAMS))
    np.testing.assert_allclose(updates["w"], -GRADS["w"])


def test_replace_swaps_a_function():
    tx = gradflow.GradientTransformation(count_init, count_update)._replace(update=negate_update)
    assert isinstance(tx, FunctionTransform)
    np.testing.assert_allclose(tx.update(GRADS, tx.init(PARAMS))[0]["b"], 1.0)


@pytest.mark.parametrize("with_params", [True, False])
def test_stateless_matches_optax(with_params):
    def f(updates, params):
        return jax.tree.map(lambda g: 2 * g, updates) if params is None else jax.tree.map(jnp.add, updates, params)

    ours, theirs = gradflow.stateless(f), optax.stateless(f)
    params = PARAMS if with_params else None
    got, state = ours.update(GRADS, ours.init(PARAMS), params)
    expected, _ = theirs.update(GRADS, theirs.init(PARAMS), params)
    jax.tree.map(np.testing.assert_allclose, got, expected)
    assert isinstance(ours, Stateless) and state == gradflow.EmptyState() == ours.init(PARAMS)


@pytest.mark.parametrize("with_params", [True, False])
def test_stateless_with_tree_map_matches_optax(with_params):
    def f(g, p):
        return 2 * g if p is None else g + p

    ours, theirs = gradflow.stateless_with_tree_map(f), optax.stateless_with_tree_map(f)
    params = PARAMS if with_params else None
    got, _ = ours.update(GRADS, ours.init(PARAMS), params)
    expected, _ = theirs.update(GRADS, theirs.init(PARAMS), params)
    jax.tree.map(np.testing.assert_allclose, got, expected)


def test_with_extra_args_support():
    tx = gradflow.adam(1e-3)
    assert gradflow.with_extra_args_support(tx) is tx
    wrapped = gradflow.with_extra_args_support(optax.scale(-1.0))  # an optax transform without **extra_args
    updates, _ = wrapped.update(GRADS, wrapped.init(PARAMS), None, value=jnp.float32(1.0))
    np.testing.assert_allclose(updates["b"], 1.0)
    assert gradflow.init_empty_state(PARAMS) == gradflow.EmptyState()


def test_lazy_reexports_are_optax_objects():
    assert gradflow.l2_loss is optax.l2_loss and gradflow.losses.l2_loss is optax.losses.l2_loss
    assert gradflow.bias_correction is optax.bias_correction is gradflow.tree.bias_correction
    assert gradflow.second_order.hvp is optax.second_order.hvp and gradflow.hvp is not optax.second_order.hvp
    assert "l2_loss" in dir(gradflow.losses) and "l2_loss" in vars(gradflow.losses)  # cached after first access
    assert not hasattr(gradflow, "no_such_name") and not hasattr(gradflow.losses, "no_such_loss")
    assert gradflow.debias(0.9) == gradflow.transforms.moments.bias_correction(0.9)


def test_an_optax_program_runs_unchanged():
    """The same training program, written against optax, run with optax and with gradflow as ``optax``."""

    def program(optax):
        def decay_to_zero():  # a user-defined transform, in optax's style
            def update_fn(updates, state, params=None):
                return jax.tree.map(lambda g, p: g + 1e-2 * p, updates, params), state

            return optax.GradientTransformation(optax.init_empty_state, update_fn)

        def loss(params):
            prediction = params["w"] @ jnp.arange(3.0) + params["b"]
            return optax.l2_loss(prediction, 1.0) + 1e-3 * optax.tree.norm(params) ** 2

        tx = optax.chain(
            optax.clip_by_global_norm(1.0), decay_to_zero(), optax.adam(optax.linear_schedule(0.1, 0.01, 5))
        )
        params, state = PARAMS, tx.init(PARAMS)
        for _ in range(5):
            grads = jax.grad(loss)(params)
            updates, state = tx.update(grads, state, params)
            params = optax.apply_updates(params, updates)
        return params, loss(params)

    (ours, our_loss), (theirs, their_loss) = program(gradflow), program(optax)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), ours, theirs)
    np.testing.assert_allclose(our_loss, their_loss, rtol=1e-5)
