"""Reduce the step size when a monitored value stops improving (``reduce_on_plateau``).

The transform reads the metric from the ``value=`` extra argument of ``update`` (the loss, or a
validation metric), averages it over ``accumulation_size`` calls, and every time the average has not
improved on the best one for ``patience`` evaluations multiplies its scale by ``factor``. The updates
leave multiplied by the current scale, so it goes after the optimizer in a chain:
``chain(adam(1e-3), reduce_on_plateau(patience=5))``. The rule is optax's
``optax.contrib.reduce_on_plateau``, written with ``jnp.where`` so that it vmaps over a batch of
settings without a ``lax.cond``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import NONNEGATIVE, UNIT_CLOSED, Interval, Transform, hyperparameter, pytree_dataclass
from gradflow.validation import check_nonnegative, check_range

__all__ = ["ReduceOnPlateau", "ReduceOnPlateauState", "reduce_on_plateau"]


class ReduceOnPlateauState(NamedTuple):
    """The state of :func:`reduce_on_plateau` (the field names are optax's).

    Attributes:
      scale: the factor applied to the updates.
      best_value: the best averaged value seen so far (``inf`` at first).
      plateau_count: int32 number of evaluations since the best value last improved.
      cooldown_count: int32 number of evaluations left during which no reduction happens.
      count: int32 number of values accumulated towards the next evaluation.
      avg_value: the mean of the values accumulated so far.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.reduce_on_plateau().init(jnp.zeros(2))
      >>> float(state.scale), float(state.best_value), int(state.plateau_count)
      (1.0, inf, 0)
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count
    avg_value: jax.Array


def _state_dtype(params: Any) -> Any:
    """float32, or a wider real float dtype of the parameters (float64 under x64)."""
    dtype = jnp.dtype(jnp.float32)
    for leaf in jax.tree.leaves(params):
        leaf_dtype = jnp.result_type(leaf)
        if jnp.issubdtype(leaf_dtype, jnp.inexact):
            dtype = jnp.promote_types(dtype, jnp.finfo(leaf_dtype).dtype)
    return dtype


@pytree_dataclass
class ReduceOnPlateau(Transform):
    """Scale the updates by a factor that shrinks when the ``value`` extra argument plateaus.

    Every ``accumulation_size`` calls, with v̄ the mean of the values of those calls:

    - improved = v̄ < (1 − rtol)·best − atol; if improved, best ← v̄ and plateau ← 0, else plateau ← plateau + 1;
    - during a cooldown (cooldown_count > 0): cooldown_count ← cooldown_count − 1, plateau ← 0;
    - otherwise, when plateau = patience: scale ← max(scale·factor, min_scale), plateau ← 0 and
      cooldown_count ← cooldown (else scale ← max(scale, min_scale)).

    The updates are multiplied by the scale after this step's evaluation.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.reduce_on_plateau(factor=0.5, patience=1)
      >>> state = tx.init(jnp.zeros(2))
      >>> for loss in (1.0, 1.0):  # no improvement at the second value
      ...     updates, state = tx.update(jnp.ones(2), state, value=loss)
      >>> updates
      Array([0.5, 0.5], dtype=float32)
    """

    factor: Any = hyperparameter(Interval(0.0, 1.0, low_open=True, high_open=False), default=0.1, outside="nan_updates")
    patience: Any = 10
    rtol: Any = hyperparameter(UNIT_CLOSED, default=1e-4, outside="nan_updates")
    atol: Any = hyperparameter(NONNEGATIVE, default=0.0, outside="nan_updates")
    cooldown: Any = 0
    accumulation_size: Any = 1
    min_scale: Any = hyperparameter(UNIT_CLOSED, default=0.0, outside="nan_updates")

    def init(self, params: Any) -> Any:
        dtype = _state_dtype(params)
        zero = jnp.zeros([], jnp.int32)
        return ReduceOnPlateauState(
            scale=jnp.ones([], dtype),
            best_value=jnp.full([], jnp.inf, dtype),
            plateau_count=zero,
            cooldown_count=zero,
            count=zero,
            avg_value=jnp.zeros([], dtype),
        )

    def update(self, updates: Any, state: Any, params: Any = None, value: Any = None, **extra: Any) -> tuple[Any, Any]:
        if value is None:
            raise ValueError(
                "reduce_on_plateau: update needs the monitored metric as the value= extra argument, "
                "e.g. tx.update(grads, state, params, value=loss)"
            )
        value = tree.check_value("reduce_on_plateau", value)
        if not isinstance(state, ReduceOnPlateauState):
            raise ValueError(
                f"reduce_on_plateau: state must be the ReduceOnPlateauState that init returned, "
                f"got {type(state).__name__}"
            )
        dtype = state.avg_value.dtype
        count = tree.saturating_increment(state.count)
        average = (state.count * state.avg_value + jnp.asarray(value).astype(dtype)) / count
        average = average.astype(dtype)
        evaluate = count == self.accumulation_size

        improved = average < (1 - self.rtol) * state.best_value - self.atol
        best = jnp.where(improved, average, state.best_value)
        plateau = jnp.where(improved, 0, tree.saturating_increment(state.plateau_count))
        cooling = state.cooldown_count > 0
        reduce = jnp.logical_and(jnp.logical_not(cooling), plateau == self.patience)
        scale = jnp.where(
            cooling, state.scale, jnp.maximum(jnp.where(reduce, state.scale * self.factor, state.scale), self.min_scale)
        )
        plateau = jnp.where(jnp.logical_or(cooling, reduce), 0, plateau)
        cooldown = jnp.where(cooling, state.cooldown_count - 1, jnp.where(reduce, self.cooldown, 0))

        def pick(new, old):
            return jnp.where(evaluate, new, old).astype(old.dtype)

        new_state = ReduceOnPlateauState(
            scale=pick(scale, state.scale),
            best_value=pick(best, state.best_value),
            plateau_count=pick(plateau, state.plateau_count),
            cooldown_count=pick(cooldown, state.cooldown_count),
            count=jnp.where(evaluate, 0, count).astype(jnp.int32),
            avg_value=jnp.where(evaluate, 0, average).astype(dtype),
        )
        out = tree.map(lambda u: (new_state.scale * u).astype(jnp.result_type(u)), updates)
        return out, new_state


def reduce_on_plateau(
    factor: Any = 0.1,
    patience: Any = 10,
    rtol: Any = 1e-4,
    atol: Any = 0.0,
    cooldown: Any = 0,
    accumulation_size: Any = 1,
    min_scale: Any = 0.0,
) -> ReduceOnPlateau:
    """Multiply the updates by a scale that is reduced when the monitored value stops improving.

    The value is passed to every update as ``tx.update(updates, state, params, value=metric)``. Every
    ``accumulation_size`` updates the mean v̄ of the values since the last evaluation is compared with
    the best mean so far: it improves when v̄ < (1 − rtol)·best − atol. After ``patience`` evaluations
    without improvement the scale is multiplied by ``factor`` (never below ``min_scale``), after which
    ``cooldown`` evaluations pass without any reduction. optax's ``optax.contrib.reduce_on_plateau``,
    with the same arguments, defaults and state fields.

    Args:
      factor: in (0, 1), the multiplier applied to the scale at each reduction.
      patience: >= 0, the number of evaluations without improvement that triggers a reduction.
      rtol: in [0, 1], relative tolerance of an improvement.
      atol: >= 0, absolute tolerance of an improvement (``rtol`` and ``atol`` not both 0).
      cooldown: >= 0, the number of evaluations after a reduction during which none happens.
      accumulation_size: >= 1, the number of values averaged into one evaluation (1: every update;
        larger when the value is a noisy minibatch loss).
      min_scale: in [0, 1], the lowest scale.

    Returns:
      A :class:`ReduceOnPlateau` transform whose state is a :class:`ReduceOnPlateauState` (the scale,
      the best value, the plateau and cooldown counts, and the accumulated value and count).

    Raises:
      ValueError: if an argument is out of its range, or at ``update`` when ``value`` is missing.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> from gradflow.transforms.plateau import reduce_on_plateau
      >>> tx = reduce_on_plateau(factor=0.5, patience=2)
      >>> g = jnp.ones(1); state = tx.init(g)
      >>> for loss in [3.0, 2.0, 2.0, 2.0, 2.0, 2.0]:  # no improvement after the second value
      ...     updates, state = tx.update(g, state, value=loss)
      >>> float(state.scale), updates
      (0.25, Array([0.25], dtype=float32))
    """
    owner = "reduce_on_plateau"
    check_range(owner, "factor", factor, 0.0, 1.0, low_open=True)
    _check_count(owner, "patience", patience, 0)
    check_range(owner, "rtol", rtol, 0.0, 1.0, high_open=False)
    check_nonnegative(owner, "atol", atol)
    if _is_zero(rtol) and _is_zero(atol):
        raise ValueError(
            f"{owner}: rtol and atol must not both be 0 (an improvement needs a tolerance), got {rtol!r}, {atol!r}"
        )
    _check_count(owner, "cooldown", cooldown, 0)
    _check_count(owner, "accumulation_size", accumulation_size, 1)
    check_range(owner, "min_scale", min_scale, 0.0, 1.0, high_open=False)
    return ReduceOnPlateau(factor, patience, rtol, atol, cooldown, accumulation_size, min_scale)


def _check_count(owner: str, name: str, value: Any, low: int) -> None:
    """An integer number of evaluations >= ``low`` (where concrete)."""
    check_range(owner, name, value, float(low), math.inf)
    if not isinstance(value, jax.core.Tracer) and not callable(value):
        values = np.asarray(value, np.float64)
        if np.any(values != np.round(values)):
            raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")


def _is_zero(value: Any) -> bool:
    if isinstance(value, jax.core.Tracer) or callable(value):
        return False
    return bool(np.all(np.asarray(value) == 0))  # NumPy: inside a jit trace a jnp comparison is staged
