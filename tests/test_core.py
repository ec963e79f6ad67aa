"""The protocol: pytree transforms, chain, identity, apply_updates, extra arguments and tree errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf


def test_hyperparameters_are_leaves_and_options_are_static():
    tx = gf.adam(0.1, b1=0.8, mu_dtype=jnp.bfloat16)
    leaves = jax.tree.leaves(tx)
    assert 0.1 in leaves and 0.8 in leaves
    ewma = tx.transforms[0].inner.first.transforms[0]
    assert ewma.dtype == jnp.bfloat16 and ewma.kind == "average"
    doubled = jax.tree.map(lambda x: 2 * x, tx)
    assert isinstance(doubled, gf.Chain) and 0.2 in jax.tree.leaves(doubled)


def test_transforms_are_hashable_and_compare_by_value():
    assert gf.adamw(1e-3) == gf.adamw(1e-3)
    assert hash(gf.adamw(1e-3)) == hash(gf.adamw(1e-3))
    assert gf.adamw(1e-3) != gf.adamw(2e-3)


def test_nested_chains_keep_their_state_tuple_as_in_optax():
    """optax.chain nests: a chain inside a chain keeps its own state tuple (opt_state[1][0].mu in optax code)."""
    a, b, c = gf.clip(1.0), gf.scale(2.0), gf.sign()
    assert gf.chain(a, b, c).transforms == (a, b, c)
    assert gf.chain(gf.chain(a, b), c).transforms == (gf.chain(a, b), c)
    params = jnp.zeros(2)
    nested = gf.chain(gf.clip_by_global_norm(1.0), gf.sgd(0.1, momentum=0.9)).init(params)
    optax_nested = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9)).init(params)
    assert jax.tree.structure(nested).num_leaves == jax.tree.structure(optax_nested).num_leaves == 1
    assert len(nested) == len(optax_nested) == 2 and len(nested[1]) == len(optax_nested[1]) == 2


def test_chain_applies_in_order():
    tx = gf.chain(gf.scale(2.0), gf.clip(1.0))
    updates, _ = tx.update(jnp.array([0.4, 0.7]), tx.init(None))
    np.testing.assert_allclose(updates, [0.8, 1.0])


def test_identity_passes_updates_through():
    g = {"a": jnp.ones(2), "b": None}
    out, state = gf.identity().update(g, gf.identity().init(g))
    assert out is g and state == gf.EmptyState()


def test_chain_rejects_wrong_state_and_non_transforms():
    tx = gf.chain(gf.clip(1.0), gf.scale(1.0))
    with pytest.raises(ValueError, match="chain of 2 transforms got a tuple of length 1"):
        tx.update(jnp.ones(1), (gf.EmptyState(),))
    with pytest.raises(TypeError, match="argument 1 must be a transform"):
        gf.chain(gf.clip(1.0), 3.0)


def test_extra_arguments_are_forwarded_and_ignored_where_unused():
    seen = {}

    @gf.pytree_dataclass
    class Spy(gf.Transform):
        def init(self, params):
            return gf.EmptyState()

        def update(self, updates, state, params=None, value=None, **extra):
            seen["value"] = value
            seen["extra"] = sorted(extra)
            return updates, state

    tx = gf.chain(gf.adam(0.1), Spy(), gf.scale(1.0))
    params = jnp.ones(2)
    tx.update(params, tx.init(params), params, value=3.0, grad_fn=jax.grad(jnp.sum), value_fn=jnp.sum)
    assert seen == {"value": 3.0, "extra": ["grad_fn", "value_fn"]}


def test_apply_updates_keeps_dtypes_and_passes_none():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": None, "c": jnp.zeros(1)}
    updates = {"a": jnp.full(2, 0.5, jnp.float32), "b": None, "c": jnp.ones(1)}
    out = gf.apply_updates(params, updates)
    assert out["a"].dtype == jnp.bfloat16 and out["b"] is None
    np.testing.assert_allclose(out["a"].astype(np.float32), [1.5, 1.5])
    np.testing.assert_allclose(out["c"], [1.0])


def test_apply_updates_rejects_integer_params():
    with pytest.raises(TypeError, match=r"params\['step'\] has dtype int32"):
        gf.apply_updates({"step": jnp.array(1, jnp.int32)}, {"step": jnp.array(0.7)})


def test_init_rejects_integer_params():
    with pytest.raises(TypeError, match=r"params\['n'\] has dtype int32"):
        gf.adam(0.1).init({"w": jnp.ones(2), "n": jnp.arange(3)})


def test_tree_mismatch_names_the_path():
    tx = gf.adam(0.1)
    state = tx.init({"w": jnp.ones(2), "b": jnp.ones(1)})
    with pytest.raises(gf.TreeMismatchError, match=r"state.mean\['b'\] has no counterpart in updates"):
        tx.update({"w": jnp.ones(2)}, state)
    with pytest.raises(gf.TreeMismatchError, match=r"updates\['w'\] has shape \(3,\) but state.mean\['w'\] has shape"):
        tx.update({"w": jnp.ones(3), "b": jnp.ones(1)}, state)
    with pytest.raises(gf.TreeMismatchError, match=r"params\['c'\] has no counterpart in updates"):
        gf.apply_updates({"w": jnp.ones(2), "c": jnp.ones(1)}, {"w": jnp.ones(2)})
    with pytest.raises(gf.TreeMismatchError, match="different containers"):
        gf.apply_updates([jnp.ones(1)], (jnp.ones(1),))


def test_none_leaves_are_skipped_by_stateful_transforms():
    tx = gf.adam(0.1)
    params = {"w": jnp.ones(2), "frozen": None}
    updates, _ = tx.update({"w": jnp.ones(2), "frozen": None}, tx.init(params), params)
    assert updates["frozen"] is None
    # The first Adam step is −η·g/|g| up to float32 rounding of 1 − b2 versus 1 − b2**1 (6.6e-6).
    np.testing.assert_allclose(updates["w"], [-0.1, -0.1], rtol=1e-5)


def test_counters_are_int32_and_saturate():
    tx = gf.debias(0.9)
    top = jnp.iinfo(jnp.int32).max
    _, state = tx.update(jnp.ones(1), type(tx.init(None))(jnp.array(top - 1, jnp.int32)))
    _, state = tx.update(jnp.ones(1), state)
    assert state.count.dtype == jnp.int32 and int(state.count) == top
    assert int(gf.tree.saturating_increment(jnp.array(5, jnp.int32))) == 6


def test_global_norm_matches_numpy():
    rng = np.random.default_rng(1)
    tree = {"a": rng.normal(size=(3, 4)), "b": [rng.normal(size=5), None]}
    expected = np.sqrt(np.sum(tree["a"] ** 2) + np.sum(tree["b"][0] ** 2))
    np.testing.assert_allclose(gf.tree.global_norm(jax.tree.map(jnp.asarray, tree)), expected, rtol=1e-6)


def test_checked_on_host_leaves_concrete_values_to_the_eager_path():
    """The context marks tracers only: an eager update of concrete values under it computes as without it."""
    tx, g = gf.adam(0.1), jnp.array([0.5, -2.0])
    with gf.core.checked_on_host(tx):
        inside = tx.update(g, tx.init(g))[0]
    np.testing.assert_array_equal(inside, tx.update(g, tx.init(g))[0])
    reference = optax.adam(0.1)
    np.testing.assert_allclose(inside, reference.update(g, reference.init(g))[0], rtol=1e-6)
