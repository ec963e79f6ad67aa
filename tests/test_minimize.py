"""``minimize``: one compiled while loop that equals the Python loop of the same optimizer, for any optimizer.

The reference is a plain Python loop of jitted steps that computes f and ∇f afresh at every point and
stops at the same rule (‖∇f‖ < tol or max_steps): ``minimize`` must take the same number of steps to the
same point, including when it reuses the line search's last evaluation instead of computing it again.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.second_order.lbfgs import lbfgs
from gradflow.second_order.linesearch import scale_by_backtracking_linesearch
from gradflow.second_order.minimize import MinimizeResult, minimize


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def bowl(p):
    """A convex quartic bowl over a pytree of two leaves."""
    return 0.5 * jnp.sum(jnp.arange(1.0, 4.0) * p["a"] ** 2) + jnp.sum((p["b"] - 1.0) ** 4) + 0.1 * jnp.sum(p["b"] ** 2)


BOWL_START = {"a": jnp.array([1.0, -2.0, 0.5]), "b": jnp.array([3.0, -1.0])}


def python_loop(f, x0, tx, max_steps, tol):
    """The reference: jitted steps driven from Python, f and ∇f computed at every point."""

    @jax.jit  # jitted too: eagerly, ∇f and its norm cost a dispatch per operation at each of up to 500 steps
    def grad_norm(x):
        return jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(f)(x))))

    @jax.jit
    def step(x, state):
        value, grad = jax.value_and_grad(f)(x)
        updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f, grad_fn=jax.grad(f))
        return gf.apply_updates(x, updates), state

    x, state, steps = x0, tx.init(x0), 0
    while steps < max_steps and not float(grad_norm(x)) < tol:
        x, state = step(x, state)
        steps += 1
    return x, steps


@pytest.mark.parametrize(
    ("f", "x0", "make", "max_steps", "tol"),
    [
        (rosenbrock, jnp.array([-1.2, 1.0]), lambda: lbfgs(), 100, 1e-9),  # reuses the zoom's evaluation
        (
            rosenbrock,
            jnp.array([-1.2, 1.0]),
            lambda: lbfgs(linesearch=scale_by_backtracking_linesearch(30, store_grad=True)),
            200,
            1e-9,
        ),
        (rosenbrock, jnp.array([-1.2, 1.0]), lambda: lbfgs(linesearch=scale_by_backtracking_linesearch(30)), 200, 1e-9),
        (bowl, BOWL_START, lambda: lbfgs(memory_size=3), 100, 1e-10),
        (bowl, BOWL_START, lambda: gf.sgd(0.1), 500, 1e-6),
        (bowl, BOWL_START, lambda: gf.sgd(0.05, momentum=0.9), 500, 1e-6),
        (bowl, BOWL_START, lambda: gf.adam(0.05), 60, 1e-6),  # stops at max_steps
        (bowl, BOWL_START, lambda: gf.nag(0.05, momentum=0.9), 500, 1e-6),  # needs grad_fn
    ],
    ids=[
        "lbfgs",
        "lbfgs_backtracking_store_grad",
        "lbfgs_backtracking",
        "lbfgs_pytree",
        "sgd",
        "sgd_momentum",
        "adam",
        "nag",
    ],
)
def test_minimize_equals_the_python_loop(f, x0, make, max_steps, tol):
    with jax.enable_x64(True):
        x0 = jax.tree.map(lambda x: x.astype(jnp.float64), x0)
        result = minimize(f, x0, make(), max_steps=max_steps, tol=tol)
        expected, steps = python_loop(f, x0, make(), max_steps, tol)
        assert isinstance(result, MinimizeResult)
        assert int(result.num_steps) == steps
        for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result.value, f(expected), rtol=1e-9, atol=1e-14)
        grad_norm = np.sqrt(sum(np.sum(np.asarray(g) ** 2) for g in jax.tree.leaves(jax.grad(f)(expected))))
        np.testing.assert_allclose(result.grad_norm, grad_norm, rtol=1e-6, atol=1e-14)
        assert bool(result.converged) == (grad_norm < tol)
        assert bool(result.converged) == (steps < max_steps)  # each case either converges or runs out of steps


def test_minimize_compiles_once():
    """New starting points, learning rates, max_steps and tol reuse the compiled loop: fun is traced once."""
    traces = []

    def f(w):
        traces.append(1)
        return jnp.sum((w - 1.0) ** 4) + jnp.sum(w**2)

    results = [minimize(f, jnp.array([3.0, -1.0]), gf.sgd(0.05), max_steps=50, tol=1e-3)]
    after_first = len(traces)
    results.append(minimize(f, jnp.array([0.5, 2.0]), gf.sgd(0.01), max_steps=80, tol=1e-4))
    results.append(minimize(f, jnp.array([-1.0, 1.0]), gf.sgd(0.1), max_steps=10, tol=0.0))
    assert len(traces) == after_first and 1 <= after_first <= 3
    assert int(results[-1].num_steps) == 10  # max_steps and tol really are arguments of the compiled loop
    lbfgs_results = [minimize(f, x, lbfgs(), tol=1e-6) for x in (jnp.array([3.0, -1.0]), jnp.array([0.1, 0.2]))]
    assert all(bool(r.converged) for r in lbfgs_results)
    assert len(traces) <= after_first + 3  # one new program for the new optimizer structure, then none


def test_minimize_over_a_batch_of_learning_rates():
    """Optimizers are data: vmap runs one solve per learning rate in one program, equal to separate solves."""
    lrs = jnp.array([0.02, 0.05, 0.1])
    solve = lambda lr: minimize(bowl, BOWL_START, gf.sgd(lr), max_steps=300, tol=1e-4)
    batched = jax.vmap(solve)(lrs)
    for i, lr in enumerate(lrs):
        single = solve(float(lr))
        assert int(batched.num_steps[i]) == int(single.num_steps)
        for a, b in zip(jax.tree.leaves(batched.params), jax.tree.leaves(single.params)):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    assert len(set(np.asarray(batched.num_steps).tolist())) == 3


def test_minimize_edge_cases():
    x0 = jnp.array([3.0, -1.0])
    f = lambda w: jnp.sum(w**4)
    zero = minimize(f, x0, gf.sgd(0.1), max_steps=0)
    np.testing.assert_array_equal(zero.params, x0)
    assert int(zero.num_steps) == 0 and not bool(zero.converged)
    blow_up = minimize(f, x0, gf.sgd(10.0), max_steps=100)  # overflows to inf, then stops
    assert not bool(blow_up.converged) and int(blow_up.num_steps) < 100
    assert not np.isfinite(float(blow_up.value))
    at_minimum = minimize(f, jnp.zeros(2), lbfgs(), max_steps=10)
    assert int(at_minimum.num_steps) == 0 and bool(at_minimum.converged)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_steps": -1}, ValueError, "max_steps"),
        ({"max_steps": 2.5}, TypeError, "max_steps"),
        ({"tol": -1.0}, ValueError, "tol"),
    ],
)
def test_minimize_validates_arguments(kwargs, error, name):
    with pytest.raises(error, match=name):
        minimize(rosenbrock, jnp.array([-1.2, 1.0]), lbfgs(), **kwargs)


def test_minimize_checks_the_optimizer_s_hyperparameters_before_it_runs():
    """A value outside its range that skipped the factory's check (a rebuilt tree) is an error naming it,
    as in run; the compiled loop then need not check the ranges again at every step."""
    adam = gf.adam(0.1)
    leaves = jax.tree.leaves(adam)
    b1 = leaves.index(0.9)
    bad = jax.tree.unflatten(jax.tree.structure(adam), [*leaves[:b1], 1.5, *leaves[b1 + 1 :]])
    with pytest.raises(ValueError, match=r"minimize: b1 \(at .*decay\) must be in \[0.0, 1.0\), got 1.5"):
        minimize(rosenbrock, jnp.array([-1.2, 1.0]), bad)


def test_minimize_rejects_integer_start_and_non_function():
    with pytest.raises(TypeError, match="x0"):
        minimize(rosenbrock, jnp.array([1, 2]), lbfgs())
    with pytest.raises(TypeError, match="fun"):
        minimize("rosenbrock", jnp.array([1.0, 2.0]), lbfgs())
