"""The seeds' comparison of optimizers on a landscape, each at its best learning rate.

For each optimizer, a log-spaced grid of learning rates trains in ONE compiled program
(:func:`~gradflow.experiments.sweep`), recording every iterate; the learning rate that settles within
``tolerance`` of the minimum first (else the lowest final loss) wins, and its trajectory is the one
drawn in the comparison figure.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow.experiments.grid import optimizer_grid
from gradflow.experiments.history import History, steps_to_tolerance
from gradflow.experiments.landscapes import Landscape
from gradflow.experiments.loop import sweep
from gradflow.validation import check_callable, check_choice, check_flag, check_nonnegative

__all__ = ["RACERS", "SEED_OPTIMIZERS", "RaceResult", "race", "race_one"]

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

    @property
    def diverged(self) -> bool:
        """True when every learning rate of the grid diverged."""
        return self.learning_rate is None


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
    began = time.perf_counter()
    grid = optimizer_grid(RACERS[name] if factory is None else factory, learning_rate=learning_rates)
    histories = sweep(landscape.fn, params, grid.txs, steps=steps, record=("params",))
    losses = np.concatenate([np.asarray(histories.loss), np.asarray(histories.final_loss)[:, None]], axis=1)
    seconds = time.perf_counter() - began
    best, arrivals = _best_run(losses, landscape.minimum_value, tolerance)
    return RaceResult(
        optimizer=name,
        learning_rate=None if best is None else float(grid.values["learning_rate"][best]),
        history=None if best is None else histories[best],
        final_loss=math.inf if best is None else float(losses[best, -1]),
        steps_to_tolerance=None if best is None else arrivals[best],
        seconds=seconds,
        losses=losses,
        learning_rates=grid.values["learning_rate"],
    )


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
    if progress:
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


def _best_run(losses: np.ndarray, minimum_value: float | None, tolerance: float) -> tuple[int | None, list]:
    """The row that settles first (ties: lowest final loss), else the lowest final loss; ``None`` if all diverged.

    A row with a NaN or infinite loss anywhere diverged and is never chosen.
    """
    diverged = ~np.isfinite(losses).all(axis=1)
    final = np.where(diverged, np.inf, losses[:, -1])
    if minimum_value is None:  # unbounded below (a saddle): the run that got lowest wins
        arrivals = [None] * len(losses)
    else:
        arrivals = list(steps_to_tolerance(losses, minimum_value, tolerance))
    if diverged.all():
        return None, arrivals
    order = sorted(np.flatnonzero(~diverged), key=lambda i: (arrivals[i] is None, arrivals[i] or 0, final[i]))
    return int(order[0]), arrivals
