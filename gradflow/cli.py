"""The ``gradflow`` command: race optimizers on test landscapes, sweep hyperparameters, check gradients.

``gradflow race`` (the README's demo) races the eight optimizers of the seeds on the Rosenbrock
valley, each at the best of 25 learning rates trained in one compiled program, prints a table and
saves the comparison figure. ``gradflow landscapes`` lists the landscapes, ``gradflow sweep`` draws
the final loss over a grid of hyperparameters, ``gradflow gradcheck`` verifies every landscape's
hand-written gradient against central differences. Times per step exclude compilation: each compiled
program is called twice (:func:`~gradflow.experiments.timing.timed`), the second call's time is the run
time, the difference is reported as compile time.

Every argument is checked with the library's own checks before anything runs (hyperparameter values
by the optimizer's factory, sizes against int32 and this machine's memory, ``--out`` against its folder
and matplotlib's formats): a bad one ends in one line on stderr that names the flag and what it allows,
with exit code 2 (argparse's convention), and no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import math
import os
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

from gradflow.validation import check_integer, check_nonnegative

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradflow`` console script (also ``python -m gradflow``)."""
    from gradflow.experiments.landscapes import LANDSCAPES
    from gradflow.experiments.loop import MAX_STEPS
    from gradflow.experiments.race import RACERS, SEED_OPTIMIZERS

    parser = _Parser(prog="gradflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

    race = commands.add_parser("race", help="race optimizers on a landscape (default: the seeds' eight on rosenbrock)")
    race.add_argument("landscape", nargs="?", default="rosenbrock", help=f"one of {', '.join(LANDSCAPES)}")
    race.add_argument(
        "--optimizers", default=",".join(SEED_OPTIMIZERS), help=f"comma-separated, from {', '.join(RACERS)}"
    )
    race.add_argument("--steps", type=int, default=2000, help="steps per run (default 2000)")
    race.add_argument("--grid", type=int, default=25, help="learning rates tried per optimizer, 1e-4 to 1 (default 25)")
    race.add_argument("--start", default=None, help="start point, comma-separated (default: the landscape's)")
    race.add_argument("--tolerance", type=float, default=1e-6, help="arrival tolerance on the loss (default 1e-6)")
    race.add_argument("--out", default="race.png", help="figure file (default race.png); 'none' for no figure")

    commands.add_parser("landscapes", help="list the landscapes")

    sweep = commands.add_parser("sweep", help="final loss over a grid of hyperparameters, as a heatmap")
    sweep.add_argument("landscape", nargs="?", default="rosenbrock", help=f"one of {', '.join(LANDSCAPES)}")
    sweep.add_argument("--optimizer", default="adam", help=f"one of {', '.join(RACERS)}")
    sweep.add_argument("--param", action="append", default=None, metavar="NAME=SPEC",
                       help="a hyperparameter axis (at most two): SPEC is log:LO:HI:N, lin:LO:HI:N or "
                            "comma-separated values (default learning_rate=log:1e-4:1:64)")  # fmt: skip
    sweep.add_argument("--steps", type=int, default=500, help="steps per run (default 500)")
    sweep.add_argument("--out", default="sweep.png", help="figure file (default sweep.png); 'none' for no figure")

    gradcheck = commands.add_parser("gradcheck", help="check the landscapes' analytic gradients")
    gradcheck.add_argument("landscapes", nargs="?", default=",".join(LANDSCAPES), help="comma-separated names")

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    if args.command == "landscapes":
        return _list_landscapes()
    command = commands.choices[args.command]  # errors name the subcommand: "gradflow race: error: ..."
    landscapes = args.landscapes if args.command == "gradcheck" else args.landscape
    _check_choices(command, "landscape", landscapes.split(","), LANDSCAPES)
    if args.command == "gradcheck":
        return _gradcheck([LANDSCAPES[name] for name in landscapes.split(",")])
    landscape = LANDSCAPES[args.landscape]
    steps = _checked(command, check_integer, "--steps", args.steps, low=1, high=MAX_STEPS)
    if args.command == "race":
        names = [name for name in args.optimizers.split(",") if name]
        _check_choices(command, "optimizer", names, RACERS)
        grid = _checked(command, check_integer, "--grid", args.grid, low=1)
        tolerance = _checked(command, check_nonnegative, "--tolerance", args.tolerance)
        start = _parse_start(command, args.start, landscape.dim)
        _check_memory(command, grid * (steps + 1) * (landscape.dim + 2) * 4, f"--grid {grid} × --steps {steps}")
        _check_out(command, args.out)
        return _race(landscape, names, steps, grid, start, tolerance, args.out)
    _check_choices(command, "optimizer", [args.optimizer], RACERS)
    specs = _parse_specs(command, args.param or ["learning_rate=log:1e-4:1:64"])
    configurations = math.prod(len(values) if kind == "list" else values[2] for kind, values in specs.values())
    _check_memory(command, configurations * (steps + 1) * 4, f"--param ({configurations} points) × --steps {steps}")
    grid = _grid(command, args.optimizer, specs)
    _check_out(command, args.out)
    scales = {name: _SCALE_OF_SPEC[kind] for name, (kind, _) in specs.items()}
    if args.out.lower() != "none":  # the plotting step cannot fail after the run
        from gradflow.experiments.plots import check_sweep_axis

        for name, scale in scales.items():
            check = lambda _owner, flag, value, scale=scale: check_sweep_axis(value, scale, flag)
            _checked(command, check, f"--param {name}", grid.axes[name])
    return _sweep(landscape, args.optimizer, grid, steps, args.out, scales)


def _checked(parser, check, flag, value, **bounds):
    """``check(owner, flag, value, **bounds)`` from :mod:`gradflow.validation`; its error ends the command."""
    try:
        return check(parser.prog, flag, value, **bounds)
    except (TypeError, ValueError) as error:
        parser.error(str(error).removeprefix(f"{parser.prog}: "))


def _check_choices(parser, what, names, choices):
    unknown = [name for name in names if name not in choices]
    if unknown or not names:
        parser.error(f"unknown {what} {', '.join(map(repr, unknown)) or '(none given)'}; "
                     f"choose from {', '.join(choices)}")  # fmt: skip


def _check_memory(parser, needed, what):
    """Refuse a run whose records would not fit in half of this machine's memory, before it starts."""
    budget = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    if needed > budget:
        parser.error(f"{what} would record {needed / 2**30:.3g} GiB, more than half of this machine's memory "
                     f"({budget / 2**30:.3g} GiB); lower them")  # fmt: skip


def _check_out(parser, out):
    """``--out`` must be a new or existing file in an existing folder, of a format matplotlib writes."""
    if out.lower() == "none":
        return
    path = pathlib.Path(out)
    folder = path.parent
    if not folder.is_dir():
        parser.error(f"--out {out!r}: the folder {str(folder)!r} does not exist")
    if path.is_dir():
        parser.error(f"--out {out!r} is a folder; give a file name such as {str(path / 'figure.png')!r}")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        parser.error(f"--out {out!r}: no permission to write there")
    try:
        from matplotlib.figure import Figure
    except ImportError:
        parser.error("--out needs matplotlib (pip install 'gradflow[experiments]'); or pass --out none")
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        parser.error(f"--out {out!r}: unknown figure format {path.suffix or '(no extension)'!r}; "
                     f"choose from {', '.join('.' + f for f in sorted(formats))}")  # fmt: skip


def _parse_start(parser, text, dim):
    if text is None:
        return None
    try:
        point = [float(x) for x in text.split(",")]
    except ValueError:
        parser.error(f"--start needs {dim} comma-separated numbers, got {text!r}")
    if len(point) != dim or not np.all(np.isfinite(point)):
        parser.error(f"--start needs {dim} finite comma-separated numbers, got {text!r}")
    return point


_SPEC_HELP = "needs NAME=log:LO:HI:N (0 < LO, HI), NAME=lin:LO:HI:N or NAME=V1,V2,... with finite numbers and N >= 1"


def _parse_specs(parser, specs):
    """``{name: ("log" | "lin", (low, high, count)) or ("list", values)}``; nothing is allocated yet."""
    if len(specs) > 2:
        parser.error(f"--param: at most two axes, got {len(specs)}")
    parsed = {}
    for spec in specs:
        name, _, text = spec.partition("=")
        if not name.isidentifier():
            parser.error(f"--param {spec!r}: {_SPEC_HELP}; {name!r} is not a hyperparameter name")
        if name in parsed:
            parser.error(f"--param {spec!r}: {name} is given twice")
        try:
            kind, *bounds = text.split(":")
            if kind in ("log", "lin") and len(bounds) == 3:
                values = (float(bounds[0]), float(bounds[1]), int(bounds[2]))
            else:
                kind, values = "list", [float(v) for v in text.split(",")]
        except ValueError:
            parser.error(f"--param {spec!r}: {_SPEC_HELP}")
        numbers = values if kind == "list" else values[:2]
        bad_count = kind != "list" and values[2] < 1
        if bad_count or not np.all(np.isfinite(numbers)) or (kind == "log" and min(numbers) <= 0):
            parser.error(f"--param {spec!r}: {_SPEC_HELP}")
        parsed[name] = (kind, values)
    return parsed


def _grid(parser, optimizer, specs):
    """The optimizer grid of the ``--param`` axes; every value passes the optimizer's own checks first."""
    from gradflow.experiments.grid import optimizer_grid
    from gradflow.experiments.race import RACERS

    factory = RACERS[optimizer]
    parameters = inspect.signature(factory).parameters
    numeric = [name for name, parameter in parameters.items() if not _structural(name, parameter)]
    for name in specs:
        if name not in parameters:
            close = difflib.get_close_matches(name, numeric, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            parser.error(f"--param {name}: {optimizer} does not take {name}; it takes {', '.join(numeric)}{hint}")
        if name not in numeric:
            parser.error(f"--param {name}: {optimizer}'s {name} is a structural option (a flag, dtype or mask), "
                         f"not a number a sweep can vary; sweep one of {', '.join(numeric)}")  # fmt: skip
    for name, parameter in parameters.items():
        if parameter.default is parameter.empty and name not in specs:
            if len(specs) >= 2:
                parser.error(f"--param: {optimizer} needs {name}; a sweep has at most two --param axes, so replace "
                             f"one of {', '.join(specs)} with --param {name}=0.01 (one value)")  # fmt: skip
            parser.error(f"--param: {optimizer} needs {name}; add an axis such as --param {name}=0.01 (one value) "
                         f"or --param {name}=log:1e-4:1:16")  # fmt: skip
    axes = {}
    for name, (kind, values) in specs.items():
        axes[name] = np.array(values) if kind == "list" else (np.geomspace if kind == "log" else np.linspace)(*values)
    try:
        return optimizer_grid(factory, **axes)
    except (TypeError, ValueError) as error:
        point = getattr(error, "grid_point", None)
        if point is None:
            parser.error(f"--param: {error}")
        parser.error(f"--param {', '.join(f'{name}={value:g}' for name, value in point.items())}: {error.__cause__}")


def _structural(name, parameter):
    """Whether a factory's argument is structural (a flag, a dtype, a mask): fixed, never a sweep axis."""
    flag = parameter.annotation in (bool, "bool") or isinstance(parameter.default, bool)
    return flag or name.endswith(("_dtype", "mask"))


def _list_landscapes() -> int:
    from gradflow.experiments.landscapes import LANDSCAPES

    width = max(map(len, LANDSCAPES))
    for landscape in LANDSCAPES.values():
        minimum = "unbounded below" if landscape.minimum_value is None else f"min {landscape.minimum_value:g}"
        print(f"{landscape.name:<{width}}  {landscape.dim}-D  {minimum:<16} start {landscape.start}  "
              f"{landscape.description}")  # fmt: skip
    return 0


def _race(landscape, names, steps, grid, start, tolerance, out) -> int:
    from gradflow.experiments.race import race, rank

    results = rank(race(landscape, names, steps=steps, learning_rates=np.logspace(-4, 0, grid), start=start,
                        tolerance=tolerance, progress=True))  # fmt: skip
    print(f"{landscape.name}: {landscape.description}; start {start or landscape.start}, {steps} steps, "
          f"best of {grid} learning rates per optimizer, each optimizer one compiled program")  # fmt: skip
    floor = results[0].floor if results else 0.0
    if landscape.minimum_value is None:
        shown, metric = "final loss", f"steps to < {landscape.escape_level:g}"
        print(f"unbounded below: ranked by the step from which the loss stays below the escape level "
              f"{landscape.escape_level:g}, ties to the smaller learning rate")  # fmt: skip
    else:
        shown, metric = "loss − min", f"steps to {tolerance:g}"
        print(f"ranked by the step from which loss − minimum stays below {tolerance:g}; losses floored at "
              f"{floor:.1e} (float32 resolution)")  # fmt: skip
    print(f"{'optimizer':<10} {'best lr':>9} {shown:>11} {metric:>14} {'run ms':>8} {'ns/step':>8} {'compile s':>9}")
    for result in results:
        arrival = "—" if result.arrival is None else str(result.arrival)
        if result.diverged:
            rate, loss = "diverged", "diverged"
        else:
            rate, loss = f"{result.learning_rate:.2e}", f"{result.shown_loss:.3e}"
        print(f"{result.optimizer:<10} {rate:>9} {loss:>11} {arrival:>14} {1e3 * result.seconds:>8.2f} "
              f"{result.per_step_ns:>8.0f} {result.compile_seconds:>9.2f}")  # fmt: skip
    print("run ms and ns/step (per learning rate and step) exclude compilation, reported as compile s")
    if out.lower() != "none":
        _save_race_figure(landscape, results, out, tolerance, start)
        print(f"figure: {out}")
    return 0


def _save_race_figure(landscape, results, out, tolerance, start):
    """The trajectories and the loss curves of ``results`` (ranked), under one legend in the table's order.

    The legend sits outside both panels (it would hide a path or a curve inside either): each optimizer
    with its learning rate, the reference line of the loss panel, the start point and the minima.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from gradflow.experiments import plots

    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
    trajectories = {r.label: None if r.diverged else np.asarray(r.history.trajectory) for r in results}
    plots.plot_race(landscape, trajectories, ax=left, title=f"{landscape.name}: best learning rate each", start=start)
    losses = {r.label: r.best_losses for r in results}
    floor = results[0].floor if results else None
    if landscape.minimum_value is None:
        plots.plot_losses(losses, ax=right, scale="symlog", floor=floor, title="loss (unbounded below)")
        level = landscape.escape_level
        right.axhline(level, color="0.4", linestyle=":", label=f"escape level {level:g}")
    else:
        plots.plot_losses(losses, minimum_value=landscape.minimum_value, ax=right, scale="log", floor=floor,
                          title="loss − minimum")  # fmt: skip
        right.axhline(tolerance, color="0.4", linestyle=":", label=f"tolerance {tolerance:g}")
    drawn = {label: handle for handle, label in zip(*left.get_legend_handles_labels())}  # paths, with markers
    handles = {label: drawn[label] for label in trajectories}  # the table's order
    handles.update({label: handle for handle, label in zip(*right.get_legend_handles_labels()) if label not in handles})
    handles["start"] = Line2D([], [], linestyle="none", **plots._START)
    if landscape.minima:
        handles["global minimum"] = Line2D([], [], linestyle="none", **{**plots._GLOBAL, "markersize": 12})
    if landscape.local_minima:
        handles["local minimum"] = Line2D([], [], linestyle="none", **plots._LOCAL)
    for ax in (left, right):
        ax.get_legend().remove()
    figure.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize="small")
    figure.savefig(out, dpi=120)
    plt.close(figure)


_SCALE_OF_SPEC = {"log": "log", "lin": "linear", "list": "categorical"}  # a sweep axis's scale, from its spec


def _sweep(landscape, optimizer, grid, steps, out, scales) -> int:
    import jax.numpy as jnp

    from gradflow.experiments.grid import best_of
    from gradflow.experiments.loop import sweep
    from gradflow.experiments.timing import timed

    start = jnp.asarray(landscape.start, jnp.float32)
    measured = timed(lambda: sweep(landscape.fn, start, grid.txs, steps=steps))  # run twice: compile, then run
    history = measured.result
    final = grid.reshape(np.asarray(history.final_loss, np.float64))
    final = np.where(grid.reshape(np.asarray(history.diverged)), np.nan, final)  # one "diverged", text and figure
    best = best_of(final, np.float32)
    per_step = 1e9 * measured.seconds / (final.size * steps)
    per_step_text = f"{per_step:.0f}" if per_step >= 100 else f"{per_step:.3g}"
    print(f"{optimizer} on {landscape.name}: {final.size} configurations × {steps} steps in one compiled program: "
          f"run {measured.seconds:.3g} s ({per_step_text} ns per configuration-step, compilation excluded), "
          f"compile {measured.compile_seconds:.3g} s")  # fmt: skip
    names = list(grid.axes)
    width = {name: max(len(name), *(len(repr(float(v))) for v in grid.axes[name])) for name in names}
    print("  ".join(f"{name:>{width[name]}}" for name in names) + "      final loss")
    for index in np.ndindex(final.shape):
        loss = "diverged" if not np.isfinite(final[index]) else f"{final[index]:.6e}"
        mark = "  *" if index == best.index else ("  =" if index in best.tied else "")
        row = "  ".join(f"{float(grid.axes[name][i])!r:>{width[name]}}" for name, i in zip(names, index))
        print(f"{row}  {loss:>14}{mark}")
    if best.index is None:
        print("every configuration diverged (NaN or infinite loss)")
    else:
        values = ", ".join(f"{name}={float(grid.axes[name][i])!r}" for name, i in zip(names, best.index))
        tie = (f"best of {best.ties} tied (within {best.tolerance:.3g} of the minimum, first in grid order; "
               f"marked = above)") if best.ties > 1 else "best"  # fmt: skip
        print(f"{tie}: {values}  final loss {final[best.index]:.6e}")
    if out.lower() != "none":
        import matplotlib.pyplot as plt

        from gradflow.experiments import plots

        title = f"{optimizer} on {landscape.name}, {steps} steps"
        if len(names) == 1:
            figure = plots.plot_sweep_heatmap(final, grid.axes[names[0]], None, x_label=names[0], best=best,
                                              x_scale=scales[names[0]], title=title)  # fmt: skip
        else:  # the first --param across, the second up: values[i, j] is the run (first[j], second[i])
            transposed = dataclasses.replace(best, index=best.index and best.index[::-1],
                                             tied=tuple(index[::-1] for index in best.tied))  # fmt: skip
            figure = plots.plot_sweep_heatmap(final.T, grid.axes[names[0]], grid.axes[names[1]], x_label=names[0],
                                              y_label=names[1], x_scale=scales[names[0]], y_scale=scales[names[1]],
                                              best=transposed, title=title)  # fmt: skip
        figure.savefig(out, dpi=120, bbox_inches="tight")  # the legend below the axes is part of the figure
        plt.close(figure)
        print(f"figure: {out}")
    return 0


def _gradcheck(landscapes) -> int:
    import jax
    import jax.numpy as jnp

    from gradflow.gradcheck import check_grads

    failed = 0
    with jax.enable_x64(True):
        for landscape in landscapes:
            points = [landscape.start, *landscape.minima, *landscape.starts[1:]]
            reports = [check_grads(landscape.fn, jnp.asarray(p, jnp.float64), grad_fn=landscape.grad) for p in points]
            ok = all(report.ok for report in reports)
            failed += not ok
            print(f"{landscape.name:<14} {'ok' if ok else 'FAILED'} at {len(points)} points")
            for report in reports:
                if not report.ok:
                    print(report)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
