"""Reading and changing hyperparameters: in a transform, in a state, and optax's ``inject_hyperparams``.

A gradflow transform already holds its hyperparameters as data, so :func:`get_hyperparam` and
:func:`set_hyperparam` work on any transform (by field name: ``learning_rate``, ``weight_decay``,
``decay`` ...). When the transform lives somewhere it cannot be replaced (a flax ``TrainState`` or
``nnx.Optimizer`` keeps it static), :func:`inject_hyperparams` moves the hyperparameters into the
optimizer *state*, where both functions reach them too, under the names of the factory's arguments.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import (
    FunctionSchedule,
    Schedule,
    ScheduleState,
    Transform,
    is_schedule_like,
    pytree_dataclass,
    static_field,
)

__all__ = [
    "InjectHyperparams",
    "InjectHyperparamsState",
    "get_hyperparam",
    "inject_hyperparams",
    "set_hyperparam",
]


class InjectHyperparamsState(NamedTuple):
    """The state of :func:`inject_hyperparams`.

    Attributes:
      count: int32 number of updates done (the argument of the schedules).
      hyperparams: the value of each injected hyperparameter, by argument name. Numbers are read from
        here at each update (so changing them here changes the optimizer); schedules are written here.
      inner: the state of the optimizer that the factory builds.

    >>> import gradflow
    >>> state = gradflow.inject_hyperparams(gradflow.sgd)(learning_rate=0.1).init(jnp.zeros(2))
    >>> int(state.count), state.hyperparams["learning_rate"]
    (0, Array(0.1, dtype=float32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    hyperparams: dict[str, jax.Array]
    inner: Any


@pytree_dataclass
class InjectHyperparams(Transform):
    """``factory(**hyperparams)`` rebuilt at every update from hyperparameters held in the state.

    >>> import gradflow
    >>> tx = gradflow.inject_hyperparams(gradflow.sgd)(learning_rate=0.1)
    >>> isinstance(tx, InjectHyperparams), tx.factory is gradflow.sgd
    (True, True)
    """

    factory: Callable[..., Any] = static_field()
    hyperparams: dict[str, Any]
    static_kwargs: tuple[tuple[str, Any], ...] = static_field(default=())

    def _build(self, values: dict[str, Any]) -> Any:
        return self.factory(**values, **dict(self.static_kwargs))

    def _values(self, count: jax.Array, stored: dict[str, jax.Array] | None) -> dict[str, jax.Array]:
        values = {}
        for name, value in self.hyperparams.items():
            if isinstance(value, Schedule):
                value = value(count)
            elif stored is not None:
                value = stored[name]
            value = jnp.asarray(value)
            values[name] = value.astype(value.dtype)  # no weak types: the state is scan-stable
        return values

    def init(self, params):
        count = jnp.zeros([], jnp.int32)
        values = self._values(count, None)
        return InjectHyperparamsState(count, values, self._build(values).init(params))

    def update(self, updates, state, params=None, **extra):
        if not isinstance(state, InjectHyperparamsState):
            raise ValueError(
                f"inject_hyperparams({_name(self.factory)}) needs the InjectHyperparamsState that its init "
                f"returned, got {type(state).__name__}"
            )
        values = self._values(state.count, state.hyperparams)
        updates, inner = self._build(values).update(updates, state.inner, params, **extra)
        return updates, InjectHyperparamsState(tree.saturating_increment(state.count), values, inner)


def _name(factory: Any) -> str:
    return getattr(factory, "__name__", type(factory).__name__)


def inject_hyperparams(factory: Callable[..., Any], static_args: tuple[str, ...] = ()) -> Callable[..., Any]:
    """Wrap an optimizer factory so that its numeric arguments live in the optimizer state.

    ``inject_hyperparams(gradflow.adam)(learning_rate=1e-3)`` behaves as ``gradflow.adam(1e-3)`` and its
    state has ``hyperparams["learning_rate"]``: change it there (``set_hyperparam(state, ...)``) and the
    next update uses the new value. An argument given as a schedule is evaluated at each step and its
    current value written to the state. Numeric arguments must be passed by keyword; arguments named in
    ``static_args``, and any that are not numbers (flags, dtypes, masks), are fixed at construction.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.inject_hyperparams(gradflow.sgd)(learning_rate=0.1)
      >>> params = {"w": jnp.array([1.0])}
      >>> state = gradflow.set_hyperparam(tx.init(params), "learning_rate", 0.5)
      >>> tx.update(params, state, params)[0]["w"]
      Array([-0.5], dtype=float32)
    """

    def build(*args: Any, **kwargs: Any) -> InjectHyperparams:
        if args:
            raise TypeError(f"inject_hyperparams({_name(factory)}): pass the hyperparameters by keyword")
        numeric: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for name, value in kwargs.items():
            injectable = isinstance(value, Schedule) or is_schedule_like(value) or _is_number(value)
            (numeric if injectable and name not in static_args else fixed)[name] = value
        numeric = {k: FunctionSchedule(v) if is_schedule_like(v) else v for k, v in numeric.items()}
        tx = InjectHyperparams(factory, numeric, tuple(sorted(fixed.items())))
        tx._build(tx._values(jnp.zeros([], jnp.int32), None))  # the factory validates the values now
        return tx

    build.__name__ = f"inject_hyperparams({_name(factory)})"
    return build


def _is_number(value: Any) -> bool:
    """A Python int/float or a numeric array (not a bool, a dtype or a string)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    dtype = getattr(value, "dtype", None)
    return not isinstance(value, type) and dtype is not None and jnp.issubdtype(dtype, jnp.number)


# --- reading and writing -------------------------------------------------------------------------------------------


def _is_hyperparam_holder(x: Any) -> bool:
    return isinstance(x, (InjectHyperparamsState, ScheduleState))


def _state_holders(state: Any) -> list[Any]:
    return [x for x in jax.tree.leaves(state, is_leaf=_is_hyperparam_holder) if _is_hyperparam_holder(x)]


def _transform_fields(obj: Any) -> list[tuple[Any, str, Any]]:
    """Every (transform, field name, value) of the data fields in a tree of transforms, in order."""
    found = []
    if isinstance(obj, Transform) and dataclasses.is_dataclass(obj):
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            if field.metadata.get("static", False):
                continue
            if isinstance(obj, InjectHyperparams) and field.name == "hyperparams":
                found += [(obj, name, v) for name, v in value.items()]
            elif isinstance(value, (Transform, tuple, list)):
                found += _transform_fields(value)
            else:
                found.append((obj, field.name, value))
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            found += _transform_fields(item)
    return found


def _available(obj: Any) -> str:
    if isinstance(obj, Transform):
        names = {name for _, name, _ in _transform_fields(obj)}
    else:
        names = {name for holder in _state_holders(obj) for name in holder.hyperparams}
    return ", ".join(sorted(names)) or "none"


def get_hyperparam(tx_or_state: Any, name: str) -> Any:
    """The value of the hyperparameter ``name`` in a transform or in an optimizer state.

    On a transform, ``name`` is a field name of one of its primitives (the first one, in chain order,
    that has it) or an argument of :func:`inject_hyperparams`; the value may be a schedule. On a state,
    it is a hyperparameter of :func:`inject_hyperparams` or a scheduled one: the value used by the
    latest update.

    Raises:
      KeyError: naming the hyperparameters that exist.

    Example:
      >>> import gradflow
      >>> float(gradflow.get_hyperparam(gradflow.adamw(0.01, weight_decay=0.1), "weight_decay"))
      0.1
    """
    if isinstance(tx_or_state, Transform):
        for _, field, value in _transform_fields(tx_or_state):
            if field == name:
                return value
    else:
        for holder in _state_holders(tx_or_state):
            if name in holder.hyperparams:
                return holder.hyperparams[name]
    kind = "transform" if isinstance(tx_or_state, Transform) else "state"
    raise KeyError(f"get_hyperparam: no hyperparameter {name!r} in this {kind}; it has: {_available(tx_or_state)}")


def set_hyperparam(tx_or_state: Any, name: str, value: Any) -> Any:
    """A copy of the transform or state with every hyperparameter called ``name`` set to ``value``.

    In a state the value takes the stored value's dtype and shape (so a ``lax.scan`` carry stays
    stable); only :func:`inject_hyperparams` states can be changed (a scheduled value is recomputed at
    every step). In a transform, any field called ``name`` is replaced, by a number or a schedule.

    Raises:
      KeyError: naming the hyperparameters that exist.

    Example:
      >>> import gradflow
      >>> tx = gradflow.set_hyperparam(gradflow.sgd(0.1, momentum=0.9), "learning_rate", 0.2)
      >>> gradflow.get_hyperparam(tx, "learning_rate")
      0.2
    """
    if isinstance(tx_or_state, Transform):
        new, changed = _replace_in_transform(tx_or_state, name, value)
    else:
        found = [False]

        def replace(node: Any) -> Any:
            if isinstance(node, InjectHyperparamsState) and name in node.hyperparams:
                found[0] = True
                old = node.hyperparams[name]
                cast = jnp.broadcast_to(jnp.asarray(value, jnp.result_type(old)), jnp.shape(old))
                if (
                    jnp.issubdtype(jnp.result_type(old), jnp.integer)
                    and not isinstance(value, jax.core.Tracer)
                    and bool(jnp.any(cast != jnp.asarray(value)))
                ):
                    raise TypeError(
                        f"set_hyperparam: {name} is stored as {jnp.result_type(old)} (it was injected as an integer), "
                        f"so {value!r} would be truncated to {cast}; inject it as a float ({name}=1.0, not 1)"
                    )
                return node._replace(hyperparams={**node.hyperparams, name: cast})
            return node

        new = jax.tree.map(replace, tx_or_state, is_leaf=_is_hyperparam_holder)
        changed = found[0]
    if not changed:
        kind = "transform" if isinstance(tx_or_state, Transform) else "injected state"
        raise KeyError(f"set_hyperparam: no hyperparameter {name!r} in this {kind}; it has: {_available(tx_or_state)}")
    return new


def _replace_in_transform(obj: Any, name: str, value: Any) -> tuple[Any, bool]:
    if isinstance(obj, (tuple, list)):
        results = [_replace_in_transform(item, name, value) for item in obj]
        return type(obj)(r[0] for r in results), any(r[1] for r in results)
    if not (isinstance(obj, Transform) and dataclasses.is_dataclass(obj)):
        return obj, False
    changes, changed = {}, False
    for field in dataclasses.fields(obj):
        if field.metadata.get("static", False):
            continue
        current = getattr(obj, field.name)
        if isinstance(obj, InjectHyperparams) and field.name == "hyperparams":
            if name in current:
                changes["hyperparams"], changed = {**current, name: value}, True
        elif field.name == name:
            changes[field.name], changed = value, True
        elif isinstance(current, (Transform, tuple, list)):
            new, inner_changed = _replace_in_transform(current, name, value)
            if inner_changed:
                changes[field.name], changed = new, True
    return (dataclasses.replace(obj, **changes) if changes else obj), changed
