"""The layer-wise trust ratio of LARS and LAMB (You et al., 2017 and 2020), and masks given as tree prefixes.

Each leaf's update is rescaled by ‖θ‖ / ‖u‖, so that every layer moves by the same fraction of its
weights whatever the scale of its gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import NONNEGATIVE, EmptyState, Transform, hyperparameter, pytree_dataclass, static_field
from gradflow.transforms.clipping import compute_dtype, squared_norm
from gradflow.transforms.regularization import FrozenMask
from gradflow.validation import check_nonnegative

__all__ = ["PrefixMask", "ScaleByTrustRatio", "frozen_mask", "prefix_mask", "scale_by_trust_ratio"]


def _is_none(x: Any) -> bool:
    return x is None


@dataclasses.dataclass(frozen=True)
class PrefixMask:
    """A boolean mask given as a prefix of the params tree (or a function returning one), as in optax.

    Calling it with the params returns the mask broadcast to the full params tree: a boolean at an
    inner node applies to every leaf under it (``True`` alone masks in everything). Frozen and
    hashable, so it can sit in a static field: two masks built from equal trees compare equal (and a
    jitted step does not recompile for a new optimizer with the same mask).
    """

    name: str
    fn: Callable[[Any], Any] | None = None
    treedef: Any = None
    leaves: tuple[bool, ...] = ()

    def __call__(self, params: Any) -> Any:
        mask = self.fn(params) if self.fn is not None else self.treedef.unflatten(self.leaves)
        try:
            return jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub), mask, params)
        except (ValueError, TypeError):
            raise tree.TreeMismatchError(
                f"{self.name} must be a prefix of the params tree\n"
                + tree.describe_mismatch(mask, params, self.name, "params")
            ) from None


def prefix_mask(owner: str, name: str, mask: Any) -> PrefixMask | None:
    """A user's mask as a hashable :class:`PrefixMask`, which any ``mask=`` argument accepts.

    ``mask`` is a tree of booleans that is a prefix of the params, or a function of the params
    returning one.

    ``None`` and ``True`` (every leaf) give ``None``: no masking, and the same static structure as an
    unmasked transform.

    Raises:
      TypeError: when a leaf of a mask tree is not a boolean; the error names ``owner`` and ``name``.
    """
    if mask is None or isinstance(mask, PrefixMask):
        return mask
    if isinstance(mask, (bool, np.bool_)) and bool(mask):
        return None
    if callable(mask):
        return PrefixMask(name, fn=mask)
    leaves, treedef = jax.tree.flatten(mask)
    for leaf in leaves:
        if not isinstance(leaf, (bool, np.bool_)):
            raise TypeError(f"{owner}: {name} leaves must be Python booleans, got {leaf!r}")
    return PrefixMask(name, treedef=treedef, leaves=tuple(bool(x) for x in leaves))


def frozen_mask(owner: str, name: str, mask: Any) -> FrozenMask | None:
    """:func:`prefix_mask` wrapped in the static :class:`~gradflow.transforms.regularization.FrozenMask`."""
    return FrozenMask.of(prefix_mask(owner, name, mask))


def _safe_norm(x: jax.Array, min_norm: jax.Array) -> jax.Array:
    """max(‖x‖, min_norm), differentiable (derivative 0, not NaN) where ‖x‖ ≤ min_norm, zero included."""
    square = squared_norm(x)
    small = jnp.sqrt(square) <= min_norm  # a comparison: no derivative flows through it
    return jnp.where(small, min_norm, jnp.sqrt(jnp.where(small, 1, square)))


@pytree_dataclass
class ScaleByTrustRatio(Transform):
    """Rescale each leaf by its trust ratio, u ← u · r, where ``mask`` is true (everywhere by default).

    r = trust_coefficient · max(‖θ‖, min_norm) / (max(‖u‖, min_norm) + eps), and r = 1 where either
    norm is 0 (a zero-initialised layer, or a zero update). Norms are per leaf (the whole layer).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_trust_ratio(trust_coefficient=0.1)
      >>> params = jnp.array([3.0, 4.0])  # ‖θ‖ = 5
      >>> tx.update(jnp.array([1.0, 0.0]), tx.init(params), params)[0]  # ‖u‖ = 1: u·0.1·5/1
      Array([0.5, 0. ], dtype=float32)
    """

    min_norm: Any = hyperparameter(NONNEGATIVE, default=0.0)
    trust_coefficient: Any = hyperparameter(NONNEGATIVE, default=1.0)
    eps: Any = hyperparameter(NONNEGATIVE, default=0.0)
    mask: FrozenMask | None = static_field(default=None)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def _scale(self, u: Any, p: Any) -> jax.Array:
        u, p = jnp.asarray(u), jnp.asarray(p)
        min_norm, eps = jnp.asarray(self.min_norm), jnp.asarray(self.eps)
        param_norm, update_norm = _safe_norm(p, min_norm), _safe_norm(u, min_norm)
        zero = jnp.logical_or(param_norm == 0, update_norm == 0)
        # The inner where keeps the unused branch finite, so that derivatives through it are not NaN.
        trust_coefficient = jnp.asarray(self.trust_coefficient)
        ratio = jnp.where(zero, 1, trust_coefficient * param_norm / jnp.where(zero, 1, update_norm + eps))
        return (u * ratio.astype(compute_dtype(u))).astype(u.dtype)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("scale_by_trust_ratio needs the parameters: call update(updates, state, params)")
        if self.mask is None:
            return tree.map(self._scale, updates, params, names=("updates", "params")), state
        tree.map(lambda u, p: None, updates, params, names=("updates", "params"))  # same structure and shapes
        structure: Any = jax.tree.structure(updates, is_leaf=_is_none)  # a jaxlib PyTreeDef, which has no type stubs
        leaves = []
        for u, p, m in zip(
            structure.flatten_up_to(updates), structure.flatten_up_to(params), self.mask.resolve(params)
        ):
            if u is None or m is False:
                leaves.append(u)
            elif m is True:
                leaves.append(self._scale(u, p))
            else:  # a boolean array (a callable mask that returned arrays)
                leaves.append(jnp.where(m, self._scale(u, p), u))
        return structure.unflatten(leaves), state


def scale_by_trust_ratio(
    min_norm: Any = 0.0,
    trust_coefficient: Any = 1.0,
    eps: Any = 0.0,
    *,
    mask: Any = None,
) -> ScaleByTrustRatio:
    """Scale each leaf (layer) by its trust ratio ‖θ‖ / ‖u‖, the layer-wise rescaling of LARS and LAMB.

    You et al., 2017, "Large Batch Training of Convolutional Networks"; 2020, "Large Batch
    Optimization for Deep Learning: Training BERT in 76 minutes". Per leaf:
    u ← u · trust_coefficient · max(‖θ‖, min_norm) / (max(‖u‖, min_norm) + eps), with ‖·‖ the
    Euclidean norm of a whole leaf; the factor is 1 where ‖θ‖ or ‖u‖ is 0 (as in optax), so a
    zero-initialised layer still moves and a zero update gives no NaN. The step of each layer then has
    norm ≈ trust_coefficient · ‖θ‖ before the learning rate.

    Args:
      min_norm: lower bound applied to both norms, ≥ 0 (0: none).
      trust_coefficient: multiplier of the ratio, ≥ 0 (LARS's η).
      eps: added to the update norm in the denominator, ≥ 0.
      mask: keyword-only (gradflow's addition; optax wraps the transform in ``optax.masked``): a tree
        of booleans that is a prefix of the params, or a function of the params returning one; leaves
        where it is false pass through unscaled. ``None`` or ``True``: every leaf.

    Returns:
      A stateless transform whose ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.trust_ratio import scale_by_trust_ratio
      >>> tx = scale_by_trust_ratio()
      >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.zeros(2)}   # ‖w‖ = 5, ‖b‖ = 0
      >>> grads = {"w": jnp.array([0.0, 0.5]), "b": jnp.array([1.0, -1.0])}
      >>> out, _ = tx.update(grads, tx.init(params), params)
      >>> out["w"], out["b"]  # w's update rescaled to norm 5; b (zero norm) unchanged
      (Array([0., 5.], dtype=float32), Array([ 1., -1.], dtype=float32))
    """
    check_nonnegative("scale_by_trust_ratio", "min_norm", min_norm)
    check_nonnegative("scale_by_trust_ratio", "trust_coefficient", trust_coefficient)
    check_nonnegative("scale_by_trust_ratio", "eps", eps)
    return ScaleByTrustRatio(min_norm, trust_coefficient, eps, frozen_mask("scale_by_trust_ratio", "mask", mask))
