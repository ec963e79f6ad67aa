"""Batch, stochastic and mini-batch gradient descent (seed 003) over Batches inside the compiled loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow.experiments import Batches, run

N = 12
EXAMPLES = {"x": jnp.arange(N, dtype=jnp.float32), "tag": jnp.arange(N, dtype=jnp.int32) * 10}


def mean_of_batch(p, batch):
    """Linear in p with gradient mean(x over the batch): SGD with η = 1 moves p by exactly that mean."""
    return p * jnp.mean(batch["x"])


def batch_means(history):
    """The mean example index of each step's batch, read back from the parameter trajectory."""
    return -np.diff(np.asarray(history.trajectory))


def test_stochastic_descent_visits_every_example_once_per_epoch_in_a_fresh_order():
    batches = Batches(EXAMPLES, batch_size=1, key=jax.random.key(7))
    history = run(mean_of_batch, jnp.float32(0.0), gf.sgd(1.0), steps=3 * N, data=batches, record=("params",))
    seen = np.rint(batch_means(history)).astype(int).reshape(3, N)
    for epoch in range(3):
        assert sorted(seen[epoch]) == list(range(N))
        np.testing.assert_array_equal(
            seen[epoch], jax.random.permutation(jax.random.fold_in(jax.random.key(7), epoch), N)
        )
    assert len({tuple(row) for row in seen}) == 3  # a new order every epoch
    again = run(mean_of_batch, jnp.float32(0.0), gf.sgd(1.0), steps=3 * N, data=batches, record=("params",))
    np.testing.assert_array_equal(again.params, history.params)  # reproducible from the key


def test_mini_batches_partition_the_epoch_and_drop_the_remainder():
    batches = Batches(EXAMPLES, batch_size=5)  # no key: stored order, 12 // 5 = 2 batches per epoch
    assert batches.steps_per_epoch == 2
    history = run(mean_of_batch, jnp.float32(0.0), gf.sgd(1.0), steps=4, data=batches, record=("params",))
    np.testing.assert_allclose(
        batch_means(history), [2.0, 7.0, 2.0, 7.0], rtol=1e-6
    )  # examples 0–4, 5–9; 10, 11 dropped


def test_batch_descent_sees_the_whole_dataset_and_equals_the_full_loss():
    data = {"x": jnp.linspace(-1, 1, N), "y": 3.0 * jnp.linspace(-1, 1, N) - 0.5}
    loss = lambda p, b: jnp.mean((p[0] * b["x"] + p[1] - b["y"]) ** 2)
    with_data = run(loss, jnp.zeros(2), gf.sgd(0.2), steps=30, data=data)
    without = run(lambda p: loss(p, data), jnp.zeros(2), gf.sgd(0.2), steps=30)
    np.testing.assert_allclose(with_data.loss, without.loss, rtol=1e-6)
    np.testing.assert_allclose(with_data.final_loss, without.final_loss, rtol=1e-6)


def test_minibatch_sgd_on_least_squares_matches_a_numpy_loop_float64():
    rng = np.random.default_rng(0)
    x, w_true = rng.normal(size=(40, 3)), np.array([1.0, -2.0, 0.5])
    y = x @ w_true + 0.1 * rng.normal(size=40)
    key = jax.random.key(3)
    with jax.enable_x64(True):
        batches = Batches({"x": jnp.asarray(x), "y": jnp.asarray(y)}, batch_size=8, key=key)
        loss = lambda w, b: 0.5 * jnp.mean((b["x"] @ w - b["y"]) ** 2)
        history = run(loss, jnp.zeros(3), gf.sgd(0.1), steps=25, data=batches)
        orders = [np.asarray(jax.random.permutation(jax.random.fold_in(key, e), 40)) for e in range(5)]
    w = np.zeros(3)
    for t in range(25):
        idx = orders[t // 5][(t % 5) * 8 : (t % 5 + 1) * 8]
        residual = x[idx] @ w - y[idx]
        np.testing.assert_allclose(history.loss[t], 0.5 * np.mean(residual**2), rtol=1e-12)
        w -= 0.1 * x[idx].T @ residual / 8
    np.testing.assert_allclose(history.final_params, w, rtol=1e-12)
    np.testing.assert_allclose(history.final_loss, 0.5 * np.mean((x @ w - y) ** 2), rtol=1e-12)  # on all data


def test_curriculum_order_for_the_first_epochs_then_shuffles():
    easy_first = jnp.asarray(np.argsort(-np.arange(N)), jnp.int32)  # descending: 11, 10, …, 0
    batches = Batches(EXAMPLES, batch_size=1, key=jax.random.key(1), order=easy_first, curriculum_epochs=2)
    history = run(mean_of_batch, jnp.float32(0.0), gf.sgd(1.0), steps=3 * N, data=batches, record=("params",))
    seen = np.rint(batch_means(history)).astype(int).reshape(3, N)
    np.testing.assert_array_equal(seen[0], np.arange(N)[::-1])
    np.testing.assert_array_equal(seen[1], np.arange(N)[::-1])
    np.testing.assert_array_equal(seen[2], jax.random.permutation(jax.random.fold_in(jax.random.key(1), 2), N))


def test_bad_datasets_are_named():
    with pytest.raises(
        ValueError, match=r"Batches: every leaf of data needs the same leading example axis.*\['y'\]: 3"
    ):
        Batches({"x": jnp.zeros(4), "y": jnp.zeros(3)})
    with pytest.raises(ValueError, match="Batches: data needs at least one array"):
        Batches({})
    with pytest.raises(ValueError, match=r"Batches: batch_size must be an integer >= 1 and <= 4, got 5"):
        Batches({"x": jnp.zeros(4)}, batch_size=5)
    with pytest.raises(ValueError, match=r"Batches: order must be a permutation of range\(4\) .*got shape \(3,\)"):
        Batches({"x": jnp.zeros(4)}, order=jnp.arange(3))


def test_full_loss_records_the_whole_dataset_while_loss_records_the_batch():
    data = {"x": jnp.linspace(-1, 1, N), "y": 3.0 * jnp.linspace(-1, 1, N) - 0.5}
    loss = lambda p, b: jnp.mean((p[0] * b["x"] + p[1] - b["y"]) ** 2)
    batches = Batches(data, batch_size=3, key=jax.random.key(0))
    history = run(loss, jnp.zeros(2), gf.sgd(0.2), steps=8, data=batches, record=("params", "full_loss"), every=2)
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    expected = [np.mean((p[0] * x + p[1] - y) ** 2) for p in np.asarray(history.params)]
    np.testing.assert_allclose(history.full_loss, expected, rtol=1e-6)
    assert not np.allclose(history.loss, history.full_loss)  # a batch of 3 is not the dataset
