"""optax's state layout: every optax-named optimizer and ``scale_by_*`` presents the state optax builds.

Three checks, each against optax itself:
- the structure (state type names, field names, nesting, leaf order, shapes and dtypes) after ``init``,
  for every case below (by ``jax.eval_shape``: nothing compiles);
- the values: after a few steps, every leaf of the state equals optax's (counts exactly, moments within
  float32 round-off), so code that reads ``opt_state[0].mu`` reads the same numbers;
- orbax checkpoints of optimizer states restore both ways (optax → gradflow, gradflow → optax) and the
  run continues with the same numbers as an uninterrupted one.
The mechanism (:class:`gradflow.layout.Composite`) has its own tests at the end.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import describe

import gradflow as gf
from gradflow.layout import OWN_COUNT, composite

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25, 2.0])}
SCHEDULE = (optax.linear_schedule, dict(init_value=0.1, end_value=0.01, transition_steps=10))

# name -> keyword arguments, the same for gradflow and optax (one entry per state layout)
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", dict(learning_rate=0.1)),
    "sgd-momentum": ("sgd", dict(learning_rate=0.1, momentum=0.9)),
    "sgd-nesterov": ("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    "adam": ("adam", dict(learning_rate=0.1)),
    "adam-schedule": ("adam", dict(learning_rate=SCHEDULE)),
    "adam-nesterov": ("adam", dict(learning_rate=0.1, nesterov=True)),
    "adamw": ("adamw", dict(learning_rate=0.1)),
    "adamw-mask": ("adamw", dict(learning_rate=0.1, mask={"w": True, "b": False})),
    "nadam": ("nadam", dict(learning_rate=0.1)),
    "adamax": ("adamax", dict(learning_rate=0.1)),
    "amsgrad": ("amsgrad", dict(learning_rate=0.1)),
    "adagrad": ("adagrad", dict(learning_rate=0.1)),
    "adadelta": ("adadelta", dict(learning_rate=0.1)),
    "rmsprop": ("rmsprop", dict(learning_rate=0.1)),
    "rmsprop-momentum": ("rmsprop", dict(learning_rate=0.1, momentum=0.9)),
    "rmsprop-centered": ("rmsprop", dict(learning_rate=0.1, centered=True)),
    "rmsprop-bias-correction": ("rmsprop", dict(learning_rate=0.1, bias_correction=True)),
    "rmsprop-centered-bias-correction": ("rmsprop", dict(learning_rate=0.1, centered=True, bias_correction=True)),
    "adabelief": ("adabelief", dict(learning_rate=0.1)),
    "yogi": ("yogi", dict(learning_rate=0.1)),
    "radam": ("radam", dict(learning_rate=0.1)),
    "novograd": ("novograd", dict(learning_rate=0.1)),
    "lion": ("lion", dict(learning_rate=0.1)),
    "lamb": ("lamb", dict(learning_rate=0.1)),
    "lars": ("lars", dict(learning_rate=0.1)),
    "signum": ("signum", dict(learning_rate=0.1)),
    "sign_sgd": ("sign_sgd", dict(learning_rate=0.1)),
    "rprop": ("rprop", dict(learning_rate=0.1)),
    "adafactor": ("adafactor", dict(learning_rate=0.1, min_dim_size_to_factor=2)),
    "adafactor-momentum": ("adafactor", dict(learning_rate=0.1, momentum=0.9, min_dim_size_to_factor=2)),
    "clip_by_global_norm": ("clip_by_global_norm", dict(max_norm=1.0)),
    "trace": ("trace", dict(decay=0.9)),
    "ema": ("ema", dict(decay=0.9)),
    "ema-no-debias": ("ema", dict(decay=0.9, debias=False)),
    **{name: (name, {}) for name in ("scale_by_adam", "scale_by_adamax", "scale_by_amsgrad", "scale_by_rss")},
    **{name: (name, {}) for name in ("scale_by_rms", "scale_by_stddev", "scale_by_adadelta", "scale_by_lion")},
    **{name: (name, {}) for name in ("scale_by_belief", "scale_by_yogi", "scale_by_radam", "scale_by_novograd")},
    "scale_by_radam-nesterov": ("scale_by_radam", dict(nesterov=True)),
    "scale_by_belief-nesterov": ("scale_by_belief", dict(nesterov=True)),
    "scale_by_lion-smooth": ("scale_by_lion", dict(mode="smooth", smooth_beta=2.0)),
    "scale_by_lion-refined": ("scale_by_lion", dict(mode="refined")),
    "scale_by_factored_rms": ("scale_by_factored_rms", dict(min_dim_size_to_factor=2)),
    "scale_by_learning_rate-schedule": ("scale_by_learning_rate", dict(learning_rate=SCHEDULE)),
    "schedule_free_sgd": ("schedule_free_sgd", dict(learning_rate=0.5)),  # optax.contrib
    "schedule_free_adamw-warmup": ("schedule_free_adamw", dict(learning_rate=0.1, warmup_steps=3)),
}


def build(library: Any, case: str) -> Any:
    name, kwargs = CASES[case]
    kwargs = {k: v[0](**v[1]) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    factory = getattr(library, name, None) or getattr(library.contrib, name)
    return factory(**kwargs)


@pytest.mark.parametrize("case", list(CASES))
def test_state_layout_is_optax(case):
    ours = jax.eval_shape(build(gf, case).init, PARAMS)
    theirs = jax.eval_shape(build(optax, case).init, PARAMS)
    assert describe(ours) == describe(theirs)
    assert jax.tree_util.tree_structure(ours).num_leaves == jax.tree_util.tree_structure(theirs).num_leaves


STEPS = 4
VALUE_CASES = ["sgd-momentum", "adam-schedule", "adamw-mask", "nadam", "amsgrad", "adagrad", "adadelta",
               "rmsprop-centered-bias-correction", "adabelief", "yogi", "novograd", "lion", "lars", "signum",
               "adafactor-momentum", "ema", "scale_by_lion-smooth", "schedule_free_adamw-warmup"]  # fmt: skip


def gradients() -> list[Any]:
    keys = jax.random.split(jax.random.key(0), STEPS)
    return [jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape), PARAMS) for k in keys]


def _steps(tx: Any, grads: list[Any], state: Any, params: Any) -> tuple[Any, Any]:
    for g in grads:
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
    return params, state


_gradflow_steps = jax.jit(_steps)  # the optimizer is an argument: pytree data
_optax_steps = jax.jit(_steps, static_argnums=0)  # two closures: static, one compile per optimizer


def run(tx: Any, grads: list[Any], state: Any = None, params: Any = PARAMS) -> tuple[Any, Any]:
    """``len(grads)`` jitted steps from ``state`` (``init`` when None); returns (params, state)."""
    state = tx.init(params) if state is None else state
    steps = _gradflow_steps if isinstance(tx, gf.Transform) else _optax_steps
    return steps(tx, grads, state, params)


def assert_states_close(ours: Any, theirs: Any) -> None:
    assert describe(ours) == describe(theirs)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        if jnp.issubdtype(a.dtype, jnp.integer):
            np.testing.assert_array_equal(a, b)  # counters: exactly
        else:  # float32 round-off of the same rule (1 − b2 in float32: see the README's migration table)
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("case", VALUE_CASES)
def test_state_values_are_optax_after_steps(case):
    """State-reading code reads the same numbers: every leaf after a few steps equals optax's."""
    grads = gradients()
    assert_states_close(run(build(gf, case), grads)[1], run(build(optax, case), grads)[1])


def test_reading_fields_by_index_as_optax_programs_do():
    tx = gf.chain(gf.clip_by_global_norm(1.0), gf.adamw(1e-2))
    state = tx.init(PARAMS)
    _, state = tx.update(PARAMS, state, PARAMS)
    assert int(state[1][0].count) == 1  # was tuple.count (a bound method) before the optax layout
    assert state[1][0].mu["w"].shape == (2, 3) and state[1][0].nu["b"].shape == (3,)


# --------------------------------------------------------------------------------------------------
# orbax checkpoints of optimizer states, both ways

CHECKPOINT_CASES = ["adam-schedule", "sgd-momentum", "adamw-mask", "adafactor-momentum", "novograd"]


@functools.cache
def chained(library: Any, case: str) -> Any:
    """The common optax program: a clip before the optimizer (a nested chain: optax's nesting).

    Built once per library and case: optax's transformation (two closures) is a static argument of the
    jitted steps, so a new one would be traced and compiled again; gradflow's is immutable pytree data.
    """
    return library.chain(library.clip_by_global_norm(1.0), build(library, case))


@pytest.mark.slow
def test_orbax_checkpoints_restore_both_ways(tmp_path):
    """Save with one library, restore with the other's template, continue: same numbers as without the stop.

    One checkpoint holds every case's state, so orbax saves and restores once per direction.
    """
    ocp = pytest.importorskip("orbax.checkpoint")
    grads = gradients()
    first, second = grads[:2], grads[2:]
    states, reference, middle = {}, {}, {}
    for case in CHECKPOINT_CASES:
        middle[case], states[case] = run(chained(optax, case), first)
        reference[case] = run(chained(optax, case), second, states[case], middle[case])
    checkpointer = ocp.StandardCheckpointer()
    for save_library, restore_library in ((optax, gf), (gf, optax)):
        saved = {case: run(chained(save_library, case), first)[1] for case in CHECKPOINT_CASES}
        path = tmp_path / save_library.__name__
        checkpointer.save(path, saved)
        checkpointer.wait_until_finished()
        template = {case: chained(restore_library, case).init(PARAMS) for case in CHECKPOINT_CASES}
        restored = checkpointer.restore(path, template)
        for case in CHECKPOINT_CASES:
            assert describe(restored[case]) == describe(template[case])
            assert type(restored[case][1][0]).__module__.split(".")[0] == restore_library.__name__
            # the params after the first steps: the optax run's above (the same jitted program on the same input)
            final_params, final_state = run(chained(restore_library, case), second, restored[case], middle[case])
            assert_states_close(final_state, reference[case][1])
            for a, b in zip(jax.tree.leaves(final_params), jax.tree.leaves(reference[case][0])):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# the mechanism


class PairState(NamedTuple):
    count: jax.Array  # type: ignore[assignment]
    mu: Any


def test_composite_rebuilds_every_named_inner_field():
    """Both counters of a chain are rebuilt from the one ``count``; the composite's own counter advances."""
    inner = gf.chain(gf.ewma(0.5), gf.debias(0.5))
    tx = composite(inner, PairState, count="1.count", mu="0.mean")
    state = tx.init(jnp.zeros(2))
    assert isinstance(state, PairState)
    out, state = tx.update(jnp.ones(2), state)
    np.testing.assert_allclose(out, [1.0, 1.0])
    assert int(state.count) == 1 and float(state.mu[0]) == 0.5
    own = composite(gf.chain(gf.ewma(0.5)), PairState, count=OWN_COUNT, mu="0.mean")
    _, own_state = own.update(jnp.ones(2), own.init(jnp.zeros(2)))
    assert int(own_state.count) == 1


def test_composite_refuses_a_layout_that_loses_a_field():
    tx = composite(gf.chain(gf.ewma(0.5), gf.debias(0.5)), PairState, count=OWN_COUNT, mu="0.mean")
    with pytest.raises(ValueError, match=r"leaf at 1\.count has no field in the view"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
    with pytest.raises(ValueError, match="fields"):
        composite(gf.ewma(0.5), PairState, mu="mean")


def test_composite_names_the_expected_state():
    tx = gf.scale_by_adam()
    with pytest.raises(ValueError, match="whose state is a ScaleByAdamState got a ScaleByRmsState as its state"):
        tx.update(jnp.ones(2), gf.scale_by_rms().init(jnp.zeros(2)))


def test_optax_state_objects_are_accepted():
    """A state built by optax itself (its own NamedTuple classes) steps in gradflow: same fields."""
    grads = gradients()
    theirs = optax.adam(0.1).init(PARAMS)
    ours, theirs_next = gf.adam(0.1).update(grads[0], theirs, PARAMS)[1], optax.adam(0.1).update(grads[0], theirs)[1]
    assert_states_close(ours, jax.tree.unflatten(jax.tree.structure(ours), jax.tree.leaves(theirs_next)))
