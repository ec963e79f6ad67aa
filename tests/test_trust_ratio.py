"""scale_by_trust_ratio, lars and lamb.

Step by step in float64 against NumPy references written from the papers in optax's form (rtol 1e-10);
against optax in float32 over the 50-step trajectories of tests/test_optax_parity.py (rtol 1e-5,
atol 1e-6), with default and non-default hyperparameters, masks given as full trees, as prefixes and as
functions; clear errors on bad input; zero norms give no NaN, in the values nor in their derivatives.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_signature_matches
from test_clipping import THETA0, assert_same_float64, run_float64, run_reference, sgd_reference
from test_optax_parity import MASK, assert_moved, assert_same_trajectory, f32, matrices_only, run_pair

import gradflow as gf
from gradflow.optimizers.layerwise import lamb, lars
from gradflow.transforms.trust_ratio import scale_by_trust_ratio

# --- NumPy references (float64) -------------------------------------------------------------------


def np_norm(x: np.ndarray) -> float:
    return float(np.sqrt(np.sum(np.abs(x) ** 2)))


def np_trust_ratio(u: np.ndarray, p: np.ndarray, min_norm=0.0, trust_coefficient=1.0, eps=0.0) -> float:
    """trust_coefficient·max(‖θ‖, min_norm)/(max(‖u‖, min_norm) + eps); 1 if either norm is 0."""
    p_norm, u_norm = max(np_norm(p), min_norm), max(np_norm(u), min_norm)
    if p_norm == 0 or u_norm == 0:
        return 1.0
    return trust_coefficient * p_norm / (u_norm + eps)


def lars_reference(
    learning_rate,
    weight_decay=0.0,
    decay_mask=None,
    trust_coefficient=0.001,
    eps=0.0,
    trust_mask=None,
    momentum=0.9,
    nesterov=False,
):
    """You et al. (2017) in optax's form: u = g + λθ, r = η_trust·‖θ‖/(‖u‖ + eps), m ← μm + η·r·u, θ ← θ − m."""
    decay_mask = decay_mask or {}
    trust_mask = trust_mask or {}

    def step(theta, grads, m):
        m = m or {k: np.zeros_like(v) for k, v in theta.items()}
        new_theta, new_m = {}, {}
        for k in theta:
            u = grads[k] + weight_decay * theta[k] if decay_mask.get(k, True) else grads[k]
            r = np_trust_ratio(u, theta[k], 0.0, trust_coefficient, eps) if trust_mask.get(k, True) else 1.0
            new_m[k] = momentum * m[k] + learning_rate * r * u
            direction = momentum * new_m[k] + learning_rate * r * u if nesterov else new_m[k]
            new_theta[k] = theta[k] - direction
        return new_theta, new_m

    return step


def lamb_reference(learning_rate, b1=0.9, b2=0.999, eps=1e-6, eps_root=0.0, weight_decay=0.0, mask=None):
    """You et al. (2020), Algorithm 2: Adam's direction r plus λθ, scaled by ‖θ‖/‖r + λθ‖ per layer."""
    mask = mask or {}

    def step(theta, grads, state):
        t, m, v = state or (
            0,
            {k: np.zeros_like(x) for k, x in theta.items()},
            {k: np.zeros_like(x) for k, x in theta.items()},
        )
        t += 1
        new_theta, new_m, new_v = {}, {}, {}
        for k in theta:
            g = grads[k]
            new_m[k] = b1 * m[k] + (1 - b1) * g
            new_v[k] = b2 * v[k] + (1 - b2) * g**2
            m_hat, v_hat = new_m[k] / (1 - b1**t), new_v[k] / (1 - b2**t)
            r = m_hat / (np.sqrt(v_hat + eps_root) + eps)
            if mask.get(k, True):
                r = r + weight_decay * theta[k]
            new_theta[k] = theta[k] - learning_rate * np_trust_ratio(r, theta[k]) * r
        return new_theta, (t, new_m, new_v)

    return step


# --- float64 step by step -------------------------------------------------------------------------

FLAT_MASK = {"a": True, "b": False, "c": True, "s": False, "z": True}


@pytest.mark.parametrize(
    "hyper",
    [{}, {"min_norm": 0.5, "trust_coefficient": 0.3, "eps": 0.2}, {"trust_coefficient": 0.1, "eps": 1e-3}],
    ids=["defaults", "min_norm", "coefficient-eps"],
)
def test_scale_by_trust_ratio_float64(hyper):
    lr = 0.05
    got = run_float64(gf.chain(scale_by_trust_ratio(**hyper), gf.sgd(lr)))
    want = run_reference(sgd_reference(lambda k, g, p: np_trust_ratio(g, p, **hyper) * g, lr))
    assert_same_float64(got, want)


def test_scale_by_trust_ratio_mask_float64():
    lr = 0.05
    got = run_float64(gf.chain(scale_by_trust_ratio(trust_coefficient=0.5, mask=FLAT_MASK), gf.sgd(lr)))
    want = run_reference(
        sgd_reference(lambda k, g, p: np_trust_ratio(g, p, trust_coefficient=0.5) * g if FLAT_MASK[k] else g, lr)
    )
    assert_same_float64(got, want)


LARS_CASES = {
    "defaults": (dict(learning_rate=3.0), dict(learning_rate=3.0)),
    "all-arguments": (
        dict(
            learning_rate=1.0,
            weight_decay=0.1,
            weight_decay_mask=FLAT_MASK,
            trust_coefficient=0.02,
            eps=0.1,
            trust_ratio_mask={**FLAT_MASK, "b": True, "c": False},
            momentum=0.7,
            nesterov=True,
        ),
        dict(
            learning_rate=1.0,
            weight_decay=0.1,
            decay_mask=FLAT_MASK,
            trust_coefficient=0.02,
            eps=0.1,
            trust_mask={**FLAT_MASK, "b": True, "c": False},
            momentum=0.7,
            nesterov=True,
        ),
    ),
    "no-momentum": (
        dict(learning_rate=2.0, weight_decay=0.05, trust_coefficient=0.01, momentum=0.0),
        dict(learning_rate=2.0, weight_decay=0.05, trust_coefficient=0.01, momentum=0.0),
    ),
}


@pytest.mark.parametrize("name", sorted(LARS_CASES))
def test_lars_float64(name):
    ours, reference = LARS_CASES[name]
    got = run_float64(lars(**ours))
    want = run_reference(lars_reference(**reference))
    assert_same_float64(got, want)


LAMB_CASES = {
    "defaults": (dict(learning_rate=0.05), dict(learning_rate=0.05)),
    "all-arguments": (
        dict(learning_rate=0.03, b1=0.8, b2=0.95, eps=1e-4, eps_root=1e-6, weight_decay=0.2, mask=FLAT_MASK),
        dict(learning_rate=0.03, b1=0.8, b2=0.95, eps=1e-4, eps_root=1e-6, weight_decay=0.2, mask=FLAT_MASK),
    ),
}


@pytest.mark.parametrize("name", sorted(LAMB_CASES))
def test_lamb_float64(name):
    ours, reference = LAMB_CASES[name]
    got = run_float64(lamb(**ours))
    want = run_reference(lamb_reference(**reference))
    assert_same_float64(got, want)


def test_lamb_moves_each_layer_by_learning_rate_times_its_norm():
    """Without weight decay every layer's step has norm η·‖θ‖ (where ‖θ‖ > 0)."""
    lr = 0.05
    got = run_float64(lamb(lr), steps=3)
    for before, after in itertools.pairwise(got):
        for k in before:
            if np_norm(before[k]) > 0:
                np.testing.assert_allclose(np_norm(after[k] - before[k]), lr * np_norm(before[k]), rtol=1e-12)


# --- optax, float32 -------------------------------------------------------------------------------

PREFIX_MASK = {"dense": False, "gain": True, "extra": True}


def _with_lr(gf_tx: Any, ox_tx: Any, lr: float = 0.02) -> tuple[Any, Any]:
    return (
        gf.chain(gf_tx, gf.scale_by_learning_rate(f32(lr))),
        optax.chain(ox_tx, optax.scale_by_learning_rate(f32(lr))),
    )


def _schedule(count):
    return f32(2.0) / (1.0 + count.astype(jnp.float32) / 10)


PARITY = {
    "scale_by_trust_ratio": lambda: _with_lr(scale_by_trust_ratio(), optax.scale_by_trust_ratio()),
    "scale_by_trust_ratio-custom": lambda: _with_lr(
        scale_by_trust_ratio(f32(0.5), f32(0.3), f32(0.1)), optax.scale_by_trust_ratio(f32(0.5), f32(0.3), f32(0.1))
    ),
    "scale_by_trust_ratio-mask": lambda: _with_lr(
        scale_by_trust_ratio(mask=MASK), optax.masked(optax.scale_by_trust_ratio(), MASK)
    ),
    "lars": lambda: (lars(f32(1.0)), optax.lars(f32(1.0))),
    "lars-custom": lambda: (
        lars(f32(0.5), f32(0.1), MASK, f32(0.02), f32(0.05), matrices_only, f32(0.8), True),
        optax.lars(f32(0.5), f32(0.1), MASK, f32(0.02), f32(0.05), matrices_only, f32(0.8), True),
    ),
    "lars-prefix-masks": lambda: (
        lars(f32(2.0), weight_decay=f32(0.05), weight_decay_mask=PREFIX_MASK, trust_ratio_mask=False),
        optax.lars(f32(2.0), weight_decay=f32(0.05), weight_decay_mask=PREFIX_MASK, trust_ratio_mask=False),
    ),
    "lars-schedule": lambda: (lars(_schedule), optax.lars(_schedule)),
    "lamb": lambda: (
        lamb(f32(0.01)),
        optax.lamb(f32(0.01), f32(0.9), f32(0.999), f32(1e-6)),
    ),
    "lamb-custom": lambda: (
        lamb(f32(0.02), f32(0.85), f32(0.99), f32(1e-5), f32(1e-8), f32(0.1), MASK),
        optax.lamb(f32(0.02), f32(0.85), f32(0.99), f32(1e-5), f32(1e-8), f32(0.1), MASK),
    ),
    "lamb-mask-callable": lambda: (
        lamb(f32(0.02), weight_decay=f32(0.3), mask=matrices_only),
        optax.lamb(f32(0.02), f32(0.9), f32(0.999), f32(1e-6), weight_decay=f32(0.3), mask=matrices_only),
    ),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_matches_optax(name):
    gf_tx, ox_tx = PARITY[name]()
    out = run_pair(gf_tx, ox_tx)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: lars(f32(1.0), trust_coefficient=f32(0.00101)), lambda: optax.lars(f32(1.0))),
        (
            lambda: lamb(f32(0.01), weight_decay=f32(1e-3)),
            lambda: optax.lamb(f32(0.01), f32(0.9), f32(0.999), f32(1e-6)),
        ),
    ],
    ids=["lars-coefficient", "lamb-weight-decay"],
)
def test_parity_detects_small_differences(ours, theirs):
    out = run_pair(ours(), theirs())
    with pytest.raises(AssertionError, match="gradflow vs optax"):
        assert_same_trajectory(out.gradflow, out.optax)


FUNCTIONS = {"scale_by_trust_ratio": scale_by_trust_ratio, "lars": lars, "lamb": lamb}
GRADFLOW_ONLY = {"scale_by_trust_ratio": {"mask"}}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_signature_matches_optax(name):
    """Same argument names, order, kinds and defaults as optax (gradflow's additions are keyword-only)."""
    assert_signature_matches(FUNCTIONS[name], getattr(optax, name), GRADFLOW_ONLY.get(name, set()))


# --- structure, masks, edge cases ------------------------------------------------------------------


def test_optimizers_are_chains_of_primitives():
    from gradflow.transforms.elementwise import ScaleByLearningRate
    from gradflow.transforms.moments import EWMA
    from gradflow.transforms.regularization import AddDecayedWeights
    from gradflow.transforms.trust_ratio import ScaleByTrustRatio

    def primitive(t):  # a composite presents its inner primitives' state in optax's layout
        return primitive(t.inner) if isinstance(t, gf.Composite) else t

    kinds = [type(primitive(t)) for t in lars(0.1).transforms]
    assert kinds == [AddDecayedWeights, ScaleByTrustRatio, ScaleByLearningRate, EWMA]
    kinds = [type(primitive(t)) for t in lamb(0.1).transforms]
    assert kinds[1:] == [AddDecayedWeights, ScaleByTrustRatio, ScaleByLearningRate]
    assert isinstance(primitive(lamb(0.1).transforms[0]), gf.Combine)  # scale_by_adam: a ratio of two branches


def test_equal_masks_give_equal_static_structure():
    """A jitted step taking the optimizer as an argument does not recompile for a new learning rate,
    whatever the masks (they are static data compared by value)."""
    for make in (
        lambda lr: lars(lr),
        lambda lr: lars(lr, weight_decay_mask={"a": True, "b": False}, trust_ratio_mask=False),
        lambda lr: lamb(lr, mask={"a": True, "b": False}),
        lambda lr: lars(lr, weight_decay_mask=matrices_only),
    ):
        assert jax.tree.structure(make(0.1)) == jax.tree.structure(make(0.2))
    assert jax.tree.structure(lars(0.1)) != jax.tree.structure(lars(0.1, trust_ratio_mask={"a": False}))
    assert lars(0.1, weight_decay_mask=True).transforms[0].inner.mask is None  # True: every leaf, no mask at all


def test_mask_of_array_booleans_under_jit():
    """A callable mask may return boolean arrays (here computed from the params inside jit)."""
    params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0, 0.0])}
    grads = {"w": jnp.array([0.0, 1.0]), "b": jnp.array([0.0, 2.0])}
    tx = scale_by_trust_ratio(mask=lambda p: jax.tree.map(lambda x: jnp.sum(x) > 2, p))
    out, _ = jax.jit(lambda g, p: tx.update(g, None, p))(grads, params)
    np.testing.assert_allclose(out["w"], [0.0, 5.0], rtol=1e-6)
    np.testing.assert_array_equal(out["b"], grads["b"])


def test_zero_norms_give_ratio_one_and_finite_derivatives():
    """A zero parameter or a zero update leaves the update unchanged (optax's rule) and, unlike optax,
    differentiating through it gives numbers, not NaN."""
    params = {"zero_param": jnp.zeros(2), "zero_update": jnp.array([1.0, 2.0])}
    grads = {"zero_param": jnp.array([3.0, -1.0]), "zero_update": jnp.zeros(2)}
    for min_norm, eps in ((0.0, 0.0), (0.0, 1e-3)):
        out, _ = scale_by_trust_ratio(min_norm, eps=eps).update(grads, None, params)
        for k in grads:
            np.testing.assert_array_equal(out[k], grads[k])

    def step_sum(scale):
        p = jax.tree.map(lambda x: x * scale, params)
        tx = lars(1.0, weight_decay=0.0)
        out, _ = tx.update(grads, tx.init(p), p)
        return sum(jnp.sum(x) for x in jax.tree.leaves(out))

    assert np.isfinite(jax.grad(step_sum)(1.0))


def test_min_norm_bounds_both_norms():
    params, grads = {"w": jnp.array([0.0, 0.1])}, {"w": jnp.array([0.0, 0.01])}
    out, _ = scale_by_trust_ratio(min_norm=1.0).update(grads, None, params)
    np.testing.assert_allclose(out["w"], grads["w"], rtol=1e-6)  # both norms clamped to 1: ratio 1
    out, _ = scale_by_trust_ratio(min_norm=0.05).update(grads, None, params)
    np.testing.assert_allclose(out["w"], grads["w"] * 0.1 / 0.05, rtol=1e-6)


def test_bfloat16_updates_keep_their_dtype():
    params = {"w": jnp.array([3.0, 4.0], jnp.bfloat16)}
    grads = {"w": jnp.array([0.0, 0.5], jnp.bfloat16)}
    out, _ = scale_by_trust_ratio().update(grads, None, params)
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out["w"], np.float32), [0.0, 5.0])


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: scale_by_trust_ratio(-1.0), ValueError, r"scale_by_trust_ratio: min_norm must be in \[0.0, inf\)"),
        (
            lambda: scale_by_trust_ratio(trust_coefficient=-0.1),
            ValueError,
            r"trust_coefficient must be in \[0.0, inf\)",
        ),
        (lambda: scale_by_trust_ratio(eps=math.nan), ValueError, r"scale_by_trust_ratio: eps must be in"),
        (
            lambda: scale_by_trust_ratio(mask={"w": 1}),
            TypeError,
            r"scale_by_trust_ratio: mask leaves must be Python booleans",
        ),
        (lambda: lars(-0.1), ValueError, r"lars: learning_rate must be in \[0.0, inf\)"),
        (lambda: lars(None), ValueError, r"lars: learning_rate is required"),
        (lambda: lars(0.1, weight_decay=-1.0), ValueError, r"lars: weight_decay must be in \[0.0, inf\)"),
        (lambda: lars(0.1, trust_coefficient=-1.0), ValueError, r"lars: trust_coefficient must be in"),
        (lambda: lars(0.1, eps=-1.0), ValueError, r"lars: eps must be in"),
        (lambda: lars(0.1, momentum=1.0), ValueError, r"lars: momentum must be in \[0.0, 1.0\), got 1.0"),
        (lambda: lars(0.1, weight_decay_mask={"w": "yes"}), TypeError, r"lars: weight_decay_mask leaves must be"),
        (lambda: lars(0.1, trust_ratio_mask={"w": 0.5}), TypeError, r"lars: trust_ratio_mask leaves must be"),
        (lambda: lamb(math.inf), ValueError, r"lamb: learning_rate must be in \[0.0, inf\)"),
        (lambda: lamb(0.1, b1=1.0), ValueError, r"lamb: b1 must be in \[0.0, 1.0\)"),
        (lambda: lamb(0.1, b2=-0.1), ValueError, r"lamb: b2 must be in \[0.0, 1.0\)"),
        (lambda: lamb(0.1, eps=-1.0), ValueError, r"lamb: eps must be in"),
        (lambda: lamb(0.1, eps_root=-1.0), ValueError, r"lamb: eps_root must be in"),
        (lambda: lamb(0.1, weight_decay=-1.0), ValueError, r"lamb: weight_decay must be in"),
        (lambda: lamb(0.1, mask={"w": None, "b": 2}), TypeError, r"lamb: mask leaves must be Python booleans"),
    ],
)
def test_bad_hyperparameters(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_trust_ratio_needs_params():
    with pytest.raises(ValueError, match=r"scale_by_trust_ratio needs the parameters"):
        scale_by_trust_ratio().update({"w": jnp.ones(2)}, None)
    tx = lars(0.1)
    with pytest.raises(ValueError, match=r"needs the parameters"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))


def test_mask_that_is_not_a_prefix_names_the_paths():
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    tx = scale_by_trust_ratio(mask={"w": True, "bias": False})
    with pytest.raises(gf.TreeMismatchError, match=r"mask must be a prefix of the params tree(.|\n)*mask\['bias'\]"):
        tx.update(params, None, params)
    tx = lars(0.1, weight_decay_mask={"w": True})
    with pytest.raises(gf.TreeMismatchError, match=r"weight_decay_mask must be a prefix"):
        tx.update(params, tx.init(params), params)


def test_mismatched_updates_and_params():
    with pytest.raises(
        gf.TreeMismatchError, match=r"updates\['w'\] has shape \(2,\) but params\['w'\] has shape \(3,\)"
    ):
        scale_by_trust_ratio().update({"w": jnp.ones(2)}, None, {"w": jnp.ones(3)})
    with pytest.raises(gf.TreeMismatchError, match=r"updates\['w'\] has shape"):
        scale_by_trust_ratio(mask={"w": True}).update({"w": jnp.ones(2)}, None, {"w": jnp.ones(3)})


def test_reference_is_not_vacuous():
    """The flat θ₀ has leaves with zero and non-zero norms and every mask splits them."""
    assert any(np_norm(v) == 0 for v in THETA0.values()) and any(np_norm(v) > 0 for v in THETA0.values())
    assert set(FLAT_MASK.values()) == {True, False}
