"""`gradflow sweep` tells the truth: the printed table, the printed best (with its ties) and the figure's
artists (cell values, star, tied dots, axis scales, tick labels, colorbar label) come from one result."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("matplotlib")

import matplotlib

matplotlib.use("Agg")

import numpy as np

from gradflow.cli import main
from gradflow.experiments import plots
from gradflow.experiments.grid import best_of
from gradflow.experiments.plots import check_sweep_axis, plot_sweep_heatmap

SCALE = {"log": "log", "lin": "linear", "list": "categorical"}
LR = {"log": "learning_rate=log:1e-3:1e-1:3", "lin": "learning_rate=lin:0.01:0.1:3", "list": "learning_rate=0.01,0.05"}
MOMENTUM = {"log": "momentum=log:0.5:0.9:2", "lin": "momentum=lin:0.0:0.9:3", "list": "momentum=0.0,0.5,0.99"}


@pytest.fixture
def drawn(monkeypatch):
    """The figures that the CLI draws (it saves and closes them; their artists stay readable)."""
    figures = []
    original = plots.plot_sweep_heatmap

    def keep(*args, **kwargs):
        figures.append(original(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(plots, "plot_sweep_heatmap", keep)
    return figures


def sweep(capsys, tmp_path, *argv):
    """Run ``gradflow sweep`` in-process; its table ``{values: loss}`` (NaN: diverged), marks and best line."""
    assert main(["sweep", *argv, "--out", str(tmp_path / "sweep.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index(next(line for line in lines if line.endswith("final loss")))
    table, marks = {}, {}
    for line in lines[header + 1 :]:
        fields = line.split()
        if not fields or not fields[0][0].isdigit():
            break
        mark = fields.pop() if fields[-1] in "*=" else ""
        key = tuple(float(v) for v in fields[:-1])
        table[key] = np.nan if fields[-1] == "diverged" else float(fields[-1])
        marks[key] = mark
    best_line = next(line for line in lines if line.startswith(("best", "every configuration diverged")))
    return table, marks, best_line


def position_to_value(ax, which, position):
    """The grid value drawn at ``position`` on an axis: a category's exact label, or the position itself."""
    axis = getattr(ax, f"{which}axis")
    if getattr(ax, f"get_{which}scale")() == "linear" and axis.get_ticklabels() and _categorical(ax, which):
        return float(axis.get_ticklabels()[round(position)].get_text())
    return float(position)


def points(ax, label):
    """The data points of the lines labelled ``label`` (or ``_label``, matplotlib's hidden-from-legend form)."""
    found = [line.get_xydata() for line in ax.lines if _named(line.get_label().lstrip("_"), label.lstrip("_"))]
    return np.concatenate(found) if found else np.empty((0, 2))


def _named(text, label):
    """The star's label is "best", or "best (first tied in grid order)" when there are ties."""
    return text == label or (label == "best" and text.startswith("best ("))


def _categorical(ax, which):
    ticks = getattr(ax, f"get_{which}ticks")()
    low, high = getattr(ax, f"get_{which}lim")()
    return np.array_equal(ticks, np.arange(len(ticks))) and (low, high) == (-0.5, len(ticks) - 0.5)


def check_agreement(figure, table, marks, best_line, names, kinds, axes_values):
    """Every mark of the figure says what the printed text says."""
    ax = figure.axes[0]
    shape = tuple(len(v) for v in axes_values)
    printed = np.array([table[key] for key in itertools.product(*axes_values)]).reshape(shape)
    for which, kind, values in zip("xy", kinds, axes_values):
        scale = SCALE[kind]
        if scale == "categorical":
            assert [t.get_text() for t in getattr(ax, f"get_{which}ticklabels")()] == [repr(v) for v in values]
            assert _categorical(ax, which)
        else:
            assert getattr(ax, f"get_{which}scale")() == scale
    starred = [key for key, mark in marks.items() if mark == "*"]
    tied = sorted(key for key, mark in marks.items() if mark == "=")
    if len(names) == 2:
        (mesh,) = ax.collections
        cells = mesh.get_array().reshape(shape[::-1]).T  # rows: the second axis
        np.testing.assert_array_equal(np.ma.getmaskarray(cells), np.isnan(printed))
        np.testing.assert_allclose(cells.filled(np.nan), printed, rtol=1e-6, equal_nan=True)
        (colorbar,) = figure.axes[1:]
        assert colorbar.get_ylabel() == "final loss (symlog, linear within 1.19e-07 of 0)"
        star = [(position_to_value(ax, "x", px), position_to_value(ax, "y", py)) for px, py in points(ax, "_best")]
        dots = sorted((position_to_value(ax, "x", px), position_to_value(ax, "y", py)) for px, py in points(ax, "tied"))
    else:
        (line,) = [line for line in ax.lines if line.get_label() == "_sweep"]
        np.testing.assert_allclose(line.get_ydata(), printed, rtol=1e-6, equal_nan=True)
        assert ax.get_yscale() == "symlog"
        star = [(position_to_value(ax, "x", px),) for px, _ in points(ax, "_best")]
        dots = sorted((position_to_value(ax, "x", px),) for px, _ in points(ax, "tied"))
    np.testing.assert_allclose(np.array(star, dtype=float).reshape(-1, len(names)),
                               np.array(starred, dtype=float).reshape(-1, len(names)), rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(np.array(dots, dtype=float).reshape(-1, len(names)),
                               np.array(tied, dtype=float).reshape(-1, len(names)), rtol=1e-12)  # fmt: skip
    # the printed best is the grid-order-first of the values tied within float32's resolution of the minimum
    best = best_of(printed)
    title = ax.get_title()
    if best.index is None:
        assert best_line.startswith("every configuration diverged") and "every run diverged" in title
        return
    assert best.ties == len(tied) + 1
    where = [f"{name}={axes_values[i][j]!r}" for i, (name, j) in enumerate(zip(names, best.index))]
    assert best_line.startswith(f"best of {best.ties} tied" if best.ties > 1 else "best: ")
    assert ", ".join(where) in best_line
    assert (f"best of {best.ties} tied:" if best.ties > 1 else "best:") in title
    for name, value in zip(names, [axes_values[i][j] for i, j in enumerate(best.index)]):
        assert f"{name} = {value!r}" in title


def grid_values(kind, spec):
    text = spec.partition("=")[2]
    if kind == "list":
        return [float(v) for v in text.split(",")]
    _, low, high, count = text.split(":")
    space = np.geomspace if kind == "log" else np.linspace
    return [float(v) for v in space(float(low), float(high), int(count))]


@pytest.mark.parametrize("lr_first", [True, False], ids=["lr-first", "momentum-first"])
@pytest.mark.parametrize(("lr_kind", "momentum_kind"), list(itertools.product(LR, MOMENTUM)))
def test_every_scale_combination_and_order(capsys, tmp_path, drawn, lr_kind, momentum_kind, lr_first):
    pairs = [("learning_rate", lr_kind, LR[lr_kind]), ("momentum", momentum_kind, MOMENTUM[momentum_kind])]
    if not lr_first:
        pairs.reverse()
    argv = ["booth", "--optimizer", "momentum", "--steps", "5"]
    for _, _, spec in pairs:
        argv += ["--param", spec]
    table, marks, best_line = sweep(capsys, tmp_path, *argv)
    (figure,) = drawn
    names = [name for name, _, _ in pairs]
    kinds = [kind for _, kind, _ in pairs]
    check_agreement(figure, table, marks, best_line, names, kinds, [grid_values(k, s) for _, k, s in pairs])


@pytest.mark.parametrize("kind", list(LR))
def test_one_axis_takes_its_scale_from_its_spec(capsys, tmp_path, drawn, kind):
    table, marks, best_line = sweep(
        capsys, tmp_path, "booth", "--optimizer", "sgd", "--steps", "5", "--param", LR[kind]
    )
    (figure,) = drawn
    assert len(figure.axes) == 1
    check_agreement(figure, table, marks, best_line, ["learning_rate"], [kind], [grid_values(kind, LR[kind])])


def test_ties_and_divergence_in_the_issue_sweep(capsys, tmp_path, drawn):
    """The sweep from the issue: many cells reach a loss of ~0, the largest learning rates diverge."""
    specs = ["learning_rate=log:1e-3:1:16", "momentum=0.5,0.9,0.99"]
    table, marks, best_line = sweep(capsys, tmp_path, "booth", "--optimizer", "momentum", "--steps", "300",
                                    "--param", specs[0], "--param", specs[1])  # fmt: skip
    assert best_line.startswith("best of ") and " tied " in best_line
    assert np.isnan(list(table.values())).any()
    (figure,) = drawn
    assert "diverged" in [line.get_label() for line in figure.axes[0].lines]
    check_agreement(figure, table, marks, best_line, ["learning_rate", "momentum"], ["log", "list"],
                    [grid_values("log", specs[0]), grid_values("list", specs[1])])  # fmt: skip


def test_every_configuration_diverged(capsys, tmp_path, drawn):
    spec = "learning_rate=20,40"
    table, marks, best_line = sweep(capsys, tmp_path, "booth", "--optimizer", "sgd", "--steps", "50", "--param", spec)
    assert np.isnan(list(table.values())).all()
    check_agreement(drawn[0], table, marks, best_line, ["learning_rate"], ["list"], [[20.0, 40.0]])


def test_zero_and_negative_first_axis_values_plot_after_the_run(capsys, tmp_path, drawn):
    """Values <= 0 on the first axis are fine on a linear or categorical axis (once a log x axis: a traceback)."""
    specs = ["momentum=lin:0:0.5:2", "learning_rate=0.01,0.1"]
    table, marks, best_line = sweep(capsys, tmp_path, "booth", "--optimizer", "momentum", "--steps", "5",
                                    "--param", specs[0], "--param", specs[1])  # fmt: skip
    check_agreement(drawn[0], table, marks, best_line, ["momentum", "learning_rate"], ["lin", "list"],
                    [[0.0, 0.5], [0.01, 0.1]])  # fmt: skip


def test_axes_are_checked_up_front():
    with pytest.raises(ValueError, match="a log axis needs positive x values"):
        check_sweep_axis([0.0, 1.0], "log", "x")
    with pytest.raises(ValueError, match="scale must be one of log, linear, categorical"):
        check_sweep_axis([1.0], "symlog", "x")
    with pytest.raises(ValueError, match="finite"):
        check_sweep_axis([np.nan], "linear", "x")


def test_zero_and_negative_losses_keep_their_place_on_the_colour_scale():
    values = np.array([[0.3, 0.0], [-2e-3, np.nan]])
    fig = plot_sweep_heatmap(values, [1e-3, 1e-2], [0.5, 0.9], x_label="lr", y_label="m", y_scale="categorical")
    (mesh,) = fig.axes[0].collections
    np.testing.assert_array_equal(mesh.get_array().filled(np.nan).reshape(2, 2), values)
    assert mesh.norm.vmin == -2e-3 and mesh.norm.vmax == 0.3 and mesh.norm(0.0) > mesh.norm(-2e-3)
    assert "best: final loss -0.002 at lr = 0.001, m = 0.9" in fig.axes[0].get_title()
    matplotlib.pyplot.close(fig)


def test_best_of_tie_rule():
    values = np.array([[1e-9, 0.0], [0.0, np.nan]])
    best = best_of(values)
    assert best.index == (0, 0) and best.ties == 3 and best.tied == ((0, 0), (0, 1), (1, 0))
    assert best_of(np.array([2.0, 1.0, 1.0 + 1e-3])).tied == ((1,),)
    assert best_of(np.array([np.nan, np.inf])).index is None
