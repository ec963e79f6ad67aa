"""Weight decay and clipping of the whole update by its global norm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import arith, tree
from gradflow.core import NONNEGATIVE, EmptyState, Transform, hyperparameter, pytree_dataclass, static_field
from gradflow.layout import composite
from gradflow.validation import check_nonnegative

__all__ = [
    "AddDecayedWeights",
    "ClipByGlobalNorm",
    "ClipState",
    "FrozenMask",
    "add_decayed_weights",
    "clip_by_global_norm",
]


@pytree_dataclass
class FrozenMask:
    """A pytree of Python booleans stored as static data (hashable), or a function of the params."""

    fn: Callable[[Any], Any] | None = static_field(default=None)
    treedef: Any = static_field(default=None)
    leaves: tuple[bool, ...] = static_field(default=())

    @classmethod
    def of(cls, mask: Any, owner: str = "add_decayed_weights", name: str = "mask") -> FrozenMask | None:
        """The mask frozen; ``TypeError`` naming ``owner`` and the argument ``name`` for a leaf that is no bool."""
        if mask is None:
            return None
        if callable(mask):
            return cls(fn=mask)
        leaves, treedef = jax.tree.flatten(mask)
        for leaf in leaves:
            if not isinstance(leaf, (bool, jnp.bool_)):
                raise TypeError(f"{owner}: {name} leaves must be Python booleans, got {leaf!r}")
        return cls(treedef=treedef, leaves=tuple(bool(x) for x in leaves))

    def resolve(self, params: Any) -> list[Any]:
        """The mask's leaves aligned with the leaves of ``params`` (Python bools, or boolean arrays)."""
        mask = self.fn(params) if self.fn is not None else self.treedef.unflatten(self.leaves)
        structure: Any  # a jaxlib PyTreeDef, which has no type stubs
        structure = jax.tree.structure(params, is_leaf=lambda x: x is None)
        try:
            leaves = structure.flatten_up_to(mask)
        except (ValueError, TypeError):
            raise tree.TreeMismatchError(tree.describe_mismatch(mask, params, "mask", "params")) from None
        return [bool(m) if isinstance(m, (bool, np.bool_)) or (m is not None and jnp.ndim(m) == 0 and _is_concrete(m))
                else m for m in leaves]  # fmt: skip


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


@pytree_dataclass
class AddDecayedWeights(Transform):
    """Decoupled weight decay: u ← u + weight_decay · θ (Loshchilov & Hutter, 2019), where ``mask`` is true."""

    weight_decay: Any = hyperparameter(NONNEGATIVE)
    mask: FrozenMask | None = static_field(default=None)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("add_decayed_weights needs the parameters: call update(updates, state, params)")
        weight_decay = tree.promote_once(self.weight_decay)  # once per dtype, not per leaf
        decayed = tree.map(
            lambda u, p: arith.add(u, arith.mul(weight_decay(p), p)), updates, params, names=("updates", "params")
        )
        if self.mask is not None:
            structure: Any  # a jaxlib PyTreeDef, which has no type stubs
            structure = jax.tree.structure(updates, is_leaf=lambda x: x is None)
            decisions = self.mask.resolve(params)
            leaves = [
                d if m is True else u if m is False else None if u is None else jnp.where(m, d, u)
                for d, u, m in zip(structure.flatten_up_to(decayed), structure.flatten_up_to(updates), decisions)
            ]
            decayed = structure.unflatten(leaves)
        return tree.cast_like(decayed, updates), state


ClipState = EmptyState
"""The (empty) state of :func:`clip_by_global_norm`: optax's alias of ``EmptyState``."""


@pytree_dataclass
class ClipByGlobalNorm(Transform):
    """Rescale so that the global norm is at most max_norm: u ← u · max_norm / max(‖u‖, max_norm).

    ‖u‖ is the Euclidean norm of all leaves together (Pascanu et al., 2013), summed in at least float32
    (the updates keep their dtype); a norm within max_norm, zero included, leaves the updates as they are,
    so max_norm = 0 on a zero gradient gives zeros, not 0/0. Where the sum of squares overflows while every
    entry is finite, the norm is recomputed on the updates divided by their largest part. Where the norm is
    NaN or infinite, the updates are replaced by zeros: a NaN never passes through the clip into the
    parameters (optax returns NaN updates there). The state is optax's empty ``ClipState``; to count (and
    skip) such steps, wrap the optimizer in :func:`gradflow.apply_if_finite`.
    """

    max_norm: Any = hyperparameter(NONNEGATIVE)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        norm = tree.global_norm(updates)
        # The cond also keeps XLA from fusing the sum over all leaves into the scaling of each leaf: without a
        # boundary there, every leaf's fusion recomputes the whole sum (quadratic: minutes to compile 500 leaves).
        norm = jax.lax.cond(jnp.isposinf(norm), lambda: _rescaled_global_norm(updates, norm.dtype), lambda: norm)
        finite = jnp.isfinite(norm)
        # One scalar factor, multiplied into each leaf: XLA fuses the product into every consumer of the
        # clipped updates instead of materialising a divided copy of each leaf (half the time of a
        # per-leaf ``u / norm`` before Adam on a 16M-element leaf).
        # ``<=``: a zero norm with max_norm = 0 keeps the (zero) updates instead of dividing 0 by 0; the inner
        # where keeps the unused branch finite, so that derivatives through it are not NaN either.
        within = norm <= self.max_norm
        factor = jnp.where(within, 1.0, self.max_norm / jnp.where(within, 1.0, norm))
        factors: dict[Any, jax.Array] = {}  # the factor in each dtype it multiplies in, converted once
        return tree.map(lambda u: _scaled(u, factor, finite, factors), updates), state


def _scaled(u: Any, factor: jax.Array, finite: jax.Array, factors: dict[Any, jax.Array]) -> jax.Array:
    """``factor · u`` (zeros where the norm is not finite), multiplied in at least float32, in ``u``'s dtype."""
    u = jnp.asarray(u)
    wide = jnp.promote_types(u.dtype, factor.dtype)
    if wide not in factors:
        factors[wide] = factor.astype(wide)
    return jnp.where(finite, arith.mul(tree._astype(u, wide), factors[wide]), 0).astype(u.dtype)


def _rescaled_global_norm(updates: Any, dtype: Any) -> jax.Array:
    """‖u‖ as m·‖u/m‖ with m the largest part of an entry: no overflow in the squares (NaN if one is not finite).

    The leaves are raveled into one vector first (only when this branch runs): two reductions in all, instead
    of two per leaf, which halves the compile time of a step with thousands of leaves.
    """
    leaves = [jnp.ravel(jnp.asarray(u)) for u in jax.tree.leaves(updates) if u is not None]
    if not leaves:  # no updates at all (an empty tree): the norm is 0
        return jnp.zeros([], dtype)
    common = jnp.result_type(*leaves)
    flat = jnp.concatenate([u.astype(common) for u in leaves])
    largest = _largest_part(flat).astype(dtype)
    scaled = tree.global_norm(flat / largest)  # complex entries stay complex
    return (largest * scaled).astype(dtype)


def _largest_part(u: Any) -> jax.Array:
    """max |x| over the real and imaginary parts of the entries (|x| itself may overflow); 0 for no entries."""
    u = jnp.asarray(u)
    parts = jnp.maximum(jnp.abs(u.real), jnp.abs(u.imag)) if jnp.iscomplexobj(u) else jnp.abs(u)
    return jnp.max(parts, initial=0)


def add_decayed_weights(weight_decay: Any = 0.0, mask: Any = None) -> Transform:
    """Add ``weight_decay · params`` to the updates (AdamW's decoupled decay before the learning rate).

    Args:
      weight_decay: λ ≥ 0.
      mask: a pytree of booleans shaped like the params, or a function ``params -> mask``; decay is
        applied only where the mask is true (e.g. not to biases).

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.add_decayed_weights(0.1)
      >>> tx.update({"w": jnp.zeros(1)}, tx.init(None), {"w": jnp.array([2.0])})[0]["w"]
      Array([0.2], dtype=float32)
    """
    check_nonnegative("add_decayed_weights", "weight_decay", weight_decay)
    decay = AddDecayedWeights(weight_decay, FrozenMask.of(mask))
    return decay if mask is None else presented_as_masked(decay)


def presented_as_masked(tx: Transform) -> Transform:
    """A stateless transform that applies its own mask, its state presented as optax's ``masked`` holds it.

    optax masks a transform by wrapping it (``masked(add_decayed_weights(...), mask)``), so its state is
    ``MaskedState(inner_state=EmptyState())``; gradflow's transform applies the mask itself.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> presented_as_masked(gf.add_decayed_weights(0.1)).init(jnp.zeros(1))
    MaskedState(inner_state=EmptyState())
    """
    from gradflow.wrappers.partition import MaskedState  # the wrappers import the transforms: no cycle at import

    return composite(tx, MaskedState, inner_state="")


def clip_by_global_norm(max_norm: Any) -> ClipByGlobalNorm:
    """Scale all updates down together when their global norm exceeds ``max_norm``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.clip_by_global_norm(1.0)
      >>> tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))[0]["b"]
      Array([0.8], dtype=float32)
    """
    return ClipByGlobalNorm(check_nonnegative("clip_by_global_norm", "max_norm", max_norm))
