"""The protocol: transforms as pytree data, ``chain``, ``identity`` and ``apply_updates``.

A transform is any object with ``init(params) -> state`` and
``update(updates, state, params=None, **extra) -> (updates, new_state)``. gradflow's own transforms
are frozen dataclasses registered as pytrees: numeric hyperparameters are leaves (so ``jax.jit`` does
not recompile for a new value, ``jax.vmap`` maps over a batch of optimizers and ``jax.grad`` reaches
them), structural choices are static fields. ``extra`` carries ``value``, ``value_fn`` and ``grad_fn``
to the transforms that need them; every transform ignores the extra arguments it does not use.

Any numeric hyperparameter may be a :class:`Schedule` (or a plain function of the step count, as in
optax): a transform holding one keeps a step counter in a :class:`ScheduleState` around its own state
and, at each update, runs with every schedule replaced by its value at that count.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import math
import types
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, TypeVar, dataclass_transform

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import arith, tree

__all__ = [
    "Chain",
    "EmptyState",
    "ForeignTransform",
    "FunctionSchedule",
    "Identity",
    "Interval",
    "Schedule",
    "ScheduleState",
    "Transform",
    "apply_updates",
    "chain",
    "declared_hyperparameters",
    "hyperparameter",
    "hyperparameter_fields",
    "identity",
    "name_arguments",
    "named_arguments",
    "pytree_dataclass",
    "static_field",
]

T = TypeVar("T")


def static_field(**kwargs: Any) -> Any:
    """A dataclass field that is part of the tree structure (a flag, a dtype), not a leaf.

    >>> @pytree_dataclass
    ... class Scaled:
    ...     factor: float
    ...     name: str = static_field(default="scaled")
    >>> jax.tree.leaves(Scaled(2.0))
    [2.0]
    """
    return dataclasses.field(metadata={"static": True}, **kwargs)


@dataclasses.dataclass(frozen=True)
class Interval:
    """The values a hyperparameter allows: from ``low`` to ``high``, each end closed or open.

    >>> unit = Interval(0.0, 1.0)
    >>> str(unit), bool(unit.contains(0.5)), bool(unit.contains(1.0)), bool(unit.contains(float("nan")))
    ('[0.0, 1.0)', True, False, False)
    """

    low: float
    high: float
    low_open: bool = False
    high_open: bool = True

    def __str__(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def contains(self, values: Any) -> Any:
        """Elementwise: whether each value is inside (``False`` at NaN); NumPy or JAX arrays, or tracers."""
        above = values > self.low if self.low_open else values >= self.low
        below = values < self.high if self.high_open else values <= self.high
        return above & below


UNIT = Interval(0.0, 1.0)
"""[0, 1): the decay of a moving average, a bias correction's, a momentum."""
UNIT_CLOSED = Interval(0.0, 1.0, high_open=False)
"""[0, 1]: an interpolation weight, a decay that may keep everything."""
NONNEGATIVE = Interval(0.0, math.inf)
"""[0, inf): an epsilon, a weight decay, a learning rate, a norm bound (finite)."""
POSITIVE = Interval(0.0, math.inf, low_open=True)
"""(0, inf): a threshold that divides."""
REAL = Interval(-math.inf, math.inf, high_open=False)
"""[-inf, inf]: any number but NaN (a shift, a scale)."""


OUTSIDE = ("nan", "nan_updates", "own")
"""What ``update`` does with a declared hyperparameter outside its range (see :func:`hyperparameter`)."""


def hyperparameter(allowed: Interval, *, outside: str = "nan", **kwargs: Any) -> Any:
    """A numeric dataclass field (a pytree leaf) with the values it allows, declared once for every check.

    The declaration serves :func:`gradflow.validation.check_hyperparameters` (concrete values, before
    anything is traced), :func:`gradflow.set_hyperparam` (the new value) and ``update``, which cannot raise
    for a traced value: a value outside ``allowed`` that reaches it (a tracer, or a number set past the
    checks) makes that transform's updates NaN (see :mod:`gradflow.validation`). ``outside`` says how:

    - ``"nan"``: the value becomes NaN, and the update rule turns it into NaN updates (a scalar
      ``jnp.where`` per traced field; nothing per leaf);
    - ``"nan_updates"``: the updates become NaN leaf by leaf, for a field that the rule only compares with
      (a threshold), where NaN would vanish;
    - ``"own"``: the transform defines what such a value does (a negative learning rate: a zero step).

    >>> @pytree_dataclass
    ... class Damped(Transform):
    ...     decay: float = hyperparameter(UNIT, default=0.5)
    ...     def init(self, params):
    ...         return EmptyState()
    ...     def update(self, updates, state, params=None, **extra):
    ...         return self.decay * updates, state
    >>> declared_hyperparameters(Damped)
    (('decay', Interval(low=0.0, high=1.0, low_open=False, high_open=True), 'nan'),)
    >>> jax.jit(lambda tx: tx.update(jnp.ones(1), EmptyState())[0])(Damped(1.5))
    Array([nan], dtype=float32)
    """
    if outside not in OUTSIDE:
        raise ValueError(f"hyperparameter: outside must be one of {OUTSIDE}, got {outside!r}")
    return dataclasses.field(metadata={"allowed": allowed, "outside": outside}, **kwargs)


_DECLARED: dict[type, tuple[tuple[str, Interval, str], ...]] = {}


def declared_hyperparameters(cls: type) -> tuple[tuple[str, Interval, str], ...]:
    """``(field name, allowed values, outside)`` of each :func:`hyperparameter` field of ``cls`` (cached)."""
    if cls not in _DECLARED:
        fields = dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ()
        _DECLARED[cls] = tuple(
            (f.name, f.metadata["allowed"], f.metadata["outside"]) for f in fields if "allowed" in f.metadata
        )
    return _DECLARED[cls]


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, static_field, hyperparameter))
def pytree_dataclass(cls: type[T]) -> type[T]:
    """Make ``cls`` a frozen dataclass registered as a pytree.

    Fields declared with :func:`static_field` are static; every other field is a child (a leaf, or a
    nested transform). For a :class:`Transform`, ``init`` and ``update`` also learn to evaluate
    hyperparameters that are schedules (see :class:`ScheduleState`).

    >>> @pytree_dataclass
    ... class Halve(Transform):
    ...     factor: float = 0.5
    ...     def init(self, params):
    ...         return EmptyState()
    ...     def update(self, updates, state, params=None, **extra):
    ...         return jax.tree.map(lambda u: self.factor * u, updates), state
    >>> jax.tree.leaves(Halve()), Halve().update(jnp.array([4.0]), EmptyState())[0]
    ([0.5], Array([2.], dtype=float32))
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    jax.tree_util.register_dataclass(
        cls,
        data_fields=[f.name for f in fields if not f.metadata.get("static", False)],
        meta_fields=[f.name for f in fields if f.metadata.get("static", False)],
    )
    if issubclass(cls, Transform):
        _wrap_init_and_update(cls)
    return cls


class Schedule:
    """A hyperparameter that is a function of the step count: ``value = schedule(count)``.

    Subclasses are :func:`pytree_dataclass` es whose numeric parameters are leaves, so a batch of
    schedules can be vmapped over like any other hyperparameter. ``count`` is the int32 number of
    updates done before the current one (0 at the first update), as in optax.

    >>> import gradflow
    >>> schedule = gradflow.linear_schedule(1.0, 0.0, transition_steps=4)
    >>> isinstance(schedule, Schedule), float(schedule(jnp.int32(1)))
    (True, 0.75)
    """

    def __call__(self, count: jax.Array) -> jax.Array:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class FunctionSchedule(Schedule):
    """A plain Python function of the count used as a schedule (static: it cannot be vmapped over).

    >>> import gradflow
    >>> tx = gradflow.sgd(lambda count: 0.1 / (1 + count))
    >>> type(tx.transforms[-1].inner.learning_rate).__name__  # inside the composite presenting optax's state
    'FunctionSchedule'
    """

    function: Any

    def __call__(self, count):
        return jnp.asarray(self.function(count))


jax.tree_util.register_dataclass(FunctionSchedule, data_fields=[], meta_fields=["function"])


class ScheduleState(NamedTuple):
    """The state of a transform with scheduled hyperparameters.

    Attributes:
      count: int32 number of updates done (saturating).
      hyperparams: the value of each scheduled hyperparameter used by the latest update (at init: the
        value for the first update), by field name.
      inner: the transform's own state.

    >>> import gradflow
    >>> tx = gradflow.ewma(gradflow.exponential_decay(0.5, 1, 0.5))  # a scheduled momentum
    >>> state = tx.init(jnp.zeros(1))
    >>> _, state = tx.update(jnp.ones(1), state)
    >>> int(state.count), float(state.hyperparams["decay"])  # the value at count 0
    (1, 0.5)
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    hyperparams: dict[str, jax.Array]
    inner: Any


def is_schedule_like(value: Any) -> bool:
    """Whether ``value`` is a plain function that will be used as a schedule (not a transform or array)."""
    if isinstance(value, (Schedule, Transform, type, jax.Array, np.ndarray, np.generic)) or not callable(value):
        return False
    try:  # jnp.float32 and friends are callable, but they are dtypes
        jnp.dtype(value)
    except TypeError:
        return True
    return False


def scheduled_fields(transform: Any) -> tuple[str, ...]:
    """Names of the data fields of ``transform`` that hold a :class:`Schedule`."""
    if not dataclasses.is_dataclass(transform):
        return ()
    return tuple(
        f.name
        for f in dataclasses.fields(transform)
        if not f.metadata.get("static", False) and isinstance(getattr(transform, f.name), Schedule)
    )


def evaluates_own_schedules(method: T) -> T:
    """Mark a ``Transform`` method that evaluates its schedule-valued fields itself.

    :func:`pytree_dataclass` leaves a class whose ``init`` and ``update`` are both marked alone instead of
    wrapping its state in a :class:`ScheduleState`: for transforms whose state already has the count
    its schedule reads, in optax's layout (``ScaleByScheduleState``, ``ScheduleFreeState``).

    >>> @pytree_dataclass
    ... class Halve(Transform):
    ...     factor: Any = 0.5
    ...     @evaluates_own_schedules
    ...     def init(self, params):
    ...         return EmptyState()
    ...     @evaluates_own_schedules
    ...     def update(self, updates, state, params=None, **extra):
    ...         return updates * self.factor(0), state
    >>> Halve(lambda count: 0.5).init(None)  # no ScheduleState around it
    EmptyState()
    """
    method._evaluates_schedules = True  # type: ignore[attr-defined]
    return method


def _wrap_init_and_update(cls: Any) -> None:
    """Wrap ``cls.init``/``cls.update``: schedule-valued fields are replaced by their values, and ``update``
    follows the policy for hyperparameters outside their declared range (:func:`_update_in_range`)."""
    init, update = cls.init, cls.update
    if getattr(init, "_wrapped", False) and getattr(update, "_wrapped", False):
        return  # inherited from a pytree_dataclass parent
    if getattr(init, "_evaluates_schedules", False) and getattr(update, "_evaluates_schedules", False):

        @functools.wraps(update)
        def checked_update(self, updates, state, params=None, **extra):
            return _update_in_range(update, self, updates, state, params, extra)

        _mark(checked_update, "_wrapped")
        _mark(init, "_wrapped")
        cls.update = checked_update
        return

    @functools.wraps(init)
    def init_with_schedules(self, params):
        names = scheduled_fields(self)
        if not names:
            return init(self, params)
        count = jnp.zeros([], jnp.int32)
        values = _values_at(self, names, count)
        return ScheduleState(count, values, init(dataclasses.replace(self, **values), params))

    @functools.wraps(update)
    def update_with_schedules(self, updates, state, params=None, **extra):
        names = scheduled_fields(self)
        if not names:
            return _update_in_range(update, self, updates, state, params, extra)
        if not isinstance(state, ScheduleState):
            raise ValueError(
                f"{type(self).__name__}: the hyperparameters {', '.join(names)} are schedules, so the state "
                f"must be the ScheduleState that init returned, got {type(state).__name__}"
            )
        values = _values_at(self, names, state.count)
        evaluated = dataclasses.replace(self, **values)
        updates, inner = _update_in_range(update, evaluated, updates, state.inner, params, extra)
        return updates, ScheduleState(tree.saturating_increment(state.count), values, inner)

    for method in (init_with_schedules, update_with_schedules):
        _mark(method, "_evaluates_schedules", "_wrapped")
    cls.init, cls.update = init_with_schedules, update_with_schedules


def _mark(method: Any, *flags: str) -> None:
    """Set each of ``flags`` on ``method`` (read with ``getattr(method, flag, False)``)."""
    for flag in flags:
        setattr(method, flag, True)


def _inside(allowed: Interval, value: Any) -> Any:
    """Whether every element of a declared hyperparameter is inside ``allowed``: a bool, or a traced one;
    ``True`` for what is not a number (a schedule, ``None``) and for a tracer whose value was checked
    against ``allowed`` on the host (:func:`checked_on_host`)."""
    if isinstance(value, jax.core.Tracer):
        return True if checked_inside(allowed, value) else jnp.all(allowed.contains(value))
    if value is None or isinstance(value, (Schedule, bool)):
        return True
    try:
        array = np.asarray(value)
    except Exception:  # not a number: nothing to compare
        return True
    if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)):
        return True
    return bool(np.all(allowed.contains(array.astype(np.float64))))


_CHECKED_ON_HOST: contextvars.ContextVar[Mapping[int, tuple[Any, Interval]]] = contextvars.ContextVar(
    "checked_on_host", default=types.MappingProxyType({})
)
"""``id(tracer) -> (tracer, allowed)`` for the declared hyperparameters whose values were checked on the host
before the program being traced was called (see :func:`checked_on_host`)."""


def checked_inside(allowed: Interval, value: Any) -> bool:
    """Whether the tracer ``value`` is a hyperparameter that was checked on the host against ``allowed``
    before the program being traced was called (:func:`checked_on_host`).

    >>> checked_inside(NONNEGATIVE, jnp.float32(0.1))  # not a tracer: not one of a checked program's arguments
    False
    """
    checked = _CHECKED_ON_HOST.get().get(id(value))
    return checked is not None and checked[0] is value and checked[1] == allowed


@contextlib.contextmanager
def checked_on_host(transform: Any, checked: bool = True) -> Iterator[None]:
    """While tracing a program that takes ``transform`` as an argument after
    :func:`gradflow.validation.check_hyperparameters` passed its concrete values, ``update`` adds no traced
    range check for those declared hyperparameters (each tracer, against the range it was checked for).
    With ``checked`` false (the values were tracers, so the host saw none of them) nothing changes.

    Values computed inside the program (a schedule's, an injected one) are other tracers and keep the check.
    :func:`gradflow.experiments.run`, ``sweep`` and :func:`gradflow.second_order.minimize` trace their loop
    so: like a step that closes over the optimizer, theirs computes no range check at each step.

    >>> import gradflow
    >>> def operations(tx, trusted):
    ...     def program(tx, u):
    ...         with checked_on_host(tx, trusted):
    ...             return tx.update(u, tx.init(u))[0]
    ...     return len(jax.make_jaxpr(program)(tx, jnp.ones(2)).eqns)
    >>> operations(gradflow.adam(0.1), trusted=True) < operations(gradflow.adam(0.1), trusted=False)  # 38 and 116
    True
    """
    if not checked:
        yield
        return
    fields = hyperparameter_fields(transform)
    values = {
        id(f.value): (f.value, f.allowed)
        for f in fields
        if f.allowed is not None and isinstance(f.value, jax.core.Tracer)
    }
    token = _CHECKED_ON_HOST.set({**_CHECKED_ON_HOST.get(), **values})
    try:
        yield
    finally:
        _CHECKED_ON_HOST.reset(token)


def _update_in_range(update: Any, transform: Any, updates: Any, state: Any, params: Any, extra: Any) -> Any:
    """``update`` of ``transform`` where a declared hyperparameter outside its range gives NaN updates.

    A field declared ``"nan"`` is replaced by NaN where it is outside (the whole field, when traced); for
    ``"nan_updates"`` each floating leaf of the updates is replaced. Nothing is added while the declared
    values are numbers inside their ranges, or tracers checked on the host (:func:`checked_on_host`).
    """
    replaced, updates_inside = {}, True
    for name, allowed, outside in declared_hyperparameters(type(transform)):
        if outside == "own":
            continue
        value = getattr(transform, name)
        inside = _inside(allowed, value)
        if inside is True:
            continue
        if outside == "nan_updates":
            updates_inside = updates_inside & inside
        elif inside is False:
            replaced[name] = jnp.full_like(value, jnp.nan, float)
        else:
            # a division is computed once; a select here would be copied into every leaf's kernel
            replaced[name] = value / _one_or_nan(inside)
    if replaced:
        transform = dataclasses.replace(transform, **replaced)
    updates, state = update(transform, updates, state, params, **extra)
    if updates_inside is True:
        return updates, state
    factor = _one_or_nan(updates_inside)

    def poison(u: Any) -> Any:
        dtype = jnp.result_type(u)
        return (u * factor).astype(dtype) if jnp.issubdtype(dtype, jnp.inexact) else u

    return jax.tree.map(poison, updates), state


def computed_once(value: Any) -> Any:
    """``value`` (a float scalar), which XLA computes once per step rather than in each leaf's kernel.

    ``value / 1`` with a 1 known only at run time (``_one_or_nan(value == value)``: NaN stays NaN). XLA
    copies cheap scalar operations into every fusion that reads their result; a division it computes once.

    >>> float(computed_once(jnp.float32(0.25))), bool(jnp.isnan(computed_once(jnp.float32(jnp.nan))))
    (0.25, True)
    """
    if not isinstance(value, jax.core.Tracer):
        return value
    return value / _one_or_nan(value == value)


def _one_or_nan(inside: Any) -> jax.Array:
    """1 where the traced bool ``inside`` holds, else NaN (``0 / 0``), weakly typed: dividing by it keeps the
    dividend's dtype.

    ``value / _one_or_nan(inside)`` is ``jnp.where(inside, value, nan)`` (``x / 1`` is exactly ``x``),
    computed once per step. XLA copies cheap scalar operations (a compare, a select) into every fusion that
    reads their result, one fusion per leaf: a model of 2,000 leaves compiled each range check 2,000 times,
    and its compile time grew with it. A division it computes once and passes on.
    """
    flag = jnp.where(inside, 1.0, 0.0)
    return flag / flag


def _values_at(transform: Any, names: tuple[str, ...], count: jax.Array) -> dict[str, jax.Array]:
    values = {name: jnp.asarray(getattr(transform, name)(count)) for name in names}
    return {name: value.astype(value.dtype) for name, value in values.items()}  # no weak types: scan-stable


Path = tuple[Any, ...]


class Field(NamedTuple):
    """A data field in a tree of transforms (see :func:`hyperparameter_fields`)."""

    path: Path
    holder: Any
    name: str
    value: Any
    allowed: Interval | None


def dotted(path: Path) -> str:
    """``("transforms", 0, "decay")`` as ``"transforms.0.decay"``."""
    return ".".join(map(str, path))


def hyperparameter_fields(transform: Any) -> list[Field]:
    """Every data field of a tree of transforms that is not itself a transform, in order, with its path.

    A dict field (``inject_hyperparams``' arguments) gives one entry per key, named by the key.

    >>> import gradflow
    >>> [(dotted(f.path), f.value) for f in hyperparameter_fields(gradflow.sgd(0.1, momentum=0.9))][::2]
    [('transforms.0.inner.decay', 0.9), ('transforms.1.learning_rate', 0.1)]
    """
    found: list[Field] = []

    def leaf(value: Any, path: Path, holder: Any, name: str, allowed: Interval | None) -> None:
        found.append(Field(path, holder, name, value, allowed))
        if isinstance(value, Schedule) and not isinstance(value, FunctionSchedule):  # then the schedule's own
            visit(value, path, holder, name)

    def visit(obj: Any, path: Path, holder: Any, name: str) -> None:
        if isinstance(obj, (Transform, Schedule)) and dataclasses.is_dataclass(obj):
            declared = {field: allowed for field, allowed, _ in declared_hyperparameters(type(obj))}
            for f in dataclasses.fields(obj):
                if not f.metadata.get("static", False):
                    value = getattr(obj, f.name)
                    if isinstance(value, (Transform, tuple, list, dict)):
                        visit(value, (*path, f.name), obj, f.name)
                    else:
                        leaf(value, (*path, f.name), obj, f.name, declared.get(f.name))
        elif isinstance(obj, (tuple, list, dict)):
            items = obj.items() if isinstance(obj, dict) else enumerate(obj)
            for key, item in items:
                if isinstance(item, (Transform, tuple, list, dict)):
                    visit(item, (*path, key), holder, name)
                else:
                    leaf(item, (*path, key), holder, str(key) if isinstance(obj, dict) else name, None)

    visit(transform, (), None, "")
    return found


def name_arguments(transform: T, **fields: str | tuple[str, ...]) -> T:
    """``transform`` (a :class:`Chain` or a composite) recording which fields each argument of its factory sets.

    Each argument maps to patterns ``"prefix:field"``: every data field called ``field`` at or below the
    dotted ``prefix`` (relative to ``transform``; empty: anywhere). :func:`gradflow.get_hyperparam` and
    :func:`gradflow.set_hyperparam` address the fields by the argument's name. Another transform is
    returned as it is.

    >>> import gradflow
    >>> tx = name_arguments(gradflow.chain(gradflow.ewma(0.9), gradflow.ewma(0.5)), b1="transforms.0:decay")
    >>> [(dotted(node), [dotted(path) for path in paths]) for node, paths in named_arguments(tx)["b1"]]
    [('', ['transforms.0.decay'])]
    """
    if not any(f.name == "arguments" for f in dataclasses.fields(transform)):  # type: ignore[arg-type]
        return transform
    patterns = tuple(sorted((name, (spec,) if isinstance(spec, str) else tuple(spec)) for name, spec in fields.items()))
    return dataclasses.replace(transform, arguments=patterns)  # type: ignore[type-var]


def _matches(path: Path, pattern: str) -> bool:
    prefix, _, field = pattern.rpartition(":")
    head = tuple(int(p) if p.isdigit() else p for p in prefix.split(".")) if prefix else ()
    return path[-1:] == (field,) and path[: len(head)] == head


def named_arguments(transform: Any) -> dict[str, tuple[tuple[Path, tuple[Path, ...]], ...]]:
    """The fields each recorded argument name sets (see :func:`name_arguments`).

    By name: ``(path of the transform recording it, paths of the fields it sets)`` for the outermost
    transforms that record the name (two at the same depth, as in ``chain(adam(a), adam(b))``: two entries).
    """
    fields = [f.path for f in hyperparameter_fields(transform)]
    nodes: list[tuple[Path, Any]] = []

    def visit(obj: Any, path: Path) -> None:
        if isinstance(obj, Transform) and dataclasses.is_dataclass(obj):
            if getattr(obj, "arguments", ()):
                nodes.append((path, obj))
            for f in dataclasses.fields(obj):
                if not f.metadata.get("static", False):
                    visit(getattr(obj, f.name), (*path, f.name))
        elif isinstance(obj, (tuple, list)):
            for index, item in enumerate(obj):
                visit(item, (*path, index))
        elif isinstance(obj, dict):
            for key, item in obj.items():
                visit(item, (*path, key))

    visit(transform, ())
    out: dict[str, tuple[tuple[Path, tuple[Path, ...]], ...]] = {}
    for path, node in sorted(nodes, key=lambda item: len(item[0])):
        for name, patterns in node.arguments:
            paths = tuple(
                p for p in fields if p[: len(path)] == path and any(_matches(p[len(path) :], q) for q in patterns)
            )
            if paths and (name not in out or len(out[name][0][0]) == len(path)):
                out[name] = (*out.get(name, ()), (path, paths))
    return out


class EmptyState(NamedTuple):
    """The state of a stateless transform.

    >>> import gradflow
    >>> gradflow.sign().init(jnp.zeros(2))
    EmptyState()
    """


class Transform:
    """Base class of gradflow transforms: an ``(init, update)`` pair that is also pytree data.

    Subclasses are declared with :func:`pytree_dataclass`. Iterating a transform yields
    ``(init, update)``, the shape that ``optax.chain`` unpacks, so a gradflow transform can sit in an
    optax chain as it is.

    >>> import gradflow
    >>> init, update = gradflow.sgd(0.1)
    >>> update(jnp.array([1.0]), init(jnp.zeros(1)))[0]
    Array([-0.1], dtype=float32)
    """

    def __post_init__(self) -> None:
        # An optax-style schedule (a plain function of the count) becomes a FunctionSchedule.
        if dataclasses.is_dataclass(self):
            for field in dataclasses.fields(self):
                value = getattr(self, field.name)
                if not field.metadata.get("static", False) and is_schedule_like(value):
                    object.__setattr__(self, field.name, FunctionSchedule(value))

    def init(self, params: Any) -> Any:
        """Build the state for ``params``."""
        raise NotImplementedError

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        """Transform ``updates``; return ``(new_updates, new_state)``."""
        raise NotImplementedError

    def __iter__(self):
        return iter((self.init, self.update))

    def as_optax(self) -> Any:
        """This transform as an ``optax.GradientTransformationExtraArgs``.

        ``optax.chain`` drops extra arguments (``grad_fn``, ``value`` ...) for any transform that is not
        of that NamedTuple type, so a gradflow transform that needs them (e.g. :func:`gradflow.nag`)
        must enter an optax chain through this method. Requires optax.
        """
        try:
            import optax
        except ImportError as error:  # pragma: no cover - optax is a dev dependency
            raise ImportError("Transform.as_optax() needs optax installed") from error
        return optax.GradientTransformationExtraArgs(self.init, self.update)


@pytree_dataclass
class Identity(Transform):
    """Pass the updates through unchanged: ``u ← g``.

    >>> Identity().update(jnp.array([3.0]), EmptyState())[0]
    Array([3.], dtype=float32)
    """

    def init(self, params):
        return EmptyState()

    def update(self, updates, state, params=None, **extra):
        return updates, state


def identity() -> Identity:
    """The transform that leaves updates unchanged (the unit of :func:`chain`).

    Example:
      >>> import gradflow
      >>> gradflow.identity().update({"w": 1.0}, gradflow.EmptyState())[0]
      {'w': 1.0}
    """
    return Identity()


@pytree_dataclass
class ForeignTransform(Transform):
    """A transform from another library (e.g. an optax ``GradientTransformation``) inside gradflow.

    Its closures are a static field, so it cannot be vmapped over, but it composes with gradflow
    transforms in :func:`chain`. Extra arguments are forwarded when its ``update`` accepts them.

    >>> import optax, gradflow
    >>> tx = gradflow.chain(optax.scale(-0.5))
    >>> type(tx.transforms[0]).__name__, tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
    ('ForeignTransform', Array([-1.], dtype=float32))
    """

    inner: Any = static_field()

    def init(self, params):
        return self.inner.init(params)

    def update(self, updates, state, params=None, **extra):
        if extra and not _accepts_extra_args(self.inner.update):
            extra = {}
        return self.inner.update(updates, state, params, **extra)


def _accepts_extra_args(fn: Any) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _as_transform(tx: Any, position: int) -> Transform:
    if isinstance(tx, Transform):
        return tx
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return ForeignTransform(tx)
    raise TypeError(
        f"chain: argument {position} must be a transform with init and update methods, got {type(tx).__name__}"
    )


@pytree_dataclass
class Chain(Transform):
    """Apply transforms in sequence; the state is the tuple of their states (built by :func:`chain`).

    >>> import gradflow
    >>> tx = gradflow.chain(gradflow.sign(), gradflow.scale(-0.1))
    >>> isinstance(tx, Chain), len(tx.init(jnp.zeros(2)))
    (True, 2)
    """

    transforms: tuple[Transform, ...]
    arguments: tuple[tuple[str, tuple[str, ...]], ...] = static_field(default=())

    def init(self, params):
        tree.check_float_leaves(params)  # also for a chain without state: apply_updates would refuse them later
        return tuple(t.init(params) for t in self.transforms)

    def update(self, updates, state, params=None, **extra):
        updates = tree.check_updates(updates, params)  # errors that name the key path, before any transform runs
        if not isinstance(state, tuple) or len(state) != len(self.transforms):
            got = type(state).__name__
            if isinstance(state, tuple):
                got = f"a {got} of length {len(state)}"
            raise ValueError(
                f"chain of {len(self.transforms)} transforms got {got} as its state; "
                "pass the state that this chain's init returned"
            )
        new_state = []
        for position, (transform, inner_state) in enumerate(zip(self.transforms, state)):
            where = f"chain: transform {position} ({type(transform).__name__})"
            try:
                out, inner_state = transform.update(updates, inner_state, params, **extra)
            except AttributeError as error:  # the state of another optimizer (same length, other fields)
                if error.obj is not inner_state:
                    raise
                raise ValueError(
                    f"{where} got a {type(inner_state).__name__} as its state, which has no field {error.name!r}; "
                    "pass the state that this chain's init returned"
                ) from error
            except (TypeError, ValueError) as error:  # JAX's shape errors do not say which hyperparameter
                problem = tree.hyperparameter_mismatch(transform, updates)
                if problem is None:
                    raise
                raise ValueError(f"{where}: {problem}") from error
            changed = tree.shape_change(updates, out)
            if changed is not None:
                raise ValueError(f"{where}: {tree.hyperparameter_mismatch(transform, updates) or changed}")
            updates = out
            new_state.append(inner_state)
        return updates, tuple(new_state)


def chain(*args: Any) -> Chain:
    """Compose transforms: the updates flow through each in order.

    The state is the tuple of the transforms' states, and a nested chain keeps its own tuple, as in
    optax (``chain(clip_by_global_norm(1.0), adamw(1e-3))`` has the state ``(EmptyState(), (adam's,
    schedule's))``, so optax programs' ``opt_state[1][0].mu`` and optax checkpoints fit). Associativity
    holds for the updates and for the leaves of the states, in order; only the nesting of the state
    follows the nesting of the chains. Objects with ``init``/``update`` methods that are not gradflow
    transforms (optax transforms) are wrapped in a :class:`ForeignTransform`.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.chain(gradflow.clip(1.0), gradflow.scale_by_learning_rate(0.1))
      >>> params = {"w": jnp.array([3.0, -0.5])}
      >>> updates, state = tx.update(params, tx.init(params), params)
      >>> updates["w"]
      Array([-0.1 ,  0.05], dtype=float32)
    """
    return Chain(tuple(_as_transform(tx, position) for position, tx in enumerate(args)))


def apply_updates(params: Any, updates: Any) -> Any:
    """``params + updates`` leaf by leaf, keeping each parameter's dtype; ``None`` leaves pass through.

    Raises:
      TypeError: if a parameter is not floating point (it would be truncated silently).
      TreeMismatchError: if ``updates`` and ``params`` differ in structure or shape.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> gradflow.apply_updates({"w": jnp.ones(2, jnp.bfloat16)}, {"w": jnp.full(2, 0.5)})["w"].dtype
      dtype(bfloat16)
    """
    tree.check_float_leaves(params)
    return tree.map(
        lambda p, u: tree._astype(arith.add(p, u), jnp.result_type(p)) if u is not None else p,
        params,
        updates,
        names=("params", "updates"),
    )
