"""Parity with optax: every gradflow optimizer and primitive that implements optax's rule gives optax's numbers.

Law 7 of DESIGN.md. Each case runs 50 float32 steps of both libraries side by side on the same small
pytree of parameters (a nested dict with leaves of different shapes) and a non-quadratic loss; each
library follows its own trajectory (its gradient is taken at its own parameters) and the parameters are
compared at every step. One jitted ``lax.scan`` per pair keeps the compile count at one per case.

The hyperparameters are closed over as Python numbers in both libraries, so both compute the same
constants (``1 - b2`` etc.) in double precision at trace time; see
``test_adam_parity_with_traced_hyperparameters`` for the case where gradflow's hyperparameters are
traced float32 leaves.

The last tests document the intended differences from optax (DESIGN.md, "laws" 7).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow
from gradflow.transforms.moments import EWMAState

STEPS = 50
RTOL = 1e-5
ATOL = 1e-6  # matters only for coordinates near zero (the loss pulls ``extra.k`` towards 0)

_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(_rng.normal(size=(8, 4)), jnp.float32)
PARAMS = {
    "dense": {
        "w": jnp.asarray(_rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(_rng.normal(size=(4,)) * 0.1, jnp.float32),
    },
    "gain": jnp.asarray(1.3, jnp.float32),
    "extra": {"k": jnp.asarray(_rng.normal(size=(2, 2)), jnp.float32)},
}
MASK = {"dense": {"w": True, "b": False}, "gain": False, "extra": {"k": True}}


def matrices_only(params: Any) -> Any:
    """A callable mask: decay only the leaves of rank >= 2."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


# Far-away targets keep every coordinate's gradient away from zero for the whole run (|tanh| ~ 1), so no
# coordinate reaches the neighbourhood of a minimum where sign-like steps (RMSprop, Adam with a tiny
# eps, Lion) oscillate and amplify rounding differences exponentially (see test_conditioning).
TARGETS = jax.tree.map(lambda p: p + jnp.asarray(3.0, jnp.float32), PARAMS)


def loss(params: Any) -> jax.Array:
    """A smooth, non-quadratic loss: log-cosh pulls to far targets plus a coupled tanh regression and a quartic."""
    w, b = params["dense"]["w"], params["dense"]["b"]
    pred = params["gain"] * jnp.tanh(X @ w + b)
    k = params["extra"]["k"]
    pull = sum(jnp.sum(jnp.log(jnp.cosh(p - t))) for p, t in zip(jax.tree.leaves(params), jax.tree.leaves(TARGETS)))
    return pull + jnp.mean(jnp.log(jnp.cosh(pred - Y))) + 0.01 * jnp.sum(w**4) + 0.1 * jnp.sum(jnp.sin(k) * k.T)


_grad = jax.jit(jax.grad(loss))


class Trajectories(NamedTuple):
    gradflow: Any  # params after each step, every leaf with a leading axis of length STEPS
    optax: Any
    gradients: Any  # gradflow's gradient at each step (before the step is taken)


def run_pair(gf_tx: Any, ox_tx: Any, params: Any = PARAMS, steps: int = STEPS) -> Trajectories:
    """Run both optimizers side by side for ``steps`` steps; both are closed over as constants.

    The gradient is one jitted function shared by all cases; the two updates are one jitted step per pair
    (compiling is what takes the time here, about 0.1–0.5 s per pair on CPU).
    """

    @jax.jit
    def step(g1, s1, p1, g2, s2, p2):
        u1, s1 = gf_tx.update(g1, s1, p1)
        u2, s2 = ox_tx.update(g2, s2, p2)
        return s1, gradflow.apply_updates(p1, u1), s2, optax.apply_updates(p2, u2)

    p1 = p2 = params
    s1, s2 = gf_tx.init(params), ox_tx.init(params)
    history = []
    for _ in range(steps):
        g1, g2 = _grad(p1), _grad(p2)
        s1, p1, s2, p2 = step(g1, s1, p1, g2, s2, p2)
        history.append((p1, p2, g1))
    return Trajectories(*jax.tree.map(lambda *xs: jnp.stack(xs), *history))


def assert_same_trajectory(actual: Any, expected: Any, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Compare the parameters at every step; report the first step and leaf that differ."""
    flat_a = jax.tree_util.tree_flatten_with_path(actual)[0]
    flat_e = jax.tree.leaves(expected)
    assert len(flat_a) == len(flat_e)
    for (path, a), e in zip(flat_a, flat_e):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype == np.float32, (path, a.dtype, e.dtype)
        assert a.shape == e.shape
        close = np.isclose(a, e, rtol=rtol, atol=atol).reshape(a.shape[0], -1).all(axis=1)
        bad = np.flatnonzero(~close)
        if bad.size:
            step = int(bad[0])
            np.testing.assert_allclose(
                a[step],
                e[step],
                rtol=rtol,
                atol=atol,
                err_msg=f"params{jax.tree_util.keystr(path)} after step {step + 1} of {a.shape[0]} "
                f"(gradflow vs optax; {bad.size} steps differ)",
            )


def assert_moved(trajectory: Any, params: Any = PARAMS) -> None:
    """Guard against vacuous parity: every leaf has moved away from its initial value."""
    for final, initial in zip(jax.tree.leaves(trajectory), jax.tree.leaves(params)):
        assert np.max(np.abs(np.asarray(final[-1]) - np.asarray(initial))) > 1e-3


def _lr(gf_prim: Any, ox_prim: Any, lr: float = 0.02) -> tuple[Any, Any]:
    """A primitive followed by its own library's ``scale_by_learning_rate``."""
    return (
        gradflow.chain(gf_prim, gradflow.scale_by_learning_rate(lr)),
        optax.chain(ox_prim, optax.scale_by_learning_rate(lr)),
    )


def _same(name: str, *args: Any, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    """``gradflow.<name>(...)`` and ``optax.<name>(...)`` with identical arguments."""
    return lambda: (getattr(gradflow, name)(*args, **kwargs), getattr(optax, name)(*args, **kwargs))


def _same_primitive(name: str, *args: Any, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    return lambda: _lr(getattr(gradflow, name)(*args, **kwargs), getattr(optax, name)(*args, **kwargs))


OPTIMIZER_CASES = [
    pytest.param(_same("sgd", 0.05), id="sgd"),
    pytest.param(_same("sgd", 0.02, momentum=0.9), id="sgd-momentum"),
    pytest.param(_same("sgd", 0.02, momentum=0.8, nesterov=True), id="sgd-nesterov"),
    pytest.param(_same("adagrad", 0.1), id="adagrad"),
    pytest.param(_same("adagrad", 0.05, initial_accumulator_value=0.0, eps=1e-10), id="adagrad-textbook"),
    pytest.param(_same("rmsprop", 0.01), id="rmsprop"),
    pytest.param(
        _same("rmsprop", 0.005, decay=0.95, eps=1e-6, centered=True, momentum=0.9), id="rmsprop-centered-momentum"
    ),
    pytest.param(
        _same("rmsprop", 0.005, decay=0.9, centered=True, momentum=0.5, nesterov=True), id="rmsprop-centered-nesterov"
    ),
    pytest.param(
        _same("rmsprop", 0.01, decay=0.8, eps=1e-4, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
        id="rmsprop-eps-outside-debiased-initial-scale",
    ),
    pytest.param(_same("adadelta", 1.0), id="adadelta-lr1"),
    pytest.param(_same("adadelta", 0.5, rho=0.95, eps=1e-5, weight_decay=0.05), id="adadelta-weight-decay"),
    pytest.param(
        _same("adadelta", 0.5, weight_decay=0.05, weight_decay_mask=MASK), id="adadelta-weight-decay-masked"
    ),
    pytest.param(_same("adam", 1e-2), id="adam"),
    pytest.param(_same("adam", 5e-3, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8), id="adam-custom"),
    pytest.param(_same("adam", 1e-2, mu_dtype=jnp.bfloat16), id="adam-mu-bfloat16"),
    pytest.param(_same("adamw", 1e-2), id="adamw"),
    pytest.param(_same("adamw", 1e-2, b1=0.85, weight_decay=0.1, mask=MASK), id="adamw-mask-tree"),
    pytest.param(_same("adamw", 1e-2, weight_decay=0.1, mask=matrices_only), id="adamw-mask-callable"),
    pytest.param(_same("nadam", 1e-2), id="nadam"),
    pytest.param(_same("nadam", 5e-3, b1=0.85, b2=0.995, eps=1e-7, eps_root=1e-9), id="nadam-custom"),
    pytest.param(_same("adamax", 1e-2), id="adamax"),
    pytest.param(_same("adamax", 2e-2, b1=0.8, b2=0.99, eps=1e-6), id="adamax-custom"),
    pytest.param(_same("amsgrad", 1e-2), id="amsgrad"),
    pytest.param(_same("amsgrad", 1e-2, b1=0.85, b2=0.99, bias_correction_nu=False), id="amsgrad-raw-nu"),
    pytest.param(_same("lion", 1e-3), id="lion"),
    pytest.param(_same("lion", 3e-3, b1=0.95, b2=0.98, weight_decay=0.1, mask=matrices_only), id="lion-custom"),
    pytest.param(_same("sign_sgd", 1e-2), id="sign_sgd"),
    pytest.param(_same("signum", 1e-2), id="signum"),
    pytest.param(_same("signum", 1e-2, beta=0.5), id="signum-beta"),
]

PRIMITIVE_CASES = [
    pytest.param(_same_primitive("clip", 0.1), id="clip"),
    pytest.param(_same_primitive("add_decayed_weights", 0.1), id="add_decayed_weights"),
    pytest.param(_same_primitive("add_decayed_weights", 0.1, mask=MASK), id="add_decayed_weights-mask-tree"),
    pytest.param(
        _same_primitive("add_decayed_weights", 0.1, mask=matrices_only), id="add_decayed_weights-mask-callable"
    ),
    pytest.param(_same("scale", -0.05), id="scale"),
    pytest.param(_same("scale_by_learning_rate", 0.05), id="scale_by_learning_rate"),
    pytest.param(_same("scale_by_learning_rate", 1e-3, flip_sign=False), id="scale_by_learning_rate-ascent"),
    pytest.param(_same_primitive("scale_by_rms"), id="scale_by_rms"),
    pytest.param(
        _same_primitive("scale_by_rms", 0.8, 1e-4, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
        id="scale_by_rms-custom",
    ),
    pytest.param(_same_primitive("scale_by_stddev"), id="scale_by_stddev"),
    pytest.param(
        _same_primitive("scale_by_stddev", 0.8, 1e-4, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
        id="scale_by_stddev-custom",
    ),
    pytest.param(_same_primitive("scale_by_adam"), id="scale_by_adam"),
    pytest.param(_same_primitive("scale_by_adam", 0.8, 0.99, 1e-6, 1e-8, nesterov=True), id="scale_by_adam-nesterov"),
    pytest.param(_same_primitive("scale_by_rss"), id="scale_by_rss"),
    pytest.param(_same_primitive("scale_by_rss", 0.5, 1e-5), id="scale_by_rss-custom"),
    pytest.param(_same_primitive("scale_by_adadelta"), id="scale_by_adadelta"),
    pytest.param(_same_primitive("scale_by_adadelta", 0.95, 1e-5), id="scale_by_adadelta-custom"),
    pytest.param(_same_primitive("scale_by_amsgrad"), id="scale_by_amsgrad"),
    pytest.param(_same_primitive("scale_by_amsgrad", bias_correction_nu=False), id="scale_by_amsgrad-raw-nu"),
    pytest.param(_same_primitive("scale_by_adamax"), id="scale_by_adamax"),
    pytest.param(_same_primitive("scale_by_adamax", 0.8, 0.99, 1e-6), id="scale_by_adamax-custom"),
    pytest.param(_same_primitive("scale_by_lion", 0.95, 0.98), id="scale_by_lion"),
]


@pytest.mark.parametrize("make", OPTIMIZER_CASES)
def test_optimizer_matches_optax(make):
    gf_tx, ox_tx = make()
    out = run_pair(gf_tx, ox_tx)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


@pytest.mark.parametrize("make", PRIMITIVE_CASES)
def test_primitive_matches_optax(make):
    gf_tx, ox_tx = make()
    out = run_pair(gf_tx, ox_tx)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def test_clip_clips_some_coordinates_only():
    """The clip case above is not vacuous: at the first step some coordinates are clipped, some are not."""
    g = np.concatenate([np.ravel(x) for x in jax.tree.leaves(jax.grad(loss)(PARAMS))])
    assert (np.abs(g) > 0.1).any() and (np.abs(g) < 0.1).any()


@pytest.mark.parametrize("inside", [True, False], ids=["norm-inside", "norm-outside"])
def test_clip_by_global_norm_matches_optax(inside):
    max_norm = 100.0 if inside else 0.2
    gf_tx, ox_tx = _lr(gradflow.clip_by_global_norm(max_norm), optax.clip_by_global_norm(max_norm), lr=0.1)
    out = run_pair(gf_tx, ox_tx)
    norms = np.asarray(jax.vmap(optax.global_norm)(out.gradients))
    # every step is on the intended side of the threshold
    assert (norms < max_norm).all() if inside else (norms > max_norm).all(), norms
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def test_adam_parity_with_traced_hyperparameters():
    """gradflow's hyperparameters as jit arguments (float32 leaves, Law 3) still give optax's numbers.

    Traced, ``1 - b2`` is computed in float32 (0.00099998713 for b2 = 0.999) instead of in double at
    trace time (float32(0.001)); the relative difference of 1.3e-5 in the second moment is cancelled
    by the bias correction 1 - b2^t, which is float32 in both libraries, so the steps stay within
    tolerance (at the first step gradflow's v̂ is exactly g², optax's is g²·1.0000129).
    """
    grad = jax.grad(loss)
    ox_tx = optax.adam(1e-2)

    @jax.jit
    def step(tx, p1, s1, p2, s2):
        u1, s1 = tx.update(grad(p1), s1, p1)
        u2, s2 = ox_tx.update(grad(p2), s2, p2)
        return gradflow.apply_updates(p1, u1), s1, optax.apply_updates(p2, u2), s2

    tx = gradflow.adam(1e-2)
    p1 = p2 = PARAMS
    s1, s2 = tx.init(PARAMS), ox_tx.init(PARAMS)
    history1, history2 = [], []
    for _ in range(STEPS):
        p1, s1, p2, s2 = step(tx, p1, s1, p2, s2)
        history1.append(p1)
        history2.append(p2)
    stack = lambda hs: jax.tree.map(lambda *xs: jnp.stack(xs), *hs)
    assert_same_trajectory(stack(history1), stack(history2))
    assert step._cache_size() == 1


# --- intended differences -------------------------------------------------------------------------


def test_adadelta_without_learning_rate_descends_where_optax_ascends():
    """``optax.adadelta(learning_rate=None)`` skips the sign flip (its update is +g'): it ascends.

    ``gradflow.adadelta(None)`` means learning rate 1 with the sign flip (seed 002): it descends, and
    equals ``optax.adadelta(1.0)``.
    """
    gf_tx, ox_tx = gradflow.adadelta(None), optax.adadelta(None)
    out = run_pair(gf_tx, ox_tx, steps=10)
    gf_losses = np.asarray(jax.vmap(loss)(out.gradflow))
    ox_losses = np.asarray(jax.vmap(loss)(out.optax))
    initial = float(loss(PARAMS))
    assert gf_losses[-1] < initial and (np.diff(gf_losses) < 0).all(), gf_losses
    assert ox_losses[-1] > initial and (np.diff(ox_losses) > 0).all(), ox_losses

    # the first steps are exact opposites (same direction g', opposite sign)
    g = jax.grad(loss)(PARAMS)
    gf_update, _ = gf_tx.update(g, gf_tx.init(PARAMS), PARAMS)
    ox_update, _ = ox_tx.update(g, ox_tx.init(PARAMS), PARAMS)
    for a, b in zip(jax.tree.leaves(gf_update), jax.tree.leaves(ox_update)):
        np.testing.assert_allclose(a, -b, rtol=RTOL)

    # and gradflow's default is optax's rule with learning rate 1
    same = run_pair(gradflow.adadelta(None), optax.adadelta(1.0))
    assert_same_trajectory(same.gradflow, same.optax)


def _ewma_buffers(state: Any) -> list[EWMAState]:
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, EWMAState))
    return [node for node in nodes if isinstance(node, EWMAState)]


@pytest.mark.parametrize("mu_dtype", [None, jnp.bfloat16])
def test_adam_nu_dtype_sets_the_second_moment_buffer(mu_dtype):
    """``gradflow.adam`` has ``nu_dtype`` for the second-moment buffer; optax has only ``mu_dtype``."""
    with pytest.raises(TypeError, match="nu_dtype"):
        optax.adam(1e-2, nu_dtype=jnp.bfloat16)

    tx = gradflow.adam(1e-2, mu_dtype=mu_dtype, nu_dtype=jnp.bfloat16)
    state = tx.init(PARAMS)
    for _ in range(3):
        updates, state = jax.jit(tx.update)(jax.grad(loss)(PARAMS), state, PARAMS)
        mu, nu = _ewma_buffers(state)  # adam's state holds two EWMA buffers: m (first branch), then v
        assert {x.dtype for x in jax.tree.leaves(nu.mean)} == {jnp.dtype(jnp.bfloat16)}
        assert {x.dtype for x in jax.tree.leaves(mu.mean)} == {jnp.dtype(mu_dtype or jnp.float32)}
        assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}

    # optax keeps nu in the parameters' dtype whatever mu_dtype is
    ox_state = optax.adam(1e-2, mu_dtype=mu_dtype).init(PARAMS)
    assert {x.dtype for x in jax.tree.leaves(ox_state[0].nu)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(ox_state[0].mu)} == {jnp.dtype(mu_dtype or jnp.float32)}


def test_adam_nu_dtype_float32_is_optax_adam():
    """``nu_dtype`` equal to the parameters' dtype changes nothing: optax's numbers."""
    out = run_pair(gradflow.adam(1e-2, nu_dtype=jnp.float32), optax.adam(1e-2))
    assert_same_trajectory(out.gradflow, out.optax)
