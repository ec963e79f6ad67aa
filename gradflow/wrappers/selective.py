"""``selective_transform``: optimize the parameters a mask leaves free, zero the updates of the others."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from gradflow.core import pytree_dataclass
from gradflow.wrappers._common import LeafSpec, as_transform, normalize_bool, normalize_label
from gradflow.wrappers.partition import Partition, SetToZero, _prefix_values

__all__ = ["SelectiveTransform", "selective_transform"]

_TRAIN, _FREEZE = "train", "freeze"


def _label(frozen: bool) -> str:
    return _FREEZE if frozen else _TRAIN


@dataclasses.dataclass(frozen=True)
class _LabelsOfMask:
    """``params -> labels`` from a mask function (hashable, equal for the same function: no recompiles)."""

    mask_fn: Callable[[Any], Any]

    def __call__(self, params: Any) -> Any:
        spec = LeafSpec.of("selective_transform", "freeze_mask", self.mask_fn(params), normalize_bool)
        return spec.treedef.unflatten([_label(frozen) for frozen in spec.leaves])


@pytree_dataclass
class SelectiveTransform(Partition):
    """A :class:`Partition` into ``"train"`` (the optimizer) and ``"freeze"`` (zero updates), either possibly empty.

    Built by :func:`selective_transform`; unlike :func:`gradflow.partition` it accepts a group that no
    parameter belongs to (freezing everything, or nothing), as optax's does.

    Example:
      >>> import gradflow as gf
      >>> tx = gf.selective_transform(gf.sgd(0.1), freeze_mask=False)
      >>> isinstance(tx, gf.SelectiveTransform), tx.labels
      (True, ('train', 'freeze'))
    """

    def _resolve(self, like: Any) -> tuple[Any, list[Any]]:
        return _prefix_values(self.param_labels, "selective_transform", "freeze_mask", like, normalize_label)


def selective_transform(optimizer: Any, *, freeze_mask: Any) -> SelectiveTransform:
    """Apply ``optimizer`` to the parameters where ``freeze_mask`` is false; the others get zero updates.

    For each leaf: u ← 0 where frozen, else u ← optimizer(u), with the optimizer seeing (and keeping
    state for) the trainable leaves only. It is optax's
    ``partition({"train": optimizer, "freeze": set_to_zero()}, labels)``, with the same state:
    ``PartitionState({"train": MaskedState(...), "freeze": MaskedState(EmptyState())})``.

    Args:
      optimizer: the transform for the trainable leaves (gradflow or optax).
      freeze_mask: ``True`` to freeze a leaf. A boolean (everything or nothing), a pytree of booleans
        with the structure of the params or a prefix of it, or a function ``params -> such a pytree``
        (define it once: it is static data). The booleans must be known when tracing.

    Returns:
      A :class:`SelectiveTransform` (a :class:`gradflow.Partition`) whose state is a
      :class:`gradflow.PartitionState`.

    Raises:
      TypeError: if ``freeze_mask`` holds something other than booleans (naming where).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> params = {"a": jnp.zeros(1), "b": jnp.zeros(2)}
      >>> tx = gf.selective_transform(gf.sgd(0.1), freeze_mask={"a": True, "b": False})  # freeze a
      >>> updates, state = tx.update({"a": jnp.ones(1), "b": jnp.ones(2)}, tx.init(params), params)
      >>> updates
      {'a': Array([0.], dtype=float32), 'b': Array([-0.1, -0.1], dtype=float32)}
    """
    inner = as_transform("selective_transform", optimizer, "optimizer")
    if callable(freeze_mask) and not isinstance(freeze_mask, jax.Array):
        labels = LeafSpec(fn=_LabelsOfMask(freeze_mask))
    else:
        mask = LeafSpec.of("selective_transform", "freeze_mask", freeze_mask, normalize_bool)
        labels = LeafSpec(treedef=mask.treedef, leaves=tuple(_label(frozen) for frozen in mask.leaves))
    return SelectiveTransform((inner, SetToZero()), (_TRAIN, _FREEZE), labels, False)
