"""stale_gradients: delayed gradient descent (seed 003's asynchronous SGD) against NumPy and its stability bound."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.experiments import run

CURVATURES = np.array([1.0, 0.2])


def quadratic(x):
    return 0.5 * jnp.sum(jnp.asarray(CURVATURES, x.dtype) * x**2)


def numpy_delayed_descent(x0, lr, delay, steps):
    """θ_{t+1} = θ_t − η·∇L(θ_{t−k}), with no update before the first gradient arrives."""
    points = [np.array(x0, np.float64)]
    for t in range(steps):
        stale = CURVATURES * points[t - delay] if t >= delay else np.zeros(2)
        points.append(points[t] - lr * stale)
    return np.array(points)


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_trajectory_equals_numpy_delayed_descent_float64(delay):
    with jax.enable_x64(True):
        history = run(quadratic, jnp.array([2.0, -1.0]), gf.chain(gf.stale_gradients(delay), gf.sgd(0.3)), steps=30,
                      record=("params",))  # fmt: skip
    np.testing.assert_allclose(history.trajectory, numpy_delayed_descent([2.0, -1.0], 0.3, delay, 30), rtol=1e-12)


def spectral_radius(a, delay):
    """Largest |root| of z^(k+1) − z^k + a, the characteristic polynomial of θ_{t+1} = θ_t − a·θ_{t−k}."""
    coefficients = np.zeros(delay + 2)
    coefficients[0], coefficients[1], coefficients[-1] = 1.0, -1.0, a
    return np.max(np.abs(np.roots(coefficients)))


@pytest.mark.parametrize("delay", [1, 2, 3])
def test_a_delay_lowers_the_stable_learning_rate_to_the_bound(delay):
    bound = 2 * np.sin(np.pi / (2 * (2 * delay + 1)))
    assert spectral_radius(0.98 * bound, delay) < 1 < spectral_radius(1.02 * bound, delay)  # the formula is the edge
    tx = jax.vmap(lambda lr: gf.chain(gf.stale_gradients(delay), gf.sgd(lr)))(jnp.array([0.9, 1.1]) * bound)
    with jax.enable_x64(True):
        final = np.abs(np.asarray(gf.experiments.sweep(quadratic, jnp.array([1.0, 0.0]), tx, steps=600).final_params))
    assert final[0, 0] < 1e-3 and final[1, 0] > 1e3  # curvature 1: η·λ at 0.9 and 1.1 times the bound
    assert np.all(np.isfinite(final[0]))
    assert bound < 2.0  # without delay the bound is 2: a delay forces a smaller learning rate


def test_first_updates_are_zero_and_delay_zero_is_the_identity():
    tx, state = gf.stale_gradients(2), gf.stale_gradients(2).init({"w": jnp.zeros(3)})
    outs = []
    for g in range(1, 6):
        out, state = tx.update({"w": jnp.full(3, float(g))}, state)
        outs.append(float(out["w"][0]))
    assert outs == [0.0, 0.0, 1.0, 2.0, 3.0]
    same, _ = gf.stale_gradients(0).update({"w": jnp.ones(3)}, gf.stale_gradients(0).init({"w": jnp.zeros(3)}))
    np.testing.assert_array_equal(same["w"], np.ones(3))


def test_bad_delay_and_mismatched_trees_are_named():
    for bad in (-1, 1.5, True):
        with pytest.raises((ValueError, TypeError), match="stale_gradients: delay must be an integer >= 0"):
            gf.stale_gradients(bad)
    state = gf.stale_gradients(1).init({"w": jnp.zeros(2)})
    with pytest.raises(gf.TreeMismatchError, match="stale_gradients: updates"):
        gf.stale_gradients(1).update({"v": jnp.zeros(2)}, state)
