"""Reading and changing hyperparameters: in a transform, in a state, and optax's ``inject_hyperparams``.

A gradflow transform already holds its hyperparameters as data, so :func:`get_hyperparam` and
:func:`set_hyperparam` work on any transform, by the factory's argument names (``learning_rate``, ``b1``,
``momentum`` ...; see :func:`gradflow.core.name_arguments`) or by field name, and ``set_hyperparam``
re-checks the declared range. When the transform lives somewhere it cannot be replaced (a flax ``TrainState`` or
``nnx.Optimizer`` keeps it static), :func:`inject_hyperparams` moves the hyperparameters into the
optimizer *state*, optax's :class:`InjectStatefulHyperparamsState`, where both functions reach them
too, under the names of the factory's arguments.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import (
    Field,
    FunctionSchedule,
    Schedule,
    ScheduleState,
    Transform,
    dotted,
    hyperparameter_fields,
    is_schedule_like,
    named_arguments,
    pytree_dataclass,
    static_field,
)
from gradflow.validation import check_allowed, check_sequence
from gradflow.wrappers._common import as_transform

__all__ = [
    "InjectHyperparams",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "StatefulSchedule",
    "WrappedSchedule",
    "WrappedScheduleState",
    "get_hyperparam",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "set_hyperparam",
]


class InjectHyperparamsState(NamedTuple):
    """optax's older state of ``inject_hyperparams``, kept for code that names it (optax deprecated it in 0.1.9).

    :func:`inject_hyperparams` returns an :class:`InjectStatefulHyperparamsState`, as optax does;
    :func:`get_hyperparam` and :func:`set_hyperparam` read and write either.

    Attributes:
      count: int32 number of updates done.
      hyperparams: the value of each injected hyperparameter, by argument name.
      inner_state: the state of the optimizer that the factory builds.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> state = gradflow.InjectHyperparamsState(jnp.int32(0), {"learning_rate": jnp.float32(0.5)}, ())
      >>> float(gradflow.get_hyperparam(state, "learning_rate"))
      0.5
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    hyperparams: dict[str, jax.Array]
    inner_state: Any


class InjectStatefulHyperparamsState(NamedTuple):
    """The state of :func:`inject_hyperparams` (optax's class, fields and order).

    Attributes:
      count: int32 number of updates done (saturating).
      hyperparams: the value of each injected hyperparameter, by argument name. Numbers are read from
        here at each update (so changing them here changes the optimizer); the value of a scheduled
        one is written here (the value the latest update used; at init, the first update's).
      hyperparams_states: the state of each scheduled hyperparameter's schedule, by argument name (a
        :class:`WrappedScheduleState` for a function of the step count).
      inner_state: the state of the optimizer that the factory builds.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> state = gradflow.inject_hyperparams(gradflow.sgd)(learning_rate=0.1).init(jnp.zeros(2))
      >>> int(state.count), state.hyperparams["learning_rate"], state.hyperparams_states
      (0, Array(0.1, dtype=float32), {})
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: Any


class WrappedScheduleState(NamedTuple):
    """The state of a :class:`WrappedSchedule`: ``count``, the int32 number of updates done.

    Example:
      >>> import gradflow
      >>> gradflow.WrappedSchedule(lambda count: 0.1).init()
      WrappedScheduleState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count


@runtime_checkable
class StatefulSchedule(Protocol):
    """optax's protocol of a schedule with a state: ``init()``, ``update(state, **extra)``, ``__call__(state)``.

    ``__call__`` gives the value for the current update from the schedule's state (and the update's
    extra arguments, e.g. ``value``); ``update`` advances the state. :func:`inject_hyperparams` keeps
    the state in ``hyperparams_states``. :class:`WrappedSchedule` is one.

    Example:
      >>> import gradflow
      >>> isinstance(gradflow.WrappedSchedule(lambda count: 1.0), StatefulSchedule)
      True
    """

    def init(self) -> Any:
        """The schedule's initial state."""
        ...

    def update(self, state: Any, **extra_args: Any) -> Any:
        """The state after one more update."""
        ...

    def __call__(self, state: Any, **extra_args: Any) -> Any:
        """The hyperparameter's value for the current update."""
        ...


@dataclasses.dataclass(frozen=True)
class WrappedSchedule:
    """A function of the step count as a :class:`StatefulSchedule` whose state is the count (optax's class).

    ``init() = WrappedScheduleState(0)``; ``update`` adds one (saturating); ``__call__(state)`` is
    ``schedule_fn(state.count)``. A pytree: a gradflow :class:`~gradflow.Schedule` stays data (its
    numbers are leaves), a plain function is static.

    Example:
      >>> import gradflow
      >>> schedule = gradflow.WrappedSchedule(lambda count: 1.0 / (1 + count))
      >>> state = schedule.update(schedule.init())
      >>> float(schedule(state))
      0.5
    """

    schedule_fn: Any

    def __post_init__(self) -> None:
        if not isinstance(self.schedule_fn, Schedule) and is_schedule_like(self.schedule_fn):
            object.__setattr__(self, "schedule_fn", FunctionSchedule(self.schedule_fn))

    def init(self) -> WrappedScheduleState:
        """``WrappedScheduleState(count=0)``."""
        return WrappedScheduleState(jnp.zeros([], jnp.int32))

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
        """The count plus one (saturating)."""
        return WrappedScheduleState(tree.saturating_increment(state.count))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        return self.schedule_fn(state.count)


jax.tree_util.register_dataclass(WrappedSchedule, data_fields=["schedule_fn"], meta_fields=[])


def _is_stateful(value: Any) -> bool:
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None)) and callable(value)


def _convert_floats(value: Any, dtype: Any) -> Any:
    """A floating-point value in ``dtype``, unless it is already a strongly typed array (optax's rule)."""
    if isinstance(value, jax.Array) and not getattr(value, "weak_type", False):
        return value
    current = value.dtype if hasattr(value, "dtype") else type(value)
    if jnp.issubdtype(current, jnp.floating):
        return jnp.asarray(value, dtype)
    return value


def _strong(value: Any) -> jax.Array:
    value = jnp.asarray(value)
    return value.astype(value.dtype)  # no weak types: the state is scan-stable


def _default_dtype(params: Any) -> Any:
    """The dtype of the injected floats by default: the parameters' highest-precision dtype, at least float32.

    optax uses the parameters' highest dtype as it is (``tree.dtype(params, "highest")``), so bfloat16
    parameters get bfloat16 hyperparameters: Adam's b2 = 0.999 rounds to 1.0 and the first update is
    NaN. gradflow promotes to at least float32 (float64 parameters give float64, as in optax). No
    leaves: JAX's default float.
    """
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)]
    if not dtypes:
        return jnp.asarray([]).dtype
    return jnp.promote_types(functools.reduce(jnp.promote_types, dtypes), jnp.float32)


@pytree_dataclass
class InjectHyperparams(Transform):
    """``inner_factory(**hyperparams)`` rebuilt at every update from hyperparameters held in the state.

    ``hyperparams`` holds each injected argument as given: a number (its initial value; the update
    reads the state's), a gradflow :class:`~gradflow.Schedule` or a :class:`WrappedSchedule` (data); a
    stateful schedule that is not a pytree sits in ``stateful`` (static), the other arguments in
    ``static_kwargs``.

    >>> import gradflow
    >>> tx = gradflow.inject_hyperparams(gradflow.sgd)(learning_rate=0.1)
    >>> isinstance(tx, InjectHyperparams), tx.inner_factory is gradflow.sgd
    (True, True)
    """

    inner_factory: Callable[..., Any] = static_field()
    hyperparams: dict[str, Any]
    static_kwargs: tuple[tuple[str, Any], ...] = static_field(default=())
    stateful: tuple[tuple[str, Any], ...] = static_field(default=())
    hyperparam_dtype: Any = static_field(default=None)

    def _schedules(self) -> dict[str, Any]:
        """Each scheduled hyperparameter as a stateful schedule, by name."""
        out: dict[str, Any] = {}
        for name, value in self.hyperparams.items():
            if isinstance(value, Schedule):
                out[name] = WrappedSchedule(value)
            elif _is_stateful(value):
                out[name] = value
        out.update(self.stateful)
        return out

    def _build(self, values: dict[str, Any]) -> Transform:
        return as_transform(
            f"inject_hyperparams({_name(self.inner_factory)})", self.inner_factory(**dict(self.static_kwargs), **values)
        )

    def _dtype(self, params: Any) -> Any:
        return self.hyperparam_dtype if self.hyperparam_dtype is not None else _default_dtype(params)

    def init(self, params):
        dtype = self._dtype(params)
        schedules = self._schedules()
        values = {
            name: _strong(_convert_floats(value, dtype))
            for name, value in self.hyperparams.items()
            if name not in schedules
        }
        states = {name: schedule.init() for name, schedule in schedules.items()}
        values.update({name: _strong(_convert_floats(s(states[name]), dtype)) for name, s in schedules.items()})
        inner_state = self._build(values).init(params)
        return InjectStatefulHyperparamsState(jnp.zeros([], jnp.int32), values, states, inner_state)

    def update(self, updates, state, params=None, **extra):
        if not isinstance(state, InjectStatefulHyperparamsState):
            raise ValueError(
                f"inject_hyperparams({_name(self.inner_factory)}) needs the InjectStatefulHyperparamsState that its "
                f"init returned, got {type(state).__name__}"
            )
        dtype = self._dtype(params)
        schedules = self._schedules()
        values = {name: _strong(_convert_floats(value, dtype)) for name, value in state.hyperparams.items()}
        values.update(
            {
                name: _strong(_convert_floats(s(state.hyperparams_states[name], **extra), dtype))
                for name, s in schedules.items()
            }
        )
        states = {name: s.update(state.hyperparams_states[name], **extra) for name, s in schedules.items()}
        updates, inner_state = self._build(values).update(updates, state.inner_state, params, **extra)
        return updates, InjectStatefulHyperparamsState(
            tree.saturating_increment(state.count), values, states, inner_state
        )


def _name(factory: Any) -> str:
    return getattr(factory, "__name__", type(factory).__name__)


def _is_number(value: Any) -> bool:
    """optax's numeric hyperparameter: a Python int or float, or an array (not a bool, not a NumPy scalar)."""
    return not isinstance(value, bool) and isinstance(value, (int, float, jax.Array, np.ndarray))


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., InjectHyperparams]:
    """Wrap an optimizer factory so that its numeric arguments live in the optimizer state (optax's rule).

    ``inject_hyperparams(gradflow.adam)(learning_rate=1e-3)`` behaves as ``gradflow.adam(1e-3)`` and its
    state, an :class:`InjectStatefulHyperparamsState`, has ``hyperparams["learning_rate"]``: change it
    there (``set_hyperparam(state, ...)``, or optax's ``state.hyperparams[...] = ...``) and the next
    update uses the new value. The arguments are bound to ``inner_factory``'s signature (by position or
    keyword) with its defaults filled in; then, as in optax, each argument that is

    - named in ``static_args``, or a bool: fixed at construction;
    - a stateful schedule (``init``/``update``/``__call__``, e.g. :class:`WrappedSchedule`) or a function
      of the step count (a :class:`~gradflow.Schedule` or a plain function): evaluated at each update,
      its value written to ``hyperparams`` and its state kept in ``hyperparams_states``;
    - a Python int or float or an array: injected into ``hyperparams`` (Python floats and weakly typed
      arrays in ``hyperparam_dtype``, by default the parameters' highest-precision dtype promoted to at
      least float32: optax keeps bfloat16 there, where Adam's b2 = 0.999 becomes 1.0 and its first update
      NaN);
    - anything else (``None``, a dtype, a mask): fixed at construction.

    The injected values are data, so ``jax.grad`` reaches them (hypergradients: differentiate the loss
    after some steps with respect to ``state.hyperparams["learning_rate"]`` or to the number given).
    The factory is called once at construction, so its checks of the values run then.

    Args:
      inner_factory: a function returning a transform (gradflow's or optax's), e.g. ``gradflow.adam``.
      static_args: the name, or names, of arguments that are not to be injected or scheduled (e.g. a
        callable argument that is not a schedule).
      hyperparam_dtype: dtype of the injected floating-point hyperparameters (default: the parameters'
        highest, at least float32).

    Returns:
      A function with ``inner_factory``'s arguments that returns an :class:`InjectHyperparams`.

    Raises:
      ValueError: if ``static_args`` names an argument that ``inner_factory`` does not have.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.inject_hyperparams(gradflow.sgd)(learning_rate=0.1)
      >>> params = {"w": jnp.array([1.0])}
      >>> state = gradflow.set_hyperparam(tx.init(params), "learning_rate", 0.5)
      >>> tx.update(params, state, params)[0]["w"]
      Array([-0.5], dtype=float32)
    """
    owner = f"inject_hyperparams({_name(inner_factory)})"
    if not callable(inner_factory):
        raise TypeError(
            f"inject_hyperparams: inner_factory must be a function returning a transform, got {inner_factory!r}"
        )
    names = (static_args,) if isinstance(static_args, str) else check_sequence(owner, "static_args", static_args)
    if not all(isinstance(name, str) for name in names):
        raise TypeError(f"{owner}: static_args must be an argument name or a list of them, got {static_args!r}")
    static = set(names)
    try:
        signature: inspect.Signature | None = inspect.signature(inner_factory)
    except (TypeError, ValueError):  # a builtin without a signature: keyword arguments only
        signature = None
    if signature is not None and not static <= set(signature.parameters):
        raise ValueError(
            f"{owner}: static_args must name arguments of inner_factory, got "
            f"{sorted(static - set(signature.parameters))}; its arguments are {list(signature.parameters)}"
        )
    if hyperparam_dtype is not None:
        try:
            hyperparam_dtype = jnp.dtype(hyperparam_dtype)
        except TypeError:
            raise TypeError(
                f"inject_hyperparams: hyperparam_dtype must be a dtype or None, got {hyperparam_dtype!r}"
            ) from None

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> InjectHyperparams:
        if signature is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
        elif args:
            raise TypeError(f"{owner}: inner_factory has no signature to bind positional arguments to: pass keywords")
        else:
            arguments = dict(kwargs)
        numeric: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        stateful: dict[str, Any] = {}
        for name, value in arguments.items():
            if name in static or isinstance(value, (bool, np.bool_)):
                fixed[name] = value
            elif isinstance(value, (Schedule, WrappedSchedule)):
                numeric[name] = value
            elif _is_stateful(value):
                stateful[name] = value
            elif is_schedule_like(value):
                numeric[name] = FunctionSchedule(value)
            elif _is_number(value):
                numeric[name] = value
            else:
                fixed[name] = value
        tx = InjectHyperparams(
            inner_factory, numeric, tuple(sorted(fixed.items())), tuple(sorted(stateful.items())), hyperparam_dtype
        )
        _check_by_building(tx)
        return tx

    return wrapped


def _check_by_building(tx: InjectHyperparams) -> None:
    """Build the inner optimizer once, so that its factory checks the values (a schedule as itself)."""
    first = {name: schedule(schedule.init()) for name, schedule in tx.stateful}
    given = {name: v(v.init()) if isinstance(v, WrappedSchedule) else v for name, v in tx.hyperparams.items()}
    tx.inner_factory(**dict(tx.static_kwargs), **given, **first)


def inject_stateful_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., InjectHyperparams]:
    """:func:`inject_hyperparams` under its older optax name (deprecated there since 0.1.9; warns likewise).

    Args:
      inner_factory: a function returning a transform.
      static_args: the name, or names, of arguments that are not to be injected or scheduled.
      hyperparam_dtype: dtype of the injected floating-point hyperparameters (default: the parameters'
        highest, at least float32).

    Returns:
      The same as :func:`inject_hyperparams`.

    Example:
      >>> import warnings, gradflow
      >>> with warnings.catch_warnings():
      ...     warnings.simplefilter("ignore", DeprecationWarning)
      ...     tx = gradflow.inject_stateful_hyperparams(gradflow.sgd)(learning_rate=0.1)
      >>> type(tx).__name__
      'InjectHyperparams'
    """
    warnings.warn(
        "inject_stateful_hyperparams is deprecated (as in optax): use inject_hyperparams",
        DeprecationWarning,
        stacklevel=2,
    )
    return inject_hyperparams(inner_factory, static_args, hyperparam_dtype)


# --- reading and writing -------------------------------------------------------------------------------------------


_INJECTED = (InjectStatefulHyperparamsState, InjectHyperparamsState)


def _is_hyperparam_holder(x: Any) -> bool:
    return isinstance(x, (*_INJECTED, ScheduleState))


def _state_holders(state: Any) -> list[Any]:
    return [x for x in jax.tree.leaves(state, is_leaf=_is_hyperparam_holder) if _is_hyperparam_holder(x)]


def _fields(tx: Any) -> list[Field]:
    """The data fields of a tree of transforms, and the stateful schedules given to :func:`inject_hyperparams`."""
    fields = hyperparameter_fields(tx)
    holders = {id(f.holder): (f.path[:-2], f.holder) for f in fields if isinstance(f.holder, InjectHyperparams)}
    for path, holder in holders.values():
        fields += [Field((*path, "stateful", name), holder, name, value, None) for name, value in holder.stateful]
    return fields


def _available(obj: Any) -> str:
    if isinstance(obj, Transform):
        names = {f.name for f in _fields(obj) if f.value is not None} | set(named_arguments(obj))
    else:
        names = {name for holder in _state_holders(obj) for name in holder.hyperparams}
    return ", ".join(sorted(names)) or "none"


def _resolve(owner: str, tx: Transform, name: str) -> list[Field]:
    """The fields that ``name`` addresses in ``tx``: an argument name recorded by the outermost factory that
    has it (see :func:`gradflow.core.name_arguments`), else the fields called ``name``, which must be one
    field or fields that one recorded argument sets together (one meaning)."""
    fields = {f.path: f for f in _fields(tx)}
    named = named_arguments(tx)
    if name in named:
        if len({paths for _, paths in named[name]}) > 1:
            where = ", ".join(dotted(node) or "the root" for node, _ in named[name])
            raise ValueError(
                f"{owner}: {name!r} is an argument of {len(named[name])} transforms here (at {where}); "
                "get or set it on the part of the optimizer that you mean"
            )
        return [fields[path] for path in named[name][0][1]]
    matches = [f for f in fields.values() if f.name == name]
    if not matches:
        kind = "transform" if isinstance(tx, Transform) else "state"
        raise KeyError(f"{owner}: no hyperparameter {name!r} in this {kind}; it has: {_available(tx)}")
    paths = {f.path for f in matches}
    covering = {argument: set(entries[0][1]) for argument, entries in named.items()}
    if len(matches) > 1 and not any(paths <= covered for covered in covering.values()):
        candidates = "; ".join(
            dotted(f.path) + "".join(f" (argument {a})" for a, covered in covering.items() if f.path in covered)
            for f in matches
        )
        raise ValueError(
            f"{owner}: {name!r} matches {len(matches)} fields with different meanings: {candidates}; "
            "address one by its argument name, or the part of the optimizer that you mean"
        )
    return matches


def get_hyperparam(tx_or_state: Any, name: str) -> Any:
    """The value of the hyperparameter ``name`` in a transform or in an optimizer state.

    On a transform, ``name`` is an argument of the factory that built it (``b1`` of ``adam``, ``momentum``
    of ``sgd``, ``decay`` of ``rmsprop``: the outermost factory that records it), a field name of one of
    its primitives, or an argument of :func:`inject_hyperparams`; the value may be a schedule. A name
    that matches several fields must mean one thing (one argument sets them all). On a state, it is a
    hyperparameter of :func:`inject_hyperparams` or a scheduled one: the value used by the latest update.

    Raises:
      KeyError: naming the hyperparameters that exist.
      ValueError: if ``name`` matches fields with different meanings, listing them.

    Example:
      >>> import gradflow
      >>> float(gradflow.get_hyperparam(gradflow.adamw(0.01, weight_decay=0.1), "weight_decay"))
      0.1
    """
    if isinstance(tx_or_state, Transform):
        return _resolve("get_hyperparam", tx_or_state, name)[0].value
    else:
        for holder in _state_holders(tx_or_state):
            if name in holder.hyperparams:
                return holder.hyperparams[name]
    kind = "transform" if isinstance(tx_or_state, Transform) else "state"
    raise KeyError(f"get_hyperparam: no hyperparameter {name!r} in this {kind}; it has: {_available(tx_or_state)}")


def set_hyperparam(tx_or_state: Any, name: str, value: Any) -> Any:
    """A copy of the transform or state with every hyperparameter called ``name`` set to ``value``.

    In a state the value takes the stored value's dtype and shape (so a ``lax.scan`` carry stays
    stable); only the numbers injected by :func:`inject_hyperparams` can be changed in a state (a
    scheduled value is recomputed at every step). In a transform, ``name`` is resolved as in
    :func:`get_hyperparam` (``b1`` sets both of Adam's fields that b1 feeds) and the value, a number, an
    array or a schedule, is checked against each field's declared range first, as the factory would; an
    :func:`inject_hyperparams` transform is rebuilt once, so that its factory checks it.

    Raises:
      KeyError: naming the hyperparameters that exist.
      ValueError: for a value outside the declared range (naming ``name`` and the field's path), a name
        with several meanings, or a scheduled hyperparameter of an injected state.
      TypeError: for a value that is not a number.

    Example:
      >>> import gradflow
      >>> tx = gradflow.set_hyperparam(gradflow.sgd(0.1, momentum=0.9), "learning_rate", 0.2)
      >>> gradflow.get_hyperparam(tx, "learning_rate")
      0.2
    """
    if isinstance(tx_or_state, Transform):
        new, changed = _replace_in_transform(tx_or_state, name, value), True
    else:
        found = [False]

        def replace(node: Any) -> Any:
            if isinstance(node, _INJECTED) and name in node.hyperparams:
                found[0] = True
                if isinstance(node, InjectStatefulHyperparamsState) and name in node.hyperparams_states:
                    raise ValueError(
                        f"set_hyperparam: {name} is scheduled in this state (its value is recomputed at every "
                        "update); set it on the transform instead, or inject a number"
                    )
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


def _replace_in_transform(tx: Transform, name: str, value: Any) -> Transform:
    """``tx`` with every field that ``name`` addresses set to ``value``, each checked against its declared range."""
    for field in (fields := _resolve("set_hyperparam", tx, name)):
        if field.allowed is not None:
            check_allowed("set_hyperparam", f"{name} (at {dotted(field.path)})", value, field.allowed)
    for field in fields:
        tx = _replace_at(tx, field.path, value)
    for field in fields:
        if isinstance(field.holder, InjectHyperparams):
            _check_by_building(_get_at(tx, field.path[:-2]))
    return tx


def _get_at(obj: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        obj = obj[part] if isinstance(obj, (tuple, list, dict)) else getattr(obj, part)
    return obj


def _replace_at(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``obj`` with the node at ``path`` (attributes, indices and keys) replaced by ``value``."""
    if isinstance(obj, InjectHyperparams) and len(path) == 2:
        return _set_injected(obj, path[1], value)
    head, rest = path[0], path[1:]
    if isinstance(obj, (tuple, list, dict)):
        items = dict(obj) if isinstance(obj, dict) else list(obj)
        items[head] = _replace_at(items[head], rest, value) if rest else value
        return items if isinstance(obj, dict) else type(obj)(items)
    new = _replace_at(getattr(obj, head), rest, value) if rest else value
    return dataclasses.replace(obj, **{head: new})


def _set_injected(tx: InjectHyperparams, name: str, value: Any) -> InjectHyperparams:
    """An injected argument replaced: a stateful schedule stays static, anything else becomes data."""
    hyperparams = {k: v for k, v in tx.hyperparams.items() if k != name}
    stateful = {k: v for k, v in tx.stateful if k != name}
    if _is_stateful(value) and not isinstance(value, WrappedSchedule):
        stateful[name] = value
    else:
        hyperparams[name] = (
            FunctionSchedule(value) if is_schedule_like(value) and not isinstance(value, Schedule) else value
        )
    return dataclasses.replace(tx, hyperparams=hyperparams, stateful=tuple(sorted(stateful.items())))
