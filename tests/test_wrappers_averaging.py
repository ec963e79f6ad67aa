"""average_params: Polyak–Ruppert and (debiased) EMA of the parameters, against NumPy and optax's rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow import wrappers

A = np.array([[2.0, 0.5], [0.5, 1.0]])
THETA0 = np.array([1.5, -0.7])
STEPS, LR, MOMENTUM, DECAY = 7, 0.1, 0.9, 0.8


def grad_np(theta):
    return A @ theta + 0.1 * theta**3 - 1.0


def grad_jnp(theta):
    return jnp.asarray(A, theta.dtype) @ theta + 0.1 * theta**3 - 1.0


def trajectory_np():
    """θ_0 … θ_STEPS of heavy-ball SGD in float64."""
    theta, m, out = THETA0.copy(), np.zeros(2), [THETA0.copy()]
    for _ in range(STEPS):
        m = MOMENTUM * m + grad_np(theta)
        theta = theta - LR * m
        out.append(theta.copy())
    return out


def averages_np(kind):
    thetas = trajectory_np()
    if kind == "uniform":
        return [np.mean(thetas[1 : t + 1], axis=0) for t in range(1, STEPS + 1)]
    out, ema, zero_started = [], thetas[0].copy(), np.zeros(2)
    for t in range(1, STEPS + 1):
        ema = DECAY * ema + (1 - DECAY) * thetas[t]
        zero_started = DECAY * zero_started + (1 - DECAY) * thetas[t]
        out.append(ema.copy() if kind == "ema" else zero_started / (1 - DECAY**t))
    return out


def make(kind, decay=DECAY):
    if kind == "uniform":
        return wrappers.average_params()
    return wrappers.average_params(decay, debias=kind == "debiased")


def run(tx, theta0, averaged=True):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad_jnp(params), state, params)
        return gf.apply_updates(params, updates), state, updates

    params, state, out = theta0, tx.init(theta0), []
    for _ in range(STEPS):
        params, state, updates = step(params, state)
        out.append((params, updates, wrappers.averaged_params(state) if averaged else None))
    return out


KINDS = ["uniform", "ema", "debiased"]


@pytest.mark.parametrize("kind", KINDS)
def test_average_matches_numpy_reference(kind):
    with jax.enable_x64(True):
        out = run(gf.chain(gf.sgd(LR, momentum=MOMENTUM), make(kind)), jnp.asarray(THETA0))
    thetas = trajectory_np()
    for t, ((params, _, average), expected) in enumerate(zip(out, averages_np(kind))):
        assert average.dtype == jnp.float64
        np.testing.assert_allclose(params, thetas[t + 1], rtol=1e-10)
        np.testing.assert_allclose(average, expected, rtol=1e-10, err_msg=f"{kind} average after step {t + 1}")
    assert np.abs(np.asarray(out[-1][2]) - np.asarray(out[-1][0])).min() > 1e-3  # the average lags: not vacuous


@pytest.mark.parametrize("kind", KINDS)
def test_average_matches_optax_rules(kind):
    """optax.ema (of the values fed to it) is the debiased EMA; optax.incremental_update is avg ← avg + w·(θ − avg)."""
    decay = np.float32(DECAY)
    out = run(gf.chain(gf.sgd(np.float32(LR), momentum=np.float32(MOMENTUM)), make(kind, decay)), jnp.float32(THETA0))
    ema = optax.ema(decay, debias=True)
    ema_state, average = ema.init(jnp.float32(THETA0)), jnp.float32(THETA0)
    for t, (params, _, ours) in enumerate(out, start=1):
        if kind == "debiased":
            average, ema_state = ema.update(params, ema_state)
        else:
            weight = np.float32(1.0 / t) if kind == "uniform" else 1 - decay
            average = optax.incremental_update(params, average, weight)
        np.testing.assert_allclose(ours, average, rtol=1e-5, atol=1e-6, err_msg=f"{kind} after step {t}")


def test_updates_pass_through_unchanged():
    plain = run(gf.sgd(LR, momentum=MOMENTUM), jnp.float32(THETA0), averaged=False)
    averaged = run(
        gf.chain(gf.sgd(LR, momentum=MOMENTUM), wrappers.average_params(0.9, debias=True)), jnp.float32(THETA0)
    )
    for (p1, u1, _), (p2, u2, _) in zip(plain, averaged):
        np.testing.assert_array_equal(u1, u2)
        np.testing.assert_array_equal(p1, p2)


def test_average_dtype():
    params = {"w": jnp.ones(2, jnp.bfloat16)}
    assert wrappers.average_params(0.9).init(params).average["w"].dtype == jnp.float32
    tx = wrappers.average_params(0.9, accumulator_dtype=jnp.bfloat16)
    assert tx.init(params).average["w"].dtype == jnp.bfloat16


def test_average_errors():
    with pytest.raises(ValueError, match=r"average_params: decay must be in \[0.0, 1.0\), got 1.0"):
        wrappers.average_params(1.0)
    tx = wrappers.average_params(0.9)
    params = jnp.zeros(2)
    with pytest.raises(ValueError, match=r"average_params needs the parameters.*last in the chain"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match=r"averaged_params: found no AverageParamsState in the state"):
        wrappers.averaged_params(gf.sgd(0.1).init(params))
    with pytest.raises(ValueError, match=r"averaged_params: found 2 AverageParamsState"):
        wrappers.averaged_params(gf.chain(tx, wrappers.average_params()).init(params))
