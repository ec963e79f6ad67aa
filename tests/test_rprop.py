"""scale_by_rprop and rprop (Riedmiller & Braun, 1993; optax's iRprop⁻ variant by default).

Step by step in float64 against NumPy references written from the papers with the previous *gradient*
kept explicitly (rtol 1e-10); against optax in float32 over the 50-step trajectories of
tests/test_optax_parity.py (rtol 1e-5, atol 1e-6); the 1993 rule with weight backtracking; zero
gradients; the one intended difference from optax (sign test on signs, not on an underflowing product);
clear errors on bad input.
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_clipping import assert_same_float64, run_float64, run_reference
from test_optax_parity import PARAMS, STEPS, assert_moved, assert_same_trajectory, f32, run_pair

import gradflow as gf
from gradflow.optimizers.rprop import rprop
from gradflow.transforms.rprop import ScaleByRpropState, scale_by_rprop

# --- NumPy references (float64) -------------------------------------------------------------------


def rprop_reference(
    learning_rate,
    eta_minus=0.5,
    eta_plus=1.2,
    min_step_size=1e-6,
    max_step_size=50.0,
    weight_backtracking=False,
    trace=None,
    step_sizes=None,
):
    """Rprop coordinate by coordinate, keeping the previous gradient g⁻ (0 after a sign change):

    g·g⁻ > 0: Δ ← min(η⁺Δ, Δmax), Δθ = −sign(g)Δ;  g·g⁻ < 0: Δ ← max(η⁻Δ, Δmin), g ← 0 and
    Δθ = 0 (iRprop⁻, Igel & Hüsken 2000) or Δθ = −Δθ⁻ (weight backtracking, Riedmiller & Braun 1993);
    g·g⁻ = 0: Δθ = −sign(g)Δ.  θ ← θ + Δθ.  ``trace`` collects the signs of g·g⁻ seen, ``step_sizes``
    the step sizes Δ after each step.
    """

    def step(theta, grads, state):
        if state is None:
            state = {k: (np.full_like(v, learning_rate), np.zeros_like(v), np.zeros_like(v)) for k, v in theta.items()}
        new_theta, new_state = {}, {}
        for k in theta:
            delta, g_prev, dtheta_prev = (x.copy() for x in state[k])
            g = grads[k].copy()
            dtheta = np.zeros_like(g)
            for i in np.ndindex(g.shape):
                s = g[i] * g_prev[i]
                if trace is not None:
                    trace.append(np.sign(s))
                if s > 0:
                    delta[i] = min(delta[i] * eta_plus, max_step_size)
                    dtheta[i] = -np.sign(g[i]) * delta[i]
                elif s < 0:
                    delta[i] = max(delta[i] * eta_minus, min_step_size)
                    dtheta[i] = -dtheta_prev[i] if weight_backtracking else 0.0
                    g[i] = 0.0
                else:
                    dtheta[i] = -np.sign(g[i]) * delta[i]
            new_theta[k] = theta[k] + dtheta
            new_state[k] = (delta, g, dtheta)
            if step_sizes is not None:
                step_sizes.extend(delta.ravel())
        return new_theta, new_state

    return step


# --- float64 step by step -------------------------------------------------------------------------

CASES = {
    "defaults": dict(learning_rate=0.1),
    "custom": dict(learning_rate=0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=0.01, max_step_size=0.2),
    "backtracking": dict(learning_rate=0.1, weight_backtracking=True),
    "backtracking-custom": dict(
        learning_rate=0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=0.01, max_step_size=0.2, weight_backtracking=True
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rprop_float64(name):
    hyper = CASES[name]
    got = run_float64(rprop(**hyper), steps=40)
    signs = []
    want = run_reference(rprop_reference(**hyper, trace=signs), steps=40)
    assert_same_float64(got, want)
    assert {-1.0, 0.0, 1.0} <= set(signs)  # agreements, sign changes and restarts all occur


@pytest.mark.parametrize("name", ["custom", "backtracking-custom"])
def test_scale_by_rprop_in_a_chain_float64(name):
    """The primitive alone outputs the descent direction; any negative scaling turns it into the step."""
    hyper = dict(CASES[name])
    got = run_float64(gf.chain(scale_by_rprop(**hyper), gf.scale_by_learning_rate(1.0)), steps=40)
    want = run_reference(rprop_reference(**hyper), steps=40)
    assert_same_float64(got, want)


def test_bounds_are_reached_in_the_custom_case():
    """Non-vacuity of the custom case: the step sizes hit both bounds along the float64 run."""
    hyper, step_sizes = CASES["custom"], []
    run_reference(rprop_reference(**hyper, step_sizes=step_sizes), steps=40)
    assert min(step_sizes) == hyper["min_step_size"] and max(step_sizes) == hyper["max_step_size"]


def test_sign_changes_step_by_step():
    """A hand-worked sequence for one coordinate, both variants (and optax's lagged outputs)."""
    gs = [1.0, 2.0, -1.0, -3.0, 0.0, 4.0, -2.0, 5.0]
    #   s:   0   +     −     0     0    0     −    0      (g⁻ is forgotten after a change, and after g = 0)
    #   Δ: 0.1 0.12  0.06  0.06  0.06 0.06  0.03  0.03
    default = [0.1, 0.12, 0.0, -0.06, 0.0, 0.06, 0.0, 0.03]
    backtracking = [0.1, 0.12, -0.12, -0.06, 0.0, 0.06, -0.06, 0.03]
    for tx, expected in ((scale_by_rprop(0.1), default), (scale_by_rprop(0.1, weight_backtracking=True), backtracking)):
        state = tx.init(jnp.zeros(1))
        outs = []
        for g in gs:
            out, state = tx.update(jnp.array([g]), state)
            outs.append(float(out[0]))
        np.testing.assert_allclose(outs, expected, rtol=1e-6, atol=1e-9)
    ox = optax.scale_by_rprop(f32(0.1))  # optax 0.2.8: the same rule, each output one step late
    state, outs = ox.init(jnp.zeros(1)), []
    for g in gs:
        out, state = ox.update(jnp.array([g], jnp.float32), state)
        outs.append(float(out[0]))
    np.testing.assert_allclose(outs, [0.0, 0.1, 0.0, 0.0, -0.06, 0.0, 0.0, 0.0], rtol=1e-6, atol=1e-9)


# --- optax, float32 -------------------------------------------------------------------------------
#
# optax 0.2.8's scale_by_rprop keeps the same state as gradflow's (step sizes Δ and the direction d) but
# returns the previous step's d, zeroed where the sign changed (a one-step lag, optax pull request #1725),
# so the two libraries' trajectories differ by design. Parity is therefore checked on one sequence of
# gradients fed to both: the states agree at every step, and optax's output at step t is gradflow's
# output at step t − 1, zeroed where sign(g_t)·sign(d_{t−1}) < 0.

PARITY = {
    "defaults": (
        dict(learning_rate=f32(0.01)),
        dict(
            learning_rate=f32(0.01),
            eta_minus=f32(0.5),
            eta_plus=f32(1.2),
            min_step_size=f32(1e-6),
            max_step_size=f32(50.0),
        ),
    ),
    "custom": (
        dict(
            learning_rate=f32(0.02),
            eta_minus=f32(0.3),
            eta_plus=f32(1.5),
            min_step_size=f32(5e-3),
            max_step_size=f32(0.05),
        ),
        dict(
            learning_rate=f32(0.02),
            eta_minus=f32(0.3),
            eta_plus=f32(1.5),
            min_step_size=f32(5e-3),
            max_step_size=f32(0.05),
        ),
    ),
}


# The tests of one PARITY setting share its runs (one worker, --dist loadgroup): see _pair.
PARITY_GROUP = pytest.mark.xdist_group("rprop_parity")


@functools.cache
def _pair(name: str) -> Any:
    """rprop(**PARITY[name]) and optax's, side by side on the parity problem (computed once per worker: a
    compilation per call)."""
    ours_hyper, theirs_hyper = PARITY[name]
    return run_pair(rprop(**ours_hyper), optax.rprop(**theirs_hyper))


def _gradients(name: str) -> list:
    """The 50 gradients (with the shared noise) along gradflow's own rprop trajectory on the parity problem
    (PARITY[name]'s hyperparameters, which are the same for both libraries)."""
    out = _pair(name)
    assert_moved(out.gradflow)
    return [jax.tree.map(lambda x, t=t: x[t], out.gradients) for t in range(STEPS)]


@jax.jit
def _update_ours(tx, g, s):
    # module level, the transform an argument: one compiled program per structure, for every value
    return tx.update(g, s, PARAMS)


def compare_with_optax(ours, theirs, gradients, is_chain: bool) -> Any:
    """Feed the same gradients to both; assert equal states and optax's output = gradflow's, one step late."""
    step_ours = functools.partial(_update_ours, ours)
    step_theirs = jax.jit(lambda g, s: theirs.update(g, s, PARAMS))
    rprop_state = (lambda s: s[0]) if is_chain else (lambda s: s)
    s1, s2 = ours.init(PARAMS), theirs.init(PARAMS)
    previous = jax.tree.map(jnp.zeros_like, PARAMS)  # gradflow's output one step earlier
    for t, g in enumerate(gradients):
        d_before = rprop_state(s1).prev_updates
        o1, s1 = step_ours(g, s1)
        o2, s2 = step_theirs(g, s2)
        r1, r2 = rprop_state(s1), rprop_state(s2)
        for a, b in zip(
            jax.tree.leaves((r1.step_sizes, r1.prev_updates)), jax.tree.leaves((r2.step_sizes, r2.prev_updates))
        ):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"state after step {t + 1}")
        lagged = jax.tree.map(lambda p, gi, d: jnp.where(jnp.sign(gi) * jnp.sign(d) < 0, 0, p), previous, g, d_before)
        for a, b in zip(jax.tree.leaves(o2), jax.tree.leaves(lagged)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=f"optax's output at step {t + 1}")
        previous = o1
    return previous


@PARITY_GROUP
@pytest.mark.parametrize("name", sorted(PARITY))
def test_state_matches_optax_and_output_is_optax_without_the_lag(name):
    ours_hyper, theirs_hyper = PARITY[name]
    gradients = _gradients(name)
    compare_with_optax(scale_by_rprop(**ours_hyper), optax.scale_by_rprop(**theirs_hyper), gradients, False)
    compare_with_optax(rprop(**ours_hyper), optax.rprop(**theirs_hyper), gradients, True)


@PARITY_GROUP
def test_comparison_detects_small_differences():
    ours_hyper, theirs_hyper = PARITY["defaults"]
    gradients = _gradients("defaults")
    with pytest.raises(AssertionError, match="state after step"):
        compare_with_optax(
            rprop(**{**ours_hyper, "eta_plus": f32(1.2001)}), optax.rprop(**theirs_hyper), gradients, True
        )
    with pytest.raises(AssertionError, match="optax's output at step"):  # same state, other outputs
        compare_with_optax(rprop(**ours_hyper, weight_backtracking=True), optax.rprop(**theirs_hyper), gradients, True)


@PARITY_GROUP
def test_the_lag_is_the_whole_difference():
    """Non-vacuity: optax's first update is 0 and gradflow's is Δ₀·sign(g); gradflow's trajectory is not
    optax's; along it gradients keep and change sign, and the step sizes reach both bounds."""
    ours_hyper, theirs_hyper = PARITY["custom"]
    gradients = _gradients("custom")
    first_ours, _ = rprop(**ours_hyper).update(gradients[0], rprop(**ours_hyper).init(PARAMS))
    first_theirs, _ = optax.rprop(**theirs_hyper).update(gradients[0], optax.rprop(**theirs_hyper).init(PARAMS))
    for a, b, g in zip(jax.tree.leaves(first_ours), jax.tree.leaves(first_theirs), jax.tree.leaves(gradients[0])):
        np.testing.assert_allclose(a, -0.02 * np.sign(g), rtol=1e-6)
        np.testing.assert_array_equal(b, 0)
    out = _pair("custom")  # = run_pair(rprop(**ours_hyper), optax.rprop(**theirs_hyper))
    with pytest.raises(AssertionError, match="gradflow vs optax"):
        assert_same_trajectory(out.gradflow, out.optax)

    g = np.stack([np.concatenate([np.ravel(x) for x in jax.tree.leaves(gi)]) for gi in gradients])
    agree = np.sign(g[1:]) == np.sign(g[:-1])
    assert 0.2 < agree.mean() < 0.8, agree.mean()
    tx, sizes = optax.scale_by_rprop(**theirs_hyper), []
    state, update = tx.init(PARAMS), jax.jit(tx.update)
    for gi in gradients:
        _, state = update(gi, state)
        sizes.append(np.concatenate([np.ravel(x) for x in jax.tree.leaves(state.step_sizes)]))
    assert np.min(sizes) == f32(5e-3) and np.max(sizes) == f32(0.05)


def test_sign_test_does_not_underflow():
    """Intended difference: optax tests the product g·d⁻, which underflows to 0 for a tiny gradient (so
    it does not shrink Δ and steps against the previous step); gradflow compares signs, as the rule says."""
    ours = scale_by_rprop(f32(1e-8), min_step_size=f32(1e-9))
    theirs = optax.scale_by_rprop(f32(1e-8), min_step_size=f32(1e-9))
    s1, s2 = ours.init(jnp.zeros(1)), theirs.init(jnp.zeros(1))
    for g in (1.0, -2e-38):  # 2e-38 is a normal float32; 2e-38 · 1e-8 underflows
        o1, s1 = ours.update(jnp.array([g], jnp.float32), s1)
        _, s2 = theirs.update(jnp.array([g], jnp.float32), s2)
    assert float(o1[0]) == 0.0 and float(s1.prev_updates[0]) == 0.0  # a sign change: no step, Δ halves
    assert s1.step_sizes[0] == f32(5e-9)
    assert s2.step_sizes[0] == f32(1e-8) and s2.prev_updates[0] == -f32(1e-8)  # optax: no sign change seen


FUNCTIONS = {"scale_by_rprop": scale_by_rprop, "rprop": rprop}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_signature_matches_optax(name):
    """Same argument names, order, kinds and defaults as optax; weight_backtracking is keyword-only."""
    ours = inspect.signature(FUNCTIONS[name]).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert set(ours) - set(theirs) == {"weight_backtracking"}
    assert ours["weight_backtracking"].kind is inspect.Parameter.KEYWORD_ONLY
    assert ours["weight_backtracking"].default is False
    assert [k for k in ours if k in theirs] == list(theirs)
    for key in theirs:
        assert ours[key].kind == theirs[key].kind, key
        assert ours[key].default == theirs[key].default, key


# --- state, structure ------------------------------------------------------------------------------


def test_state_starts_at_learning_rate_in_the_params_dtype():
    params = {"w": jnp.zeros((2, 2), jnp.bfloat16), "b": jnp.zeros(3)}
    state = scale_by_rprop(0.25).init(params)
    assert isinstance(state, ScaleByRpropState)
    assert state.step_sizes["w"].dtype == jnp.bfloat16 and state.prev_updates["b"].dtype == jnp.float32
    np.testing.assert_array_equal(state.step_sizes["b"], 0.25)
    np.testing.assert_array_equal(state.prev_updates["w"], 0)
    updates, new_state = scale_by_rprop(0.25).update(jax.tree.map(jnp.ones_like, params), state)
    assert updates["w"].dtype == jnp.bfloat16
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert [x.dtype for x in jax.tree.leaves(new_state)] == [x.dtype for x in jax.tree.leaves(state)]


def test_rprop_is_a_chain_of_primitives():
    tx = rprop(0.1)
    assert [type(t).__name__ for t in tx.transforms] == ["ScaleByRprop", "Scale"]
    assert jax.tree.leaves(tx) == [0.1, 0.5, 1.2, 1e-6, 50.0, -1.0]
    assert jax.tree.structure(rprop(0.1)) == jax.tree.structure(rprop(0.3))
    assert jax.tree.structure(rprop(0.1)) != jax.tree.structure(rprop(0.1, weight_backtracking=True))


def test_zero_gradient_takes_no_step_and_keeps_the_step_size():
    tx = rprop(0.1)
    params = jnp.array([1.0, -1.0])
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update(jnp.zeros(2), state, params)
        np.testing.assert_array_equal(updates, 0)
    np.testing.assert_array_equal(state[0].step_sizes, np.float32(0.1))


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [rprop, scale_by_rprop], ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(learning_rate=-0.1), r"learning_rate must be in \[0.0, inf\)"),
        (dict(learning_rate=None), r"learning_rate is required"),
        (dict(learning_rate=0.1, eta_minus=1.5), r"eta_minus must be in \[0.0, 1.0\], got 1.5"),
        (dict(learning_rate=0.1, eta_minus=-0.5), r"eta_minus must be in \[0.0, 1.0\]"),
        (dict(learning_rate=0.1, eta_plus=0.9), r"eta_plus must be in \[1.0, inf\), got 0.9"),
        (dict(learning_rate=0.1, eta_plus=math.nan), r"eta_plus must be in"),
        (dict(learning_rate=0.1, min_step_size=-1.0), r"min_step_size must be in \[0.0, inf\)"),
        (dict(learning_rate=0.1, max_step_size=math.inf), r"max_step_size must be in \[0.0, inf\)"),
        (
            dict(learning_rate=0.1, min_step_size=1.0, max_step_size=0.5),
            r"max_step_size must be >= min_step_size \(1.0\), got 0.5",
        ),
    ],
)
def test_bad_hyperparameters(factory, kwargs, message):
    with pytest.raises(ValueError, match=rf"{factory.__name__}: {message}"):
        factory(**kwargs)


def test_mismatched_state():
    tx = scale_by_rprop(0.1)
    state = tx.init({"w": jnp.zeros(2)})
    with pytest.raises(
        gf.TreeMismatchError, match=r"updates\['w'\] has shape \(3,\) but state.step_sizes\['w'\] has shape \(2,\)"
    ):
        tx.update({"w": jnp.zeros(3)}, state)
