"""The validation vocabulary: checks of arguments with errors that name the argument and what it allows.

Every entry point checks what it is given with these functions before anything is traced: numbers and
ranges (:func:`check_number`, :func:`check_range`, :func:`check_nonnegative`,
:func:`check_learning_rate`, :func:`check_allowed`, :func:`check_all`), integers (:func:`check_integer`,
:func:`check_axis`), flags (:func:`check_flag`), choices (:func:`check_choice`), sequences
(:func:`check_sequence`), PRNG keys (:func:`check_prng_key`) and functions (:func:`check_callable`, :func:`check_arity`,
:func:`check_scalar_output` for a loss that must return a real scalar). Each
takes the ``owner`` (the function or class checking, named first in the message) and the argument's
``name``; each error says what is allowed and what was given. Python numbers and concrete arrays are
checked alike.

A schedule (a :class:`gradflow.Schedule` or a function of the step count) is checked through its values:
a gradflow schedule at every count below 1024 and at every power of two (and the count before it) up to
the int32 maximum, a plain function of the count at count 0 (the value the first update uses), so that
``adam(linear_schedule(0.1, -0.1, 100))`` is an error naming ``learning_rate`` and the count where it
turns negative.

Ranges are declared once, on the transform's dataclass field (:func:`gradflow.core.hyperparameter`, e.g.
``decay: Any = hyperparameter(UNIT)``); :func:`check_allowed` checks a value against a declared
:class:`~gradflow.core.Interval`, :func:`check_hyperparameters` checks every concrete value of a whole
transform (a batched one from ``optimizer_grid`` too) and ``set_hyperparam`` checks the value it sets.

**Traced values.** Inside ``jax.jit``, ``jax.vmap`` or ``jax.grad`` a hyperparameter (or a schedule's
leaf) is a tracer: the factories accept it as it is (so they can be traced, e.g. vmapped over a batch of
values) and nothing can raise. Instead, when a declared hyperparameter that reaches ``update`` has any
element outside its range, that transform's updates are NaN (for a vmapped batch: only the members that
are outside), so ``apply_if_finite`` skips the step and ``run``/``sweep`` report the configuration as
diverged; nothing ascends or diverges slowly. The same holds for a number that reached the transform
past the checks (a dataclass built directly), so ``jit(update) == update``. The one exception is the
learning rate of ``scale_by_learning_rate``: a negative one is a zero step. Cost: nothing while the
declared values are concrete and inside; a traced field is replaced by ``jnp.where(inside, value, nan)``
on the scalar (one fused select; fields only compared with, such as thresholds, select each leaf of the
updates instead). Gradients with respect to an in-range hyperparameter are unchanged. A NaN made so is
NaN for the rest of the chain, except where a later transform maps NaN updates to zeros on purpose
(``clip_by_global_norm``, ``zero_nans``): a zero step, never an ascent.
"""

from __future__ import annotations

import functools
import inspect
import math
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.core import (
    FunctionSchedule,
    Interval,
    Schedule,
    dotted,
    hyperparameter_fields,
    is_schedule_like,
    named_arguments,
)

__all__ = [
    "check_all",
    "check_allowed",
    "check_arity",
    "check_axis",
    "check_callable",
    "check_choice",
    "check_flag",
    "check_hyperparameters",
    "check_integer",
    "check_learning_rate",
    "check_nonnegative",
    "check_number",
    "check_prng_key",
    "check_range",
    "check_scalar_output",
    "check_sequence",
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
    return check_allowed(owner, name, value, Interval(low, high, low_open, high_open))


def check_allowed(owner: str, name: str, value: Any, allowed: Interval) -> Any:
    """Accept ``value`` (a number, an array, a schedule or a tracer) inside the declared interval ``allowed``.

    >>> from gradflow.core import UNIT
    >>> check_allowed("adam", "b1", np.array([0.9, 1.5]), UNIT)
    Traceback (most recent call last):
    ...
    ValueError: adam: b1 must be in [0.0, 1.0), got array([0.9, 1.5])
    """
    values = _concrete_values(owner, name, value)
    if values is None:
        return value
    inside = allowed.contains(values)  # False at NaN
    if not np.all(inside):
        raise ValueError(f"{owner}: {name} must be in {allowed}, {_got(value, ~inside, values)}")
    return value


def check_all(owner: str, allowed: Interval, **values: Any) -> None:
    """:func:`check_allowed` for each keyword argument: ``check_all("adam", UNIT, b1=b1, b2=b2)``."""
    for name, value in values.items():
        check_allowed(owner, name, value, allowed)


def check_hyperparameters(transform: Any, owner: str = "check_hyperparameters") -> Any:
    """Check every concrete declared hyperparameter of a tree of transforms against its range; return it.

    Each error names the factory's argument when one is recorded (``b1`` of ``adam``) and the field's path.
    Arrays (a batch of optimizers, e.g. ``optimizer_grid(...).txs``) are checked element by element; schedules
    by value (see above); tracers are left to the traced policy. A primitive's factory checks its arguments
    so, by their declaration:

    >>> from gradflow.transforms.moments import EWMA
    >>> check_hyperparameters(EWMA(1.5), "ewma")
    Traceback (most recent call last):
    ...
    ValueError: ewma: decay must be in [0.0, 1.0), got 1.5

    >>> import gradflow
    >>> grid = jax.vmap(lambda b1: gradflow.adam(1e-3, b1=b1))(jnp.array([0.9, 1.0]))
    >>> check_hyperparameters(grid, "optimizer_grid")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: optimizer_grid: b1 (at transforms.0.inner.first...decay) must be in [0.0, 1.0), got Array([0.9, 1. ]...
    """
    if _PASSED.get(id(transform)) is transform:
        return transform
    fields = hyperparameter_fields(transform)
    suspects = [
        field
        for field in fields
        if field.allowed is not None and field.value is not None and not _plainly_inside(field.value, field.allowed)
    ]
    if suspects:  # names are looked up only for the values that need the full check
        named = named_arguments(transform).items()
        arguments = {path: argument for argument, entries in named for path in entries[0][1]}
        for field in suspects:
            label = arguments.get(field.path, field.name)
            label += "" if field.path == (label,) else f" (at {dotted(field.path)})"
            check_allowed(owner, label, field.value, field.allowed)  # type: ignore[arg-type]  # suspects have one
    if not any(isinstance(field.value, np.ndarray) for field in fields):  # nothing that could change later
        _PASSED[id(transform)] = transform
    return transform


def check_hyperparameters_before_tracing(transform: Any, owner: str) -> bool:
    """:func:`check_hyperparameters` of ``transform``; whether it saw every value (no leaf is a tracer), so
    that a program taking ``transform`` as an argument can trace its update under
    :func:`gradflow.core.checked_on_host` (its loop then does not check those ranges again at every step).

    >>> import gradflow
    >>> check_hyperparameters_before_tracing(gradflow.adam(0.1), "run")
    True
    >>> seen = []  # under jit, the learning rate is a tracer: only the traced policy can check it
    >>> _ = jax.jit(lambda lr: seen.append(check_hyperparameters_before_tracing(gradflow.adam(lr), "run")))(0.1)
    >>> seen
    [False]
    """
    check_hyperparameters(transform, owner)
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(transform))


_PASSED: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
"""Transforms that passed :func:`check_hyperparameters`, by identity (frozen, with immutable values): a loop
that runs the same optimizer again is not checked again."""


def _plainly_inside(value: Any, allowed: Interval) -> bool:
    """Whether ``value`` is a Python number inside ``allowed`` (the common case, checked without NumPy)."""
    return type(value) in (float, int) and bool(allowed.contains(value))


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


def check_axis(owner: str, name: str, value: Any) -> int | tuple[int, ...] | None:
    """Accept ``None``, an integer or a sequence of integers (array axes); return it hashable (a static field).

    >>> check_axis("centralize", "axis", [0, 1.0])
    Traceback (most recent call last):
    ...
    TypeError: centralize: axis must be None, an int or a tuple of ints, got [0, 1.0]
    """
    if value is None:
        return None
    axes = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not all(isinstance(a, (int, np.integer)) and not isinstance(a, (bool, np.bool_)) for a in axes):
        raise TypeError(f"{owner}: {name} must be None, an int or a tuple of ints, got {value!r}")
    return tuple(int(a) for a in axes) if isinstance(value, (list, tuple)) else int(value)


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


def check_sequence(owner: str, name: str, value: Any) -> tuple[Any, ...]:
    """Accept a list, a tuple or another iterable that is not a string or a mapping; return it as a tuple.

    >>> check_sequence("join_schedules", "boundaries", 5)
    Traceback (most recent call last):
    ...
    TypeError: join_schedules: boundaries must be a list or tuple, got 5
    """
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, Iterable) or getattr(value, "ndim", 1) == 0:
        raise TypeError(f"{owner}: {name} must be a list or tuple, got {value!r}")
    return tuple(value)


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


def check_arity(owner: str, name: str, fn: Callable, call: str, count: int) -> None:
    """Check that ``fn`` accepts ``count`` positional arguments (when its signature can be read), as in ``call``.

    >>> check_arity("run", "loss_fn", lambda params: 0.0, "loss_fn(params, batch)", 2)
    Traceback (most recent call last):
    ...
    TypeError: run: loss_fn is called as loss_fn(params, batch), but too many positional arguments
    """
    signature = _signature(fn)
    if signature is None:
        return
    try:
        signature.bind(*range(count))
    except TypeError as error:
        raise TypeError(f"{owner}: {name} is called as {call}, but {error}") from None


def _signature(fn: Callable) -> inspect.Signature | None:
    """``fn``'s signature (cached for the functions a loop calls again), ``None`` when it cannot be read."""
    try:
        return _cached_signature(fn)
    except TypeError:  # an unhashable callable
        return _read_signature(fn)


def _read_signature(fn: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


_cached_signature = functools.lru_cache(maxsize=256)(_read_signature)


def check_scalar_output(owner: str, name: str, fn: Callable, *args: Any) -> Any:
    """Check that ``fn(*args)`` returns a real floating-point scalar (traced with ``jax.eval_shape``, not run).

    >>> check_scalar_output("run", "loss_fn", lambda w: w**2, jnp.ones(3))
    Traceback (most recent call last):
    ...
    ValueError: run: loss_fn must return a real floating-point scalar (shape ()), got shape (3,) (float32)
    """
    out = jax.eval_shape(fn, *args)
    wanted = f"{owner}: {name} must return a real floating-point scalar (shape ())"
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{wanted}, got a {type(out).__name__}")
    if out.shape != ():
        raise ValueError(f"{wanted}, got shape {out.shape} ({out.dtype})")
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"{wanted}, got dtype {out.dtype}")
    return out
