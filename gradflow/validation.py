"""The validation vocabulary: checks of arguments with errors that name the argument and what it allows.

Every entry point checks what it is given with these functions before anything is traced: numbers and
ranges (:func:`check_number`, :func:`check_range`, :func:`check_nonnegative`,
:func:`check_learning_rate`), integers (:func:`check_integer`), flags (:func:`check_flag`), choices
(:func:`check_choice`), PRNG keys (:func:`check_prng_key`) and functions (:func:`check_callable`). Each
takes the ``owner`` (the function or class checking, named first in the message) and the argument's
``name``; each error says what is allowed and what was given. Python numbers and concrete arrays are
checked alike.

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

__all__ = [
    "check_callable",
    "check_choice",
    "check_flag",
    "check_integer",
    "check_learning_rate",
    "check_nonnegative",
    "check_number",
    "check_prng_key",
    "check_range",
]

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


def check_flag(owner: str, name: str, value: Any) -> bool:
    """Accept ``True`` or ``False`` (a NumPy bool or a concrete 0-d boolean array too) and return it as a bool.

    A string, a number or ``None`` is an error: ``nesterov="no"`` must not run Nesterov.

    >>> check_flag("adam", "nesterov", "no")
    Traceback (most recent call last):
    ...
    TypeError: adam: nesterov must be True or False, got 'no'
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if not isinstance(value, jax.core.Tracer) and hasattr(value, "dtype") and np.shape(value) == ():
        if jnp.issubdtype(value.dtype, jnp.bool_):
            return bool(value)
    raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")


def check_integer(owner: str, name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Accept an integer in ``[low, high]`` (a NumPy integer or a concrete 0-d integer array too); return an int.

    A bool, a float (even ``2.0``), a string or a traced value is an error naming the argument.

    >>> check_integer("Batches", "batch_size", 2.5, low=1)
    Traceback (most recent call last):
    ...
    TypeError: Batches: batch_size must be an integer >= 1, got 2.5
    >>> check_integer("EarlyStopping", "patience", np.int64(0), low=1)
    Traceback (most recent call last):
    ...
    ValueError: EarlyStopping: patience must be an integer >= 1, got 0
    """
    bounds = " and ".join(
        text for text in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if text
    )
    wanted = f"{name} must be an integer" + (f" {bounds}" if bounds else "")
    integral = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if not integral and not isinstance(value, jax.core.Tracer) and hasattr(value, "dtype") and np.shape(value) == ():
        integral = jnp.issubdtype(value.dtype, jnp.integer)
    if not integral:
        traced = " (a traced value: pass a Python int)" if isinstance(value, jax.core.Tracer) else ""
        raise TypeError(f"{owner}: {wanted}, got {value!r}{traced}")
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ValueError(f"{owner}: {wanted}, got {number}")
    return number


def check_choice(owner: str, name: str, value: Any, choices: Any) -> Any:
    """Accept one of ``choices`` (compared with ``==``; strings exactly) and return it.

    >>> check_choice("lion", "mode", "fast", ("optax", "paper"))
    Traceback (most recent call last):
    ...
    ValueError: lion: mode must be one of 'optax', 'paper', got 'fast'
    """
    choices = tuple(choices)
    for choice in choices:
        if type(value) is type(choice) and value == choice:
            return value
    raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_prng_key(owner: str, name: str, value: Any) -> Any:
    """Accept a PRNG key: a typed key (``jax.random.key(0)``) or raw key data (``jax.random.PRNGKey(0)``).

    An integer seed, a float array or an array of another shape is an error that says how to make a key.

    >>> check_prng_key("add_noise", "key", 0)
    Traceback (most recent call last):
    ...
    TypeError: add_noise: key must be a PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)), got 0
    """
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return value
    if dtype is not None and np.dtype(dtype) == np.uint32 and np.shape(value)[-1:] == (2,):
        return value
    how = "jax.random.key(seed) or jax.random.PRNGKey(seed)"
    raise TypeError(f"{owner}: {name} must be a PRNG key ({how}), got {value!r}")


def check_callable(owner: str, name: str, value: Any) -> Any:
    """Accept a callable and return it.

    >>> check_callable("run", "loss_fn", 3.0)
    Traceback (most recent call last):
    ...
    TypeError: run: loss_fn must be a function, got 3.0
    """
    if not callable(value):
        raise TypeError(f"{owner}: {name} must be a function, got {value!r}")
    return value
