"""Curvature products and seed 001's curvature step size (gradflow.second_order.curvature).

- ``hvp`` / ``hvp_from_grad`` / ``hessian`` against ``jax.hessian`` and against a NumPy Hessian written
  by hand (a regularised logistic loss over a pytree), in float64; ``hvp`` also against central
  differences with ``gradflow.check_grads`` (H·v is the gradient of θ ↦ ⟨∇f(θ), v⟩).
- ``gnvp`` against Jᵀ(J·v) with a NumPy Jacobian written by hand, equal to ``hvp`` of ½‖r‖² where r
  is linear or vanishes, and checked with ``check_grads`` (Jᵀ(J·u) is the gradient of u ↦ ½‖J·u‖²).
- The curvature step η* = gᵀg/gᵀHg: against NumPy and ``scipy.optimize.minimize_scalar`` (the exact
  minimiser of f(θ − η·g) on a quadratic); both sides of the bound 0 < η < 2η* (the seed writes η*,
  which is sufficient only); general directions (η = gᵀu/uᵀHu); the fallbacks for non-positive
  curvature, a binding cap, a non-descent direction and a zero gradient; errors that name the
  missing ``grad_fn`` / ``params`` and the invalid hyperparameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree

import gradflow as gf
from gradflow.second_order import (
    curvature_step,
    gnvp,
    hessian,
    hessian_from_grad,
    hvp_from_grad,
    scale_by_curvature_step,
)
from gradflow.second_order.curvature import hvp  # gradflow.second_order.hvp is optax's (loss, v, params, ...)


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


# --- a pytree problem and its NumPy derivatives, written by hand ---------------------------------------------

RNG = np.random.default_rng(0)
A = RNG.normal(size=(5, 6))
Y = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
MU = 0.3


def unflat(x, dtype=jnp.float64):
    """Flat vector (a₀, a₁, b₀₀, b₀₁, b₁₀, b₁₁) -> {"a": (2,), "b": (2, 2)}: the ``ravel_pytree`` order."""
    x = np.asarray(x)
    return {"a": jnp.asarray(x[:2], dtype), "b": jnp.asarray(x[2:].reshape(2, 2), dtype)}


def flat(tree):
    return np.concatenate([np.ravel(np.asarray(tree["a"], np.float64)), np.ravel(np.asarray(tree["b"], np.float64))])


def logistic_loss(params):
    """Σ log(1 + e^z) − yᵀz + ½μ‖x‖² + ¼·0.1·Σx⁴ with z = A·x, x the parameters in the order above."""
    x = jnp.concatenate([params["a"], params["b"].ravel()])
    z = jnp.asarray(A, x.dtype) @ x
    return jnp.sum(jnp.logaddexp(0, z) - Y * z) + 0.5 * MU * jnp.sum(x**2) + 0.025 * jnp.sum(x**4)


def numpy_logistic_grad(x):
    s = 1 / (1 + np.exp(-(A @ x)))
    return A.T @ (s - Y) + MU * x + 0.1 * x**3


def numpy_logistic_hessian(x):
    s = 1 / (1 + np.exp(-(A @ x)))
    return A.T @ np.diag(s * (1 - s)) @ A + MU * np.eye(6) + np.diag(0.3 * x**2)


X0 = RNG.normal(size=6)
V0 = RNG.normal(size=6)


# --- Hessian-vector products ---------------------------------------------------------------------------------


def test_hvp_matches_numpy_hessian_and_jax_hessian(float64):
    params, v = unflat(X0), unflat(V0)
    reference = numpy_logistic_hessian(X0) @ V0
    out = hvp(logistic_loss, params, v)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    np.testing.assert_allclose(flat(out), reference, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(flat(hvp_from_grad(jax.grad(logistic_loss), params, v)), reference, rtol=1e-13)
    # the brief's reference: jax.hessian(f) @ v over the flattened parameters
    x, unravel = ravel_pytree(params)
    dense = jax.hessian(lambda y: logistic_loss(unravel(y)))(x)
    np.testing.assert_allclose(flat(out), np.asarray(dense) @ V0, rtol=1e-13, atol=1e-14)


def test_hvp_is_checked_against_central_differences(float64):
    """H·v is the gradient of θ ↦ ⟨∇f(θ), v⟩: check_grads compares hvp with differences of that scalar."""
    v = unflat(V0)
    direction_derivative = lambda theta: sum(
        jnp.vdot(g, w) for g, w in zip(jax.tree.leaves(jax.grad(logistic_loss)(theta)), jax.tree.leaves(v))
    )
    report = gf.check_grads(direction_derivative, unflat(X0), grad_fn=lambda theta: hvp(logistic_loss, theta, v))
    report.raise_if_failed()
    # and a wrong product does not pass
    wrong = gf.check_grads(
        direction_derivative,
        unflat(X0),
        grad_fn=lambda theta: jax.tree.map(lambda h: 1.01 * h, hvp(logistic_loss, theta, v)),
    )
    assert not wrong.ok


def test_hessian_layout_and_values(float64):
    params = unflat(X0)
    matrix = hessian(logistic_loss, params)
    assert matrix.shape == (6, 6) and matrix.dtype == jnp.float64
    np.testing.assert_allclose(matrix, numpy_logistic_hessian(X0), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(hessian_from_grad(jax.grad(logistic_loss), params), matrix, rtol=1e-15)
    # rows and columns in ravel_pytree order: unravel(H @ ravel(v)) is hvp
    _, unravel = ravel_pytree(params)
    product = unravel(matrix @ ravel_pytree(unflat(V0))[0])
    for a, b in zip(jax.tree.leaves(product), jax.tree.leaves(hvp(logistic_loss, params, unflat(V0)))):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    # the same numbers as jax.hessian's pytree of pytrees
    nested = jax.hessian(logistic_loss)(params)
    np.testing.assert_allclose(matrix[:2, 2:], np.asarray(nested["a"]["b"]).reshape(2, 4), rtol=1e-15)


def test_hvp_keeps_param_dtypes_and_casts_the_vector():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones((2, 2), jnp.float32)}
    v = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones((2, 2), jnp.float32)}
    out = hvp(lambda p: jnp.sum(p["a"].astype(jnp.float32) ** 2) + jnp.sum(p["b"] ** 3), params, v)
    assert out["a"].dtype == jnp.bfloat16 and out["b"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out["a"], np.float32), [2.0, 2.0])
    np.testing.assert_array_equal(out["b"], np.full((2, 2), 6.0))


def test_hvp_names_a_mismatched_vector():
    with pytest.raises(gf.tree.TreeMismatchError, match=r"v\['b'\] has shape \(3,\)"):
        hvp(logistic_loss, unflat(X0, jnp.float32), {"a": jnp.ones(2), "b": jnp.ones(3)})


# --- Gauss-Newton-vector products ----------------------------------------------------------------------------

B = RNG.normal(size=(4, 6)) / 2
T = RNG.normal(size=4)


def exp_residuals(params):
    """rᵢ = exp(bᵢᵀx) − tᵢ (a pytree output: two blocks), whose Jacobian is diag(exp(Bx))·B."""
    x = jnp.concatenate([params["a"], params["b"].ravel()])
    r = jnp.exp(jnp.asarray(B, x.dtype) @ x) - T
    return {"first": r[:3], "last": r[3:]}


def numpy_exp_jacobian(x):
    return np.exp(B @ x)[:, None] * B


def test_gnvp_matches_numpy_gauss_newton(float64):
    J = numpy_exp_jacobian(X0)
    out = gnvp(exp_residuals, unflat(X0), unflat(V0))
    assert jax.tree.structure(out) == jax.tree.structure(unflat(X0))
    np.testing.assert_allclose(flat(out), J.T @ (J @ V0), rtol=1e-13, atol=1e-14)
    # G = JᵀJ differs from the Hessian of ½‖r‖² by Σ rᵢ∇²rᵢ, which is not small here
    half_squares = lambda p: 0.5 * sum(jnp.sum(r**2) for r in jax.tree.leaves(exp_residuals(p)))
    assert np.linalg.norm(flat(hvp(half_squares, unflat(X0), unflat(V0))) - flat(out)) > 1e-2


def test_gnvp_equals_hvp_for_linear_or_vanishing_residuals(float64):
    linear = lambda p: jnp.asarray(B) @ jnp.concatenate([p["a"], p["b"].ravel()]) - T
    half_squares = lambda p: 0.5 * jnp.sum(linear(p) ** 2)
    np.testing.assert_allclose(flat(gnvp(linear, unflat(X0), unflat(V0))), B.T @ B @ V0, rtol=1e-13)
    np.testing.assert_allclose(
        flat(gnvp(linear, unflat(X0), unflat(V0))), flat(hvp(half_squares, unflat(X0), unflat(V0))), rtol=1e-13
    )
    # at a zero-residual point of a nonlinear r, G = H
    targets = np.exp(B @ X0)
    zero_residual = lambda p: jnp.exp(jnp.asarray(B) @ jnp.concatenate([p["a"], p["b"].ravel()])) - targets
    half = lambda p: 0.5 * jnp.sum(zero_residual(p) ** 2)
    np.testing.assert_allclose(
        flat(gnvp(zero_residual, unflat(X0), unflat(V0))), flat(hvp(half, unflat(X0), unflat(V0))), rtol=1e-12
    )


def test_gnvp_is_checked_against_central_differences(float64):
    """Jᵀ(J·u) is the gradient of u ↦ ½‖J·u‖² (J·u by forward mode): check_grads against differences."""
    theta = unflat(X0)
    half_jv = lambda u: 0.5 * sum(jnp.sum(t**2) for t in jax.tree.leaves(jax.jvp(exp_residuals, (theta,), (u,))[1]))
    gf.check_grads(half_jv, unflat(V0), grad_fn=lambda u: gnvp(exp_residuals, theta, u)).raise_if_failed()


# --- the curvature step size -----------------------------------------------------------------------------------

Q = np.diag([1.0, 3.0, 0.5, 8.0, 2.0, 5.0]) + 0.1 * np.ones((6, 6))  # symmetric positive definite
QB = RNG.normal(size=6)


def quadratic(params):
    x = jnp.concatenate([params["a"], params["b"].ravel()])
    return 0.5 * x @ jnp.asarray(Q, x.dtype) @ x - jnp.asarray(QB, x.dtype) @ x


def numpy_quadratic(x):
    return 0.5 * x @ Q @ x - QB @ x


quadratic_grad = jax.grad(quadratic)


@jax.jit
def curvature_update(tx, updates, params):
    return tx.update(updates, tx.init(params), params, grad_fn=quadratic_grad)


def test_curvature_step_is_the_exact_line_minimiser_on_a_quadratic(float64):
    params = unflat(X0)
    g = Q @ X0 - QB
    eta_star = (g @ g) / (g @ Q @ g)  # seed 001
    tx = scale_by_curvature_step(max_learning_rate=100.0)
    updates, state = curvature_update(tx, quadratic_grad(params), params)
    np.testing.assert_allclose(state.learning_rate, eta_star, rtol=1e-14)
    np.testing.assert_allclose(state.curvature, (g @ Q @ g) / (g @ g), rtol=1e-14)
    np.testing.assert_allclose(flat(updates), eta_star * g, rtol=1e-14)
    # scipy's minimiser of f(θ − η·g) along the line
    line = scipy.optimize.minimize_scalar(
        lambda eta: numpy_quadratic(X0 - eta * g), bracket=(0.0, 1.0), method="brent", options={"xtol": 1e-12}
    )
    np.testing.assert_allclose(state.learning_rate, line.x, rtol=1e-7)
    # the optimizer takes that step: the new gradient is orthogonal to the old one (exact line search)
    step_tx = curvature_step(max_learning_rate=100.0)
    step_updates, _ = curvature_update(step_tx, quadratic_grad(params), params)
    new_x = flat(gf.apply_updates(params, step_updates))
    np.testing.assert_allclose(new_x, X0 - eta_star * g, rtol=1e-14, atol=1e-15)
    assert abs((Q @ new_x - QB) @ g) < 1e-12 * (g @ g)


@pytest.mark.parametrize("factor", [0.25, 0.999, 1.0, 1.5, 1.99, 2.01, 2.5, 3.0])
def test_both_sides_of_the_decrease_bound(float64, factor):
    """f(θ − s·η*·g) < f(θ) iff 0 < s < 2 on a quadratic: the exact bound is 2·gᵀg/gᵀHg.

    The seed writes η < gᵀg/gᵀHg; that is sufficient, but steps up to twice it still decrease f.
    """
    params = unflat(X0)
    tx = curvature_step(scaling=factor, max_learning_rate=100.0)
    updates, _ = curvature_update(tx, quadratic_grad(params), params)
    new = numpy_quadratic(flat(gf.apply_updates(params, updates)))
    old = numpy_quadratic(X0)
    g = Q @ X0 - QB
    eta_star = (g @ g) / (g @ Q @ g)
    # the model's change, −s·η*·gᵀg + ½s²·η*²·gᵀHg = η*·gᵀg·s·(s/2 − 1), is f's change on a quadratic
    np.testing.assert_allclose(new - old, eta_star * (g @ g) * factor * (factor / 2 - 1), rtol=1e-10)
    # factors in (1, 2) exceed the seed's bound gᵀg/gᵀHg and still decrease f
    assert (new < old) == (factor < 2)


def test_the_step_at_exactly_twice_the_minimiser_returns_to_the_same_level(float64):
    params = unflat(X0)
    updates, _ = curvature_update(curvature_step(scaling=2.0, max_learning_rate=100.0), quadratic_grad(params), params)
    np.testing.assert_allclose(
        numpy_quadratic(flat(gf.apply_updates(params, updates))), numpy_quadratic(X0), rtol=1e-12
    )


def test_general_direction_uses_the_true_gradient(float64):
    """For updates u ≠ g (here clipped), η = gᵀu/uᵀHu is the minimiser of f(θ − η·u)."""
    params = unflat(X0)
    tx = gf.chain(gf.clip(0.4), scale_by_curvature_step(max_learning_rate=100.0))
    g = Q @ X0 - QB
    u = np.clip(g, -0.4, 0.4)
    assert not np.allclose(u, g)
    out, (_, state) = curvature_update(tx, quadratic_grad(params), params)
    eta = (g @ u) / (u @ Q @ u)
    np.testing.assert_allclose(state.learning_rate, eta, rtol=1e-14)
    np.testing.assert_allclose(flat(out), eta * u, rtol=1e-14)
    line = scipy.optimize.minimize_scalar(
        lambda e: numpy_quadratic(X0 - e * u), bracket=(0.0, 1.0), method="brent", options={"xtol": 1e-12}
    )
    np.testing.assert_allclose(eta, line.x, rtol=1e-7)


def test_curvature_step_on_a_non_quadratic_loss_uses_the_local_model(float64):
    params = unflat(X0)
    g = numpy_logistic_grad(X0)
    H = numpy_logistic_hessian(X0)
    tx = scale_by_curvature_step(max_learning_rate=100.0)
    updates, state = tx.update(
        jax.grad(logistic_loss)(params), tx.init(params), params, grad_fn=jax.grad(logistic_loss)
    )
    np.testing.assert_allclose(state.learning_rate, (g @ g) / (g @ H @ g), rtol=1e-13)
    np.testing.assert_allclose(flat(updates), (g @ g) / (g @ H @ g) * g, rtol=1e-13)


def test_fallbacks_non_positive_curvature_cap_and_zero_gradient(float64):
    indefinite = np.diag([2.0, -1.0, 0.0, 1.0, 1.0, 1.0])
    loss = lambda p: (
        0.5 * jnp.concatenate([p["a"], p["b"].ravel()]) @ indefinite @ jnp.concatenate([p["a"], p["b"].ravel()])
    )
    grad_fn = jax.grad(loss)
    tx = scale_by_curvature_step(max_learning_rate=0.7)

    def run(x, updates=None):
        params = unflat(x)
        updates = grad_fn(params) if updates is None else updates
        return tx.update(updates, tx.init(params), params, grad_fn=grad_fn)

    # negative curvature along g: the model is unbounded below, η = the cap
    e1 = np.eye(6)[1]
    out, state = run(e1)
    assert float(state.learning_rate) == 0.7 and float(state.curvature) == -1.0
    np.testing.assert_allclose(flat(out), 0.7 * (indefinite @ e1), rtol=1e-15)
    # positive curvature but a minimiser beyond the cap: η = the cap
    out, state = run(np.array([0.0, 0.0, 0.0, 1.0, 0.0, 0.0]))  # gᵀg/gᵀHg = 1 > 0.7
    assert float(state.learning_rate) == 0.7
    # below the cap: the minimiser itself
    out, state = run(np.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0]))  # gᵀg/gᵀHg = 1/2
    assert float(state.learning_rate) == 0.5
    # updates that point uphill (u = −g): no step along −u decreases the model, η = 0
    g = grad_fn(unflat(np.eye(6)[0]))
    out, state = run(np.eye(6)[0], jax.tree.map(jnp.negative, g))
    assert float(state.learning_rate) == 0.0 and not np.any(flat(out))
    # ... also where the curvature along u is non-positive
    out, state = run(e1, jax.tree.map(jnp.negative, grad_fn(unflat(e1))))
    assert float(state.learning_rate) == 0.0
    # a zero gradient: a zero update, not NaN
    out, state = run(np.zeros(6))
    assert np.all(flat(out) == 0) and float(state.learning_rate) == 0.0 and float(state.curvature) == 0.0
    # the gradient with respect to the scaling through a zero-gradient step is finite (no NaN from 0/0)
    zero = unflat(np.zeros(6))

    def first_update(scaling):
        opt = curvature_step(scaling, 0.7)
        return jnp.sum(opt.update(grad_fn(zero), opt.init(zero), zero, grad_fn=grad_fn)[0]["a"])

    assert float(jax.grad(first_update)(1.0)) == 0.0


def test_curvature_step_descends_a_quadratic_as_steepest_descent_with_exact_line_search(float64):
    """Twenty steps equal NumPy's exact-line-search steepest descent, step by step, and each step obeys
    the bound f(x⁺) − f* ≤ ((κ−1)/(κ+1))²·(f(x) − f*) (Nocedal & Wright, 2006, Theorem 3.3)."""
    tx = curvature_step(max_learning_rate=100.0)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(quadratic_grad(params), state, params, grad_fn=quadratic_grad)
        return gf.apply_updates(params, updates), state

    eigenvalues = np.linalg.eigvalsh(Q)
    rate = ((eigenvalues[-1] - eigenvalues[0]) / (eigenvalues[-1] + eigenvalues[0])) ** 2
    f_star = numpy_quadratic(np.linalg.solve(Q, QB))
    params, state = unflat(X0), tx.init(unflat(X0))
    x = X0.copy()
    for _ in range(20):
        params, state = step(params, state)
        g = Q @ x - QB
        gap = numpy_quadratic(x) - f_star
        x = x - (g @ g) / (g @ Q @ g) * g
        np.testing.assert_allclose(flat(params), x, rtol=1e-12, atol=1e-14)
        assert numpy_quadratic(flat(params)) - f_star <= rate * gap * (1 + 1e-12)
    assert numpy_quadratic(x) - f_star < 1e-2 * (numpy_quadratic(X0) - f_star)


def test_curvature_step_keeps_dtypes_float32_and_bfloat16():
    for dtype in (jnp.float32, jnp.bfloat16):
        params = unflat(X0, dtype)
        grad_fn = jax.grad(lambda p: quadratic(jax.tree.map(lambda x: x.astype(jnp.float32), p)))
        tx = curvature_step(max_learning_rate=100.0)
        state = tx.init(params)
        updates, new_state = tx.update(grad_fn(params), state, params, grad_fn=grad_fn)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
        assert state[0].learning_rate.dtype == jnp.float32 == new_state[0].learning_rate.dtype
        g = Q @ flat(params) - QB
        np.testing.assert_allclose(
            new_state[0].learning_rate, (g @ g) / (g @ Q @ g), rtol=1e-2 if dtype == jnp.bfloat16 else 1e-5
        )


def test_missing_grad_fn_or_params_is_an_error_that_names_them():
    params = unflat(X0, jnp.float32)
    tx = scale_by_curvature_step()
    with pytest.raises(
        ValueError, match=r"scale_by_curvature_step needs grad_fn: call update\(grads, state, params, grad_fn="
    ):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match="needs params and grad_fn"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="needs params:"):
        tx.update(params, tx.init(params), grad_fn=quadratic_grad)


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_invalid_hyperparameters_name_the_argument(bad):
    with pytest.raises(ValueError, match=r"scale_by_curvature_step: max_learning_rate must be in \[0.0, inf\)"):
        scale_by_curvature_step(bad)
    with pytest.raises(ValueError, match=r"curvature_step: scaling must be in \[0.0, inf\)"):
        curvature_step(scaling=bad)
    with pytest.raises(TypeError, match="max_learning_rate must be a number"):
        scale_by_curvature_step("1.0")
