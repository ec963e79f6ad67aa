"""The normalised gradient of seed 004's ODE view, u = scale_factor · g / (‖g‖ + eps), ‖·‖ the global norm.

Checked against NumPy in float64, against optax.normalize_by_update_norm in float32, and at g = 0
(a zero update, not NaN, even with eps = 0). The laws run over the registry entry ``normalized_sgd``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow.transforms.normalize import normalize_by_update_norm, squared_norm


def numpy_normalize(g: np.ndarray, scale_factor: float, eps: float) -> np.ndarray:
    """The reference: scale_factor · g / (‖g‖ + eps), zero where ‖g‖ + eps = 0."""
    denominator = math.sqrt(float(np.sum(g * g))) + eps
    return np.zeros_like(g) if denominator == 0 else scale_factor * g / denominator


def _tree(rng, scale=1.0, dtype=jnp.float32):
    return {
        "w": jnp.asarray(scale * rng.normal(size=(3, 2)), dtype),
        "b": jnp.asarray(scale * rng.normal(size=(2,)), dtype),
        "s": (jnp.asarray(scale * rng.normal(size=()), dtype),),
    }


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


@jax.jit
def _update(tx, updates):
    return tx.update(updates, tx.init(updates))[0]


@pytest.mark.parametrize(("scale_factor", "eps"), [(1.0, 0.0), (1.0, 1e-6), (-1.0, 0.0), (2.5, 0.5)])
@pytest.mark.parametrize("magnitude", [1e-3, 1.0, 50.0])
def test_matches_numpy_reference_float64(scale_factor, eps, magnitude):
    with jax.enable_x64(True):
        g = _tree(np.random.default_rng(0), magnitude, jnp.float64)
        out = _update(normalize_by_update_norm(scale_factor, eps), g)
        np.testing.assert_allclose(_flat(out), numpy_normalize(_flat(g), scale_factor, eps), rtol=1e-12, atol=0)
        if eps == 0:  # the unit direction of the ODE view
            np.testing.assert_allclose(np.linalg.norm(_flat(out)), abs(scale_factor), rtol=1e-14)
        assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(out))


def test_normalized_gradient_descent_trajectory_float64():
    """θ ← θ − h·g/‖g‖ on an anisotropic quadratic over a pytree: every step has length h exactly."""
    d = np.array([0.5, 1.0, 2.0, 4.0, 0.2, 3.0, 1.5, 0.7, 2.2])
    h, steps = 0.05, 40
    with jax.enable_x64(True):
        params = _tree(np.random.default_rng(1), 1.0, jnp.float64)
        leaves, treedef = jax.tree.flatten(params)
        sizes = [np.size(x) for x in leaves]
        splits = np.split(d, np.cumsum(sizes)[:-1])
        weights = treedef.unflatten([jnp.asarray(w.reshape(np.shape(x))) for w, x in zip(splits, leaves)])

        def loss(p):
            return 0.5 * sum(jnp.sum(w * x**2) for w, x in zip(jax.tree.leaves(weights), jax.tree.leaves(p)))

        tx = gf.chain(normalize_by_update_norm(eps=0.0), gf.scale_by_learning_rate(h))

        @jax.jit
        def step(p, state):
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            return gf.apply_updates(p, updates), state

        theta = _flat(params)
        state = tx.init(params)
        for _ in range(steps):
            g = d * theta
            new_theta = theta - h * g / np.linalg.norm(g)
            params, state = step(params, state)
            np.testing.assert_allclose(_flat(params), new_theta, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(np.linalg.norm(new_theta - theta), h, rtol=1e-12)
            theta = new_theta


@pytest.mark.parametrize(("scale_factor", "eps"), [(1.0, 1e-6), (-1.0, 1e-6), (0.3, 0.1), (1.0, 0.0)])
def test_matches_optax_normalize_by_update_norm(scale_factor, eps):
    """Same name, arguments, defaults and numbers as optax (float32, rtol 1e-5, atol 1e-6)."""
    rng = np.random.default_rng(2)
    theirs = jax.jit(optax.normalize_by_update_norm(scale_factor, eps).update)
    for magnitude in (1e-2, 1.0, 30.0):
        g = _tree(rng, magnitude)
        ours = _update(normalize_by_update_norm(scale_factor, eps), g)
        expected, _ = theirs(g, optax.EmptyState())
        np.testing.assert_allclose(_flat(ours), _flat(expected), rtol=1e-5, atol=1e-6)


def test_signature_and_defaults_match_optax():
    import inspect

    ours = inspect.signature(normalize_by_update_norm).parameters
    theirs = inspect.signature(optax.normalize_by_update_norm).parameters
    assert [(k, p.default, p.kind) for k, p in ours.items()] == [(k, p.default, p.kind) for k, p in theirs.items()]


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_zero_gradient_gives_zero_update_and_finite_derivatives(eps):
    zero = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    tx = normalize_by_update_norm(eps=eps)
    out = _update(tx, zero)
    for x in jax.tree.leaves(out):
        np.testing.assert_array_equal(x, 0.0)
    jacobian = jax.jacobian(lambda g: _flat_jnp(tx.update(g, tx.init(g))[0]))(zero)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jacobian))
    # The derivative with respect to the hyperparameters is finite too (jax.grad through the step).
    d_scale = jax.grad(lambda s: jnp.sum(normalize_by_update_norm(s, eps).update(zero, None)[0]["a"]))(1.0)
    assert np.isfinite(d_scale)


def _flat_jnp(tree):
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])


def test_optax_gives_nan_where_gradflow_gives_zero():
    """The documented difference: with eps = 0 optax divides 0 by 0."""
    zero = jnp.zeros(3)
    theirs, _ = optax.normalize_by_update_norm(eps=0.0).update(zero, optax.EmptyState())
    assert np.all(np.isnan(theirs))
    np.testing.assert_array_equal(_update(normalize_by_update_norm(eps=0.0), zero), 0.0)


def test_bfloat16_keeps_dtype_and_accumulates_the_norm_in_float32():
    """bf16 in, bf16 out. Squaring and summing in bf16 would lose ~3 digits; the result is the float32
    computation rounded once, i.e. the reference within one bf16 rounding (relative 2^-8)."""
    g16 = {"a": jnp.asarray(np.linspace(0.01, 3.0, 300), jnp.bfloat16), "b": jnp.full((7,), 0.5, jnp.bfloat16)}
    out = _update(normalize_by_update_norm(eps=0.0), g16)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(out))
    reference = numpy_normalize(_flat(g16), 1.0, 0.0)
    np.testing.assert_allclose(_flat(out), reference, rtol=2.0**-8, atol=0)
    assert squared_norm(g16).dtype == jnp.float32


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: normalize_by_update_norm(eps=-1e-6), r"normalize_by_update_norm: eps must be in \[0.0, inf\)"),
        (lambda: normalize_by_update_norm(float("nan")), r"normalize_by_update_norm: scale_factor must be in"),
        (lambda: normalize_by_update_norm(float("inf")), r"normalize_by_update_norm: scale_factor must be in"),
    ],
)
def test_bad_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()
