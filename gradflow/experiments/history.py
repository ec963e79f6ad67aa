"""The record of a compiled training run: what :func:`~gradflow.experiments.run` returns.

A :class:`History` is a pytree, so :func:`~gradflow.experiments.sweep` returns ONE history whose
every array has a leading batch axis (one row per optimizer); ``history[i]`` picks one run out.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.core import pytree_dataclass
from gradflow.validation import check_nonnegative, check_number

__all__ = ["History", "steps_to_tolerance"]


@pytree_dataclass
class History:
    """Recorded quantities of a run, sampled every ``every`` steps.

    Record ``i`` describes the parameters *before* step ``steps[i]`` (``steps[0] == 0`` is the start
    point), so ``loss[i]`` is the loss that step's gradient came from (the mini-batch loss when the run
    has data). Fields that were not asked for in ``record`` are ``None``.

    Attributes:
      steps: int32 ``(n_records,)``: the step number of each record, ``0, every, 2·every, …``.
      loss: ``(n_records,)`` loss values (of the step's batch when the run has data).
      full_loss: ``(n_records,)`` losses on the whole dataset, or ``None``.
      grad_norm: ``(n_records,)`` global L2 norms of the gradient, or ``None``.
      params: the parameter trajectory (each leaf with a leading ``n_records`` axis), or ``None``.
      val_loss: ``(n_records,)`` validation losses (with early stopping), or ``None``.
      final_params, final_state: parameters and optimizer state after the last step.
      final_loss: the full loss at ``final_params`` (on the whole dataset when the run has data).
      best_params: with early stopping, the parameters of the lowest validation loss; else ``None``.
      best_val_loss: that lowest validation loss, or ``None``.
      stopped_at: the step at which early stopping froze the parameters (``steps`` if it never did).

    >>> import jax.numpy as jnp, gradflow as gf
    >>> from gradflow.experiments import run
    >>> history = run(lambda w: jnp.sum(w**2), jnp.ones(2), gf.sgd(0.25), steps=3, record=("loss", "grad_norm"))
    >>> history.loss.tolist(), history.final_loss.item()
    ([2.0, 0.5, 0.125], 0.03125)
    """

    steps: jax.Array
    loss: Any
    full_loss: Any
    grad_norm: Any
    params: Any
    val_loss: Any
    final_params: Any
    final_state: Any
    final_loss: jax.Array
    best_params: Any
    best_val_loss: Any
    stopped_at: jax.Array

    def __getitem__(self, index) -> History:
        """One run (or a sub-batch) of a batched history from :func:`~gradflow.experiments.sweep`.

        An integer index outside the batch is an ``IndexError`` (JAX arrays would clamp it silently).
        """
        loss = np.shape(self.loss)
        if len(loss) < 2:
            raise IndexError("History: only a batched history (from sweep) can be indexed; this one holds one run")
        if isinstance(index, (int, np.integer)) and not -loss[0] <= index < loss[0]:
            raise IndexError(f"History: index {index} is outside the batch of {loss[0]} runs")
        return jax.tree.map(lambda leaf: leaf[index], self)

    @property
    def diverged(self) -> Any:
        """Whether the run diverged: a recorded or final loss is NaN or infinite (one bool per run of a sweep).

        Out-of-range hyperparameters that are only known inside ``jit`` make a transform's updates NaN, so
        such a run is reported here too; pick the best run among those that did not diverge.

        >>> import jax.numpy as jnp, gradflow as gf
        >>> from gradflow.experiments import sweep
        >>> sweep(lambda w: jnp.sum(w**2), jnp.ones(2), jax.vmap(gf.sgd)(jnp.array([0.1, 1.5])), steps=200).diverged
        Array([False,  True], dtype=bool)
        """
        return ~(jnp.isfinite(self.final_loss) & jnp.isfinite(self.loss).all(axis=-1))

    @property
    def trajectory(self) -> Any:
        """The recorded parameters followed by the final parameters (needs ``record`` with "params")."""
        if self.params is None:
            raise ValueError('History.trajectory: the run did not record "params": pass record=("loss", "params")')
        return jax.tree.map(lambda path, last: np.concatenate([path, np.asarray(last)[None]]),
                            self.params, self.final_params)  # fmt: skip


def steps_to_tolerance(loss: Any, minimum_value: float, tolerance: float, steps: Any = None) -> Any:
    """The step from which ``loss − minimum_value`` stays below ``tolerance`` to the end of the run.

    A run that touches the tolerance and bounces back out has not arrived; a run that never settles
    (or diverges to NaN) gives ``None``. ``loss`` may be batched ``(..., n_records)``: the answer is
    then an object array of the leading shape. ``steps`` (1-D, default ``0, 1, 2, …``) gives the
    step number of each record, as :attr:`History.steps` does.

    >>> steps_to_tolerance([1.0, 1e-7, 1e-3, 1e-7, 1e-8], 0.0, 1e-6)
    3
    """
    check_number("steps_to_tolerance", "minimum_value", minimum_value)
    check_nonnegative("steps_to_tolerance", "tolerance", tolerance)
    loss = np.asarray(loss, np.float64)
    if loss.ndim == 0 or loss.shape[-1] == 0:
        raise ValueError(f"steps_to_tolerance: loss must hold at least one record per run, got shape {loss.shape}")
    steps = np.arange(loss.shape[-1]) if steps is None else np.asarray(steps).reshape(-1)[-loss.shape[-1] :]
    above = ~(np.where(np.isfinite(loss), loss - minimum_value, np.inf) < tolerance)
    flat = above.reshape(-1, above.shape[-1])
    result = np.empty(len(flat), dtype=object)
    for row, row_above in enumerate(flat):
        if row_above[-1]:
            result[row] = None
        else:
            first_settled = len(row_above) - int(row_above[::-1].argmax()) if row_above.any() else 0
            result[row] = int(steps[first_settled])
    return result.reshape(above.shape[:-1]) if above.ndim > 1 else result[0]
