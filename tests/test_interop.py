"""Interop both ways with the real libraries: gradflow in optax, optax in gradflow, flax nnx and TrainState,
equinox.

DESIGN.md, "The protocol": a gradflow transform works in ``optax.chain``, ``flax.nnx.Optimizer`` and
``flax.training.train_state.TrainState``; an optax transform can sit inside ``gradflow.chain``.

gradflow computes ``1 - b2`` in float32 while optax, given the Python float 0.999, computes it in double
(see tests/test_optax_parity.py, test_python_float_hyperparameters_round_differently): comparisons of
Adam-type optimizers with Python-float hyperparameters against optax run a few steps only, where that
systematic 6.4e-6-per-step difference stays well inside rtol=1e-5 / atol=1e-6.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import gradflow

RTOL, ATOL = 1e-5, 1e-6

_rng = np.random.default_rng(1)
PARAMS = {
    "dense": {"w": jnp.asarray(_rng.normal(size=(3, 2)), jnp.float32), "b": jnp.asarray([0.5, -0.3], jnp.float32)},
    "scale": jnp.asarray(2.0, jnp.float32),
}
X = jnp.asarray(_rng.normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(_rng.normal(size=(8, 2)), jnp.float32)


def loss(params: Any) -> jax.Array:
    """Non-quadratic, with gradients large enough (norm > 1) that clipping is active."""
    pred = params["scale"] * jnp.tanh(X @ params["dense"]["w"] + params["dense"]["b"])
    return 5.0 * jnp.mean(jnp.log(jnp.cosh(pred - Y))) + jnp.sum(params["dense"]["w"] ** 4)


value_and_grad = jax.jit(jax.value_and_grad(loss))


VALUE, GRAD = "<the loss at params>", "<the gradient at params>"  # placeholders for extra args


def run(tx: Any, steps: int = 8, jit: bool = True, params: Any = PARAMS, **extra: Any) -> list[Any]:
    """``steps`` steps of ``tx`` on its own trajectory; the params after each step.

    ``extra`` is passed to ``tx.update``, with the placeholders VALUE and GRAD replaced by the loss and
    the gradient at the current params (functions such as ``value_fn`` are closed over).
    """

    def update(grads, state, params, value):
        resolved = {k: value if v is VALUE else grads if v is GRAD else v for k, v in extra.items()}
        return tx.update(grads, state, params, **resolved)

    update = jax.jit(update) if jit else update
    state, history = tx.init(params), []
    for _ in range(steps):
        value, grads = value_and_grad(params)
        updates, state = update(grads, state, params, value)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history


def assert_trees_close(actual: Any, expected: Any, rtol: float = RTOL, atol: float = ATOL) -> None:
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert jnp.result_type(a) == jnp.result_type(e)
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol)


def test_clipping_is_active():
    """The clipped comparisons below are not vacuous."""
    assert float(optax.tree.norm(value_and_grad(PARAMS)[1])) > 2.0


# --- gradflow inside optax -----------------------------------------------------------------------


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_gradflow_optimizer_inside_optax_chain(jit):
    in_optax = optax.chain(optax.clip_by_global_norm(1.0), gradflow.adam(1e-2))
    in_gradflow = gradflow.chain(gradflow.clip_by_global_norm(1.0), gradflow.adam(1e-2))
    assert isinstance(in_optax, optax.GradientTransformationExtraArgs)
    steps = 8 if jit else 4  # eager: every op of the first step compiles on its own
    for ours, theirs in zip(run(in_gradflow, steps, jit=jit), run(in_optax, steps, jit=jit)):
        assert_trees_close(ours, theirs)
    # and both equal optax's own chain (few steps: see the module docstring)
    for ours, theirs in zip(run(in_optax), run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)))):
        assert_trees_close(ours, theirs)


def test_optax_chain_with_extra_args_and_gradflow_transform():
    """optax.chain passes extra args on; a gradflow transform that does not use them ignores them."""
    tx = optax.chain(optax.clip_by_global_norm(1.0), gradflow.adam(1e-2))
    with_extras = run(tx, value=VALUE, value_fn=loss, grad_fn=jax.grad(loss))
    for ours, theirs in zip(with_extras, run(tx)):
        assert_trees_close(ours, theirs, rtol=0, atol=0)


def test_optax_chain_forwards_extra_args_through_as_optax():
    """A gradflow transform that needs an extra argument enters optax.chain through ``as_optax()``.

    ``optax.chain`` wraps every transform that is not an ``optax.GradientTransformationExtraArgs``
    instance with ``optax.with_extra_args_support``, whose ``update`` drops the extra arguments; a bare
    ``gradflow.nag`` therefore never sees ``grad_fn`` there and says so.
    """
    grad_fn = jax.grad(loss)
    reference = run(gradflow.chain(gradflow.nag(1e-2, 0.9), gradflow.clip(0.05)), grad_fn=grad_fn)
    in_optax = run(optax.chain(gradflow.nag(1e-2, 0.9).as_optax(), optax.clip(0.05)), grad_fn=grad_fn)
    for ours, theirs in zip(reference, in_optax):
        assert_trees_close(ours, theirs)
    with pytest.raises(ValueError, match="needs params and grad_fn"):
        run(optax.chain(gradflow.nag(1e-2, 0.9), optax.clip(0.05)), grad_fn=grad_fn)


WRAPPERS = {
    "masked": lambda lib: optax.masked(lib.sgd(0.05, momentum=0.9), {"dense": {"w": True, "b": False}, "scale": True}),
    "MultiSteps": lambda lib: optax.MultiSteps(lib.sgd(0.05, momentum=0.9), every_k_schedule=2),
    "apply_if_finite": lambda lib: optax.apply_if_finite(lib.sgd(0.05, momentum=0.9), max_consecutive_errors=3),
    "multi_transform": lambda lib: optax.multi_transform(
        {"fast": lib.sgd(0.05, momentum=0.9), "slow": lib.sgd(0.01)},
        {"dense": {"w": "fast", "b": "slow"}, "scale": "slow"},
    ),
}


@pytest.mark.parametrize("name", sorted(WRAPPERS))
def test_gradflow_optimizer_inside_optax_wrappers(name):
    for ours, theirs in zip(run(WRAPPERS[name](gradflow)), run(WRAPPERS[name](optax))):
        assert_trees_close(ours, theirs)


# --- optax inside gradflow -----------------------------------------------------------------------


def test_optax_transform_inside_gradflow_chain():
    tx = gradflow.chain(optax.clip(0.5), gradflow.sgd(0.1))
    assert isinstance(tx.transforms[0], gradflow.ForeignTransform)
    reference = run(optax.chain(optax.clip(0.5), optax.sgd(0.1)))

    # eagerly, jitted with the chain closed over, and jitted with the chain as an argument (a pytree whose
    # optax part is static)
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p))
    as_argument, params, state = [], PARAMS, tx.init(PARAMS)
    for _ in range(len(reference)):
        updates, state = step(tx, value_and_grad(params)[1], state, params)
        params = gradflow.apply_updates(params, updates)
        as_argument.append(params)
    for trajectory in (run(tx, jit=False), run(tx), as_argument):
        for ours, theirs in zip(trajectory, reference):
            assert_trees_close(ours, theirs, rtol=0, atol=0)
    assert step._cache_size() == 1


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_extra_kwargs_reach_gradflow_chain_holding_optax_transform_without_extras(jit):
    """``optax.clip``'s update takes no extra args: gradflow.chain must not pass it ``value=`` and must not raise."""
    tx = gradflow.chain(optax.clip(0.5), gradflow.sgd(0.1))
    assert not isinstance(optax.clip(0.5), optax.GradientTransformationExtraArgs)
    with_extras = run(tx, jit=jit, value=VALUE, value_fn=loss, grad_fn=jax.grad(loss))
    for ours, theirs in zip(with_extras, run(optax.chain(optax.clip(0.5), optax.sgd(0.1)))):
        assert_trees_close(ours, theirs, rtol=0, atol=0)


def test_extra_kwargs_reach_optax_transform_that_uses_them():
    """gradflow.chain forwards ``value``/``grad``/``value_fn`` to an optax line search, as optax.chain does."""

    def line_search(lib):
        return lib.chain(lib.sgd(1.0), optax.scale_by_backtracking_linesearch(max_backtracking_steps=15))

    ours = run(line_search(gradflow), steps=5, value=VALUE, grad=GRAD, value_fn=loss)
    theirs = run(line_search(optax), steps=5, value=VALUE, grad=GRAD, value_fn=loss)
    losses = [float(loss(p)) for p in theirs]
    assert losses[-1] < float(loss(PARAMS)) and all(np.diff(losses) <= 0), losses  # the search did its job
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b)


# --- flax.nnx.Optimizer --------------------------------------------------------------------------


def _make_model() -> nnx.Linear:
    return nnx.Linear(3, 2, rngs=nnx.Rngs(0))


TRACES: list[str] = []


@nnx.jit
def nnx_train_step(model, optimizer, x, y):
    TRACES.append(type(optimizer.tx).__module__)
    loss_value, grads = nnx.value_and_grad(lambda m: jnp.mean(jnp.log(jnp.cosh(m(x) - y))))(model)
    optimizer.update(model, grads)
    return loss_value


def nnx_train(optimizer_cls: Any, tx: Any, steps: int = 5) -> tuple[list[Any], Any]:
    model = _make_model()
    optimizer = optimizer_cls(model, tx, wrt=nnx.Param)
    history = []
    for _ in range(steps):
        nnx_train_step(model, optimizer, X, Y)
        history.append(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    return history, optimizer


def test_nnx_optimizer_with_gradflow_matches_optax():
    ours, optimizer = nnx_train(nnx.Optimizer, gradflow.adam(1e-2))
    theirs, _ = nnx_train(nnx.Optimizer, optax.adam(1e-2))
    assert int(optimizer.step[...]) == 5
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b)
    assert not np.allclose(ours[-1]["kernel"], _make_model().kernel[...])

    # tx is a static attribute of nnx.Optimizer: an equal-valued gradflow optimizer does not recompile
    before = len(TRACES)
    nnx_train(nnx.Optimizer, gradflow.adam(1e-2), steps=2)
    assert len(TRACES) == before


def test_nnx_optimizer_refuses_array_hyperparameters_as_static_tx():
    """Documented limitation: ``nnx.Optimizer`` stores ``tx`` as a static attribute and (flax 0.12) refuses
    a static value holding arrays, so a gradflow optimizer with an array learning rate needs the
    ``DataOptimizer`` subclass below (tx declared as ``nnx.data()``). Python-number hyperparameters, the
    default, work with ``nnx.Optimizer`` as it is (test above)."""
    with pytest.raises(ValueError, match="static attribute 'tx'"):
        nnx_train(nnx.Optimizer, gradflow.adam(jnp.asarray(1e-2)))


class DataOptimizer(nnx.Optimizer):
    """nnx.Optimizer whose tx is pytree data (the workaround for array hyperparameters)."""

    tx: Any = nnx.data()


def test_nnx_optimizer_with_tx_as_data_traces_the_hyperparameters():
    """With tx declared as nnx data, gradflow's hyperparameters are traced: new values, no recompile."""
    ours, _ = nnx_train(DataOptimizer, gradflow.adam(jnp.asarray(1e-2)))
    theirs, _ = nnx_train(nnx.Optimizer, optax.adam(1e-2))
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b)
    before = len(TRACES)
    other, _ = nnx_train(DataOptimizer, gradflow.adam(jnp.asarray(3e-2)), steps=1)
    assert len(TRACES) == before
    reference, _ = nnx_train(nnx.Optimizer, optax.adam(3e-2), steps=1)
    assert_trees_close(other[0], reference[0])


# --- flax.training.train_state.TrainState --------------------------------------------------------

TRAIN_STATE_TRACES: list[int] = []
DENSE = nn.Dense(2)


@jax.jit
def train_state_step(state: train_state.TrainState, x: jax.Array, y: jax.Array) -> train_state.TrainState:
    TRAIN_STATE_TRACES.append(1)
    grads = jax.grad(lambda p: jnp.mean(jnp.log(jnp.cosh(state.apply_fn(p, x) - y))))(state.params)
    return state.apply_gradients(grads=grads)


def train_state_train(tx: Any, steps: int = 5) -> list[Any]:
    state = train_state.TrainState.create(apply_fn=DENSE.apply, params=DENSE.init(jax.random.key(0), X), tx=tx)
    history = []
    for _ in range(steps):
        state = train_state_step(state, X, Y)
        history.append(state.params)
    assert int(state.step) == steps
    return history


def test_train_state_with_gradflow_matches_optax():
    ours = train_state_train(gradflow.adamw(1e-2))
    theirs = train_state_train(optax.adamw(1e-2))
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b)


def test_train_state_does_not_recompile_for_equal_gradflow_optimizers():
    """TrainState's tx is a static field (part of the treedef, hashed): equal values mean a cache hit.

    Two separately built ``gradflow.adamw(1e-2)`` are equal and hash alike, so the jitted step compiles
    once; two ``optax.adamw(1e-2)`` are different closures and compile twice. Another learning rate is
    another static value and compiles again (pass the optimizer as a jit argument to avoid that).
    """
    start = len(TRAIN_STATE_TRACES)
    mask = {"params": {"kernel": True, "bias": False}}
    train_state_train(gradflow.adamw(1e-2, mask=mask), steps=2)
    first = len(TRAIN_STATE_TRACES)
    assert first - start <= 1
    train_state_train(gradflow.adamw(1e-2, mask={"params": {"kernel": True, "bias": False}}), steps=2)
    assert len(TRAIN_STATE_TRACES) == first

    train_state_train(optax.adamw(1e-2), steps=1)
    train_state_train(optax.adamw(1e-2), steps=1)
    assert len(TRAIN_STATE_TRACES) == first + 2
    train_state_train(gradflow.adamw(2e-2, mask=mask), steps=1)
    assert len(TRAIN_STATE_TRACES) == first + 3


# --- equinox -------------------------------------------------------------------------------------


def equinox_train(tx: Any, steps: int = 5) -> list[Any]:
    """An equinox MLP trained with ``eqx.filter``: only its arrays are optimized (activation functions and
    other static fields are ``None`` in the filtered tree, which ``init``/``update`` must pass through)."""
    model = eqx.nn.MLP(3, 2, width_size=4, depth=2, key=jax.random.key(0))

    @eqx.filter_jit
    def step(model, state):
        def model_loss(model):
            return jnp.mean((jax.vmap(model)(X) - Y) ** 2)

        grads = eqx.filter_grad(model_loss)(model)
        updates, state = tx.update(grads, state, eqx.filter(model, eqx.is_array))
        return eqx.apply_updates(model, updates), state

    state = tx.init(eqx.filter(model, eqx.is_inexact_array))
    history = []
    for _ in range(steps):
        model, state = step(model, state)
        history.append(eqx.filter(model, eqx.is_array))
    return history


@pytest.mark.parametrize("name", ["adam", "sgd_momentum", "clip_adamw"])
def test_equinox_model_with_gradflow_matches_optax(name):
    """gradflow on an equinox model (``eqx.filter``, ``eqx.filter_grad``, ``eqx.apply_updates``) takes the
    same steps as optax."""
    pairs = {
        "adam": (gradflow.adam(1e-2), optax.adam(1e-2)),
        "sgd_momentum": (gradflow.sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)),
        "clip_adamw": (
            gradflow.chain(gradflow.clip_by_global_norm(0.1), gradflow.adamw(1e-2)),
            optax.chain(optax.clip_by_global_norm(0.1), optax.adamw(1e-2)),
        ),
    }
    ours, theirs = equinox_train(pairs[name][0]), equinox_train(pairs[name][1])
    for a, b in zip(ours, theirs):
        assert_trees_close(a, b)
    assert not np.allclose(ours[-1].layers[0].weight, ours[0].layers[0].weight)  # the model did train
