"""The line searches against independent references: a NumPy backtracking loop, scipy's strong-Wolfe search, optax.

- backtracking: the step sizes and numbers of evaluations of a plain NumPy loop (float64, exact), the
  Armijo condition asserted numerically, optax's numbers over a run (float32), no step when every trial
  leaves the domain;
- zoom: ``scipy.optimize.line_search`` (Algorithms 3.5/3.6 of Nocedal & Wright with the same cubic and
  quadratic interpolation) gives the same step sizes to 1e-12 on Rosenbrock, Himmelblau and a quartic,
  along directions that need extrapolation, no search and zooming; the strong Wolfe conditions asserted
  numerically; optax's numbers (float32 and float64), failure modes included;
- ``value_fn`` is traced once, not at every step (optax issue #1171), eagerly and under ``jax.jit``;
- errors that name the missing extra argument or the out-of-range hyperparameter.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import gradflow as gf
from gradflow.second_order.linesearch import (
    ScaleByZoomLinesearchState,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def himmelblau(w):
    return (w[0] ** 2 + w[1] - 11) ** 2 + (w[0] + w[1] ** 2 - 7) ** 2


def quartic(w):
    return jnp.sum((w - 1.0) ** 4) + 0.5 * jnp.sum(w**2)


def least_squares(w, x, y):
    return 0.5 * jnp.sum((x @ w - y) ** 2)


# (function, point, scale of the direction −scale·∇f): a full step, extrapolation and zoom all occur.
SEARCHES = [
    (f, p, scale)
    for f, points in (
        (rosenbrock, [(-1.2, 1.0), (0.0, 0.0), (0.5, 0.5)]),
        (quartic, [(3.0, -1.0), (0.1, 0.2)]),
        (himmelblau, [(0.0, 0.0), (-1.0, 3.0)]),
    )
    for p in points
    for scale in (1.0, 1e-3, 10.0)
]


def search_once(ls, f, w, u):
    state = ls.init(w)
    updates, state = ls.update(u, state, w, value_fn=f)
    return updates, state


# --- backtracking ----------------------------------------------------------------------------------------------------


def numpy_backtracking(f, w, u, value, slope, previous, c1, decrease, increase, max_lr, max_steps):
    """Optax's rule as a plain loop: (step size, number of values evaluated)."""
    stepsize, evaluations = min(increase * previous, max_lr), 0
    while True:
        new = f(w + stepsize * u)
        error = new - value - stepsize * c1 * slope
        error = np.inf if np.isnan(error) else max(error, 0.0)
        evaluations += 1
        if error <= 0 or evaluations > max_steps:
            return (0.0 if np.isinf(error) else stepsize), evaluations
        stepsize *= decrease


@pytest.mark.parametrize("f", [rosenbrock, himmelblau, quartic], ids=lambda f: f.__name__)
def test_backtracking_matches_numpy_loop_and_satisfies_armijo(f):
    """Five consecutive searches from (−1.2, 1) along −∇f: the guess min(1.5·η_prev, 1) carries over."""
    c1, decrease, increase, max_lr, max_steps = 1e-4, 0.5, 1.5, 1.0, 30
    with jax.enable_x64(True):
        ls = scale_by_backtracking_linesearch(max_steps, c1, decrease, increase, max_lr)
        step = jax.jit(lambda ls, w, state: ls.update(-jax.grad(f)(w), state, w, value=f(w), value_fn=f))
        w = jnp.array([-1.2, 1.0])
        state, previous = ls.init(w), 1.0
        numpy_f = lambda x: float(f(jnp.asarray(x)))
        for _ in range(5):
            g = np.asarray(jax.grad(f)(w))
            expected, evaluations = numpy_backtracking(
                numpy_f, np.asarray(w), -g, numpy_f(w), -g @ g, previous, c1, decrease, increase, max_lr, max_steps
            )
            updates, state = step(ls, w, state)
            eta = float(state.learning_rate)
            assert eta == expected
            assert int(state.info.num_linesearch_steps) == evaluations
            assert float(state.info.decrease_error) == 0.0
            np.testing.assert_allclose(updates, -eta * g, rtol=1e-13, atol=1e-15)  # g: eager here, compiled in the step
            assert numpy_f(w + updates) <= numpy_f(w) + c1 * eta * (-g @ g)  # Armijo
            np.testing.assert_allclose(state.value, numpy_f(w + updates), rtol=1e-12)
            w, previous = w + updates, eta


def test_backtracking_matches_optax_with_data_arguments():
    """sgd(1) + backtracking on a least-squares problem whose data reach value_fn as x=, y= (float32)."""
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32), jnp.asarray(rng.normal(size=6), jnp.float32)
    for store_grad in (False, True):
        ours = gf.chain(gf.sgd(1.0), scale_by_backtracking_linesearch(15, store_grad=store_grad))
        theirs = optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(15, store_grad=store_grad))
        w = v = jnp.array([1.0, 2.0, 3.0])
        s, t = ours.init(w), theirs.init(v)
        for _ in range(8):
            value, grad = jax.value_and_grad(least_squares)(w, x, y)
            u, s = ours.update(grad, s, w, value=value, grad=grad, value_fn=least_squares, x=x, y=y)
            value, grad = jax.value_and_grad(least_squares)(v, x, y)
            o, t = theirs.update(grad, t, v, value=value, grad=grad, value_fn=least_squares, x=x, y=y)
            w, v = gf.apply_updates(w, u), optax.apply_updates(v, o)
            np.testing.assert_allclose(w, v, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(s[-1].learning_rate, t[-1].learning_rate, rtol=1e-6)
            np.testing.assert_allclose(s[-1].value, t[-1].value, rtol=1e-5)
            assert int(s[-1].info.num_linesearch_steps) == int(t[-1].info.num_linesearch_steps)
            if store_grad:
                np.testing.assert_allclose(s[-1].grad, t[-1].grad, rtol=1e-5, atol=1e-6)
                np.testing.assert_allclose(s[-1].grad, jax.grad(least_squares)(w, x, y), rtol=1e-6, atol=1e-7)
            else:
                assert s[-1].grad is None


def test_backtracking_takes_no_step_when_every_trial_leaves_the_domain():
    """log is NaN for w < 0: after 1 + max_backtracking_steps NaN values, η = 0 and the updates are 0."""
    f = lambda w: -jnp.sum(jnp.log(w))
    w = jnp.array([1.0, 2.0])
    ls = scale_by_backtracking_linesearch(4, decrease_factor=0.5)
    updates, state = search_once(ls, f, w, jnp.array([-100.0, -100.0]))  # every trial is below 0
    np.testing.assert_array_equal(updates, jnp.zeros(2))
    assert float(state.learning_rate) == 0.0
    assert math.isinf(float(state.info.decrease_error))
    assert int(state.info.num_linesearch_steps) == 5
    assert float(state.value) == float(f(w))  # the value where the parameters stay


# --- zoom ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("f", "point", "scale"), SEARCHES, ids=lambda a: getattr(a, "__name__", str(a)))
def test_zoom_matches_scipy_line_search_and_strong_wolfe(f, point, scale):
    """Same step size as scipy.optimize.line_search (c1 = 1e-4, c2 = 0.9, first trial 1), where scipy converges."""
    c1, c2 = 1e-4, 0.9
    with jax.enable_x64(True):
        ls = scale_by_zoom_linesearch(
            30, slope_rtol=c1, curv_rtol=c2, approx_dec_rtol=None, initial_guess_strategy="one"
        )
        grad = jax.grad(f)
        w = jnp.asarray(point, jnp.float64)
        u = -scale * grad(w)
        updates, state = search_once(ls, f, w, u)
        eta = float(state.learning_rate)
        numpy_f = lambda x: float(f(jnp.asarray(x)))
        numpy_g = lambda x: np.asarray(grad(jnp.asarray(x)))
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                alpha, function_calls, *_ = scipy.optimize.line_search(
                    numpy_f, numpy_g, np.asarray(w), np.asarray(u), c1=c1, c2=c2
                )
        slope0, slope = float(u @ grad(w)), float(u @ grad(w + updates))
        assert numpy_f(w + eta * u) <= numpy_f(w) + c1 * eta * slope0  # sufficient decrease
        assert abs(slope) <= c2 * abs(slope0)  # curvature (strong Wolfe)
        assert float(state.info.decrease_error) == 0.0 and float(state.info.curvature_error) == 0.0
        np.testing.assert_allclose(updates, eta * u, rtol=1e-15)
        np.testing.assert_allclose(state.value, numpy_f(w + updates), rtol=1e-14)
        np.testing.assert_allclose(state.grad, numpy_g(w + updates), rtol=1e-12, atol=1e-14)
        if alpha is not None:  # scipy's zoom gives up after 10 trials; ours goes on
            np.testing.assert_allclose(eta, alpha, rtol=1e-12)
            assert int(state.info.num_linesearch_steps) == function_calls - 1  # scipy also evaluates f(w)


def test_zoom_matches_scipy_where_scipy_gives_up_it_still_finds_a_wolfe_step():
    """Rosenbrock at (−1.2, 1) along −10·∇f: scipy's zoom stops after 10 trials, ours finds a step in 13."""
    with jax.enable_x64(True):
        w = jnp.array([-1.2, 1.0])
        u = -10 * jax.grad(rosenbrock)(w)
        ls = scale_by_zoom_linesearch(30, approx_dec_rtol=None, initial_guess_strategy="one")
        _, state = search_once(ls, rosenbrock, w, u)
        assert int(state.info.num_linesearch_steps) == 13
        assert float(state.info.decrease_error) == 0.0 and float(state.info.curvature_error) == 0.0


def _optax_zoom_run(dtype, steps, **kwargs):
    ours = gf.chain(gf.sgd(1.0), scale_by_zoom_linesearch(**kwargs))
    theirs = optax.chain(optax.sgd(1.0), optax.scale_by_zoom_linesearch(**kwargs))

    def step(tx, apply_updates):
        def run(x, state):
            value, grad = jax.value_and_grad(quartic)(x)
            updates, state = tx.update(grad, state, x, value=value, grad=grad, value_fn=quartic)
            return apply_updates(x, updates), state

        return jax.jit(run)

    ours_step, theirs_step = step(ours, gf.apply_updates), step(theirs, optax.apply_updates)
    w = v = jnp.asarray([3.0, -1.0, 0.5], dtype)
    s, t = ours.init(w), theirs.init(v)
    rows = []
    for _ in range(steps):
        (w, s), (v, t) = ours_step(w, s), theirs_step(v, t)
        rows.append((w, v, s[-1], t[-1]))
    return rows


@pytest.mark.parametrize("strategy", ["keep", "one"])
def test_zoom_matches_optax(strategy):
    """sgd(1) + zoom on a quartic: optax's step sizes, values, gradients and trial counts (float32, float64)."""
    kwargs = {"max_linesearch_steps": 15, "initial_guess_strategy": strategy}
    for dtype, rtol in ((jnp.float32, 2e-5), (jnp.float64, 1e-11)):
        with jax.enable_x64(dtype == jnp.float64):
            for w, v, s, t in _optax_zoom_run(dtype, 6, **kwargs):
                np.testing.assert_allclose(w, v, rtol=rtol, atol=rtol * 1e-2)
                np.testing.assert_allclose(s.learning_rate, t.learning_rate, rtol=rtol)
                np.testing.assert_allclose(s.value, t.value, rtol=rtol)
                np.testing.assert_allclose(s.grad, t.grad, rtol=rtol, atol=rtol * 1e-2)
                assert int(s.info.num_linesearch_steps) == int(t.info.num_linesearch_steps)
                assert s.learning_rate.dtype == dtype and w.dtype == dtype


def test_zoom_failure_modes_match_optax():
    """An ascent direction (no step with sufficient decrease: the last trial is returned, with a positive
    decrease error) and a cap on the step (max_learning_rate reached before the curvature condition)."""
    w = jnp.array([3.0, -1.0])
    ascent = jax.grad(quartic)(w)
    linear = lambda w: -jnp.sum(w) + 1e-3 * jnp.sum(w**2)
    for f, u, kwargs in (
        (quartic, ascent, {"max_linesearch_steps": 8}),
        (linear, jnp.ones(2), {"max_linesearch_steps": 10, "max_learning_rate": 2.0}),
    ):
        updates, state = search_once(scale_by_zoom_linesearch(**kwargs), f, w, u)
        theirs = optax.scale_by_zoom_linesearch(**kwargs)
        expected, t = theirs.update(u, theirs.init(w), w, value=f(w), grad=jax.grad(f)(w), value_fn=f)
        np.testing.assert_allclose(updates, expected, rtol=1e-6)
        np.testing.assert_allclose(state.learning_rate, t.learning_rate, rtol=1e-6)
        np.testing.assert_allclose(state.info.decrease_error, t.info.decrease_error, rtol=1e-5)
        np.testing.assert_allclose(state.info.curvature_error, t.info.curvature_error, rtol=1e-5)
        assert int(state.info.num_linesearch_steps) == int(t.info.num_linesearch_steps)
    assert float(state.learning_rate) == 2.0 and float(state.info.curvature_error) > 0  # the capped case


def test_zoom_keep_strategy_restarts_from_one_after_a_zero_step():
    """optax would keep guessing 0 forever after a search that returned 0; gradflow guesses 1 again."""
    f = lambda w: -jnp.sum(jnp.log(w))
    w = jnp.array([1.0, 2.0])
    ls = scale_by_zoom_linesearch(5)
    state = ls.init(w)
    _, state = ls.update(jnp.array([-100.0, -100.0]), state, w, value_fn=f)  # every trial is NaN
    assert float(state.learning_rate) == 0.0
    updates, state = ls.update(-jax.grad(f)(w), state, w, value_fn=f)
    assert float(state.learning_rate) > 0 and float(f(w + updates)) < float(f(w))


# --- value_fn traced once (optax issue #1171) ------------------------------------------------------------------------


def counted(f):
    """``f`` that records each Python-level call (a trace, under jit) in ``.traces``."""

    def value_fn(w):
        value_fn.traces += 1
        return f(w)

    value_fn.traces = 0
    return value_fn


@pytest.mark.parametrize(
    "make",
    [
        lambda: gf.chain(gf.sgd(1.0), scale_by_zoom_linesearch(15)),
        lambda: gf.chain(gf.sgd(1.0), scale_by_backtracking_linesearch(15, store_grad=True)),
    ],
    ids=["zoom", "backtracking"],
)
def test_value_fn_is_not_traced_again_at_every_step(make):
    """Eager updates and jitted steps: the number of traces of value_fn stays what the first step made."""
    tx = make()
    value_and_grad = jax.jit(jax.value_and_grad(quartic))  # value and grad by an uncounted function
    value_fn = counted(quartic)
    w = jnp.array([3.0, -1.0, 0.5])
    state, after_first = tx.init(w), None
    for i in range(12):  # eager, as in optax's examples; a new grad_fn at each step is not a cache key
        value, grad = value_and_grad(w)
        extra = {"value": value, "grad": grad, "value_fn": value_fn, "grad_fn": jax.grad(quartic)}
        updates, state = tx.update(grad, state, w, **extra)
        w = gf.apply_updates(w, updates)
        after_first = value_fn.traces if i == 0 else after_first
    assert 1 <= after_first <= 2 and value_fn.traces == after_first

    value_fn = counted(quartic)

    @jax.jit
    def step(tx, w, state):
        value, grad = jax.value_and_grad(quartic)(w)
        updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=value_fn)
        return gf.apply_updates(w, updates), state

    w = jnp.array([3.0, -1.0, 0.5])
    state = tx.init(w)
    for i in range(12):
        w, state = step(tx, w, state)
        after_first = value_fn.traces if i == 0 else after_first
    assert 1 <= after_first <= 2 and value_fn.traces == after_first


# --- extra arguments, state, differentiation, vmap -------------------------------------------------------------------


@pytest.mark.parametrize("ls", [scale_by_zoom_linesearch(10), scale_by_backtracking_linesearch(10)], ids=["zoom", "bt"])
def test_missing_extra_arguments_are_named(ls):
    w = jnp.array([1.0, 2.0])
    state = ls.init(w)
    with pytest.raises(ValueError, match="value_fn"):
        ls.update(-w, state, w, value=quartic(w), grad=jax.grad(quartic)(w))
    with pytest.raises(ValueError, match="params"):
        ls.update(-w, state, value_fn=quartic)
    with pytest.raises(ValueError, match="value must be a scalar"):
        ls.update(-w, state, w, value_fn=quartic, value=jnp.ones(2))


@pytest.mark.parametrize("ls", [scale_by_zoom_linesearch(10), scale_by_backtracking_linesearch(10)], ids=["zoom", "bt"])
def test_value_and_grad_are_computed_when_absent(ls):
    """Without value/grad (or with grad_fn only) the search computes them: the same step as when given."""
    w = jnp.array([3.0, -1.0])
    u = -jax.grad(quartic)(w)
    given, _ = ls.update(u, ls.init(w), w, value=quartic(w), grad=jax.grad(quartic)(w), value_fn=quartic)
    absent, _ = ls.update(u, ls.init(w), w, value_fn=quartic)
    from_grad_fn, _ = ls.update(u, ls.init(w), w, value=quartic(w), value_fn=quartic, grad_fn=jax.grad(quartic))
    np.testing.assert_array_equal(given, absent)
    np.testing.assert_array_equal(given, from_grad_fn)


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": -1}, "max_backtracking_steps"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 2.5}, "max_backtracking_steps"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "slope_rtol": 1.0}, "slope_rtol"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "decrease_factor": 1.0}, "decrease_factor"),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "increase_factor": 0.5}, "increase_factor"),
        (
            scale_by_backtracking_linesearch,
            {"max_backtracking_steps": 5, "max_learning_rate": 0.0},
            "max_learning_rate",
        ),
        (scale_by_backtracking_linesearch, {"max_backtracking_steps": 5, "atol": -1.0}, "atol"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 0}, "max_linesearch_steps"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "curv_rtol": 0.0}, "curv_rtol"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "slope_rtol": 0.95}, "slope_rtol"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "increase_factor": 1.0}, "increase_factor"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "max_learning_rate": -2.0}, "max_learning_rate"),
        (scale_by_zoom_linesearch, {"max_linesearch_steps": 5, "initial_guess_strategy": "two"}, "initial_guess"),
    ],
)
def test_hyperparameters_are_validated(factory, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        factory(**kwargs)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (scale_by_backtracking_linesearch, optax.scale_by_backtracking_linesearch),
        (scale_by_zoom_linesearch, optax.scale_by_zoom_linesearch),
    ],
)
def test_signature_is_optax(ours, theirs):
    a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    assert list(a) == list(b)
    assert [p.default for p in a.values()] == [p.default for p in b.values()]


@pytest.mark.parametrize("store_grad", [False, True])
def test_state_is_stable_under_scan_in_bfloat16(store_grad):
    """bfloat16 parameters: updates in bfloat16, scalars in float32, the same state after init and 4 steps."""
    for ls in (scale_by_zoom_linesearch(10), scale_by_backtracking_linesearch(10, store_grad=store_grad)):
        tx = gf.chain(gf.sgd(1.0), ls)
        w = jnp.array([3.0, -1.0], jnp.bfloat16)

        def body(carry, _, tx=tx):
            w, state = carry
            updates, state = tx.update(jax.grad(quartic)(w), state, w, value_fn=quartic)
            assert updates.dtype == jnp.bfloat16
            return (gf.apply_updates(w, updates), state), quartic(w)

        init = tx.init(w)
        (_, state), values = jax.lax.scan(body, (w, init), length=4)
        same = lambda t: (jax.tree.structure(t), [(x.shape, x.dtype) for x in jax.tree.leaves(t)])
        assert same(state) == same(init)
        assert state[-1].learning_rate.dtype == jnp.float32
        assert float(values[-1]) < float(values[0])


def test_grad_through_a_backtracking_step_equals_central_difference():
    """η is piecewise constant in the parameters, so treating it as a constant gives the exact derivative."""
    with jax.enable_x64(True):

        def final_value(lr):
            tx = gf.chain(gf.sgd(lr), scale_by_backtracking_linesearch(20, decrease_factor=0.5))
            w, state = jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2))
            for _ in range(3):
                updates, state = tx.update(jax.grad(quartic)(w), state, w, value_fn=quartic)
                w = gf.apply_updates(w, updates)
            return quartic(w)

        value_and_grad = jax.jit(jax.value_and_grad(final_value))
        lr, h = 0.3, 1e-6
        analytic = float(value_and_grad(lr)[1])
        numeric = (float(value_and_grad(lr + h)[0]) - float(value_and_grad(lr - h)[0])) / (2 * h)
        assert analytic != 0.0
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_vmap_over_line_search_hyperparameters_equals_loop():
    """A batch of zoom searches with different c1, c2 and backtracking with different factors, vmapped (float64)."""
    with jax.enable_x64(True):
        w = jnp.array([-1.2, 1.0])
        u = -jax.grad(rosenbrock)(w)
        run = jax.jit(lambda ls: search_once(ls, rosenbrock, w, u)[1].learning_rate)
        zoom = lambda c1, c2: scale_by_zoom_linesearch(20, slope_rtol=c1, curv_rtol=c2)
        bt = lambda factor: scale_by_backtracking_linesearch(30, decrease_factor=factor)
        batches = (
            (
                jax.vmap(zoom)(jnp.array([1e-4, 0.3, 1e-2]), jnp.array([0.9, 0.5, 0.1])),
                [zoom(1e-4, 0.9), zoom(0.3, 0.5), zoom(1e-2, 0.1)],
            ),
            (jax.vmap(bt)(jnp.array([0.8, 0.5, 0.1])), [bt(0.8), bt(0.5), bt(0.1)]),
        )
        for batch, singles in batches:
            batched = jax.vmap(run)(batch)
            looped = jnp.stack([run(ls) for ls in singles])
            np.testing.assert_allclose(batched, looped, rtol=1e-14)
            assert len(set(np.asarray(looped).tolist())) >= 2  # the hyperparameters matter


def test_value_and_grad_from_state():
    """After a zoom step the state holds f and ∇f at the new parameters; at init they are computed."""
    with jax.enable_x64(True):
        tx = gf.chain(gf.sgd(1.0), scale_by_zoom_linesearch(15))
        value_and_grad = value_and_grad_from_state(quartic)
        w = jnp.array([3.0, -1.0])
        state = tx.init(w)
        for _ in range(3):
            value, grad = value_and_grad(w, state=state)
            np.testing.assert_allclose(value, quartic(w), rtol=1e-14)
            np.testing.assert_allclose(grad, jax.grad(quartic)(w), rtol=1e-13)
            updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=quartic)
            w = gf.apply_updates(w, updates)
            assert isinstance(state[-1], ScaleByZoomLinesearchState)
            assert float(value_and_grad(w, state=state)[0]) == float(state[-1].value)
        with pytest.raises(ValueError, match="line search"):
            value_and_grad(w, state=gf.sgd(1.0).init(w))
