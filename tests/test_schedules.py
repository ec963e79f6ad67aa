"""Schedules: optax's numbers, an independent float64 NumPy formula, jit/vmap/grad, errors, and schedules
as hyperparameters other than the learning rate (checked step by step against NumPy and optax)."""

from __future__ import annotations

import inspect
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow import schedules
from gradflow.core import Schedule, ScheduleState

# Counts at, before and after every boundary used below, plus far-away ones (clamping).
COUNTS = np.array([*range(0, 131), 149, 150, 151, 199, 200, 201, 299, 300, 301, 1000, 10**6, 2**31 - 1], np.int32)

# ----------------------------------------------------------------------------------------------------------------------
# Independent float64 references, written from the formulas (not from either implementation).
# ----------------------------------------------------------------------------------------------------------------------


def np_polynomial(t, init_value, end_value, power, transition_steps, transition_begin=0):
    t = np.asarray(t, np.float64)
    if transition_steps <= 0:
        return np.full(t.shape, float(init_value))
    tau = np.clip(t - transition_begin, 0, transition_steps)
    return (init_value - end_value) * (1 - tau / transition_steps) ** power + end_value


def np_exponential(t, init_value, transition_steps, decay_rate, transition_begin=0, staircase=False, end_value=None):
    t = np.asarray(t, np.float64)
    p = np.maximum(t - transition_begin, 0) / transition_steps
    if staircase:
        p = np.floor(p)
    with np.errstate(over="ignore"):  # 2.0 ** (count / 10) at count 2**31 − 1: inf, then clamped
        value = init_value * decay_rate**p
    if end_value is not None:
        value = np.maximum(value, end_value) if decay_rate < 1 else np.minimum(value, end_value)
    return value


def np_cosine(t, init_value, decay_steps, alpha=0.0, exponent=1.0):
    t = np.minimum(np.asarray(t, np.float64), decay_steps)
    c = 0.5 * (1 + np.cos(np.pi * t / decay_steps))
    return init_value * ((1 - alpha) * c**exponent + alpha)


def np_piecewise_constant(t, init_value, boundaries_and_scales=None):
    t = np.asarray(t, np.float64)
    value = np.full(t.shape, float(init_value))
    for b, s in (boundaries_and_scales or {}).items():  # order-independent: a product
        value = np.where(t >= b, value * s, value)
    return value


def np_piecewise_interpolate(t, interpolate_type, init_value, boundaries_and_scales=None):
    points = [(0, float(init_value))]
    for b, s in sorted((boundaries_and_scales or {}).items()):
        points.append((b, points[-1][1] * s))
    out = []
    for count in np.asarray(t, np.float64).ravel():
        value = points[-1][1]
        for (b0, v0), (b1, v1) in itertools.pairwise(points):
            if b0 <= count < b1:
                f = (count - b0) / max(b1 - b0, 1)
                w = f if interpolate_type == "linear" else (1 - np.cos(np.pi * f)) / 2
                value = v0 + (v1 - v0) * w
                break
        out.append(value)
    return np.array(out)


def np_join(t, references, boundaries):
    t = np.asarray(t, np.float64)
    starts = [0, *boundaries]
    value = references[0](t)
    for start, reference in zip(starts[1:], references[1:]):
        value = np.where(t < start, value, reference(t - start))
    return value


def np_warmup_cosine(t, init_value, peak_value, warmup_steps, decay_steps, end_value=0.0, exponent=1.0):
    def decay(s):
        c = 0.5 * (1 + np.cos(np.pi * np.minimum(s, decay_steps - warmup_steps) / (decay_steps - warmup_steps)))
        if peak_value == 0:  # optax's convention: alpha = 0, so the decay part is 0
            return np.zeros_like(s)
        return end_value + (peak_value - end_value) * c**exponent

    return np_join(t, [lambda s: np_polynomial(s, init_value, peak_value, 1, warmup_steps), decay], [warmup_steps])


def np_onecycle(t, kind, transition_steps, peak_value, pct_start=0.3, pct_final=0.85, div_factor=25.0, final=1e4):
    v0 = peak_value / div_factor
    if kind == "linear":
        scales = {int(pct_start * transition_steps): div_factor, int(pct_final * transition_steps): 1 / div_factor}
        scales[transition_steps] = 1 / final
    else:
        scales = {int(pct_start * transition_steps): div_factor, transition_steps: 1 / (div_factor * final)}
    return np_piecewise_interpolate(t, kind, v0, scales)


# ----------------------------------------------------------------------------------------------------------------------
# Cases: name -> (gradflow/optax factory name, kwargs, float64 reference).
# ----------------------------------------------------------------------------------------------------------------------

SGDR = [
    dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=40, end_value=0.1),
    dict(init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=30),
    dict(init_value=0.0, peak_value=0.25, warmup_steps=10, decay_steps=50, exponent=2.0),
]


def _np_sgdr(t):
    refs = [lambda s, k=k: np_warmup_cosine(s, **k) for k in SGDR]
    return np_join(t, refs, [40, 70])


CASES = {
    "constant": ("constant_schedule", dict(value=0.3), lambda t: np.full(np.shape(t), 0.3)),
    "polynomial": (
        "polynomial_schedule",
        dict(init_value=1.0, end_value=0.01, power=2, transition_steps=100),
        lambda t: np_polynomial(t, 1.0, 0.01, 2, 100),
    ),
    "polynomial_begin_sqrt": (
        "polynomial_schedule",
        dict(init_value=0.5, end_value=2.0, power=0.5, transition_steps=50, transition_begin=20),
        lambda t: np_polynomial(t, 0.5, 2.0, 0.5, 50, 20),
    ),
    "polynomial_zero_steps": (
        "polynomial_schedule",
        dict(init_value=0.7, end_value=0.0, power=1, transition_steps=0),
        lambda t: np_polynomial(t, 0.7, 0.0, 1, 0),
    ),
    "linear": (
        "linear_schedule",
        dict(init_value=0.0, end_value=1.0, transition_steps=10),
        lambda t: np_polynomial(t, 0.0, 1.0, 1, 10),
    ),
    "linear_begin_decreasing": (
        "linear_schedule",
        dict(init_value=1.0, end_value=0.1, transition_steps=30, transition_begin=7),
        lambda t: np_polynomial(t, 1.0, 0.1, 1, 30, 7),
    ),
    "exponential": (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=10, decay_rate=0.5),
        lambda t: np_exponential(t, 1.0, 10, 0.5),
    ),
    "exponential_staircase_begin": (
        "exponential_decay",
        dict(init_value=2.0, transition_steps=7, decay_rate=0.8, transition_begin=15, staircase=True),
        lambda t: np_exponential(t, 2.0, 7, 0.8, 15, True),
    ),
    "exponential_end_value_lower_bound": (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=5, decay_rate=0.5, transition_begin=3, end_value=0.05),
        lambda t: np_exponential(t, 1.0, 5, 0.5, 3, False, 0.05),
    ),
    "exponential_end_value_upper_bound": (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=10, decay_rate=2.0, staircase=True, end_value=6.0),
        lambda t: np_exponential(t, 1.0, 10, 2.0, 0, True, 6.0),
    ),
    "exponential_end_value_above_init": (  # a lower bound above init_value clamps from the start
        "exponential_decay",
        dict(init_value=1.0, transition_steps=10, decay_rate=0.5, transition_begin=5, end_value=1.5),
        lambda t: np_exponential(t, 1.0, 10, 0.5, 5, False, 1.5),
    ),
    "seed_003": (  # η₀·10^(−t/r), written as in the seed
        "exponential_decay",
        dict(init_value=0.1, transition_steps=40, decay_rate=0.1),
        lambda t: 0.1 * 10.0 ** (-np.asarray(t, np.float64) / 40),
    ),
    "cosine": ("cosine_decay_schedule", dict(init_value=1.0, decay_steps=50), lambda t: np_cosine(t, 1.0, 50)),
    "cosine_alpha_exponent": (
        "cosine_decay_schedule",
        dict(init_value=0.5, decay_steps=120, alpha=0.1, exponent=2.0),
        lambda t: np_cosine(t, 0.5, 120, 0.1, 2.0),
    ),
    "warmup_cosine": (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=100, end_value=0.01),
        lambda t: np_warmup_cosine(t, 0.0, 1.0, 10, 100, 0.01),
    ),
    "warmup_cosine_no_warmup_exponent": (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.2, peak_value=0.5, warmup_steps=0, decay_steps=60, end_value=0.1, exponent=1.5),
        lambda t: np_warmup_cosine(t, 0.2, 0.5, 0, 60, 0.1, 1.5),
    ),
    "warmup_cosine_zero_peak": (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.3, peak_value=0.0, warmup_steps=5, decay_steps=20, end_value=0.2),
        lambda t: np_warmup_cosine(t, 0.3, 0.0, 5, 20, 0.2),
    ),
    "warmup_exponential": (
        "warmup_exponential_decay_schedule",
        dict(
            init_value=0.0,
            peak_value=1.0,
            warmup_steps=10,
            transition_steps=20,
            decay_rate=0.5,
            transition_begin=5,
            staircase=True,
            end_value=0.1,
        ),
        lambda t: np_join(
            t,
            [lambda s: np_polynomial(s, 0.0, 1.0, 1, 10), lambda s: np_exponential(s, 1.0, 20, 0.5, 5, True, 0.1)],
            [10],
        ),
    ),
    "warmup_constant": (
        "warmup_constant_schedule",
        dict(init_value=0.1, peak_value=1.0, warmup_steps=12),
        lambda t: np_polynomial(t, 0.1, 1.0, 1, 12),
    ),
    "piecewise_constant": (
        "piecewise_constant_schedule",
        dict(init_value=1.0, boundaries_and_scales={30: 0.5, 10: 0.1, 20: 3.0}),  # unsorted on purpose
        lambda t: np_piecewise_constant(t, 1.0, {30: 0.5, 10: 0.1, 20: 3.0}),
    ),
    "piecewise_constant_none": (
        "piecewise_constant_schedule",
        dict(init_value=0.4),
        lambda t: np_piecewise_constant(t, 0.4),
    ),
    "piecewise_linear": (
        "piecewise_interpolate_schedule",
        dict(interpolate_type="linear", init_value=1.0, boundaries_and_scales={40: 0.1, 10: 0.5, 100: 2.0}),
        lambda t: np_piecewise_interpolate(t, "linear", 1.0, {40: 0.1, 10: 0.5, 100: 2.0}),
    ),
    "piecewise_cosine_boundary_at_zero": (
        "piecewise_interpolate_schedule",
        dict(interpolate_type="cosine", init_value=2.0, boundaries_and_scales={0: 0.5, 10: 0.1, 30: 3.0}),
        lambda t: np_piecewise_interpolate(t, "cosine", 2.0, {0: 0.5, 10: 0.1, 30: 3.0}),
    ),
    "piecewise_interpolate_none": (
        "piecewise_interpolate_schedule",
        dict(interpolate_type="linear", init_value=0.25),
        lambda t: np_piecewise_interpolate(t, "linear", 0.25),
    ),
    "linear_onecycle": (
        "linear_onecycle_schedule",
        dict(transition_steps=100, peak_value=1.0),
        lambda t: np_onecycle(t, "linear", 100, 1.0),
    ),
    "linear_onecycle_custom": (
        "linear_onecycle_schedule",
        dict(
            transition_steps=60, peak_value=0.5, pct_start=0.2, pct_final=0.5, div_factor=10.0, final_div_factor=100.0
        ),
        lambda t: np_onecycle(t, "linear", 60, 0.5, 0.2, 0.5, 10.0, 100.0),
    ),
    "linear_onecycle_short": (  # boundaries coincide: dict semantics, as in optax
        "linear_onecycle_schedule",
        dict(transition_steps=3, peak_value=1.0),
        lambda t: np_onecycle(t, "linear", 3, 1.0),
    ),
    "cosine_onecycle": (
        "cosine_onecycle_schedule",
        dict(transition_steps=100, peak_value=1.0),
        lambda t: np_onecycle(t, "cosine", 100, 1.0),
    ),
    "cosine_onecycle_custom": (
        "cosine_onecycle_schedule",
        dict(transition_steps=7, peak_value=0.5, pct_start=0.5, div_factor=5.0, final_div_factor=20.0),
        lambda t: np_onecycle(t, "cosine", 7, 0.5, 0.5, 0.0, 5.0, 20.0),
    ),
    "sgdr": ("sgdr_schedule", dict(cosine_kwargs=SGDR), _np_sgdr),
}


def build(library, name):
    factory, kwargs, _ = CASES[name]
    return getattr(library, factory)(**kwargs)


def evaluate(schedule, counts=COUNTS):
    """Evaluate a gradflow schedule at a traced int32 count, in one jitted program (vmapped over counts)."""
    return np.asarray(_evaluate(schedule, jnp.asarray(counts, jnp.int32)))


@jax.jit
def _evaluate(schedule, counts):
    return jax.vmap(lambda c: schedule(c))(counts)


def assert_close(actual, expected, rtol=2e-6, atol=1e-7):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol, atol=atol)


# optax computes a polynomial's remaining fraction as 1 − τ/T, which XLA evaluates as a fused 1 − τ·(1/T):
# ~2e-8 instead of 0 at the end of the transition, magnified by a power < 1 (sqrt: 1.5e-4 of the range).
# gradflow computes (T − τ)/T, exactly 0 (test_polynomial_reaches_end_value_exactly).
OPTAX_ROUNDING = {"polynomial_begin_sqrt": 5e-4}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_optax(name):
    schedule = build(schedules, name)
    reference = jax.jit(jax.vmap(build(optax.schedules, name)))(jnp.asarray(COUNTS))
    assert isinstance(schedule, Schedule)
    assert_close(evaluate(schedule), reference, atol=OPTAX_ROUNDING.get(name, 1e-7))


def test_polynomial_reaches_end_value_exactly():
    for power in (0.5, 1, 2, 0.25):
        schedule = schedules.polynomial_schedule(0.5, 2.0, power, transition_steps=50, transition_begin=20)
        np.testing.assert_array_equal(evaluate(schedule, np.arange(70, 80)), 2.0)
        np.testing.assert_array_equal(np.asarray(schedule(jnp.arange(70, 80))), 2.0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_float64_formula(name):
    schedule = build(schedules, name)
    _, _, formula = CASES[name]
    assert_close(evaluate(schedule), formula(COUNTS), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_eager_call_on_an_array_of_counts_equals_scalar_calls(name):
    schedule = build(schedules, name)
    counts = COUNTS[::7]
    batch = np.asarray(schedule(jnp.asarray(counts)))
    assert batch.shape == counts.shape
    assert_close(batch, [float(schedule(int(c))) for c in counts], rtol=1e-6)
    # The value used by a transform is a scalar for a scalar count, jitted or not.
    assert jnp.shape(schedule(jnp.int32(5))) == ()
    assert_close(_call(schedule, jnp.int32(5)), schedule(5), rtol=1e-6)


@jax.jit
def _call(schedule, count):
    return schedule(count)


def test_seed_decay_is_exponential_decay_with_rate_one_tenth():
    """Seed 003: η_t = η₀·10^(−t/r) is exponential_decay(η₀, transition_steps=r, decay_rate=0.1)."""
    for eta0, r in [(0.1, 1), (1.0, 10), (0.03, 250)]:
        schedule = schedules.exponential_decay(eta0, transition_steps=r, decay_rate=0.1)
        t = np.arange(0, 6 * r + 1)
        assert_close(evaluate(schedule, t), eta0 * 10.0 ** (-t / r), rtol=2e-6, atol=0)
        assert_close(schedule(r), eta0 / 10, rtol=1e-6, atol=0)  # one decade per r steps
    assert "10^(−t/r)" in schedules.exponential_decay.__doc__


def test_staircase_steps_at_multiples_of_transition_steps():
    schedule = schedules.exponential_decay(1.0, transition_steps=4, decay_rate=0.5, transition_begin=2, staircase=True)
    values = evaluate(schedule, np.arange(0, 15))
    np.testing.assert_array_equal(values, [1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 0.125])


def test_signatures_match_optax():
    """Names, order, kinds and defaults of the arguments are optax's: switching is a rename of the import."""
    for name in schedules.__all__:
        if name[0].isupper():
            continue
        ours = inspect.signature(getattr(schedules, name)).parameters
        theirs = inspect.signature(getattr(optax.schedules, name)).parameters
        assert [(p.name, p.kind, p.default) for p in ours.values()] == [
            (p.name, p.kind, p.default) for p in theirs.values()
        ], name


def test_schedules_are_pytrees_with_numeric_leaves_and_static_options():
    schedule = schedules.exponential_decay(0.5, 10, 0.9, transition_begin=3, staircase=True, end_value=0.1)
    assert jax.tree.leaves(schedule) == [0.5, 10, 0.9, 3, 0.1]
    doubled = jax.tree.map(lambda x: 2 * x, schedule)
    assert isinstance(doubled, schedules.ExponentialDecay) and doubled.staircase is True
    onecycle = schedules.linear_onecycle_schedule(100, 1.0)
    assert jax.tree.leaves(onecycle) == [1.0 / 25, 30, 85, 100, 25.0, 1 / 25.0, 1e-4]
    assert jax.tree.structure(onecycle) != jax.tree.structure(schedules.cosine_onecycle_schedule(100, 1.0))
    # Equal schedules compare equal and hash alike (optimizers holding them stay hashable).
    assert schedules.linear_schedule(0.0, 1.0, 5) == schedules.linear_schedule(0.0, 1.0, 5)
    assert hash(gf.adam(schedules.warmup_cosine_decay_schedule(0.0, 1.0, 2, 10))) == hash(
        gf.adam(schedules.warmup_cosine_decay_schedule(0.0, 1.0, 2, 10))
    )


# ----------------------------------------------------------------------------------------------------------------------
# vmap, jit, grad.
# ----------------------------------------------------------------------------------------------------------------------


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


BATCHES = {
    "exponential": [
        schedules.exponential_decay(1.0, 10, 0.5, transition_begin=5, end_value=0.1),
        schedules.exponential_decay(0.3, 7, 0.9, transition_begin=0, end_value=0.05),
        schedules.exponential_decay(2.0, 25, 1.5, transition_begin=12, end_value=3.0),
    ],
    "warmup_cosine": [
        schedules.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100, end_value=0.01),
        schedules.warmup_cosine_decay_schedule(0.1, 0.5, 3, 40, end_value=0.0, exponent=2.0),
        schedules.warmup_cosine_decay_schedule(0.2, 0.0, 20, 30, end_value=0.1),
    ],
    "piecewise_linear": [
        schedules.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 40: 0.1}),
        schedules.piecewise_interpolate_schedule("linear", 0.3, {5: 2.0, 90: 0.01}),
    ],
    "sgdr": [
        schedules.sgdr_schedule(SGDR),
        schedules.sgdr_schedule(
            [dict(k, peak_value=2 * k["peak_value"], warmup_steps=k["warmup_steps"] + 1) for k in SGDR]
        ),
    ],
    "polynomial": [
        schedules.polynomial_schedule(1.0, 0.0, 2, 100, 5),
        schedules.polynomial_schedule(0.5, 1.0, 0.5, 0, 0),  # transition_steps = 0 (constant) in the same batch
        schedules.polynomial_schedule(0.1, 0.2, 1, 20, 50),
    ],
}


@pytest.mark.parametrize("name", sorted(BATCHES))
def test_vmap_over_a_batch_of_schedules_equals_a_loop(name):
    batch = stack(BATCHES[name])
    counts = jnp.asarray(COUNTS)
    values = jax.jit(jax.vmap(lambda s: jax.vmap(s)(counts)))(batch)
    for i, schedule in enumerate(BATCHES[name]):
        assert_close(values[i], evaluate(schedule), rtol=1e-6)


def test_vmap_over_factory_arguments_including_step_counts():
    peaks = jnp.array([1.0, 0.5, 0.0])
    warmups = jnp.array([0, 10, 20])
    counts = jnp.asarray(COUNTS)

    def values(peak, warmup):
        return jax.vmap(schedules.warmup_cosine_decay_schedule(0.1, peak, warmup, 60, end_value=0.05))(counts)

    batch = jax.jit(jax.vmap(values))(peaks, warmups)
    for i in range(3):
        expected = np_warmup_cosine(COUNTS, 0.1, float(peaks[i]), int(warmups[i]), 60, 0.05)
        assert_close(batch[i], expected, rtol=1e-5)
        single = schedules.warmup_cosine_decay_schedule(0.1, float(peaks[i]), int(warmups[i]), 60, end_value=0.05)
        assert_close(batch[i], evaluate(single), rtol=1e-6)


def test_jit_compiles_once_for_any_values_of_the_same_structure():
    traces = []

    @jax.jit
    def at(schedule, count):
        traces.append(1)
        return schedule(count)

    for peak, warmup, decay in [(1.0, 10, 100), (0.5, 3, 7), (2.0, 0, 1000)]:
        schedule = schedules.warmup_cosine_decay_schedule(0.0, peak, warmup, decay, end_value=0.1 * peak)
        assert_close(at(schedule, jnp.int32(5)), schedule(5), rtol=1e-6)
    assert len(traces) == 1
    # The staircase flag is structure: a new program.
    at(schedules.exponential_decay(1.0, 10, 0.5), jnp.int32(3))
    at(schedules.exponential_decay(0.3, 4, 0.9), jnp.int32(3))
    assert len(traces) == 2
    at(schedules.exponential_decay(1.0, 10, 0.5, staircase=True), jnp.int32(3))
    assert len(traces) == 3


def test_jitted_training_step_compiles_once_for_different_schedules():
    traces = []

    @jax.jit
    def step(tx, params, state):
        traces.append(1)
        updates, state = tx.update(params, state, params)
        return gf.apply_updates(params, updates), state

    params = jnp.ones(3)
    for peak, warmup, staircase_rate in [(0.1, 2, 0.5), (0.01, 5, 0.9), (0.3, 0, 0.1)]:
        lr = schedules.warmup_exponential_decay_schedule(0.0, peak, warmup, 4, staircase_rate, end_value=peak / 10)
        tx = gf.sgd(lr, momentum=schedules.linear_schedule(0.5, 0.9, warmup + 1))
        state = tx.init(params)
        for _ in range(3):
            _, state = step(tx, params, state)
    assert len(traces) == 1


def test_grad_through_schedule_parameters():
    def total(peak, end):
        schedule = schedules.warmup_cosine_decay_schedule(0.0, peak, 5, 25, end_value=end)
        return jnp.sum(jax.vmap(schedule)(jnp.arange(40)))

    with jax.enable_x64(True):
        peak, end, h = 0.7, 0.1, 1e-6
        grad = jax.jit(jax.grad(total, argnums=(0, 1)))(jnp.float64(peak), jnp.float64(end))
        value = jax.jit(total)  # one compiled program for the four values (eagerly, each one compiles op by op)
        f64 = jnp.float64
        numeric = [
            (value(f64(peak + h), f64(end)) - value(f64(peak - h), f64(end))) / (2 * h),
            (value(f64(peak), f64(end + h)) - value(f64(peak), f64(end - h))) / (2 * h),
        ]
    assert_close(grad, numeric, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (lambda: schedules.exponential_decay(1.0, 0, 0.5), r"exponential_decay: transition_steps must be in \(0"),
    (lambda: schedules.exponential_decay(1.0, 10, 0.0), r"exponential_decay: decay_rate must be in \(0"),
    (lambda: schedules.exponential_decay(1.0, 10, -0.5), r"decay_rate must be in \(0"),
    (lambda: schedules.exponential_decay(1.0, 10, 0.5, transition_begin=-1), r"transition_begin must be in \[0"),
    (lambda: schedules.exponential_decay(float("nan"), 10, 0.5), "init_value must not be NaN"),
    (lambda: schedules.exponential_decay(1.0, 10, 0.5, end_value=float("nan")), "end_value must not be NaN"),
    (lambda: schedules.polynomial_schedule(1.0, 0.0, 1, -5), r"polynomial_schedule: transition_steps must be in \[0"),
    (lambda: schedules.linear_schedule(1.0, 0.0, 5, transition_begin=-2), r"transition_begin must be in \[0"),
    (lambda: schedules.linear_schedule("a", 0.0, 5), "init_value must be a number"),
    (lambda: schedules.cosine_decay_schedule(1.0, 0), r"cosine_decay_schedule: decay_steps must be in \(0"),
    (lambda: schedules.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), "decay_steps .* must be greater than warmup"),
    (lambda: schedules.warmup_cosine_decay_schedule(0.0, 1.0, -1, 10), r"warmup_steps must be in \[0"),
    (lambda: schedules.warmup_exponential_decay_schedule(0.0, 1.0, 5, 0, 0.5), r"transition_steps must be in \(0"),
    (lambda: schedules.piecewise_constant_schedule(1.0, {10: -0.1}), r"boundaries_and_scales\[10\] must be in \[0"),
    (lambda: schedules.piecewise_constant_schedule(1.0, {-3: 0.1}), r"boundaries_and_scales key -3 must be in \[0"),
    (lambda: schedules.piecewise_constant_schedule(1.0, [(10, 0.1)]), "boundaries_and_scales must be a dict"),
    (
        lambda: schedules.piecewise_interpolate_schedule("cubic", 1.0),
        "interpolate_type must be one of 'linear', 'cosine'",
    ),
    (lambda: schedules.linear_onecycle_schedule(0, 1.0), "transition_steps must be a positive integer"),
    (lambda: schedules.linear_onecycle_schedule(10.5, 1.0), "transition_steps must be an integer"),
    (lambda: schedules.linear_onecycle_schedule(100, 1.0, pct_start=1.5), r"pct_start must be in \[0.0, 1.0\]"),
    (lambda: schedules.linear_onecycle_schedule(100, 1.0, pct_final=0.2), r"pct_final must be in \[0.3, 1.0\]"),
    (lambda: schedules.cosine_onecycle_schedule(100, 1.0, div_factor=0.0), r"div_factor must be in \(0"),
    (lambda: schedules.cosine_onecycle_schedule(100, 1.0, final_div_factor=-1.0), r"final_div_factor must be in \(0"),
    (lambda: schedules.join_schedules([], []), "schedules must not be empty"),
    (lambda: schedules.join_schedules([schedules.constant_schedule(1.0)] * 2, []), "one entry fewer than schedules"),
    (lambda: schedules.join_schedules([schedules.constant_schedule(1.0)] * 3, [10, 5]), "must be non-decreasing"),
    (lambda: schedules.join_schedules([schedules.constant_schedule(1.0), 3.0], [1]), r"schedules\[1\] must be a sch"),
    (lambda: schedules.sgdr_schedule([]), "at least one cycle"),
    (lambda: schedules.sgdr_schedule([dict(init_value=0.0, peak_value=1.0)]), r"cosine_kwargs\[0\] must be a dict"),
]


@pytest.mark.parametrize("make, message", BAD_ARGUMENTS, ids=range(len(BAD_ARGUMENTS)))
def test_bad_arguments_raise_clear_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_traced_arguments_are_not_checked_but_boundaries_must_be_concrete():
    jax.vmap(lambda r: schedules.exponential_decay(1.0, 10, r)(3))(jnp.array([0.5, 0.9]))  # no error
    with pytest.raises(TypeError, match="transition_steps must be a concrete integer"):
        jax.vmap(lambda n: schedules.linear_onecycle_schedule(n, 1.0)(3))(jnp.array([10, 20]))


def test_join_accepts_plain_functions():
    joined = schedules.join_schedules([lambda c: 0.1 * c, schedules.constant_schedule(2.0)], [5])
    assert_close(evaluate(joined, np.arange(8)), [0, 0.1, 0.2, 0.3, 0.4, 2, 2, 2])
    reference = optax.join_schedules([lambda c: 0.1 * c, optax.constant_schedule(2.0)], [5])
    assert_close(evaluate(joined, np.arange(8)), [reference(c) for c in range(8)])


# ----------------------------------------------------------------------------------------------------------------------
# Schedules as hyperparameters: the learning rate and others, step by step against NumPy and optax.
# ----------------------------------------------------------------------------------------------------------------------

STEPS = 25
_rng = np.random.default_rng(3)
PARAMS0 = _rng.normal(size=(5,))
GRADS = _rng.normal(size=(STEPS, 5))  # a fixed gradient sequence: the references need no autodiff


@jax.jit
def _update(tx, g, s, p):
    # module level, the optimizer an argument: one compiled program per structure, for every value
    return tx.update(g, s, p)


def run_gradflow(tx, params0=PARAMS0):
    params = jnp.asarray(params0, jnp.float32)
    state = tx.init(params)
    step = _update
    trajectory = []
    for g in GRADS:
        updates, state = step(tx, jnp.asarray(g, jnp.float32), state, params)
        params = gf.apply_updates(params, updates)
        trajectory.append(np.asarray(params))
    return np.array(trajectory), state


def run_optax(tx, params0=PARAMS0):
    params = jnp.asarray(params0, jnp.float32)
    state = tx.init(params)
    update = jax.jit(tx.update)  # one compilation rather than eager steps op by op
    trajectory = []
    for g in GRADS:
        updates, state = update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
        trajectory.append(np.asarray(params))
    return np.array(trajectory)


def np_sgd_momentum(lr, momentum):
    theta, m, out = PARAMS0.copy(), np.zeros(5), []
    for t, g in enumerate(GRADS):
        m = momentum(t) * m + g
        theta = theta - lr(t) * m
        out.append(theta)
    return np.array(out)


def np_adamw(lr, b1, b2, eps, weight_decay):
    theta, m, v, out = PARAMS0.copy(), np.zeros(5), np.zeros(5), []
    for t, g in enumerate(GRADS):
        beta1 = b1(t)
        m = beta1 * m + (1 - beta1) * g
        v = b2 * v + (1 - b2) * g**2
        m_hat, v_hat = m / (1 - beta1 ** (t + 1)), v / (1 - b2 ** (t + 1))
        theta = theta - lr(t) * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay(t) * theta)
        out.append(theta)
    return np.array(out)


def test_sgd_momentum_schedule_matches_numpy_and_optax():
    momentum = schedules.linear_schedule(0.5, 0.95, transition_steps=10, transition_begin=3)
    lr = schedules.exponential_decay(0.1, transition_steps=5, decay_rate=0.5, staircase=True)
    trajectory, state = run_gradflow(gf.sgd(lr, momentum=momentum))
    expected = np_sgd_momentum(
        lambda t: float(np_exponential(t, 0.1, 5, 0.5, 0, True)), lambda t: float(np_polynomial(t, 0.5, 0.95, 1, 10, 3))
    )
    assert_close(trajectory, expected, rtol=1e-5, atol=1e-6)
    # The momentum's own ScheduleState records the count and the value it used last.
    ewma_state = state[0]
    assert isinstance(ewma_state, ScheduleState) and int(ewma_state.count) == STEPS
    assert_close(ewma_state.hyperparams["decay"], 0.95, rtol=1e-6)
    injected = optax.inject_hyperparams(optax.sgd)(
        learning_rate=optax.exponential_decay(0.1, 5, 0.5, staircase=True),
        momentum=optax.linear_schedule(0.5, 0.95, 10, 3),
    )
    assert_close(trajectory, run_optax(injected), rtol=1e-5, atol=1e-6)


def test_adamw_weight_decay_and_b1_schedules_match_numpy_and_optax():
    weight_decay = schedules.piecewise_constant_schedule(0.1, {5: 0.5, 15: 0.0})
    b1 = schedules.cosine_decay_schedule(0.9, decay_steps=20, alpha=0.5)
    lr = schedules.warmup_cosine_decay_schedule(0.0, 0.05, warmup_steps=3, decay_steps=20, end_value=0.005)
    trajectory, _ = run_gradflow(gf.adamw(lr, b1=b1, weight_decay=weight_decay))
    expected = np_adamw(
        lambda t: float(np_warmup_cosine(t, 0.0, 0.05, 3, 20, 0.005)),
        lambda t: float(np_cosine(t, 0.9, 20, 0.5)),
        0.999,
        1e-8,
        lambda t: float(np_piecewise_constant(t, 0.1, {5: 0.5, 15: 0.0})),
    )
    assert_close(trajectory, expected, rtol=2e-5, atol=1e-6)
    injected = optax.inject_hyperparams(optax.adamw)(
        learning_rate=optax.warmup_cosine_decay_schedule(0.0, 0.05, 3, 20, end_value=0.005),
        b1=optax.cosine_decay_schedule(0.9, 20, alpha=0.5),
        b2=np.float32(0.999),
        weight_decay=optax.piecewise_constant_schedule(0.1, {5: 0.5, 15: 0.0}),
    )
    assert_close(trajectory, run_optax(injected), rtol=2e-5, atol=1e-6)


def test_adam_b1_schedule_alone_matches_numpy():
    b1 = schedules.linear_schedule(0.0, 0.9, transition_steps=8)
    trajectory, _ = run_gradflow(gf.adam(0.01, b1=b1))
    expected = np_adamw(lambda t: 0.01, lambda t: float(np_polynomial(t, 0.0, 0.9, 1, 8)), 0.999, 1e-8, lambda t: 0.0)
    assert_close(trajectory, expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["warmup_cosine", "linear_onecycle", "sgdr", "exponential_staircase_begin"])
def test_learning_rate_schedule_matches_optax_adam(name):
    trajectory, _ = run_gradflow(gf.adam(build(schedules, name)))
    # float32 hyperparameters for optax, as in test_optax_parity (a Python float b2 makes optax round
    # 1 − b2 differently from gradflow's float32 leaf).
    f32 = dict(b1=np.float32(0.9), b2=np.float32(0.999), eps=np.float32(1e-8))
    assert_close(trajectory, run_optax(optax.adam(build(optax.schedules, name), **f32)), rtol=2e-5, atol=1e-6)


def test_vmap_over_a_batch_of_scheduled_optimizers_equals_a_loop():
    def make(peak, momentum_end):
        lr = schedules.warmup_cosine_decay_schedule(0.0, peak, 3, 20, end_value=0.1 * peak)
        return gf.sgd(lr, momentum=schedules.linear_schedule(0.5, momentum_end, 10))

    peaks, ends = jnp.array([0.1, 0.05, 0.01]), jnp.array([0.9, 0.8, 0.5])
    batch = jax.vmap(make)(peaks, ends)

    def run(tx):
        params = jnp.asarray(PARAMS0, jnp.float32)

        def body(carry, g):
            params, state = carry
            updates, state = tx.update(g, state, params)
            return (gf.apply_updates(params, updates), state), None

        (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), jnp.asarray(GRADS, jnp.float32))
        return params

    batched = jax.jit(jax.vmap(run))(batch)
    for i in range(3):
        single, _ = run_gradflow(make(float(peaks[i]), float(ends[i])))
        assert_close(batched[i], single[-1], rtol=1e-5, atol=1e-6)
        expected = np_sgd_momentum(
            lambda t, i=i: float(np_warmup_cosine(t, 0.0, float(peaks[i]), 3, 20, 0.1 * float(peaks[i]))),
            lambda t, i=i: float(np_polynomial(t, 0.5, float(ends[i]), 1, 10)),
        )
        assert_close(batched[i], expected[-1], rtol=1e-5, atol=1e-6)


def test_plain_function_still_works_as_a_hyperparameter():
    tx = gf.sgd(lambda count: 0.1 * 0.5**count)
    trajectory, _ = run_gradflow(tx)
    expected = np_sgd_momentum(lambda t: 0.1 * 0.5**t, lambda t: 0.0)
    assert_close(trajectory, expected, rtol=1e-5, atol=1e-6)


def test_schedules_stay_finite_at_the_largest_count():
    schedule = schedules.warmup_cosine_decay_schedule(0.0, 1.0, 10, 100)
    top = jnp.int32(np.iinfo(np.int32).max)
    assert math.isfinite(float(schedule(top)))
