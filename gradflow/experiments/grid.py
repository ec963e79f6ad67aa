"""A batch of optimizers over a grid of hyperparameter values, ready for :func:`~gradflow.experiments.sweep`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["OptimizerGrid", "optimizer_grid"]


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
    ``functools.partial``.

    >>> import gradflow as gf
    >>> grid = optimizer_grid(gf.adam, learning_rate=jnp.logspace(-3, -1, 4), b1=jnp.array([0.8, 0.9, 0.99]))
    >>> grid.shape, gf.get_hyperparam(grid.txs, "learning_rate").shape, round(float(grid.values["b1"][1]), 6)
    ((4, 3), (12,), 0.9)
    """
    if not callable(factory):
        raise TypeError(f"factory: needs a function that builds an optimizer, got {type(factory).__name__}")
    if not axes:
        raise ValueError(
            "optimizer_grid: give at least one hyperparameter axis, e.g. learning_rate=jnp.logspace(-3, 0, 16)"
        )
    arrays = {}
    for name, values in axes.items():
        array = np.asarray(values)
        if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{name}: needs a non-empty 1-D array of numbers, got {values!r}")
        arrays[name] = array
    mesh = np.meshgrid(*arrays.values(), indexing="ij")
    values = {name: grid.reshape(-1) for name, grid in zip(arrays, mesh)}
    txs = jax.vmap(lambda kwargs: factory(**kwargs))({name: jnp.asarray(v) for name, v in values.items()})
    return OptimizerGrid(txs=txs, axes=arrays, values=values, shape=tuple(len(a) for a in arrays.values()))
