"""partition, masked, freeze: NumPy float64 references, optax parity, state per group, clear errors."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow import wrappers
from gradflow.wrappers.partition import MaskedNode

# gradflow's names, wrappers included (so that ``make(GF)`` and ``make(optax)`` build the same optimizer)
GF = types.SimpleNamespace(
    **{**{n: getattr(gf, n) for n in gf.__all__}, **{n: getattr(wrappers, n) for n in wrappers.__all__}}
)
STEPS = 6
_rng = np.random.default_rng(7)
SHAPES = {"dense": {"w": (2, 3), "b": (3,)}, "scale": ((),)}
PARAMS64 = jax.tree.map(
    lambda s: _rng.normal(size=s), SHAPES, is_leaf=lambda x: isinstance(x, tuple) and all(isinstance(i, int) for i in x)
)
GRADS64 = [jax.tree.map(lambda p: _rng.normal(size=np.shape(p)), PARAMS64) for _ in range(STEPS)]
LABELS = {"dense": {"w": "fast", "b": "slow"}, "scale": "slow"}  # "scale" labels its whole subtree
MASK = {"dense": {"w": True, "b": False}, "scale": True}


def f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def run_updates(tx, grads, params):
    """The updates of ``len(grads)`` steps at fixed params, in one jitted step function."""
    step = jax.jit(lambda g, s: tx.update(g, s, params))
    state, out = tx.init(params), []
    for g in grads:
        u, state = step(g, state)
        out.append(u)
    return out, state


def assert_trees_close(actual, expected, rtol, atol=0.0):
    flat = jax.tree_util.tree_flatten_with_path(actual)[0]
    leaves = jax.tree.leaves(expected)
    assert len(flat) == len(leaves)
    for (path, a), e in zip(flat, leaves):
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(e), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


def by_rank(params):
    return jax.tree.map(lambda p: "fast" if jnp.ndim(p) >= 2 else "slow", params)


def matrices(params):
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


# --- partition ------------------------------------------------------------------------------------


def reference_partition():
    """NumPy: w gets heavy-ball momentum (η=0.1, γ=0.9), b and scale plain SGD (η=0.05)."""
    m = np.zeros_like(PARAMS64["dense"]["w"])
    out = []
    for g in GRADS64:
        m = 0.9 * m + g["dense"]["w"]
        out.append({"dense": {"w": -0.1 * m, "b": -0.05 * g["dense"]["b"]}, "scale": (-0.05 * g["scale"][0],)})
    return out


@pytest.mark.parametrize("labels", [LABELS, by_rank], ids=["tree-prefix", "function"])
def test_partition_matches_numpy_reference(labels):
    with jax.enable_x64(True):
        tx = wrappers.partition({"fast": gf.sgd(0.1, momentum=0.9), "slow": gf.sgd(0.05)}, labels)
        updates, state = run_updates(tx, GRADS64, PARAMS64)
        for step, (u, e) in enumerate(zip(updates, reference_partition())):
            assert u["dense"]["w"].dtype == jnp.float64
            assert_trees_close(u, e, rtol=1e-12, atol=0), step
    # each group's transform keeps state for its own leaves only
    momentum = state.inner_states["fast"].inner_state[0][0]  # the momentum buffer
    assert momentum["dense"]["b"] == MaskedNode() and jax.tree.leaves(momentum["scale"]) == []
    assert momentum["dense"]["w"].shape == (2, 3)


def test_partition_matches_optax():
    def make(lib):
        return lib.partition(
            {"fast": lib.adam(0.01), "slow": lib.sgd(0.05, momentum=0.5)},
            {"dense": {"w": "fast", "b": "slow"}, "scale": ("slow",)},
        )

    grads = [f32(g) for g in GRADS64]
    ours, _ = run_updates(make(GF), grads, f32(PARAMS64))
    theirs, _ = run_updates(make(optax), grads, f32(PARAMS64))
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(ours[-1]["dense"]["w"])) > 1e-4)  # not a vacuous comparison


def test_optax_transform_inside_partition():
    """An optax transform in a group sees a MaskedNode for the other groups' leaves, as in optax."""
    grads, params = [f32(g) for g in GRADS64], f32(PARAMS64)
    mixed = wrappers.partition({"fast": optax.adam(0.01), "slow": gf.sgd(0.05, momentum=0.5)}, LABELS)
    reference = optax.partition({"fast": optax.adam(0.01), "slow": optax.sgd(0.05, momentum=0.5)}, LABELS)
    for a, b in zip(run_updates(mixed, grads, params)[0], run_updates(reference, grads, params)[0]):
        assert_trees_close(a, b, rtol=1e-5, atol=1e-6)


def test_partition_passes_params_and_extra_args_to_each_group():
    """add_decayed_weights sees its group's params; extra args reach the transforms."""
    tx = wrappers.partition({"fast": gf.add_decayed_weights(0.5), "slow": gf.identity()}, by_rank)
    params = f32(PARAMS64)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params, value=jnp.float32(1.0))
    np.testing.assert_allclose(updates["dense"]["w"], 0.5 * np.asarray(params["dense"]["w"]), rtol=1e-7)
    np.testing.assert_array_equal(updates["dense"]["b"], np.zeros(3, np.float32))


def test_partition_mask_compatible_extra_args():
    seen = []

    @gf.pytree_dataclass
    class Record(gf.Transform):
        def init(self, params):
            return gf.EmptyState()

        def update(self, updates, state, params=None, **extra):
            seen.append(extra["tag"])
            return updates, state

    params = f32(PARAMS64)
    for flag in (False, True):
        seen.clear()
        tx = wrappers.partition({"fast": Record(), "slow": Record()}, LABELS, mask_compatible_extra_args=flag)
        tx.update(params, tx.init(params), params, tag=params)
        fast_tag = seen[0]
        assert isinstance(fast_tag["dense"]["b"], MaskedNode) == flag
        assert fast_tag["dense"]["w"] is not None


def test_partition_errors_name_labels_and_paths():
    with pytest.raises(ValueError, match=r"no transform for the label 'slow'.*transforms are given for 'fast'"):
        wrappers.partition({"fast": gf.sgd(0.1)}, LABELS)
    with pytest.raises(ValueError, match=r"no parameter is labelled 'unused'"):
        wrappers.partition({"fast": gf.sgd(0.1), "slow": gf.sgd(0.1), "unused": gf.adam(0.1)}, LABELS)
    # with a label function the labels are known only given the params: the check runs at init
    tx = wrappers.partition({"fast": gf.sgd(0.1)}, by_rank)
    message = r"no transform for the label 'slow', used by params\['dense'\]\['b'\], params\['scale'\]\[0\];"
    with pytest.raises(ValueError, match=message):
        tx.init(f32(PARAMS64))
    tx = wrappers.partition({"fast": gf.sgd(0.1), "slow": gf.sgd(0.1), "other": gf.sgd(0.1)}, by_rank)
    with pytest.raises(ValueError, match=r"no parameter is labelled 'other'"):
        tx.init(f32(PARAMS64))
    tx = wrappers.partition({"fast": gf.sgd(0.1), "slow": gf.sgd(0.1)}, {"dense": "fast", "other": "slow"})
    with pytest.raises(gf.TreeMismatchError, match=r"partition: param_labels must have the structure of the param"):
        tx.init(f32(PARAMS64))
    with pytest.raises(TypeError, match=r"partition: param_labels\['dense'\]\['w'\] must be a hashable label"):
        wrappers.partition({"fast": gf.sgd(0.1)}, {"dense": {"w": np.ones(2), "b": "fast"}, "scale": "fast"})
    tx = wrappers.partition({"a": gf.sgd(0.1)}, lambda p: jax.tree.map(lambda x: f"rank{jnp.ndim(x)}", p))
    message = r"label 'rank1', used by params\['dense'\]\['b'\] \(nor for the labels 'rank2', 'rank0'\)"
    with pytest.raises(ValueError, match=message):
        tx.init(f32(PARAMS64))
    with pytest.raises(TypeError, match=r"partition: transforms\['fast'\] must be a transform"):
        wrappers.partition({"fast": 0.1}, "fast")
    with pytest.raises(TypeError, match=r"partition: transforms must be a mapping"):
        wrappers.partition([gf.sgd(0.1)], "fast")


def test_multi_transform_is_partition():
    a = wrappers.multi_transform({"fast": gf.sgd(0.1), "slow": gf.sgd(0.2)}, LABELS)
    b = wrappers.partition({"fast": gf.sgd(0.1), "slow": gf.sgd(0.2)}, LABELS)
    assert jax.tree.structure(a) == jax.tree.structure(b)


# --- masked and freeze ---------------------------------------------------------------------------


def test_masked_matches_numpy_reference_and_passes_others_through():
    """Momentum where the mask is true (η=0.1, γ=0.9); the other updates come back bit for bit."""
    with jax.enable_x64(True):
        tx = wrappers.masked(gf.sgd(0.1, momentum=0.9), MASK)
        updates, state = run_updates(tx, GRADS64, PARAMS64)
        m_w, m_s = np.zeros((2, 3)), 0.0
        for u, g in zip(updates, GRADS64):
            m_w, m_s = 0.9 * m_w + g["dense"]["w"], 0.9 * m_s + g["scale"][0]
            np.testing.assert_allclose(u["dense"]["w"], -0.1 * m_w, rtol=1e-12)
            np.testing.assert_allclose(u["scale"][0], -0.1 * m_s, rtol=1e-12)
            np.testing.assert_array_equal(u["dense"]["b"], g["dense"]["b"])
    assert state.inner_state[0][0]["dense"]["b"] == MaskedNode()  # no state for the masked-out leaf


@pytest.mark.parametrize(
    "mask",
    [MASK, matrices, {"dense": {"w": True, "b": False}, "scale": (True,)}],
    ids=["tree-prefix", "function", "full-tree"],
)
def test_masked_matches_optax(mask):
    grads = [f32(g) for g in GRADS64]
    inner = lambda lib: lib.chain(lib.clip_by_global_norm(1.0), lib.adam(0.01))
    optax_mask = mask if not callable(mask) else (lambda p: jax.tree.map(lambda x: jnp.ndim(x) >= 2, p))
    ours, _ = run_updates(wrappers.masked(inner(gf), mask), grads, f32(PARAMS64))
    theirs, _ = run_updates(optax.masked(inner(optax), optax_mask), grads, f32(PARAMS64))
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b, rtol=1e-5, atol=1e-6)


def test_nested_masks():
    """A masked transform inside another sees a MaskedNode for the outer's masked-out leaves."""
    inner = wrappers.masked(gf.scale(10.0), {"dense": {"w": False, "b": True}, "scale": True})
    tx = wrappers.masked(inner, MASK)
    g = f32(GRADS64[0])
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(u["dense"]["w"], g["dense"]["w"])  # outer in, inner out
    np.testing.assert_array_equal(u["dense"]["b"], g["dense"]["b"])  # outer out
    np.testing.assert_allclose(u["scale"][0], 10 * g["scale"][0], rtol=1e-7)  # both in


def test_freeze_zeros_frozen_updates_like_optax():
    grads = [f32(g) for g in GRADS64]
    frozen = {"dense": {"w": False, "b": True}, "scale": True}
    ours, _ = run_updates(gf.chain(gf.sgd(0.1, momentum=0.9), wrappers.freeze(frozen)), grads, f32(PARAMS64))
    theirs, _ = run_updates(optax.chain(optax.sgd(0.1, momentum=0.9), optax.freeze(frozen)), grads, f32(PARAMS64))
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b, rtol=1e-6)
        np.testing.assert_array_equal(a["dense"]["b"], np.zeros(3, np.float32))
        assert np.all(np.asarray(a["dense"]["w"]) != 0)
    everything, _ = run_updates(wrappers.freeze(True), grads[:1], f32(PARAMS64))
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(everything))


def test_partition_with_set_to_zero_keeps_no_state_for_frozen_leaves():
    tx = wrappers.partition({"train": gf.adam(0.1), "frozen": wrappers.set_to_zero()}, by_rank_frozen)
    u, state = tx.update(f32(GRADS64[0]), tx.init(f32(PARAMS64)), f32(PARAMS64))
    np.testing.assert_array_equal(u["dense"]["b"], np.zeros(3, np.float32))
    assert state.inner_states["frozen"] == wrappers.MaskedState(gf.EmptyState())


def by_rank_frozen(params):
    return jax.tree.map(lambda p: "train" if jnp.ndim(p) >= 2 else "frozen", params)


def test_mask_errors():
    with pytest.raises(TypeError, match=r"masked: mask\['dense'\]\['w'\] must be a boolean, got 1"):
        wrappers.masked(gf.sgd(0.1), {"dense": {"w": 1, "b": False}, "scale": True})
    with pytest.raises(TypeError, match=r"freeze: mask\['a'\] must be a boolean"):
        wrappers.freeze({"a": "yes"})
    with pytest.raises(TypeError, match=r"masked: inner must be a transform with init and update"):
        wrappers.masked(0.1, MASK)
    tx = wrappers.freeze({"dense": True})
    with pytest.raises(gf.TreeMismatchError, match=r"freeze: mask must have the structure of the parameters"):
        tx.init(f32(PARAMS64))

    traced = wrappers.masked(gf.sgd(0.1), lambda p: jax.tree.map(lambda x: jnp.all(x > 0), p))
    with pytest.raises(TypeError, match=r"masked: mask\['dense'\]\['b'\] is a traced array"):
        jax.jit(traced.init)(f32(PARAMS64))
