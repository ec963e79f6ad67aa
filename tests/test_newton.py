"""Newton's method on Hessian-vector products (gradflow.second_order.newton), in float64 unless noted.

- ``conjugate_gradient``: every iterate equals ``scipy.sparse.linalg.cg``'s (its callback), the early
  stop on the relative residual takes scipy's number of steps, and non-positive curvature stops the
  iteration as Nocedal & Wright's Algorithm 7.1 does (a NumPy implementation of it is the reference).
- ``scale_by_newton`` / ``newton``: one step solves a strongly convex quadratic over a pytree to machine
  precision with both solvers; the output is ``np.linalg.solve(H + λI, g)`` (H and g written by hand in
  NumPy) for several dampings, and tends to g/λ; the transform's CG iterates are scipy's on H + λI;
  ``jax.grad`` through the CG loop with respect to the damping matches −cᵀ(H + λI)⁻²g and central
  differences (``check_grads``).
- Rosenbrock from (−1.2, 1): pure Newton follows NumPy's Newton iteration (scipy's ``rosen_der`` /
  ``rosen_hess``) and converges in 6 steps; Newton with a backtracking line search and Newton with
  adaptive (Levenberg-Marquardt) damping converge monotonically in about 21 steps, fewer than
  ``scipy.optimize.minimize(method="Newton-CG")`` — and the adaptive damping reuses one compiled step.
- dtypes, errors that name ``grad_fn`` / ``params`` and the invalid hyperparameters.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.sparse.linalg

import gradflow as gf
from gradflow.second_order import NewtonState, conjugate_gradient, newton, scale_by_newton


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


RNG = np.random.default_rng(1)


def spd_matrix(n, condition, rng):
    """A symmetric positive definite matrix with eigenvalues log-spaced over [1, condition]."""
    basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return basis @ np.diag(np.logspace(0, np.log10(condition), n)) @ basis.T


def scipy_cg_iterates(matrix, b, maxiter, rtol=0.0):
    iterates = []  # scipy updates its iterate in place: copy it at each callback
    x, _ = scipy.sparse.linalg.cg(
        matrix, b, rtol=rtol, atol=0.0, maxiter=maxiter, callback=lambda xk: iterates.append(np.copy(xk))
    )
    return x, iterates


def numpy_truncated_cg(matrix, b, tolerance, max_iterations):
    """Nocedal & Wright, Algorithm 7.1's inner loop: CG on A·x = b that stops at pᵀAp ≤ 0."""
    x, r, p = np.zeros_like(b), b.copy(), b.copy()
    for j in range(max_iterations):
        if np.linalg.norm(r) <= tolerance * np.linalg.norm(b):
            return x, j, False
        curvature = p @ matrix @ p
        if curvature <= 0:
            return (b.copy() if j == 0 else x), j, True
        alpha = (r @ r) / curvature
        x = x + alpha * p
        r_next = r - alpha * matrix @ p
        p = r_next + (r_next @ r_next) / (r @ r) * p
        r = r_next
    return x, max_iterations, False


cg_jit = jax.jit(conjugate_gradient, static_argnames=("matvec", "max_iterations"))


class MatVec:
    """A hashable matrix-vector product (a static argument of ``cg_jit``)."""

    def __init__(self, matrix):
        self.matrix = matrix

    def __call__(self, v):
        return jnp.asarray(self.matrix) @ v


# --- conjugate gradient -------------------------------------------------------------------------------------


def test_cg_iterates_match_scipy(float64):
    rng = np.random.default_rng(10)
    M = spd_matrix(6, 50.0, rng)
    b = rng.normal(size=6)
    _, reference = scipy_cg_iterates(M, b, maxiter=6)
    assert len(reference) == 6
    matvec = MatVec(M)
    for k in range(1, 7):
        result = cg_jit(matvec, jnp.asarray(b), tolerance=0.0, max_iterations=k)
        np.testing.assert_allclose(result.x, reference[k - 1], rtol=1e-11, atol=1e-13)
        assert int(result.iterations) == k and not bool(result.negative_curvature)
    np.testing.assert_allclose(result.x, np.linalg.solve(M, b), rtol=1e-11)
    # more iterations than n: the loop stops once the residual vanishes, and stays at the solution
    result = cg_jit(matvec, jnp.asarray(b), tolerance=1e-12, max_iterations=15)
    assert int(result.iterations) <= 7
    np.testing.assert_allclose(result.x, np.linalg.solve(M, b), rtol=1e-11)


@pytest.mark.parametrize(("tolerance", "steps"), [(1e-1, 6), (1e-2, 9), (1e-4, 10)])
def test_cg_stops_on_the_relative_residual_after_scipys_number_of_steps(float64, tolerance, steps):
    # CG amplifies rounding differences (a different summation order) step by step, the more so the
    # worse the conditioning: a moderate condition number keeps the comparison with scipy tight.
    rng = np.random.default_rng(0)
    M = spd_matrix(10, 30.0, rng)
    b = rng.normal(size=10)
    x, reference = scipy_cg_iterates(M, b, maxiter=100, rtol=tolerance)
    result = cg_jit(MatVec(M), jnp.asarray(b), tolerance=tolerance, max_iterations=100)
    assert int(result.iterations) == len(reference) == steps
    np.testing.assert_allclose(result.x, x, rtol=1e-10, atol=1e-13)
    assert np.linalg.norm(b - M @ np.asarray(result.x)) <= tolerance * np.linalg.norm(b)


def test_cg_stops_at_non_positive_curvature_like_nocedal_wright(float64):
    eigenvalues = np.array([4.0, 3.0, 2.0, 1.0, -0.3, -2.0])
    basis, _ = np.linalg.qr(np.random.default_rng(11).normal(size=(6, 6)))
    M = basis @ np.diag(eigenvalues) @ basis.T
    # a right-hand side with bᵀMb > 0 whose Krylov space meets negative curvature later
    b = basis @ np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.3])
    assert b @ M @ b > 0
    x, iterations, negative = numpy_truncated_cg(M, b, 0.0, 6)
    assert negative and iterations > 0
    result = cg_jit(MatVec(M), jnp.asarray(b), tolerance=0.0, max_iterations=6)
    assert bool(result.negative_curvature) and int(result.iterations) == iterations
    np.testing.assert_allclose(result.x, x, rtol=1e-12)
    assert b @ np.asarray(result.x) > 0  # still a descent direction for the step −x
    # negative curvature at the first step: the result is b itself (steepest descent)
    b = basis @ np.array([0.1, 0.0, 0.0, 0.0, 0.0, 1.0])
    result = cg_jit(MatVec(M), jnp.asarray(b), tolerance=0.0, max_iterations=6)
    assert bool(result.negative_curvature) and int(result.iterations) == 0
    np.testing.assert_array_equal(result.x, b)


def test_cg_zero_right_hand_side_and_shape_error(float64):
    result = cg_jit(MatVec(np.eye(3)), jnp.zeros(3), tolerance=0.0, max_iterations=3)
    assert np.all(np.asarray(result.x) == 0) and int(result.iterations) == 0
    with pytest.raises(ValueError, match=r"conjugate_gradient: b must be a 1-D array, got shape \(2, 2\)"):
        conjugate_gradient(lambda v: v, jnp.ones((2, 2)))


# --- a pytree problem with a Hessian written by hand ---------------------------------------------------------

A = RNG.normal(size=(5, 6))
Y = RNG.normal(size=5)
C = 0.2


def unflat(x, dtype=jnp.float64):
    """(a₀, a₁, b₀₀, b₀₁, b₁₀, b₁₁) -> {"a": (2,), "b": (2, 2)}, the ``ravel_pytree`` order."""
    x = np.asarray(x)
    return {"a": jnp.asarray(x[:2], dtype), "b": jnp.asarray(x[2:].reshape(2, 2), dtype)}


def flat(tree):
    return np.concatenate([np.ravel(np.asarray(tree["a"], np.float64)), np.ravel(np.asarray(tree["b"], np.float64))])


def logcosh_loss(params):
    """Σ log cosh(A·x − y) + (C/4)·Σx⁴ over the parameters in the order above."""
    x = jnp.concatenate([params["a"], params["b"].ravel()])
    z = jnp.asarray(A, x.dtype) @ x - jnp.asarray(Y, x.dtype)
    return jnp.sum(jnp.logaddexp(z, -z) - jnp.log(2.0)) + 0.25 * C * jnp.sum(x**4)


def numpy_grad(x):
    return A.T @ np.tanh(A @ x - Y) + C * x**3


def numpy_hessian(x):
    t = np.tanh(A @ x - Y)
    return A.T @ np.diag(1 - t**2) @ A + 3 * C * np.diag(x**2)


logcosh_grad = jax.grad(logcosh_loss)
X0 = RNG.normal(size=6)


@jax.jit
def newton_update(tx, params):
    return tx.update(logcosh_grad(params), tx.init(params), params, grad_fn=logcosh_grad)


# --- the transform and the optimizer -------------------------------------------------------------------------

Q = spd_matrix(6, 100.0, RNG)
QB = RNG.normal(size=6)


def quadratic(params):
    x = jnp.concatenate([params["a"], params["b"].ravel()])
    return 0.5 * x @ jnp.asarray(Q, x.dtype) @ x - jnp.asarray(QB, x.dtype) @ x


@pytest.mark.parametrize("solver", ["cg", "dense"])
def test_one_step_solves_a_strongly_convex_quadratic(float64, solver):
    # n = 6 CG steps solve the system in exact arithmetic; in floating point a few more bring the
    # residual to rounding level (κ(Q) = 100).
    tx = newton(1.0, 0.0, solver=solver, max_cg_iterations=12, tolerance=1e-15)
    params = unflat(np.random.default_rng(12).normal(size=6))
    grad_fn = jax.grad(quadratic)
    updates, state = tx.update(grad_fn(params), tx.init(params), params, grad_fn=grad_fn)
    new = gf.apply_updates(params, updates)
    minimiser = np.linalg.solve(Q, QB)
    np.testing.assert_allclose(flat(new), minimiser, rtol=1e-13, atol=1e-14)
    assert np.linalg.norm(flat(grad_fn(new))) < 1e-12 * np.linalg.norm(QB)
    newton_state = state[0]
    assert isinstance(newton_state, NewtonState)
    assert 6 <= int(newton_state.cg_iterations) <= 12 if solver == "cg" else int(newton_state.cg_iterations) == 0


@pytest.mark.parametrize("solver", ["cg", "dense"])
@pytest.mark.parametrize("damping", [0.1, 1.0, 10.0])
def test_damping_solves_the_shifted_system(float64, solver, damping):
    """The output of scale_by_newton is (H + λI)⁻¹g; newton's update is −η times it."""
    params = unflat(X0)
    H, g = numpy_hessian(X0), numpy_grad(X0)
    expected = np.linalg.solve(H + damping * np.eye(6), g)
    tx = scale_by_newton(damping, solver=solver, max_cg_iterations=6, tolerance=0.0)
    out, state = newton_update(tx, params)
    np.testing.assert_allclose(flat(out), expected, rtol=1e-11, atol=1e-13)
    assert not bool(state.negative_curvature)
    optimizer = newton(0.5, damping, solver=solver, max_cg_iterations=6, tolerance=0.0)
    out, _ = newton_update(optimizer, params)
    np.testing.assert_allclose(flat(out), -0.5 * expected, rtol=1e-11, atol=1e-13)


def test_large_damping_tends_to_a_gradient_step(float64):
    """(H + λI)⁻¹g = g/λ − H·g/λ² + ...: λ·d → g with an error of at most ‖H‖/(λ − ‖H‖)."""
    params = unflat(X0)
    g, norm_h = numpy_grad(X0), np.linalg.norm(numpy_hessian(X0), 2)
    errors = []
    for damping in (1e2, 1e4):
        out, _ = newton_update(scale_by_newton(damping, max_cg_iterations=6, tolerance=0.0), params)
        errors.append(np.linalg.norm(damping * flat(out) - g) / np.linalg.norm(g))
        assert errors[-1] <= norm_h / (damping - norm_h)
    assert 50 < errors[0] / errors[1] < 200  # the error falls like 1/λ


def test_transform_cg_iterates_match_scipy_on_the_damped_hessian(float64):
    damping = 1.0
    M = numpy_hessian(X0) + damping * np.eye(6)
    _, reference = scipy_cg_iterates(M, numpy_grad(X0), maxiter=6)
    for k in range(1, 7):
        out, state = newton_update(scale_by_newton(damping, max_cg_iterations=k, tolerance=0.0), unflat(X0))
        np.testing.assert_allclose(flat(out), reference[k - 1], rtol=1e-10, atol=1e-12)
        assert int(state.cg_iterations) == k


def test_grad_through_cg_with_respect_to_damping(float64):
    """d/dλ cᵀ(H + λI)⁻¹g = −cᵀ(H + λI)⁻²g, through the unrolled CG loop (and by central differences)."""
    params = unflat(X0)
    c = np.random.default_rng(13).normal(size=6)
    H, g = numpy_hessian(X0), numpy_grad(X0)

    def projected(damping):
        tx = scale_by_newton(damping, max_cg_iterations=6, tolerance=0.0)
        out, _ = tx.update(logcosh_grad(params), tx.init(params), params, grad_fn=logcosh_grad)
        return jnp.concatenate([out["a"], out["b"].ravel()]) @ jnp.asarray(c)

    damping = 0.3
    shifted = H + damping * np.eye(6)
    expected = -c @ np.linalg.solve(shifted, np.linalg.solve(shifted, g))
    np.testing.assert_allclose(jax.jit(jax.grad(projected))(damping), expected, rtol=1e-9)
    # jitted: check_grads also evaluates the function and its gradient, which eagerly compile the CG loop op by op
    gf.check_grads(jax.jit(projected), jnp.asarray(damping)).raise_if_failed()


def test_vmap_over_dampings_equals_a_loop(float64):
    dampings = jnp.array([0.1, 1.0, 5.0])
    batch = jax.vmap(lambda lam: scale_by_newton(lam, max_cg_iterations=6, tolerance=1e-8))(dampings)
    outs, states = jax.vmap(newton_update, in_axes=(0, None))(batch, unflat(X0))
    for i, lam in enumerate(dampings):
        single, state = newton_update(scale_by_newton(float(lam), max_cg_iterations=6, tolerance=1e-8), unflat(X0))
        np.testing.assert_allclose(flat({k: x[i] for k, x in outs.items()}), flat(single), rtol=1e-12)
        assert int(states.cg_iterations[i]) == int(state.cg_iterations)


@pytest.mark.parametrize("solver", ["cg", "dense"])
def test_dtypes_follow_the_updates(solver):
    params = {"a": jnp.asarray(X0[:2], jnp.bfloat16), "b": jnp.asarray(X0[2:].reshape(2, 2), jnp.float32)}

    def loss(p):
        return logcosh_loss({"a": p["a"].astype(jnp.float32), "b": p["b"]})

    grad_fn = jax.grad(loss)
    tx = newton(1.0, 1.0, solver=solver, max_cg_iterations=6)
    updates, state = tx.update(grad_fn(params), tx.init(params), params, grad_fn=grad_fn)
    assert updates["a"].dtype == jnp.bfloat16 and updates["b"].dtype == jnp.float32
    expected = -np.linalg.solve(numpy_hessian(flat(params)) + np.eye(6), numpy_grad(flat(params)))
    np.testing.assert_allclose(flat(updates), expected, rtol=3e-2, atol=3e-2)  # bfloat16 inputs
    assert jax.tree.structure(state) == jax.tree.structure(tx.init(params))


# --- Rosenbrock from (−1.2, 1) -------------------------------------------------------------------------------


def rosenbrock(x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


rosenbrock_grad = jax.grad(rosenbrock)
START = np.array([-1.2, 1.0])


@jax.jit
def rosenbrock_step(tx, params):
    """One optimizer step from scratch state (the transforms used here keep no state between steps)."""
    updates, _ = tx.update(rosenbrock_grad(params), tx.init(params), params, grad_fn=rosenbrock_grad)
    return updates


def scipy_newton_cg_iterations():
    result = scipy.optimize.minimize(
        scipy.optimize.rosen,
        START,
        jac=scipy.optimize.rosen_der,
        hessp=scipy.optimize.rosen_hess_prod,
        method="Newton-CG",
        options={"xtol": 1e-10},
    )
    assert result.success and np.allclose(result.x, 1.0, atol=1e-8)
    return result.nit


@pytest.mark.parametrize("solver", ["cg", "dense"])
def test_pure_newton_on_rosenbrock_follows_numpy_and_converges_in_six_steps(float64, solver):
    tx = newton(1.0, 0.0, solver=solver, max_cg_iterations=2, tolerance=0.0)
    params, x = jnp.asarray(START), START.copy()
    for _ in range(6):
        params = params + rosenbrock_step(tx, params)
        x = x - np.linalg.solve(scipy.optimize.rosen_hess(x), scipy.optimize.rosen_der(x))
        np.testing.assert_allclose(params, x, rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(np.asarray(params) - 1.0) < 1e-9
    assert 6 < scipy_newton_cg_iterations()


@pytest.mark.parametrize("solver", ["cg", "dense"])
def test_newton_with_backtracking_line_search_on_rosenbrock(float64, solver):
    """θ ← θ + α·u, α halved from 1 until Armijo's condition f(θ + αu) ≤ f(θ) + 10⁻⁴·α·gᵀu holds."""
    tx = newton(1.0, 0.0, solver=solver, max_cg_iterations=2, tolerance=0.0)
    params = jnp.asarray(START)
    value = rosenbrock(params)
    iterations = 0
    while np.linalg.norm(np.asarray(params) - 1.0) > 1e-10:
        u = rosenbrock_step(tx, params)
        slope = float(rosenbrock_grad(params) @ u)
        assert slope < 0  # a descent direction at every step
        alpha = 1.0
        while rosenbrock(params + alpha * u) > value + 1e-4 * alpha * slope:
            alpha /= 2
        params = params + alpha * u
        new_value = rosenbrock(params)
        assert new_value < value
        value, iterations = new_value, iterations + 1
        assert iterations <= 30
    assert iterations < scipy_newton_cg_iterations()


def test_newton_with_adaptive_damping_on_rosenbrock_compiles_once(float64):
    """Levenberg-Marquardt: λ ← λ/3 after a step that lowers f, λ ← 2λ (and no step) otherwise.

    The damping is a leaf of the optimizer, so the jitted step is compiled once for every λ.
    """
    traces = []

    @jax.jit
    def step(tx, params):
        traces.append(1)
        updates, _ = tx.update(rosenbrock_grad(params), tx.init(params), params, grad_fn=rosenbrock_grad)
        return gf.apply_updates(params, updates)

    params, damping = jnp.asarray(START), 1.0
    value, accepted, dampings = rosenbrock(params), 0, set()
    while np.linalg.norm(np.asarray(params) - 1.0) > 1e-10:
        candidate = step(newton(1.0, damping, max_cg_iterations=2, tolerance=0.0), params)
        dampings.add(damping)
        if rosenbrock(candidate) < value:
            params, value, damping, accepted = candidate, rosenbrock(candidate), damping / 3, accepted + 1
        else:
            damping *= 2
        assert accepted <= 30 and len(dampings) <= 100
    assert len(traces) == 1 and len(dampings) > 10
    assert accepted < scipy_newton_cg_iterations()


# --- errors --------------------------------------------------------------------------------------------------


def test_missing_grad_fn_or_params_is_an_error_that_names_them():
    params = unflat(X0, jnp.float32)
    for tx in (scale_by_newton(1.0), newton(1.0, 1.0, solver="dense")):
        with pytest.raises(
            ValueError, match=r"scale_by_newton needs grad_fn: call update\(grads, state, params, grad_fn="
        ):
            tx.update(params, tx.init(params), params)
        with pytest.raises(ValueError, match="scale_by_newton needs params and grad_fn"):
            tx.update(params, tx.init(params))


def test_mismatched_updates_name_the_path():
    params = unflat(X0, jnp.float32)
    tx = scale_by_newton(1.0)
    with pytest.raises(gf.tree.TreeMismatchError, match=r"updates\['b'\] has shape \(4,\)"):
        tx.update({"a": jnp.ones(2), "b": jnp.ones(4)}, tx.init(params), params, grad_fn=logcosh_grad)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"damping": -1.0}, ValueError, r"scale_by_newton: damping must be in \[0.0, inf\), got -1.0"),
        ({"damping": math.nan}, ValueError, "damping must be in"),
        ({"tolerance": -1e-3}, ValueError, r"scale_by_newton: tolerance must be in \[0.0, inf\)"),
        ({"max_cg_iterations": 0}, ValueError, "max_cg_iterations must be an integer >= 1, got 0"),
        ({"max_cg_iterations": 2.5}, TypeError, r"max_cg_iterations must be an integer >= 1, got 2.5"),
        ({"max_cg_iterations": True}, TypeError, "max_cg_iterations must be an integer >= 1, got True"),
        ({"solver": "qr"}, ValueError, "scale_by_newton: solver must be one of 'cg', 'dense', got 'qr'"),
    ],
)
def test_invalid_hyperparameters_name_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        scale_by_newton(**kwargs)
    with pytest.raises(error, match=message):
        newton(1.0, **kwargs)


def test_invalid_learning_rate_names_it():
    with pytest.raises(ValueError, match=r"newton: learning_rate must be in \[0.0, inf\), got -0.1"):
        newton(-0.1)
