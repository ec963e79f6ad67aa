"""The ``gradflow`` command (the README's demo) and the race it runs."""

from __future__ import annotations

import shutil
import subprocess
import sys

import matplotlib
import numpy as np
import pytest

from gradflow.cli import main
from gradflow.experiments import LANDSCAPES, race_one

matplotlib.use("Agg")


def test_race_on_the_ravine_ranks_momentum_ahead_of_sgd():
    """Seed 002: momentum crosses the narrow valley where plain gradient descent crawls along it."""
    rates = np.logspace(-3, 0, 10)
    momentum = race_one(LANDSCAPES["ravine"], "momentum", steps=600, learning_rates=rates)
    sgd = race_one(LANDSCAPES["ravine"], "sgd", steps=600, learning_rates=rates)
    assert momentum.steps_to_tolerance is not None and momentum.steps_to_tolerance < 300
    assert sgd.steps_to_tolerance is None and sgd.final_loss > 1e3 * momentum.final_loss
    # the chosen run is the grid's row at the reported learning rate, with its whole trajectory
    row = int(np.argmin(np.abs(momentum.learning_rates - momentum.learning_rate)))
    np.testing.assert_array_equal(momentum.losses[row, :-1], momentum.history.loss)
    assert momentum.history.trajectory.shape == (601, 2)


def test_race_on_a_saddle_keeps_the_lowest_final_loss():
    result = race_one(LANDSCAPES["saddle"], "sgd", steps=50, learning_rates=np.array([0.01, 0.1, 0.3]))
    assert result.steps_to_tolerance is None
    assert result.learning_rate == 0.3 and result.final_loss == np.min(result.losses[:, -1])


def test_gradflow_race_prints_the_table_and_saves_the_figure(tmp_path, capsys):
    out = tmp_path / "race.png"
    assert main(["race", "ravine", "--steps", "200", "--grid", "4", "--optimizers", "sgd,adam", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ravine" in text and "steps to 1e-06" in text and "figure:" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    assert {line.split()[0] for line in lines[header + 1 : header + 3]} == {"sgd", "adam"}
    assert out.stat().st_size > 10_000


def test_gradflow_race_on_the_one_dimensional_double_well(tmp_path, capsys):
    out = tmp_path / "well.png"
    assert main(["race", "double_well", "--steps", "100", "--grid", "3", "--optimizers", "sgd", "--out", str(out)]) == 0
    assert "double_well" in capsys.readouterr().out and out.exists()


def test_gradflow_sweep_and_landscapes_and_gradcheck(tmp_path, capsys):
    out = tmp_path / "sweep.png"
    args = ["sweep", "booth", "--optimizer", "momentum", "--param", "learning_rate=log:1e-3:1e-1:6",
            "--param", "momentum=0.5,0.9", "--steps", "50", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "12 configurations × 50 steps" in text and out.exists()
    assert "best: learning_rate=" in text or ("best of " in text and " tied " in text)
    assert main(["landscapes"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in LANDSCAPES)
    assert main(["gradcheck", "booth,double_well"]) == 0
    assert capsys.readouterr().out.count(" ok ") == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["race", "rosenbrok"], "unknown landscape 'rosenbrok'; choose from rosenbrock, beale"),
        (["race", "--optimizers", "sgd,sgdd"], "unknown optimizer 'sgdd'; choose from sgd, momentum"),
        (["race", "--steps", "0"], "--steps must be an integer >= 1 and <= 2147483647, got 0"),
        (["race", "--steps", "ten"], "argument --steps: invalid int value: 'ten'"),
        (["race", "--start", "1,2,3"], "--start needs 2 finite comma-separated numbers"),
        (["sweep", "--optimizer", "adamm"], "unknown optimizer 'adamm'"),
        (["sweep", "--param", "learning_rate=log:0:1:5"], "--param 'learning_rate=log:0:1:5': needs NAME=log:LO:HI:N"),
        (
            ["sweep", "--param", "betas=0.1,0.2"],
            "--param betas: adam does not take betas; it takes learning_rate, b1, b2, eps, eps_root\n",
        ),
        # a missing learning rate names the missing flag (once: "momentum does not take momentum")
        (
            ["sweep", "--optimizer", "momentum", "--param", "momentum=0.5,0.9"],
            "--param: momentum needs learning_rate; add an axis such as --param learning_rate=0.01",
        ),
        (["sweep", "--optimizer", "sgd", "--param", "momentum=0.5"], "--param: sgd needs learning_rate"),
        (
            ["sweep", "--optimizer", "adam", "--param", "b1=0.5,0.9", "--param", "b2=0.9,0.99"],
            "adam needs learning_rate; a sweep has at most two --param axes, so replace one of b1, b2 with",
        ),
        (
            ["sweep", "--optimizer", "sgd", "--param", "learning_rat=0.1"],
            "--param learning_rat: sgd does not take learning_rat; it takes learning_rate, momentum; "
            "did you mean learning_rate?",
        ),
        (
            ["sweep", "--optimizer", "adam", "--param", "momentum=0.9"],
            "adam does not take momentum; it takes learning_rate, b1, b2, eps, eps_root\n",
        ),
        (
            ["sweep", "--optimizer", "sgd", "--param", "learning_rate=0.1", "--param", "nesterov=0,1"],
            "--param nesterov: sgd's nesterov is a structural option (a flag, dtype or mask), not a number",
        ),
        (
            ["sweep", "--optimizer", "adam", "--param", "learning_rate=0.1", "--param", "mu_dtype=1"],
            "--param mu_dtype: adam's mu_dtype is a structural option",
        ),
        (
            ["sweep", "--optimizer", "momentum", "--param", "learning_rate=0.1", "--param", "momentum=0.5,1.5"],
            "--param learning_rate=0.1, momentum=1.5: sgd: momentum must be in [0.0, 1.0), got 1.5",
        ),
        (["gradcheck", "nowhere"], "unknown landscape 'nowhere'"),
        (["fly"], "invalid choice: 'fly'"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_code_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_sweep_argument_errors_come_before_anything_runs(monkeypatch, capsys):
    """A bad --param ends the command before the sweep (or its compilation) starts."""
    from gradflow.experiments import loop

    monkeypatch.setattr(loop, "sweep", lambda *a, **k: pytest.fail("the sweep ran"))
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "booth", "--optimizer", "momentum", "--param", "momentum=0.5,0.9"])
    assert exit_info.value.code == 2 and capsys.readouterr().out == ""


class _Clock:
    """A fake ``time.perf_counter``: the first sweep call takes 10 s, the second (run only) 2 s."""

    def __init__(self):
        self.times = iter([100.0, 110.0, 200.0, 202.0])

    def perf_counter(self):
        return next(self.times)


def test_sweep_prints_run_time_without_compilation_and_compile_time_apart(monkeypatch, capsys):
    from gradflow.experiments import loop, timing

    calls = []
    real_sweep = loop.sweep
    monkeypatch.setattr(loop, "sweep", lambda *a, **k: calls.append(1) or real_sweep(*a, **k))
    monkeypatch.setattr(timing, "time", _Clock())
    args = ["sweep", "booth", "--optimizer", "sgd", "--param", "learning_rate=0.01,0.02", "--steps", "50",
            "--out", "none"]  # fmt: skip
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert len(calls) == 2  # once to compile and run, once to run the compiled program
    per_step = 1e9 * 2.0 / (2 * 50)  # the second call's 2 s over 2 configurations × 50 steps
    assert f"run 2 s ({per_step:.0f} ns per configuration-step, compilation excluded), compile 8 s" in first


def test_timed_reports_the_second_call_and_compilation_apart():
    import jax
    import jax.numpy as jnp

    from gradflow.experiments.timing import timed

    fresh = jax.jit(lambda x: jnp.sin(x) @ jnp.cos(x).T)  # a new function: the first call compiles
    measured = timed(lambda: fresh(jnp.ones((64, 64))))
    assert measured.compile_seconds > measured.seconds > 0
    np.testing.assert_allclose(measured.result, fresh(jnp.ones((64, 64))))
    with pytest.raises(TypeError, match="timed: call must be a function, got 3"):
        timed(3)


def test_console_script_and_module_entry_point():
    script = shutil.which("gradflow")
    assert script is not None, "the gradflow console script is not installed (pip install -e .)"
    listing = subprocess.run([script, "landscapes"], capture_output=True, text=True, timeout=120, check=True)
    assert "rosenbrock" in listing.stdout
    bad = subprocess.run([sys.executable, "-m", "gradflow", "race", "nowhere"], capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("gradflow race: error: unknown landscape 'nowhere'")
