"""The README's demo: ``python -m gradflow`` races the seed optimizers and prints a table."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gradflow import demo
from gradflow.experiments.landscapes import LANDSCAPES


def test_landscape_minima():
    for landscape in LANDSCAPES.values():
        assert float(landscape.fn(np.asarray(landscape.minimum))) == landscape.minimum_value


def test_summarize_counts_steps_until_the_loss_stays_below_tolerance():
    losses = np.array(
        [
            [1.0, 1e-7, 1e-3, 1e-7, 1e-8],  # touches the tolerance at step 2, settles at step 4
            [1.0, 0.5, 0.1, 1e-2, 1e-3],  # never settles
            [1.0, np.nan, np.nan, np.nan, np.nan],  # diverged
        ]
    )
    row = demo.summarize(losses, np.array([0.1, 0.2, 0.3]), 0.0)
    assert row == {"learning_rate": 0.1, "final_loss": 1e-8, "steps_to_tol": 4}
    row = demo.summarize(losses[1:], np.array([0.2, 0.3]), 0.0)
    assert row["learning_rate"] == 0.2 and row["steps_to_tol"] is None


def test_race_on_the_ravine_ranks_momentum_ahead_of_sgd():
    rows = {r["optimizer"]: r for r in demo.race(LANDSCAPES["ravine"], ["sgd", "momentum"], steps=600, grid=9)}
    # Seed 002: momentum crosses the narrow valley where plain gradient descent crawls along it.
    assert rows["momentum"]["steps_to_tol"] is not None and rows["momentum"]["steps_to_tol"] < 300
    assert rows["sgd"]["steps_to_tol"] is None and rows["sgd"]["final_loss"] > 1e3 * rows["momentum"]["final_loss"]


def test_cli_prints_table_and_rejects_unknown_names():
    out = subprocess.run(
        [sys.executable, "-m", "gradflow", "--steps", "200", "--grid", "3", "--optimizers", "sgd,adam"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    assert "rosenbrock" in out.stdout and "ravine" in out.stdout and "steps to 1e-6" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "gradflow", "--optimizers", "sgdd"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown optimizers ['sgdd']" in bad.stderr


@pytest.mark.parametrize("name", ["rosenbrock", "ravine"])
def test_landscape_gradients_match_hand_derivatives(name):
    landscape = LANDSCAPES[name]
    x, y = 0.3, -0.7
    expected = {
        "rosenbrock": [-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)],
        "ravine": [0.1 * x, 10.0 * y],
    }[name]
    import jax

    np.testing.assert_allclose(jax.grad(landscape.fn)(np.array([x, y])), expected, rtol=1e-5)
