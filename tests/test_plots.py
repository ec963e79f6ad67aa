"""Tests of gradflow.experiments.plots: what each figure draws, checked against NumPy, not only that it draws."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import gradflow
from gradflow.experiments.history import History
from gradflow.experiments.landscapes import LANDSCAPES
from gradflow.experiments.plots import plot_losses, plot_race, plot_schedule, plot_sweep_heatmap


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def saves(fig, tmp_path, name="figure.png"):
    path = tmp_path / name
    fig.savefig(path, dpi=40)
    return path.stat().st_size > 0


def labelled(ax, label):
    """The one line of ``ax`` with this label."""
    (line,) = [line for line in ax.lines if line.get_label() == label]
    return line


def legend_texts(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def make_history(loss, *, val_loss=None, stopped_at=None, every=1):
    loss = np.asarray(loss, np.float32)
    steps = np.arange(len(loss)) * every
    return History(
        steps=steps,
        loss=loss,
        full_loss=None,
        grad_norm=None,
        params=None,
        val_loss=None if val_loss is None else np.asarray(val_loss, np.float32),
        final_params=None,
        final_state=None,
        final_loss=loss[-1],
        best_params=None,
        best_val_loss=None,
        stopped_at=np.int32(len(loss) * every if stopped_at is None else stopped_at),
    )


# ----------------------------------------------------------------------------------------------------------
# plot_race
# ----------------------------------------------------------------------------------------------------------


def test_race_2d_draws_each_path_in_the_window(tmp_path):
    landscape = LANDSCAPES["rosenbrock"]  # window x ∈ [−2, 2], y ∈ [−1, 3]
    steady = np.array([[-1.2, 1.0], [-1.0, 0.9], [-0.5, 0.4], [0.3, 0.1], [0.9, 0.8]])
    diverging = np.array([[-1.2, 1.0], [-1.5, 2.0], [1e6, -3e7], [0.5, 0.5], [np.inf, 1.0], [np.nan, np.nan]])
    fig = plot_race(landscape, {"gd": steady, "sgd, lr too large": diverging})
    ax = fig.axes[0]

    assert legend_texts(ax) == ["gd", "sgd, lr too large"]
    np.testing.assert_array_equal(labelled(ax, "gd").get_xydata(), steady)
    # Out-of-window and non-finite points are NaN (a break in the line); the others are drawn as given.
    expected = diverging.copy()
    expected[[2, 4, 5]] = np.nan
    np.testing.assert_array_equal(labelled(ax, "sgd, lr too large").get_xydata(), expected)
    assert labelled(ax, "gd").get_color() != labelled(ax, "sgd, lr too large").get_color()

    assert ax.get_xlim() == (-2.0, 2.0) and ax.get_ylim() == (-1.0, 3.0)
    star = labelled(ax, "_global minimum")
    assert star.get_marker() == "*"
    np.testing.assert_array_equal(star.get_xydata(), [[1.0, 1.0]])
    np.testing.assert_array_equal(labelled(ax, "_start").get_xydata(), [[-1.2, 1.0]])
    assert ax.get_title() == "rosenbrock"
    assert saves(fig, tmp_path)


def test_race_diverging_path_keeps_the_limits():
    landscape = LANDSCAPES["ravine"]
    steady = np.array([[-8.0, 1.0], [-6.0, -0.5], [-4.0, 0.2]])
    exploding = np.array([[-8.0, 1.0], [40.0, -90.0], [-1e30, 1e30], [np.inf, -np.inf], [np.nan, 0.0]])
    alone = plot_race(landscape, {"gd": steady}).axes[0]
    fig = plot_race(landscape, {"gd": steady, "exploding": exploding})
    ax = fig.axes[0]
    fig.canvas.draw()
    assert ax.get_xlim() == alone.get_xlim() == (-10.0, 10.0)
    assert ax.get_ylim() == alone.get_ylim() == (-2.0, 2.0)
    assert np.isnan(labelled(ax, "exploding").get_xydata()[1:]).all()


def test_race_marks_local_minima_and_thins_markers():
    landscape = LANDSCAPES["rastrigin"]
    path = np.column_stack([np.linspace(3.2, 0.0, 500), np.linspace(2.8, 0.0, 500)])
    ax = plot_race(landscape, {"gd": path}).axes[0]
    np.testing.assert_array_equal(labelled(ax, "_local minimum").get_xydata(), np.asarray(landscape.local_minima))
    assert labelled(ax, "_local minimum").get_marker() != "*"
    markevery = labelled(ax, "gd").get_markevery()
    assert markevery[0] == 0 and markevery[-1] == 499 and 15 <= len(markevery) <= 30


def contour_levels(ax):
    return [np.asarray(c.levels) for c in ax.collections if hasattr(c, "levels")]


def test_race_contour_levels_are_log_spaced_when_log_scale():
    log_levels = contour_levels(plot_race(LANDSCAPES["rosenbrock"], {}, levels=12).axes[0])
    assert log_levels and all(len(levels) == 12 for levels in log_levels)
    ratios = log_levels[0][1:] / log_levels[0][:-1]
    assert log_levels[0][0] > 0 and np.allclose(ratios, ratios[0])

    linear_levels = contour_levels(plot_race(LANDSCAPES["booth"], {}).axes[0])[0]
    steps = np.diff(linear_levels)
    assert np.allclose(steps, steps[0])


def test_race_log_levels_handle_negative_values():
    # x² − y² takes values in [−2.25, 2.25] over its window: log levels go on Z − min Z + offset.
    landscape = dataclasses.replace(LANDSCAPES["saddle"], log_scale=True)
    ax = plot_race(landscape, {"gd": [[1.0, 1e-3], [0.5, 2e-3]]}).axes[0]
    (levels, *_) = contour_levels(ax)
    assert levels[0] > 0 and np.isclose(levels[-1] - levels[0], 4.5, rtol=1e-3)


def test_race_1d_puts_markers_on_the_curve(tmp_path):
    landscape = LANDSCAPES["double_well"]
    xs = np.array([4.0, 3.6, 3.3, 3.1, 3.02, 9.0, 3.0])  # 9.0 lies outside the window [−0.5, 4.2]
    fig = plot_race(landscape, {"gd": xs[:, None], "other": [-0.3, 0.2, 0.4]})
    ax = fig.axes[0]

    def f(x):
        return x * (x - 1) * (x - 3) ** 2 + 1.62276

    line = labelled(ax, "gd")
    assert line.get_linestyle() == "None" and line.get_marker() == "o"
    inside = np.where(xs <= 4.2, xs, np.nan)
    np.testing.assert_array_equal(line.get_xdata(), inside)
    np.testing.assert_allclose(line.get_ydata(), f(inside), rtol=1e-5)
    finals = [line.get_xydata()[0] for line in ax.lines if line.get_label() == "_final"]
    np.testing.assert_allclose(finals, [[3.0, f(3.0)], [0.4, f(0.4)]], rtol=1e-5, atol=1e-6)
    minimum = labelled(ax, "_global minimum").get_xydata()
    np.testing.assert_allclose(minimum, [[0.40693, f(0.40693)]], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(labelled(ax, "_local minimum").get_xydata(), [[3.0, f(3.0)]], rtol=1e-5)
    assert ax.get_xlim() == (-0.5, 4.2)
    assert legend_texts(ax) == ["gd", "other"]
    assert saves(fig, tmp_path)


def test_race_draws_into_given_axes_and_checks_shapes():
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_race(LANDSCAPES["booth"], {"gd": [[-8.0, -6.0]]}, ax=right, title="booth, one point") is fig
    assert right.get_title() == "booth, one point" and not left.lines
    with pytest.raises(ValueError, match=r"'gd'.*\(T, 2\)"):
        plot_race(LANDSCAPES["booth"], {"gd": np.zeros((5, 3))})


@pytest.mark.parametrize("name", sorted(LANDSCAPES))
def test_race_on_every_landscape(name, tmp_path):
    landscape = LANDSCAPES[name]
    start = np.asarray(landscape.start, np.float64)
    path = start + np.linspace(0.0, 0.5, 10)[:, None]
    assert saves(plot_race(landscape, {"a": path, "b": path[::-1]}), tmp_path)


# ----------------------------------------------------------------------------------------------------------
# plot_losses
# ----------------------------------------------------------------------------------------------------------


def test_losses_subtracts_the_minimum_on_a_log_axis(tmp_path):
    adam = np.array([3.0, 2.0, 1.5, 1.25, 1.0])  # reaches the minimum exactly
    gd = np.array([3.0, 2.5, np.nan, np.inf, 2.0])
    fig = plot_losses({"adam": adam, "gd": make_history(gd, every=10)}, minimum_value=1.0)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert legend_texts(ax) == ["adam", "gd"]
    np.testing.assert_array_equal(labelled(ax, "adam").get_xdata(), np.arange(5))
    np.testing.assert_allclose(labelled(ax, "adam").get_ydata(), [2.0, 1.0, 0.5, 0.25, 1e-16])
    np.testing.assert_array_equal(labelled(ax, "gd").get_xdata(), [0, 10, 20, 30, 40])
    np.testing.assert_allclose(labelled(ax, "gd").get_ydata(), [2.0, 1.5, np.nan, np.nan, 1.0])
    assert saves(fig, tmp_path)


def test_losses_linear_axis_keeps_the_values():
    ax = plot_losses({"a": [-1.0, 0.0, 2.0]}, log=False, title="raw").axes[0]
    assert ax.get_yscale() == "linear" and ax.get_title() == "raw"
    np.testing.assert_array_equal(labelled(ax, "a").get_ydata(), [-1.0, 0.0, 2.0])


def test_losses_marks_early_stopping():
    loss = [1.0, 0.5, 0.3, 0.2, 0.15, 0.1]
    val = [1.1, 0.6, 0.4, 0.45, 0.5, 0.55]
    stopped = make_history(loss, val_loss=val, stopped_at=15, every=5)
    stopped_last = make_history(loss, val_loss=val, stopped_at=25, every=5)  # at the last record, step 25 of 30
    ran_through = make_history(loss, val_loss=val, every=5)  # stopped_at = 30, the number of steps
    ax = plot_losses({"stopped": stopped, "last": stopped_last, "ran": ran_through}).axes[0]
    validation = labelled(ax, "stopped (validation)")
    assert validation.get_linestyle() == "--" and validation.get_color() == labelled(ax, "stopped").get_color()
    np.testing.assert_allclose(validation.get_ydata(), val)
    stop = labelled(ax, "_stopped stopped")
    assert stop.get_linestyle() == ":" and stop.get_color() == labelled(ax, "stopped").get_color()
    np.testing.assert_array_equal(stop.get_xdata(), [15, 15])
    np.testing.assert_array_equal(labelled(ax, "_last stopped").get_xdata(), [25, 25])
    assert not [line for line in ax.lines if line.get_label() == "_ran stopped"]


def test_losses_rejects_a_batched_history():
    with pytest.raises(ValueError, match=r"history\[i\]"):
        plot_losses({"sweep": np.ones((3, 10))})


def tick_labels_apart(fig, axis):
    """The visible major tick labels of ``axis`` as ``(text, box)``, after checking that no two boxes overlap."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    low, high = sorted(axis.get_view_interval())
    labels = [(tick.label1.get_text(), tick.label1.get_window_extent(renderer)) for tick in axis.get_major_ticks()
              if tick.label1.get_visible() and tick.label1.get_text() and low <= tick.get_loc() <= high]  # fmt: skip
    for (a, box_a), (b, box_b) in itertools.pairwise(labels):
        assert not box_a.overlaps(box_b), f"tick labels {a!r} and {b!r} overlap"
    return [text for text, _ in labels]


def test_symlog_loss_axis_is_readable_near_zero():
    """A saddle's losses: from 1 past 0 to -1e37, and a run that stays at -0.02 (never escaped)."""
    steps = np.arange(200)
    losses = {"explodes": 1.0 - 10.0 ** (steps * 37 / 199), "stays": np.linspace(1.0, -0.02, 200)}
    fig = plot_losses(losses, scale="symlog", floor=1.19e-7)
    ax = fig.axes[0]
    # the linear band comes from the data (the smallest start or end magnitude, 0.02 → 0.01), not float32's 1e-7
    assert ax.get_yscale() == "symlog" and ax.yaxis.get_transform().linthresh == 0.01
    assert ax.get_ylabel() == "loss (symlog, linear within ±0.01)"
    ticks = list(ax.get_yticks())
    assert {0.0, 0.01, -0.01} <= set(ticks) and len(ticks) <= 9
    texts = tick_labels_apart(fig, ax.yaxis)
    assert "0" in texts
    bottom, _ = ax.get_ylim()
    assert bottom < -1e37  # the limits reach the data, with a margin


def test_symlog_without_data_near_zero_keeps_matplotlibs_ticks():
    fig = plot_losses({"a": -np.geomspace(10.0, 1e6, 50)}, scale="symlog")
    ax = fig.axes[0]
    assert ax.yaxis.get_transform().linthresh == 10.0  # from the data: its smallest magnitude
    tick_labels_apart(fig, ax.yaxis)


# ----------------------------------------------------------------------------------------------------------
# plot_schedule
# ----------------------------------------------------------------------------------------------------------


def test_schedule_values_match_numpy(tmp_path):
    steps = 250
    t = np.arange(steps)

    def step_down(count):  # Python branching: evaluated in a loop, not under vmap
        return 0.1 if count < 100 else 0.01

    fig = plot_schedule(
        {"exponential": gradflow.exponential_decay(0.1, 100, 0.1), "step": step_down, "constant": lambda t: 0.05},
        steps,
    )
    ax = fig.axes[0]
    assert legend_texts(ax) == ["exponential", "step", "constant"]
    np.testing.assert_array_equal(labelled(ax, "exponential").get_xdata(), t)
    np.testing.assert_allclose(labelled(ax, "exponential").get_ydata(), 0.1 * 0.1 ** (t / 100), rtol=1e-5)
    np.testing.assert_array_equal(labelled(ax, "step").get_ydata(), np.where(t < 100, 0.1, 0.01))
    np.testing.assert_allclose(labelled(ax, "constant").get_ydata(), np.full(steps, 0.05), rtol=1e-7)
    assert saves(fig, tmp_path)


def test_schedule_single_callable():
    ax = plot_schedule(lambda count: 0.5 * jnp.cos(count / 10.0), 40, title="cosine").axes[0]
    (line,) = ax.lines
    np.testing.assert_allclose(line.get_ydata(), 0.5 * np.cos(np.arange(40) / 10.0), rtol=1e-5, atol=1e-7)
    assert ax.get_legend() is None and ax.get_title() == "cosine"
    with pytest.raises(ValueError, match="steps"):
        plot_schedule(lambda count: 1.0, 0)


# ----------------------------------------------------------------------------------------------------------
# plot_sweep_heatmap
# ----------------------------------------------------------------------------------------------------------


def test_heatmap_draws_the_values_and_masks_diverged_cells(tmp_path):
    learning_rates = np.array([1e-3, 1e-2, 1e-1, 1.0])
    momenta = np.array([0.0, 0.5, 0.9])
    values = np.array(
        [
            [1.0, 1e-2, 1e-4, np.nan],
            [0.5, 1e-3, 1e-6, np.inf],
            [0.1, 1e-5, 0.0, np.nan],  # 0.0 (the exact minimum) keeps its place on the symlog scale, the best cell
        ]
    )
    fig = plot_sweep_heatmap(values, learning_rates, momenta, x_label="learning rate", y_label="momentum")
    ax = fig.axes[0]
    (mesh,) = ax.collections
    drawn = mesh.get_array().reshape(values.shape)
    finite = np.isfinite(values)
    np.testing.assert_array_equal(np.ma.getmaskarray(drawn), ~finite)
    np.testing.assert_array_equal(drawn[finite], values[finite])

    best = labelled(ax, "best")
    row, column = np.unravel_index(np.nanargmin(values), values.shape)
    np.testing.assert_array_equal(best.get_xydata(), [[learning_rates[column], momenta[row]]])
    crosses = labelled(ax, "diverged").get_xydata()
    np.testing.assert_array_equal(crosses, [[1.0, 0.0], [1.0, 0.5], [1.0, 0.9]])

    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert ax.get_xlabel() == "learning rate" and ax.get_ylabel() == "momentum"
    assert "momentum = 0.9" in ax.get_title() and "learning rate = 0.1" in ax.get_title()
    # Cells meet halfway between neighbours in log space: 10^-2.5 between 1e-3 and 1e-2.
    np.testing.assert_allclose(ax.get_xlim(), [10**-3.5, 10**0.5])
    (colorbar_axes,) = [other for other in fig.axes if other is not ax]
    assert colorbar_axes.get_ylabel() == "final loss (symlog, linear within 1.19e-07 of 0)"
    assert saves(fig, tmp_path)


def test_heatmap_checks_shapes_and_log_axes():
    with pytest.raises(ValueError, match="shape"):
        plot_sweep_heatmap(np.ones((2, 3)), [1, 2], [1, 2, 3], x_label="x", y_label="y")
    with pytest.raises(ValueError, match="positive x"):
        plot_sweep_heatmap(np.ones((1, 2)), [0.0, 1.0], [1.0], x_label="x", y_label="y")


def test_sweep_1d_line_marks_best_and_diverged(tmp_path):
    learning_rates = np.geomspace(1e-4, 1.0, 5)
    final = np.array([0.8, 0.2, 1e-3, np.nan, np.inf])
    fig = plot_sweep_heatmap(final, learning_rates, x_label="learning rate", colorbar_label="final loss − f*")
    ax = fig.axes[0]
    line = labelled(ax, "_sweep")
    np.testing.assert_array_equal(line.get_xdata(), learning_rates)
    np.testing.assert_array_equal(line.get_ydata(), [0.8, 0.2, 1e-3, np.nan, np.nan])
    np.testing.assert_array_equal(labelled(ax, "best").get_xydata(), [[1e-2, 1e-3]])
    np.testing.assert_array_equal(labelled(ax, "diverged").get_xdata(), learning_rates[3:])
    assert ax.get_xscale() == "log" and ax.get_yscale() == "symlog"
    assert ax.get_ylabel().startswith("final loss − f* (symlog")
    assert len(fig.axes) == 1  # no colorbar
    assert saves(fig, tmp_path)


# ----------------------------------------------------------------------------------------------------------
# matplotlib stays optional
# ----------------------------------------------------------------------------------------------------------


def test_missing_matplotlib_gives_install_hint(monkeypatch):
    monkeypatch.delitem(sys.modules, "gradflow.experiments.plots")
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'gradflow\[experiments\]'"):
        import gradflow.experiments.plots  # noqa: F401


def test_importing_gradflow_does_not_import_matplotlib():
    code = "import sys, gradflow, gradflow.experiments; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------------------------------------
# sweep axes and symlog scales stay readable
# ----------------------------------------------------------------------------------------------------------


def test_sweep_axes_tick_exactly_the_grid_values_when_they_fit():
    b1 = np.linspace(0.0, 0.95, 6)
    learning_rates = np.geomspace(1e-4, 1.0, 12)
    fig = plot_sweep_heatmap(np.ones((12, 6)), b1, learning_rates, x_label="b1", y_label="learning_rate",
                             x_scale="linear", y_scale="log")  # fmt: skip
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.get_xticks(), b1)  # not 0, 0.2, … 1.0: the last column is 0.95
    assert tick_labels_apart(fig, ax.xaxis) == ["0.0", "0.19", "0.38", "0.57", "0.76", "0.95"]
    # twelve values stacked fit too, each labelled with 3 significant digits, on the log axis
    np.testing.assert_allclose(ax.get_yticks(), learning_rates)
    assert tick_labels_apart(fig, ax.yaxis)[:3] == ["0.0001", "0.000231", "0.000534"]
    assert ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.get_xlim(), [-0.095, 1.045])  # the cells' edges


def test_sweep_x_labels_that_would_collide_fall_back_to_the_scales_ticks():
    learning_rates = np.geomspace(1e-3, 1e-1, 8)  # 0.00193, 0.00373 …: too wide side by side
    fig = plot_sweep_heatmap(np.ones((2, 8)), learning_rates, [0.0, 0.9], x_label="lr", y_label="m",
                             y_scale="categorical")  # fmt: skip
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.xaxis.get_minor_locator().locs, learning_rates)  # a minor tick at each value
    assert tick_labels_apart(fig, ax.xaxis) == ["$\\mathdefault{10^{-3}}$", "$\\mathdefault{10^{-2}}$",
                                                "$\\mathdefault{10^{-1}}$"]  # fmt: skip


def test_sweep_colour_scale_with_negative_losses_has_readable_ticks():
    values = np.array([[0.3, 1e-3, -5.0, -1e12], [2.0, 0.5, -1e3, -7e28]])
    fig = plot_sweep_heatmap(values, [1e-3, 1e-2, 1e-1, 1.0], [0.0, 0.9], x_label="lr", y_label="m",
                             y_scale="categorical")  # fmt: skip
    ax, colorbar = fig.axes
    ticks = list(colorbar.get_yticks())
    assert {0.0, 1.19e-7} <= {round(t, 9) if abs(t) < 1 else t for t in ticks} and len(ticks) <= 9
    tick_labels_apart(fig, colorbar.yaxis)
    (mesh,) = ax.collections
    assert mesh.norm.linthresh == pytest.approx(1.1920929e-07)  # the colour scale is still linear within float32's eps


def test_sweep_1d_within_resolution_shows_the_band_not_the_noise():
    """Three final losses tied at ~0 (2e-12, 0, 1.8e-12): drawn together at 0, not spread over the axis."""
    final = np.array([2.27e-12, 0.0, 1.82e-12, np.nan])
    fig = plot_sweep_heatmap(final, [0.01, 0.05, 0.1, 0.2], x_label="lr", x_scale="categorical")
    ax = fig.axes[0]
    bottom, top = ax.get_ylim()
    assert bottom < 0 < 1.19e-7 < top < 1e-6
    assert tick_labels_apart(fig, ax.yaxis) == ["0", "1.19e\N{MINUS SIGN}07"]
    assert labelled(ax, "best (first tied in grid order)").get_xydata().tolist() == [[0.0, 2.27e-12]]
    np.testing.assert_array_equal(labelled(ax, "diverged").get_xdata(), [3.0])
    assert [patch.get_label() for patch in ax.patches] == ["_diverged cell"]
