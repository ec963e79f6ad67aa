"""clip_by_block_rms, adaptive_grad_clip (and unitwise_norm) and centralize.

Each is checked step by step in float64 against an independent NumPy reference (rtol 1e-10), against
optax in float32 over the 50-step trajectories of tests/test_optax_parity.py (rtol 1e-5, atol 1e-6),
with default and non-default hyperparameters, for clear errors on bad input and for the edge cases
(zero norms: no NaN, in the values nor in their derivatives).

The float64 harness at the top (:func:`run_float64`) is shared with test_trust_ratio.py and
test_rprop.py: both libraries are fed the same NumPy gradient, so the comparison is of update rules only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches
from optax.transforms import _clipping as optax_clipping
from test_optax_parity import PARAMS, STEPS, assert_moved, assert_same_trajectory, f32, run_pair

import gradflow as gf
from gradflow.transforms.centralize import centralize
from gradflow.transforms.clipping import adaptive_grad_clip, clip_by_block_rms, unitwise_norm

# --- the float64 harness --------------------------------------------------------------------------

F64_STEPS = 25
F64_RTOL = 1e-10

THETA0 = {
    "a": np.array([1.3, 0.2, -0.7]),
    "b": np.array([[0.4, -1.2, 0.3], [1.5, 0.1, -0.8]]),
    "c": np.linspace(-1.0, 1.2, 12).reshape(2, 3, 2),
    "s": np.array(0.9),
    "z": np.zeros(2),  # a zero-initialised bias: zero parameter norm at the start
}
_A, _B = np.array([0.5, -1.0, 2.0]), np.array([[1.0, -0.5, 0.2], [0.3, 2.0, -1.0]])


def numpy_grad(theta: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A smooth, coupled, non-linear gradient field, for the keys of ``theta`` (the others held at θ₀)."""
    full = {**THETA0, **theta}
    a, b, c, s, z = (full[k] for k in "abcsz")
    grads = {
        "a": np.tanh(a - _A) + 0.1 * np.roll(a, 1) + 0.05 * s,
        "b": (b - _B) ** 3 + b,
        "c": c - 0.7 + 0.3 * np.sin(3.0 * c) + 0.1 * np.sum(a),
        "s": np.asarray(2.0 * (s - 0.5) + 0.1 * np.sum(b)),
        "z": np.array([0.4, -0.6]) + z,
    }
    return {k: grads[k] for k in theta}


_update = jax.jit(lambda tx, g, state, params: tx.update(g, state, params))


def run_float64(tx: Any, steps: int = F64_STEPS, theta0: dict = THETA0) -> list[dict[str, np.ndarray]]:
    """Run ``tx`` in float64 with :func:`numpy_grad`; the params after each step, θ₀ first."""
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v, jnp.float64) for k, v in theta0.items()}
        state = tx.init(params)
        out = [{k: np.asarray(v) for k, v in params.items()}]
        for _ in range(steps):
            grads = {k: jnp.asarray(v) for k, v in numpy_grad(out[-1]).items()}
            updates, state = _update(tx, grads, state, params)
            params = gf.apply_updates(params, updates)
            assert all(v.dtype == jnp.float64 for v in params.values())
            out.append({k: np.asarray(v) for k, v in params.items()})
    return out


def run_reference(step: Callable[[dict, dict, Any], tuple[dict, Any]], state: Any = None, steps: int = F64_STEPS):
    """The NumPy counterpart of :func:`run_float64`: ``step(theta, grads, state) -> (theta, state)``."""
    theta = {k: np.array(v, np.float64) for k, v in THETA0.items()}
    out = [theta]
    for _ in range(steps):
        theta, state = step(theta, numpy_grad(theta), state)
        out.append(theta)
    return out


def assert_same_float64(got: list[dict], want: list[dict], rtol: float = F64_RTOL) -> None:
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want)):
        for key in w:
            np.testing.assert_allclose(g[key], w[key], rtol=rtol, atol=1e-14, err_msg=f"params[{key!r}] at step {t}")
    assert max(np.max(np.abs(want[-1][k] - want[0][k])) for k in want[0]) > 1e-2  # the run moves


def sgd_reference(direction: Callable[[str, np.ndarray, np.ndarray], np.ndarray], learning_rate: float):
    """θ ← θ − η·direction(name, g, θ), leaf by leaf."""

    def step(theta, grads, state):
        return {k: theta[k] - learning_rate * direction(k, grads[k], theta[k]) for k in theta}, state

    return step


# --- NumPy references -----------------------------------------------------------------------------


def np_block_rms(g: np.ndarray, threshold: float) -> np.ndarray:
    rms = np.sqrt(np.mean(np.abs(g) ** 2))
    return g / max(1.0, rms / threshold)


def np_unit_axes(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """Brock et al.'s units, in optax's layout conventions (None: the whole array)."""
    if sum(n > 1 for n in shape) <= 1:
        return None
    return {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}[len(shape)]


def np_unitwise_norm(x: np.ndarray, axis=None) -> np.ndarray:
    axes = np_unit_axes(x.shape) if axis is None else axis
    return np.broadcast_to(np.sqrt(np.sum(np.abs(x) ** 2, axis=axes, keepdims=True)), x.shape)


def np_agc(g: np.ndarray, p: np.ndarray, clipping: float, eps: float, axis=None) -> np.ndarray:
    g_norm, p_norm = np_unitwise_norm(g, axis), np_unitwise_norm(p, axis)
    allowed = clipping * np.maximum(p_norm, eps)
    return np.where(g_norm < allowed, g, g * allowed / np.maximum(g_norm, 1e-6))


def np_centralize(g: np.ndarray, axis=None) -> np.ndarray:
    if g.ndim < 2:
        return g
    axes = tuple(range(1, g.ndim)) if axis is None else axis
    return g - np.mean(g, axis=axes, keepdims=True)


# --- float64 step by step -------------------------------------------------------------------------

LR = 0.1


@pytest.mark.parametrize("threshold", [0.5, 2.0])
def test_clip_by_block_rms_float64(threshold):
    got = run_float64(gf.chain(clip_by_block_rms(threshold), gf.sgd(LR)))
    want = run_reference(sgd_reference(lambda k, g, p: np_block_rms(g, threshold), LR))
    assert_same_float64(got, want)
    # both regimes occur: some leaves are clipped at some steps, some are not
    ratios = [np.sqrt(np.mean(numpy_grad(theta)[k] ** 2)) / threshold for theta in want[:-1] for k in THETA0]
    assert min(ratios) < 1 < max(ratios)


@pytest.mark.parametrize(("clipping", "eps"), [(0.6, 1e-3), (0.8, 0.5)], ids=["defaults-eps", "large-eps"])
def test_adaptive_grad_clip_float64(clipping, eps):
    tx = adaptive_grad_clip(clipping) if eps == 1e-3 else adaptive_grad_clip(clipping, eps=eps)
    got = run_float64(gf.chain(tx, gf.sgd(LR)))
    want = run_reference(sgd_reference(lambda k, g, p: np_agc(g, p, clipping, eps), LR))
    assert_same_float64(got, want)
    clipped = [
        np.mean(np_unitwise_norm(numpy_grad(theta)[k]) >= clipping * np.maximum(np_unitwise_norm(theta[k]), eps))
        for theta in want[:-1]
        for k in THETA0
    ]
    assert 0.1 < np.mean(clipped) < 0.9, np.mean(clipped)


def test_adaptive_grad_clip_axis_float64():
    """An explicit axis (here the last one) replaces the inferred units for every leaf of rank ≥ 1."""
    theta0 = {k: v for k, v in THETA0.items() if k != "s"}
    got = run_float64(gf.chain(adaptive_grad_clip(0.4, axis=-1), gf.sgd(LR)), theta0=theta0)
    theta, want = {k: np.array(v) for k, v in theta0.items()}, []
    want.append(theta)
    for _ in range(F64_STEPS):
        grads = numpy_grad(theta)
        theta = {k: theta[k] - LR * np_agc(grads[k], theta[k], 0.4, 1e-3, axis=-1) for k in theta}
        want.append(theta)
    assert_same_float64(got, want)


@pytest.mark.parametrize("axis", [None, 0, (0, 2)])
def test_centralize_float64(axis):
    tx = centralize() if axis is None else centralize(axis=axis)
    theta0 = THETA0 if axis != (0, 2) else {k: v for k, v in THETA0.items() if np.ndim(v) != 2}
    got = run_float64(gf.chain(tx, gf.sgd(LR)), theta0=theta0)
    theta, want = {k: np.array(v) for k, v in theta0.items()}, []
    want.append(theta)
    for _ in range(F64_STEPS):
        grads = numpy_grad(theta)
        theta = {k: theta[k] - LR * np_centralize(grads[k], axis) for k in theta}
        want.append(theta)
    assert_same_float64(got, want)


def test_centralize_leaves_vectors_and_scalars_alone():
    g = {"v": jnp.array([1.0, 2.0, 6.0]), "s": jnp.array(3.0), "m": jnp.array([[1.0, 3.0], [2.0, 2.0]])}
    out, _ = centralize().update(g, centralize().init(g))
    np.testing.assert_array_equal(out["v"], g["v"])
    np.testing.assert_array_equal(out["s"], g["s"])
    np.testing.assert_array_equal(out["m"], [[-1.0, 1.0], [0.0, 0.0]])
    # the paper's per-output-unit mean for an (in, out) kernel
    np.testing.assert_array_equal(centralize(axis=0).update(g, None)[0]["m"], [[-0.5, 0.5], [0.5, -0.5]])


# --- unit-wise norms ------------------------------------------------------------------------------

SHAPES = [(), (5,), (1, 4), (4, 1), (3, 4), (2, 3, 4), (2, 2, 3, 4), (1, 1, 3, 4), (2, 2, 2, 3, 2), (1, 1, 1, 1, 3)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_unitwise_norm_matches_numpy_and_optax(shape):
    x = np.random.default_rng(len(shape)).normal(size=shape)
    with jax.enable_x64(True):
        np.testing.assert_allclose(unitwise_norm(jnp.asarray(x)), np_unitwise_norm(x), rtol=1e-13)
    x32 = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(unitwise_norm(x32), optax_clipping.unitwise_norm(x32), rtol=1e-6)


@pytest.mark.parametrize(("shape", "axis"), [((3, 4), 1), ((2, 3, 4), (0, 2)), ((2, 3, 4), -1), ((6,), 0)])
def test_unitwise_norm_with_axis(shape, axis):
    x = np.random.default_rng(1).normal(size=shape)
    with jax.enable_x64(True):
        np.testing.assert_allclose(unitwise_norm(jnp.asarray(x), axis), np_unitwise_norm(x, axis), rtol=1e-13)
    x32 = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(unitwise_norm(x32, axis), optax_clipping.unitwise_norm(x32, axis=axis), rtol=1e-6)


def test_unitwise_norm_of_rank_6_needs_an_axis():
    with pytest.raises(ValueError, match=r"rank 6.*pass axis="):
        unitwise_norm(jnp.ones((2,) * 6))
    assert unitwise_norm(jnp.ones((2,) * 6), axis=(0, 1)).shape == (2,) * 6


# --- optax, float32 -------------------------------------------------------------------------------


def _with_lr(gf_tx: Any, ox_tx: Any, lr: float = 0.02) -> tuple[Any, Any]:
    return (
        gf.chain(gf_tx, gf.scale_by_learning_rate(f32(lr))),
        optax.chain(ox_tx, optax.scale_by_learning_rate(f32(lr))),
    )


PARITY = {
    "clip_by_block_rms": lambda: _with_lr(clip_by_block_rms(f32(0.6)), optax.clip_by_block_rms(f32(0.6))),
    "clip_by_block_rms-large": lambda: _with_lr(clip_by_block_rms(f32(5.0)), optax.clip_by_block_rms(f32(5.0))),
    "adaptive_grad_clip": lambda: _with_lr(
        adaptive_grad_clip(f32(0.6), f32(1e-3)), optax.adaptive_grad_clip(f32(0.6), f32(1e-3))
    ),
    "adaptive_grad_clip-eps": lambda: _with_lr(
        adaptive_grad_clip(f32(0.3), eps=f32(0.5)), optax.adaptive_grad_clip(f32(0.3), eps=f32(0.5))
    ),
    "centralize": lambda: _with_lr(centralize(), optax.centralize(), lr=0.05),
    "centralize-then-adam": lambda: (
        gf.chain(centralize(), gf.adam(f32(1e-2))),
        optax.chain(optax.centralize(), optax.adam(f32(1e-2), f32(0.9), f32(0.999), f32(1e-8))),
    ),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_matches_optax(name):
    gf_tx, ox_tx = PARITY[name]()
    out = run_pair(gf_tx, ox_tx)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def _optax_params_before_each_step(out: Any) -> list[Any]:
    history = [jax.tree.map(lambda x, t=t: np.asarray(x[t]), out.optax) for t in range(STEPS - 1)]
    return [jax.tree.map(np.asarray, PARAMS), *history]


def test_block_rms_parity_is_not_vacuous():
    """At threshold 0.6 some leaves are clipped at some steps and others are not."""
    out = run_pair(*PARITY["clip_by_block_rms"]())
    rms = np.array(
        [[np.sqrt(np.mean(np.asarray(g[t]) ** 2)) for g in jax.tree.leaves(out.gradients)] for t in range(STEPS)]
    )
    assert 0.1 < np.mean(rms > 0.6) < 0.9, np.mean(rms > 0.6)


@pytest.mark.parametrize(
    ("name", "clipping", "eps"), [("adaptive_grad_clip", 0.6, 1e-3), ("adaptive_grad_clip-eps", 0.3, 0.5)]
)
def test_adaptive_grad_clip_parity_is_not_vacuous(name, clipping, eps):
    """Along the trajectory a fair share of units is clipped, and a fair share is not."""
    out = run_pair(*PARITY[name]())
    params = _optax_params_before_each_step(out)
    clipped = []
    for t in range(STEPS):
        for g, p in zip(jax.tree.leaves(out.gradients), jax.tree.leaves(params[t])):
            g = np.asarray(g[t], np.float64)
            clipped.append(np.mean(np_unitwise_norm(g) >= clipping * np.maximum(np_unitwise_norm(p), eps)))
    assert 0.1 < np.mean(clipped) < 0.9, np.mean(clipped)


@pytest.mark.parametrize("axis", [None, 1, (0, 1)])
def test_adaptive_grad_clip_matches_optax_on_every_rank(axis):
    """One update on leaves of rank 2 to 5 (rank 1 and 0 without an explicit axis), against optax."""
    rng = np.random.default_rng(3)
    shapes = [(3, 4), (2, 3, 4), (2, 2, 3, 4), (2, 2, 2, 3, 2)] + ([(6,), ()] if axis is None else [])
    params = {f"p{i}": jnp.asarray(rng.normal(size=s), jnp.float32) for i, s in enumerate(shapes)}
    grads = {k: jnp.asarray(rng.normal(size=p.shape) * rng.uniform(0.1, 2.0), jnp.float32) for k, p in params.items()}
    ours, _ = adaptive_grad_clip(f32(0.7), axis=axis).update(grads, None, params)
    theirs, _ = optax.adaptive_grad_clip(f32(0.7), axis=axis).update(grads, None, params)
    for k in params:
        np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-5, atol=1e-6, err_msg=k)
        expected = np_agc(np.asarray(grads[k], np.float64), np.asarray(params[k], np.float64), 0.7, 1e-3, axis)
        np.testing.assert_allclose(ours[k], expected, rtol=1e-5, atol=1e-6, err_msg=k)
    changed = [not np.array_equal(ours[k], grads[k]) for k in params]
    assert any(changed)


FUNCTIONS = {"clip_by_block_rms": clip_by_block_rms, "adaptive_grad_clip": adaptive_grad_clip, "centralize": centralize}
GRADFLOW_ONLY = {"centralize": {"axis"}}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_signature_matches_optax(name):
    """Same argument names, order, kinds and defaults as optax (gradflow's additions are keyword-only)."""
    assert_signature_matches(FUNCTIONS[name], getattr(optax, name), GRADFLOW_ONLY.get(name, set()))


# --- edge cases -----------------------------------------------------------------------------------


def test_zero_updates_and_zero_params_give_no_nan():
    zeros = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    ones = jax.tree.map(jnp.ones_like, zeros)
    out, _ = clip_by_block_rms(0.5).update(zeros, None)
    assert all(np.array_equal(x, np.zeros_like(x)) for x in jax.tree.leaves(out))
    out, _ = adaptive_grad_clip(0.1).update(zeros, None, zeros)
    assert all(np.array_equal(x, np.zeros_like(x)) for x in jax.tree.leaves(out))
    # zero-initialised params: updates are bounded by clipping · eps per unit, not zeroed
    out, _ = adaptive_grad_clip(0.1, eps=1e-3).update(ones, None, zeros)
    np.testing.assert_allclose(np.asarray(unitwise_norm(out["w"])), 1e-4, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out["b"]), 1e-4, rtol=1e-6)
    out, _ = centralize().update(zeros, None)
    assert all(np.array_equal(x, np.zeros_like(x)) for x in jax.tree.leaves(out))


def test_derivatives_at_zero_are_finite():
    """The norms use a square root whose derivative at 0 is 0: differentiating a step through a zero
    gradient or a zero parameter (a zero-initialised bias) gives numbers, not NaN (optax gives NaN)."""
    zeros = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}

    def through(tx):
        def f(scale):
            params = jax.tree.map(lambda z: z * scale, zeros)
            grads = jax.tree.map(lambda z: z * scale, zeros)
            out, _ = tx.update(grads, tx.init(params), params)
            return sum(jnp.sum(x) for x in jax.tree.leaves(out))

        return jax.grad(f)(1.0)

    assert np.isfinite(through(clip_by_block_rms(0.5)))
    assert np.isfinite(through(adaptive_grad_clip(0.1)))
    assert np.isfinite(through(centralize()))


def test_dtype_and_complex_updates():
    out, _ = clip_by_block_rms(0.1).update({"w": jnp.ones(3, jnp.bfloat16)}, None)
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out["w"], np.float32), 0.1, rtol=1e-2)
    g = jnp.array([3.0 + 4.0j, 0.0])  # rms = 5/√2
    out, _ = clip_by_block_rms(1.0).update(g, None)
    assert out.dtype == g.dtype
    np.testing.assert_allclose(out, np.array([3.0 + 4.0j, 0.0]) * math.sqrt(2) / 5, rtol=1e-6)


def test_hyperparameters_are_leaves_and_can_be_schedules():
    """Numeric hyperparameters are leaves (vmappable); the axis is static; schedules are accepted."""
    tx = adaptive_grad_clip(0.1, 0.01, axis=(0, 1))
    assert jax.tree.leaves(tx) == [0.1, 0.01]
    assert jax.tree.leaves(clip_by_block_rms(0.5)) == [0.5]
    assert jax.tree.leaves(centralize(axis=[0, 1])) == [] and centralize(axis=[0, 1]).axis == (0, 1)
    schedule = lambda count: 0.5 / (1.0 + count)
    tx = clip_by_block_rms(schedule)
    g = jnp.full(4, 2.0)
    state = tx.init(g)
    for t in range(3):
        out, state = tx.update(g, state)
        np.testing.assert_allclose(out, 0.5 / (1.0 + t), rtol=1e-6)


def test_jit_once_for_any_threshold():
    traces = []

    @jax.jit
    def step(tx, g, p):
        traces.append(1)
        return tx.update(g, tx.init(p), p)[0]

    g = {"w": jnp.ones((2, 2))}
    for value in (0.1, 0.5, 3.0):
        step(gf.chain(clip_by_block_rms(value), adaptive_grad_clip(value)), g, g)
    assert len(traces) == 1


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: clip_by_block_rms(0.0), ValueError, r"clip_by_block_rms: threshold must be in \(0.0, inf\), got 0.0"),
        (lambda: clip_by_block_rms(-1.0), ValueError, r"threshold must be in \(0.0, inf\)"),
        (lambda: clip_by_block_rms(math.nan), ValueError, r"threshold must be in"),
        (lambda: clip_by_block_rms("1"), TypeError, r"clip_by_block_rms: threshold must be a number"),
        (lambda: adaptive_grad_clip(-0.1), ValueError, r"adaptive_grad_clip: clipping must be in \[0.0, inf\)"),
        (lambda: adaptive_grad_clip(0.1, eps=-1e-3), ValueError, r"adaptive_grad_clip: eps must be in \[0.0, inf\)"),
        (lambda: adaptive_grad_clip(0.1, axis=1.5), TypeError, r"adaptive_grad_clip: axis must be None, an int"),
        (lambda: adaptive_grad_clip(0.1, axis=(0, "1")), TypeError, r"axis must be None, an int or a tuple of ints"),
        (lambda: centralize(axis="rows"), TypeError, r"centralize: axis must be None, an int or a tuple of ints"),
    ],
)
def test_bad_hyperparameters(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_adaptive_grad_clip_needs_params():
    with pytest.raises(ValueError, match=r"adaptive_grad_clip needs the parameters"):
        adaptive_grad_clip(0.1).update({"w": jnp.ones(2)}, None)


def test_adaptive_grad_clip_names_the_leaf_it_cannot_split():
    grads = {"conv": {"kernel": jnp.ones((2,) * 6)}}
    with pytest.raises(ValueError, match=r"updates\['conv'\]\['kernel'\] with shape \(2, 2, 2, 2, 2, 2\)"):
        adaptive_grad_clip(0.1).update(grads, None, grads)


def test_adaptive_grad_clip_mismatched_params():
    with pytest.raises(gf.TreeMismatchError, match=r"params\['b'\] has no counterpart"):
        adaptive_grad_clip(0.1).update({"w": jnp.ones(2)}, None, {"b": jnp.ones(2)})
    with pytest.raises(
        gf.TreeMismatchError, match=r"updates\['w'\] has shape \(2,\) but params\['w'\] has shape \(3,\)"
    ):
        adaptive_grad_clip(0.1).update({"w": jnp.ones(2)}, None, {"w": jnp.ones(3)})


def test_block_rms_of_a_nan_leaf_is_nan_not_unclipped():
    """A NaN entry makes its leaf's RMS NaN, which reaches the whole leaf (apply_if_finite is the guard); before,
    the safe square root turned NaN into 0 and the leaf's finite entries escaped the clip (1000 stayed 1000)."""
    out, _ = clip_by_block_rms(1.0).update({"w": jnp.array([jnp.nan, 1000.0]), "b": jnp.array([3.0, 4.0])}, None)
    assert np.isnan(np.asarray(out["w"])).all()
    np.testing.assert_allclose(out["b"], np.array([3.0, 4.0]) / np.sqrt(12.5), rtol=1e-6)


def test_zero_gradient_has_zero_update_and_finite_derivative():
    """clip_by_block_rms and adaptive_grad_clip at a zero gradient and zero parameters (eps = 0): zero updates,
    and the derivative of their sum with respect to the gradient is finite (1: nothing is clipped)."""
    zeros = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    for tx in (clip_by_block_rms(1.0), adaptive_grad_clip(0.1, eps=0.0)):
        total = lambda g, tx=tx: sum(jnp.sum(x) for x in jax.tree.leaves(tx.update(g, None, zeros)[0]))
        derivative = jax.grad(total)(zeros)
        assert float(total(zeros)) == 0.0
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(derivative)), tx
