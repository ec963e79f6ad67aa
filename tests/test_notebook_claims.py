"""The seed claims that the notebooks in notebooks/ reproduce, as plain tests (fast, no notebook kernel).

- notebooks/04_dynamics: gradient descent is Euler's method on the gradient flow dθ/dt = −∇L, a first-order
  method (seed 004); sign descent never settles (seed 004, "根本停不下来").
- notebooks/03_gradcheck: the central difference's error is M·h², a log-log slope of 2, until rounding
  takes over (seed 000 §4).
- notebooks/02_race: momentum and NAG reach the ravine's minimum in fewer steps than SGD (seeds 002, 003);
  every seed optimizer escapes the saddle from just off its ridge (float64: in float32 momentum and NAG
  overflow after escaping).

The clipped Polyak escape from the double well (seed 004) is tested in test_polyak.py, the MLP claims
only in notebooks/05_mlp_digits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import gradflow as gf
from gradflow.experiments import LANDSCAPES, SEED_OPTIMIZERS, race_one, run
from gradflow.gradcheck import central_differences

# --- seed 004: gradient descent is Euler's method on the gradient flow -------------------------------------


def test_gradient_descent_is_first_order_euler_on_the_gradient_flow_float64():
    """GD with step h follows scipy's solution of dθ/dt = −∇L with a global error ∝ h (ratio 2 per halving)."""
    himmelblau, horizon = LANDSCAPES["himmelblau"], 0.5
    with jax.enable_x64(True):
        start = jnp.array([-0.5, 0.5])
        grad = jax.jit(himmelblau.grad)
        flow = solve_ivp(lambda t, theta: -np.asarray(grad(jnp.asarray(theta))), (0.0, horizon), np.asarray(start),
                         method="DOP853", rtol=1e-12, atol=1e-12, dense_output=True)  # fmt: skip
        errors = []
        for n in (50, 100, 200):
            trajectory = run(himmelblau.fn, start, gf.sgd(horizon / n), steps=n, record=("params",)).trajectory
            assert trajectory.dtype == np.float64
            exact = flow.sol(np.arange(n + 1) * horizon / n).T
            errors.append(np.max(np.linalg.norm(trajectory - exact, axis=1)))
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    assert np.all((1.9 < ratios) & (ratios < 2.1)), (errors, ratios)
    assert errors[-1] < 0.1  # small: the two paths are the same curve, not merely both convergent
    np.testing.assert_allclose(flow.sol(horizon), himmelblau.minima[1], atol=1e-3)  # the flow reached a minimum


# --- seed 004: sign descent never settles -----------------------------------------------------------------


def numpy_sign_descent(start, eta, steps):
    """θ ← θ − η·sign(∇L) on the ravine 0.05x² + 5y², in NumPy."""
    theta, path = np.array(start, np.float64), [np.array(start, np.float64)]
    for _ in range(steps):
        theta = theta - eta * np.sign(np.array([0.1 * theta[0], 10.0 * theta[1]]))
        path.append(theta)
    return np.array(path)


@pytest.mark.parametrize("eta", [0.3, 0.03])
def test_sign_descent_ends_in_a_two_cycle_across_the_minimum_float64(eta):
    """Near the minimum every step still has length η in each coordinate: the iterates jump across the
    minimum at every step (the gradient's sign flips), stay within η of it, never closer than η/2 at both
    ends of the cycle, and the loss stops decreasing. Gradient descent from the same start converges."""
    ravine, steps, tail = LANDSCAPES["ravine"], 400, 100
    with jax.enable_x64(True):
        start = jnp.asarray(ravine.start)
        history = run(ravine.fn, start, gf.sign_sgd(eta), steps=steps, record=("loss", "params"))
        trajectory = history.trajectory
        grad_signs = np.sign(np.asarray(jax.vmap(ravine.grad)(jnp.asarray(trajectory[-tail:]))))
        descent = run(ravine.fn, start, gf.sgd(0.18), steps=steps)
    descent_loss = np.asarray(descent.loss)
    np.testing.assert_allclose(trajectory, numpy_sign_descent(ravine.start, eta, steps), rtol=1e-12, atol=1e-12)
    last = trajectory[-tail:]  # the minimum is (0, 0)
    np.testing.assert_allclose(np.abs(np.diff(last, axis=0)), eta, rtol=1e-9)
    assert np.all(grad_signs != 0) and np.all(grad_signs[1:] == -grad_signs[:-1])
    half_width = np.abs(last).max(axis=0)
    assert np.all(half_width <= eta) and np.all(half_width >= eta / 2), half_width
    np.testing.assert_allclose(last[2:], last[:-2], rtol=1e-9, atol=1e-12)  # period 2
    tail_loss = np.asarray(history.loss[-tail:])
    assert tail_loss.min() > 1e-3 * eta**2 and tail_loss[-2:].min() == pytest.approx(tail_loss.min(), rel=1e-9)
    assert float(descent.final_loss) < 1e-2 * tail_loss.min() and descent_loss[-1] < 0.5 * descent_loss[-tail // 2]


# --- seed 000 §4: the central difference's error is M·h² ---------------------------------------------------


def test_central_difference_error_has_slope_two_then_roundoff_float64():
    """On Rastrigin at (3.2, 2.8): gradflow's central differences equal the seed's formula computed in NumPy;
    the error against the exact derivative has log-log slope 2 for h in [1e-4, 1e-2] with M = |L'''|/6;
    below the optimal h ≈ 3e-6 the rounding error ε·|L|/h takes over."""
    rastrigin = LANDSCAPES["rastrigin"]
    w = np.array(rastrigin.start)
    hs = np.logspace(-1, -13, 49)

    def numpy_loss(v):
        return 20.0 + np.sum(v**2 - 10.0 * np.cos(2 * np.pi * v))

    exact = 2 * w + 20 * np.pi * np.sin(2 * np.pi * w)
    numeric_numpy = np.array([[(numpy_loss(w + h * e) - numpy_loss(w - h * e)) / (2 * h) for e in np.eye(2)]
                              for h in hs])  # fmt: skip
    with jax.enable_x64(True):
        numeric = central_differences(rastrigin.fn, jnp.asarray(w), hs)
        np.testing.assert_allclose(np.asarray(rastrigin.grad(jnp.asarray(w))), exact, rtol=1e-14)
    truncation = (hs >= 1e-4) & (hs <= 1e-2)
    np.testing.assert_allclose(numeric[truncation], numeric_numpy[truncation], rtol=1e-10, atol=0)
    for errors in (np.abs(numeric - exact), np.abs(numeric_numpy - exact)):
        for i in range(2):
            slope = np.polyfit(np.log10(hs[truncation]), np.log10(errors[truncation, i]), 1)[0]
            assert 1.8 < slope < 2.2, slope
        M = 10 * (2 * np.pi) ** 3 * np.abs(np.sin(2 * np.pi * w)) / 6
        np.testing.assert_allclose(errors[np.argmin(np.abs(hs - 1e-3))] / 1e-6, M, rtol=0.01)
        tiny, optimal = np.argmin(np.abs(hs - 1e-12)), np.argmin(np.abs(hs - 1e-5))
        assert np.all(errors[tiny] > 100 * errors[optimal])  # the roundoff rise
        assert np.all(errors[tiny] < 100 * np.finfo(np.float64).eps * numpy_loss(w) / 1e-12)  # of size ε·|L|/h


# --- seeds 002, 003: the ravine and the saddle ---------------------------------------------------------------

RAVINE_RATES = np.logspace(-3, 0, 13)


@pytest.fixture(scope="module")
def ravine_arrivals():
    ravine = LANDSCAPES["ravine"]
    return {name: race_one(ravine, name, steps=600, learning_rates=RAVINE_RATES)
            for name in ("sgd", "momentum", "nag")}  # fmt: skip


def test_momentum_and_nag_reach_the_ravine_minimum_in_fewer_steps_than_sgd(ravine_arrivals):
    """Seeds 002/003: on 0.05x² + 5y² (condition number 100), each at its best learning rate of the same grid,
    momentum and NAG settle within 1e-6 of the minimum in fewer than half the steps SGD needs; SGD's best rate
    sits just below its stability limit 2/10 and it does settle within the budget."""
    steps = {name: result.steps_to_tolerance for name, result in ravine_arrivals.items()}
    assert all(s is not None for s in steps.values()), steps
    assert 2 * steps["momentum"] < steps["sgd"] and 2 * steps["nag"] < steps["sgd"], steps
    assert 0.1 < ravine_arrivals["sgd"].learning_rate < 0.2
    # SGD's along-valley contraction 1 − 0.1·η bounds its arrival from below: 3.2·(1 − 0.1η)^(2t) < 1e-6.
    eta = ravine_arrivals["sgd"].learning_rate
    assert steps["sgd"] >= np.log(1e-6 / 3.2) / (2 * np.log(1 - 0.1 * eta)) - 1


SADDLE_RATE = 0.05
# Plain gradient descent multiplies y by 1 + 2η per step: from y = 1e-3 to |y| ≈ 1 takes log(1000)/log(1.1) steps.
SGD_ESCAPE = np.log(1000) / np.log(1 + 2 * SADDLE_RATE)


@pytest.fixture(scope="module")
def saddle_escapes_float64():
    """Each seed optimizer on x² − y² from (1, 1e-3), learning rate 0.05, 250 steps, in float64 (notebook 02)."""
    with jax.enable_x64(True):
        return {name: race_one(LANDSCAPES["saddle"], name, steps=250, learning_rates=np.array([SADDLE_RATE]),
                               dtype=jnp.float64)
                for name in SEED_OPTIMIZERS}  # fmt: skip


@pytest.mark.parametrize("name", SEED_OPTIMIZERS)
def test_every_seed_optimizer_escapes_the_saddle(name, saddle_escapes_float64):
    """x² − y² from (1, 1e-3), learning rate 0.05, float64: for each seed optimizer the loss stays below the
    escape level −1 from some step within 250 on (``steps_to_escape``, recomputed here from the losses); SGD
    escapes when the growth rate 1 + 2η predicts, momentum, NAG and the RMS-normalised methods well before."""
    result = saddle_escapes_float64[name]
    losses = result.losses[0]
    assert not result.diverged and np.isfinite(losses).all()
    assert losses[0] == pytest.approx(1.0 - 1e-6)
    above = np.flatnonzero(losses >= LANDSCAPES["saddle"].escape_level)
    escape = int(above[-1]) + 1  # the first step from which the loss stays below the escape level
    assert escape < losses.size, f"{name} did not escape: final loss {losses[-1]}"
    assert result.steps_to_escape == escape
    if name == "sgd":
        assert abs(escape - SGD_ESCAPE) < 5, escape
    elif name in ("momentum", "nag", "rmsprop", "adam", "amsgrad"):
        assert escape < 0.5 * SGD_ESCAPE, escape


def test_momentum_and_nag_overflow_float32_on_the_saddle_before_adadelta_escapes(saddle_escapes_float64):
    """Why notebook 02 races on the saddle in float64: in float32, NAG's and momentum's loss −y² overflows after
    they have escaped (y grows about 1.32× per step), NAG's no later than Adadelta's escape step, so no float32
    horizon shows every optimizer escaped and none diverged."""
    adadelta_escape = saddle_escapes_float64["adadelta"].steps_to_escape
    for name in ("nag", "momentum"):
        result = race_one(LANDSCAPES["saddle"], name, steps=250, learning_rates=np.array([SADDLE_RATE]))
        assert result.diverged
        overflow = int(np.argmax(~np.isfinite(result.losses[0])))
        assert saddle_escapes_float64[name].steps_to_escape < overflow < 250
        if name == "nag":
            assert overflow <= adadelta_escape, (overflow, adadelta_escape)
