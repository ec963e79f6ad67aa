"""Scalings optax names on their own: by a schedule of the step count, and by the sign.

``scale_by_schedule(step_size_fn)`` multiplies the updates by ``step_size_fn(count)`` and keeps optax's
``ScaleByScheduleState(count)``; ``scale_by_sign()`` is :func:`gradflow.sign` under optax's name.

A gradflow :class:`~gradflow.core.Schedule` given as ``step_size_fn`` stays pytree data (its numbers
are leaves: a batch of schedules can be vmapped over, and a jitted step does not recompile for new
values); a plain Python function becomes a static :class:`~gradflow.core.FunctionSchedule`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Schedule, Transform, is_schedule_like, pytree_dataclass
from gradflow.transforms.elementwise import Sign
from gradflow.validation import check_number

__all__ = [
    "ScaleBySchedule",
    "ScaleByScheduleState",
    "scale_by_schedule",
    "scale_by_sign",
]


class ScaleByScheduleState(NamedTuple):
    """The state of :func:`scale_by_schedule`: the number of updates done (optax's layout).

    Attributes:
      count: int32, saturating; the schedule is evaluated at this count before it is incremented.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.scale_by_schedule(lambda count: 0.5 ** count).init(jnp.zeros(2))
      ScaleByScheduleState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count


def _schedules_evaluated_here(method: Any) -> Any:
    """Mark ``method`` as one that evaluates its schedule itself.

    :func:`gradflow.pytree_dataclass` then leaves it alone instead of wrapping the state in a
    :class:`~gradflow.core.ScheduleState` (the state here is optax's ``ScaleByScheduleState``).
    """
    method._evaluates_schedules = True
    return method


@pytree_dataclass
class ScaleBySchedule(Transform):
    """``u ← step_size_fn(count) · u``, then ``count ← count + 1`` (built by :func:`scale_by_schedule`).

    Example:
      >>> import gradflow as gf
      >>> tx = gf.scale_by_schedule(gf.exponential_decay(1.0, 1, 0.5))
      >>> isinstance(tx, gf.ScaleBySchedule), type(tx.step_size_fn).__name__
      (True, 'ExponentialDecay')
    """

    step_size_fn: Any

    @_schedules_evaluated_here
    def init(self, params: Any) -> Any:
        return ScaleByScheduleState(jnp.zeros([], jnp.int32))

    @_schedules_evaluated_here
    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        updates = tree.check_updates(updates)  # errors that name the key path
        step_size = self.step_size_fn(tree.check_state("scale_by_schedule", state, ScaleByScheduleState).count)
        # as optax: the step size is rounded to each update's dtype before the product
        out = tree.map(lambda u: jnp.asarray(step_size, dtype=jnp.result_type(u)) * u, updates)
        return out, ScaleByScheduleState(tree.saturating_increment(state.count))


def scale_by_schedule(step_size_fn: Any) -> ScaleBySchedule:
    """Scale the updates by a schedule of the step count: ``u ← step_size_fn(count) · u``.

    ``count`` is the number of updates done before this one (0 at the first), kept in
    :class:`ScaleByScheduleState` as in optax. The step size is cast to each update's dtype before
    the product. Unlike :func:`gradflow.scale_by_learning_rate` the sign is not flipped: pass a
    negative schedule for descent.

    Args:
      step_size_fn: a gradflow schedule (pytree data: it can be vmapped over) or a function of the
        int32 count (static data), returning the factor.

    Returns:
      A :class:`ScaleBySchedule` whose state is a :class:`ScaleByScheduleState`.

    Raises:
      TypeError: if ``step_size_fn`` is not a schedule or a function.
      ValueError: if the schedule is NaN at a count where it is checked (see :mod:`gradflow.validation`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_schedule(lambda count: -0.1 / (1 + count))
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([1.0, -2.0]), state)
      >>> updates, int(state.count)  # the second step used count 1: −0.1 / 2
      (Array([-0.05,  0.1 ], dtype=float32), 2)
    """
    if not (isinstance(step_size_fn, Schedule) or is_schedule_like(step_size_fn)):
        raise TypeError(
            f"scale_by_schedule: step_size_fn must be a schedule (a function of the step count), got {step_size_fn!r}"
        )
    return ScaleBySchedule(check_number("scale_by_schedule", "step_size_fn", step_size_fn))


def scale_by_sign() -> Sign:
    """Replace each update by its sign: ``u ← sign(u)`` (0 where ``u = 0``), optax's name for :func:`gradflow.sign`.

    Returns:
      A stateless :class:`gradflow.transforms.elementwise.Sign` transform (state :class:`gradflow.EmptyState`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_sign()
      >>> tx.update(jnp.array([-3.0, 0.0, 0.2]), tx.init(jnp.zeros(3)))[0]
      Array([-1.,  0.,  1.], dtype=float32)
    """
    return Sign()
