"""Annealed gradient noise (seed 003; Neelakantan et al., 2015): σ_t² = eta / (1 + t)^gamma.

The schedule is checked exactly in float64 (the noisy update is g + σ_t·z_t where z_t, the unit draws,
do not depend on eta and gamma), statistically on a large sample drawn with a fixed key, and against
optax.add_noise, which draws the same numbers from the same key. The laws run over the registry entries
``noisy_sgd`` and ``noisy_adam_schedule`` (tests/registry_seed_transforms.py).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gradflow.transforms.noise import AddNoiseState, add_noise


@jax.jit
def _update(tx, updates, state):
    return tx.update(updates, state)


def _run(tx, updates, steps):
    """The noisy updates of ``steps`` successive calls on the same incoming ``updates``."""
    state, out = tx.init(updates), []
    for _ in range(steps):
        noisy, state = _update(tx, updates, state)
        out.append(noisy)
    return out, state


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


# --- the schedule, exactly ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("eta", "gamma", "eta_of_t"),
    [
        (0.3, 0.55, lambda t: 0.3),
        (2.0, 1.0, lambda t: 2.0),
        (1.0, 0.0, lambda t: 1.0),
        (lambda count: 0.1 / (1.0 + count), 1.0, lambda t: 0.1 / (1.0 + t)),  # eta itself a schedule
    ],
)
def test_noise_is_the_gradient_plus_sigma_t_times_unit_draws(eta, gamma, eta_of_t):
    """Float64: out_t = g + sqrt(eta_t / (1 + t)^gamma) · z_t, t = 0 at the first update, against NumPy."""
    steps = 6
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        grads = {"a": jnp.asarray(rng.normal(size=4)), "b": {"c": jnp.asarray(rng.normal(size=(2, 3)))}}
        zero = jax.tree.map(jnp.zeros_like, grads)
        unit_draws, _ = _run(add_noise(1.0, 0.0, key=11), zero, steps)  # sigma = 1 at every step
        noisy, state = _run(add_noise(eta, gamma, key=11), grads, steps)
        for t in range(steps):
            sigma = math.sqrt(eta_of_t(t) / (1.0 + t) ** gamma)
            expected = _flat(grads) + sigma * _flat(unit_draws[t])
            np.testing.assert_allclose(_flat(noisy[t]), expected, rtol=1e-12, atol=1e-15)
            assert jax.tree.leaves(noisy[t])[0].dtype == jnp.float64
        inner = state.inner if hasattr(state, "inner") else state
        assert int(inner.count) == steps


def test_first_update_has_variance_eta_like_optax():
    """t counts updates done before the current one: the first noise has variance eta (optax: t from 1, eta/t^gamma)."""
    g = jnp.zeros(5)
    first, _ = _update(add_noise(0.5, 0.55, key=1), g, add_noise(0.5, 0.55, key=1).init(g))
    unit, _ = _update(add_noise(1.0, 0.55, key=1), g, add_noise(1.0, 0.55, key=1).init(g))
    np.testing.assert_allclose(first, math.sqrt(0.5) * unit, rtol=1e-6)


# --- the schedule, statistically --------------------------------------------------------------------------

N = 2**16  # 65536 draws per step
Z = 5.0  # tolerances are Z standard errors: a correct implementation fails a check with probability < 1e-6


@pytest.mark.parametrize("gamma", [0.55, 1.0])
def test_sample_variance_follows_the_annealing_schedule(gamma):
    """Sample moments of 2^16 draws at each of 5 steps, with a fixed key (so the test is deterministic).

    With known zero mean, the sample variance s² = mean(n²) of N normal draws has relative standard error
    sqrt(2/N) = 0.55%; the tolerance is 5 of those (2.8%). The off-by-one schedule eta/(2 + t)^gamma differs
    by ≥ 10% at every step checked and is rejected by the same criterion.
    """
    eta = 2.0
    zero = {"w": jnp.zeros((128, 256)), "v": jnp.zeros(N // 2)}
    draws, _ = _run(add_noise(eta, gamma, key=2024), zero, 5)
    relative_se = math.sqrt(2.0 / N)
    previous = None
    for t, noise in enumerate(draws):
        n = _flat(noise)
        assert n.size == N
        variance = eta / (1.0 + t) ** gamma
        off_by_one = eta / (2.0 + t) ** gamma
        s2 = np.mean(n**2)
        assert abs(s2 / variance - 1) < Z * relative_se, (t, s2, variance)
        assert abs(s2 / off_by_one - 1) > Z * relative_se, (t, s2, off_by_one)
        sigma = math.sqrt(variance)
        assert abs(np.mean(n)) < Z * sigma / math.sqrt(N)
        # Gaussian shape: P(|n| < σ) = 0.6827, binomial standard error sqrt(p(1 − p)/N) = 0.18%.
        p = math.erf(1 / math.sqrt(2))
        assert abs(np.mean(np.abs(n) < sigma) - p) < Z * math.sqrt(p * (1 - p) / N)
        # Fresh draws at every step, independent across leaves.
        if previous is not None:
            assert abs(np.corrcoef(n, previous)[0, 1]) < Z / math.sqrt(N)
        half = N // 2
        assert abs(np.corrcoef(n[:half], n[half:])[0, 1]) < Z / math.sqrt(half)
        previous = n


# --- keys and determinism ---------------------------------------------------------------------------------


def test_same_key_same_noise_new_key_every_step():
    g = {"a": jnp.ones(3), "b": jnp.arange(4.0)}
    ways = [
        add_noise(0.1, 0.55, key=7),
        add_noise(0.1, 0.55, 7),  # positional, as optax's older add_noise(eta, gamma, seed)
        add_noise(0.1, 0.55, seed=7),
        add_noise(0.1, 0.55, key=jax.random.key(7)),
        add_noise(0.1, 0.55, key=jax.random.PRNGKey(7)),  # legacy raw uint32 key
        add_noise(0.1, 0.55, key=np.int64(7)),
    ]
    runs = [_run(tx, g, 3)[0] for tx in ways]
    for run in runs[1:]:
        for a, b in zip(jax.tree.leaves(run), jax.tree.leaves(runs[0])):
            np.testing.assert_array_equal(a, b)
    steps = [_flat(x) for x in runs[0]]
    assert not np.allclose(steps[0], steps[1]) and not np.allclose(steps[1], steps[2])
    other = _flat(_run(add_noise(0.1, 0.55, key=8), g, 1)[0][0])
    assert not np.allclose(other, steps[0])


def test_state_holds_the_key_and_is_scan_stable():
    tx = add_noise(0.1, 0.55, key=jax.random.key(3, impl="rbg"))
    g = jnp.zeros(4)
    state = tx.init(g)
    assert isinstance(state, AddNoiseState)
    _, new_state = _update(tx, g, state)
    assert not np.array_equal(jax.random.key_data(new_state.rng_key), jax.random.key_data(state.rng_key))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    assert state.rng_key.shape == () and jax.dtypes.issubdtype(state.rng_key.dtype, jax.dtypes.prng_key)
    assert jax.random.key_data(state.rng_key).shape == (4,)  # the rbg implementation's key data
    assert str(jax.random.key_impl(state.rng_key)) == "rbg"


def test_jit_equals_eager():
    tx = add_noise(0.3, 0.55, key=5)
    g = {"a": jnp.ones((2, 3)), "b": jnp.ones(())}
    state = tx.init(g)
    eager = tx.update(g, state)
    jitted = _update(tx, g, state)
    raw = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted)):
        np.testing.assert_allclose(raw(a), raw(b), rtol=1e-6)


def test_vmap_over_keys_gives_each_key_its_own_noise():
    g = jnp.zeros(6)
    batch = jax.vmap(lambda seed: add_noise(0.1, 0.55, key=seed))(jnp.arange(3))
    noisy, _ = jax.vmap(lambda tx: tx.update(g, tx.init(g)))(batch)
    for i in range(3):
        single, _ = _update(add_noise(0.1, 0.55, key=i), g, add_noise(0.1, 0.55, key=i).init(g))
        np.testing.assert_allclose(noisy[i], single, rtol=1e-6)  # vmapped and jitted programs round differently
    assert not np.allclose(noisy[0], noisy[1])


# --- optax ------------------------------------------------------------------------------------------------


def test_matches_optax_add_noise_for_the_same_key():
    """Same key, same split convention: optax's numbers at every step (float32, rtol 1e-5, atol 1e-6)."""
    rng = np.random.default_rng(1)
    shapes = {"w": (3, 2), "b": (2,), "s": ()}
    ours, theirs = add_noise(0.3, 0.55, key=42), optax.add_noise(0.3, 0.55, key=jax.random.key(42))
    s1, s2 = ours.init(None), theirs.init(None)
    update_theirs = jax.jit(theirs.update)
    for _ in range(8):
        g = {k: jnp.asarray(rng.normal(size=v), jnp.float32) for k, v in shapes.items()}
        u1, s1 = _update(ours, g, s1)
        u2, s2 = update_theirs(g, s2)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert int(s1.count) == int(s2.count)
        np.testing.assert_array_equal(jax.random.key_data(s1.rng_key), jax.random.key_data(s2.rng_key))


# --- dtypes -----------------------------------------------------------------------------------------------


def test_bfloat16_updates_stay_bfloat16_with_float32_noise():
    """bf16 in, bf16 out; the noise is drawn and added in float32 and rounded once (optax draws bf16 noise)."""
    values = np.random.default_rng(2).normal(size=(4, 5))
    g32 = jnp.asarray(values, jnp.bfloat16).astype(jnp.float32)  # bf16-representable float32 gradients
    tx = add_noise(0.2, 0.55, key=9)
    out16, state16 = _run(tx, g32.astype(jnp.bfloat16), 3)
    out32, _ = _run(tx, g32, 3)
    for a, b in zip(out16, out32):
        assert a.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b.astype(jnp.bfloat16), np.float32))
    assert state16.count.dtype == jnp.int32 and jax.dtypes.issubdtype(state16.rng_key.dtype, jax.dtypes.prng_key)


def test_none_leaves_pass_through():
    tx = add_noise(0.1, 0.55, key=0)
    out, _ = tx.update({"a": None, "b": jnp.zeros(3)}, tx.init(None))
    assert out["a"] is None and out["b"].shape == (3,)


# --- validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: add_noise(-0.1, 0.55, key=0), ValueError, r"add_noise: eta must be in \[0.0, inf\)"),
        (lambda: add_noise(0.1, -1.0, key=0), ValueError, r"add_noise: gamma must be in \[0.0, inf\)"),
        (lambda: add_noise(float("nan"), 0.55, key=0), ValueError, r"eta must be in"),
        (lambda: add_noise(0.1, 0.55, key=0, seed=1), ValueError, r"only one of key and seed"),
        (lambda: add_noise(0.1, 0.55, key=1.5), TypeError, r"add_noise: key must be"),
        (lambda: add_noise(0.1, 0.55, key=True), TypeError, r"add_noise: key must be"),
        (lambda: add_noise(0.1, 0.55, key=jax.random.split(jax.random.key(0), 2)), ValueError, r"single PRNG key"),
        (
            lambda: add_noise(0.1, 0.55, key=jnp.zeros((2, 2), jnp.int32)),
            TypeError,
            r"add_noise: key must be a PRNG key \(jax\.random\.key\(seed\) or jax\.random\.PRNGKey\(seed\)\), "
            r"got Array",
        ),
        (lambda: add_noise(0.1, 0.55, key=jnp.ones(3, jnp.uint32)), TypeError, r"add_noise: key must be a PRNG key"),
        (lambda: add_noise(0.1, 0.55, seed=2.0), TypeError, r"add_noise: seed must be a PRNG key"),
    ],
)
def test_bad_arguments_are_rejected(make, error, match):
    with pytest.raises(error, match=match):
        make()


# --- optax's state layout and signature -------------------------------------------------------------------


def test_state_layout_and_signature_are_optax(tmp_path):
    """AddNoiseState(count, rng_key) with a typed key, as optax's: an optax checkpoint restores into gradflow."""
    from conftest import assert_signature_matches

    assert_signature_matches(add_noise, optax.add_noise)
    assert AddNoiseState._fields == optax.AddNoiseState._fields == ("count", "rng_key")
    g = {"w": jnp.ones(3)}
    ours, theirs = add_noise(0.3, 0.55, key=jax.random.key(5)), optax.add_noise(0.3, 0.55, key=jax.random.key(5))
    s1, s2 = ours.init(g), theirs.init(g)
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
    ocp = pytest.importorskip("orbax.checkpoint")
    _, s2 = theirs.update(g, s2)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp_path / "optax", s2)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(tmp_path / "optax", jax.eval_shape(ours.init, g))
    assert isinstance(restored, AddNoiseState)
    np.testing.assert_allclose(_update(ours, g, restored)[0]["w"], theirs.update(g, s2)[0]["w"], rtol=1e-6)


def test_no_key_uses_key_zero_with_a_warning_like_optax():
    """optax.add_noise(eta, gamma) without a key runs (key 0, a warning): so does gradflow's."""
    g = jnp.zeros(4)
    with pytest.warns(UserWarning, match="add_noise: no key given, so key 0 is used"):
        tx = add_noise(0.1, 0.55)
    np.testing.assert_array_equal(_run(tx, g, 2)[0][1], _run(add_noise(0.1, 0.55, key=0), g, 2)[0][1])


def test_a_state_with_raw_key_data_runs_and_keeps_its_form():
    """An AddNoiseState holding raw uint32 key data (an older gradflow checkpoint) gives the same noise."""
    tx, g = add_noise(0.3, 0.55, key=4), jnp.zeros(5)
    typed = tx.init(g)
    raw = typed._replace(rng_key=jax.random.key_data(typed.rng_key))
    for _ in range(2):
        (u1, typed), (u2, raw) = _update(tx, g, typed), _update(tx, g, raw)
        np.testing.assert_array_equal(u1, u2)
        assert raw.rng_key.dtype == jnp.uint32
        np.testing.assert_array_equal(jax.random.key_data(typed.rng_key), raw.rng_key)
