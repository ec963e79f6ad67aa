"""The normalised gradient of the ODE view of optimisation (seed 004): u = g / ‖g‖.

Seed 004 writes the Polyak flow θ' = −(g/‖g‖)·L·(1/‖g‖): a unit direction times a step length. The
direction alone, θ' = −g/‖g‖, moves at unit speed along steepest descent whatever the scale of the
gradient. ‖g‖ is the global Euclidean norm of all leaves together.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import NONNEGATIVE, EmptyState, Interval, Transform, hyperparameter, pytree_dataclass
from gradflow.validation import check_nonnegative, check_range

__all__ = ["NormalizeByUpdateNorm", "normalize_by_update_norm", "squared_norm"]


def squared_norm(updates: Any) -> jax.Array:
    """‖u‖² over all leaves together, accumulated in at least float32 (bfloat16 updates are upcast)."""
    leaves = [jnp.asarray(u) for u in jax.tree.leaves(updates)]
    if not leaves:
        return jnp.zeros([], jnp.float32)
    dtype = jnp.promote_types(jnp.result_type(*leaves), jnp.float32)
    real = jnp.finfo(dtype).dtype  # complex64 -> float32
    sums = [jnp.sum(jnp.square(jnp.abs(u.astype(dtype)))).astype(real) for u in leaves]
    return jnp.sum(jnp.stack(sums))


def safe_sqrt(x: jax.Array) -> jax.Array:
    """√x with √0 = 0 and a zero (not NaN) derivative at 0."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1)), 0)


def scale_tree(updates: Any, factor: jax.Array) -> Any:
    """``factor · u`` leaf by leaf, computed in the wider of the two dtypes, returned in ``u``'s dtype."""

    def scaled(u):
        wide = jnp.promote_types(jnp.result_type(u), factor.dtype)
        return (jnp.asarray(u).astype(wide) * factor.astype(wide)).astype(jnp.result_type(u))

    return tree.map(scaled, updates)


@pytree_dataclass
class NormalizeByUpdateNorm(Transform):
    """u ← scale_factor · u / (‖u‖ + eps), and u ← 0 where ‖u‖ + eps = 0 (a zero gradient).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.normalize_by_update_norm(scale_factor=2.0, eps=0.0)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(None))[0]  # 2·g/‖g‖
      Array([1.2, 1.6], dtype=float32)
    """

    scale_factor: Any = hyperparameter(Interval(-math.inf, math.inf, low_open=True), default=1.0)
    eps: Any = hyperparameter(NONNEGATIVE, default=1e-6)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        denominator = safe_sqrt(squared_norm(updates)) + jnp.asarray(self.eps)
        positive = denominator > 0
        factor = jnp.where(positive, jnp.asarray(self.scale_factor) / jnp.where(positive, denominator, 1), 0)
        return scale_tree(updates, factor), state


def normalize_by_update_norm(scale_factor: Any = 1.0, eps: Any = 1e-6) -> NormalizeByUpdateNorm:
    """Divide the updates by their global norm: u ← scale_factor · g / (‖g‖ + eps).

    With ``eps=0`` this is the unit direction g/‖g‖ of seed 004's ODE view (θ' = −g/‖g‖ once a learning
    rate flips the sign); ``eps`` keeps the division finite near g = 0. A zero gradient gives a zero
    update, not NaN, even with ``eps=0``. Same name, arguments and defaults as
    ``optax.normalize_by_update_norm``, which computes g / ((‖g‖ + eps) / scale_factor) (so
    ``scale_factor=0`` divides by zero there and gives zero here). The norm is accumulated in at least
    float32 and the updates keep their dtype.

    Args:
      scale_factor: the length of the output (any finite real number; −1 gives the descent step directly).
      eps: ε ≥ 0 added to the norm.

    Returns:
      A stateless :class:`NormalizeByUpdateNorm` transform.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.normalize import normalize_by_update_norm
      >>> tx = normalize_by_update_norm(eps=0.0)
      >>> tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))[0]["b"]
      Array([0.8], dtype=float32)
      >>> tx.update(jnp.zeros(2), tx.init(None))[0]
      Array([0., 0.], dtype=float32)
    """
    check_range("normalize_by_update_norm", "scale_factor", scale_factor, -math.inf, math.inf, low_open=True)
    check_nonnegative("normalize_by_update_norm", "eps", eps)
    return NormalizeByUpdateNorm(scale_factor, eps)
