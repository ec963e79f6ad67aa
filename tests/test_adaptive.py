"""Yogi, RAdam, AdaBelief and NovoGrad: NumPy float64 references, optax parity, validation, the algebra.

Three kinds of check, each step by step:

- float64 (``jax.enable_x64``): every step's parameters equal an independent NumPy implementation of the
  paper's update rule (written below from the formulas, importing neither gradflow nor optax) to rtol
  1e-10, on a coupled non-quadratic loss over a dict of leaves of different ranks, with default and
  non-default hyperparameters;
- float32: the same trajectory as optax, on the well-conditioned problem of ``test_optax_parity``
  (rtol 1e-5, atol 1e-6), every float hyperparameter passed to both libraries as the same float32;
- construction rejects bad hyperparameters with an error that names the argument.

The float64 problem (``THETA0``, ``numpy_grad``, ``run_gradflow``) is shared with test_factored.py and
test_schedule_free.py.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches
from test_optax_parity import assert_moved, assert_same_trajectory, f32, run_pair

import gradflow as gf
from gradflow.optimizers import adaptive
from gradflow.transforms import adaptive_moments as am
from gradflow.transforms.moments import EWMA

# --- the float64 problem ----------------------------------------------------------------------------

STEPS = 30
RTOL = 1e-10

_rng = np.random.default_rng(5)
THETA0 = {
    "a": _rng.normal(size=(3,)),
    "b": _rng.normal(size=(2, 3)),
    "w": _rng.normal(size=(4, 2)),
    "t": _rng.normal(size=(2, 1, 3)),
    "c": np.float64(0.7),
}
TARGET = {k: np.asarray(v) + _rng.choice([-2.0, 2.0], size=np.shape(v)) for k, v in THETA0.items()}
CENTER = {k: _rng.normal(size=np.shape(v)) for k, v in THETA0.items()}


def loss(params: dict) -> jax.Array:
    """Σ log cosh(θ − target) + 0.05·Σ(θ − center)⁴ over all leaves, plus a coupling of four leaves."""
    total = 0.0
    for key in THETA0:
        x = params[key]
        total = total + jnp.sum(jnp.log(jnp.cosh(x - TARGET[key]))) + 0.05 * jnp.sum((x - CENTER[key]) ** 4)
    a, b, w, t, c = (params[k] for k in "abwtc")
    return total + 0.3 * (a[0] * b[1, 2] + c * w[3, 1] + t[1, 0, 2] * a[2])


def numpy_grad(theta: dict) -> dict:
    """The analytic gradient of :func:`loss`, in NumPy."""
    g = {k: np.tanh(theta[k] - TARGET[k]) + 0.2 * (theta[k] - CENTER[k]) ** 3 for k in THETA0}
    a, b, w, t, c = (theta[k] for k in "abwtc")
    g["a"][0] += 0.3 * b[1, 2]
    g["b"][1, 2] += 0.3 * a[0]
    g["c"] = g["c"] + 0.3 * w[3, 1]
    g["w"][3, 1] += 0.3 * c
    g["t"][1, 0, 2] += 0.3 * a[2]
    g["a"][2] += 0.3 * t[1, 0, 2]
    return g


GRAD_FN = jax.jit(jax.grad(loss))


@jax.jit
def _step(tx, params, state):
    updates, state = tx.update(GRAD_FN(params), state, params)
    return gf.apply_updates(params, updates), updates, state


def run_gradflow(tx: Any, steps: int = STEPS, with_states: bool = False) -> Any:
    """``tx`` in float64 on :func:`loss`: the params after each step (θ₀ first), as dicts of NumPy arrays."""
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v, jnp.float64) for k, v in THETA0.items()}
        state = tx.init(params)
        out, states = [_numpy(params)], [state]
        for _ in range(steps):
            params, updates, state = _step(tx, params, state)
            assert all(u.dtype == jnp.float64 for u in jax.tree.leaves(updates))
            out.append(_numpy(params))
            states.append(state)
    return (out, states) if with_states else out


def _numpy(params: dict) -> dict:
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def start() -> dict:
    return {k: np.array(v, np.float64) for k, v in THETA0.items()}


def assert_trajectories_close(ours: list, reference: list, rtol: float = RTOL) -> None:
    assert len(ours) == len(reference)
    for t, (x, y) in enumerate(zip(ours, reference)):
        for key in THETA0:
            np.testing.assert_allclose(x[key], y[key], rtol=rtol, atol=0, err_msg=f"params[{key!r}] after step {t}")
    moved = max(np.max(np.abs(reference[-1][k] - reference[0][k])) for k in THETA0)
    assert moved > 1e-2, "the reference trajectory barely moved: the comparison would be vacuous"


# --- NumPy references (the papers' rules; no gradflow, JAX or optax) --------------------------------


def ref_yogi(steps, learning_rate, b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0, initial=1e-6, debias=True):
    """Zaheer et al. 2018 (with optax's debiasing and initial accumulators unless ``debias=False``)."""
    theta = start()
    m = {k: np.full(np.shape(v), initial) for k, v in theta.items()}
    v = {k: np.full(np.shape(x), initial) for k, x in theta.items()}
    out = [{k: x.copy() for k, x in theta.items()}]
    for t in range(1, steps + 1):
        g = numpy_grad(theta)
        for k in theta:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = v[k] - (1 - b2) * np.sign(v[k] - g[k] ** 2) * g[k] ** 2
            m_hat = m[k] / (1 - b1**t) if debias else m[k]
            v_hat = v[k] / (1 - b2**t) if debias else v[k]
            theta[k] = theta[k] - learning_rate * m_hat / (np.sqrt(v_hat + eps_root) + eps)
        out.append({k: x.copy() for k, x in theta.items()})
    return out


def _nesterov_m_hat(m, g, b1, t, nesterov):
    if nesterov:
        return b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1**t)
    return m / (1 - b1**t)


def ref_radam(steps, learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, nesterov=False):
    """Liu et al. 2020, Algorithm 2 (rectified step once ρ_t ≥ threshold, momentum SGD before)."""
    theta = start()
    m = {k: np.zeros(np.shape(v)) for k, v in theta.items()}
    v = {k: np.zeros(np.shape(x)) for k, x in theta.items()}
    rho_inf = 2 / (1 - b2) - 1
    out, rectified = [{k: x.copy() for k, x in theta.items()}], []
    for t in range(1, steps + 1):
        g = numpy_grad(theta)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        rectified.append(rho >= threshold)
        for k in theta:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat = _nesterov_m_hat(m[k], g[k], b1, t, nesterov)
            if rho >= threshold:
                r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
                step = r * m_hat / (np.sqrt(v[k] / (1 - b2**t) + eps_root) + eps)
            else:
                step = m_hat
            theta[k] = theta[k] - learning_rate * step
        out.append({k: x.copy() for k, x in theta.items()})
    return out, rectified


def ref_adabelief(steps, learning_rate, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, nesterov=False):
    """Zhuang et al. 2020, Algorithm 2: s_t = b2·s + (1 − b2)(g − m_t)² + ε."""
    theta = start()
    m = {k: np.zeros(np.shape(v)) for k, v in theta.items()}
    s = {k: np.zeros(np.shape(x)) for k, x in theta.items()}
    out = [{k: x.copy() for k, x in theta.items()}]
    for t in range(1, steps + 1):
        g = numpy_grad(theta)
        for k in theta:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            s[k] = b2 * s[k] + (1 - b2) * (g[k] - m[k]) ** 2 + eps_root
            m_hat = _nesterov_m_hat(m[k], g[k], b1, t, nesterov)
            theta[k] = theta[k] - learning_rate * m_hat / (np.sqrt(s[k] / (1 - b2**t)) + eps)
        out.append({k: x.copy() for k, x in theta.items()})
    return out


def ref_novograd(steps, learning_rate, b1=0.9, b2=0.25, eps=1e-6, eps_root=0.0, weight_decay=0.0):
    """Ginsburg et al. 2019, Algorithm 1: one second moment per layer (leaf), started at ‖g₁‖²."""
    theta = start()
    m = {k: np.zeros(np.shape(x)) for k, x in theta.items()}
    v = {k: 0.0 for k in theta}
    out = [{k: x.copy() for k, x in theta.items()}]
    for t in range(1, steps + 1):
        g = numpy_grad(theta)
        for k in theta:
            norm2 = float(np.sum(g[k] ** 2))
            v[k] = norm2 if t == 1 else b2 * v[k] + (1 - b2) * norm2
            m[k] = b1 * m[k] + g[k] / (np.sqrt(v[k] + eps_root) + eps) + weight_decay * theta[k]
            theta[k] = theta[k] - learning_rate * m[k]
        out.append({k: x.copy() for k, x in theta.items()})
    return out


# --- float64: gradflow == the NumPy references ------------------------------------------------------

YOGI_CUSTOM = dict(b1=0.8, b2=0.99, eps=1e-4, eps_root=1e-6, initial=0.01)


def test_yogi_matches_reference():
    assert_trajectories_close(run_gradflow(adaptive.yogi(0.05)), ref_yogi(STEPS, 0.05))


def test_scale_by_yogi_non_default_matches_reference():
    h = YOGI_CUSTOM
    tx = gf.chain(
        am.scale_by_yogi(h["b1"], h["b2"], h["eps"], h["eps_root"], h["initial"]), gf.scale_by_learning_rate(0.05)
    )
    assert_trajectories_close(run_gradflow(tx), ref_yogi(STEPS, 0.05, **h))


def test_yogi_of_the_paper_is_a_composition_without_debiasing():
    """Zaheer et al.'s Algorithm 2 (no debiasing): ratio(ewma, chain(square, yogi_moment, root))."""
    tx = gf.chain(
        gf.ratio(gf.ewma(0.9), gf.chain(gf.square(), am.yogi_moment(0.999, 0.0), gf.root(eps=1e-3))),
        gf.scale_by_learning_rate(0.05),
    )
    ours = run_gradflow(tx)
    paper = ref_yogi(STEPS, 0.05, initial=0.0, debias=False)
    assert_trajectories_close(ours, paper)
    optax_default = ref_yogi(STEPS, 0.05)
    assert not np.allclose(paper[-1]["b"], optax_default[-1]["b"], rtol=1e-3)


@pytest.mark.parametrize(
    "hyper",
    [
        dict(),
        dict(b1=0.8, b2=0.9, eps=1e-6, eps_root=1e-8, threshold=4.5),
        dict(b1=0.85, b2=0.95, threshold=4.0, nesterov=True),
    ],
    ids=["default", "custom", "nesterov"],
)
def test_radam_matches_reference(hyper):
    reference, rectified = ref_radam(STEPS, 0.02, **hyper)
    assert any(rectified) and not all(rectified), "both sides of the threshold must be exercised"
    assert_trajectories_close(run_gradflow(adaptive.radam(0.02, **hyper)), reference)


@pytest.mark.parametrize(
    "hyper",
    [dict(), dict(b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-4), dict(b2=0.95, eps_root=1e-3, nesterov=True)],
    ids=["default", "custom", "nesterov"],
)
def test_adabelief_matches_reference(hyper):
    assert_trajectories_close(run_gradflow(adaptive.adabelief(0.02, **hyper)), ref_adabelief(STEPS, 0.02, **hyper))


@pytest.mark.parametrize(
    "hyper",
    [dict(), dict(b1=0.7, b2=0.6, eps=1e-3, eps_root=1e-2, weight_decay=0.05)],
    ids=["default", "custom"],
)
def test_novograd_matches_reference(hyper):
    assert_trajectories_close(run_gradflow(adaptive.novograd(0.01, **hyper)), ref_novograd(STEPS, 0.01, **hyper))


def test_novograd_state_is_one_scalar_per_leaf():
    """NovoGrad's memory: the second moment is one number per leaf (plus m shaped like the params)."""
    tx = adaptive.novograd(0.01)
    _, states = run_gradflow(tx, steps=2, with_states=True)
    state = states[-1][0]  # optax's layout: ScaleByNovogradState(count, mu, nu)
    assert isinstance(state, am.ScaleByNovogradState)
    assert all(np.shape(v) == () for v in jax.tree.leaves(state.nu))
    assert set(state.nu) == set(THETA0)
    assert all(np.shape(state.mu[k]) == np.shape(THETA0[k]) for k in THETA0)


# --- the algebra: each rule is a branch that can be swapped --------------------------------------------


def _replace_in_tree(tx: Any, old_type: type, new: Any) -> Any:
    """``tx`` with every sub-transform of type ``old_type`` replaced by ``new`` (a structural edit).

    A composite presenting optax's layout is replaced by its edited inner chain: the edit is another
    algorithm, whose state is the plain nest of its primitives' states."""
    if isinstance(tx, old_type):
        return new
    if isinstance(tx, gf.Composite):
        return _replace_in_tree(tx.inner, old_type, new)
    if isinstance(tx, gf.Chain):
        return gf.chain(*(_replace_in_tree(t, old_type, new) for t in tx.transforms))
    if isinstance(tx, gf.Combine):
        return dataclasses.replace(
            tx, first=_replace_in_tree(tx.first, old_type, new), second=_replace_in_tree(tx.second, old_type, new)
        )
    return tx


def test_yogi_with_adam_second_moment_is_adam():
    """Swap yogi_moment for ewma in scale_by_yogi's denominator branch (zero initial values): Adam."""
    yogi_direction = am.scale_by_yogi(0.9, 0.999, 1e-3, 0.0, 0.0)
    as_adam = _replace_in_tree(yogi_direction, am.YogiMoment, gf.ewma(0.999))
    tx, expected = (gf.chain(as_adam, gf.scale_by_learning_rate(0.05)), gf.adam(0.05, eps=1e-3))
    for x, y in zip(run_gradflow(tx, steps=10), run_gradflow(expected, steps=10)):
        for key in THETA0:
            np.testing.assert_array_equal(x[key], y[key])


def test_radam_without_rectification_is_adam():
    """Dropping the rectification primitive from RAdam's denominator gives Adam, step for step."""
    radam = am.scale_by_radam(0.9, 0.99, 1e-8)
    as_adam = _replace_in_tree(radam, am.Rectification, gf.identity())
    ours = run_gradflow(gf.chain(as_adam, gf.scale_by_learning_rate(0.02)), steps=10)
    adam = run_gradflow(gf.adam(0.02, b2=0.99), steps=10)
    for x, y in zip(ours, adam):
        for key in THETA0:
            np.testing.assert_array_equal(x[key], y[key])


def test_adabelief_branch_is_an_ewma_of_the_prediction_error():
    """With eps_root = 0 the belief primitive is a plain ewma: swapping it in changes nothing."""
    belief = am.scale_by_belief(0.9, 0.99, 1e-8, 0.0)
    swapped = _replace_in_tree(belief, am.EWMAWithOffset, gf.ewma(0.99))
    assert any(isinstance(t, EWMA) for t in jax.tree.leaves(swapped, is_leaf=lambda x: isinstance(x, EWMA)))
    a = run_gradflow(gf.chain(belief, gf.scale_by_learning_rate(0.02)), steps=10)
    b = run_gradflow(gf.chain(swapped, gf.scale_by_learning_rate(0.02)), steps=10)
    for x, y in zip(a, b):
        for key in THETA0:
            np.testing.assert_array_equal(x[key], y[key])


# --- float32: parity with optax -----------------------------------------------------------------------


def same(gf_fn: Callable, ox_fn: Callable, *args: Any, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    """Both libraries' functions with the same arguments, optax's defaults filled in, floats as float32."""

    def make():
        bound = inspect.signature(ox_fn).bind(*args, **kwargs)
        bound.apply_defaults()
        given = {k: f32(v) for k, v in bound.arguments.items()}
        ours = inspect.signature(gf_fn).parameters
        assert set(kwargs) <= set(ours)
        return gf_fn(**{k: v for k, v in given.items() if k in ours}), ox_fn(**given)

    return make


def with_lr(make: Callable[[], tuple[Any, Any]], lr: float = 0.02) -> Callable[[], tuple[Any, Any]]:
    """A pair of scalings, each followed by its library's learning rate."""

    def pair():
        ours, theirs = make()
        return (
            gf.chain(ours, gf.scale_by_learning_rate(f32(lr))),
            optax.chain(theirs, optax.scale_by_learning_rate(f32(lr))),
        )

    return pair


PARITY_CASES = [
    pytest.param(same(adaptive.yogi, optax.yogi, 1e-2), id="yogi"),
    pytest.param(same(adaptive.yogi, optax.yogi, 5e-3, b1=0.8, b2=0.99, eps=1e-4), id="yogi-custom"),
    pytest.param(with_lr(same(am.scale_by_yogi, optax.scale_by_yogi)), id="scale_by_yogi"),
    pytest.param(
        with_lr(same(am.scale_by_yogi, optax.scale_by_yogi, 0.85, 0.99, 1e-5, 1e-7, initial_accumulator_value=0.1)),
        id="scale_by_yogi-custom",
    ),
    pytest.param(same(adaptive.radam, optax.radam, 1e-2), id="radam"),
    pytest.param(
        same(adaptive.radam, optax.radam, 1e-2, b1=0.8, b2=0.95, eps=1e-6, eps_root=1e-8, threshold=4.5),
        id="radam-custom",
    ),
    pytest.param(same(adaptive.radam, optax.radam, 1e-2, b2=0.99, nesterov=True), id="radam-nesterov"),
    pytest.param(with_lr(same(am.scale_by_radam, optax.scale_by_radam, 0.9, 0.95)), id="scale_by_radam"),
    pytest.param(same(adaptive.adabelief, optax.adabelief, 1e-2), id="adabelief"),
    pytest.param(
        same(adaptive.adabelief, optax.adabelief, 5e-3, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-4), id="adabelief-custom"
    ),
    pytest.param(same(adaptive.adabelief, optax.adabelief, 5e-3, nesterov=True), id="adabelief-nesterov"),
    pytest.param(with_lr(same(am.scale_by_belief, optax.scale_by_belief)), id="scale_by_belief"),
    pytest.param(same(adaptive.novograd, optax.novograd, 1e-2), id="novograd"),
    pytest.param(
        same(adaptive.novograd, optax.novograd, 1e-2, b1=0.8, b2=0.5, eps=1e-4, eps_root=1e-3, weight_decay=0.1),
        id="novograd-custom",
    ),
    pytest.param(with_lr(same(am.scale_by_novograd, optax.scale_by_novograd), 0.01), id="scale_by_novograd"),
    pytest.param(
        with_lr(same(am.scale_by_novograd, optax.scale_by_novograd, 0.95, 0.9, weight_decay=0.05), 0.01),
        id="scale_by_novograd-custom",
    ),
]


@pytest.mark.parametrize("make", PARITY_CASES)
def test_matches_optax(make):
    ours, theirs = make()
    out = run_pair(ours, theirs)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def test_radam_parity_covers_both_sides_of_the_threshold():
    """The RAdam parity case switches to the rectified step within its 50 steps (ρ_t ≥ 5 from t = 6)."""
    b2 = 0.999
    rho = [2 / (1 - b2) - 1 - 2 * t * b2**t / (1 - b2**t) for t in range(1, 51)]
    assert rho[0] < 5 <= rho[-1]


def test_radam_parity_detects_a_different_threshold():
    """The comparison is not vacuous: RAdam with another threshold leaves optax's trajectory."""
    out = run_pair(adaptive.radam(f32(1e-2), threshold=f32(7.0)), same(adaptive.radam, optax.radam, 1e-2)()[1])
    with pytest.raises(AssertionError, match="gradflow vs optax"):
        assert_same_trajectory(out.gradflow, out.optax)


SIGNATURES = [
    (adaptive.yogi, optax.yogi),
    (adaptive.radam, optax.radam),
    (adaptive.adabelief, optax.adabelief),
    (adaptive.novograd, optax.novograd),
    (am.scale_by_yogi, optax.scale_by_yogi),
    (am.scale_by_radam, optax.scale_by_radam),
    (am.scale_by_belief, optax.scale_by_belief),
    (am.scale_by_novograd, optax.scale_by_novograd),
]


@pytest.mark.parametrize("ours, theirs", SIGNATURES, ids=[f.__name__ for f, _ in SIGNATURES])
def test_signature_matches_optax(ours, theirs):
    """Same argument names, order, kinds and defaults: switching from optax is a rename of the import."""
    assert_signature_matches(ours, theirs)


# --- intended differences from optax --------------------------------------------------------------


def test_radam_rejects_a_threshold_below_four_where_optax_steps_with_nan():
    """For 2 < ρ_t < 4 the rectification r_t is the root of a negative number: optax takes a NaN step,
    gradflow refuses the threshold when the optimizer is built."""
    params = {"w": jnp.ones(3)}
    tx = optax.radam(0.1, b2=0.9, threshold=3.0)
    state = tx.init(params)
    steps = []
    for _ in range(4):  # ρ_4 = 3.74 for b2 = 0.9
        updates, state = tx.update({"w": jnp.ones(3)}, state, params)
        steps.append(bool(np.isnan(updates["w"]).any()))
    assert steps == [False, False, False, True]
    with pytest.raises(ValueError, match=r"threshold must be in \[4.0, inf\)"):
        adaptive.radam(0.1, b2=0.9, threshold=3.0)


def test_novograd_updates_keep_the_gradient_dtype_with_a_low_precision_mu():
    """optax's scale_by_novograd returns its mu_dtype buffer as the update; gradflow keeps the gradient's
    dtype (law 6) and stores m in mu_dtype."""
    params = {"w": jnp.ones((2, 2))}
    grads = {"w": jnp.full((2, 2), 0.5)}
    ours = am.scale_by_novograd(mu_dtype=jnp.bfloat16)
    updates, state = ours.update(grads, ours.init(params), params)
    assert updates["w"].dtype == jnp.float32
    assert {x.dtype for x in jax.tree.leaves(state.mu)} == {jnp.dtype(jnp.bfloat16)}
    theirs = optax.scale_by_novograd(mu_dtype=jnp.bfloat16)
    assert theirs.update(grads, theirs.init(params), params)[0]["w"].dtype == jnp.bfloat16


# --- construction errors --------------------------------------------------------------------------

BAD = [
    (lambda: adaptive.yogi(-0.1), "yogi: learning_rate"),
    (lambda: adaptive.yogi(None), "yogi: learning_rate is required"),
    (lambda: adaptive.yogi(0.1, b1=1.0), r"scale_by_yogi: b1 must be in \[0.0, 1.0\)"),
    (lambda: adaptive.yogi(0.1, b2=-0.5), r"scale_by_yogi: b2 must be in"),
    (lambda: adaptive.yogi(0.1, eps=-1e-3), r"scale_by_yogi: eps must be in \[0.0, inf\)"),
    (lambda: am.scale_by_yogi(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (lambda: adaptive.radam(0.1, threshold=float("nan")), "threshold"),
    (lambda: adaptive.radam(0.1, eps_root=-1.0), "scale_by_radam: eps_root"),
    (lambda: adaptive.adabelief(0.1, b2=1.5), "scale_by_belief: b2"),
    (lambda: adaptive.adabelief(0.1, eps_root=-1e-16), "scale_by_belief: eps_root"),
    (lambda: adaptive.novograd(0.1, weight_decay=-0.1), "scale_by_novograd: weight_decay"),
    (lambda: adaptive.novograd(0.1, b2=1.0), "scale_by_novograd: b2"),
    (lambda: am.yogi_moment(decay=2.0), "yogi_moment: decay"),
    (lambda: am.ewma_with_offset(0.9, offset=-1.0), "ewma_with_offset: offset"),
    (lambda: am.rectification(0.999, threshold=1.0), "rectification: threshold"),
    (lambda: am.layer_second_moment(-0.1), "layer_second_moment: decay"),
]


@pytest.mark.parametrize("build, message", BAD, ids=[m for _, m in BAD])
def test_bad_hyperparameters_are_rejected(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_non_numeric_hyperparameter_is_a_type_error():
    with pytest.raises(TypeError, match="b1 must be a number"):
        adaptive.adabelief(0.1, b1="0.9")


def test_novograd_needs_params():
    tx = adaptive.novograd(0.1)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(params, tx.init(params))


def test_mismatched_state_is_reported_with_paths():
    tx = am.layer_second_moment(0.5)
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(gf.TreeMismatchError, match=r"updates\['v'\]"):
        tx.update({"v": jnp.ones(2)}, state)
