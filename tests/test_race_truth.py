"""Issue 18, the race: the printed table and the drawn figure say the same thing, and each metric means
what its name says (steps to tolerance, steps to escape, diverged, timings without compilation)."""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import gradflow as gf
from gradflow import cli
from gradflow.experiments import LANDSCAPES, plots, run
from gradflow.experiments.history import steps_to_tolerance
from gradflow.experiments.landscapes import Landscape
from gradflow.experiments.race import loss_floor, race, race_one, rank

BOOTH, SADDLE = LANDSCAPES["booth"], LANDSCAPES["saddle"]


# ------------------------------------------------------------------ steps to tolerance, by hand
@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([1.0, 0.5, 1e-7, 1e-8, 1e-9], 2),  # settles at step 2 and stays
        ([1.0, 1e-7, 1.0, 1e-7, 1.0, 1e-7], 5),  # oscillates: only the last dip counts, it is the last record
        ([1.0, 1e-7, 1e-3, 1e-7, 1e-3], None),  # last point above: never arrived
        ([1.0, 1e-7, 1e-8, 1e-7, 2e-6], None),  # bounces out at the very end
        ([1e-7, 1e-7, 1e-7], 0),  # starts inside
        ([1.0, 1e-7, np.nan, 1e-7], 3),  # a NaN is not below the tolerance
        ([1.0, 1e-7, np.inf], None),
        ([1.0, 1e-6, 1e-7], 2),  # the tolerance itself is not below the tolerance
    ],
)
def test_steps_to_tolerance_on_hand_made_sequences(losses, expected):
    assert steps_to_tolerance(losses, 0.0, 1e-6) == expected


def test_oscillating_run_that_dips_at_the_end_has_not_arrived_early():
    """A race row whose loss dips below the tolerance, bounces out and settles later arrives at the later step."""
    landscape = dataclasses.replace(BOOTH, name="booth")
    losses = np.array([[5.0, 1e-8, 1.0, 1e-8, 1e-9], [5.0, 1.0, 1e-8, 1e-9, 1e-9]])
    from gradflow.experiments.race import _best_run

    best, arrivals = _best_run(losses, np.array([0.1, 0.01]), landscape, 1e-6)
    assert arrivals == [3, 2] and best == 1


# ------------------------------------------------------------------ escape metric on a landscape unbounded below
def test_unbounded_landscapes_declare_an_escape_level():
    assert SADDLE.escape_level == -1.0 and LANDSCAPES["monkey_saddle"].escape_level == -1.0
    assert all(
        landscape.escape_level is None for landscape in LANDSCAPES.values() if landscape.minimum_value is not None
    )
    with pytest.raises(ValueError, match="escape_level is declared exactly when"):
        dataclasses.replace(SADDLE, escape_level=None)
    with pytest.raises(ValueError, match="escape_level is declared exactly when"):
        dataclasses.replace(BOOTH, escape_level=-1.0)


def test_saddle_ranks_by_escape_not_by_the_most_explosive_final_loss():
    rates = [0.01, 0.05, 0.3]
    result = race_one(SADDLE, "sgd", steps=60, learning_rates=rates)
    escapes = steps_to_tolerance(result.losses, SADDLE.escape_level, 0.0)
    finite = np.isfinite(result.losses).all(axis=1)
    expected = min((e, lr) for e, lr, ok in zip(escapes, rates, finite) if ok and e is not None)
    assert (result.steps_to_escape, result.learning_rate) == expected
    assert result.steps_to_tolerance is None and result.arrival == result.steps_to_escape


def test_escape_ties_go_to_the_smaller_learning_rate_not_the_most_explosive_run():
    from gradflow.experiments.race import _best_run

    losses = np.array([[1.0, -2.0, -1e30, -1e36], [1.0, -2.0, -3.0, -4.0], [1.0, -2.0, 0.5, -9.0], [1.0, 0, 0, 0]])
    best, arrivals = _best_run(losses, np.array([1.0, 0.1, 0.01, 0.001]), SADDLE, 1e-6)
    assert arrivals == [1, 1, 3, None]  # row 2 dips below -1 and comes back: escapes only at step 3
    assert best == 1  # the lowest final loss (row 0, -1e36) would reward the explosion


# ------------------------------------------------------------------ the table and the figure, drawn data
def _table(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("optimizer"))
    return [line.split() for line in lines[start + 1 :] if not line.startswith(("run ms", "figure"))]


def _race_cli(capsys, monkeypatch, argv):
    """Run ``gradflow race`` in process and keep the figure it draws instead of saving it."""
    figures = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, *a, **k: figures.append(self))
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    assert cli.main(["race", *argv, "--out", "race.png"]) == 0
    captured = capsys.readouterr()
    (figure,) = figures
    return _table(captured.out), figure, captured


@pytest.mark.parametrize(
    "argv",
    [
        ["booth", "--optimizers", "sgd,adam,momentum", "--steps", "60", "--grid", "5"],
        ["saddle", "--optimizers", "sgd,adam", "--steps", "40", "--grid", "4"],
    ],
)
def test_table_and_figure_agree(capsys, monkeypatch, argv):
    rows, figure, captured = _race_cli(capsys, monkeypatch, argv)
    landscape = LANDSCAPES[argv[0]]
    left, right = figure.axes
    expected = [f"{row[0]}: diverged" if row[1] == "diverged" else f"{row[0]}: lr {row[1]}" for row in rows]
    (legend,) = figure.legends  # one legend for both panels, outside them, in the table's order
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[: len(rows)] == expected and left.get_legend() is None and right.get_legend() is None
    reference = "escape level -1" if landscape.minimum_value is None else "tolerance 1e-06"
    assert labels[len(rows)] == reference and "start" in labels
    for label in expected:  # each entry's colour is its curve's and its path's colour
        handle = legend.legend_handles[labels.index(label)]
        curve = next(line for line in right.get_lines() if line.get_label() == label)
        assert handle.get_color() == curve.get_color()
        path = [line for line in left.get_lines() if line.get_label() == label]
        assert all(line.get_color() == curve.get_color() for line in path)
    lines = {line.get_label(): line for line in right.get_lines()}
    for row in rows:
        label = expected[rows.index(row)]
        shown = float(lines[label].get_ydata()[-1])
        assert shown == pytest.approx(float(row[2]), rel=1e-3)  # the curve ends at the printed value
    if landscape.minimum_value is None:
        assert right.get_yscale() == "symlog" and "linear within" in right.get_ylabel()
        # the linear band comes from the data (the start loss ~1 → ±0.1), not float32's 1e-7: no crowd at 0
        linthresh = right.yaxis.get_transform().linthresh
        assert linthresh >= 1e-3 and right.get_ylabel().endswith(f"linear within ±{linthresh:g})")
        figure.canvas.draw()
        boxes = [tick.label1.get_window_extent() for tick in right.yaxis.get_major_ticks() if tick.label1.get_text()]
        assert 0.0 in right.get_yticks() and not any(a.overlaps(b) for a, b in itertools.pairwise(boxes))
        assert "steps to < -1" in captured.out
    else:
        assert right.get_yscale() == "log" and "floored at 1.2e-07" in right.get_ylabel()
        floor = loss_floor(jnp.float32, landscape)
        for line in lines.values():
            data = np.asarray(line.get_ydata(), float)
            assert np.nanmin(data, initial=np.inf) >= floor  # no round-off drawn below the resolution
        assert all(float(row[2]) >= floor * (1 - 1e-3) for row in rows)
    assert "\r" not in captured.err  # capsys' stderr is no terminal: no progress frames


def test_diverged_optimizer_is_explicit_in_table_and_both_legends(capsys, monkeypatch):
    argv = ["rosenbrock", "--optimizers", "adam,sgd", "--steps", "30", "--grid", "2", "--start", "50,50"]
    rows, figure, _ = _race_cli(capsys, monkeypatch, argv)
    # far out on the quartic, SGD explodes at both learning rates (1e-4, 1); Adam does not
    assert rows[-1][:3] == ["sgd", "diverged", "diverged"] and rows[0][0] == "adam"
    labels = [text.get_text() for text in figure.legends[0].get_texts()]
    assert labels[:2] == [f"adam: lr {rows[0][1]}", "sgd: diverged"]
    # the start (50, 50) lies outside the window: said in a note, not drawn at the landscape's default start
    (note,) = [text.get_text() for text in figure.axes[0].texts]
    assert note == "start (50, 50): outside the window"
    assert not [line for line in figure.axes[0].get_lines() if line.get_label() == "_start"]
    empty = [line for line in figure.axes[1].get_lines() if line.get_label() == "sgd: diverged"]
    assert len(empty) == 1 and len(empty[0].get_xdata()) == 0


def test_rank_is_the_table_order_and_puts_diverged_last():
    results = race(BOOTH, ["sgd", "adam"], steps=40, learning_rates=[0.01, 0.05])
    ranked = rank(results)
    key = [(r.diverged, r.arrival is None, r.arrival or 0, r.shown_loss) for r in ranked]
    assert key == sorted(key)
    diverged = dataclasses.replace(ranked[0], learning_rate=None, history=None, final_loss=float("inf"))
    assert rank([diverged, *ranked])[-1] is diverged and diverged.label.endswith("diverged")


# ------------------------------------------------------------------ progress bars and timings
def test_no_progress_frames_off_a_terminal(capsys):
    pytest.importorskip("tqdm")
    run(lambda w: jnp.sum(w**2), jnp.ones(2), gf.sgd(0.1), steps=20, progress=True)
    race(BOOTH, ["sgd"], steps=10, learning_rates=[0.01], progress=True)
    assert capsys.readouterr().err == ""


def test_timings_exclude_compilation():
    landscape = Landscape(name="bowl", description="fresh loss, so it compiles", fn=lambda p: jnp.sum(p**2),
                          grad=lambda p: 2 * p, minima=((0.0, 0.0),), minimum_value=0.0,
                          window=((-2, 2), (-2, 2)), starts=((1.0, 1.0),), log_scale=True)  # fmt: skip
    result = race_one(landscape, "sgd", steps=20, learning_rates=[0.1, 0.2])
    assert result.compile_seconds > result.seconds > 0
    assert result.per_step_ns == pytest.approx(1e9 * result.seconds / (2 * 21))
    assert result.floor == pytest.approx(float(jnp.finfo(jnp.float32).eps))


def test_plot_losses_rejects_bad_scale_and_floor():
    with pytest.raises(ValueError, match="scale must be"):
        plots.plot_losses({"a": np.ones(3)}, scale="logit")
    with pytest.raises(ValueError, match="floor must be"):
        plots.plot_losses({"a": np.ones(3)}, floor=0.0)
    plt.close("all")
