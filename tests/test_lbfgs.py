"""L-BFGS against independent references.

- the two-loop recursion (Nocedal & Wright, Algorithm 7.4) against a NumPy float64 implementation with
  a deque of the last steps' pairs, step by step, on a pytree of two leaves, through the ring buffer's
  wrap-around and with pairs of negative curvature that must be skipped;
- the state against optax's, slot for slot (its layout: ``memory_size`` rows, no pair counter);
- ``scale_by_lbfgs`` and ``lbfgs`` against optax's numbers where the rule is the same (float32 and float64);
- ``lbfgs`` against ``scipy.optimize.minimize`` (L-BFGS-B and BFGS) on Rosenbrock, Himmelblau, Matyas and
  Zakharov: the same minimiser and iteration counts in the same concrete range;
- the laws that the registry cannot check in float32 (see tests/registry_second_order_lbfgs.py), in float64;
- errors naming the argument, optax's signatures.
"""

from __future__ import annotations

import collections
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from conftest import describe, loss, make_params
from registry_second_order_lbfgs import OPTIMIZERS as REGISTRY

import gradflow as gf
from gradflow.second_order.lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from gradflow.second_order.linesearch import scale_by_backtracking_linesearch, scale_by_zoom_linesearch
from gradflow.second_order.minimize import minimize


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def himmelblau(w):
    return (w[0] ** 2 + w[1] - 11) ** 2 + (w[0] + w[1] ** 2 - 7) ** 2


def matyas(w):
    return 0.26 * (w[0] ** 2 + w[1] ** 2) - 0.48 * w[0] * w[1]


def zakharov(w):
    s = jnp.sum(0.5 * jnp.arange(1, w.shape[0] + 1) * w)
    return jnp.sum(w**2) + s**2 + s**4


# --- the two-loop recursion against NumPy ----------------------------------------------------------------------------


class NumpyLBFGS:
    """Algorithm 7.4 of Nocedal & Wright in float64 on flat vectors, with the pair rule of scale_by_lbfgs.

    The memory holds one entry per step of the last ``memory_size`` steps: the pair (s, y, ρ), or ``None``
    where there was no pair (the first step) or it was skipped (⟨s, y⟩ ≤ ε⟨y, y⟩).
    """

    def __init__(self, memory_size, scale_init_precond):
        self.entries = collections.deque(maxlen=memory_size)
        self.scale_init_precond = scale_init_precond
        self.previous = None
        self.skipped = 0

    @property
    def pairs(self):
        return [entry for entry in self.entries if entry is not None]

    def direction(self, x, g):
        entry = None
        if self.previous is not None:
            s, y = x - self.previous[0], g - self.previous[1]
            if s @ y > np.finfo(np.float64).eps * (y @ y):
                entry = (s, y, 1.0 / (s @ y))
            else:
                self.skipped += 1
        self.entries.append(entry)
        self.previous = (x, g)
        pairs = self.pairs
        if not self.scale_init_precond:
            gamma = 1.0
        elif pairs:
            s, y, _ = pairs[-1]
            gamma = (s @ y) / (y @ y)
        else:
            gamma = min(1.0, 1.0 / np.linalg.norm(g))
        q, alphas = g.copy(), []
        for s, y, rho in reversed(pairs):
            alphas.append(rho * (s @ q))
            q = q - alphas[-1] * y
        r = gamma * q
        for (s, y, rho), alpha in zip(pairs, reversed(alphas)):
            r = r + (alpha - rho * (y @ r)) * s
        return r


def double_well(x):
    """Non-convex (curvature 12x² − 4 < 0 for |x| < 0.58) with a coupling: some pairs have ⟨s, y⟩ < 0."""
    a = jnp.asarray(np.random.default_rng(1).normal(size=(8, 8)))
    return jnp.sum((x**2 - 1) ** 2) + 0.05 * x @ (a @ a.T) @ x + 0.3 * jnp.sum(x)


@pytest.mark.parametrize("scale_init_precond", [True, False])
def test_two_loop_recursion_matches_numpy_step_by_step(scale_init_precond):
    """12 steps, memory 3, a pytree of two leaves; points on a random walk, gradients of a non-convex function."""
    rng = np.random.default_rng(0)
    flat = lambda p: jnp.concatenate([p["w"].ravel(), p["b"]])
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(lambda p: double_well(flat(p))))
        tx = scale_by_lbfgs(memory_size=3, scale_init_precond=scale_init_precond)
        update = jax.jit(tx.update)
        reference = NumpyLBFGS(3, scale_init_precond)
        point = {"w": jnp.asarray(0.8 * rng.normal(size=(3, 2))), "b": jnp.asarray(0.8 * rng.normal(size=2))}
        state = tx.init(point)
        for _ in range(12):
            g = grad(point)
            direction, state = update(g, state, point)
            expected = reference.direction(np.asarray(flat(point)), np.asarray(flat(g)))
            np.testing.assert_allclose(flat(direction), expected, rtol=1e-11, atol=1e-13)
            assert direction["w"].shape == (3, 2) and direction["w"].dtype == jnp.float64
            # the ring, newest row first (the update with count k wrote row (k − 1) % 3, and state.count = k + 1
            # now), holds the reference's entries, newest first
            rows = [(int(state.count) - 2 - k) % 3 for k in range(len(reference.entries))]
            rhos = [0.0 if entry is None else entry[2] for entry in reversed(reference.entries)]
            np.testing.assert_allclose(np.asarray(state.weights_memory)[rows], rhos, rtol=1e-11)
            point = jax.tree.map(lambda p: p + 0.2 * jnp.asarray(rng.normal(size=p.shape)), point)
        assert len(reference.pairs) + reference.skipped > 3  # the ring buffer wrapped around
        assert reference.skipped >= 2  # pairs of negative curvature were skipped


def test_skipped_pair_leaves_the_stored_pairs_unchanged():
    """A step along which the gradient decreases (⟨s, y⟩ < 0) stores an empty row and keeps the previous γ."""
    with jax.enable_x64(True):
        tx = scale_by_lbfgs(memory_size=4)
        x0, x1, x2 = jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]), jnp.array([2.0, 0.0])
        g0, g1, g2 = jnp.array([1.0, 1.0]), jnp.array([3.0, 1.0]), jnp.array([2.0, 1.0])  # ⟨s, y⟩ = 2, then −1
        _, state = tx.update(g0, tx.init(x0), x0)  # row 3: empty (no pair at the first step)
        _, state = tx.update(g1, state, x1)  # row 0: s = (1, 0), y = (2, 0), ρ = 1/2
        assert np.count_nonzero(state.weights_memory) == 1 and float(state.weights_memory[0]) == 0.5
        direction, skipped = tx.update(g2, state, x2)  # row 1: empty
        assert int(skipped.count) == 3 and np.count_nonzero(skipped.weights_memory) == 1
        before = (state.diff_params_memory, state.diff_updates_memory, state.weights_memory)
        after = (skipped.diff_params_memory, skipped.diff_updates_memory, skipped.weights_memory)
        for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
            np.testing.assert_array_equal(a, b)  # the skipped pair's row was already empty: nothing changed
        assert float(skipped.weights_memory[1]) == 0.0
        # H·g with the single pair s = (1, 0), y = (2, 0) and γ = ⟨s, y⟩/⟨y, y⟩ = 1/2: H = diag(1/2, 1/2).
        np.testing.assert_allclose(direction, 0.5 * g2, rtol=1e-15)


def test_a_skipped_pair_takes_its_steps_slot():
    """Memory 2: pairs from the steps 1 and 2, a skipped one at step 3: only step 2's pair is left."""
    with jax.enable_x64(True):
        tx = scale_by_lbfgs(memory_size=2)
        xs = [jnp.array([0.0, 0.0]), jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]), jnp.array([2.0, 1.0])]
        gs = [jnp.array([0.0, 0.0]), jnp.array([2.0, 0.0]), jnp.array([2.0, 4.0]), jnp.array([1.0, 4.0])]
        state = tx.init(xs[0])
        for x, g in zip(xs, gs):
            direction, state = tx.update(g, state, x)
        np.testing.assert_array_equal(state.weights_memory, [0.0, 0.25])  # row 0: skipped; row 1: s = (0, 1)
        # H from the pair s = (0, 1), y = (0, 4) alone, γ = 1/4: H = diag(1/4, 1/4)
        np.testing.assert_allclose(direction, 0.25 * gs[-1], rtol=1e-15)


# --- optax's numbers -------------------------------------------------------------------------------------------------


def quadratic_problem(dtype):
    rng = np.random.default_rng(2)
    m = rng.normal(size=(6, 6))
    a = jnp.asarray(m @ m.T / 6 + 0.5 * np.eye(6), dtype)
    b = jnp.asarray(rng.normal(size=6), dtype)
    return lambda x: 0.5 * x @ a @ x - b @ x + 0.1 * jnp.sum(x**4), jnp.asarray(rng.normal(size=6), dtype)


@pytest.mark.parametrize("scale_init_precond", [True, False])
def test_scale_by_lbfgs_matches_optax(scale_init_precond):
    """A fixed step −0.3·H·g, memory 4, 14 steps on a convex function: optax's directions (float32)."""
    f, x = quadratic_problem(jnp.float32)
    ours = gf.chain(scale_by_lbfgs(4, scale_init_precond), gf.scale(-0.3))
    theirs = optax.chain(optax.scale_by_lbfgs(4, scale_init_precond), optax.scale(-0.3))
    ours_step = jax.jit(lambda a, s: ours.update(jax.grad(f)(a), s, a))
    theirs_step = jax.jit(lambda b, t: theirs.update(jax.grad(f)(b), t, b))
    a, b = x, x
    s, t = ours.init(a), theirs.init(b)
    assert describe(s) == describe(t)
    for step in range(14):
        (u, s), (o, t) = ours_step(a, s), theirs_step(b, t)
        np.testing.assert_allclose(u, o, rtol=2e-5, atol=1e-6)
        for name in ScaleByLBFGSState._fields:  # the state, slot for slot
            np.testing.assert_allclose(getattr(s[0], name), getattr(t[0], name), rtol=1e-4, atol=1e-6, err_msg=name)
        assert describe(s) == describe(t), f"step {step}"
        a, b = gf.apply_updates(a, u), optax.apply_updates(b, o)
    assert bool(np.all(np.asarray(s[0].weights_memory) > 0))  # every pair was stored, as optax stores them


def test_state_layout_is_optax_and_an_optax_state_continues_in_gradflow():
    """ScaleByLBFGSState has optax's fields and shapes (pytree params); an optax state taken mid-run gives
    optax's next directions in gradflow."""
    assert ScaleByLBFGSState._fields == optax.ScaleByLBFGSState._fields
    params = make_params()
    assert describe(scale_by_lbfgs(5).init(params)) == describe(optax.scale_by_lbfgs(5).init(params))
    f, x = quadratic_problem(jnp.float32)
    ours, theirs = scale_by_lbfgs(3), optax.scale_by_lbfgs(3)
    t = theirs.init(x)
    for _ in range(5):
        o, t = theirs.update(jax.grad(f)(x), t, x)
        x = x - 0.3 * o
    mine = ScaleByLBFGSState(*t)
    for _ in range(4):
        (u, mine), (o, t) = ours.update(jax.grad(f)(x), mine, x), theirs.update(jax.grad(f)(x), t, x)
        np.testing.assert_allclose(u, o, rtol=2e-5, atol=1e-6)
        x = x - 0.3 * o


@pytest.mark.parametrize("f", [rosenbrock, zakharov], ids=lambda f: f.__name__)
def test_lbfgs_matches_optax_lbfgs(f):
    """lbfgs() and optax.lbfgs() (zoom line search, first trial 1) follow the same iterates."""
    x0 = [-1.2, 1.0] if f is rosenbrock else [1.0, -2.0, 0.5, 1.5, -1.0]
    for dtype, steps, rtol in ((jnp.float32, 12, 1e-4), (jnp.float64, 25, 1e-8)):
        with jax.enable_x64(dtype == jnp.float64):
            ours, theirs = lbfgs(), optax.lbfgs()

            def step(tx, apply_updates):
                def run(x, state):
                    value, grad = jax.value_and_grad(f)(x)
                    updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=f)
                    return apply_updates(x, updates), state

                return jax.jit(run)

            ours_step, theirs_step = step(ours, gf.apply_updates), step(theirs, optax.apply_updates)
            a = b = jnp.asarray(x0, dtype)
            s, t = ours.init(a), theirs.init(b)
            for _ in range(steps):
                (a, s), (b, t) = ours_step(a, s), theirs_step(b, t)
                np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)
                assert int(s[-1].info.num_linesearch_steps) == int(t[-1].info.num_linesearch_steps)
                assert a.dtype == dtype


# --- scipy.optimize.minimize -----------------------------------------------------------------------------------------

# (function, start, minimiser, iteration range that holds for gradflow and for scipy's L-BFGS-B and BFGS)
PROBLEMS = [
    (rosenbrock, [-1.2, 1.0], [1.0, 1.0], (30, 45)),
    (himmelblau, [1.0, 1.0], [3.0, 2.0], (7, 12)),
    (matyas, [6.0, -3.0], [0.0, 0.0], (4, 9)),
    (zakharov, [1.0, -2.0, 0.5, 1.5, -1.0], [0.0] * 5, (8, 13)),
]


@pytest.mark.parametrize(("f", "x0", "minimiser", "steps"), PROBLEMS, ids=lambda a: getattr(a, "__name__", ""))
def test_lbfgs_agrees_with_scipy(f, x0, minimiser, steps):
    """Same minimiser as scipy's L-BFGS-B and BFGS, in a number of iterations in the same range (float64)."""
    tol = 1e-8
    with jax.enable_x64(True):
        value_and_grad = jax.jit(jax.value_and_grad(f))
        fun = lambda x: tuple(np.asarray(v, np.float64) for v in value_and_grad(jnp.asarray(x)))
        lbfgsb = scipy.optimize.minimize(
            fun, np.array(x0), jac=True, method="L-BFGS-B", options={"gtol": tol, "ftol": 0}
        )
        bfgs = scipy.optimize.minimize(fun, np.array(x0), jac=True, method="BFGS", options={"gtol": tol})
        ours = minimize(f, jnp.asarray(x0), lbfgs(), max_steps=200, tol=tol)
        backtracking = minimize(
            f, jnp.asarray(x0), lbfgs(linesearch=scale_by_backtracking_linesearch(30, store_grad=True)), tol=tol
        )
    assert bool(ours.converged) and float(ours.grad_norm) < tol
    assert bool(backtracking.converged)
    for x in (ours.params, backtracking.params, lbfgsb.x, bfgs.x):
        np.testing.assert_allclose(x, minimiser, atol=1e-7)
    low, high = steps
    for count in (int(ours.num_steps), lbfgsb.nit, bfgs.nit):
        assert low <= count <= high, (int(ours.num_steps), lbfgsb.nit, bfgs.nit)
    assert int(backtracking.num_steps) <= 2 * high


# --- laws and state --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        lambda lr: lbfgs(lr, linesearch=None),
        lambda lr: lbfgs(lr, linesearch=scale_by_backtracking_linesearch(15, store_grad=True)),
        REGISTRY["lbfgs_fixed_step_unscaled"],
        REGISTRY["lbfgs_fixed_step_memory_2_unscaled"],
    ],
    ids=["fixed_step", "backtracking", "fixed_step_unscaled", "fixed_step_memory_2_unscaled"],
)
def test_vmap_over_learning_rates_equals_loop_in_float64(factory):
    """Law 4 exact up to float64 rounding: for configurations the float32 registry leaves out, and for the
    registry's fixed-step entries, whose float32 law 4 allows L-BFGS's larger rounding (test_laws.py)."""
    with jax.enable_x64(True):
        params = make_params(jnp.float64)
        grad = jax.grad(loss)

        def run(tx):
            def body(carry, _):
                p, state = carry
                updates, state = tx.update(grad(p), state, p, value=loss(p), value_fn=loss)
                return (gf.apply_updates(p, updates), state), None

            return jax.lax.scan(body, (params, tx.init(params)), length=5)[0][0]

        run = jax.jit(run)
        lrs = jnp.array([0.1, 0.03, 0.001])
        batched = jax.vmap(run)(jax.vmap(factory)(lrs))
        for i, lr in enumerate(lrs):
            for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(run(factory(float(lr))))):
                np.testing.assert_allclose(a[i], b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_lbfgs_state_is_stable_under_scan(dtype):
    """lbfgs() with its zoom line search inside lax.scan: same state structure, shapes and dtypes; descent."""
    tx = lbfgs()
    params = make_params(dtype)

    def body(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p), state, p, value=loss(p), value_fn=loss)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates))
        return (gf.apply_updates(p, updates), state), loss(p)

    init = tx.init(params)
    (end, state), losses = jax.jit(lambda p, s: jax.lax.scan(body, (p, s), length=6))(params, init)
    signature = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])
    assert signature(state) == signature(init) and signature(end) == signature(params)
    assert float(loss(end)) < float(losses[0])


def test_missing_params_and_value_fn_are_named():
    w = jnp.array([1.0, 2.0])
    with pytest.raises(ValueError, match="params"):
        scale_by_lbfgs().update(w, scale_by_lbfgs().init(w))
    tx = lbfgs()
    with pytest.raises(ValueError, match="value_fn"):
        tx.update(w, tx.init(w), w, value=jnp.sum(w**2))


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: scale_by_lbfgs(memory_size=0), "memory_size"),
        (lambda: scale_by_lbfgs(memory_size=2.5), "memory_size"),
        (lambda: lbfgs(memory_size=-3), "memory_size"),
        (lambda: lbfgs(learning_rate=-1.0), "learning_rate"),
        (lambda: lbfgs(linesearch="zoom"), "linesearch"),
    ],
)
def test_arguments_are_validated(call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call()


def test_signatures_are_optax():
    for ours, theirs in ((scale_by_lbfgs, optax.scale_by_lbfgs), (lbfgs, optax.lbfgs)):
        a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
        assert list(a) == list(b)
        for name in a:
            if name != "linesearch":
                assert a[name].default == b[name].default
    default = inspect.signature(lbfgs).parameters["linesearch"].default
    assert default == scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


def test_learning_rate_without_linesearch_is_a_fixed_step():
    """lbfgs(η, linesearch=None): the update is −η·H·g, the first one −η·g/max(1, ‖g‖)."""
    w, g = jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0])
    tx = lbfgs(0.1, linesearch=None)
    updates, _ = tx.update(g, tx.init(w), w)
    np.testing.assert_allclose(updates, -0.1 * g / 5.0, rtol=1e-6)
