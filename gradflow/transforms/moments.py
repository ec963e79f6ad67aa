"""Stateful statistics of the updates: moving averages, bias correction, sums and running maxima.

Each keeps one buffer shaped like the parameters (or one int32 counter) and outputs in the incoming
dtype; buffers keep the dtype they were created with, whatever the dtype of the hyperparameters.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import arith, tree
from gradflow.core import (
    NONNEGATIVE,
    REAL,
    UNIT,
    UNIT_CLOSED,
    Transform,
    chain,
    hyperparameter,
    name_arguments,
    pytree_dataclass,
    static_field,
)
from gradflow.layout import OWN_COUNT, composite
from gradflow.validation import (
    check_choice,
    check_flag,
    check_hyperparameters,
    check_integer,
)

__all__ = [
    "EWMA",
    "Accumulate",
    "BiasCorrection",
    "CountState",
    "EWMAState",
    "EmaState",
    "InterpolatedMomentum",
    "MaxState",
    "RunningMax",
    "ScaleByUpdateRMS",
    "SumState",
    "TraceState",
    "UpdateRMSState",
    "accumulate",
    "bias_correction",
    "canonical_dtype",
    "ema",
    "ewma",
    "interpolated_momentum",
    "running_max",
    "scale_by_update_rms",
    "trace",
]


def canonical_dtype(dtype: Any, owner: str = "gradflow", name: str = "dtype") -> Any:
    """``None`` or a floating-point numpy dtype (hashable, so it can be a static field).

    Raises:
      TypeError: if ``dtype`` is not a dtype, naming ``owner`` and the argument ``name``.
      ValueError: if it is not floating point (or complex): an integer buffer would truncate the statistic.
    """
    if dtype is None:
        return None
    try:
        resolved = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: {name} must be a dtype or None, got {dtype!r}") from None
    if not jnp.issubdtype(resolved, jnp.inexact):
        raise ValueError(f"{owner}: {name} must be a floating-point dtype, got {resolved}")
    return resolved


class EWMAState(NamedTuple):
    """The moving average ``mean``, shaped like the parameters."""

    mean: Any


class CountState(NamedTuple):
    """A saturating int32 step counter."""

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count


class SumState(NamedTuple):
    """The running sum, shaped like the parameters."""

    total: Any


class MaxState(NamedTuple):
    """The running maximum, shaped like the parameters."""

    maximum: Any


class UpdateRMSState(NamedTuple):
    """The moving average of squared outgoing updates (Adadelta's E[Δθ²])."""

    mean_square: Any


class TraceState(NamedTuple):
    """optax's name for the momentum buffer of :func:`trace`.

    >>> import jax.numpy as jnp
    >>> trace(0.9).init(jnp.zeros(2))
    TraceState(trace=Array([0., 0.], dtype=float32))
    """

    trace: Any


class EmaState(NamedTuple):
    """The step count and the (not bias-corrected) moving average of :func:`ema`.

    >>> import jax.numpy as jnp
    >>> ema(0.9).init(jnp.zeros(1))
    EmaState(count=Array(0, dtype=int32), ema=Array([0.], dtype=float32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    ema: Any


@pytree_dataclass
class EWMA(Transform):
    """Exponentially weighted moving average of the updates.

    ``kind="average"``:  m ← decay·m + (1 − decay)·u  (the EWMA of seed 000 §5.1.1, Adam's moments)
    ``kind="momentum"``: m ← decay·m + u              (Polyak's heavy-ball buffer, seed 002 eq. 1)
    The output is m, or with ``nesterov=True`` the look-ahead combination decay·m + (1 − decay)·u
    (average) / decay·m + u (momentum) evaluated with the new m — the reformulation of Nesterov's
    method that needs only the current gradient (Sutskever et al., 2013).
    """

    decay: Any = hyperparameter(UNIT)
    initial: Any = hyperparameter(REAL, default=0.0)
    kind: Literal["average", "momentum"] = static_field(default="average")
    nesterov: bool = static_field(default=False)
    dtype: Any = static_field(default=None)

    def init(self, params: Any) -> Any:
        return EWMAState(tree.full_like(params, self.initial, self.dtype))

    def _weight(self):
        # 1 − decay in Python's double when decay is a Python number (an optimizer closed over by a jitted
        # step, as optax programs do: optax's numbers exactly); in the leaf's dtype when it is traced.
        return 1 - self.decay if self.kind == "average" else 1

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        # Each hyperparameter converted once per dtype, not once per leaf (the same numbers as ``decay * m``).
        decay, weight = tree.promote_once(self.decay), tree.promote_once(self._weight())

        def step(u, m):
            return arith.add(arith.mul(decay(m), m), arith.mul(weight(u), u))

        mean = tree.map(step, updates, state.mean, names=("updates", "state.mean"))
        out = tree.map(step, updates, mean) if self.nesterov else mean
        return tree.cast_like(out, updates), EWMAState(tree.cast_like(mean, state.mean))


@jax.jit
def _one_minus_power(decay: Any, count: jax.Array) -> jax.Array:
    """1 − decay^count, compiled also when called eagerly: XLA's power, as optax's jitted bias correction
    computes it (JAX's eager power rounds differently, ~1e-5 relative at count 3 for decay 0.999)."""
    return 1 - decay**count


@pytree_dataclass
class BiasCorrection(Transform):
    """Divide by the weight an EWMA started at zero has after t steps: u ← u / (1 − decay^(t + step_offset)).

    t counts the calls, starting at 1 (Kingma & Ba, 2015, Algorithm 1). ``step_offset=1`` gives the
    next step's correction used by NAdam.
    """

    decay: Any = hyperparameter(UNIT)
    step_offset: int = static_field(default=0)

    def init(self, params: Any) -> Any:
        return CountState(jnp.zeros([], jnp.int32))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        count = tree.saturating_increment(state.count)
        correction = tree.cast_once(_one_minus_power(self.decay, count + self.step_offset))
        out = tree.map(lambda u: arith.div(u, correction(u)), updates)
        return out, CountState(count)


@pytree_dataclass
class Accumulate(Transform):
    """Running sum: s ← s + u, output s (AdaGrad's accumulator when fed u², Duchi et al. 2011)."""

    initial: Any = hyperparameter(NONNEGATIVE, default=0.0)

    def init(self, params: Any) -> Any:
        return SumState(tree.full_like(params, self.initial))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        total = tree.map(lambda u, s: arith.add(s, u), updates, state.total, names=("updates", "state.total"))
        return tree.cast_like(total, updates), SumState(tree.cast_like(total, state.total))


@pytree_dataclass
class RunningMax(Transform):
    """Running maximum: v ← max(decay·v, u), output v.

    decay = 1 is AMSGrad's max over the second moments (Reddi et al., 2018); decay = b2 on |g| is
    AdaMax's infinity norm (Kingma & Ba, 2015, §7.1).
    """

    decay: Any = hyperparameter(UNIT_CLOSED, default=1.0)

    def init(self, params: Any) -> Any:
        return MaxState(tree.zeros_like(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        maximum = tree.map(
            lambda u, v: jnp.maximum(arith.mul(self.decay, v), u),
            updates,
            state.maximum,
            names=("updates", "state.maximum"),
        )
        return tree.cast_like(maximum, updates), MaxState(tree.cast_like(maximum, state.maximum))


@pytree_dataclass
class InterpolatedMomentum(Transform):
    """Lion's two-rate momentum (Chen et al., 2023): output c = b1·m + (1 − b1)·u, then m ← b2·m + (1 − b2)·u."""

    b1: Any = hyperparameter(UNIT)
    b2: Any = hyperparameter(UNIT)
    dtype: Any = static_field(default=None)

    def init(self, params: Any) -> Any:
        return EWMAState(tree.zeros_like(params, self.dtype))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        b1, b2 = self.b1, self.b2
        w1, w2 = 1 - b1, 1 - b2  # in double for Python numbers, as optax (see EWMA._weight); once, not per leaf
        out = tree.map(
            lambda u, m: arith.add(arith.mul(w1, u), arith.mul(b1, m)),
            updates,
            state.mean,
            names=("updates", "state.mean"),
        )
        mean = tree.map(lambda u, m: arith.add(arith.mul(w2, u), arith.mul(b2, m)), updates, state.mean)
        return tree.cast_like(out, updates), EWMAState(tree.cast_like(mean, state.mean))


def _abs_square(x: jax.Array) -> jax.Array:
    """|x|²: x² for real x, x·conj(x) (real) for complex x."""
    return jnp.real(x * jnp.conj(x)) if jnp.iscomplexobj(x) else arith.square(x)


@pytree_dataclass
class ScaleByUpdateRMS(Transform):
    """Multiply by the RMS of past outgoing updates (Adadelta's unit correction, Zeiler 2012):

    out = sqrt(E[Δ²] + eps) · u, then E[Δ²] ← decay·E[Δ²] + (1 − decay)·out².
    """

    decay: Any = hyperparameter(UNIT)
    eps: Any = hyperparameter(NONNEGATIVE)

    def init(self, params: Any) -> Any:
        return UpdateRMSState(tree.zeros_like(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        eps = self.eps
        out = tree.map(
            lambda u, s: arith.mul(arith.sqrt(arith.add(s, eps)), u),
            updates,
            state.mean_square,
            names=("updates", "state.mean_square"),
        )
        decay = self.decay
        weight = 1 - decay  # in double for a Python number, as optax (see EWMA._weight); once, not per leaf
        mean_square = tree.map(
            lambda o, s: arith.add(arith.mul(decay, s), arith.mul(weight, _abs_square(o))), out, state.mean_square
        )
        return tree.cast_like(out, updates), UpdateRMSState(tree.cast_like(mean_square, state.mean_square))


def ewma(
    decay: Any,
    *,
    kind: Literal["average", "momentum"] = "average",
    nesterov: bool = False,
    initial: Any = 0.0,
    dtype: Any = None,
) -> EWMA:
    """Exponentially weighted moving average (or, with ``kind="momentum"``, the momentum buffer).

    Args:
      decay: β in [0, 1).
      kind: ``"average"`` for m ← βm + (1−β)u, ``"momentum"`` for m ← βm + u.
      nesterov: output the look-ahead combination instead of m.
      initial: initial value of m (0 in the seeds; RMSprop's ``initial_scale``).
      dtype: dtype of the buffer (``mu_dtype``); defaults to each parameter's dtype.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.ewma(0.9, kind="momentum")
      >>> g = jnp.array([1.0]); state = tx.init(g)
      >>> for _ in range(3):
      ...     m, state = tx.update(g, state)
      >>> m  # (1 + 0.9 + 0.81)·g
      Array([2.71], dtype=float32)
    """
    check_choice("ewma", "kind", kind, ("average", "momentum"))
    nesterov = check_flag("ewma", "nesterov", nesterov)
    return check_hyperparameters(EWMA(decay, initial, kind, nesterov, canonical_dtype(dtype, "ewma", "dtype")), "ewma")


def bias_correction(decay: Any, *, step_offset: int = 0) -> BiasCorrection:
    """Bias correction of a zero-initialised EWMA: u ← u / (1 − decay^t).

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.chain(gradflow.ewma(0.9), gradflow.debias(0.9))
      >>> g = jnp.array([2.0])
      >>> tx.update(g, tx.init(g))[0].round(4)  # the first corrected average is the first sample
      Array([2.], dtype=float32)
    """
    step_offset = check_integer("bias_correction", "step_offset", step_offset, low=0)
    return check_hyperparameters(BiasCorrection(decay, step_offset), "bias_correction")


def accumulate(initial: Any = 0.0) -> Accumulate:
    """Running sum s ← s + u starting at ``initial`` (chain after :func:`square` for AdaGrad, Duchi et al. 2011).

    Args:
      initial: s₀ ≥ 0, the starting value of every coordinate.

    Returns:
      An :class:`Accumulate` whose state is a :class:`SumState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.accumulate()
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(2):
      ...     s, state = tx.update(jnp.array([1.0, 2.0]), state)
      >>> s
      Array([2., 4.], dtype=float32)
    """
    return check_hyperparameters(Accumulate(initial), "accumulate")


def running_max(decay: Any = 1.0) -> RunningMax:
    """Running maximum v ← max(decay·v, u) from v = 0 (AMSGrad with decay 1, AdaMax with decay b2).

    Args:
      decay: in [0, 1], the factor applied to the previous maximum.

    Returns:
      A :class:`RunningMax` whose state is a :class:`MaxState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.running_max()
      >>> state = tx.init(jnp.zeros(2))
      >>> for u in ([1.0, 3.0], [2.0, 1.0]):
      ...     v, state = tx.update(jnp.array(u), state)
      >>> v
      Array([2., 3.], dtype=float32)
    """
    return check_hyperparameters(RunningMax(decay), "running_max")


def interpolated_momentum(b1: Any = 0.9, b2: Any = 0.99, dtype: Any = None) -> InterpolatedMomentum:
    """Lion's momentum (Chen et al., 2023): output c = b1·m + (1 − b1)·u, then m ← b2·m + (1 − b2)·u.

    Args:
      b1: weight of the momentum in the output, in [0, 1).
      b2: decay of the momentum, in [0, 1).
      dtype: dtype of m (defaults to each parameter's dtype).

    Returns:
      An :class:`InterpolatedMomentum` whose state is an :class:`EWMAState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.interpolated_momentum(b1=0.9, b2=0.99)
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(2):
      ...     c, state = tx.update(jnp.array([1.0, -2.0]), state)
      ...     print([round(float(x), 4) for x in c])  # 0.1·u, then 0.9·(0.01·u) + 0.1·u
      [0.1, -0.2]
      [0.109, -0.218]
    """
    dtype = canonical_dtype(dtype, "interpolated_momentum", "dtype")
    return check_hyperparameters(InterpolatedMomentum(b1, b2, dtype), "interpolated_momentum")


def scale_by_update_rms(decay: Any = 0.9, eps: Any = 1e-6) -> ScaleByUpdateRMS:
    """Adadelta's numerator (Zeiler, 2012): multiply by sqrt(E[Δθ²] + eps) of past outgoing updates.

    out = sqrt(E[Δ²] + eps) · u, then E[Δ²] ← decay·E[Δ²] + (1 − decay)·out², from E[Δ²] = 0.

    Args:
      decay: ρ in [0, 1), the decay of E[Δ²].
      eps: ε ≥ 0 inside the root.

    Returns:
      A :class:`ScaleByUpdateRMS` whose state is an :class:`UpdateRMSState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_update_rms(decay=0.5, eps=1.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> for _ in range(2):
      ...     out, state = tx.update(jnp.array([4.0, -4.0]), state)
      ...     print(out)  # √(0 + 1)·u, then √(0.5·4² + 1)·u
      [ 4. -4.]
      [ 12. -12.]
    """
    return check_hyperparameters(ScaleByUpdateRMS(decay, eps), "scale_by_update_rms")


def trace(decay: Any, nesterov: bool = False, accumulator_dtype: Any = None) -> Transform:
    """optax's momentum buffer: t ← decay·t + u, output t (or decay·t + u with ``nesterov``).

    Polyak's heavy ball (seed 002 eq. 1); with ``nesterov`` the look-ahead form of Sutskever et al. (2013).

    Args:
      decay: the momentum, in [0, 1).
      nesterov: output decay·t + u with the new t.
      accumulator_dtype: dtype of t (defaults to each parameter's dtype).

    Returns:
      ``ewma(decay, kind="momentum", nesterov=nesterov)`` with its state presented as a :class:`TraceState`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = trace(0.5)
      >>> state = tx.init(jnp.zeros(1))
      >>> for _ in range(2):
      ...     t, state = tx.update(jnp.ones(1), state)
      >>> t  # 1 + 0.5
      Array([1.5], dtype=float32)
    """
    inner = ewma(
        decay,
        kind="momentum",
        nesterov=nesterov,
        dtype=canonical_dtype(accumulator_dtype, "trace", "accumulator_dtype"),
    )
    return composite(inner, TraceState, trace="mean")


def ema(decay: Any, debias: bool = True, accumulator_dtype: Any = None) -> Transform:
    """optax's exponential moving average: m ← decay·m + (1 − decay)·u, output m/(1 − decay^t) (or m).

    Args:
      decay: in [0, 1).
      debias: divide by 1 − decay^t (t counts the updates from 1).
      accumulator_dtype: dtype of m (defaults to each parameter's dtype).

    Returns:
      ``chain(ewma(decay), bias_correction(decay))`` (no correction with ``debias=False``), with its state
      presented as an :class:`EmaState` (the count advances in both cases, as in optax).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = ema(0.9)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].round(4)  # debiased: the first sample itself
      Array([2.], dtype=float32)
    """
    average = ewma(decay, dtype=canonical_dtype(accumulator_dtype, "ema", "accumulator_dtype"))
    if check_flag("ema", "debias", debias):
        return name_arguments(
            composite(chain(average, bias_correction(decay)), EmaState, count="1.count", ema="0.mean"), decay=":decay"
        )
    return composite(chain(average), EmaState, count=OWN_COUNT, ema="0.mean")
