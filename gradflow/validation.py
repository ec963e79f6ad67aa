"""Checks of hyperparameters at construction, with errors that name the argument and its range.

A schedule (a :class:`gradflow.Schedule` or a function of the step count) is accepted as it is. Only
concrete values are checked: inside ``jax.jit``, ``jax.vmap`` or ``jax.grad`` a hyperparameter
is a tracer and is accepted as it is, so optimizer factories can be traced (for example vmapped over a
batch of learning rates).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

from gradflow.core import Schedule, is_schedule_like

__all__ = ["check_learning_rate", "check_nonnegative", "check_number", "check_range"]


def _concrete_values(owner: str, name: str, value: Any) -> np.ndarray | None:
    """The value as a float array, ``None`` when it is traced or a schedule, ``TypeError`` when it is no number."""
    if isinstance(value, (jax.core.Tracer, Schedule)) or is_schedule_like(value):
        return None
    if isinstance(value, (bool, str, bytes, list, tuple, dict)) or value is None:
        raise TypeError(f"{owner}: {name} must be a number or an array of numbers, got {value!r}")
    try:
        array = np.asarray(value)
    except Exception:
        array = np.asarray(object())
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{owner}: {name} must be a real number, got {value!r}")
    return array.astype(np.float64)


def check_number(owner: str, name: str, value: Any) -> Any:
    """Accept a real, non-NaN number (or array of numbers, or tracer) and return it unchanged."""
    values = _concrete_values(owner, name, value)
    if values is not None and np.isnan(values).any():
        raise ValueError(f"{owner}: {name} must not be NaN, got {value!r}")
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
    if not (np.all(above) and np.all(below)) or np.isnan(values).any():
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return value


def check_nonnegative(owner: str, name: str, value: Any) -> Any:
    """Accept a finite ``value >= 0``."""
    return check_range(owner, name, value, 0.0, math.inf)


def check_learning_rate(owner: str, value: Any) -> Any:
    """Accept a finite, non-negative learning rate; ``None`` is an error (it is required)."""
    if value is None:
        raise ValueError(f"{owner}: learning_rate is required (a finite number >= 0), got None")
    return check_nonnegative(owner, "learning_rate", value)
