"""Schedule-Free (Defazio et al., 2024): NumPy float64 references, optax.contrib parity, the eval helper.

The NumPy reference keeps the three sequences z (base iterates), x (their weighted average) and y (where
gradients are taken) explicitly, as in the paper; gradflow stores only y and z and recovers x. Both the
training parameters y and the evaluation parameters x are compared at every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches
from test_adaptive import STEPS, assert_trajectories_close, numpy_grad, run_gradflow, same, start
from test_optax_parity import NOISE, PARAMS, assert_moved, assert_same_trajectory, f32, noisy_grad, run_pair
from test_optax_parity import STEPS as PARITY_STEPS

import gradflow as gf
from gradflow import schedules
from gradflow.optimizers import adaptive
from gradflow.transforms import schedule_free as sf

# --- NumPy reference ------------------------------------------------------------------------------


def ref_schedule_free(
    steps,
    base,
    learning_rate,
    warmup_steps=None,
    b1=0.9,
    weight_lr_power=2.0,
    weight_decay=None,
    b2=0.999,
    eps=1e-8,
    base_lookahead=False,
):
    """Schedule-Free SGD (``base="sgd"``) or AdamW (``base="adamw"``); returns (ys, xs).

    γ(count) = learning_rate·min(count, warmup_steps)/warmup_steps. At the t-th step (t from 1) the
    averaging weight uses γ(t) and the base step γ(t − 1), as optax.contrib does; ``base_lookahead``
    gives the base step γ(t) too (the authors' reference code).
    """

    def gamma(count):
        return learning_rate if warmup_steps is None else learning_rate * min(count, warmup_steps) / warmup_steps

    y, z, x = start(), start(), start()
    v = {k: np.zeros(np.shape(p)) for k, p in y.items()}
    weight_sum, max_lr = 0.0, 0.0
    ys, xs = [{k: p.copy() for k, p in y.items()}], [{k: p.copy() for k, p in x.items()}]
    for t in range(1, steps + 1):
        g = numpy_grad(y)
        max_lr = max(max_lr, gamma(t))
        weight = max_lr**weight_lr_power
        weight_sum += weight
        c = weight / weight_sum if weight_sum > 0 else 0.0
        step_size = gamma(t) if base_lookahead else gamma(t - 1)
        for k in y:
            if base == "sgd":
                direction = g[k] + (weight_decay or 0.0) * y[k]
            else:
                v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
                direction = g[k] / (np.sqrt(v[k] / (1 - b2**t)) + eps) + weight_decay * y[k]
            z[k] = z[k] - step_size * direction
            x[k] = (1 - c) * x[k] + c * z[k]
            y[k] = b1 * x[k] + (1 - b1) * z[k]
        ys.append({k: p.copy() for k, p in y.items()})
        xs.append({k: p.copy() for k, p in x.items()})
    return ys, xs


def run_with_eval(tx):
    """gradflow's y trajectory and, from each state, the evaluation point x (float64)."""
    ys, states = run_gradflow(tx, with_states=True)
    with jax.enable_x64(True):
        xs = [
            {
                k: np.asarray(v)
                for k, v in sf.schedule_free_eval_params(s, {k: jnp.asarray(p) for k, p in y.items()}).items()
            }
            for y, s in zip(ys, states)
        ]
    return ys, xs


SGD_CASES = {
    "default": dict(learning_rate=0.1),
    "custom": dict(learning_rate=0.2, warmup_steps=5, b1=0.8, weight_decay=0.01, weight_lr_power=1.0),
}
ADAMW_CASES = {
    "default": dict(learning_rate=0.02),
    "custom": dict(
        learning_rate=0.05, warmup_steps=4, b1=0.95, b2=0.99, eps=1e-6, weight_decay=0.05, weight_lr_power=0.5
    ),
}


@pytest.mark.parametrize("name", sorted(SGD_CASES))
def test_schedule_free_sgd_matches_reference(name):
    hyper = SGD_CASES[name]
    ys, xs = run_with_eval(adaptive.schedule_free_sgd(**hyper))
    ref_ys, ref_xs = ref_schedule_free(STEPS, "sgd", **hyper)
    assert_trajectories_close(ys, ref_ys)
    assert_trajectories_close(xs, ref_xs)


@pytest.mark.parametrize("name", sorted(ADAMW_CASES))
def test_schedule_free_adamw_matches_reference(name):
    hyper = ADAMW_CASES[name]
    ys, xs = run_with_eval(adaptive.schedule_free_adamw(**hyper))
    ref_ys, ref_xs = ref_schedule_free(STEPS, "adamw", **{"weight_decay": 0.0, **hyper})
    assert_trajectories_close(ys, ref_ys)
    assert_trajectories_close(xs, ref_xs)


def test_wrapper_around_momentum_free_adam_is_schedule_free_adamw():
    """schedule_free(adam(γ, b1=0)) is Schedule-Free AdamW without decay (Adam's m̂ is then g)."""
    ys, xs = run_with_eval(sf.schedule_free(gf.adam(0.02, b1=0.0), 0.02, b1=0.9))
    ref_ys, ref_xs = ref_schedule_free(STEPS, "adamw", 0.02, weight_decay=0.0)
    assert_trajectories_close(ys, ref_ys)
    assert_trajectories_close(xs, ref_xs)


def test_shifted_schedule_gives_the_reference_code_semantics():
    """With ShiftedSchedule on the base optimizer, both read γ(t) at the t-th step (the authors' code)."""
    schedule = schedules.warmup_constant_schedule(0.0, 0.2, 5)
    tx = sf.schedule_free(gf.sgd(sf.ShiftedSchedule(schedule)), schedule, b1=0.9)
    ys, _ = run_with_eval(tx)
    ref_ys, _ = ref_schedule_free(STEPS, "sgd", 0.2, warmup_steps=5, base_lookahead=True)
    assert_trajectories_close(ys, ref_ys)
    lagging, _ = ref_schedule_free(STEPS, "sgd", 0.2, warmup_steps=5)
    assert not np.allclose(ref_ys[-1]["b"], lagging[-1]["b"], rtol=1e-4)


def test_batch_of_interpolation_weights_runs_in_one_vmapped_program():
    """b1 is a leaf: a vmapped batch of Schedule-Free optimizers equals the loop over them (law 4)."""
    b1s = jnp.array([0.5, 0.9, 0.99])
    batch = jax.vmap(lambda b1: adaptive.schedule_free_sgd(0.05, b1=b1))(b1s)

    def run(tx):
        params = PARAMS
        state = tx.init(params)
        for t in range(5):
            updates, state = tx.update(noisy_grad(params, NOISE[t]), state, params)
            params = gf.apply_updates(params, updates)
        return params, sf.schedule_free_eval_params(state, params)

    batched = jax.jit(jax.vmap(run))(batch)
    run_jit = jax.jit(run)  # one compiled program for the three optimizers of the loop
    for i, b1 in enumerate(b1s):
        single = run_jit(adaptive.schedule_free_sgd(0.05, b1=float(b1)))
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single)):
            np.testing.assert_allclose(a[i], b, rtol=1e-6, atol=1e-7)


# --- float32: parity with optax.contrib --------------------------------------------------------------

contrib = optax.contrib

PARITY_CASES = [
    pytest.param(same(adaptive.schedule_free_sgd, contrib.schedule_free_sgd, 0.1), id="sgd"),
    pytest.param(
        same(
            adaptive.schedule_free_sgd,
            contrib.schedule_free_sgd,
            0.2,
            warmup_steps=5,
            b1=0.8,
            weight_decay=0.01,
            weight_lr_power=1.0,
        ),
        id="sgd-custom",
    ),
    pytest.param(
        same(adaptive.schedule_free_sgd, contrib.schedule_free_sgd, 0.1, state_dtype=jnp.bfloat16), id="sgd-bf16-z"
    ),
    pytest.param(same(adaptive.schedule_free_adamw, contrib.schedule_free_adamw, 0.02), id="adamw"),
    pytest.param(
        same(
            adaptive.schedule_free_adamw,
            contrib.schedule_free_adamw,
            0.05,
            warmup_steps=4,
            b1=0.95,
            b2=0.99,
            eps=1e-6,
            weight_decay=0.05,
            weight_lr_power=0.5,
        ),
        id="adamw-custom",
    ),
    pytest.param(
        lambda: (
            sf.schedule_free(gf.adam(f32(0.02), f32(0.0), f32(0.999), f32(1e-8)), f32(0.02), b1=f32(0.7)),
            contrib.schedule_free(optax.adam(f32(0.02), f32(0.0), f32(0.999), f32(1e-8)), f32(0.02), b1=f32(0.7)),
        ),
        id="wrapper-adam",
    ),
    pytest.param(
        lambda: (
            sf.schedule_free(optax.sgd(f32(0.05)), f32(0.05)),
            contrib.schedule_free(optax.sgd(f32(0.05)), f32(0.05)),
        ),
        id="wrapper-around-an-optax-optimizer",
    ),
]


@pytest.mark.parametrize("make", PARITY_CASES)
def test_matches_optax(make):
    ours, theirs = make()
    out = run_pair(ours, theirs)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def test_eval_params_match_optax_at_every_step():
    """The evaluation point x along the trajectory, and each library's helper on the other's state."""
    ours, theirs = same(
        adaptive.schedule_free_adamw, contrib.schedule_free_adamw, 0.05, warmup_steps=3, weight_decay=0.01
    )()

    @jax.jit
    def step(g1, s1, p1, g2, s2, p2):
        u1, s1 = ours.update(g1, s1, p1)
        u2, s2 = theirs.update(g2, s2, p2)
        return s1, gf.apply_updates(p1, u1), s2, optax.apply_updates(p2, u2)

    p1 = p2 = PARAMS
    s1, s2 = ours.init(PARAMS), theirs.init(PARAMS)
    eval_ours, eval_theirs = [], []
    for t in range(PARITY_STEPS):
        s1, p1, s2, p2 = step(noisy_grad(p1, NOISE[t]), s1, p1, noisy_grad(p2, NOISE[t]), s2, p2)
        eval_ours.append(sf.schedule_free_eval_params(s1, p1))
        eval_theirs.append(contrib.schedule_free_eval_params(s2, p2))
        # optax's helper reads gradflow's ScheduleFreeState (optax's fields; the schedule's count is its
        # step_count, as in optax)
        assert isinstance(s1, sf.ScheduleFreeState) and s1._fields == s2._fields
        assert int(s1.step_count) == int(s2.step_count) == t + 2
        for a, b in zip(jax.tree.leaves(contrib.schedule_free_eval_params(s1, p1)), jax.tree.leaves(eval_ours[-1])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        for a, b in zip(jax.tree.leaves(sf.schedule_free_eval_params(s2, p2)), jax.tree.leaves(eval_theirs[-1])):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    stack = lambda xs: jax.tree.map(lambda *v: jnp.stack(v), *xs)
    assert_moved(stack(eval_theirs))
    assert_same_trajectory(stack(eval_ours), stack(eval_theirs))


SIGNATURES = [
    (sf.schedule_free, contrib.schedule_free),
    (adaptive.schedule_free_sgd, contrib.schedule_free_sgd),
    (adaptive.schedule_free_adamw, contrib.schedule_free_adamw),
    (sf.schedule_free_eval_params, contrib.schedule_free_eval_params),
]


@pytest.mark.parametrize("ours, theirs", SIGNATURES, ids=[f.__name__ for f, _ in SIGNATURES])
def test_signature_matches_optax(ours, theirs):
    assert_signature_matches(ours, theirs)


# --- the eval helper --------------------------------------------------------------------------------


def test_eval_params_find_the_state_inside_chains_and_schedules():
    """The helper accepts any state that holds exactly one Schedule-Free state (here inside a chain, with a
    warmup schedule)."""
    tx = gf.chain(gf.clip(1.0), adaptive.schedule_free_sgd(0.1, warmup_steps=2))
    params = {"w": jnp.array([1.0, -2.0])}
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update({"w": jnp.array([0.5, 0.25])}, state, params)
        params = gf.apply_updates(params, updates)
    inner = state[1]
    assert isinstance(inner, sf.ScheduleFreeState) and int(inner.step_count) == 4
    expected = (params["w"] - (1 - inner.b1) * inner.z["w"]) / inner.b1
    np.testing.assert_allclose(sf.schedule_free_eval_params(state, params)["w"], expected, rtol=1e-6)


def test_eval_params_errors():
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="no ScheduleFreeState found"):
        sf.schedule_free_eval_params(gf.adam(0.1).init(params), params)
    two = gf.chain(adaptive.schedule_free_sgd(0.1), adaptive.schedule_free_sgd(0.1)).init(params)
    with pytest.raises(ValueError, match="2 ScheduleFreeState found"):
        sf.schedule_free_eval_params(two, params)
    state = adaptive.schedule_free_sgd(0.1).init(params)
    with pytest.raises(gf.TreeMismatchError, match="params"):
        sf.schedule_free_eval_params(state, {"v": jnp.ones(2)})


# --- intended differences from optax --------------------------------------------------------------


def test_scalar_state_is_float32_for_bfloat16_params():
    """optax keeps b1, the weight sum and the maximal learning rate in the parameters' lowest dtype
    (bfloat16 here, where Σw stops growing after a few hundred steps); gradflow keeps them in float32 (or
    wider), and z in the parameters' dtype (or state_dtype) as optax does."""
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    ours = adaptive.schedule_free_sgd(0.1).init(params)
    assert ours.weight_sum.dtype == ours.max_lr.dtype == ours.b1.dtype == jnp.float32
    assert ours.z["w"].dtype == jnp.bfloat16
    theirs = contrib.schedule_free_sgd(0.1).init(params)
    assert theirs.weight_sum.dtype == jnp.bfloat16
    assert theirs._fields == ours._fields  # optax's layout, step_count included


# --- construction and call errors -----------------------------------------------------------------

BAD = [
    (lambda: adaptive.schedule_free_sgd(-1.0), ValueError, "schedule_free_sgd: learning_rate"),
    (lambda: adaptive.schedule_free_sgd(0.1, b1=0.0), ValueError, r"schedule_free: b1 must be in \(0.0, 1.0\]"),
    (lambda: adaptive.schedule_free_adamw(0.1, b1=1.5), ValueError, "schedule_free: b1"),
    (lambda: adaptive.schedule_free_adamw(0.1, b2=1.0), ValueError, "schedule_free_adamw: b2 must be in"),
    (lambda: adaptive.schedule_free_adamw(0.1, weight_lr_power=-2.0), ValueError, "weight_lr_power"),
    (lambda: adaptive.schedule_free_sgd(0.1, warmup_steps=0), ValueError, "warmup_steps must be an integer >= 1"),
    (lambda: adaptive.schedule_free_sgd(0.1, warmup_steps=2.5), TypeError, "warmup_steps must be an integer >= 1"),
    (lambda: adaptive.schedule_free_sgd(0.1, weight_decay=-1.0), ValueError, "schedule_free_sgd: weight_decay"),
    (lambda: adaptive.schedule_free_sgd(0.1, state_dtype=jnp.int32), ValueError, "state_dtype must be a floating"),
    (lambda: sf.schedule_free("sgd", 0.1), TypeError, "base_optimizer must be a transform"),
    (lambda: sf.schedule_free(gf.sgd(0.1), None), ValueError, "schedule_free: learning_rate is required"),
]


@pytest.mark.parametrize("build, error, message", BAD, ids=[m for _, _, m in BAD])
def test_bad_hyperparameters_are_rejected(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_update_needs_params():
    tx = adaptive.schedule_free_sgd(0.1)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="schedule_free needs the parameters"):
        tx.update(params, tx.init(params))


def test_state_z_of_other_params_is_reported():
    tx = adaptive.schedule_free_sgd(0.1)
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(gf.TreeMismatchError):
        tx.update({"w": jnp.ones(3)}, state, {"w": jnp.ones(3)})
