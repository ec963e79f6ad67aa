"""Schedules of hyperparameters as pytree data: ``value = schedule(count)``.

Every schedule here is a :func:`~gradflow.core.pytree_dataclass` subclass of
:class:`~gradflow.core.Schedule` whose numbers (initial and final values, step counts, boundaries,
scales) are leaves and whose structural choices (``staircase``, the interpolation type) are static
fields. So a schedule is a hyperparameter like any other: put one where a transform expects a number
(``gradflow.adam(learning_rate=...)``, but also ``b1``, ``momentum`` or ``weight_decay``) and the
transform evaluates it at its own step count; ``jax.jit`` of a step that takes the optimizer as an
argument compiles once for any values of the same structure, and ``jax.vmap`` runs a batch of schedules
(leaves with a leading axis) in one program.

``count`` is the number of updates done before the current one (0 at the first update), as in optax.
The factory functions have optax's names, arguments and defaults (``optax.schedules``), so switching is
a rename of the import; their arguments are checked when they are concrete (a traced argument, inside
``jax.vmap`` or ``jax.jit``, is accepted as it is).

A schedule also accepts an array of counts and returns the values at each (for plots and tests).

Differences from optax, all at degenerate arguments: a negative ``transition_begin`` or step count,
a zero or negative ``decay_rate`` and a non-positive ``transition_steps`` of :func:`exponential_decay`
raise a ``ValueError`` here, where optax logs a message and falls back to a constant (or to 0);
``join_schedules`` requires non-decreasing boundaries and one fewer boundary than schedules; a negative
boundary or scale in ``boundaries_and_scales`` is an error. And one numerical difference: a polynomial
schedule reaches ``end_value`` exactly (optax's, under jit, can stop ~1e-4 of the range short of it
when ``power < 1``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from gradflow._optax_reexport import lazy_reexport
from gradflow.core import FunctionSchedule, Schedule, pytree_dataclass, static_field
from gradflow.validation import check_choice, check_flag, check_nonnegative, check_number, check_range, check_sequence

__all__ = [
    "Constant",
    "CosineDecay",
    "ExponentialDecay",
    "Join",
    "PiecewiseConstant",
    "PiecewiseInterpolate",
    "Polynomial",
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "exponential_decay",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]


# --------------------------------------------------------------------------------------------------
# Schedule classes: each __call__ is pure jnp arithmetic on its leaves (no Python branching on values),
# so that leaves may be tracers (jit, vmap, grad). ``count`` may be any integer array; the value
# broadcasts over its shape.
# --------------------------------------------------------------------------------------------------


def _as_float(count: Any) -> jax.Array:
    """The count in the default float dtype (float64 under x64): int32 / int32 would give float32."""
    return jnp.asarray(count, dtype=jnp.result_type(float))


@pytree_dataclass
class Constant(Schedule):
    """``value`` at every count.

    >>> Constant(0.1)(jnp.arange(3))
    Array([0.1, 0.1, 0.1], dtype=float32, weak_type=True)
    """

    value: Any

    def __call__(self, count):
        value = jnp.asarray(self.value)
        return jnp.broadcast_to(value, jnp.broadcast_shapes(jnp.shape(value), jnp.shape(count)))


@pytree_dataclass
class Polynomial(Schedule):
    """``(init_value − end_value)·(1 − τ/transition_steps)^power + end_value``, τ = clip(count − begin, 0, steps).

    ``transition_steps = 0`` holds ``init_value`` (optax's convention).

    >>> linear_schedule(1.0, 0.0, transition_steps=4)(jnp.arange(6))
    Array([1.  , 0.75, 0.5 , 0.25, 0.  , 0.  ], dtype=float32)
    """

    init_value: Any
    end_value: Any
    power: Any
    transition_steps: Any
    transition_begin: Any = 0

    def __call__(self, count):
        count = _as_float(count)
        active = jnp.asarray(self.transition_steps) > 0
        steps = jnp.where(active, self.transition_steps, 1)
        elapsed = jnp.clip(count - self.transition_begin, 0, steps)
        # (steps − elapsed)/steps rather than 1 − elapsed/steps: exactly 0 at the end of the transition,
        # where XLA's 1 − elapsed·(1/steps) (fused multiply-add) leaves ~2e-8, which a power < 1 magnifies
        # (optax's power-0.5 schedule ends 1e-4 short of end_value under jit).
        remaining = (steps - elapsed) / steps
        value = (self.init_value - self.end_value) * remaining**self.power + self.end_value
        return jnp.where(active, value, self.init_value)


@pytree_dataclass
class ExponentialDecay(Schedule):
    """``init_value · decay_rate^(max(count − transition_begin, 0) / transition_steps)``, then clamped.

    With ``staircase`` the exponent is floored. ``end_value`` (``None``: no clamp) is a lower bound when
    ``decay_rate < 1`` and an upper bound otherwise.

    >>> exponential_decay(1.0, transition_steps=2, decay_rate=0.5)(jnp.arange(5)).round(4)
    Array([1.    , 0.7071, 0.5   , 0.3536, 0.25  ], dtype=float32)
    """

    init_value: Any
    transition_steps: Any
    decay_rate: Any
    transition_begin: Any = 0
    end_value: Any = None
    staircase: bool = static_field(default=False)

    def __call__(self, count):
        elapsed = jnp.maximum(_as_float(count) - self.transition_begin, 0)
        exponent = elapsed / self.transition_steps
        if self.staircase:
            exponent = jnp.floor(exponent)
        value = self.init_value * jnp.power(self.decay_rate, exponent)
        if self.end_value is not None:
            value = jnp.where(
                jnp.asarray(self.decay_rate) < 1,
                jnp.maximum(value, self.end_value),
                jnp.minimum(value, self.end_value),
            )
        return value


@pytree_dataclass
class CosineDecay(Schedule):
    """``init_value · ((1 − alpha)·c^exponent + alpha)`` with c = ½(1 + cos(π·min(count, decay_steps)/decay_steps)).

    >>> [round(float(v), 4) for v in cosine_decay_schedule(1.0, decay_steps=4)(jnp.arange(5))]
    [1.0, 0.8536, 0.5, 0.1464, 0.0]
    """

    init_value: Any
    decay_steps: Any
    alpha: Any = 0.0
    exponent: Any = 1.0

    def __call__(self, count):
        # Clipping at 0 as well changes nothing for count >= 0 and keeps the value (and its derivatives)
        # tame where a joined schedule is evaluated at a negative count that jnp.where then discards.
        elapsed = jnp.clip(_as_float(count), 0, self.decay_steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * elapsed / self.decay_steps))
        return self.init_value * ((1 - self.alpha) * cosine**self.exponent + self.alpha)


@pytree_dataclass
class PiecewiseConstant(Schedule):
    """``init_value`` times the product of the ``scales`` whose boundary is ``<= count``.

    >>> [round(float(v), 4) for v in piecewise_constant_schedule(1.0, {2: 0.5, 4: 0.1})(jnp.arange(6))]
    [1.0, 1.0, 0.5, 0.5, 0.05, 0.05]
    """

    init_value: Any
    boundaries: tuple[Any, ...] = ()
    scales: tuple[Any, ...] = ()

    def __call__(self, count):
        count = jnp.asarray(count)
        value = jnp.broadcast_to(jnp.asarray(self.init_value), jnp.shape(count))
        for boundary, scale in zip(self.boundaries, self.scales):
            value = jnp.where(count >= boundary, value * scale, value)
        return value


def _interpolate_linear(start, end, fraction):
    return start + (end - start) * fraction


def _interpolate_cosine(start, end, fraction):
    return end + (start - end) * 0.5 * (1 + jnp.cos(jnp.pi * fraction))


_INTERPOLATIONS = {"linear": _interpolate_linear, "cosine": _interpolate_cosine}


@pytree_dataclass
class PiecewiseInterpolate(Schedule):
    """Interpolate between the running products ``init_value·scale_1···scale_i`` at the boundaries.

    On [b_i, b_{i+1}) the value goes from v_i to v_{i+1} (linearly, or along half a cosine) with
    fraction (count − b_i)/max(b_{i+1} − b_i, 1), where b_0 = 0, v_0 = ``init_value`` and
    v_{i+1} = v_i·scale_{i+1}; after the last boundary it is the last v.

    >>> piecewise_interpolate_schedule("linear", 1.0, {0: 1.0, 4: 0.5})(jnp.arange(6))
    Array([1.   , 0.875, 0.75 , 0.625, 0.5  , 0.5  ], dtype=float32)
    """

    init_value: Any
    boundaries: tuple[Any, ...] = ()
    scales: tuple[Any, ...] = ()
    interpolate_type: Literal["linear", "cosine"] = static_field(default="linear")

    def __call__(self, count):
        count = _as_float(count)
        bounds = jnp.stack([jnp.asarray(0), *(jnp.asarray(b) for b in self.boundaries)])
        values = jnp.cumprod(jnp.stack([jnp.asarray(v) for v in (self.init_value, *self.scales)]))
        value = jnp.where(count >= bounds[-1], values[-1], 0)
        if self.boundaries:
            starts, ends = bounds[:-1], bounds[1:]
            at = count[..., None]
            fraction = (at - starts) / jnp.maximum(ends - starts, 1)
            inside = (starts <= at) & (at < ends)
            segments = _INTERPOLATIONS[self.interpolate_type](values[:-1], values[1:], fraction)
            value = value + jnp.sum(jnp.where(inside, segments, 0), axis=-1)
        return value


@pytree_dataclass
class Join(Schedule):
    """``schedules[i](count − boundaries[i−1])`` for count in [boundaries[i−1], boundaries[i]).

    Each schedule restarts its own count at its boundary (``boundaries[−1] = 0`` for the first).

    >>> join_schedules([constant_schedule(1.0), linear_schedule(1.0, 0.0, 2)], [3])(jnp.arange(6))
    Array([1. , 1. , 1. , 1. , 0.5, 0. ], dtype=float32)
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[Any, ...]

    def __call__(self, count):
        count = jnp.asarray(count)
        value = self.schedules[0](count)
        for boundary, schedule in zip(self.boundaries, self.schedules[1:]):
            value = jnp.where(count < boundary, value, schedule(count - boundary))
        return value


# --------------------------------------------------------------------------------------------------
# Argument checks.
# --------------------------------------------------------------------------------------------------


def _is_traced(value: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(value))


def _check_steps(owner: str, name: str, value: Any, *, positive: bool = False) -> Any:
    """A finite number of steps, ``>= 0`` (or ``> 0`` when ``positive``)."""
    return check_range(owner, name, value, 0.0, math.inf, low_open=positive)


def _concrete_int(owner: str, name: str, value: Any) -> int:
    """A step count that must be known when the schedule is built (it sets boundaries)."""
    if _is_traced(value):
        raise TypeError(f"{owner}: {name} must be a concrete integer (it places boundaries), got a traced value")
    _check_scalar(owner, name, value)
    check_range(owner, name, value, -math.inf, math.inf, low_open=True)  # a finite number
    number = float(np.asarray(value))
    if number != int(number):
        raise ValueError(f"{owner}: {name} must be an integer number of steps, got {value!r}")
    return int(number)


def _check_scalar(owner: str, name: str, value: Any) -> None:
    """A single number (it places a boundary: not an array of several)."""
    check_number(owner, name, value)
    if np.ndim(value) != 0:
        raise TypeError(f"{owner}: {name} must be a single number (it places a boundary), got shape {np.shape(value)}")


def _boundaries_and_scales(owner: str, boundaries_and_scales: Mapping[Any, Any] | None):
    """Sorted ``(boundaries, scales)`` tuples of a ``{step: scale}`` dict, each step >= 0 and scale >= 0."""
    if boundaries_and_scales is None:
        return (), ()
    if not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            f"{owner}: boundaries_and_scales must be a dict {{step: scale}}, got {type(boundaries_and_scales).__name__}"
        )
    for step, scale in boundaries_and_scales.items():
        _check_steps(owner, f"boundaries_and_scales key {step!r}", step)
        check_nonnegative(owner, f"boundaries_and_scales[{step!r}]", scale)
    items = sorted(boundaries_and_scales.items(), key=lambda item: float(item[0]))
    return tuple(step for step, _ in items), tuple(scale for _, scale in items)


def _ratio_or_zero(numerator: Any, denominator: Any) -> Any:
    """``numerator / denominator``, or 0 when the denominator is 0 (also for traced values)."""
    if not _is_traced((numerator, denominator)) and np.ndim(denominator) == 0:
        return 0.0 if denominator == 0 else numerator / denominator
    zero = jnp.asarray(denominator) == 0
    return jnp.where(zero, 0.0, numerator / jnp.where(zero, 1, denominator))


def _as_schedule(owner: str, position: int, schedule: Any) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if callable(schedule):
        return FunctionSchedule(schedule)
    raise TypeError(f"{owner}: schedules[{position}] must be a schedule or a function of the count, got {schedule!r}")


# --------------------------------------------------------------------------------------------------
# Factories, with optax's names, arguments and defaults.
# --------------------------------------------------------------------------------------------------


def constant_schedule(value: Any) -> Constant:
    """The same value at every step.

    Args:
      value: the value (a leaf: it can be vmapped over).

    Returns:
      A :class:`Constant` schedule.

    Example:
      >>> from gradflow import schedules
      >>> schedules.constant_schedule(0.5)(100)
      Array(0.5, dtype=float32, weak_type=True)
    """
    return Constant(check_number("constant_schedule", "value", value))


def polynomial_schedule(
    init_value: Any,
    end_value: Any,
    power: Any,
    transition_steps: Any,
    transition_begin: Any = 0,
) -> Polynomial:
    """Polynomial transition from ``init_value`` to ``end_value``.

    With I = ``init_value``, E = ``end_value``, P = ``power``, T = ``transition_steps`` and
    B = ``transition_begin``::

        value(t) = I                              for t < B
                 = (I − E)·(1 − (t − B)/T)^P + E  for B <= t < B + T
                 = E                              for t >= B + T

    Args:
      init_value: value before and at the start of the transition.
      end_value: value reached after ``transition_steps`` steps, and held.
      power: exponent P of the polynomial (1: linear).
      transition_steps: T >= 0, the length of the transition; 0 holds ``init_value`` forever.
      transition_begin: B >= 0, the number of steps at ``init_value`` before the transition starts.

    Returns:
      A :class:`Polynomial` schedule.

    Raises:
      ValueError: if ``transition_steps`` or ``transition_begin`` is negative.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
      >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 20)]
      [1.0, 0.25, 0.0, 0.0]
    """
    owner = "polynomial_schedule"
    check_number(owner, "init_value", init_value)
    check_number(owner, "end_value", end_value)
    check_number(owner, "power", power)
    _check_steps(owner, "transition_steps", transition_steps)
    _check_steps(owner, "transition_begin", transition_begin)
    return Polynomial(init_value, end_value, power, transition_steps, transition_begin)


def linear_schedule(init_value: Any, end_value: Any, transition_steps: Any, transition_begin: Any = 0) -> Polynomial:
    """Linear transition from ``init_value`` to ``end_value`` (:func:`polynomial_schedule` with power 1).

    value(t) = I + (E − I)·clip(t − B, 0, T)/T, with I = ``init_value``, E = ``end_value``,
    T = ``transition_steps``, B = ``transition_begin``.

    Args:
      init_value: value at and before ``transition_begin``.
      end_value: value from ``transition_begin + transition_steps`` on.
      transition_steps: T >= 0, the length of the ramp; 0 holds ``init_value`` forever.
      transition_begin: B >= 0, the step at which the ramp starts.

    Returns:
      A :class:`Polynomial` schedule with ``power=1``.

    Example:
      >>> from gradflow import schedules
      >>> warmup = schedules.linear_schedule(0.0, 1.0, transition_steps=4)
      >>> [float(warmup(t)) for t in range(6)]
      [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """
    owner = "linear_schedule"
    check_number(owner, "init_value", init_value)
    check_number(owner, "end_value", end_value)
    _check_steps(owner, "transition_steps", transition_steps)
    _check_steps(owner, "transition_begin", transition_begin)
    return Polynomial(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: Any, boundaries_and_scales: Mapping[Any, Any] | None = None
) -> PiecewiseConstant:
    """Constant pieces: ``init_value`` multiplied by every scale whose boundary has been reached.

    value(t) = init_value · ∏_{b_i <= t} s_i for ``boundaries_and_scales = {b_i: s_i}``.

    Args:
      init_value: the value before the first boundary.
      boundaries_and_scales: ``{step: scale}``; from ``step`` on the value is multiplied by ``scale``
        (steps >= 0, scales >= 0). ``None``: a constant schedule.

    Returns:
      A :class:`PiecewiseConstant` schedule (boundaries sorted).

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.piecewise_constant_schedule(1.0, {10: 0.1, 20: 0.5})
      >>> [round(float(schedule(t)), 4) for t in (9, 10, 19, 20)]
      [1.0, 0.1, 0.1, 0.05]
    """
    owner = "piecewise_constant_schedule"
    check_number(owner, "init_value", init_value)
    boundaries, scales = _boundaries_and_scales(owner, boundaries_and_scales)
    return PiecewiseConstant(init_value, boundaries, scales)


def exponential_decay(
    init_value: Any,
    transition_steps: Any,
    decay_rate: Any,
    transition_begin: Any = 0,
    staircase: bool = False,
    end_value: Any = None,
) -> ExponentialDecay:
    """Exponential decay in TensorFlow's form: ``init_value · decay_rate^((t − B)/transition_steps)``.

    With B = ``transition_begin``::

        value(t) = init_value                                         for t <= B
                 = init_value · decay_rate^((t − B)/transition_steps)   for t > B

    the exponent floored when ``staircase``; the value is then clamped at ``end_value``: from below when
    ``decay_rate < 1``, from above otherwise.

    The learning-rate decay of seed 003, η_t = η₀·10^(−t/r), is
    ``exponential_decay(η₀, transition_steps=r, decay_rate=0.1)``: 10^(−t/r) = 0.1^(t/r).

    Args:
      init_value: the value at the start (η₀).
      transition_steps: > 0, the number of steps over which the value is multiplied by ``decay_rate``.
      decay_rate: > 0, the factor per ``transition_steps`` steps (< 1 decays, > 1 grows).
      transition_begin: >= 0, the number of steps held at ``init_value`` before the decay starts.
      staircase: decay in discrete jumps every ``transition_steps`` steps.
      end_value: the bound at which the decay stops (``None``: none).

    Returns:
      An :class:`ExponentialDecay` schedule.

    Raises:
      ValueError: for ``transition_steps <= 0``, ``decay_rate <= 0`` or ``transition_begin < 0`` (optax
        logs a message and returns a constant, or starts at 0, instead).

    Example:
      >>> from gradflow import schedules
      >>> seed = schedules.exponential_decay(1.0, transition_steps=100, decay_rate=0.1)  # 10^(−t/100)
      >>> [round(float(seed(t)), 5) for t in (0, 50, 100, 200)]
      [1.0, 0.31623, 0.1, 0.01]
      >>> steps = schedules.exponential_decay(1.0, 10, 0.5, staircase=True, end_value=0.2)
      >>> [round(float(steps(t)), 5) for t in (9, 10, 25, 100)]
      [1.0, 0.5, 0.25, 0.2]
    """
    owner = "exponential_decay"
    check_number(owner, "init_value", init_value)
    _check_steps(owner, "transition_steps", transition_steps, positive=True)
    check_range(owner, "decay_rate", decay_rate, 0.0, math.inf, low_open=True)
    _check_steps(owner, "transition_begin", transition_begin)
    if end_value is not None:
        check_number(owner, "end_value", end_value)
    return ExponentialDecay(
        init_value,
        transition_steps,
        decay_rate,
        transition_begin,
        end_value,
        check_flag("exponential_decay", "staircase", staircase),
    )


def cosine_decay_schedule(init_value: Any, decay_steps: Any, alpha: Any = 0.0, exponent: Any = 1.0) -> CosineDecay:
    """Cosine decay (Loshchilov & Hutter, 2017, SGDR) from ``init_value`` to ``alpha · init_value``.

    value(t) = init_value · ((1 − alpha)·c(t)^exponent + alpha),
    c(t) = ½·(1 + cos(π·min(t, decay_steps)/decay_steps)).

    Args:
      init_value: the value at step 0.
      decay_steps: > 0, the length of the decay; the value stays at ``alpha · init_value`` afterwards.
      alpha: the final value as a fraction of ``init_value``.
      exponent: power applied to the cosine factor c(t).

    Returns:
      A :class:`CosineDecay` schedule.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.cosine_decay_schedule(1.0, decay_steps=10, alpha=0.1)
      >>> [round(float(schedule(t)), 4) for t in (0, 5, 10, 11)]
      [1.0, 0.55, 0.1, 0.1]
    """
    owner = "cosine_decay_schedule"
    check_number(owner, "init_value", init_value)
    _check_steps(owner, "decay_steps", decay_steps, positive=True)
    check_number(owner, "alpha", alpha)
    check_number(owner, "exponent", exponent)
    return CosineDecay(init_value, decay_steps, alpha, exponent)


def piecewise_interpolate_schedule(
    interpolate_type: Literal["linear", "cosine"],
    init_value: Any,
    boundaries_and_scales: Mapping[Any, Any] | None = None,
) -> PiecewiseInterpolate:
    """Interpolation, linear or cosine, between accumulated scales at the boundaries.

    With boundaries b_1 < b_2 < ... and scales s_i, the values at the boundaries are v_0 = init_value
    (at step 0) and v_i = v_{i−1}·s_i (at b_i); between b_i and b_{i+1} the value moves from v_i to
    v_{i+1}, linearly (v_i + (v_{i+1} − v_i)·f) or along half a cosine
    (v_{i+1} + (v_i − v_{i+1})·½(1 + cos πf)), with f = (t − b_i)/(b_{i+1} − b_i). After the last
    boundary the value is the last v_i.

    Args:
      interpolate_type: ``"linear"`` or ``"cosine"``.
      init_value: the value at step 0.
      boundaries_and_scales: ``{step: scale}`` (steps >= 0, scales >= 0); the value at ``step`` is the
        value at the previous boundary times ``scale``.

    Returns:
      A :class:`PiecewiseInterpolate` schedule.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.piecewise_interpolate_schedule("linear", 1.0, {4: 0.5, 8: 0.5})
      >>> [float(schedule(t)) for t in (0, 2, 4, 6, 8, 9)]
      [1.0, 0.75, 0.5, 0.375, 0.25, 0.25]
    """
    owner = "piecewise_interpolate_schedule"
    check_choice(owner, "interpolate_type", interpolate_type, _INTERPOLATIONS)
    check_number(owner, "init_value", init_value)
    boundaries, scales = _boundaries_and_scales(owner, boundaries_and_scales)
    return PiecewiseInterpolate(init_value, boundaries, scales, interpolate_type)


def _check_onecycle(owner: str, transition_steps: Any, pct_start: Any, div_factor: Any, final_div_factor: Any) -> int:
    steps = _concrete_int(owner, "transition_steps", transition_steps)
    if steps <= 0:
        raise ValueError(f"{owner}: transition_steps must be a positive integer, got {transition_steps!r}")
    if _is_traced(pct_start):
        raise TypeError(f"{owner}: pct_start must be concrete (it places a boundary), got a traced value")
    _check_scalar(owner, "pct_start", pct_start)
    check_range(owner, "pct_start", pct_start, 0.0, 1.0, high_open=False)
    check_range(owner, "div_factor", div_factor, 0.0, math.inf, low_open=True)
    check_range(owner, "final_div_factor", final_div_factor, 0.0, math.inf, low_open=True)
    return steps


def linear_onecycle_schedule(
    transition_steps: Any,
    peak_value: Any,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: Any = 25.0,
    final_div_factor: Any = 1e4,
) -> PiecewiseInterpolate:
    """The one-cycle policy (Smith & Topin, 2017) in three linear phases.

    With T = ``transition_steps`` and v₀ = ``peak_value / div_factor``: from step 0 to
    ⌊pct_start·T⌋ the value rises linearly from v₀ to ``peak_value``; until ⌊pct_final·T⌋ it falls back
    to v₀; until T it falls to v₀ / ``final_div_factor``, and stays there.

    Args:
      transition_steps: T > 0, the length of the cycle (a concrete integer).
      peak_value: the maximum, reached at ⌊pct_start·T⌋.
      pct_start: fraction of the cycle spent rising, in [0, 1] (concrete).
      pct_final: fraction of the cycle at which the value is back at v₀, in [pct_start, 1] (concrete).
      div_factor: > 0, v₀ = peak_value / div_factor.
      final_div_factor: > 0, the final value is v₀ / final_div_factor.

    Returns:
      A :class:`PiecewiseInterpolate` schedule with linear interpolation.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.linear_onecycle_schedule(100, peak_value=1.0, div_factor=10.0)
      >>> [round(float(schedule(t)), 4) for t in (0, 15, 30, 85, 100)]
      [0.1, 0.55, 1.0, 0.1, 0.0]
    """
    owner = "linear_onecycle_schedule"
    steps = _check_onecycle(owner, transition_steps, pct_start, div_factor, final_div_factor)
    if _is_traced(pct_final):
        raise TypeError(f"{owner}: pct_final must be concrete (it places a boundary), got a traced value")
    _check_scalar(owner, "pct_final", pct_final)
    check_range(owner, "pct_final", pct_final, float(pct_start), 1.0, high_open=False)
    check_number(owner, "peak_value", peak_value)
    # A dict, as in optax: boundaries that coincide (short cycles) keep the last scale.
    boundaries_and_scales = {
        int(pct_start * steps): div_factor,
        int(pct_final * steps): 1.0 / div_factor,
        steps: 1.0 / final_div_factor,
    }
    boundaries, scales = _boundaries_and_scales(owner, boundaries_and_scales)
    return PiecewiseInterpolate(peak_value / div_factor, boundaries, scales, "linear")


def cosine_onecycle_schedule(
    transition_steps: Any,
    peak_value: Any,
    pct_start: float = 0.3,
    div_factor: Any = 25.0,
    final_div_factor: Any = 1e4,
) -> PiecewiseInterpolate:
    """The one-cycle policy (Smith & Topin, 2017) with two cosine phases.

    With T = ``transition_steps`` and v₀ = ``peak_value / div_factor``: from step 0 to ⌊pct_start·T⌋
    the value rises along half a cosine from v₀ to ``peak_value``, then falls along half a cosine to
    v₀ / ``final_div_factor`` at T, and stays there.

    Args:
      transition_steps: T > 0, the length of the cycle (a concrete integer).
      peak_value: the maximum, reached at ⌊pct_start·T⌋.
      pct_start: fraction of the cycle spent rising, in [0, 1] (concrete).
      div_factor: > 0, v₀ = peak_value / div_factor.
      final_div_factor: > 0, the final value is v₀ / final_div_factor.

    Returns:
      A :class:`PiecewiseInterpolate` schedule with cosine interpolation.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.cosine_onecycle_schedule(100, peak_value=1.0, div_factor=10.0)
      >>> [round(float(schedule(t)), 4) for t in (0, 15, 30, 100)]
      [0.1, 0.55, 1.0, 0.0]
    """
    owner = "cosine_onecycle_schedule"
    steps = _check_onecycle(owner, transition_steps, pct_start, div_factor, final_div_factor)
    check_number(owner, "peak_value", peak_value)
    boundaries_and_scales = {int(pct_start * steps): div_factor, steps: 1.0 / (div_factor * final_div_factor)}
    boundaries, scales = _boundaries_and_scales(owner, boundaries_and_scales)
    return PiecewiseInterpolate(peak_value / div_factor, boundaries, scales, "cosine")


def join_schedules(schedules: Sequence[Any], boundaries: Sequence[Any]) -> Join:
    """Run schedules one after the other; each restarts its count at its boundary.

    value(t) = schedules[0](t) for t < boundaries[0], schedules[i](t − boundaries[i−1]) for
    boundaries[i−1] <= t < boundaries[i], and schedules[−1](t − boundaries[−1]) afterwards.

    Args:
      schedules: the schedules, gradflow :class:`~gradflow.core.Schedule` s (whose leaves stay leaves)
        or plain functions of the count (static: they cannot be vmapped over).
      boundaries: ``len(schedules) − 1`` non-decreasing steps >= 0 at which to switch.

    Returns:
      A :class:`Join` schedule.

    Example:
      >>> from gradflow import schedules
      >>> warmup = schedules.linear_schedule(0.0, 1.0, transition_steps=2)
      >>> decay = schedules.exponential_decay(1.0, transition_steps=1, decay_rate=0.5)
      >>> joined = schedules.join_schedules([warmup, decay], boundaries=[2])
      >>> [float(joined(t)) for t in range(5)]
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    owner = "join_schedules"
    schedules = tuple(_as_schedule(owner, i, s) for i, s in enumerate(check_sequence(owner, "schedules", schedules)))
    boundaries = check_sequence(owner, "boundaries", boundaries)
    if not schedules:
        raise ValueError(f"{owner}: schedules must not be empty")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"{owner}: boundaries must have one entry fewer than schedules ({len(schedules) - 1}), "
            f"got {len(boundaries)}"
        )
    for i, boundary in enumerate(boundaries):
        _check_steps(owner, f"boundaries[{i}]", boundary)
    concrete = [float(np.asarray(b)) for b in boundaries if not _is_traced(b)]
    if len(concrete) == len(boundaries) and any(a > b for a, b in itertools.pairwise(concrete)):
        raise ValueError(f"{owner}: boundaries must be non-decreasing, got {list(boundaries)!r}")
    return Join(schedules, boundaries)


def warmup_constant_schedule(init_value: Any, peak_value: Any, warmup_steps: Any) -> Polynomial:
    """Linear warmup from ``init_value`` to ``peak_value`` over ``warmup_steps`` steps, then constant.

    Args:
      init_value: the value at step 0.
      peak_value: the value from ``warmup_steps`` on.
      warmup_steps: >= 0, the length of the warmup.

    Returns:
      A :class:`Polynomial` schedule with ``power=1``.

    Example:
      >>> from gradflow import schedules
      >>> [float(schedules.warmup_constant_schedule(0.0, 1.0, 2)(t)) for t in range(4)]
      [0.0, 0.5, 1.0, 1.0]
    """
    owner = "warmup_constant_schedule"
    check_number(owner, "init_value", init_value)
    check_number(owner, "peak_value", peak_value)
    _check_steps(owner, "warmup_steps", warmup_steps)
    return Polynomial(init_value, peak_value, 1, warmup_steps, 0)


def warmup_cosine_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: Any,
    decay_steps: Any,
    end_value: Any = 0.0,
    exponent: Any = 1.0,
) -> Join:
    """Linear warmup to ``peak_value``, then cosine decay to ``end_value``.

    With W = ``warmup_steps`` and D = ``decay_steps`` (the total length, warmup included)::

        value(t) = init_value + (peak_value − init_value)·t/W                    for t < W
                 = end_value + (peak_value − end_value)·c(t − W)^exponent         for t >= W

    where c(s) = ½(1 + cos(π·min(s, D − W)/(D − W))). (Computed as optax does, as a cosine decay of
    ``peak_value`` with alpha = end_value/peak_value, and alpha = 0 when peak_value = 0.)

    Args:
      init_value: the value at step 0.
      peak_value: the value at the end of the warmup.
      warmup_steps: W >= 0, the length of the warmup (0: start decaying from ``peak_value``).
      decay_steps: D > W, the total length of the schedule.
      end_value: the value from step D on.
      exponent: power applied to the cosine factor.

    Returns:
      A :class:`Join` of a linear and a cosine schedule.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2, decay_steps=12)
      >>> [round(float(schedule(t)), 4) for t in (0, 1, 2, 7, 12, 20)]
      [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """
    owner = "warmup_cosine_decay_schedule"
    check_number(owner, "init_value", init_value)
    check_number(owner, "peak_value", peak_value)
    check_number(owner, "end_value", end_value)
    check_number(owner, "exponent", exponent)
    _check_steps(owner, "warmup_steps", warmup_steps)
    _check_steps(owner, "decay_steps", decay_steps, positive=True)
    if not _is_traced((warmup_steps, decay_steps)) and not np.all(np.asarray(decay_steps) > np.asarray(warmup_steps)):
        raise ValueError(
            f"{owner}: decay_steps (the total length, warmup included) must be greater than warmup_steps, "
            f"got decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}"
        )
    warmup = Polynomial(init_value, peak_value, 1, warmup_steps, 0)
    decay = CosineDecay(peak_value, decay_steps - warmup_steps, _ratio_or_zero(end_value, peak_value), exponent)
    return Join((warmup, decay), (warmup_steps,))


def warmup_exponential_decay_schedule(
    init_value: Any,
    peak_value: Any,
    warmup_steps: Any,
    transition_steps: Any,
    decay_rate: Any,
    transition_begin: Any = 0,
    staircase: bool = False,
    end_value: Any = None,
) -> Join:
    """Linear warmup to ``peak_value``, then :func:`exponential_decay` from ``peak_value``.

    value(t) = init_value + (peak_value − init_value)·t/W for t < W = ``warmup_steps``, and
    ``exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, staircase,
    end_value)(t − W)`` afterwards.

    Args:
      init_value: the value at step 0.
      peak_value: the value at the end of the warmup.
      warmup_steps: W >= 0, the length of the warmup.
      transition_steps: > 0, see :func:`exponential_decay`.
      decay_rate: > 0, the factor per ``transition_steps`` steps.
      transition_begin: >= 0, steps after the warmup held at ``peak_value``.
      staircase: decay in discrete jumps.
      end_value: the bound at which the decay stops (``None``: none).

    Returns:
      A :class:`Join` of a linear and an exponential schedule.

    Example:
      >>> from gradflow import schedules
      >>> schedule = schedules.warmup_exponential_decay_schedule(0.0, 1.0, 2, transition_steps=1, decay_rate=0.5)
      >>> [float(schedule(t)) for t in range(5)]
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    owner = "warmup_exponential_decay_schedule"
    check_number(owner, "init_value", init_value)
    check_number(owner, "peak_value", peak_value)
    _check_steps(owner, "warmup_steps", warmup_steps)
    _check_steps(owner, "transition_steps", transition_steps, positive=True)
    check_range(owner, "decay_rate", decay_rate, 0.0, math.inf, low_open=True)
    _check_steps(owner, "transition_begin", transition_begin)
    if end_value is not None:
        check_number(owner, "end_value", end_value)
    warmup = Polynomial(init_value, peak_value, 1, warmup_steps, 0)
    decay = ExponentialDecay(
        peak_value,
        transition_steps,
        decay_rate,
        transition_begin,
        end_value,
        check_flag("warmup_exponential_decay_schedule", "staircase", staircase),
    )
    return Join((warmup, decay), (warmup_steps,))


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Join:
    """SGD with warm restarts (Loshchilov & Hutter, 2017): warmup-cosine cycles one after the other.

    Cycle i is ``warmup_cosine_decay_schedule(**cosine_kwargs[i])`` and lasts its ``decay_steps``
    steps; the next cycle starts (its count at 0) when it ends.

    Args:
      cosine_kwargs: one dict of :func:`warmup_cosine_decay_schedule` arguments per cycle
        (``init_value``, ``peak_value``, ``warmup_steps``, ``decay_steps``, optionally ``end_value``,
        ``exponent``); each ``decay_steps`` must be concrete.

    Returns:
      A :class:`Join` of the cycles.

    Example:
      >>> from gradflow import schedules
      >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=1, decay_steps=3)
      >>> schedule = schedules.sgdr_schedule([cycle, cycle])
      >>> [round(float(schedule(t)), 5) for t in range(7)]
      [0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 0.0]
    """
    owner = "sgdr_schedule"
    cycles, boundaries, step = [], [], 0
    for i, kwargs in enumerate(check_sequence(owner, "cosine_kwargs", cosine_kwargs)):
        if not isinstance(kwargs, Mapping) or "decay_steps" not in kwargs:
            raise ValueError(
                f"{owner}: cosine_kwargs[{i}] must be a dict of warmup_cosine_decay_schedule arguments "
                f"with decay_steps, got {kwargs!r}"
            )
        cycles.append(warmup_cosine_decay_schedule(**kwargs))
        step = step + _concrete_int(owner, f"cosine_kwargs[{i}]['decay_steps']", kwargs["decay_steps"])
        boundaries.append(step)
    if not cycles:
        raise ValueError(f"{owner}: cosine_kwargs must hold at least one cycle")
    return Join(tuple(cycles), tuple(boundaries[:-1]))


# optax.schedules also holds inject_hyperparams and its kin, which live in gradflow.hyperparams (a module
# that imports the wrappers): read lazily, so that importing this module stays free of cycles.
_FROM_HYPERPARAMS = (
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "StatefulSchedule",
    "WrappedSchedule",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
)
__getattr__, __dir__ = lazy_reexport(__name__, {"gradflow.hyperparams": _FROM_HYPERPARAMS})
__all__ += _FROM_HYPERPARAMS
