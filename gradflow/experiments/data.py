"""Batches of an in-memory dataset, drawn inside the compiled loop (seed 003).

Seed 003 names three ways to use the training data per step: **batch** gradient descent (the whole
set), **stochastic** gradient descent (one example) and **mini-batch** gradient descent (``b``
examples). :class:`Batches` covers all three through ``batch_size`` (``None``, ``1``, ``b``). An
epoch is ``n // batch_size`` steps (a remainder is dropped, so every batch has the same shape); each
epoch visits the examples in a fresh random order drawn from ``key`` folded with the epoch number,
so the run is reproducible and needs no host round trip. A curriculum (easy examples first) is an
``order`` used for the first ``curriculum_epochs`` epochs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradflow.core import pytree_dataclass, static_field

__all__ = ["Batches"]


@pytree_dataclass
class Batches:
    """Which examples each step of a run sees.

    Args:
      data: a pytree of arrays sharing a leading example axis of length ``n``.
      batch_size: ``None`` for batch gradient descent (every step sees all ``n``), ``1`` for
        stochastic gradient descent, ``b`` for mini-batches.
      key: PRNG key of the per-epoch shuffles (``None``: examples in their stored order).
      order: optional curriculum, a permutation of ``range(n)`` (e.g. examples sorted by difficulty)
        used for the first ``curriculum_epochs`` epochs instead of a shuffle.
      curriculum_epochs: how many epochs follow ``order``.

    >>> batches = Batches({"x": jnp.arange(10.0)}, batch_size=4, key=jax.random.key(0))
    >>> batches.steps_per_epoch, batches.batch(0, batches.epoch_order(0))["x"].shape
    (2, (4,))
    """

    data: Any
    batch_size: int | None = static_field(default=None)
    key: Any = None
    order: Any = None
    curriculum_epochs: int = static_field(default=1)

    def __post_init__(self):
        leaves = jax.tree.leaves(self.data)
        if not leaves:
            raise ValueError("data: needs at least one array with a leading example axis")
        sizes = {path: jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
                 for path, leaf in jax.tree_util.tree_leaves_with_path(self.data)}  # fmt: skip
        if None in sizes.values() or len(set(sizes.values())) != 1:
            described = ", ".join(f"data{jax.tree_util.keystr(p)}: {n}" for p, n in sizes.items())
            raise ValueError(f"data: every leaf needs the same leading example axis, got {described}")
        if self.batch_size is not None and not 1 <= self.batch_size <= self.num_examples:
            raise ValueError(
                f"batch_size: needs 1 <= batch_size <= {self.num_examples} examples, got {self.batch_size}"
            )
        if self.order is not None and jnp.shape(self.order) != (self.num_examples,):
            raise ValueError(
                f"order: needs a permutation of range({self.num_examples}), got shape {jnp.shape(self.order)}"
            )

    @property
    def num_examples(self) -> int:
        return int(jnp.shape(jax.tree.leaves(self.data)[0])[0])

    @property
    def steps_per_epoch(self) -> int:
        return 1 if self.batch_size is None else self.num_examples // self.batch_size

    def epoch_order(self, epoch: jax.Array) -> jax.Array:
        """The int32 permutation of the examples that epoch ``epoch`` visits."""
        stored = jnp.arange(self.num_examples, dtype=jnp.int32)
        shuffled = stored if self.key is None else jax.random.permutation(jax.random.fold_in(self.key, epoch), stored)
        if self.order is None:
            return shuffled
        return jnp.where(epoch < self.curriculum_epochs, jnp.asarray(self.order, jnp.int32), shuffled)

    def batch(self, step_in_epoch: jax.Array, order: jax.Array) -> Any:
        """The examples of step ``step_in_epoch`` of an epoch that visits them in ``order``."""
        if self.batch_size is None:
            return self.data
        indices = jax.lax.dynamic_slice_in_dim(order, step_in_epoch * self.batch_size, self.batch_size)
        return jax.tree.map(lambda leaf: jnp.take(leaf, indices, axis=0), self.data)
