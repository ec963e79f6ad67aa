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
import numpy as np

from gradflow.core import pytree_dataclass, static_field
from gradflow.validation import check_integer, check_prng_key

__all__ = ["Batches"]


@pytree_dataclass
class Batches:
    """Which examples each step of a run sees.

    Args:
      data: a pytree of arrays sharing a leading example axis of length ``n``.
      batch_size: ``None`` for batch gradient descent (every step sees all ``n``), ``1`` for
        stochastic gradient descent, an integer ``b`` in ``[1, n]`` for mini-batches.
      key: PRNG key of the per-epoch shuffles (``jax.random.key(seed)``; ``None``: examples in their
        stored order). An integer seed is an error.
      order: optional curriculum, an integer array (or list) holding each of ``0 … n−1`` once (e.g.
        examples sorted by difficulty), used for the first ``curriculum_epochs`` epochs instead of a
        shuffle. A float array, a repeated or missing index is an error naming it.
      curriculum_epochs: how many epochs follow ``order`` (an integer >= 0).

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
            raise ValueError("Batches: data needs at least one array with a leading example axis")
        sizes = {path: jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
                 for path, leaf in jax.tree_util.tree_leaves_with_path(self.data)}  # fmt: skip
        if None in sizes.values() or len(set(sizes.values())) != 1:
            described = ", ".join(f"data{jax.tree_util.keystr(p)}: {n}" for p, n in sizes.items())
            raise ValueError(f"Batches: every leaf of data needs the same leading example axis, got {described}")
        if self.batch_size is not None:
            check_integer("Batches", "batch_size", self.batch_size, low=1, high=self.num_examples)
        check_integer("Batches", "curriculum_epochs", self.curriculum_epochs, low=0)
        if self.key is not None and is_given(self.key):
            check_prng_key("Batches", "key", self.key)
        if isinstance(self.order, (list, tuple)):
            object.__setattr__(self, "order", np.asarray(self.order))
        if self.order is not None and is_given(self.order):
            _check_permutation(self.order, self.num_examples)

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


def is_given(value: Any) -> bool:
    """Whether a pytree field holds a value given by the user (checked), not a tracer or a placeholder.

    JAX rebuilds pytree dataclasses with tracers (under ``jit``) and placeholders (in tree operations);
    only values a user can pass (numbers, strings, NumPy and concrete JAX arrays) are checked.
    """
    if isinstance(value, jax.core.Tracer):
        return False
    return isinstance(value, (int, float, complex, str, bytes, np.ndarray, np.generic, jax.Array))


def _check_permutation(order: Any, n: int) -> None:
    """``order`` must be an integer array holding each of ``0 … n−1`` once."""
    wanted = f"Batches: order must be a permutation of range({n}) (an integer array of shape ({n},))"
    dtype = getattr(order, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{wanted}, got dtype {dtype if dtype is not None else type(order).__name__}")
    if jnp.shape(order) != (n,):
        raise ValueError(f"{wanted}, got shape {jnp.shape(order)}")
    values = np.asarray(order)
    if not np.array_equal(np.sort(values), np.arange(n)):
        counts = np.bincount(values[(values >= 0) & (values < n)], minlength=n)
        missing = np.flatnonzero(counts == 0)[:5].tolist()
        outside = values[(values < 0) | (values >= n)][:5].tolist()
        found = f"values outside it {outside}" if outside else f"missing {missing}"
        raise ValueError(f"{wanted}, got {found}")
