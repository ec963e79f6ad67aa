"""Checks of hyperparameters at construction, with errors that name the argument and its range.

A schedule (a :class:`gradflow.Schedule` or a function of the step count) is checked through its values:
a gradflow schedule at every count below 1024 and at every power of two (and the count before it) up to
the int32 maximum, a plain function of the count at count 0 (the value the first update uses), so that
``adam(linear_schedule(0.1, -0.1, 100))`` is an error naming ``learning_rate`` and the count where it
turns negative. Only concrete values are checked: inside ``jax.jit``, ``jax.vmap`` or ``jax.grad`` a
hyperparameter (or a schedule's leaf) is a tracer and is accepted as it is, so optimizer factories can be
traced (for example vmapped over a batch of learning rates).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.core import FunctionSchedule, Schedule, is_schedule_like

__all__ = ["check_learning_rate", "check_nonnegative", "check_number", "check_range"]

# The counts at which a gradflow schedule given as a hyperparameter is checked (see the module docstring).
_SCHEDULE_COUNTS = np.unique(
    np.concatenate([np.arange(1024), 2 ** np.arange(10, 31), 2 ** np.arange(10, 32) - 1])
).astype(np.int32)


def _is_schedule(value: Any) -> bool:
    return isinstance(value, Schedule) or is_schedule_like(value)


def _schedule_values(owner: str, name: str, schedule: Any) -> np.ndarray | None:
    """The schedule's values, one row per count of ``_SCHEDULE_COUNTS`` (or one row: count 0); ``None`` if traced."""
    count = jnp.zeros([], jnp.int32)
    if isinstance(schedule, Schedule) and not isinstance(schedule, FunctionSchedule):
        try:
            out = jax.vmap(schedule)(jnp.asarray(_SCHEDULE_COUNTS))
        except Exception:  # a schedule that branches in Python on the count: check its first value only
            out = jnp.expand_dims(jnp.asarray(schedule(count)), 0)
    else:
        function = schedule.function if isinstance(schedule, FunctionSchedule) else schedule
        out = function(count)
        if isinstance(out, jax.core.Tracer):
            return None
        _concrete_values(owner, f"{name} (the value of its schedule at count 0)", out)
        out = jnp.expand_dims(jnp.asarray(out), 0)
    if isinstance(out, jax.core.Tracer):
        return None
    values = _concrete_values(owner, name, np.asarray(out))
    return None if values is None else values.reshape(len(values), -1)


def _got(value: Any, bad: np.ndarray, values: np.ndarray) -> str:
    """``got <value>``, or for a schedule the first count where it takes a bad value."""
    if not _is_schedule(value):
        return f"got {value!r}"
    function = value.function if isinstance(value, FunctionSchedule) else value
    label = getattr(function, "__name__", type(function).__name__)
    row = int(np.argmax(bad.any(axis=1)))
    return f"but its schedule {label} is {float(values[row][bad[row]][0]):.6g} at count {int(_SCHEDULE_COUNTS[row])}"


def _concrete_values(owner: str, name: str, value: Any) -> np.ndarray | None:
    """The value as a float array, ``None`` when it is traced, ``TypeError`` when it is no number.

    A schedule's values at the counts where it is checked, one row per count (``None`` when traced).
    """
    if isinstance(value, jax.core.Tracer):
        return None
    if _is_schedule(value):
        return _schedule_values(owner, name, value)
    if isinstance(value, (bool, str, bytes, list, tuple, dict)) or value is None:
        raise TypeError(f"{owner}: {name} must be a number or an array of numbers, got {value!r}")
    try:
        array = np.asarray(value)
    except Exception:
        array = np.asarray(object())
    # jnp.issubdtype knows bfloat16 and the other ml_dtypes floats, which np.issubdtype does not.
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    return array.astype(np.float64)


def check_number(owner: str, name: str, value: Any) -> Any:
    """Accept a real, non-NaN number (or array of numbers, or tracer) and return it unchanged."""
    values = _concrete_values(owner, name, value)
    if values is not None and np.isnan(values).any():
        raise ValueError(f"{owner}: {name} must not be NaN, {_got(value, np.isnan(values), values)}")
    return value


def check_range(
    owner: str,
    name: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> Any:
    """Accept ``value`` in the interval from ``low`` to ``high`` (closed or open at each end)."""
    values = _concrete_values(owner, name, value)
    if values is None:
        return value
    above = values > low if low_open else values >= low
    below = values < high if high_open else values <= high
    inside = above & below  # False at NaN
    if not np.all(inside):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be in {interval}, {_got(value, ~inside, values)}")
    return value


def check_nonnegative(owner: str, name: str, value: Any) -> Any:
    """Accept a finite ``value >= 0``."""
    return check_range(owner, name, value, 0.0, math.inf)


def check_learning_rate(owner: str, value: Any) -> Any:
    """Accept a finite, non-negative learning rate; ``None`` is an error (it is required)."""
    if value is None:
        raise ValueError(f"{owner}: learning_rate is required (a finite number >= 0), got None")
    return check_nonnegative(owner, "learning_rate", value)
