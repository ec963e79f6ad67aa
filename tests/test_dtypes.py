"""dtypes: bf16 and f32 params, mu_dtype and nu_dtype buffers, updates in the gradient's dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf


def buffers(state):
    """Every array leaf of the state that is shaped like the (3,)-shaped parameter."""
    return [x for x in jax.tree.leaves(state) if jnp.shape(x) == (3,)]


@pytest.mark.parametrize("param_dtype", [jnp.float32, jnp.bfloat16])
def test_adam_moment_dtypes(param_dtype):
    params = jnp.ones(3, param_dtype)
    tx = gf.adam(0.1, mu_dtype=jnp.bfloat16, nu_dtype=jnp.float32)
    state = tx.init(params)
    mu, nu = state[0].mu, state[0].nu
    assert mu.dtype == jnp.bfloat16 and nu.dtype == jnp.float32
    updates, new_state = tx.update(jnp.full(3, 0.5, param_dtype), state, params)
    assert updates.dtype == param_dtype
    assert [x.dtype for x in buffers(new_state)] == [x.dtype for x in buffers(state)]


def test_default_buffers_follow_param_dtype():
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(3, jnp.float32)}
    state = gf.adam(0.1).init(params)
    dtypes = {x.dtype for x in jax.tree.leaves(state[0].mu)}
    assert dtypes == {jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32)}


def test_bf16_adam_with_f32_moments_tracks_optax():
    """bf16 parameters with float32 first moments: gradflow and optax agree to bf16 resolution."""
    loss = lambda p: jnp.sum((p.astype(jnp.float32) - jnp.arange(3.0)) ** 2)
    p_gf = p_ox = jnp.zeros(3, jnp.bfloat16)
    gf_tx, ox_tx = gf.adam(0.05, mu_dtype=jnp.float32), optax.adam(0.05, mu_dtype=jnp.float32)
    s_gf, s_ox = gf_tx.init(p_gf), ox_tx.init(p_ox)
    for _ in range(20):
        u, s_gf = gf_tx.update(jax.grad(loss)(p_gf), s_gf, p_gf)
        p_gf = gf.apply_updates(p_gf, u)
        v, s_ox = ox_tx.update(jax.grad(loss)(p_ox), s_ox, p_ox)
        p_ox = optax.apply_updates(p_ox, v)
    assert p_gf.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(p_gf, np.float32), np.asarray(p_ox, np.float32), atol=2e-2)


def test_state_dtype_does_not_drift_with_float32_array_hyperparameters():
    """A non-weak float32 hyperparameter must not promote bf16 buffers (lax.scan needs a fixed carry)."""
    params = jnp.ones(3, jnp.bfloat16)
    tx = gf.sgd(jnp.array(0.1, jnp.float32), momentum=jnp.array(0.9, jnp.float32))

    def body(state, _):
        updates, state = tx.update(jnp.ones(3, jnp.bfloat16), state, params)
        return state, updates

    state, updates = jax.lax.scan(body, tx.init(params), length=3)
    assert updates.dtype == jnp.bfloat16 and state[0].trace.dtype == jnp.bfloat16


def test_a_python_learning_rate_is_rounded_once_to_a_bfloat16_gradient():
    """η = 1 + 2⁻⁸ + 2⁻³⁰ lies just above a bfloat16 tie; rounded through float32 it falls on the tie and goes to
    1. The step −η·g for g = 1 is the correctly rounded −η, eager and jitted alike (optax's jitted step too)."""
    learning_rate = 1 + 2**-8 + 2**-30
    expected = np.full(3, -learning_rate).astype(jnp.bfloat16)  # ml_dtypes rounds the double once
    assert float(expected[0]) != -1.0
    g, tx, reference = jnp.ones(3, jnp.bfloat16), gf.sgd(learning_rate), optax.sgd(learning_rate)
    eager = tx.update(g, tx.init(g))[0]
    jitted, optax_jitted = (jax.jit(lambda g, t=t: t.update(g, t.init(g))[0])(g) for t in (tx, reference))
    for updates in (eager, jitted, optax_jitted):
        assert updates.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(updates), expected)
