"""Hyperparameters that are schedules, inject_hyperparams, get_hyperparam and set_hyperparam."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import describe

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
        # the scheduled momentum keeps gradflow's ScheduleState (optax cannot schedule it), which records the
        # value it used last; the learning rate's state is optax's ScaleByScheduleState(count)
        momentum_state, lr_state = state
        assert isinstance(momentum_state, ScheduleState) and int(momentum_state.count) == STEPS
        assert isinstance(lr_state, gf.ScaleByScheduleState) and int(lr_state.count) == STEPS
        assert float(gf.get_hyperparam(state, "decay")) == pytest.approx(
            numpy_harmonic(0.9, 0.1, STEPS - 1)
        )  # ewma's field


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
    with pytest.raises(ValueError, match=r"state is a ScaleByScheduleState got a EmptyState as its state"):
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
    # the factory's numeric defaults are injected too, as optax does (its signature is bound with defaults)
    assert set(state.hyperparams) == {"learning_rate", "b1", "b2", "eps", "eps_root"}
    assert set(state.hyperparams) == set(optax.inject_hyperparams(optax.adam)(0.1).init({"w": jnp.ones(2)}).hyperparams)
    assert {x.dtype for x in jax.tree.leaves(state.inner_state)} == {
        jnp.dtype(t) for t in ("float32", "bfloat16", "int32")
    }
    assert dict(tx.static_kwargs)["nu_dtype"] == jnp.bfloat16
    tx = gf.inject_hyperparams(gf.sgd, static_args=("momentum",))(learning_rate=0.1, momentum=0.9)
    assert set(tx.init(jnp.ones(1)).hyperparams) == {"learning_rate"}
    tx = gf.inject_hyperparams(gf.sgd, static_args="momentum")(learning_rate=0.1, momentum=0.9)  # a str, as optax
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
    with pytest.raises(TypeError, match="too many positional arguments"):  # positional ones bind, as in optax
        gf.inject_hyperparams(gf.sgd)(0.1, None, False, None, 3.0)
    with pytest.raises(ValueError, match="learning_rate must be in"):
        gf.inject_hyperparams(gf.sgd)(learning_rate=-1.0)
    with pytest.raises(ValueError, match="needs the InjectStatefulHyperparamsState"):
        gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).update(jnp.ones(1), gf.EmptyState())
    with pytest.raises(ValueError, match=r"static_args must name arguments of inner_factory, got \['lr'\]"):
        gf.inject_hyperparams(gf.sgd, static_args=("lr",))
    with pytest.raises(TypeError, match="hyperparam_dtype must be a dtype or None"):
        gf.inject_hyperparams(gf.sgd, hyperparam_dtype="not a dtype")
    with pytest.raises(TypeError, match="inner_factory must be a function"):
        gf.inject_hyperparams(0.1)
    scheduled = gf.inject_hyperparams(gf.sgd)(learning_rate=Harmonic(1.0, 1.0)).init(jnp.ones(1))
    with pytest.raises(ValueError, match="learning_rate is scheduled in this state"):
        gf.set_hyperparam(scheduled, "learning_rate", 0.5)


# --- optax's layout, arguments and stateful schedules ----------------------------------------------------------------


def key_paths(tree):
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


class CountingSchedule:
    """A stateful schedule (optax's protocol) that is not a pytree: value0 / (1 + number of updates with a value)."""

    def __init__(self, value0):
        self.value0 = value0

    def init(self):
        return {"seen": jnp.zeros([], jnp.int32)}

    def update(self, state, **extra_args):
        return {"seen": state["seen"] + ("value" in extra_args)}

    def __call__(self, state, **extra_args):
        return self.value0 / (1.0 + state["seen"])


def test_inject_hyperparams_state_layout_and_numbers_are_optax():
    """A scheduled, a stateful-scheduled and a number hyperparameter: optax's state at every step, its numbers."""
    params = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    schedule = optax.linear_schedule(0.1, 0.01, 4)
    ours = gf.inject_hyperparams(gf.adam)(schedule, b1=CountingSchedule(0.9), b2=np.float64(0.99))
    theirs = optax.inject_hyperparams(optax.adam)(schedule, b1=CountingSchedule(0.9), b2=np.float64(0.99))
    s1, s2 = ours.init(params), theirs.init(params)
    assert describe(s1) == describe(s2) and key_paths(s1) == key_paths(s2)
    assert type(s1) is gf.InjectStatefulHyperparamsState
    assert describe(s1.hyperparams_states["learning_rate"]) == (
        "WrappedScheduleState",
        (("count", ("leaf", (), "int32")),),
    )
    p1 = p2 = params
    for t in range(STEPS):
        grads = jax.tree.map(jnp.sin, p1)
        u1, s1 = ours.update(grads, s1, p1, value=jnp.float32(t))
        u2, s2 = theirs.update(grads, s2, p2, value=jnp.float32(t))
        assert describe(s1) == describe(s2)
        for a, b in zip(jax.tree.leaves((u1, s1)), jax.tree.leaves((u2, s2))):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=f"step {t}")
        p1, p2 = gf.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    assert int(s1.hyperparams_states["b1"]["seen"]) == STEPS


def test_optax_checkpoint_restores_into_gradflow_and_back(tmp_path):
    """orbax: an optax inject_hyperparams(adam) state saved mid-run restores into gradflow's template, and the
    next steps equal optax's; gradflow's state restores into optax's template."""
    ocp = pytest.importorskip("orbax.checkpoint")
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    ours = gf.inject_hyperparams(gf.adam)(learning_rate=optax.exponential_decay(0.1, 2, 0.5), b1=0.8)
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=optax.exponential_decay(0.1, 2, 0.5), b1=0.8)
    state = theirs.init(params)
    for _ in range(3):
        state = theirs.update(params, state, params)[1]
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "optax", state)
        checkpointer.save(tmp_path / "ours", ours.update(params, ours.init(params), params)[1])
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(tmp_path / "optax", jax.eval_shape(ours.init, params))
        back = checkpointer.restore(tmp_path / "ours", jax.eval_shape(theirs.init, params))
    assert type(restored) is gf.InjectStatefulHyperparamsState and int(restored.count) == 3
    assert int(back.count) == 1 and type(back).__module__.startswith("optax")
    u1, _ = ours.update(params, restored, params)
    u2, _ = theirs.update(params, state, params)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6)


def test_inject_hyperparams_binds_positional_arguments_and_defaults_like_optax():
    params = jnp.array([1.0, 2.0])
    by_position = gf.inject_hyperparams(gf.sgd)(0.1, 0.9)
    by_keyword = gf.inject_hyperparams(gf.sgd)(learning_rate=0.1, momentum=0.9)
    reference = optax.inject_hyperparams(optax.sgd)(0.1, 0.9)
    for tx in (by_position, by_keyword):
        state = tx.init(params)
        assert set(state.hyperparams) == {"learning_rate", "momentum"}
        assert describe(state.hyperparams) == describe(reference.init(params).hyperparams)
        u, _ = tx.update(params, state, params)
        np.testing.assert_allclose(u, reference.update(params, reference.init(params), params)[0], rtol=1e-6)
    assert gf.inject_hyperparams(gf.sgd).__name__ == "sgd"  # functools.wraps, as optax


def test_hyperparam_dtype_follows_the_params_at_least_float32():
    """Floats are injected in the parameters' highest dtype, at least float32; optax keeps bfloat16, where
    Adam's b2 = 0.999 rounds to 1.0 and the first update is NaN (documented difference)."""
    bf16 = {"w": jnp.ones(2, jnp.bfloat16)}
    state = gf.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9).init(bf16)
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    assert optax.inject_hyperparams(optax.sgd)(learning_rate=0.1).init(bf16).hyperparams["learning_rate"].dtype == (
        jnp.bfloat16
    )
    ours, theirs = gf.inject_hyperparams(gf.adam)(learning_rate=0.1), optax.inject_hyperparams(optax.adam)(0.1)
    u_ours, s_ours = ours.update(bf16, ours.init(bf16), bf16)
    u_theirs, s_theirs = theirs.update(bf16, theirs.init(bf16), bf16)
    assert float(s_theirs.hyperparams["b2"]) == 1.0 and not np.isfinite(np.asarray(u_theirs["w"], np.float32)).all()
    assert float(s_ours.hyperparams["b2"]) == pytest.approx(0.999) and u_ours["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(u_ours["w"], np.float32), -0.1, rtol=1e-2)
    for inject in (gf.inject_hyperparams, optax.inject_hyperparams):  # an explicit dtype is used as given
        state = inject(optax.sgd, hyperparam_dtype=jnp.bfloat16)(learning_rate=0.1).init({"w": jnp.ones(2)})
        assert state.hyperparams["learning_rate"].dtype == jnp.bfloat16
    mixed = {"w": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(1, jnp.float32)}
    assert (
        gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).init(mixed).hyperparams["learning_rate"].dtype == jnp.float32
    )
    with jax.enable_x64(True):
        state = gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).init(jnp.ones(2, jnp.float64))
        assert state.hyperparams["learning_rate"].dtype == jnp.float64
    state = gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).init(jnp.ones(2))
    _, new = jax.jit(gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).update)(jnp.ones(2), state)  # params=None
    assert describe(new) == describe(state)  # the dtype stays the state's


def _loss_after_steps(tx, state, steps=3):
    p = jnp.array([1.0, -2.0])
    for _ in range(steps):
        u, state = tx.update(2 * p + 0.3, state, p)
        p = gf.apply_updates(p, u)
    return jnp.sum(p**2)


def test_hypergradient_through_injected_learning_rate():
    """jax.grad of the loss after 3 steps with respect to the learning rate: through the number given to the
    factory, and through state.hyperparams (meta-learning); both equal optax's and central differences."""
    params = jnp.array([1.0, -2.0])

    def via_argument(lr, inject, factory):
        tx = inject(factory)(learning_rate=lr, momentum=0.9)
        return _loss_after_steps(tx, tx.init(params))

    def via_state(lr, inject, factory):
        tx = inject(factory)(learning_rate=0.5, momentum=0.9)
        state = tx.init(params)
        state.hyperparams["learning_rate"] = lr  # optax's idiom
        return _loss_after_steps(tx, state)

    lr, h = jnp.float32(0.05), 1e-3
    for fn in (via_argument, via_state):
        ours = jax.grad(fn)(lr, gf.inject_hyperparams, gf.sgd)
        theirs = jax.grad(fn)(lr, optax.inject_hyperparams, optax.sgd)
        numeric = (fn(lr + h, gf.inject_hyperparams, gf.sgd) - fn(lr - h, gf.inject_hyperparams, gf.sgd)) / (2 * h)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5)
        np.testing.assert_allclose(ours, numeric, rtol=1e-2)
        assert abs(float(ours)) > 1.0  # not vacuous
    # a jitted meta-step: the gradient with respect to the state's hyperparameter
    tx = gf.inject_hyperparams(gf.sgd)(learning_rate=0.05, momentum=0.9)
    state = tx.init(params)
    meta = jax.jit(jax.grad(lambda hp: _loss_after_steps(tx, state._replace(hyperparams=hp))))(state.hyperparams)
    expected = jax.grad(via_state)(lr, gf.inject_hyperparams, gf.sgd)
    np.testing.assert_allclose(meta["learning_rate"], expected, rtol=1e-6)


def test_injected_optimizer_compiles_once_and_is_scan_stable():
    traces = []

    @jax.jit
    def step(tx, params, state):
        traces.append(None)
        updates, state = tx.update(params, state, params)
        return gf.apply_updates(params, updates), state

    params = jnp.array([1.0, 2.0])
    for lr in (0.1, 0.3):
        tx = gf.inject_hyperparams(gf.adam)(learning_rate=lr, b1=Harmonic(0.9, 0.1))
        step(tx, params, tx.init(params))
    assert len(traces) == 1
    state = tx.init(params)
    (_, final), _ = jax.lax.scan(lambda c, _: (step(tx, *c), None), (params, state), None, length=4)
    assert describe(final) == describe(state) and int(final.count) == 4
    assert int(final.hyperparams_states["b1"].count) == 4


def test_wrapped_schedule_and_the_deprecated_names():
    wrapped = gf.WrappedSchedule(Harmonic(1.0, 1.0))
    assert isinstance(wrapped, gf.StatefulSchedule) and isinstance(wrapped, optax.schedules.StatefulSchedule)
    state = wrapped.update(wrapped.update(wrapped.init()))
    assert float(wrapped(state)) == pytest.approx(1.0 / 3.0)
    assert jax.tree.leaves(wrapped) == [1.0, 1.0]  # a gradflow schedule stays data
    tx = gf.inject_hyperparams(gf.sgd)(learning_rate=wrapped)
    s = tx.init(jnp.ones(1))
    _, s = tx.update(jnp.ones(1), s)
    _, s = tx.update(jnp.ones(1), s)
    assert float(s.hyperparams["learning_rate"]) == pytest.approx(0.5)
    with pytest.warns(DeprecationWarning, match="inject_stateful_hyperparams is deprecated"):
        old = gf.inject_stateful_hyperparams(gf.sgd)(learning_rate=0.1)
    assert describe(old.init(jnp.ones(1))) == describe(
        gf.inject_hyperparams(gf.sgd)(learning_rate=0.1).init(jnp.ones(1))
    )
    assert gf.InjectHyperparamsState._fields == optax.InjectHyperparamsState._fields
    assert gf.InjectStatefulHyperparamsState._fields == optax.InjectStatefulHyperparamsState._fields
    legacy = gf.InjectHyperparamsState(jnp.int32(0), {"learning_rate": jnp.float32(0.1)}, ())
    assert float(gf.get_hyperparam(gf.set_hyperparam(legacy, "learning_rate", 0.5), "learning_rate")) == 0.5


def test_inject_hyperparams_signature_is_optax():
    from conftest import assert_signature_matches

    assert_signature_matches(gf.inject_hyperparams, optax.inject_hyperparams)
    assert_signature_matches(gf.inject_stateful_hyperparams, optax.inject_stateful_hyperparams)
