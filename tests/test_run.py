"""Compiled runs and sweeps (gradflow.experiments.run) against NumPy and optax loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow.experiments import EarlyStopping, loop, optimizer_grid, run, steps_to_tolerance, sweep

A = np.array([[3.0, 0.5], [0.5, 1.0]])
B = np.array([1.0, -2.0])


def quadratic(p):
    """½ pᵀAp − bᵀp, whose gradient Ap − b a NumPy reference can compute."""
    return 0.5 * p @ jnp.asarray(A, p.dtype) @ p - jnp.asarray(B, p.dtype) @ p


def numpy_heavy_ball(p, lr, momentum, steps):
    """Seed 002's heavy ball in float64: m ← γm + g, p ← p − ηm; losses and gradient norms before each step."""
    p, m = np.array(p, np.float64), np.zeros(2)
    losses, norms, points = [], [], []
    for _ in range(steps):
        g = A @ p - B
        losses.append(0.5 * p @ A @ p - B @ p)
        norms.append(np.linalg.norm(g))
        points.append(p.copy())
        m = momentum * m + g
        p = p - lr * m
    return np.array(losses), np.array(norms), np.array(points), p


def test_run_equals_numpy_heavy_ball_float64():
    with jax.enable_x64(True):
        history = run(quadratic, jnp.array([2.0, 1.0]), gf.sgd(0.1, momentum=0.9), steps=40,
                      record=("grad_norm", "params"))  # fmt: skip
    losses, norms, points, final = numpy_heavy_ball([2.0, 1.0], 0.1, 0.9, 40)
    np.testing.assert_array_equal(history.steps, np.arange(40))
    np.testing.assert_allclose(history.loss, losses, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history.grad_norm, norms, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history.params, points, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history.final_params, final, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(history.final_loss, 0.5 * final @ A @ final - B @ final, rtol=1e-12)
    np.testing.assert_allclose(history.trajectory, np.vstack([points, final]), rtol=1e-12, atol=1e-14)
    assert history.stopped_at == 40 and history.val_loss is None and history.best_params is None


def test_run_equals_a_python_loop_of_optax_adam_float64():
    loss = lambda p: jnp.sum(jnp.tanh(p["w"]) ** 2) + (p["b"] - 1.0) ** 2 + 0.1 * jnp.sum(p["w"] ** 4)
    with jax.enable_x64(True):
        params = {"w": jnp.array([2.0, -1.0, 0.5]), "b": jnp.array(0.3)}
        history = run(loss, params, gf.adam(0.05), steps=30)
        reference, state, losses = params, optax.adam(0.05).init(params), []
        for _ in range(30):
            value, grads = jax.value_and_grad(loss)(reference)
            losses.append(value)
            updates, state = optax.adam(0.05).update(grads, state, reference)
            reference = optax.apply_updates(reference, updates)
    np.testing.assert_allclose(history.loss, losses, rtol=1e-10)
    for ours, theirs in zip(jax.tree.leaves(history.final_params), jax.tree.leaves(reference)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10)


def test_an_optax_transform_runs_too():
    with jax.enable_x64(True):
        ours = run(quadratic, jnp.array([2.0, 1.0]), gf.adam(0.1), steps=20)
        theirs = run(quadratic, jnp.array([2.0, 1.0]), optax.adam(0.1), steps=20)
    np.testing.assert_allclose(ours.loss, theirs.loss, rtol=1e-10)


def test_record_every_k_steps_samples_the_every_step_run():
    full = run(quadratic, jnp.array([2.0, 1.0]), gf.nag(0.05), steps=30, record=("params", "grad_norm"))
    sampled = run(quadratic, jnp.array([2.0, 1.0]), gf.nag(0.05), steps=30, record=("params", "grad_norm"), every=5)
    np.testing.assert_array_equal(sampled.steps, np.arange(0, 30, 5))
    for field in ("loss", "grad_norm", "params"):
        np.testing.assert_array_equal(getattr(sampled, field), getattr(full, field)[::5])
    np.testing.assert_array_equal(sampled.final_params, full.final_params)


def test_update_receives_value_and_grad_fn():
    """Polyak's step needs the loss value; NAG needs the gradient at its look-ahead point."""
    with jax.enable_x64(True):
        polyak = run(quadratic, jnp.array([2.0, 1.0]), gf.polyak_sgd(max_learning_rate=1.0, f_min=-10.0), steps=5,
                     record=("params",))  # fmt: skip
    p = np.array([2.0, 1.0])
    for step in range(5):
        np.testing.assert_allclose(polyak.params[step], p, rtol=1e-12)
        g, f = A @ p - B, 0.5 * p @ A @ p - B @ p
        p = p - min((f + 10.0) / (g @ g), 1.0) * g
    np.testing.assert_allclose(polyak.final_params, p, rtol=1e-12)


def test_a_new_learning_rate_reuses_the_compiled_program():
    run(quadratic, jnp.array([2.0, 1.0]), gf.adam(0.1), steps=10)
    size = loop._run_jit._cache_size()
    for lr in (0.2, 0.01, 3e-4):
        run(quadratic, jnp.array([2.0, 1.0]), gf.adam(lr), steps=10)
    assert loop._run_jit._cache_size() == size


def test_run_converts_an_optimizers_numbers_once_and_never_reuses_a_stale_copy():
    """The device copy of an optimizer's Python numbers is made once per optimizer object and dies with it;
    an optimizer holding a NumPy array (which can be written in place) is converted at every call."""
    start, tx = jnp.array([2.0, 1.0]), gf.sgd(0.1)
    first = run(quadratic, start, tx, steps=3)
    assert loop._once_per_optimizer(jax.device_put, tx) is loop._once_per_optimizer(jax.device_put, tx)
    with jax.enable_x64(True):  # a Python float is float64 there: another copy
        assert jax.tree.leaves(loop._once_per_optimizer(jax.device_put, tx))[0].dtype == jnp.float64
    second = run(quadratic, start, tx, steps=3)
    np.testing.assert_array_equal(first.final_params, second.final_params)
    key = (id(tx), jax.device_put, jax.dtypes.canonicalize_dtype(np.float64))
    del tx
    assert key not in loop._PER_OPTIMIZER
    # gradient descent from p: p − η(Ap − b), in float64, for η = 0.1 and then η = 0.2 written into the array
    learning_rate = np.array(0.1, np.float32)
    tx = gf.sgd(learning_rate)
    for value in (0.1, 0.2):
        learning_rate[...] = value
        p = np.array([2.0, 1.0])
        for _ in range(3):
            p = p - value * (A @ p - B)
        np.testing.assert_allclose(run(quadratic, start, tx, steps=3).final_params, p, rtol=1e-6, atol=1e-6)


def test_the_loop_does_not_check_again_what_run_checked_before_the_call():
    """run checks tx's concrete hyperparameters on the host, so its compiled loop has none of their range
    checks (compare and select per hyperparameter and step) and gives the same numbers as a loop with them."""
    arguments = (quadratic, jnp.array([2.0, 1.0]), gf.adam(0.1, b1=0.8), None, None)
    options = {"steps": 6, "record": (), "every": 1, "advance": None}
    programs = {checked: loop._run_jit.trace(*arguments, **options, checked=checked) for checked in (False, True)}
    selects = {checked: str(program.jaxpr).count("select_n") for checked, program in programs.items()}
    assert selects[True] < selects[False], selects
    with_checks, without = (loop._run_jit(*arguments, **options, checked=checked) for checked in (False, True))
    for a, b in zip(jax.tree.leaves(with_checks), jax.tree.leaves(without)):
        np.testing.assert_array_equal(a, b)


def test_a_schedule_that_leaves_its_range_inside_the_loop_still_gives_nan():
    """A schedule's value is computed inside the loop, so the loop checks it: b1 = 0.9 + 0.2·count is 1.1 at
    the second step, whose update (and every later loss) is NaN; the first step is Adam's."""
    history = run(lambda p: jnp.sum(p**2), jnp.ones(2), gf.adam(0.1, b1=lambda count: 0.9 + 0.2 * count), steps=4)
    # Adam's first step moves each coordinate by the learning rate: p = 1 − 0.1 = 0.9, loss 2·0.81
    np.testing.assert_allclose(np.asarray(history.loss[:2]), [2.0, 1.62], rtol=1e-6)
    assert np.isnan(np.asarray(history.loss[2:])).all() and bool(history.diverged)


def test_sweep_rows_equal_single_runs():
    learning_rates = jnp.array([0.01, 0.1, 0.3, 0.7])
    histories = sweep(quadratic, jnp.array([2.0, 1.0]), jax.vmap(gf.sgd)(learning_rates), steps=25,
                      record=("params",))  # fmt: skip
    assert histories.loss.shape == (4, 25) and histories.params.shape == (4, 25, 2)
    for i, lr in enumerate(learning_rates):
        single = run(quadratic, jnp.array([2.0, 1.0]), gf.sgd(float(lr)), steps=25, record=("params",))
        for ours, theirs in zip(jax.tree.leaves(histories[i]), jax.tree.leaves(single)):
            np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=1e-7)


def test_sweep_prepares_a_batch_once_and_rereads_numpy_leaves_at_every_call():
    """The batch axes sweep drops are found once per batch of jax arrays; NumPy leaves are read at every call
    (here a momentum equal across the batch, whose axis is dropped, then changed in place)."""
    start, txs = jnp.array([2.0, 1.0]), jax.vmap(gf.sgd)(jnp.array([0.1, 0.2]), jnp.array([0.5, 0.5]))
    prepared = loop._once_per_optimizer(loop._drop_constant_batch_axes, txs)
    assert loop._once_per_optimizer(loop._drop_constant_batch_axes, txs) is prepared
    numpy_txs = jax.tree.map(np.array, txs)
    learning_rates, momenta = gf.get_hyperparam(numpy_txs, "learning_rate"), gf.get_hyperparam(numpy_txs, "momentum")
    for second in (0.5, 0.9):  # the second run's momentum, written into the array between the sweeps
        momenta[1] = second
        final = sweep(quadratic, start, numpy_txs, steps=3).final_params
        for row, lr, momentum in zip(final, learning_rates, momenta):
            np.testing.assert_allclose(row, numpy_heavy_ball([2.0, 1.0], lr, momentum, 3)[3], rtol=1e-6, atol=1e-6)


def test_optimizer_grid_is_the_product_of_its_axes_in_order():
    grid = optimizer_grid(gf.adam, learning_rate=jnp.array([0.1, 0.01, 0.001]), b1=jnp.array([0.8, 0.9]))
    assert grid.shape == (3, 2)
    np.testing.assert_allclose(grid.values["learning_rate"], [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    np.testing.assert_allclose(grid.values["b1"], [0.8, 0.9] * 3)
    histories = sweep(quadratic, jnp.array([2.0, 1.0]), grid.txs, steps=15)
    final = grid.reshape(histories.final_loss)
    assert final.shape == (3, 2)
    single = run(quadratic, jnp.array([2.0, 1.0]), gf.adam(0.01, b1=0.9), steps=15)
    np.testing.assert_allclose(final[1, 1], single.final_loss, rtol=1e-6)


def test_optimizer_grid_rejects_bad_axes():
    with pytest.raises(ValueError, match="optimizer_grid: give at least one"):
        optimizer_grid(gf.adam)
    with pytest.raises(ValueError, match="optimizer_grid: learning_rate must be a non-empty 1-D array of real numbers"):
        optimizer_grid(gf.adam, learning_rate=[[0.1]])
    with pytest.raises(TypeError, match="factory"):
        optimizer_grid("adam", learning_rate=[0.1])


def numpy_validation_stop(val_losses, patience, min_delta):
    """Index of the record at which early stopping fires (or None), and the best record before it."""
    best, best_index, waited = np.inf, None, 0
    for i, value in enumerate(val_losses):
        if value < best - min_delta:
            best, best_index, waited = value, i, 0
        else:
            waited += 1
            if waited >= patience:
                return i, best_index
    return None, best_index


def test_early_stopping_freezes_at_the_numpy_decision_and_keeps_the_best_params():
    # Validation optimum at p = (1, 1) while training heads for A⁻¹b: the validation loss falls, then rises.
    validation = lambda p: jnp.sum((p - 1.0) ** 2)
    stopping = EarlyStopping(validation, patience=3, min_delta=1e-4)
    with jax.enable_x64(True):
        free = run(quadratic, jnp.array([3.0, 3.0]), gf.sgd(0.05), steps=200, record=("params",), every=5)
        stopped = run(quadratic, jnp.array([3.0, 3.0]), gf.sgd(0.05), steps=200, record=("params",), every=5,
                      early_stopping=stopping)  # fmt: skip
    val_losses = np.sum((np.asarray(free.params) - 1.0) ** 2, axis=1)
    stop_record, best_record = numpy_validation_stop(val_losses, 3, 1e-4)
    assert stop_record is not None and 0 < best_record < stop_record
    np.testing.assert_allclose(stopped.val_loss[: stop_record + 1], val_losses[: stop_record + 1], rtol=1e-12)
    assert int(stopped.stopped_at) == 5 * stop_record
    np.testing.assert_allclose(stopped.best_params, free.params[best_record], rtol=1e-12)
    np.testing.assert_allclose(stopped.best_val_loss, val_losses[best_record], rtol=1e-12)
    np.testing.assert_allclose(stopped.final_params, free.params[stop_record], rtol=1e-12)  # frozen from there
    np.testing.assert_array_equal(
        stopped.params[stop_record:], np.broadcast_to(free.params[stop_record], (40 - stop_record, 2))
    )


def test_early_stopping_rows_of_a_sweep_stop_independently():
    validation = lambda p: jnp.sum((p - 1.0) ** 2)
    txs = jax.vmap(gf.sgd)(jnp.array([0.01, 0.05, 0.2]))
    stopping = EarlyStopping(validation, patience=2)
    histories = sweep(quadratic, jnp.array([3.0, 3.0]), txs, steps=100, every=5, early_stopping=stopping)
    for i, lr in enumerate((0.01, 0.05, 0.2)):
        single = run(quadratic, jnp.array([3.0, 3.0]), gf.sgd(lr), steps=100, every=5, early_stopping=stopping)
        assert int(histories.stopped_at[i]) == int(single.stopped_at)
        np.testing.assert_allclose(histories.best_params[i], single.best_params, rtol=1e-6)
    assert len(set(np.asarray(histories.stopped_at).tolist())) > 1


def test_progress_bar_counts_every_step(capsys, monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.setattr("gradflow.experiments.loop.stderr_is_terminal", lambda: True)  # capsys is no terminal
    run(quadratic, jnp.array([2.0, 1.0]), gf.sgd(0.1), steps=40, every=10, progress=True)
    err = capsys.readouterr().err
    assert "40/40" in err


def test_steps_to_tolerance_needs_the_loss_to_stay_below():
    losses = np.array(
        [[1.0, 1e-7, 1e-3, 1e-7, 1e-8], [1.0, 0.5, 0.1, 1e-2, 1e-3], [1.0, np.nan, np.nan, np.nan, np.nan]]
    )
    assert list(steps_to_tolerance(losses, 0.0, 1e-6)) == [3, None, None]
    assert steps_to_tolerance(losses[0], 0.0, 1e-6, steps=np.arange(0, 50, 10)) == 30
    assert steps_to_tolerance(np.full(4, 2.0 + 1e-4), 2.0, 1e-3) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"steps": 0}, ValueError, r"run: steps must be an integer >= 1 and <= 2147483647, got 0"),
        ({"steps": 2.5}, TypeError, r"run: steps must be an integer >= 1 and <= 2147483647, got 2.5"),
        ({"steps": 2**31}, ValueError, r"run: steps must be an integer >= 1 and <= 2147483647, got 2147483648"),
        ({"steps": 10, "every": 20}, ValueError, r"run: every must be an integer >= 1 and <= 10, got 20"),
        ({"steps": 10, "every": 3}, ValueError, r"run: steps \(10\) must be a multiple of every \(3\)"),
        (
            {"steps": 10, "record": ("loss", "hessian")},
            ValueError,
            r"run: record must be one of 'loss', 'grad_norm', 'params', 'full_loss', got 'hessian'",
        ),
        (
            {"steps": 10, "early_stopping": lambda p: 0.0},
            TypeError,
            "run: early_stopping must be an EarlyStopping, got function",
        ),
        ({"steps": 10, "progress": "yes"}, TypeError, "run: progress must be True or False, got 'yes'"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        run(quadratic, jnp.array([2.0, 1.0]), gf.sgd(0.1), **kwargs)


def test_bad_loss_params_and_optimizer_are_named():
    with pytest.raises(
        ValueError, match=r"run: loss_fn must return a real floating-point scalar \(shape \(\)\), got shape \(2,\)"
    ):
        run(lambda p: p**2, jnp.array([2.0, 1.0]), gf.sgd(0.1), steps=2)
    with pytest.raises(TypeError, match=r"run: loss_fn must return a real floating-point scalar .*got dtype int32"):
        run(lambda p: jnp.sum(p).astype(jnp.int32), jnp.array([2.0, 1.0]), gf.sgd(0.1), steps=2)
    with pytest.raises(
        TypeError, match=r"run: loss_fn is called as loss_fn\(params\), but missing a required argument: 'batch'"
    ):
        run(lambda p, batch: jnp.sum(p), jnp.array([2.0, 1.0]), gf.sgd(0.1), steps=2)
    with pytest.raises(TypeError, match="loss_fn"):
        run("quadratic", jnp.array([2.0, 1.0]), gf.sgd(0.1), steps=2)
    with pytest.raises(TypeError, match="run: tx must be a gradient transformation with init and update, got float"):
        run(quadratic, jnp.array([2.0, 1.0]), 0.1, steps=2)
    with pytest.raises(TypeError, match="params"):
        run(lambda p: jnp.sum(p), jnp.array([2, 1]), gf.sgd(0.1), steps=2)
    with pytest.raises(ValueError, match="EarlyStopping: patience must be an integer >= 1 and <= 2147483647, got 0"):
        EarlyStopping(quadratic, patience=0)
    with pytest.raises(ValueError, match="sweep: every hyperparameter leaf of txs needs the same leading batch axis"):
        sweep(quadratic, jnp.array([2.0, 1.0]), gf.sgd(0.1), steps=2)
    with pytest.raises(TypeError, match="sweep: txs must be a gradflow transform"):
        sweep(quadratic, jnp.array([2.0, 1.0]), optax.sgd(0.1), steps=2)
