"""Each primitive's own update rule, step by step against NumPy in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf

STEPS = 6


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


def gradients(seed=0, shape=(4,)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(STEPS)]


def outputs(tx, gs, params=None):
    state = tx.init(jnp.asarray(gs[0]) if params is None else params)
    out = []
    for g in gs:
        u, state = tx.update(jnp.asarray(g), state, params)
        out.append(np.asarray(u))
    return out, state


def assert_steps(actual, expected):
    for t, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14, err_msg=f"step {t + 1}")


@pytest.mark.parametrize("kind", ["average", "momentum"])
@pytest.mark.parametrize("nesterov", [False, True])
def test_ewma(kind, nesterov):
    gs, decay, m = gradients(), 0.8, 0.25
    expected = []
    m = np.full(4, 0.25)
    for g in gs:
        w = 1 - decay if kind == "average" else 1.0
        m = decay * m + w * g
        expected.append(decay * m + w * g if nesterov else m)
    actual, _ = outputs(gf.ewma(decay, kind=kind, nesterov=nesterov, initial=0.25), gs)
    assert_steps(actual, expected)


@pytest.mark.parametrize("offset", [0, 1])
def test_bias_correction(offset):
    gs, decay = gradients(), 0.7
    expected = [g / (1 - decay ** (t + 1 + offset)) for t, g in enumerate(gs)]
    actual, state = outputs(gf.debias(decay, step_offset=offset), gs)
    assert_steps(actual, expected)
    assert state.count.dtype == jnp.int32 and int(state.count) == STEPS


def test_accumulate_and_running_max():
    gs = gradients()
    assert_steps(outputs(gf.accumulate(0.5), gs)[0], [0.5 + np.sum(gs[: t + 1], axis=0) for t in range(STEPS)])
    expected, v = [], np.zeros(4)
    for g in gs:
        v = np.maximum(0.6 * v, g)
        expected.append(v)
    assert_steps(outputs(gf.running_max(0.6), gs)[0], expected)


def test_stateless_elementwise():
    gs = gradients()
    cases = {
        gf.square(): lambda g: g**2,
        gf.absolute(): np.abs,
        gf.sign(): np.sign,
        gf.root(eps=0.1, eps_root=0.2): lambda g: np.sqrt(np.abs(g) + 0.2) + 0.1,
        gf.shift(0.3): lambda g: g + 0.3,
        gf.scale(-2.5): lambda g: -2.5 * g,
        gf.scale_by_learning_rate(0.1): lambda g: -0.1 * g,
        gf.scale_by_learning_rate(0.1, flip_sign=False): lambda g: 0.1 * g,
        gf.clip(0.5): lambda g: np.clip(g, -0.5, 0.5),
    }
    for tx, rule in cases.items():
        inputs = [np.abs(g) for g in gs] if isinstance(tx, gf.transforms.elementwise.Root) else gs
        assert_steps(outputs(tx, inputs)[0], [rule(g) for g in inputs])


def test_combinators():
    gs = gradients()
    a, b = gf.scale(2.0), gf.shift(3.0)
    rules = {
        gf.ratio(a, b): lambda g: 2 * g / (g + 3),
        gf.product(a, b): lambda g: 2 * g * (g + 3),
        gf.total(a, b): lambda g: 2 * g + g + 3,
        gf.difference(a, b): lambda g: 2 * g - (g + 3),
        gf.interpolate(a, b, 0.3): lambda g: 0.3 * 2 * g + 0.7 * (g + 3),
    }
    for tx, rule in rules.items():
        assert_steps(outputs(tx, gs)[0], [rule(g) for g in gs])


def test_swapping_a_branch_turns_adam_into_amsgrad():
    """The branch algebra: Adam's denominator with a running max inserted is AMSGrad."""
    gs = gradients(3)
    num = gf.chain(gf.ewma(0.9), gf.debias(0.9))
    den = [gf.square(), gf.ewma(0.999), gf.debias(0.999)]
    built = gf.ratio(num, gf.chain(*den, gf.running_max(), gf.root(eps=1e-8)))
    assert_steps(outputs(built, gs)[0], outputs(gf.scale_by_amsgrad(), gs)[0])
    assert_steps(outputs(gf.ratio(num, gf.chain(*den, gf.root(eps=1e-8))), gs)[0], outputs(gf.scale_by_adam(), gs)[0])


def test_interpolated_momentum():
    gs, b1, b2 = gradients(), 0.9, 0.99
    expected, m = [], np.zeros(4)
    for g in gs:
        expected.append(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
    assert_steps(outputs(gf.interpolated_momentum(b1, b2), gs)[0], expected)


def test_scale_by_update_rms():
    gs, rho, eps = gradients(), 0.9, 1e-6
    expected, acc = [], np.zeros(4)
    for g in gs:
        out = np.sqrt(acc + eps) * g
        acc = rho * acc + (1 - rho) * out**2
        expected.append(out)
    assert_steps(outputs(gf.scale_by_update_rms(rho, eps), gs)[0], expected)


def test_add_decayed_weights_with_mask():
    params = {"w": jnp.array([1.0, 2.0]), "b": jnp.array([3.0])}
    g = {"w": jnp.array([0.1, 0.1]), "b": jnp.array([0.1])}
    for mask in ({"w": True, "b": False}, lambda p: {"w": True, "b": False}):
        tx = gf.add_decayed_weights(0.5, mask)
        out, _ = tx.update(g, tx.init(params), params)
        np.testing.assert_allclose(out["w"], [0.6, 1.1])
        np.testing.assert_allclose(out["b"], [0.1])
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(g, tx.init(params))


@pytest.mark.parametrize("norm", [0.5, 100.0])
def test_clip_by_global_norm(norm):
    rng = np.random.default_rng(2)
    g = {"a": rng.normal(size=3), "b": rng.normal(size=(2, 2))}
    total = np.sqrt(sum(np.sum(x**2) for x in g.values()))
    factor = min(1.0, norm / total)
    tx = gf.clip_by_global_norm(norm)
    out, _ = tx.update(jax.tree.map(jnp.asarray, g), tx.init(None))
    for key in g:
        np.testing.assert_allclose(out[key], g[key] * factor, rtol=1e-12)


def test_clip_by_global_norm_rescues_an_overflowing_norm():
    """Finite float32 entries whose squares overflow: the norm is recomputed without overflow."""
    g = {"a": np.array([3e30], np.float32), "b": np.array([4e30, 0.0], np.float32)}
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(np.square(np.concatenate([g["a"], g["b"]]))))  # the naive norm overflows
    tx = gf.clip_by_global_norm(1.0)
    out, state = jax.jit(tx.update)(jax.tree.map(jnp.asarray, g), tx.init(None))
    np.testing.assert_allclose(out["a"], [0.6], rtol=1e-6)
    np.testing.assert_allclose(out["b"], [0.8, 0.0], rtol=1e-6)
    assert state == gf.ClipState()  # optax's (empty) layout


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_by_global_norm_zeroes_non_finite_updates(bad):
    """A NaN or infinite entry never passes the clip: zero updates; the state stays optax's empty ClipState."""
    tx = gf.clip_by_global_norm(1.0)
    update = jax.jit(tx.update)
    good = {"a": jnp.array([0.3]), "b": jnp.array([0.4, 0.0])}
    broken = {"a": jnp.array([bad], jnp.float32), "b": jnp.array([0.4, 0.0])}
    state = tx.init(None)
    for grads in [broken, broken]:
        out, state = update(grads, state)
        assert all(np.array_equal(x, np.zeros_like(x)) for x in jax.tree.leaves(out))
        assert state == gf.ClipState()
    out, state = update(good, state)  # a finite update after them passes unchanged
    np.testing.assert_array_equal(out["b"], [0.4, 0.0])


def test_lookahead_gradient_evaluates_at_shifted_point():
    """grad_fn is called at θ + γ·(previous update), and its result feeds the inner transform."""
    loss = lambda p: jnp.sum(jnp.cos(p) * jnp.arange(1.0, 4.0))
    grad_fn = jax.grad(loss)
    theta, gamma, eta = np.array([0.3, -0.2, 1.0]), 0.7, 0.1
    tx = gf.lookahead_gradient(gf.chain(gf.ewma(gamma, kind="momentum"), gf.scale_by_learning_rate(eta)), gamma)
    state, m, p = tx.init(jnp.asarray(theta)), np.zeros(3), theta.copy()
    numpy_grad = lambda x: -np.sin(x) * np.arange(1.0, 4.0)
    for _ in range(STEPS):
        u, state = tx.update(None, state, jnp.asarray(p), grad_fn=grad_fn)
        m = gamma * m + eta * numpy_grad(p - gamma * m)
        np.testing.assert_allclose(u, -m, rtol=1e-12)
        p = p - m
