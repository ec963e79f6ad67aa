"""Bad inputs to the experiment tools, the CLI, the gradient check and the distributed module.

Each ``ERRORS`` probe asserts an error whose message names the culprit (the argument, the grid point,
the CLI flag, the pytree path) and what is allowed; each ``SAFE`` probe asserts a documented outcome with
numbers: a NaN run is reported as diverged and never chosen as best, a non-finite gradient or loss is
named by the gradient check instead of being called roundoff. CLI probes call ``gradflow.cli.main``
in-process: exit status 2 and one line on stderr, before anything runs.
"""

from __future__ import annotations

import contextlib
import functools
import io

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from bad_input_probes import error_probe, safe_probe

import gradflow as gf
import gradflow.distributed as gd
from gradflow.cli import main
from gradflow.experiments import (
    LANDSCAPES,
    Batches,
    EarlyStopping,
    History,
    optimizer_grid,
    race,
    race_one,
    run,
    steps_to_tolerance,
    sweep,
)
from gradflow.experiments.landscapes import start_point

matplotlib.use("Agg")
from gradflow.experiments import plots  # after choosing the backend

BOOTH = LANDSCAPES["booth"]
P = jnp.array([2.0, 1.0])
DATA = {"x": jnp.arange(4.0)}


def quadratic(p):
    return jnp.sum(p**2)


def validation(p):
    return jnp.sum((p - 1.0) ** 2)


def _run(**kwargs):
    return run(quadratic, P, gf.sgd(0.1), **{"steps": 4, **kwargs})


class CliError(Exception):
    """What the CLI wrote to stderr when it exited with status 2 (argparse's convention)."""


def _cli(*argv):
    """Run ``gradflow argv`` in-process; a usage error becomes :class:`CliError` with its one stderr line."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(list(argv))
        except SystemExit as exit_:
            text = stderr.getvalue()
            assert exit_.code == 2 and text.count("\n") == 1 and "Traceback" not in text, (exit_.code, text)
            raise CliError(text) from None
    raise AssertionError(f"gradflow {' '.join(argv)} ran instead of refusing its arguments")


def _sweep_output(*argv):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(list(argv)) == 0
    return stdout.getvalue()


ERRORS = [
    # ---------------------------------------------------------------- optimizer_grid and sweep (traced paths)
    error_probe(
        "grid-b1-at-or-above-1",
        ValueError,
        (lambda: optimizer_grid(gf.adam, learning_rate=[0.1], b1=[0.9, 1.0]),
         r"optimizer_grid: adam refuses the grid point learning_rate=0.1, b1=1.0: .*b1 must be in \[0.0, 1.0\), "
         r"got 1.0"),
        (lambda: optimizer_grid(gf.adam, learning_rate=[0.1], b1=[1.5]), r"b1=1.5: .*b1 must be in \[0.0, 1.0\)"),
    ),
    error_probe(
        "grid-negative-momentum",
        ValueError,
        (lambda: optimizer_grid(functools.partial(gf.sgd, momentum=0.9), learning_rate=[0.1], momentum=[0.5, -3.0]),
         r"grid point learning_rate=0.1, momentum=-3.0: sgd: momentum must be in \[0.0, 1.0\), got -3.0"),
    ),
    error_probe(
        "grid-negative-or-nan-learning-rate",
        ValueError,
        (lambda: optimizer_grid(gf.sgd, learning_rate=[0.1, -0.1]),
         r"grid point learning_rate=-0.1: sgd: learning_rate must be in \[0.0, inf\), got -0.1"),
        (lambda: optimizer_grid(gf.adam, learning_rate=[np.nan]), r"learning_rate=nan: adam: learning_rate must be"),
    ),
    error_probe(
        "grid-axis-the-factory-does-not-take",
        TypeError,
        (lambda: optimizer_grid(gf.sgd, lr=[0.1]), r"grid point lr=0.1: .*unexpected keyword argument 'lr'"),
    ),
    error_probe(
        "grid-axis-not-numbers",
        ValueError,
        (lambda: optimizer_grid(gf.sgd, learning_rate=[[0.1]]), r"learning_rate must be a non-empty 1-D array"),
        (lambda: optimizer_grid(gf.sgd, learning_rate=["a"]), r"learning_rate must be a non-empty 1-D array .*'a'"),
        (lambda: optimizer_grid(gf.sgd, learning_rate=[]), r"learning_rate must be a non-empty 1-D array"),
    ),
    error_probe(
        "grid-factory-not-callable",
        TypeError,
        (lambda: optimizer_grid("adam", learning_rate=[0.1]), r"optimizer_grid: factory must be a function, got 'ad"),
    ),
    error_probe(
        "sweep-vmapped-out-of-range-values",
        ValueError,
        (lambda: sweep(quadratic, P, jax.vmap(gf.sgd)(jnp.array([0.1, -0.1])), steps=4),
         r"sweep: learning_rate .*must be in \[0.0, inf\)"),
        (lambda: sweep(quadratic, P, jax.vmap(lambda m: gf.sgd(0.1, momentum=m))(jnp.array([0.5, -3.0])), steps=4),
         r"sweep: momentum .*must be in \[0.0, 1.0\)"),
    ),
    error_probe(
        "sweep-txs-without-batch-axis",
        ValueError,
        (lambda: sweep(quadratic, P, gf.sgd(0.1), steps=4), r"sweep: every hyperparameter leaf of txs needs the same"),
    ),
    # ---------------------------------------------------------------- run
    error_probe(
        "run-steps-not-an-integer",
        TypeError,
        (lambda: _run(steps=2.5), r"run: steps must be an integer >= 1 and <= 2147483647, got 2.5"),
        (lambda: _run(steps=True), r"run: steps must be an integer .*got True"),
        (lambda: _run(steps="10"), r"run: steps must be an integer .*got '10'"),
    ),
    error_probe(
        "run-steps-beyond-int32-or-zero",
        ValueError,
        (lambda: _run(steps=2**31), r"run: steps must be an integer >= 1 and <= 2147483647, got 2147483648"),
        (lambda: _run(steps=0), r"run: steps must be an integer >= 1 and <= 2147483647, got 0"),
    ),
    error_probe(
        "run-every-not-dividing-steps",
        ValueError,
        (lambda: _run(steps=10, every=3), r"run: steps \(10\) must be a multiple of every \(3\)"),
        (lambda: _run(steps=10, every=20), r"run: every must be an integer >= 1 and <= 10, got 20"),
    ),
    error_probe(
        "run-record-unknown",
        ValueError,
        (lambda: _run(record=("loss", "hessian")),
         r"run: record must be one of 'loss', 'grad_norm', 'params', 'full_loss', got 'hessian'"),
    ),
    error_probe(
        "run-progress-not-a-flag",
        TypeError,
        (lambda: _run(progress="no"), r"run: progress must be True or False, got 'no'"),
    ),
    error_probe(
        "run-loss-not-a-scalar",
        ValueError,
        (lambda: run(lambda p: p**2, P, gf.sgd(0.1), steps=4),
         r"run: loss_fn must return a real floating-point scalar \(shape \(\)\), got shape \(2,\) \(float32\)"),
    ),
    error_probe(
        "run-loss-of-the-wrong-kind",
        TypeError,
        (lambda: run(lambda p: jnp.sum(p).astype(jnp.int32), P, gf.sgd(0.1), steps=4),
         r"run: loss_fn must return a real floating-point scalar \(shape \(\)\), got dtype int32"),
        (lambda: run(lambda p: (jnp.sum(p), p), P, gf.sgd(0.1), steps=4), r"run: loss_fn must return .*got a tuple"),
    ),
    error_probe(
        "run-loss-signature-does-not-fit-data",
        TypeError,
        (lambda: run(quadratic, P, gf.sgd(0.1), steps=4, data=DATA),
         r"run: loss_fn is called as loss_fn\(params, batch\), but too many positional arguments"),
        (lambda: run(lambda p, batch: quadratic(p), P, gf.sgd(0.1), steps=4),
         r"run: loss_fn is called as loss_fn\(params\), but missing a required argument: 'batch'"),
    ),
    error_probe(
        "run-loss-tx-params-of-the-wrong-type",
        TypeError,
        (lambda: run("quadratic", P, gf.sgd(0.1), steps=4), r"run: loss_fn must be a function, got 'quadratic'"),
        (lambda: run(quadratic, P, 0.1, steps=4), r"run: tx must be a gradient transformation with init and update"),
        (lambda: run(quadratic, jnp.array([2, 1]), gf.sgd(0.1), steps=4), r"params has dtype int32"),
        (lambda: _run(early_stopping=validation), r"run: early_stopping must be an EarlyStopping, got function"),
    ),
    error_probe(
        "run-params-empty",
        ValueError,
        (lambda: run(quadratic, {}, gf.sgd(0.1), steps=4), r"run: params has no arrays to train, got \{\}"),
    ),
    # ---------------------------------------------------------------- EarlyStopping
    error_probe(
        "early-stopping-patience-zero-any-type",
        ValueError,
        (lambda: EarlyStopping(validation, patience=0), r"EarlyStopping: patience must be an integer >= 1 .*got 0"),
        (lambda: EarlyStopping(validation, patience=jnp.array(0)), r"EarlyStopping: patience must be .*got 0"),
        (lambda: EarlyStopping(validation, patience=np.int64(-2)), r"EarlyStopping: patience must be .*got -2"),
    ),
    error_probe(
        "early-stopping-patience-not-an-integer",
        TypeError,
        (lambda: EarlyStopping(validation, patience=2.5), r"EarlyStopping: patience must be an integer .*got 2.5"),
        (lambda: EarlyStopping(validation, patience=jnp.array(2.0)), r"EarlyStopping: patience must be an integer"),
        (lambda: EarlyStopping(validation, patience="3"), r"EarlyStopping: patience must be an integer .*got '3'"),
    ),
    error_probe(
        "early-stopping-min-delta-negative-or-nan",
        ValueError,
        (lambda: EarlyStopping(validation, min_delta=-1.0), r"EarlyStopping: min_delta must be in \[0.0, inf\)"),
        (lambda: EarlyStopping(validation, min_delta=jnp.array(-0.1)), r"EarlyStopping: min_delta must be in"),
        (lambda: EarlyStopping(validation, min_delta=np.nan), r"EarlyStopping: min_delta must be in .*got nan"),
    ),
    error_probe(
        "early-stopping-validation-fn-not-callable",
        TypeError,
        (lambda: EarlyStopping(3.0), r"EarlyStopping: validation_fn must be a function, got 3.0"),
    ),
    error_probe(
        "early-stopping-validation-not-a-scalar",
        ValueError,
        (lambda: _run(early_stopping=EarlyStopping(lambda p: p - 1.0)),
         r"EarlyStopping: validation_fn must return a real floating-point scalar \(shape \(\)\), got shape \(2,\)"),
    ),
    # ---------------------------------------------------------------- Batches
    error_probe(
        "batches-batch-size-not-an-integer",
        TypeError,
        (lambda: Batches(DATA, batch_size=2.5), r"Batches: batch_size must be an integer >= 1 and <= 4, got 2.5"),
        (lambda: Batches(DATA, batch_size="2"), r"Batches: batch_size must be an integer .*got '2'"),
    ),
    error_probe(
        "batches-batch-size-out-of-range",
        ValueError,
        (lambda: Batches(DATA, batch_size=0), r"Batches: batch_size must be an integer >= 1 and <= 4, got 0"),
        (lambda: Batches(DATA, batch_size=5), r"Batches: batch_size must be an integer >= 1 and <= 4, got 5"),
    ),
    error_probe(
        "batches-order-not-a-permutation",
        ValueError,
        (lambda: Batches(DATA, order=np.array([0, 0, 1, 2])),
         r"Batches: order must be a permutation of range\(4\) .*got missing \[3\]"),
        (lambda: Batches(DATA, order=jnp.array([0, 1, 2, 7])), r"range\(4\) .*got values outside it \[7\]"),
        (lambda: Batches(DATA, order=jnp.arange(3)), r"range\(4\) .*got shape \(3,\)"),
    ),
    error_probe(
        "batches-order-not-integers",
        TypeError,
        (lambda: Batches(DATA, order=jnp.arange(4.0)), r"Batches: order must be a permutation .*got dtype float32"),
        (lambda: Batches(DATA, order=[0, 1, 2, 3.0]), r"Batches: order must be a permutation .*got dtype float64"),
    ),
    error_probe(
        "batches-key-is-a-seed",
        TypeError,
        (lambda: Batches(DATA, key=0), r"Batches: key must be a PRNG key \(jax.random.key\(seed\) or"),
        (lambda: Batches(DATA, key=jnp.zeros(2)), r"Batches: key must be a PRNG key"),
    ),
    error_probe(
        "batches-data-and-curriculum",
        ValueError,
        (lambda: Batches({"x": jnp.zeros(4), "y": jnp.zeros(3)}),
         r"Batches: every leaf of data needs the same leading example axis, got data\['x'\]: 4, data\['y'\]: 3"),
        (lambda: Batches({}), r"Batches: data needs at least one array"),
        (lambda: Batches(DATA, curriculum_epochs=-1), r"Batches: curriculum_epochs must be an integer >= 0, got -1"),
    ),
    # ---------------------------------------------------------------- history
    error_probe(
        "steps-to-tolerance-bad-tolerance-or-loss",
        ValueError,
        (lambda: steps_to_tolerance([1.0, 0.1], 0.0, -1e-3), r"steps_to_tolerance: tolerance must be in \[0.0, inf\)"),
        (lambda: steps_to_tolerance([1.0, 0.1], 0.0, np.nan), r"steps_to_tolerance: tolerance must be in .*got nan"),
        (lambda: steps_to_tolerance([], 0.0, 1e-3), r"steps_to_tolerance: loss must hold at least one record"),
    ),
    error_probe(
        "history-index-outside-the-batch",
        IndexError,
        (lambda: History(*([np.zeros((3, 2))] * 12))[3], r"History: index 3 is outside the batch of 3 runs"),
        (lambda: History(*([np.zeros(2)] * 12))[0], r"History: only a batched history \(from sweep\) can be indexed"),
    ),
    # ---------------------------------------------------------------- race
    error_probe(
        "race-unknown-optimizer-or-bad-settings",
        ValueError,
        (lambda: race_one(BOOTH, "adamm", steps=4, learning_rates=[0.1]), r"race_one: name must be one of 'sgd',"),
        (lambda: race(BOOTH, ["sgd", "adamm"], steps=4), r"race: names must be one of 'sgd', .*got 'adamm'"),
        (lambda: race_one(BOOTH, "sgd", steps=4, learning_rates=[0.1], start=[1.0, np.nan]),
         r"race_one: start must be 2 finite numbers \(a point of booth\)"),
        (lambda: race_one(BOOTH, "sgd", steps=4, learning_rates=[0.1], tolerance=-1.0),
         r"race_one: tolerance must be in \[0.0, inf\)"),
        (lambda: race_one(BOOTH, "sgd", steps=4, learning_rates=[-0.1, 0.1]),
         r"optimizer_grid: sgd refuses the grid point learning_rate=-0.1: sgd: learning_rate must be"),
    ),
    error_probe(
        "race-landscape-or-dtype-of-the-wrong-type",
        TypeError,
        (lambda: race_one("booth", "sgd", steps=4, learning_rates=[0.1]), r"race_one: landscape must be a Landscape"),
        (lambda: race_one(BOOTH, "sgd", steps=4, learning_rates=[0.1], dtype=jnp.int32),
         r"race_one: dtype must be a floating-point dtype"),
        (lambda: start_point(BOOTH, jnp.int32), r"start_point: dtype must be a floating-point dtype"),
    ),
    # ---------------------------------------------------------------- landscapes and plots
    error_probe(
        "landscape-grid-size",
        ValueError,
        (lambda: BOOTH.grid(0), r"Landscape.grid: n must be an integer >= 2, got 0"),
        (lambda: BOOTH.grid(-3), r"Landscape.grid: n must be an integer >= 2, got -3"),
    ),
    error_probe(
        "plots-arguments-of-the-wrong-type",
        TypeError,
        (lambda: BOOTH.grid(2.5), r"Landscape.grid: n must be an integer >= 2, got 2.5"),
        (lambda: plots.plot_race("booth", {}), r"plot_race: landscape must be a Landscape"),
        (lambda: plots.plot_losses({"a": "abc"}), r"plot_losses: 'a' must be a History or a 1-D array of losses"),
        (lambda: plots.plot_schedule(gf.linear_schedule(1.0, 0.0, 10), 2.5),
         r"plot_schedule: steps must be an integer >= 1, got 2.5"),
        (lambda: plots.plot_schedule({"lr": 3.0}, 10), r"plot_schedule: lr must be a function, got 3.0"),
    ),
    # ---------------------------------------------------------------- CLI: every flag checked before anything runs
    error_probe(
        "cli-steps-beyond-int32-or-zero",
        CliError,
        (lambda: _cli("race", "--steps", "3000000000"), r"gradflow race: error: --steps must be an integer >= 1 and "
                                                        r"<= 2147483647, got 3000000000"),
        (lambda: _cli("sweep", "--steps", "0"), r"gradflow sweep: error: --steps must be an integer >= 1"),
    ),
    error_probe(
        "cli-sizes-beyond-memory",
        CliError,
        (lambda: _cli("race", "--steps", "2000000000", "--grid", "1000000"),
         r"--grid 1000000 × --steps 2000000000 would record .* GiB, more than half of this machine's memory"),
        (lambda: _cli("sweep", "--param", "learning_rate=log:1e-4:1:1000000000000"),
         r"--param \(1000000000000 points\) × --steps 500 would record .* GiB"),
    ),
    error_probe(
        "cli-out-path-refused-before-the-run",
        CliError,
        (lambda: _cli("race", "--out", "/nonexistent-folder/race.png"),
         r"--out '/nonexistent-folder/race.png': the folder '/nonexistent-folder' does not exist"),
        (lambda: _cli("sweep", "--out", "/"), r"--out '/' is a folder"),
        (lambda: _cli("sweep", "--out", "sweep.xyz"), r"--out 'sweep.xyz': unknown figure format '.xyz'; choose from"),
    ),
    error_probe(
        "cli-sweep-values-out-of-range",
        CliError,
        (lambda: _cli("sweep", "--param", "learning_rate=0.1", "--param", "b1=0.9,1.5"),
         r"gradflow sweep: error: --param learning_rate=0.1, b1=1.5: .*b1 must be in \[0.0, 1.0\), got 1.5"),
        (lambda: _cli("sweep", "--optimizer", "momentum", "--param", "learning_rate=0.1", "--param", "momentum=-3"),
         r"--param learning_rate=0.1, momentum=-3: sgd: momentum must be in \[0.0, 1.0\), got -3.0"),
        (lambda: _cli("sweep", "--param", "learning_rate=lin:-1:1:5"),
         r"--param learning_rate=-1: adam: learning_rate must be in \[0.0, inf\), got -1.0"),
    ),
    error_probe(
        "cli-sweep-param-names",
        CliError,
        (lambda: _cli("sweep", "--param", "betas=0.1"), r"--param betas: adam does not take betas; it takes learning_"),
        (lambda: _cli("sweep", "--param", "b1=0.9"), r"--param: adam needs learning_rate; add an axis such as"),
        (lambda: _cli("sweep", "--param", "b1=0.9", "--param", "b1=0.8"), r"--param 'b1=0.8': b1 is given twice"),
        (lambda: _cli("sweep", "--param", "learning_rate=0.1,nan"), r"--param 'learning_rate=0.1,nan': needs NAME="),
    ),
    error_probe(
        "cli-race-tolerance-and-grid",
        CliError,
        (lambda: _cli("race", "--tolerance", "nan"), r"--tolerance must be in \[0.0, inf\), got nan"),
        (lambda: _cli("race", "--tolerance", "-1"), r"--tolerance must be in \[0.0, inf\), got -1.0"),
        (lambda: _cli("race", "--grid", "0"), r"--grid must be an integer >= 1, got 0"),
    ),
    # ---------------------------------------------------------------- gradient check
    error_probe(
        "gradcheck-loss-not-finite-at-params",
        ValueError,
        (lambda: gf.check_grads(lambda p: jnp.sum(jnp.log(p)), jnp.array([-1.0, 1.0])),
         r"check_grads: fun\(params\) is nan; the loss must be finite at params"),
    ),
    error_probe(
        "gradcheck-options-out-of-range",
        ValueError,
        (lambda: gf.check_grads(quadratic, P, h=-1.0), r"check_grads: h must be in \(0.0, inf\), got -1.0"),
        (lambda: gf.check_grads(quadratic, P, num_directions=0), r"check_grads: num_directions must be an integer"),
        (lambda: gf.check_grads(quadratic, P, rtol=np.nan), r"check_grads: rtol must be in \[0.0, inf\), got nan"),
        (lambda: gf.check_grads(quadratic, P, mode="rows"), r"check_grads: mode must be one of None, 'coordinates'"),
    ),
    error_probe(
        "gradcheck-arguments-of-the-wrong-type",
        TypeError,
        (lambda: gf.check_grads(quadratic, P, key=0), r"check_grads: key must be a PRNG key"),
        (lambda: gf.check_grads(quadratic, P, grad_fn=3), r"check_grads: grad_fn must be a function, got 3"),
        (lambda: gf.check_grads(lambda p, q: quadratic(p), P), r"check_grads: fun is called as fun\(params\)"),
        (lambda: gf.check_grads(quadratic, P, max_refinements=1.5), r"check_grads: max_refinements must be an int"),
    ),
    # ---------------------------------------------------------------- distributed
    error_probe(
        "easgd-alpha-beyond-the-stability-bound",
        ValueError,
        (lambda: gd.ElasticAveraging(lambda w, b: quadratic(w), gf.sgd(0.1), alpha=1.0),
         r"ElasticAveraging: alpha \(with n = 1 workers, stable for 0 < alpha < 2 / \(n \+ 1\)\) must be in "
         r"\(0.0, 1.0\), got 1.0"),
        (lambda: gd.ElasticAveraging(lambda w, b: quadratic(w), gf.sgd(0.1), alpha=jnp.array(0.0)), r"alpha \(with n"),
    ),
    error_probe(
        "distributed-settings-of-the-wrong-type",
        TypeError,
        (lambda: gd.LocalSGD(lambda w, b: quadratic(w), gf.sgd(0.1), every=2.0), r"LocalSGD: every must be an int"),
        (lambda: gd.DataParallel(lambda w, b: quadratic(w), gf.sgd(0.1), shard_optimizer_state="yes"),
         r"DataParallel: shard_optimizer_state must be True or False, got 'yes'"),
        (lambda: gd.DataParallel(lambda w, b: quadratic(w), gf.sgd(0.1), axis=3), r"DataParallel: axis must be"),
        (lambda: gd.DataParallel(lambda w, b: quadratic(w), gf.sgd(0.1), mesh="x"), r"DataParallel: mesh must be"),
        (lambda: gd.DataParallel(quadratic, gf.sgd(0.1)),
         r"DataParallel: loss_fn is called as loss_fn\(params, batch\), but too many positional arguments"),
        (lambda: gd.bytes_per_device({"w": np.ones(3)}), r"bytes_per_device: tree_\['w'\] must be a jax.Array"),
        (lambda: gd.LocalSGD(lambda w, b: quadratic(w), 0.1), r"LocalSGD: tx must be a gradient transformation"),
    ),
    error_probe(
        "distributed-loss-not-a-scalar-or-every-zero",
        ValueError,
        (lambda: gd.LocalSGD(lambda w, b: quadratic(w), gf.sgd(0.1), every=0), r"LocalSGD: every must be an integer"),
        (lambda: gd.data_mesh([]), r"data_mesh: devices must hold at least one device"),
        (lambda: _data_parallel_step(lambda w, b: w * b["x"][0]),
         r"DataParallel: loss_fn must return a real floating-point scalar \(shape \(\)\), got shape \(2,\)"),
    ),
]  # fmt: skip


def _data_parallel_step(loss_fn):
    trainer = gd.DataParallel(loss_fn, gf.sgd(0.1))
    params, state = trainer.init(P)
    return trainer.step(params, state, {"x": np.ones((2, 1))})


# ---------------------------------------------------------------- safe behaviours


def sweep_reports_nan_runs_as_diverged():
    """A run whose loss overflows to inf/NaN is flagged; the others are untouched."""
    history = sweep(quadratic, P, jax.vmap(gf.sgd)(jnp.array([0.25, 3.0])), steps=64)
    np.testing.assert_array_equal(np.asarray(history.diverged), [False, True])
    assert float(history.final_loss[0]) < 1e-30 and not np.isfinite(float(history.final_loss[1]))


def traced_out_of_range_hyperparameter_is_a_diverged_run():
    """Inside jit nothing can raise: momentum = -3 or b1 = 1.5 make the updates NaN, so the run is diverged."""
    loss = jax.jit(lambda m: run(quadratic, P, gf.sgd(0.1, momentum=m), steps=4).diverged)
    assert bool(loss(-3.0)) and not bool(loss(0.5))
    adam = jax.jit(lambda b1: run(quadratic, P, gf.adam(0.1, b1=b1), steps=4).diverged)
    assert bool(adam(1.5)) and not bool(adam(0.9))


def traced_negative_learning_rate_is_a_zero_step():
    """The documented exception: a negative traced learning rate leaves the parameters where they are."""
    final = jax.jit(lambda lr: run(quadratic, P, gf.sgd(lr), steps=4).final_params)(-0.5)
    np.testing.assert_array_equal(np.asarray(final), np.asarray(P))


def race_never_picks_a_diverged_run():
    """Learning rate 10 diverges on booth; the race keeps 0.05, and a grid where all diverge has no winner."""
    result = race_one(BOOTH, "sgd", steps=20, learning_rates=[0.05, 10.0])
    assert result.learning_rate == 0.05 and not result.diverged and np.isfinite(result.final_loss)
    assert not np.isfinite(result.losses[1, -1])
    lost = race_one(BOOTH, "sgd", steps=20, learning_rates=[10.0, 20.0])
    assert lost.diverged and lost.learning_rate is None and lost.history is None and lost.final_loss == np.inf


def cli_sweep_best_is_never_a_diverged_configuration():
    text = _sweep_output("sweep", "booth", "--optimizer", "sgd", "--param", "learning_rate=0.05,10", "--steps", "20",
                         "--out", "none")  # fmt: skip
    assert "best: learning_rate=0.05 " in text
    text = _sweep_output("sweep", "booth", "--optimizer", "sgd", "--param", "learning_rate=10,20", "--steps", "20",
                         "--out", "none")  # fmt: skip
    assert "every configuration diverged (NaN or infinite loss)" in text and "best:" not in text


def early_stopping_takes_a_concrete_array_patience():
    """patience=jnp.array(2) is checked like the int 2 and stops at the same step."""
    stops = [_run(steps=20, early_stopping=EarlyStopping(validation, patience=p)).stopped_at for p in (2, jnp.array(2))]
    assert int(stops[0]) == int(stops[1]) < 20


def batches_take_an_integer_permutation_as_order():
    """An integer array (or a list of ints) holding 0 … n−1 once each; the first epoch visits it in that order."""
    order = np.array([2, 0, 3, 1], np.int64)
    assert np.array_equal(Batches(DATA, order=[2, 0, 3, 1]).order, order)
    batches = Batches(DATA, batch_size=2, order=order)
    np.testing.assert_array_equal(np.asarray(batches.epoch_order(0)), order)
    np.testing.assert_array_equal(np.asarray(batches.batch(0, batches.epoch_order(0))["x"]), [2.0, 0.0])


def gradcheck_names_a_nonfinite_gradient():
    """A NaN gradient component is a failing ``nonfinite_gradient`` finding at its path and index, not roundoff."""
    report = gf.check_grads(lambda p: jnp.sum(p["w"] ** 2), {"w": jnp.array([1.0, 2.0])},
                            grad_fn=lambda p: {"w": (2 * p["w"]).at[1].set(jnp.nan)})  # fmt: skip
    assert not report.ok
    assert [(f.path, f.index, f.verdict) for f in report.findings] == [("['w']", (1,), "nonfinite_gradient")]
    assert abs(report.findings[0].numeric - 4.0) < 1e-2


def gradcheck_names_a_nonfinite_loss():
    """log(w) at w = 1e-9: the loss is NaN at w − h for every h tried: ``nonfinite_loss``, not roundoff."""
    report = gf.check_grads(lambda p: jnp.sum(jnp.log(p)), jnp.array([1e-9, 1.0]), max_refinements=2)
    assert [(f.index, f.verdict, f.passed) for f in report.findings] == [((0,), "nonfinite_loss", False)]
    assert report.findings[0].numeric == np.inf


def gradcheck_recovers_when_a_smaller_step_is_finite():
    """log(w) at w = 5e-4: NaN at the first h = 1e-3, finite and correct at h = 1e-4."""
    report = gf.check_grads(lambda p: jnp.sum(jnp.log(p)), jnp.array([5e-4, 1.0]))
    assert report.ok and [(f.index, f.verdict) for f in report.findings] == [((0,), "truncation")]


def easgd_default_alpha_is_inside_the_stability_bound():
    """α = 0.9/n < 2/(n + 1) for every n; on one device α = 0.99 is accepted and α = 1 is not (probe above)."""
    n = np.arange(1, 1025)
    assert np.all(0.9 / n < 2 / (n + 1))
    assert gd.ElasticAveraging(lambda w, b: quadratic(w), gf.sgd(0.1)).alpha == 0.9
    assert gd.ElasticAveraging(lambda w, b: quadratic(w), gf.sgd(0.1), alpha=0.99).alpha == 0.99


SAFE = [
    safe_probe(sweep_reports_nan_runs_as_diverged, "sweep-nan-run-is-diverged"),
    safe_probe(traced_out_of_range_hyperparameter_is_a_diverged_run, "traced-out-of-range-is-diverged"),
    safe_probe(traced_negative_learning_rate_is_a_zero_step, "traced-negative-learning-rate-zero-step"),
    safe_probe(race_never_picks_a_diverged_run, "race-never-picks-diverged"),
    safe_probe(cli_sweep_best_is_never_a_diverged_configuration, "cli-sweep-best-never-diverged"),
    safe_probe(early_stopping_takes_a_concrete_array_patience, "early-stopping-array-patience"),
    safe_probe(batches_take_an_integer_permutation_as_order, "batches-integer-permutation-order"),
    safe_probe(gradcheck_names_a_nonfinite_gradient, "gradcheck-nonfinite-gradient"),
    safe_probe(gradcheck_names_a_nonfinite_loss, "gradcheck-nonfinite-loss"),
    safe_probe(gradcheck_recovers_when_a_smaller_step_is_finite, "gradcheck-nan-at-first-step-recovers"),
    safe_probe(easgd_default_alpha_is_inside_the_stability_bound, "easgd-default-alpha-stable"),
]


@pytest.mark.parametrize("probe", ERRORS + SAFE)
def test_probe(probe):
    probe()
