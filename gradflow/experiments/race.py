"""The seeds' comparison of optimizers on a landscape, each at its best learning rate.

For each optimizer, a log-spaced grid of learning rates trains in ONE compiled program
(:func:`~gradflow.experiments.sweep`), recording every iterate; the learning rate that settles within
``tolerance`` of the minimum first (else the lowest final loss) wins, and its trajectory is the one
drawn in the comparison figure. On a landscape unbounded below (a saddle) the metric is the step from
which the loss stays below the landscape's ``escape_level`` instead; the lowest final loss would only
reward the most explosive run. :func:`rank` orders the results once, for the table and the figure alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow.experiments.grid import optimizer_grid
from gradflow.experiments.history import History, steps_to_tolerance
from gradflow.experiments.landscapes import Landscape
from gradflow.experiments.loop import stderr_is_terminal, sweep
from gradflow.experiments.timing import timed
from gradflow.validation import check_callable, check_choice, check_flag, check_nonnegative

__all__ = ["RACERS", "SEED_OPTIMIZERS", "RaceResult", "loss_floor", "race", "race_one", "rank"]

# Name → factory whose numeric hyperparameters are keyword arguments (vmappable by optimizer_grid).
RACERS: dict[str, Callable[..., Any]] = {
    "sgd": gf.sgd,
    "momentum": functools.partial(gf.sgd, momentum=0.9),
    "nag": functools.partial(gf.nag, momentum=0.9),
    "adagrad": gf.adagrad,
    "rmsprop": gf.rmsprop,
    "adadelta": gf.adadelta,
    "adam": gf.adam,
    "amsgrad": gf.amsgrad,
    "nadam": gf.nadam,
    "adamax": gf.adamax,
    "lion": functools.partial(gf.lion, weight_decay=0.0),
    "sign_sgd": gf.sign_sgd,
}
SEED_OPTIMIZERS = ("sgd", "momentum", "nag", "adagrad", "rmsprop", "adadelta", "adam", "amsgrad")


@dataclasses.dataclass(frozen=True)
class RaceResult:
    """One optimizer's result: its best learning rate and that run's history (with the trajectory).

    A run whose loss turns NaN or infinite (:attr:`History.diverged`) is never the best one; when every
    learning rate diverged, ``learning_rate`` and ``history`` are ``None``, ``final_loss`` is ``inf`` and
    :attr:`diverged` is true.

    ``steps_to_tolerance`` is the step from which the best run's ``loss − minimum_value`` stays below the
    tolerance; on a landscape unbounded below it is ``None`` and ``steps_to_escape`` is the step from which
    the loss stays below the landscape's ``escape_level``. ``seconds`` is the run's time without
    compilation (``compile_seconds``, the first call's extra time, both measured by
    :func:`~gradflow.experiments.timing.timed`), ``floor`` the dtype's resolution of the loss
    (:func:`loss_floor`), below which :attr:`shown_loss` does not go.

    >>> from gradflow.experiments import LANDSCAPES
    >>> result = race_one(LANDSCAPES["booth"], "adam", steps=200, learning_rates=[0.1, 0.3])
    >>> result.optimizer, result.learning_rate, result.losses.shape
    ('adam', 0.3, (2, 201))
    """

    optimizer: str
    learning_rate: float | None
    history: History | None
    final_loss: float
    steps_to_tolerance: int | None
    seconds: float
    losses: np.ndarray  # (grid, steps + 1): every learning rate's losses, final loss last
    learning_rates: np.ndarray
    steps_to_escape: int | None = None
    compile_seconds: float = 0.0
    floor: float = 0.0
    minimum_value: float | None = None

    @property
    def diverged(self) -> bool:
        """True when every learning rate of the grid diverged."""
        return self.learning_rate is None

    @property
    def arrival(self) -> int | None:
        """The race's metric: steps to tolerance, or steps to escape on a landscape unbounded below."""
        return self.steps_to_tolerance if self.minimum_value is not None else self.steps_to_escape

    @property
    def shown_loss(self) -> float:
        """The final loss as the table prints it and the loss panel draws it.

        ``final_loss − minimum_value`` floored at :attr:`floor` (round-off is not signal); on a landscape
        unbounded below, the final loss itself (drawn on a symlog axis, linear within ±``floor``).
        """
        if self.diverged:
            return math.inf
        if self.minimum_value is None:
            return self.final_loss
        return max(self.final_loss - self.minimum_value, self.floor)

    @property
    def best_losses(self) -> np.ndarray | None:
        """The best learning rate's losses at steps ``0 … steps`` (the final loss last), or ``None``."""
        if self.diverged:
            return None
        return self.losses[int(np.flatnonzero(np.asarray(self.learning_rates) == self.learning_rate)[0])]

    @property
    def label(self) -> str:
        """The optimizer and its best learning rate, or "diverged": the race figure's legend entry."""
        return f"{self.optimizer}: diverged" if self.diverged else f"{self.optimizer}: lr {self.learning_rate:.2e}"

    @property
    def per_step_ns(self) -> float:
        """Run time per step of one learning rate, in nanoseconds, compilation excluded."""
        return 1e9 * self.seconds / self.losses.size


def race_one(
    landscape: Landscape,
    name: str,
    *,
    steps: int,
    learning_rates: Any,
    start: Any = None,
    tolerance: float = 1e-6,
    factory: Callable[..., Any] | None = None,
    dtype: Any = jnp.float32,
) -> RaceResult:
    """Race optimizer ``name`` over ``learning_rates`` on ``landscape``; keep the best learning rate.

    ``name`` is a key of :data:`RACERS`, or any label when ``factory`` (a function of
    ``learning_rate`` returning an optimizer) races an optimizer of your own. ``dtype`` is the
    parameters' (float64 needs ``jax.enable_x64``).

    >>> from gradflow.experiments import LANDSCAPES
    >>> result = race_one(LANDSCAPES["booth"], "sgd", steps=100, learning_rates=[0.01, 0.05])
    >>> result.learning_rate, result.final_loss < 1e-6
    (0.05, True)
    """
    params = _check_race(landscape, name, start, tolerance, factory, dtype)
    grid = optimizer_grid(RACERS[name] if factory is None else factory, learning_rate=learning_rates)
    measured = timed(lambda: sweep(landscape.fn, params, grid.txs, steps=steps, record=("params",)))
    histories = measured.result
    losses = np.concatenate([np.asarray(histories.loss), np.asarray(histories.final_loss)[:, None]], axis=1)
    rates = np.asarray(grid.values["learning_rate"], np.float64)
    best, arrivals = _best_run(losses, rates, landscape, tolerance)
    arrival = None if best is None else arrivals[best]
    return RaceResult(
        optimizer=name,
        learning_rate=None if best is None else float(rates[best]),
        history=None if best is None else histories[best],
        final_loss=math.inf if best is None else float(losses[best, -1]),
        steps_to_tolerance=arrival if landscape.minimum_value is not None else None,
        seconds=measured.seconds,
        losses=losses,
        learning_rates=grid.values["learning_rate"],
        steps_to_escape=arrival if landscape.minimum_value is None else None,
        compile_seconds=measured.compile_seconds,
        floor=loss_floor(dtype, landscape),
        minimum_value=landscape.minimum_value,
    )


def loss_floor(dtype: Any, landscape: Landscape) -> float:
    """The smallest loss difference that ``dtype`` resolves on ``landscape``: ``eps · max(1, |reference|)``.

    The reference is the minimum value (or the escape level of a landscape unbounded below). A loss gap
    below it is round-off of the loss's own arithmetic, so tables and figures floor what they show there.

    >>> from gradflow.experiments import LANDSCAPES
    >>> f"{loss_floor(jnp.float32, LANDSCAPES['booth']):.3g}"
    '1.19e-07'
    """
    reference = landscape.minimum_value if landscape.minimum_value is not None else _escape_level(landscape)
    return float(jnp.finfo(dtype).eps) * max(1.0, abs(reference))


def _escape_level(landscape: Landscape) -> float:
    """The escape level of a landscape unbounded below (a :class:`Landscape` declares one exactly then)."""
    if landscape.escape_level is None:
        raise ValueError(f"landscape {landscape.name!r} has a minimum, not an escape level")
    return landscape.escape_level


def rank(results: Iterable[RaceResult]) -> list[RaceResult]:
    """Results best first, the one order of the race table and of the figure's legends.

    Fewest steps to tolerance (or to escape) first, runs that never arrive after them by :attr:`shown_loss`,
    optimizers whose every learning rate diverged last; ties keep the given order. On a landscape unbounded
    below, runs that escaped at the same step keep the given order (a lower final loss there only means a
    more explosive run).

    >>> from gradflow.experiments import LANDSCAPES
    >>> results = race(LANDSCAPES["booth"], ["sgd", "adam"], steps=100, learning_rates=[0.01, 0.05])
    >>> [r.optimizer for r in rank(results)]
    ['sgd', 'adam']
    """

    def key(result):
        arrived = result.arrival is not None
        shown = 0.0 if arrived and result.minimum_value is None else result.shown_loss
        return (result.diverged, not arrived, result.arrival or 0, shown)

    return sorted(results, key=key)


def race(
    landscape: Landscape,
    names: Iterable[str] = SEED_OPTIMIZERS,
    *,
    steps: int = 2000,
    learning_rates: Any = None,
    start: Any = None,
    tolerance: float = 1e-6,
    progress: bool = False,
) -> list[RaceResult]:
    """:func:`race_one` for each optimizer (default: the eight of the seeds, over 25 rates in [1e-4, 1]).

    >>> from gradflow.experiments import LANDSCAPES
    >>> results = race(LANDSCAPES["booth"], ["sgd", "adam"], steps=100, learning_rates=[0.01, 0.05])
    >>> [(r.optimizer, r.learning_rate) for r in results]
    [('sgd', 0.05), ('adam', 0.05)]
    """
    learning_rates = np.logspace(-4, 0, 25) if learning_rates is None else learning_rates
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        check_choice("race", "names", name, RACERS)
    check_flag("race", "progress", progress)
    bar = None
    if progress and stderr_is_terminal():  # no progress frames in a redirected log
        from tqdm.auto import tqdm

        bar = tqdm(names, desc=f"race on {landscape.name}", unit="optimizer", leave=False)
    results = []
    for name in names if bar is None else bar:
        if bar is not None:
            bar.set_postfix_str(name)
        results.append(race_one(landscape, name, steps=steps, learning_rates=learning_rates, start=start,
                                tolerance=tolerance))  # fmt: skip
    return results


def _check_race(landscape, name, start, tolerance, factory, dtype) -> Any:
    """Check :func:`race_one`'s arguments; return the start point as an array of ``dtype``."""
    if not isinstance(landscape, Landscape):
        raise TypeError(f"race_one: landscape must be a Landscape (see LANDSCAPES), got {type(landscape).__name__}")
    if factory is None:
        check_choice("race_one", "name", name, RACERS)
    else:
        check_callable("race_one", "factory", factory)
    check_nonnegative("race_one", "tolerance", tolerance)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"race_one: dtype must be a floating-point dtype, got {dtype!r}")
    point = np.asarray(landscape.start if start is None else start)
    if point.shape != (landscape.dim,) or not np.issubdtype(point.dtype, np.number) or not np.isfinite(point).all():
        raise ValueError(f"race_one: start must be {landscape.dim} finite numbers (a point of {landscape.name}), "
                         f"got {start!r}")  # fmt: skip
    return jnp.asarray(point, dtype)


def _best_run(losses: np.ndarray, rates: np.ndarray, landscape: Landscape, tolerance: float) -> tuple[int | None, list]:
    """The row that settles first, else the lowest final loss; ``None`` if all diverged.

    A row with a NaN or infinite loss anywhere diverged and is never chosen. With a minimum, rows that
    settle at the same step are split by the lower final loss; unbounded below, the metric is the step
    from which the loss stays below ``escape_level`` and ties go to the smaller learning rate (a lower
    final loss would only reward the more explosive run).
    """
    diverged = ~np.isfinite(losses).all(axis=1)
    final = np.where(diverged, np.inf, losses[:, -1])
    if landscape.minimum_value is None:
        arrivals = list(steps_to_tolerance(losses, _escape_level(landscape), 0.0))
        tie = rates
    else:
        arrivals = list(steps_to_tolerance(losses, landscape.minimum_value, tolerance))
        tie = final
    if diverged.all():
        return None, arrivals

    def key(i):
        return (arrivals[i] is None, arrivals[i] or 0, final[i] if arrivals[i] is None else tie[i])

    order = sorted(np.flatnonzero(~diverged), key=key)
    return int(order[0]), arrivals
