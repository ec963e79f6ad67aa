"""Record measurements of the updates in the state: ``snapshot``, ``monitor``, ``measure_with_ema``.

These transforms pass the updates through unchanged; they only store what a measure gives (a norm, a
flag …) in the state, where ``optax.tree.get(state, name)`` finds it by name. A measure that is a
Python function is static data of the transform (define it once: a new function object recompiles a
jitted step); a measure that is a transform (:func:`measure_with_ema`) is data, with its own state.

One departure from optax: optax's ``monitor`` starts with an empty ``measurements`` dict and fills it
at the first update, so its state changes structure (and cannot be carried through ``lax.scan``);
gradflow's holds zeros of each measurement's shape and dtype from ``init`` on, the structure optax's
state has after its first update (an optax checkpoint taken after training started restores into it).
Likewise ``measure_with_ema`` keeps a boolean or integer measurement's average in floating point from
``init`` on (optax starts it in the measurement's dtype and switches to float at the first update).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import UNIT_CLOSED, EmptyState, Transform, hyperparameter, pytree_dataclass, static_field
from gradflow.transforms.moments import EmaState, canonical_dtype
from gradflow.validation import check_flag, check_range
from gradflow.wrappers._common import as_transform

__all__ = [
    "Measure",
    "MeasureWithEMA",
    "Monitor",
    "MonitorState",
    "Snapshot",
    "SnapshotState",
    "measure_with_ema",
    "monitor",
    "snapshot",
]


class SnapshotState(NamedTuple):
    """The state of :func:`snapshot`: ``{measure_name: measurement}`` of the latest updates.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.snapshot("total", jnp.sum).init(jnp.ones(3))  # at init: the measure of the params
      SnapshotState(measurement={'total': Array(3., dtype=float32)})
    """

    measurement: dict[str, Any]


class MonitorState(NamedTuple):
    """The state of :func:`monitor`: the latest measurements by name, and each measure's own state.

    Attributes:
      measurements: ``{name: measurement}`` of the latest updates (zeros until the first update).
      measure_states: the states of the measures, in the order they were given.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.monitor({"total": jnp.sum}).init(jnp.ones(3))
      MonitorState(measurements={'total': Array(0., dtype=float32)}, measure_states=(EmptyState(),))
    """

    measurements: dict[str, Any]
    measure_states: tuple[Any, ...]


@pytree_dataclass
class Snapshot(Transform):
    """Store ``measure(updates)`` under ``measure_name``; pass the updates unchanged (built by :func:`snapshot`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.snapshot("peak", jnp.max)
      >>> isinstance(tx, gf.Snapshot), tx.measure_name
      (True, 'peak')
    """

    measure_name: str = static_field()
    measure: Any = static_field()

    def init(self, params: Any) -> Any:
        return SnapshotState({self.measure_name: self.measure(params)})

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        return updates, SnapshotState({self.measure_name: self.measure(updates)})


@pytree_dataclass
class Measure(Transform):
    """A Python function of the updates as a stateless measure: its "updates" are ``measure(updates)``.

    :func:`monitor` wraps each function it is given in one (optax's ``stateless`` measure).

    Example:
      >>> import jax.numpy as jnp
      >>> Measure(jnp.sum).update(jnp.ones(3), EmptyState())
      (Array(3., dtype=float32), EmptyState())
    """

    measure: Any = static_field()

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        return self.measure(updates), state


@pytree_dataclass
class Monitor(Transform):
    """Run each measure on the updates and record the results by name (built by :func:`monitor`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.monitor({"total": jnp.sum})
      >>> isinstance(tx, gf.Monitor), tx.names
      (True, ('total',))
    """

    measures: tuple[Transform, ...]
    names: tuple[str, ...] = static_field()

    def _measure_all(self, updates: Any, states: tuple[Any, ...], params: Any, extra: dict[str, Any]):
        measurements, new_states = {}, []
        for name, measure, state in zip(self.names, self.measures, states):
            measurements[name], state = measure.update(updates, state, params, **extra)
            new_states.append(state)
        return measurements, tuple(new_states)

    def init(self, params: Any) -> Any:
        states = tuple(measure.init(params) for measure in self.measures)
        # zeros shaped like the measurements, so that the state keeps one structure (scan-stable)
        shapes = jax.eval_shape(lambda p, s: self._measure_all(p, s, p, {})[0], params, states)
        return MonitorState(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes), states)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        measurements, states = self._measure_all(updates, state.measure_states, params, extra)
        return updates, MonitorState(measurements, states)


@pytree_dataclass
class MeasureWithEMA(Transform):
    """A measure recorded as its exponential moving average (built by :func:`measure_with_ema`).

    m = measure(u); a ← decay·a + (1 − decay)·m; the output is a / (1 − decay^t) (or a without
    ``debias``), t the number of updates. The state is ``(EmptyState(), EmaState(count, ema))``, the
    state of optax's ``chain(stateless(measure), ema(...))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.measure_with_ema(jnp.sum, decay=0.9)
      >>> isinstance(tx, gf.MeasureWithEMA), tx.decay
      (True, 0.9)
    """

    measure: Any = static_field()
    decay: Any = hyperparameter(UNIT_CLOSED, default=0.9, outside="nan_updates")
    debias: bool = static_field(default=True)
    accumulator_dtype: Any = static_field(default=None)

    def init(self, params: Any) -> Any:
        shapes = jax.eval_shape(self.measure, params)
        dtype = self.accumulator_dtype
        ema = jax.tree.map(lambda x: jnp.zeros(x.shape, dtype or _floating(x.dtype)), shapes)
        return (EmptyState(), EmaState(jnp.zeros([], jnp.int32), ema))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        empty, ema_state = state
        count = tree.saturating_increment(ema_state.count)

        def average(m, a):
            # as optax with a Python decay: each product in its factor's dtype, the sum promoted
            m = jnp.asarray(m)
            m = m.astype(_floating(m.dtype))
            return jnp.asarray(1 - self.decay).astype(m.dtype) * m + jnp.asarray(self.decay).astype(a.dtype) * a

        new = jax.tree.map(average, self.measure(updates), ema_state.ema)
        out = new
        if self.debias:
            correction = 1 - jnp.asarray(self.decay) ** count
            out = jax.tree.map(lambda x: x / correction.astype(x.dtype), new)
        ema = jax.tree.map(lambda x, a: x.astype(a.dtype), new, ema_state.ema)
        return out, (empty, EmaState(count, ema))


def _floating(dtype: Any) -> Any:
    """``dtype`` if it is floating (or complex), else JAX's default float (for a boolean or integer measure)."""
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.result_type(float)


def snapshot(measure_name: str, measure: Any) -> Snapshot:
    """Record ``measure(updates)`` in the state under ``measure_name``; the updates pass unchanged.

    Put it in a chain to see the updates at that point (``optax.tree.get(state, measure_name)`` or
    ``state[i].measurement[measure_name]`` reads it). At ``init`` the measure is taken of the params.

    Args:
      measure_name: the key of the measurement in :class:`SnapshotState`.
      measure: a function of the updates returning arrays (static data).

    Returns:
      A :class:`Snapshot` whose state is a :class:`SnapshotState`.

    Raises:
      TypeError: if ``measure_name`` is not a string or ``measure`` is not callable.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.chain(gf.snapshot("before", gf.tree.global_norm), gf.clip_by_global_norm(1.0))
      >>> _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
      >>> float(state[0].measurement["before"])
      5.0
    """
    if not isinstance(measure_name, str):
        raise TypeError(f"snapshot: measure_name must be a string, got {measure_name!r}")
    if not callable(measure):
        raise TypeError(f"snapshot: measure must be a function of the updates, got {measure!r}")
    return Snapshot(measure_name, measure)


def monitor(measures: dict[str, Any]) -> Monitor:
    """Record measurements of the updates by name; the updates pass unchanged.

    For each ``name: measure`` of ``measures``: a function of the updates is applied as it is; a
    transform (such as :func:`measure_with_ema`) is run on the updates with its own state, and its
    output is the measurement. The state is a :class:`MonitorState` (``measurements`` by name, and the
    measures' states in order); ``measurements`` holds zeros until the first update (optax's starts
    empty, see the module docstring).

    Args:
      measures: a dict from name (a string) to a function of the updates or a transform.

    Returns:
      A :class:`Monitor` whose state is a :class:`MonitorState`.

    Raises:
      TypeError: if ``measures`` is not a dict of such names and measures.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.monitor({"norm": gf.tree.global_norm, "norm_ema": gf.measure_with_ema(gf.tree.global_norm, 0.5)})
      >>> state = tx.init(jnp.zeros(2))
      >>> for g in ([3.0, 4.0], [0.0, 1.0]):
      ...     updates, state = tx.update(jnp.array(g), state)
      >>> {name: round(float(value), 4) for name, value in state.measurements.items()}
      {'norm': 1.0, 'norm_ema': 2.3333}
    """
    if not hasattr(measures, "items"):
        raise TypeError(f"monitor: measures must be a dict from name to measure, got {measures!r}")
    names: list[str] = []
    txs: list[Transform] = []
    for name, measure in measures.items():
        if not isinstance(name, str):
            raise TypeError(f"monitor: the names of measures must be strings, got {name!r}")
        if callable(measure) and not isinstance(measure, Transform):
            txs.append(Measure(measure))
        else:
            txs.append(as_transform("monitor", measure, f"measures[{name!r}]"))
        names.append(name)
    return Monitor(tuple(txs), tuple(names))


def measure_with_ema(
    measure: Any, decay: Any, debias: bool = True, accumulator_dtype: Any | None = None
) -> MeasureWithEMA:
    """A measure for :func:`monitor` that records the exponential moving average of ``measure(updates)``.

    m = measure(u); a ← decay·a + (1 − decay)·m, starting from a = 0; the measurement is
    a / (1 − decay^t) with ``debias`` (t the number of updates, from 1), else a. Used alone in a chain
    it returns the measurement in place of the updates, as optax's does: put it in :func:`monitor`.

    Args:
      measure: a function of the updates returning arrays (static data).
      decay: the decay rate in [0, 1] (a leaf).
      debias: divide by 1 − decay^t.
      accumulator_dtype: the dtype of the average; by default the measurement's (a floating type for a
        boolean or integer measurement).

    Returns:
      A :class:`MeasureWithEMA` whose state is ``(EmptyState(), EmaState(count, ema))``.

    Raises:
      TypeError: if ``measure`` is not callable; ValueError: if ``decay`` is outside [0, 1].

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.monitor({"clipped": gf.measure_with_ema(lambda u: gf.tree.global_norm(u) > 1.0, decay=0.9)})
      >>> state = tx.init(jnp.zeros(1))
      >>> for g in (2.0, 0.5):
      ...     _, state = tx.update(jnp.array([g]), state)
      >>> round(float(state.measurements["clipped"]), 4)  # (0.9·0.1·1 + 0.1·0) / (1 − 0.9²)
      0.4737
    """
    if not callable(measure):
        raise TypeError(f"measure_with_ema: measure must be a function of the updates, got {measure!r}")
    check_range("measure_with_ema", "decay", decay, 0.0, 1.0, high_open=False)
    dtype = canonical_dtype(accumulator_dtype, "measure_with_ema", "accumulator_dtype")
    return MeasureWithEMA(measure, decay, check_flag("measure_with_ema", "debias", debias), dtype)
