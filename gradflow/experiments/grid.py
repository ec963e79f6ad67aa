"""A batch of optimizers over a grid of hyperparameter values, ready for :func:`~gradflow.experiments.sweep`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.validation import check_callable

__all__ = ["Best", "OptimizerGrid", "best_of", "optimizer_grid", "resolution"]


@dataclasses.dataclass(frozen=True)
class OptimizerGrid:
    """The optimizers of every combination of the axes' values, as one batched optimizer.

    Attributes:
      txs: one transform whose leaves carry a leading batch axis of ``prod(shape)`` configurations.
      axes: each hyperparameter's values, in the order given.
      values: each hyperparameter's value per configuration (flat, aligned with the batch axis).
      shape: the grid's shape, one entry per axis.

    >>> import gradflow as gf
    >>> grid = optimizer_grid(gf.sgd, learning_rate=[0.1, 0.2, 0.4], momentum=[0.0, 0.9])
    >>> grid.shape, grid.axes["momentum"].tolist()
    ((3, 2), [0.0, 0.9])
    """

    txs: Any
    axes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    shape: tuple[int, ...]

    def reshape(self, batched: Any) -> Any:
        """Turn the leading batch axis of ``batched`` (e.g. a sweep's final losses) into the grid's shape."""
        return jax.tree.map(lambda x: np.asarray(x).reshape(self.shape + np.shape(x)[1:]), batched)


def optimizer_grid(factory: Callable[..., Any], **axes: Any) -> OptimizerGrid:
    """Every combination of the given hyperparameter values, built by ``factory`` under ``jax.vmap``.

    Options that are not numbers (flags, dtypes) go into ``factory`` first, e.g. with
    ``functools.partial``. Under ``jax.vmap`` the factory's own checks see tracers and let every value
    pass, so each configuration is first built once from Python numbers: a value the factory refuses
    is an error that names the grid point and carries the factory's message (which names the argument),
    e.g. ``optimizer_grid(gf.adam, learning_rate=[0.1], b1=[0.9, 1.5])`` raises ``ValueError:
    optimizer_grid: adam refuses the grid point learning_rate=0.1, b1=1.5: ... b1 must be in [0.0, 1.0),
    got 1.5``.

    >>> import gradflow as gf
    >>> grid = optimizer_grid(gf.adam, learning_rate=jnp.logspace(-3, -1, 4), b1=jnp.array([0.8, 0.9, 0.99]))
    >>> grid.shape, gf.get_hyperparam(grid.txs, "learning_rate").shape, round(float(grid.values["b1"][1]), 6)
    ((4, 3), (12,), 0.9)
    """
    check_callable("optimizer_grid", "factory", factory)
    if not axes:
        raise ValueError(
            "optimizer_grid: give at least one hyperparameter axis, e.g. learning_rate=jnp.logspace(-3, 0, 16)"
        )
    arrays = {name: _axis(name, values) for name, values in axes.items()}
    mesh = np.meshgrid(*arrays.values(), indexing="ij")
    values = {name: grid.reshape(-1) for name, grid in zip(arrays, mesh)}
    _check_grid_points(factory, values)
    try:
        txs = jax.vmap(lambda kwargs: factory(**kwargs))({name: jnp.asarray(v) for name, v in values.items()})
    except jax.errors.ConcretizationTypeError as error:
        raise TypeError(
            f"optimizer_grid: factory branches in Python on one of {', '.join(values)}, so it cannot be "
            "built under jax.vmap; fix that argument with functools.partial instead of an axis"
        ) from error
    return OptimizerGrid(txs=txs, axes=arrays, values=values, shape=tuple(len(a) for a in arrays.values()))


def _axis(name: str, values: Any) -> np.ndarray:
    """One axis of the grid: a non-empty 1-D array of real numbers."""
    try:
        array = np.asarray(values)
    except Exception:
        array = np.asarray(None)
    if array.ndim != 1 or array.size == 0 or not (np.issubdtype(array.dtype, np.integer)
                                                 or np.issubdtype(array.dtype, np.floating)):  # fmt: skip
        raise ValueError(f"optimizer_grid: {name} must be a non-empty 1-D array of real numbers, got {values!r}")
    return array


def _check_grid_points(factory: Callable[..., Any], values: dict[str, np.ndarray]) -> None:
    """Build the optimizer of every grid point from Python numbers, so that the factory's checks run."""
    label = getattr(factory, "__name__", None) or getattr(getattr(factory, "func", None), "__name__", "factory")
    for i in range(len(next(iter(values.values())))):
        point = {name: column[i].item() for name, column in values.items()}
        try:
            factory(**point)
        except (TypeError, ValueError) as error:
            where = ", ".join(f"{name}={value!r}" for name, value in point.items())
            refusal = type(error)(f"optimizer_grid: {label} refuses the grid point {where}: {error}")
            refusal.grid_point = point  # type: ignore[union-attr]  # for callers that name it their own way (--param)
            raise refusal from error


def resolution(dtype: Any = np.float32) -> float:
    """The smallest loss difference a sweep in ``dtype`` resolves: its machine epsilon (1.19e-07 in float32).

    >>> resolution(np.float32) == float(np.finfo(np.float32).eps)
    True
    """
    return float(np.finfo(dtype).eps)


@dataclasses.dataclass(frozen=True)
class Best:
    """The best configuration of a sweep, as :func:`best_of` computes it for both the text and the figure.

    Attributes:
      index: the grid index of the configuration shown (``None`` when every run diverged).
      tied: the grid indices of every configuration tied with the minimum, in grid order (``index`` first).
      value: the final loss at ``index`` (NaN when every run diverged).
      tolerance: how far above the minimum a value still counts as tied.
    """

    index: tuple[int, ...] | None
    tied: tuple[tuple[int, ...], ...]
    value: float
    tolerance: float

    @property
    def ties(self) -> int:
        """How many configurations share the best value (1 when there is no tie, 0 when all diverged)."""
        return len(self.tied)


def best_of(values: Any, dtype: Any = np.float32) -> Best:
    """The lowest finite value of ``values`` (a sweep's final losses in its grid's shape), with its ties.

    Tie rule: a finite value ``v`` ties with the minimum ``m`` when ``v - m <= resolution(dtype) * max(1, |m|)``
    (the values cannot be told apart in ``dtype`` on a loss of scale ``max(1, |m|)``); the one shown is the
    first tied configuration in grid order (C order of ``values``: the first axis varies slowest).
    Non-finite values (diverged runs) never win.

    >>> best = best_of(np.array([[0.3, 0.0], [1e-9, np.nan]]))
    >>> best.index, best.ties, best.tied
    ((0, 1), 2, ((0, 1), (1, 0)))
    >>> best_of([np.inf, np.nan]).index is None
    True
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return Best(index=None, tied=(), value=float("nan"), tolerance=float("nan"))
    minimum = float(values[finite].min())
    tolerance = resolution(dtype) * max(1.0, abs(minimum))
    tied = tuple(tuple(int(i) for i in index) for index in np.argwhere(finite & (values - minimum <= tolerance)))
    return Best(index=tied[0], tied=tied, value=float(values[tied[0]]), tolerance=tolerance)
