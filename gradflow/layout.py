"""Optax's state layout over a composition of primitives: the named composite.

gradflow builds Adam as ``ratio(chain(ewma, bias_correction), chain(square, ewma, bias_correction,
root))``; the natural state of that chain is the nest of its primitives' states, with one counter per
bias correction. optax programs read ``opt_state[0].mu`` and ``opt_state[0].count``, and optax
checkpoints hold a ``ScaleByAdamState(count, mu, nu)``. A :class:`Composite` keeps the maths in its
inner chain and presents the chain's state in optax's form:

- ``init`` returns the view: a NamedTuple whose fields are taken from the inner state by path;
- ``update`` rebuilds the inner state from the view (every inner field that a view field names gets
  that field: both of Adam's counters get ``count``), steps the chain and returns the new view.

Rebuilding is restructuring only, no arithmetic, so a jitted step compiles to the same program. The
shape of the inner state above the per-parameter subtrees does not depend on the parameters, so it
is found once per inner structure by evaluating ``inner.init`` on a scalar probe (``jax.eval_shape``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Schedule, ScheduleState, Transform, pytree_dataclass, static_field

__all__ = ["OWN_COUNT", "Composite", "StateLayout", "composite"]

OWN_COUNT = "<own count>"
"""A view field that the composite counts itself (optax keeps a counter where the maths needs none)."""

Path = tuple[int | str, ...]


class UnplacedFieldError(ValueError):
    """An inner state field that no field of the optax layout holds (``in_schedule``: a schedule's count)."""

    def __init__(self, message: str, in_schedule: bool):
        super().__init__(message)
        self.in_schedule = in_schedule


def _parse(path: str) -> Path:
    return tuple(int(part) if part.isdigit() else part for part in path.split(".")) if path else ()


class StateLayout:
    """Where each field of an optax state lives in the inner state of a :class:`Composite`.

    Args:
      state_type: the NamedTuple optax uses (gradflow's class of the same name and fields).
      **fields: for each field of ``state_type``, a dotted path into the inner state (tuple positions
        and NamedTuple field names, e.g. ``"0.1.count"``), a tuple of paths when several inner fields
        hold the same value (the view reads the first, the rebuild writes all), or :data:`OWN_COUNT`.

    Example:
      >>> from gradflow.transforms.moments import EWMAState
      >>> from gradflow.transforms.scaling import ScaleByRmsState
      >>> layout = StateLayout(ScaleByRmsState, nu="1.1.mean")
      >>> layout.view(((), ((), EWMAState(mean=2.0), ())))
      ScaleByRmsState(nu=2.0)
    """

    def __init__(self, state_type: type, **fields: str | tuple[str, ...]):
        names = tuple(getattr(state_type, "_fields", ()))
        if set(fields) != set(names):
            raise ValueError(
                f"StateLayout({state_type.__name__}): fields {sorted(fields)} must be exactly {sorted(names)}"
            )
        self.state_type = state_type
        self.fields = names
        self.paths: dict[str, tuple[Path, ...]] = {
            name: () if spec == OWN_COUNT else tuple(_parse(p) for p in ((spec,) if isinstance(spec, str) else spec))
            for name, spec in fields.items()
        }
        self.own_count = tuple(name for name, spec in fields.items() if spec == OWN_COUNT)

    def __repr__(self) -> str:
        return f"StateLayout({self.state_type.__name__})"

    def view(self, inner_state: Any, own: dict[str, Any] | None = None) -> Any:
        """The optax-form state read off ``inner_state`` (``own`` gives the composite's own counters)."""
        own = own or {}
        values = {name: own[name] if not paths else _get(inner_state, paths[0]) for name, paths in self.paths.items()}
        return self.state_type(**values)

    def rebuild(self, view: Any, skeleton: Any) -> Any:
        """The inner state whose every named field is taken from ``view`` (``skeleton``: see :func:`_skeleton`)."""
        treedef, sources = skeleton
        return jax.tree.unflatten(treedef, [source(view) for source in sources])


def _get(state: Any, path: Path) -> Any:
    for part in path:
        state = getattr(state, part) if isinstance(part, str) else state[part]
    return state


def _path_of(keys: tuple[Any, ...]) -> Path:
    out: list[int | str] = []
    for key in keys:
        if isinstance(key, jax.tree_util.SequenceKey):
            out.append(key.idx)
        elif isinstance(key, jax.tree_util.GetAttrKey):
            out.append(key.name)
        elif isinstance(key, jax.tree_util.DictKey):
            out.append(str(key.key))
        else:  # pragma: no cover - flattened index keys of custom nodes
            out.append(str(key))
    return tuple(out)


def _inside_schedule(inner_probe: Any, path: Path) -> bool:
    """Whether ``path`` is inside a :class:`ScheduleState` (the state of a scheduled hyperparameter)."""
    node = inner_probe
    for part in path:
        if isinstance(node, ScheduleState):
            return True
        try:
            node = getattr(node, part) if isinstance(part, str) else node[part]
        except (AttributeError, IndexError, TypeError):
            return False
    return False


def _inside_schedule_record(inner_probe: Any, path: Path) -> bool:
    """Whether ``path`` is in the record of the values a schedule last gave (``ScheduleState.hyperparams``)."""
    node = inner_probe
    for part in path:
        if isinstance(node, ScheduleState) and part == "hyperparams":
            return True
        node = getattr(node, part) if isinstance(part, str) else node[part]
    return False


@functools.lru_cache(maxsize=512)
def _skeleton(layout: StateLayout, inner_structure: Any) -> tuple[Any, tuple]:
    """The inner state's structure, with for each of its fields the function reading it from a view.

    Cached per (layout, structure of the inner transform): the inner state is evaluated on a scalar
    probe whose every field is one leaf, with zeros for the hyperparameters (only where each field sits
    matters). Inner fields that no view field names are refused, except the record of the values a
    schedule gave at the latest update (``ScheduleState.hyperparams``): ``update`` overwrites it without
    reading it, so the rebuild fills it with zeros.
    """
    inner = jax.tree.unflatten(inner_structure, [0.0] * inner_structure.num_leaves)
    probe = jax.eval_shape(inner.init, jax.ShapeDtypeStruct((), jnp.float32))
    owners = {path: name for name, paths in layout.paths.items() for path in paths}
    for path in owners:
        try:
            _get(probe, path)
        except (AttributeError, IndexError, TypeError):
            raise UnplacedFieldError(
                f"{layout!r}: the inner state of {type(inner).__name__} has no field at {'.'.join(map(str, path))}",
                in_schedule=_inside_schedule(probe, path),
            ) from None
    keyed, treedef = jax.tree_util.tree_flatten_with_path(probe)
    sources: list[Callable[[Any], Any]] = []
    for keys, leaf in keyed:
        path = _path_of(keys)
        name = owners.get(path)
        if name is not None:
            sources.append(functools.partial(_field, name))
        elif _inside_schedule_record(probe, path):
            sources.append(functools.partial(_zeros, leaf.shape, leaf.dtype))
        else:
            raise UnplacedFieldError(
                f"{layout!r}: the inner state's leaf at {'.'.join(map(str, path))} has no field in the view; "
                f"name it in the layout of {type(inner).__name__}",
                in_schedule=_inside_schedule(probe, path),
            )
    # Each field of the probe is one leaf; in the rebuild a field's whole subtree (shaped like the
    # parameters) takes that leaf's place.
    return treedef, tuple(sources)


def _field(name: str, view: Any) -> Any:
    return getattr(view, name)


def _zeros(shape: tuple[int, ...], dtype: Any, view: Any) -> jax.Array:
    return jnp.zeros(shape, jax.dtypes.canonicalize_dtype(dtype))


@pytree_dataclass
class Composite(Transform):
    """A transform built from primitives whose state is presented in optax's layout.

    The maths is the inner transform (a chain or combinator of primitives); the state is
    ``layout.state_type``, e.g. ``ScaleByAdamState(count, mu, nu)``. See the module docstring.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_adam()
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> isinstance(tx, Composite), type(state).__name__, state.mu
      (True, 'ScaleByAdamState', {'w': Array([0., 0.], dtype=float32)})
    """

    inner: Transform
    layout: StateLayout = static_field()
    arguments: tuple[tuple[str, tuple[str, ...]], ...] = static_field(default=())

    def init(self, params: Any) -> Any:
        own = {name: jnp.zeros([], jnp.int32) for name in self.layout.own_count}
        return self.layout.view(self.inner.init(params), own)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if getattr(state, "_fields", None) != self.layout.fields:  # optax's own class is welcome too
            raise ValueError(
                f"a transform whose state is a {self.layout.state_type.__name__} got a {type(state).__name__} "
                "as its state; pass the state that this transform's init returned"
            )
        skeleton = _skeleton(self.layout, jax.tree.structure(self.inner))
        updates, inner_state = self.inner.update(updates, self.layout.rebuild(state, skeleton), params, **extra)
        own = {name: tree.saturating_increment(getattr(state, name)) for name in self.layout.own_count}
        return updates, self.layout.view(inner_state, own)


def composite(inner: Transform, state_type: type, **fields: str | tuple[str, ...]) -> Transform:
    """Present ``inner``'s state as ``state_type``, each field found at the given path (see :class:`StateLayout`).

    Args:
      inner: the transform doing the maths.
      state_type: the optax-form NamedTuple.
      **fields: a path (or tuple of paths, or :data:`OWN_COUNT`) for each field of ``state_type``.

    Returns:
      A :class:`Composite`; or ``inner`` itself, with gradflow's own state, when a hyperparameter inside it
      is a schedule whose count the layout has no place for (optax cannot take a schedule there, e.g. a
      scheduled momentum, so there is no optax layout to present).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.transforms.moments import TraceState
      >>> tx = composite(gf.ewma(0.9, kind="momentum"), TraceState, trace="mean")
      >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[1]
      TraceState(trace=Array([1., 1.], dtype=float32))
    """
    layout = _layout(state_type, tuple(sorted(fields.items())))
    if any(isinstance(x, Schedule) for x in jax.tree.leaves(inner, is_leaf=lambda x: isinstance(x, Schedule))):
        try:
            _skeleton(layout, jax.tree.structure(inner))
        except UnplacedFieldError as error:
            if not error.in_schedule:
                raise
            return inner
    return Composite(inner, layout)


@functools.cache
def _layout(state_type: type, fields: tuple[tuple[str, Any], ...]) -> StateLayout:
    """One :class:`StateLayout` per specification, so equal composites have equal (hashable) static fields."""
    return StateLayout(state_type, **dict(fields))
