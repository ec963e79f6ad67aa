"""``flatten``: run a transform on one vector that concatenates every leaf (optax's ``flatten``)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass
from gradflow.wrappers._common import as_transform

__all__ = ["Flatten", "flatten"]


def _concatenate(tree: Any) -> jax.Array:
    """Every leaf of ``tree`` raveled and concatenated, in leaf order (dtypes promoted to a common one)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.zeros([0], jnp.float32)
    return jnp.concatenate([jnp.reshape(leaf, [-1]) for leaf in leaves])


def _split_like(like: Any, flat: jax.Array) -> Any:
    """Cut ``flat`` into pieces shaped (and typed) like the leaves of ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    offsets = np.cumsum([np.size(leaf) for leaf in leaves])[:-1]
    pieces = jnp.split(flat, offsets) if leaves else []
    out = [jnp.reshape(piece, jnp.shape(leaf)).astype(jnp.result_type(leaf)) for piece, leaf in zip(pieces, leaves)]
    return jax.tree.unflatten(treedef, out)


@pytree_dataclass
class Flatten(Transform):
    """Run ``inner`` on the concatenation of all leaves as one vector (built by :func:`flatten`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.flatten(gf.sgd(0.1, momentum=0.9))
      >>> tx.init({"w": jnp.zeros((2, 2)), "b": jnp.zeros(3)})[0][0].shape  # one buffer of 4 + 3
      (7,)
    """

    inner: Transform

    def init(self, params: Any) -> Any:
        return self.inner.init(_concatenate(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        updates = tree.check_updates(updates, params)  # errors that name the key path
        flat_params = None if params is None else _concatenate(params)
        flat, state = self.inner.update(_concatenate(updates), state, flat_params, **extra)
        return _split_like(updates, flat), state


def flatten(inner: Any) -> Flatten:
    """Run ``inner`` on one vector: every leaf raveled and concatenated, the result cut back into leaves.

    u ← unravel(inner(ravel(u))): ``inner`` sees (and keeps its state for) a single vector holding the
    leaves in tree order, which saves the per-leaf overhead of many small parameters; ``params`` are
    raveled the same way, extra arguments pass unchanged. As in optax, the inner state is returned as
    it is (no wrapper). The pieces come back in each update's own dtype (optax keeps the common
    promoted dtype when the leaves' dtypes differ).

    Args:
      inner: the transform to run on the flat vector (gradflow or optax).

    Returns:
      A :class:`Flatten`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.flatten(gf.clip_by_global_norm(1.0))
      >>> g = {"a": jnp.array([3.0]), "b": jnp.array([[4.0]])}
      >>> tx.update(g, tx.init(g))[0]
      {'a': Array([0.6], dtype=float32), 'b': Array([[0.8]], dtype=float32)}
    """
    return Flatten(as_transform("flatten", inner))
