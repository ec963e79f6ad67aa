"""Figures of optimizer races with matplotlib: trajectories over a landscape's contours, loss curves,
learning-rate schedules and hyperparameter sweeps. matplotlib is an optional dependency, imported here
and nowhere else in gradflow. Every function draws into ``ax`` (a new figure when ``None``), returns the
:class:`~matplotlib.figure.Figure` and never calls ``plt.show``, so it runs under the Agg backend and in
CI. What a diverged run leaves (NaN, inf, points outside a landscape's window) is masked, never allowed
to rescale the axes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.experiments.history import History
from gradflow.experiments.landscapes import Landscape
from gradflow.validation import check_callable, check_integer

try:
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
except ImportError as error:
    raise ImportError("gradflow.experiments.plots needs matplotlib: pip install 'gradflow[experiments]'") from error

__all__ = ["check_sweep_axis", "plot_losses", "plot_race", "plot_schedule", "plot_sweep_heatmap"]

_FLOOR = 1e-16  # values at or below it (a loss that reached its minimum exactly) are drawn at it on log axes
_MARKERS = 20  # about this many markers per trajectory; the line itself keeps every point


def _axes(ax: Any) -> tuple[Any, Any]:
    """The root figure and the axes to draw into (a new figure when ``ax`` is ``None``)."""
    if ax is None:
        return plt.subplots(layout="constrained")
    return ax.figure.figure, ax


def _colors(n: int) -> list[Any]:
    """``n`` distinct colors: matplotlib's tab10 cycle, or samples of turbo when there are more than 10."""
    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    return list(matplotlib.colormaps["turbo"](np.linspace(0.05, 0.95, n)))


def _markevery(n: int) -> list[int]:
    """About ``_MARKERS`` evenly spaced indices of ``n`` points, always with the first and the last."""
    return np.unique(np.append(np.arange(0, n, max(1, n // _MARKERS)), n - 1)).tolist()


def _in_window(name: str, trajectory: Any, window: tuple[tuple[float, float], ...]) -> np.ndarray:
    """The trajectory as a float ``(T, dim)`` array, NaN at non-finite points and points outside the window."""
    dim = len(window)
    points = np.asarray(trajectory, dtype=np.float64)
    if points.ndim == 1 and dim == 1:
        points = points[:, None]
    if points.ndim != 2 or points.shape[1] != dim or len(points) == 0:
        raise ValueError(f"plot_race: trajectory {name!r} has shape {points.shape}, expected (T, {dim}) with T > 0")
    lo, hi = np.asarray(window, dtype=np.float64).T
    inside = np.isfinite(points).all(axis=1) & ((points >= lo) & (points <= hi)).all(axis=1)
    return np.where(inside[:, None], points, np.nan)


def _mark(ax: Any, points: np.ndarray, label: str, **style: Any) -> None:
    """Plot marker-only points (rows of ``(x, y)``), kept out of the legend by the leading underscore."""
    if len(points):
        ax.plot(points[:, 0], points[:, 1], linestyle="none", label=f"_{label}", **style)


_START = dict(marker="o", markersize=9, markerfacecolor="white", markeredgecolor="black", zorder=5)
_GLOBAL = dict(marker="*", markersize=18, markerfacecolor="gold", markeredgecolor="black", zorder=6)
_LOCAL = dict(marker="D", markersize=7, markerfacecolor="white", markeredgecolor="black", zorder=6)


def _contour_levels(Z: np.ndarray, levels: int, log_scale: bool) -> tuple[np.ndarray, Any, Any]:
    """The array to contour, its levels and norm: log-spaced levels on ``Z − min Z`` plus a small offset."""
    Z = np.ma.masked_invalid(Z)
    if not log_scale:
        return Z, levels, None
    shifted = Z - Z.min()
    span = float(shifted.max())
    offset = span * 1e-6 if span > 0 else 1.0
    top = span + offset
    return shifted + offset, np.geomspace(offset, top, levels), LogNorm(offset, top)


def _on_curve(landscape: Any, groups: list[np.ndarray]) -> list[np.ndarray]:
    """Each group of 1-D points as rows ``(x, f(x))``, with ``f`` evaluated in one jitted call."""
    points = np.concatenate(groups)
    values = np.asarray(jax.jit(jax.vmap(landscape.fn))(jnp.asarray(points)), dtype=np.float64)
    curves = np.column_stack([points[:, 0], values])
    return np.split(curves, np.cumsum([len(group) for group in groups])[:-1])


def plot_race(
    landscape: Any,
    trajectories: Mapping[str, Any],
    *,
    ax: Any = None,
    levels: int = 30,
    title: str | None = None,
    start: Any = None,
) -> Any:
    """The optimizers' paths over a landscape, the seeds' comparison figure.

    A 2-D landscape is drawn as contours over its ``window`` (log-spaced levels when ``log_scale``), each
    trajectory as a line with thinned markers; a 1-D one as the curve ``f(x)`` with each trajectory as
    markers at ``(x, f(x))`` and its final point enlarged. Start points (each trajectory's first point)
    are white circles, global minima gold stars and local minima white diamonds; a start point outside
    the window is stated in a note instead. The axes keep the window as limits: points that are not
    finite or lie outside the window are left out (the line breaks there), so a diverging optimizer
    cannot rescale the figure.

    Args:
      landscape: a :class:`~gradflow.experiments.landscapes.Landscape` of dimension 1 or 2.
      trajectories: optimizer name → points of shape ``(T, dim)``, e.g. :attr:`History.trajectory`, or
        ``None`` for a run with nothing to draw (every learning rate diverged): a legend entry only, in
        its place in the order and with its color, so the legend keeps the order of a results table.
      ax: axes to draw into; a new figure when ``None``.
      levels: number of contour levels (2-D only).
      title: defaults to the landscape's name.
      start: the start point marked when no trajectory gives one (every run diverged); default the
        landscape's ``start``.

    Returns:
      The figure.

    Example:
      >>> from gradflow.experiments.landscapes import rosenbrock
      >>> fig = plot_race(rosenbrock, {"gd": [[-1.2, 1.0], [-0.9, 0.8], [-0.5, 0.3]]})
      >>> plt.close(fig)
    """
    if not isinstance(landscape, Landscape):
        raise TypeError(f"plot_race: landscape must be a Landscape (see LANDSCAPES), got {type(landscape).__name__}")
    if landscape.dim not in (1, 2):
        raise ValueError(f"plot_race: only 1-D and 2-D landscapes are drawn, {landscape.name} has dim {landscape.dim}")
    fig, ax = _axes(ax)
    window = landscape.window
    colors = dict(zip(trajectories, _colors(len(trajectories))))
    for name, points in trajectories.items():
        if points is None:
            ax.plot([], [], color=colors[name], linestyle="none", marker="x", label=name)
    paths = {name: _in_window(name, points, window) for name, points in trajectories.items() if points is not None}
    firsts = [np.asarray(points, np.float64).reshape(-1, landscape.dim)[0] for points in trajectories.values()
              if points is not None]  # fmt: skip
    firsts = [point for point in firsts if np.isfinite(point).all()]
    if not firsts:
        firsts = [np.asarray(landscape.start if start is None else start, np.float64).reshape(landscape.dim)]
    starts = np.unique(firsts, axis=0)
    lo, hi = np.asarray(window, dtype=np.float64).T
    outside = starts[~((starts >= lo) & (starts <= hi)).all(axis=1)]
    starts = starts[((starts >= lo) & (starts <= hi)).all(axis=1)]
    if len(outside):  # a start point the window cannot show is said, not drawn somewhere else
        where = "; ".join("(" + ", ".join(f"{v:g}" for v in point) + ")" for point in outside)
        ax.text(0.02, 0.02, f"start {where}: outside the window", transform=ax.transAxes, fontsize="small",
                bbox=dict(facecolor="white", edgecolor="0.5", alpha=0.85), zorder=7)  # fmt: skip
    minima = np.asarray(landscape.minima, dtype=np.float64).reshape(-1, landscape.dim)
    local_minima = np.asarray(landscape.local_minima, dtype=np.float64).reshape(-1, landscape.dim)
    if landscape.dim == 2:
        X, Y, Z = landscape.grid()
        shown, contour_levels, norm = _contour_levels(Z, levels, landscape.log_scale)
        ax.contourf(X, Y, shown, levels=contour_levels, norm=norm, cmap="Greys", alpha=0.45)
        ax.contour(X, Y, shown, levels=contour_levels, norm=norm, colors="0.35", linewidths=0.4)
        for name, path in paths.items():
            color = colors[name]
            ax.plot(path[:, 0], path[:, 1], color=color, linewidth=1.5, marker="o", markersize=3.5,
                    markevery=_markevery(len(path)), label=name, zorder=4)  # fmt: skip
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    else:
        X, Z = landscape.grid()
        ax.plot(X, Z, color="0.3", linewidth=1.5, label="_f")
        *curves, starts, minima, local_minima = _on_curve(landscape, [*paths.values(), starts, minima, local_minima])
        for name, curve in zip(paths, curves):
            color = colors[name]
            ax.plot(curve[:, 0], curve[:, 1], color=color, linestyle="none", marker="o", markersize=5, alpha=0.7,
                    markevery=_markevery(len(curve)), label=name, zorder=4)  # fmt: skip
            finite = curve[np.isfinite(curve).all(axis=1)]
            _mark(ax, finite[-1:], "final", marker="o", markersize=11, markerfacecolor=color,
                  markeredgecolor="black", markeredgewidth=1.5, zorder=5)  # fmt: skip
        finite_Z = Z[np.isfinite(Z)]
        pad = 0.05 * float(np.ptp(finite_Z)) or 1.0
        ax.set_ylim(finite_Z.min() - pad, finite_Z.max() + pad)
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
    _mark(ax, starts, "start", **_START)
    _mark(ax, minima, "global minimum", **_GLOBAL)
    _mark(ax, local_minima, "local minimum", **_LOCAL)
    ax.set_xlim(window[0])
    if landscape.dim == 2:
        ax.set_ylim(window[1])
    if trajectories:
        _ordered_legend(ax, list(trajectories))
    ax.set_title(landscape.name if title is None else title)
    return fig


def _ordered_legend(ax: Any, names: list[str]) -> None:
    """A legend whose first entries are ``names`` in that order, then any other labelled artist."""
    handles, labels = ax.get_legend_handles_labels()
    position = {name: i for i, name in enumerate(names)}
    pairs = sorted(zip(handles, labels), key=lambda pair: position.get(pair[1], len(names)))
    ax.legend([h for h, _ in pairs], [label for _, label in pairs], loc="best", fontsize="small")


def _loss_record(name: str, record: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None]:
    """``(steps, loss, val_loss, stopped_at)`` of a :class:`History` or of a 1-D array of losses."""
    if isinstance(record, History):
        if record.loss is None:
            raise ValueError(f"plot_losses: history {name!r} did not record the loss")
        loss = np.asarray(record.loss, dtype=np.float64)
        steps = np.asarray(record.steps)
        val_loss = None if record.val_loss is None else np.asarray(record.val_loss, dtype=np.float64)
        stopped_at = None if val_loss is None else int(record.stopped_at)
    else:
        try:
            loss = np.asarray(record, dtype=np.float64)
        except (TypeError, ValueError):
            wanted = "a History or a 1-D array of losses"
            raise TypeError(f"plot_losses: {name!r} must be {wanted}, got {record!r}") from None
        steps, val_loss, stopped_at = np.arange(loss.size), None, None
    if loss.ndim != 1:
        raise ValueError(f"plot_losses: {name!r} has losses of shape {loss.shape}; pass one run (history[i])")
    return steps, loss, val_loss, stopped_at


def plot_losses(
    histories: Mapping[str, Any],
    *,
    minimum_value: float | None = None,
    ax: Any = None,
    log: bool = True,
    title: str | None = None,
    scale: str | None = None,
    floor: float | None = None,
) -> Any:
    """Loss curves against the step, ``loss − minimum_value`` on a log axis by default.

    On the log axis, values at or below ``floor`` (default 1e-16; a run that reached the minimum exactly,
    or round-off below the dtype's resolution) are drawn at ``floor``, and non-finite values (a diverged
    run) are left out. On a ``"symlog"`` axis (a loss unbounded below) the axis is linear within ±the
    largest power of ten at or below the smallest magnitude any curve starts or ends at (at least
    ``floor``), with ticks at 0, at ±that threshold and every few decades beyond; the y label states the
    threshold. A given ``floor`` is stated in the y label of a log axis. A history of ``None`` (a run that diverged)
    gets a legend entry and no line; the legend keeps the order of ``histories``. A history with a
    validation loss also gets it dashed in the same color, and a dotted vertical line at ``stopped_at``
    when early stopping froze the parameters before the end of the run.

    Args:
      histories: name → :class:`History` (its ``steps`` and ``loss``) or a 1-D array of losses (one per
        step).
      minimum_value: subtracted from every loss (a landscape's ``minimum_value``); ``None``: nothing.
      ax: axes to draw into; a new figure when ``None``.
      log: logarithmic y axis (when ``scale`` is not given).
      title: the axes title (none by default).
      scale: ``"log"``, ``"symlog"`` or ``"linear"``; overrides ``log``.
      floor: the smallest value drawn on a log axis, the smallest linear threshold of a symlog one.

    Returns:
      The figure.

    Example:
      >>> fig = plot_losses({"gd": np.array([1.0, 0.5, 0.25]), "adam": np.array([1.0, 0.1, 0.01])})
      >>> plt.close(fig)
    """
    scale = ("log" if log else "linear") if scale is None else scale
    if scale not in ("log", "symlog", "linear"):
        raise ValueError(f"plot_losses: scale must be 'log', 'symlog' or 'linear', got {scale!r}")
    if floor is not None and not (np.isfinite(floor) and floor > 0):
        raise ValueError(f"plot_losses: floor must be a finite number > 0, got {floor!r}")
    fig, ax = _axes(ax)
    shift = 0.0 if minimum_value is None else minimum_value
    low = _FLOOR if floor is None else floor

    def shown(values: np.ndarray) -> np.ndarray:
        values = values - shift
        if scale == "log":
            return np.where(np.isfinite(values), np.maximum(values, low), np.nan)
        return np.where(np.isfinite(values), values, np.nan)

    drawn = []
    for (name, record), color in zip(histories.items(), _colors(len(histories))):
        if record is None:
            ax.plot([], [], color=color, linestyle="none", marker="x", label=name)
            continue
        steps, loss, val_loss, stopped_at = _loss_record(name, record)
        drawn.append(shown(loss))
        ax.plot(steps, drawn[-1], color=color, label=name)
        if val_loss is not None:
            ax.plot(steps, shown(val_loss), color=color, linestyle="--", label=f"{name} (validation)")
            if stopped_at <= steps[-1]:  # a run that never stopped has stopped_at = its number of steps
                ax.axvline(stopped_at, color=color, linestyle=":", label=f"_{name} stopped")
    label = "loss" if minimum_value is None else "loss − minimum"
    if scale == "symlog":
        linthresh = _symlog_linthresh(drawn, low)
        _symlog_axis(ax, np.concatenate(drawn) if drawn else np.empty(0), linthresh)
        label += f" (symlog, linear within ±{linthresh:g})"
    elif scale == "log":
        ax.set_yscale("log")
        if floor is not None:
            label += f" (floored at {floor:.1e})"
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    if histories:
        _ordered_legend(ax, list(histories))
    if title is not None:
        ax.set_title(title)
    return fig


def _symlog_linthresh(curves: list[np.ndarray], floor: float) -> float:
    """The linear threshold of a symlog loss axis: the largest power of ten at or below the smallest
    nonzero magnitude among the curves' first and last finite values, and at least ``floor``.

    Below that magnitude no curve starts or ends, so decades of round-off near 0 (float32's 1e-7 …) do
    not take up the axis; a curve that only passes through 0 crosses the linear band.
    """
    ends = [curve[np.isfinite(curve)][[0, -1]] for curve in curves if np.isfinite(curve).any()]
    magnitudes = np.abs(np.concatenate(ends)) if ends else np.empty(0)
    magnitudes = magnitudes[magnitudes > 0]
    if not magnitudes.size:
        return floor
    return max(floor, 10.0 ** np.floor(np.log10(magnitudes.min())))


_SYMLOG_TICKS = 9  # at most about this many major ticks on a symlog axis, 0 included
_STRIDES = (1, 2, 3, 5, 10, 20, 25, 50, 100)  # decades between neighbouring ticks


def _symlog_tick_text(value: float, _position: Any = None) -> str:
    """A symlog tick's label: 0, ±10^k for a power of ten, else three significant digits."""
    if value == 0:
        return "0"
    exponent = np.log10(abs(value))
    if np.isclose(exponent, round(exponent), rtol=0, atol=1e-9):
        return f"${'-' if value < 0 else ''}10^{{{round(exponent)}}}$"
    return f"{value:.3g}".replace("-", "\N{MINUS SIGN}")


def _symlog_ticks(low: float, high: float, linthresh: float) -> tuple[list[float], float, tuple[float, float]]:
    """Readable ticks for a symlog scale over ``[low, high]`` that shows its linear band ±``linthresh``.

    Returns ``(ticks, linscale, (bottom, top))``: 0 and ±``linthresh`` (on the sides the data reach) are
    always ticks; ``linscale`` gives the band about a ninth of the scale's length, so that they never
    crowd; beyond it, ticks at ±10^k for k a multiple of a stride of decades that keeps about
    ``_SYMLOG_TICKS`` ticks, none closer than half a stride to ±``linthresh``. ``(bottom, top)`` are the
    data's extent (at least ±``linthresh`` on a side the data reach, 0 on a side they do not).
    """
    up = np.log10(max(high, linthresh) / linthresh)
    down = np.log10(max(-low, linthresh) / linthresh) if low < 0 else 0.0
    first = np.log10(linthresh)
    stride = next((s for s in _STRIDES if np.ceil(up / s) + np.ceil(down / s) + 3 <= _SYMLOG_TICKS), _STRIDES[-1])
    ticks, limits = [0.0], []
    for sign, decades, reached in ((1.0, up, high > 0), (-1.0, down, low < 0)):
        if not reached:
            limits.append(0.0)  # nothing on this side of 0: the scale ends at 0
            continue
        ticks.append(sign * linthresh)
        exponent = int(np.ceil((first + max(1, stride / 2)) / stride)) * stride  # multiples of the stride
        while exponent <= first + decades + 1e-9:  # within the data
            ticks.append(sign * 10.0**exponent)
            exponent += stride
        limits.append(sign * linthresh * 10.0**decades)
    return sorted(ticks), max(1.0, (up + down) / 8), (limits[1], limits[0])


def _shows_band(low: float, high: float, linthresh: float) -> bool:
    """Whether data over ``[low, high]`` come within ten times ``linthresh`` of 0 (the band is then shown)."""
    return low <= 10 * linthresh and high >= -10 * linthresh


def _symlog_axis(ax: Any, values: np.ndarray, linthresh: float) -> None:
    """Put ``ax``'s y axis on a readable symlog scale, linear within ±``linthresh``, for ``values``.

    When the data come within ten times ``linthresh`` of 0, the ticks and limits of :func:`_symlog_ticks`
    (minor ticks off); data far from 0 get matplotlib's own symlog ticks (the axis is then logarithmic
    where they are).
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, linthresh)
    if not _shows_band(low, high, linthresh):
        ax.set_yscale("symlog", linthresh=linthresh)
        return
    ticks, linscale, (bottom, top) = _symlog_ticks(low, high, linthresh)
    ax.set_yscale("symlog", linthresh=linthresh, linscale=linscale)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(_symlog_tick_text))
    ax.yaxis.set_minor_locator(NullLocator())
    if top == 0.0:
        top = linthresh  # all data at or below 0: still show the band's upper half
    scaled = ax.transScale.transform([(0, bottom), (0, top)])[:, 1]
    margin = 0.04 * (scaled[1] - scaled[0])
    inverse = ax.transScale.inverted()
    ax.set_ylim(inverse.transform([(0, scaled[0] - margin), (0, scaled[1] + margin)])[:, 1])


def _schedule_values(schedule: Callable[[Any], Any], steps: int) -> np.ndarray:
    """``schedule`` at the counts ``0 … steps − 1``: one jitted ``vmap``, or a loop for a function that
    needs concrete counts (Python branching on the count, NumPy calls)."""
    try:
        values = jax.jit(jax.vmap(schedule))(jnp.arange(steps))
    except jax.errors.JAXTypeError:
        values = [schedule(count) for count in range(steps)]
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (steps,))


def plot_schedule(schedules: Any, steps: int, *, ax: Any = None, title: str | None = None) -> Any:
    """Values of schedules at the counts ``0 … steps − 1``.

    Args:
      schedules: a schedule (a callable of an int count: a gradflow schedule or a plain function), or a
        mapping name → schedule (then a legend names them).
      steps: number of counts evaluated, >= 1.
      ax: axes to draw into; a new figure when ``None``.
      title: the axes title (none by default).

    Returns:
      The figure.

    Example:
      >>> import gradflow
      >>> fig = plot_schedule({"exponential": gradflow.exponential_decay(0.1, 100, 0.1)}, 300)
      >>> plt.close(fig)
    """
    check_integer("plot_schedule", "steps", steps, low=1)
    named = isinstance(schedules, Mapping)
    for name, schedule in schedules.items() if named else [("schedules", schedules)]:
        check_callable("plot_schedule", name if named else "schedules", schedule)
    fig, ax = _axes(ax)
    for name, schedule in schedules.items() if named else [("_schedule", schedules)]:
        ax.plot(np.arange(steps), _schedule_values(schedule, steps), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    if named and schedules:
        ax.legend(loc="best", fontsize="small")
    if title is not None:
        ax.set_title(title)
    return fig


_SCALES = ("log", "linear", "categorical")


def check_sweep_axis(values: Any, scale: str, label: str) -> np.ndarray:
    """``values`` as a 1-D float array that a sweep axis of ``scale`` can draw, or a ValueError naming ``label``.

    Call it before a sweep runs (the CLI does), so that nothing can fail in the plotting step afterwards.

    >>> check_sweep_axis([0.5, 0.9], "categorical", "momentum").tolist()
    [0.5, 0.9]
    """
    if scale not in _SCALES:
        raise ValueError(f"plot_sweep_heatmap: {label} scale must be one of {', '.join(_SCALES)}, got {scale!r}")
    centers = np.asarray(values, dtype=np.float64).reshape(-1)
    if centers.size == 0 or not np.isfinite(centers).all():
        raise ValueError(f"plot_sweep_heatmap: {label} needs finite values, got {centers}")
    _check_positive(centers, scale == "log", label)
    return centers


def _check_positive(centers: np.ndarray, log: bool, label: str) -> None:
    if log and not (centers > 0).all():
        raise ValueError(f"plot_sweep_heatmap: a log axis needs positive {label} values, got {centers}")


def _cell_edges(centers: np.ndarray, log: bool) -> np.ndarray:
    """Cell boundaries around ``centers``: midpoints between neighbours, in log space on a log axis."""
    c = np.log10(centers) if log else centers
    if len(c) == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        middle = (c[1:] + c[:-1]) / 2
        edges = np.concatenate([[2 * c[0] - middle[0]], middle, [2 * c[-1] - middle[-1]]])
    return 10**edges if log else edges


def _value_label(value: float) -> str:
    """A grid value exactly as given (the shortest text that reads back as the same float)."""
    return repr(float(value))


def _sweep_axis(ax: Any, which: str, centers: np.ndarray, scale: str) -> tuple[np.ndarray, np.ndarray]:
    """Set up one axis of a sweep figure; the positions of its values and its cell edges."""
    if scale == "categorical":
        positions = np.arange(len(centers), dtype=np.float64)
        labels = [_value_label(v) for v in centers]
        getattr(ax, f"set_{which}ticks")(positions, labels)
        if not _labels_fit(which, labels):  # exact values are the categories' names: turned, never shortened
            ax.tick_params(axis=which, labelrotation=45 if which == "x" else 0)
            if which == "x":
                for label in ax.get_xticklabels():
                    label.set(horizontalalignment="right", rotation_mode="anchor")
        getattr(ax, f"set_{which}lim")(-0.5, len(centers) - 0.5)
        return positions, np.arange(len(centers) + 1) - 0.5
    if scale == "log":
        getattr(ax, f"set_{which}scale")("log")
    from matplotlib.ticker import FixedFormatter, FixedLocator, NullFormatter

    axis = getattr(ax, f"{which}axis")
    labels = [_short_value_label(v) for v in centers]
    if _labels_fit(which, labels):  # the grid values are the ticks
        axis.set_major_locator(FixedLocator(centers.tolist()))
        axis.set_major_formatter(FixedFormatter(labels))
        axis.set_minor_locator(FixedLocator([]))
    else:  # too many to label: the scale's own ticks, and a minor tick at every grid value
        axis.set_minor_locator(FixedLocator(centers.tolist()))
        axis.set_minor_formatter(NullFormatter())
    edges = _cell_edges(centers, scale == "log")
    getattr(ax, f"set_{which}lim")(edges[0], edges[-1])
    return centers, edges


def _labels_fit(which: str, labels: list[str]) -> bool:
    """Whether tick labels for every grid value fit side by side (x: about 48 characters) or stacked (y: 12)."""
    if which == "x":
        return sum(len(label) + 2 for label in labels) <= 48
    return len(labels) <= 12 and max(map(len, labels)) <= 8


def _short_value_label(value: float) -> str:
    """A generated grid value (``log:`` or ``lin:``) as a tick label: its shortest text, else 3 digits."""
    text = repr(float(value))
    return text if len(text) <= 7 else f"{value:.3g}"


_BEST = dict(marker="*", markersize=16, markerfacecolor="white", markeredgecolor="black", linestyle="none", zorder=5)


def _legend_below(ax: Any, **style: Any) -> None:
    """A legend centred under ``ax``, below its tick labels and x label (wherever long labels put them).

    In a figure of its own under constrained layout (the heatmap and its colorbar), a figure legend that
    the layout makes room for; in a figure of the caller's, an axes legend placed under the laid-out
    axes, kept out of the layout so that the axes do not move after it is placed.
    """
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    figure = ax.figure
    handles, labels = ax.get_legend_handles_labels()
    if isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine) and len(figure.axes) <= 2:
        figure.legend(handles, labels, loc="outside lower center", **style)
        return
    figure.canvas.draw()  # lays the figure out: tick labels and the x label take their final place
    box = ax.get_tightbbox(figure.canvas.get_renderer())
    bottom = ax.transAxes.inverted().transform((0, box.y0))[1]
    legend = ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, bottom - 0.02), **style)
    legend.set_in_layout(False)


def _best_label(best: Any) -> str:
    """The legend entry of the best run's star (the first of its ties in grid order when there are ties)."""
    return "best (first tied in grid order)" if best.ties > 1 else "best"


_TIED = dict(marker="o", markersize=5, markerfacecolor="white", markeredgecolor="black", linestyle="none", zorder=4)


def plot_sweep_heatmap(
    values: Any,
    x: Any,
    y: Any = None,
    *,
    x_label: str,
    y_label: str | None = None,
    ax: Any = None,
    log_x: bool = True,
    log_y: bool = False,
    x_scale: str | None = None,
    y_scale: str | None = None,
    best: Any = None,
    dtype: Any = np.float32,
    title: str | None = None,
    colorbar_label: str = "final loss",
) -> Any:
    """A sweep's final losses: a heatmap over two hyperparameters, or a curve over one.

    With ``y``, ``values[i, j]`` (the run with ``y[i]`` and ``x[j]``) is drawn as a cell holding exactly that
    value (the mesh's array is ``values``, diverged cells masked: light gray with a cross, labelled
    "diverged"). Colors follow a symmetric-log scale that is linear within the dtype's resolution
    (``resolution(dtype)``, float32's 1.19e-07) of 0 and logarithmic beyond, so a loss of exactly 0 or below
    0 keeps its place on the scale; the colorbar says so. Without ``y``, ``values[j]`` is drawn against
    ``x`` on the same kind of loss axis, diverged runs as gray bands with a cross (no loss value to place).

    Each axis has a scale: ``"log"`` and ``"linear"`` draw the values on a continuous axis, cells meeting
    halfway between neighbours (in log space on a log axis); ``"categorical"`` draws equal cells labelled
    with the exact values. The best run (``best``, a :class:`~gradflow.experiments.grid.Best` in the
    ``values`` layout, computed by :func:`~gradflow.experiments.grid.best_of` when ``None``) is marked by a
    white star, the runs tied with it by white dots, and stated in the default title.

    Args:
      values: ``(len(y), len(x))`` final losses, or ``(len(x),)`` when ``y`` is ``None``.
      x: the hyperparameter of the columns (e.g. learning rates).
      y: the hyperparameter of the rows, or ``None`` for the 1-D sweep.
      x_label: name of ``x``.
      y_label: name of ``y``; in the 1-D plot the loss axis label (default ``colorbar_label``).
      ax: axes to draw into; a new figure when ``None``.
      log_x: logarithmic x axis (when ``x_scale`` is not given).
      log_y: logarithmic y axis (heatmap only, when ``y_scale`` is not given).
      x_scale: ``"log"``, ``"linear"`` or ``"categorical"``; overrides ``log_x``.
      y_scale: the same for ``y``; overrides ``log_y``.
      best: the best run and its ties, indices into ``values``; ``best_of(values, dtype)`` when ``None``.
      dtype: the dtype the sweep ran in, whose resolution sets the linear band of the loss scale.
      title: the axes title; by default the best value and where it is.
      colorbar_label: what ``values`` are.

    Returns:
      The figure.

    Example:
      >>> fig = plot_sweep_heatmap([[0.3, 0.01], [0.1, np.nan]], [1e-3, 1e-2], [0.0, 0.9], x_label="lr", y_label="b1",
      ...                          y_scale="categorical")
      >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
      ['0.0', '0.9']
      >>> plt.close(fig)
    """
    from matplotlib.colors import SymLogNorm

    from gradflow.experiments.grid import best_of, resolution

    values = np.asarray(values, dtype=np.float64)
    x_scale = x_scale or ("log" if log_x else "linear")
    x = check_sweep_axis(x, x_scale, "x")
    expected = (len(x),) if y is None else (np.size(y), len(x))
    if values.shape != expected:
        raise ValueError(f"plot_sweep_heatmap: values have shape {values.shape}, expected {expected} from x and y")
    y_kind = y_scale or ("log" if log_y else "linear")
    if y is not None:
        y = check_sweep_axis(y, y_kind, "y")
    best = best_of(values, dtype) if best is None else best
    floor = resolution(dtype)
    finite = np.isfinite(values)
    scale_note = f"symlog, linear within {floor:.3g} of 0"
    fig, ax = _axes(ax)
    px, x_edges = _sweep_axis(ax, "x", x, x_scale)
    if finite.any():
        low, high = values[finite].min(), values[finite].max()
        low, high = min(low, 0.0) if low <= floor else low, high if high > low else low + floor
    else:
        low, high = 0.0, 1.0
    if y is None:
        ax.plot(px, np.where(finite, values, np.nan), color="tab:blue", marker="o", markersize=4, label="_sweep")
        if not finite.all():
            for j in np.flatnonzero(~finite):  # a gray band: no loss value there, as in the heatmap's cells
                ax.axvspan(x_edges[j], x_edges[j + 1], color="lightgray", zorder=0, label="_diverged cell")
            ax.plot(px[~finite], np.full((~finite).sum(), 0.5), transform=ax.get_xaxis_transform(), linestyle="none",
                    marker="x", color="0.3", label="diverged")  # fmt: skip
        if best.index is not None:
            tied = np.array([i[0] for i in best.tied[1:]], dtype=int)
            ax.plot(px[best.index], values[best.index], label=_best_label(best), **{**_BEST, "markerfacecolor": "gold"})
            ax.plot(px[tied], values[tied], label="tied" if len(tied) else "_tied", **_TIED)
            where = f"{x_label} = {_value_label(x[best.index[0]])}"
        if best.index is not None or not finite.all():
            ax.legend(loc="best", fontsize="small")
        _symlog_axis(ax, values[finite], floor)
        ax.set_ylabel(f"{colorbar_label if y_label is None else y_label} ({scale_note})")
    else:
        py, y_edges = _sweep_axis(ax, "y", y, y_kind)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgray")
        band = _shows_band(low, high, floor)
        ticks, linscale, _ = _symlog_ticks(low, high, floor) if band else (None, 1.0, None)
        norm = SymLogNorm(linthresh=floor, linscale=linscale, vmin=low, vmax=high)
        mesh = ax.pcolormesh(x_edges, y_edges, np.ma.masked_invalid(values), cmap=cmap, norm=norm, shading="flat")
        colorbar = ax.figure.colorbar(mesh, ax=ax, label=f"{colorbar_label} ({scale_note})")
        if ticks is not None:  # 0 and ±resolution never crowd (see _symlog_ticks)
            from matplotlib.ticker import FuncFormatter, NullLocator

            colorbar.set_ticks([tick for tick in ticks if low <= tick <= high])
            colorbar.ax.yaxis.set_major_formatter(FuncFormatter(_symlog_tick_text))
            colorbar.ax.yaxis.set_minor_locator(NullLocator())
        rows, columns = np.nonzero(~finite)
        ax.plot(px[columns], py[rows], linestyle="none", marker="x", color="0.3",
                label="diverged" if len(rows) else "_diverged")  # fmt: skip
        if best.index is not None:
            tied = np.array(best.tied[1:], dtype=int).reshape(-1, 2)
            ax.plot(px[best.index[1]], py[best.index[0]], label=_best_label(best), **_BEST)
            ax.plot(px[tied[:, 1]], py[tied[:, 0]], label="tied" if len(tied) else "_tied", **_TIED)
            where = f"{x_label} = {_value_label(x[best.index[1]])}, {y_label or 'y'} = {_value_label(y[best.index[0]])}"
        if best.index is not None or len(rows):  # below the axes, under the x label
            _legend_below(ax, fontsize="small", ncols=3)
        if y_label is not None:
            ax.set_ylabel(y_label)
    ax.set_xlabel(x_label)
    if best.index is None:
        summary = "every run diverged"
    else:
        of = f"best of {best.ties} tied" if best.ties > 1 else "best"
        summary = f"{of}: {colorbar_label} {best.value:.3g} at {where}"
    ax.set_title(summary if title is None else f"{title}\n{summary}", fontsize="medium")
    return fig
