"""optax's building blocks in gradflow: the same numbers and the same state layout as optax's own.

Each block is built from the same code for both libraries (``make(lib)``), run step by step on a small
pytree, and compared: updates at every step (float32, relative 1e-6), and the state's layout (type
names, field names, nesting and leaf order, by :func:`describe`) and values. Then jit == eager, the
hyperparameters as leaves, and errors that name the argument.
"""

from __future__ import annotations

import collections
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.transforms
import pytest
from conftest import assert_signature_matches, describe

import gradflow as gf
from gradflow.transforms.clipping import unitwise_clip, unitwise_norm

RNG = np.random.default_rng(7)


def _tree():
    def normal(*shape):
        return jnp.asarray(RNG.normal(size=shape), jnp.float32)

    return {"dense": {"w": normal(2, 3), "b": normal(3)}, "scale": (normal(),)}


PARAMS = _tree()
GRADS = [_tree() for _ in range(5)]
MASK = {"dense": {"w": True, "b": False}, "scale": (True,)}
FREEZE = {"dense": {"w": False, "b": True}, "scale": False}  # a prefix: "scale" freezes its whole tuple
LABELS = {"dense": {"w": "a", "b": "b"}, "scale": ("b",)}


def decay_fn(count):
    return 0.1 * 0.5**count


def every_third_skipped(step):
    return step % 3 != 1


def positive_value(step, value):
    return value > 0


def norm(updates):
    return jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree.leaves(updates)))


def large(updates):
    return norm(updates) > 2.5


def run(tx, steps=4, extras=None, evolve=True, jit=False):
    """Updates and states (after init and after each step), params moved by the updates when ``evolve``.

    With ``jit`` the whole trajectory is one compiled program (for lax.cond, which eagerly compiles at each call).
    """

    def trajectory():
        params, state = PARAMS, tx.init(PARAMS)
        updates, states = [], [state]
        for t in range(steps):
            u, state = tx.update(GRADS[t], state, params, **(extras[t] if extras else {}))
            updates.append(u)
            states.append(state)
            if evolve:
                params = gf.apply_updates(params, u)
        return updates, states

    return jax.jit(trajectory)() if jit else trajectory()


def assert_close(ours, theirs, what, rtol=1e-6):
    """Same layout (by :func:`describe`: gradflow's and optax's classes differ, their names do not) and numbers."""
    assert describe(ours) == describe(theirs), what
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_allclose(
            np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=1e-7, err_msg=what
        )


# name -> (make(lib), options): the same code builds gradflow's and optax's transform.
PAIRS = {
    "scale_by_schedule_fn": (lambda lib: lib.scale_by_schedule(decay_fn), {}),
    "scale_by_schedule_object": (lambda lib: lib.scale_by_schedule(lib.exponential_decay(0.1, 1, 0.5)), {}),
    "scale_by_sign": (lambda lib: lib.scale_by_sign(), {}),
    "keep_params_nonnegative": (lambda lib: lib.keep_params_nonnegative(), {}),
    "apply_every": (lambda lib: lib.apply_every(k=3), {"steps": 5}),
    "named_chain": (
        lambda lib: lib.named_chain(
            ("every", lib.apply_every(2)), ("schedule", lib.scale_by_schedule(decay_fn)), ("sign", lib.scale_by_sign())
        ),
        {},
    ),
    "flatten": (lambda lib: lib.flatten(lib.chain(lib.apply_every(2), lib.scale_by_schedule(decay_fn))), {}),
    "conditionally_mask": (
        lambda lib: lib.conditionally_mask(lib.apply_every(2), every_third_skipped), {"steps": 5, "jit": True}
    ),
    "conditionally_transform": (
        lambda lib: lib.conditionally_transform(
            lib.chain(lib.apply_every(2), lib.scale_by_sign()), every_third_skipped
        ),
        {"steps": 5, "jit": True},
    ),
    "conditionally_mask_extra_args": (
        lambda lib: lib.conditionally_mask(lib.scale_by_schedule(decay_fn), positive_value, forward_extra_args=True),
        {"extras": [{"value": v} for v in (1.0, -1.0, 2.0, -3.0)], "jit": True},
    ),
    "snapshot": (lambda lib: lib.chain(lib.scale_by_sign(), lib.snapshot("norm", norm)), {}),
    "monitor": (
        lambda lib: lib.monitor(
            {
                "norm": norm,
                "norm_ema": lib.measure_with_ema(norm, 0.9),
                "large": lib.measure_with_ema(large, 0.8, debias=False),
            }
        ),
        {"init_differs": True},
    ),
    "measure_with_ema_bfloat16": (
        lambda lib: lib.measure_with_ema(norm, 0.7, accumulator_dtype=jnp.bfloat16),
        {"evolve": False},
    ),
    "selective_transform": (
        lambda lib: lib.selective_transform(
            lib.chain(lib.apply_every(2), lib.scale_by_schedule(decay_fn)), freeze_mask=FREEZE
        ),
        {},
    ),
    "selective_transform_nothing_frozen": (
        lambda lib: lib.selective_transform(lib.apply_every(2), freeze_mask=False), {}
    ),
    "selective_transform_all_frozen": (lambda lib: lib.selective_transform(lib.apply_every(2), freeze_mask=True), {}),
    "masked": (lambda lib: lib.masked(lib.apply_every(2), MASK), {}),
    "partition": (
        lambda lib: lib.partition({"a": lib.apply_every(2), "b": lib.scale_by_schedule(decay_fn)}, LABELS), {}
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_numbers_and_state_layout_match_optax(name):
    make, options = PAIRS[name]
    kwargs = {key: options[key] for key in ("steps", "extras", "evolve", "jit") if key in options}
    ours, our_states = run(make(gf), **kwargs)
    theirs, their_states = run(make(optax), **kwargs)
    for t, (a, b) in enumerate(zip(ours, theirs)):
        assert_close(a, b, f"{name}: updates of step {t}")
    first = 1 if options.get("init_differs") else 0  # see test_monitor_state_is_stable_from_init
    for t in range(first, len(our_states)):
        assert describe(our_states[t]) == describe(their_states[t]), f"{name}: state layout after {t} steps"
        assert_close(our_states[t], their_states[t], f"{name}: state after {t} steps")


def test_monitor_state_is_stable_from_init():
    """optax's monitor starts with empty measurements (its state changes structure at the first update);
    gradflow's holds zeros with the layout optax's state has from then on, so it can go through lax.scan."""
    make = PAIRS["monitor"][0]
    ours = make(gf)
    _, their_states = run(make(optax), steps=1)
    init = ours.init(PARAMS)
    assert describe(init) == describe(their_states[1])
    assert their_states[0].measurements == {}  # optax's init
    assert all(float(x) == 0 for x in jax.tree.leaves(init.measurements))

    def body(state, g):
        return ours.update(g, state, PARAMS)[1], None

    final, _ = jax.lax.scan(body, init, jax.tree.map(lambda *x: jnp.stack(x), *GRADS))
    assert describe(final) == describe(init)


def test_masked_states_hold_masked_nodes_where_optax_does():
    tx = gf.masked(gf.apply_every(2), MASK)
    grad_acc = tx.init(PARAMS).inner_state.grad_acc
    assert grad_acc["dense"]["b"] == gf.MaskedNode() and type(grad_acc["dense"]["b"]).__name__ == "MaskedNode"
    assert len(jax.tree.leaves(grad_acc)) == 2  # w and scale: the masked node has no leaves
    # an optax checkpoint of the masked state restores into gradflow's structure
    their_state = optax.masked(optax.apply_every(2), MASK).init(PARAMS)
    restored = jax.tree.unflatten(jax.tree.structure(tx.init(PARAMS)), jax.tree.leaves(their_state))
    assert describe(restored) == describe(their_state)


# --- jit == eager, hyperparameters as leaves --------------------------------------------------------------------


@jax.jit
def jit_step(tx, g, state, params):
    return tx.update(g, state, params)


@pytest.mark.parametrize("name", sorted(n for n, (_, o) in PAIRS.items() if "extras" not in o))
def test_jit_equals_eager(name):
    tx = PAIRS[name][0](gf)
    # XLA keeps bfloat16 products in float32 inside a fused program, where eager rounds each one
    rtol = 4e-3 if "bfloat16" in name else 1e-6
    state = eager_state = tx.init(PARAMS)
    for g in GRADS[:3]:
        u, state = jit_step(tx, g, state, PARAMS)
        v, eager_state = tx.update(g, eager_state, PARAMS)
        assert_close(u, v, name, rtol)
        assert_close(state, eager_state, name, rtol)


def test_apply_every_k_is_a_leaf():
    """A jitted step compiles once for any k, and a batch of k runs in one vmapped program."""
    traces = []

    @jax.jit
    def step(tx, g, state):
        traces.append(1)
        return tx.update(g, state)

    for k in (2, 3):
        tx = gf.apply_every(k)
        step(tx, GRADS[0], tx.init(PARAMS))
    assert len(traces) == 1

    @jax.jit
    def trajectory(k):
        tx = gf.apply_every(k)
        state, out = tx.init(PARAMS), []
        for g in GRADS[:4]:
            u, state = tx.update(g, state)
            out.append(u)
        return out

    batched = jax.vmap(trajectory)(jnp.array([1, 2, 3]))
    for i, k in enumerate((1, 2, 3)):
        assert_close(jax.tree.map(lambda x, i=i: x[i], batched), trajectory(k), f"k={k}")


def test_scale_by_schedule_keeps_a_gradflow_schedule_as_data():
    """A gradflow schedule is a leaf of the transform (vmapped over); the state stays optax's, not a ScheduleState."""
    tx = gf.scale_by_schedule(gf.exponential_decay(0.1, 1, 0.5))
    assert len(jax.tree.leaves(tx)) >= 2  # the schedule's numbers
    assert type(tx.init(PARAMS)).__name__ == "ScaleByScheduleState"

    @jax.jit
    def second_step(lr):
        tx = gf.scale_by_schedule(gf.exponential_decay(lr, 1, 0.5))
        _, state = tx.update(GRADS[0], tx.init(PARAMS))
        return tx.update(GRADS[1], state)[0]

    batched = jax.vmap(second_step)(jnp.array([0.1, 0.3]))
    for i, lr in enumerate((0.1, 0.3)):
        assert_close(jax.tree.map(lambda x, i=i: x[i], batched), second_step(lr), "vmap")
    # a plain function stays static data (no leaves), as in optax
    assert jax.tree.leaves(gf.scale_by_schedule(decay_fn)) == []


def test_keep_params_nonnegative_keeps_params_nonnegative():
    tx = gf.chain(gf.scale(-1.0), gf.keep_params_nonnegative())
    params = jax.tree.map(jnp.abs, PARAMS)
    state = tx.init(params)
    for g in GRADS:
        u, state = tx.update(g, state, params)
        params = gf.apply_updates(params, u)
        assert all(bool(jnp.all(p >= 0)) for p in jax.tree.leaves(params))
    assert gf.NonNegativeParamsState is gf.EmptyState  # optax's is an alias of its EmptyState too
    assert optax.NonNegativeParamsState is optax.EmptyState


def test_named_chain_state_is_keyed_by_name_in_order():
    tx = gf.named_chain(("second", gf.apply_every(2)), ("first", gf.scale_by_sign()))
    state = tx.init(PARAMS)
    assert isinstance(state, collections.OrderedDict) and list(state) == ["second", "first"]
    assert type(state["second"]).__name__ == "ApplyEvery"


def test_flatten_runs_the_inner_transform_on_one_vector():
    tx = gf.flatten(gf.apply_every(2))
    assert tx.init(PARAMS).grad_acc.shape == (6 + 3 + 1,)
    mixed = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    u, _ = gf.flatten(gf.scale_by_sign()).update(mixed, gf.EmptyState())
    assert u["a"].dtype == jnp.bfloat16 and u["b"].dtype == jnp.float32  # each update keeps its dtype


def test_unitwise_clip_matches_optax():
    g = jnp.asarray(RNG.normal(size=(3, 4)), jnp.float32)
    g_norm = unitwise_norm(g)
    max_norm = jnp.full_like(g, 1.2)
    np.testing.assert_allclose(
        unitwise_clip(g_norm, max_norm, g), optax.transforms.unitwise_clip(g_norm, max_norm, g), rtol=1e-6
    )
    np.testing.assert_allclose(
        unitwise_clip(g_norm, max_norm, g, div_eps=0.5),
        optax.transforms.unitwise_clip(g_norm, max_norm, g, div_eps=0.5),
        rtol=1e-6,
    )


# --- signatures and state classes ---------------------------------------------------------------------------------

FACTORIES = [
    "apply_every",
    "conditionally_mask",
    "conditionally_transform",
    "flatten",
    "keep_params_nonnegative",
    "measure_with_ema",
    "monitor",
    "named_chain",
    "scale_by_schedule",
    "scale_by_sign",
    "selective_transform",
    "snapshot",
]


@pytest.mark.parametrize("name", FACTORIES)
def test_signature_matches_optax(name):
    assert_signature_matches(getattr(gf, name), getattr(optax, name))


def test_unitwise_clip_signature_matches_optax():
    assert_signature_matches(unitwise_clip, optax.transforms.unitwise_clip)


@pytest.mark.parametrize(
    "name",
    [
        "ApplyEvery",
        "ConditionallyMaskState",
        "ConditionallyTransformState",
        "MaskedNode",
        "MonitorState",
        "ScaleByScheduleState",
        "SnapshotState",
    ],
)
def test_state_classes_have_optax_names_and_fields(name):
    ours, theirs = getattr(gf, name), getattr(optax, name)
    assert ours.__name__ == theirs.__name__ and ours._fields == theirs._fields
    assert inspect.getdoc(ours)


# --- errors that name the argument --------------------------------------------------------------------------------


def fn(step):
    return True


NAMED_NAME = r"named_chain: the names must be unique"
UNITWISE_SHAPES = r"unitwise_clip: g_norm, max_norm and grad must have the same shape"


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: gf.apply_every(k=0), ValueError, r"apply_every: k must be an integer >= 1, got 0"),
        (lambda: gf.apply_every(k=1.5), TypeError, r"apply_every: k must be an integer"),
        (lambda: gf.apply_every(k=True), TypeError, r"apply_every: k must be an integer"),
        (lambda: gf.scale_by_schedule(0.1), TypeError, r"scale_by_schedule: step_size_fn must be a schedule"),
        (lambda: gf.scale_by_schedule(lambda c: jnp.nan), ValueError, r"scale_by_schedule: step_size_fn .*NaN"),
        (lambda: gf.named_chain(("a", gf.sign()), ("a", gf.sign())), ValueError, NAMED_NAME),
        (lambda: gf.named_chain(gf.sign()), TypeError, r"named_chain: argument 0 must be a \(name, transform\) pair"),
        (lambda: gf.named_chain(("a", 0.1)), TypeError, r"named_chain: the transform of 'a' must be a transform"),
        (lambda: gf.flatten(0.1), TypeError, r"flatten: inner must be a transform"),
        (lambda: gf.conditionally_mask(gf.sign(), 3), TypeError, r"conditionally_mask: should_transform_fn must be"),
        (lambda: gf.conditionally_transform(0.1, fn), TypeError, r"conditionally_transform: inner must be a transform"),
        (lambda: gf.snapshot(1, norm), TypeError, r"snapshot: measure_name must be a string"),
        (lambda: gf.snapshot("n", 1.0), TypeError, r"snapshot: measure must be a function"),
        (lambda: gf.monitor([norm]), TypeError, r"monitor: measures must be a dict"),
        (lambda: gf.monitor({1: norm}), TypeError, r"monitor: the names of measures must be strings"),
        (lambda: gf.monitor({"n": 0.5}), TypeError, r"monitor: measures\['n'\] must be a transform"),
        (lambda: gf.measure_with_ema(norm, 1.5), ValueError, r"measure_with_ema: decay must be in \[0.0, 1.0\]"),
        (lambda: gf.measure_with_ema(norm, 0.9, accumulator_dtype=jnp.int32), ValueError, r"accumulator_dtype"),
        (lambda: gf.measure_with_ema(2.0, 0.9), TypeError, r"measure_with_ema: measure must be a function"),
        (lambda: gf.selective_transform(gf.sign(), freeze_mask={"a": 1}), TypeError, r"freeze_mask\['a'\] must be"),
        (lambda: gf.selective_transform(0.1, freeze_mask=True), TypeError, r"selective_transform: optimizer must be"),
        (lambda: unitwise_clip(jnp.ones(2), jnp.ones(3), jnp.ones(2)), ValueError, UNITWISE_SHAPES),
    ],
)  # fmt: skip
def test_bad_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_bad_update_calls_are_named():
    tx = gf.keep_params_nonnegative()
    with pytest.raises(ValueError, match=r"keep_params_nonnegative needs the parameters"):
        tx.update(GRADS[0], tx.init(PARAMS))
    tx = gf.named_chain(("a", gf.sign()), ("b", gf.sign()))
    with pytest.raises(ValueError, match=r"named_chain: the state has no entry for 'b'"):
        tx.update(GRADS[0], {"a": gf.EmptyState()})
    tx = gf.apply_every(2)
    with pytest.raises(gf.TreeMismatchError, match=r"state.grad_acc"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(3)}))


def test_optax_checkpoints_restore_into_gradflow_states(tmp_path):
    """A state saved from optax (after two steps) restores into gradflow's state of the same optimizer."""
    from gradflow import checkpoint

    names = ["selective_transform", "monitor"]
    theirs = {name: run(PAIRS[name][0](optax), steps=2)[1][2] for name in names}
    ours = {name: run(PAIRS[name][0](gf), steps=2)[1][2] for name in names}
    checkpoint.save(tmp_path / "ckpt", PARAMS, theirs)
    _, restored = checkpoint.restore(tmp_path / "ckpt", *jax.eval_shape(lambda: (PARAMS, ours)))
    assert_close(restored, ours, "restored")
