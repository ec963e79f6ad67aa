"""Route parameter groups to different transforms: ``partition``, ``masked``, ``freeze``.

Each wrapper decides, for every leaf of the parameters, which transform sees it: a *label* per leaf
(:func:`partition`, like torch's parameter groups) or a *mask bit* per leaf (:func:`masked`). The
decision is static (a pytree of labels or booleans whose structure is a prefix of the parameters',
or a function of the parameters that returns one), so it costs nothing at run time. A wrapped
transform sees the updates and params with a :class:`MaskedNode` in place of the leaves that are not
its own (an empty node: it has no leaves, so every tree map passes over it), so it keeps state only
for its own leaves, and its state has optax's layout (a ``MaskedNode`` where optax puts one).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import EmptyState, Transform, pytree_dataclass, static_field
from gradflow.validation import check_flag
from gradflow.wrappers._common import (
    LeafSpec,
    as_transform,
    is_none,
    leaves_of,
    normalize_bool,
    normalize_label,
)

__all__ = [
    "Masked",
    "MaskedNode",
    "MaskedState",
    "MultiTransformState",
    "Partition",
    "PartitionState",
    "SetToZero",
    "freeze",
    "masked",
    "multi_transform",
    "partition",
    "set_to_zero",
]


class PartitionState(NamedTuple):
    """The state of each group's transform, by label, each in a :class:`MaskedState` (optax's layout).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.partition({"a": gf.sgd(0.1, momentum=0.9), "b": gf.set_to_zero()}, {"w": "a", "b": "b"})
      >>> state = tx.init({"w": jnp.zeros(2), "b": jnp.zeros(1)})
      >>> sorted(state.inner_states), state.inner_states["a"].inner_state[0][0]  # group a's momentum: w only
      (['a', 'b'], {'b': MaskedNode(), 'w': Array([0., 0.], dtype=float32)})
    """

    inner_states: dict[Any, Any]


MultiTransformState = PartitionState
"""optax's older name for :class:`PartitionState` (the state of ``multi_transform``)."""


class MaskedNode(NamedTuple):
    """The placeholder for a masked-out leaf: an empty node, so tree maps pass over it (optax's ``MaskedNode``).

    :func:`masked` and :func:`partition` hand their inner transform the updates and params with a
    ``MaskedNode`` in place of each leaf that is not its own, so the inner state holds a ``MaskedNode``
    there, exactly as in optax (an optax checkpoint of a masked optimizer restores into gradflow's).

    Example:
      >>> import jax, jax.numpy as jnp, gradflow as gf
      >>> jax.tree.leaves({"w": jnp.ones(2), "b": gf.MaskedNode()})  # no leaves of its own
      [Array([1., 1.], dtype=float32)]
      >>> tx = gf.masked(gf.sgd(0.1, momentum=0.9), {"w": True, "b": False})
      >>> tx.init({"w": jnp.zeros(2), "b": jnp.zeros(1)}).inner_state[0][0]["b"]
      MaskedNode()
    """


def _hide(prefix: Any, chosen: list[bool], tree: Any, names: tuple[str, str]) -> Any:
    """``tree`` with each subtree under an unchosen leaf of the ``prefix`` treedef replaced by one :class:`MaskedNode`.

    As optax: a mask leaf ``False`` over a whole subtree (a prefix mask) hides it as a single node.
    """
    subtrees = leaves_of(prefix, tree, names)
    return prefix.unflatten([subtree if c else MaskedNode() for subtree, c in zip(subtrees, chosen)])


def _mask_extra(extra: dict[str, Any], prefix: Any, chosen: list[bool], structure: Any) -> dict[str, Any]:
    """Hide the unchosen parts of the extra arguments that have the updates' tree ``structure``."""
    out = {}
    for key, value in extra.items():
        if jax.tree.structure(value, is_leaf=is_none) == structure:
            value = _hide(prefix, chosen, value, ("updates", key))
        out[key] = value
    return out


def _prefix_values(
    spec: LeafSpec, owner: str, name: str, like: Any, normalize: Any, *, checked: bool = False
) -> tuple[Any, list[Any]]:
    """The treedef of ``spec`` (a prefix of ``like``'s) and its value at each of its leaves, checked.

    ``checked``: the caller has already run ``spec.resolve`` on ``like`` (which raises the errors that
    name the parameters).
    """
    if not checked:
        spec.resolve(owner, name, like, normalize)
    if spec.fn is None:
        return spec.treedef, list(spec.leaves)
    values, treedef = jax.tree.flatten(spec.fn(like), is_leaf=is_none)
    return treedef, [normalize(owner, name, value) for value in values]


class MaskedState(NamedTuple):
    """The inner transform's state (kept only for the leaves where the mask is true).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.masked(gf.sgd(0.1, momentum=0.9), {"w": True, "b": False})
      >>> state = tx.init({"w": jnp.zeros(2), "b": jnp.zeros(1)})
      >>> state.inner_state[0][0]  # the momentum is kept for w only
      {'b': MaskedNode(), 'w': Array([0., 0.], dtype=float32)}
    """

    inner_state: Any


def _route(
    tx: Transform,
    prefix: Any,
    chosen: list[bool],
    updates: Any,
    state: Any,
    params: Any,
    extra: dict[str, Any],
    mask_extra_args: bool,
) -> tuple[Any, Any]:
    """Run ``tx`` on the chosen parts only; return ``updates`` with those parts replaced by its output, and its state.

    ``prefix`` is the treedef of the mask (or labels), a prefix of the updates' structure; ``chosen`` has one
    boolean per leaf of it.
    """
    sub_updates = _hide(prefix, chosen, updates, ("mask", "updates"))
    sub_params = None if params is None else _hide(prefix, chosen, params, ("mask", "params"))
    if mask_extra_args:
        extra = _mask_extra(extra, prefix, chosen, jax.tree.structure(updates, is_leaf=is_none))
    out, state = tx.update(sub_updates, state, sub_params, **extra)
    new = leaves_of(prefix, out, ("updates", "the wrapped transform's updates"))
    old = leaves_of(prefix, updates, ("mask", "updates"))
    return prefix.unflatten([n if c else o for n, o, c in zip(new, old, chosen)]), state


def _describe(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(f"params{p}" for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _check_labels(
    owner: str, given: tuple[Any, ...], labels: list[Any] | tuple[Any, ...], paths: list[str] | None
) -> None:
    """Every label has a transform and every transform has at least one parameter; errors name them."""
    known = set(given)
    missing: dict[Any, list[str]] = {}
    for i, label in enumerate(labels):
        if label not in known:
            missing.setdefault(label, []).append(paths[i] if paths is not None else "")
    if missing:
        label, where = next(iter(missing.items()))
        used_by = f", used by {_describe(where)}" if paths is not None else ""
        rest = list(missing)[1:]
        others = f" (nor for the labels {', '.join(map(repr, rest))})" if rest else ""
        raise ValueError(
            f"{owner}: no transform for the label {label!r}{used_by}{others}; transforms are given for "
            f"{', '.join(map(repr, given))} (param_labels must use only these labels)"
        )
    used = set(labels)
    unused = [label for label in given if label not in used]
    if unused:
        raise ValueError(
            f"{owner}: no parameter is labelled {', '.join(map(repr, unused))}, so the transform given for it "
            "would never run; remove it from transforms or label some parameters with it"
        )


@pytree_dataclass
class Partition(Transform):
    """Apply a different transform to each group of parameters; a group is the leaves with one label.

    For a leaf labelled ``l``: u ← transforms[l](u). The state holds each group's transform state,
    computed only over that group's leaves, in a :class:`MaskedState` (as optax's ``partition`` does).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.partition({"a": gf.sgd(0.1), "b": gf.set_to_zero()}, {"w": "a", "b": "b"})
      >>> isinstance(tx, gf.Partition), tx.labels
      (True, ('a', 'b'))
    """

    transforms: tuple[Transform, ...]
    labels: tuple[Any, ...] = static_field()
    param_labels: LeafSpec = static_field()
    mask_compatible_extra_args: bool = static_field(default=False)

    def _resolve(self, like: Any) -> tuple[Any, list[Any]]:
        """The labels' treedef (a prefix of ``like``'s) and the label at each of its leaves, all checked."""
        labels, paths = self.param_labels.resolve("partition", "param_labels", like, normalize_label)
        _check_labels("partition", self.labels, labels, paths)
        return _prefix_values(self.param_labels, "partition", "param_labels", like, normalize_label, checked=True)

    def init(self, params: Any) -> Any:
        prefix, labels = self._resolve(params)
        return PartitionState(
            {
                label: MaskedState(tx.init(_hide(prefix, [x == label for x in labels], params, ("mask", "params"))))
                for label, tx in zip(self.labels, self.transforms)
            }
        )

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        prefix, labels = self._resolve(updates)
        inner_states = {}
        for label, tx in zip(self.labels, self.transforms):
            chosen = [x == label for x in labels]
            old_state = tree.check_state("partition", state, PartitionState).inner_states[label].inner_state
            updates, inner_state = _route(
                tx, prefix, chosen, updates, old_state, params, extra, self.mask_compatible_extra_args
            )
            inner_states[label] = MaskedState(inner_state)
        return updates, PartitionState(inner_states)


@pytree_dataclass
class Masked(Transform):
    """Apply ``inner`` where the mask is true; elsewhere the updates pass through unchanged.

    For each leaf: u ← inner(u) if mask else u. ``inner`` keeps state only for the masked-in leaves.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.freeze({"w": False, "b": True})  # freeze is a Masked set_to_zero
      >>> isinstance(tx, gf.Masked), isinstance(tx.inner, gf.SetToZero)
      (True, True)
    """

    inner: Transform
    mask: LeafSpec = static_field()
    mask_compatible_extra_args: bool = static_field(default=False)
    owner: str = static_field(default="masked")  # the factory's name, for error messages

    def _resolve(self, like: Any) -> tuple[Any, list[Any]]:
        """The mask's treedef (a prefix of ``like``'s) and its boolean at each of its leaves."""
        return _prefix_values(self.mask, self.owner, "mask", like, normalize_bool)

    def init(self, params: Any) -> Any:
        prefix, chosen = self._resolve(params)
        return MaskedState(self.inner.init(_hide(prefix, chosen, params, ("mask", "params"))))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        prefix, chosen = self._resolve(updates)
        out, inner_state = _route(
            self.inner,
            prefix,
            chosen,
            updates,
            tree.check_state(self.owner, state, MaskedState).inner_state,
            params,
            extra,
            self.mask_compatible_extra_args,
        )
        return out, MaskedState(inner_state)


@pytree_dataclass
class SetToZero(Transform):
    """Replace every update by zero: u ← 0.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.set_to_zero()
      >>> isinstance(tx, gf.SetToZero), tx.update({"w": jnp.ones(2)}, tx.init(None))[0]
      (True, {'w': Array([0., 0.], dtype=float32)})
    """

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        return jax.tree.map(lambda u: None if u is None else jnp.zeros_like(u), updates, is_leaf=is_none), state


def partition(transforms: dict[Any, Any], param_labels: Any, *, mask_compatible_extra_args: bool = False) -> Partition:
    """Optimize each group of parameters with its own transform (torch's parameter groups).

    For every parameter leaf with label ``l``: u ← transforms[l](u). Each transform sees only its
    own group's leaves (the others are :class:`MaskedNode`), so its state covers its group only; optax's
    ``partition`` (formerly ``multi_transform``) has the same semantics and the same state layout.

    Args:
      transforms: a mapping from label to transform (gradflow or optax).
      param_labels: a pytree of labels (hashable, e.g. strings) with the structure of the params, or a
        prefix of it (a label on a subtree labels all its leaves), or a function ``params -> labels``
        (define it once: it is static data, and a new function object recompiles a jitted step).
      mask_compatible_extra_args: also hide the other groups' leaves in extra arguments that have the
        structure of the updates.

    Returns:
      A :class:`Partition` whose state is a :class:`PartitionState`.

    Raises:
      ValueError: if a parameter has a label with no transform, or a transform's label is used by no
        parameter (both named); a :class:`gradflow.TreeMismatchError` if the labels do not fit the params.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import partition
      >>> params = {"w": jnp.ones(2), "b": jnp.ones(1)}
      >>> tx = partition({"fast": gf.sgd(0.1), "slow": gf.sgd(0.01)}, {"w": "fast", "b": "slow"})
      >>> updates, state = tx.update({"w": jnp.ones(2), "b": jnp.ones(1)}, tx.init(params), params)
      >>> updates["w"], updates["b"]
      (Array([-0.1, -0.1], dtype=float32), Array([-0.01], dtype=float32))
    """
    if not hasattr(transforms, "items"):
        raise TypeError(f"partition: transforms must be a mapping from label to transform, got {transforms!r}")
    labels = tuple(transforms)
    for label in labels:
        normalize_label("partition", f"the key {label!r} of transforms", label)
    txs = tuple(as_transform("partition", tx, f"transforms[{label!r}]") for label, tx in transforms.items())
    spec = LeafSpec.of("partition", "param_labels", param_labels, normalize_label)
    if spec.values is not None:
        _check_labels("partition", labels, spec.values, None)
    return Partition(
        txs, labels, spec, check_flag("partition", "mask_compatible_extra_args", mask_compatible_extra_args)
    )


def multi_transform(
    transforms: dict[Any, Any], param_labels: Any, *, mask_compatible_extra_args: bool = False
) -> Partition:
    """The former name of :func:`partition` (optax keeps both): u ← transforms[l](u) for a leaf labelled l.

    Args:
      transforms: a mapping from label to transform (gradflow or optax).
      param_labels: labels of the params, as in :func:`partition`.
      mask_compatible_extra_args: as in :func:`partition`.

    Returns:
      The :class:`Partition` that :func:`partition` returns.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.multi_transform({"fit": gf.sgd(0.1), "fix": gf.set_to_zero()}, {"w": "fit", "b": "fix"})
      >>> params = {"w": jnp.ones(2), "b": jnp.ones(1)}
      >>> tx.update(params, tx.init(params), params)[0]
      {'b': Array([0.], dtype=float32), 'w': Array([-0.1, -0.1], dtype=float32)}
    """
    return partition(transforms, param_labels, mask_compatible_extra_args=mask_compatible_extra_args)


def masked(inner: Any, mask: Any, *, mask_compatible_extra_args: bool = False) -> Masked:
    """Apply ``inner`` only to the leaves where ``mask`` is true; the other updates pass unchanged.

    For each leaf: u ← inner(u) where mask, u ← u elsewhere. ``inner`` sees a :class:`MaskedNode` in
    place of the masked-out leaves and keeps no state for them (optax's ``masked``, same state layout).

    Args:
      inner: the transform to apply (gradflow or optax).
      mask: a pytree of booleans with the structure of the params, or a prefix of it, or a function
        ``params -> mask`` (define it once: it is static data). The booleans must be known when
        tracing (Python booleans, e.g. from the shapes of the params), not traced arrays.
      mask_compatible_extra_args: also mask extra arguments that have the structure of the updates.

    Returns:
      A :class:`Masked` whose state is a :class:`MaskedState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import masked
      >>> tx = masked(gf.scale(10.0), {"w": True, "b": False})
      >>> g = {"w": jnp.ones(2), "b": jnp.ones(1)}
      >>> tx.update(g, tx.init(g))[0]
      {'b': Array([1.], dtype=float32), 'w': Array([10., 10.], dtype=float32)}
    """
    return Masked(
        as_transform("masked", inner),
        LeafSpec.of("masked", "mask", mask, normalize_bool),
        check_flag("masked", "mask_compatible_extra_args", mask_compatible_extra_args),
    )


def set_to_zero() -> SetToZero:
    """The transform u ← 0 (a frozen parameter's update).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.wrappers import set_to_zero
      >>> set_to_zero().update(jnp.array([1.0, -2.0]), None)[0]
      Array([0., 0.], dtype=float32)
    """
    return SetToZero()


def freeze(mask: Any) -> Masked:
    """Freeze the parameters where ``mask`` is true: their updates are zero, the others pass unchanged.

    For each leaf: u ← 0 where mask, u ← u elsewhere (optax's ``freeze``). Chain it after an optimizer
    (``chain(adam(lr), freeze(mask))``) to keep the optimizer's state for every parameter, or use
    :func:`partition` with :func:`set_to_zero` to keep none for the frozen ones.

    Args:
      mask: as in :func:`masked`; ``True`` freezes (a single ``True`` freezes everything).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import freeze
      >>> tx = gf.chain(gf.sgd(0.1), freeze({"w": False, "b": True}))
      >>> g = {"w": jnp.ones(2), "b": jnp.ones(1)}
      >>> tx.update(g, tx.init(g))[0]["b"]
      Array([0.], dtype=float32)
    """
    return Masked(SetToZero(), LeafSpec.of("freeze", "mask", mask, normalize_bool), False, "freeze")
