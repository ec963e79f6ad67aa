"""Clipping of each leaf by a statistic of its own: block RMS and adaptive (unit-wise) clipping.

:func:`gradflow.clip` clips coordinates and :func:`gradflow.clip_by_global_norm` clips the whole
update; the transforms here look at one parameter block (a leaf) at a time. ``clip_by_block_rms``
bounds the root mean square of each leaf; ``adaptive_grad_clip`` bounds the norm of each unit (an
output neuron's fan-in, a convolution filter) relative to the norm of the matching parameters.

Norms are taken with a square root that is safe to differentiate at zero (a zero gradient or a
zero-initialised bias gives a zero norm and a finite derivative, never NaN), and in at least float32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import NONNEGATIVE, POSITIVE, EmptyState, Transform, hyperparameter, pytree_dataclass, static_field
from gradflow.validation import check_axis, check_nonnegative, check_range

__all__ = [
    "AdaptiveGradClip",
    "ClipByBlockRMS",
    "adaptive_grad_clip",
    "clip_by_block_rms",
    "unitwise_clip",
    "unitwise_norm",
]

# Below this update norm the unit-wise rescaling divides by it instead (it can only matter when the
# update norm is below 1e-6 yet above the allowed norm, i.e. for clipping * eps < 1e-6).
_DIVISION_FLOOR = 1e-6


def compute_dtype(x: Any) -> Any:
    """The dtype to reduce ``x`` in: its own, but at least float32 (bfloat16 sums lose digits)."""
    return jnp.promote_types(jnp.result_type(x), jnp.float32)


def squared_norm(x: Any, axis: Any = None, keepdims: bool = False) -> jax.Array:
    """Σ|x|² over ``axis`` (all axes for ``None``), in :func:`compute_dtype` (real even for complex x)."""
    x = jnp.asarray(x)
    x = x.astype(compute_dtype(x))
    return jnp.sum(jnp.real(x * jnp.conj(x)), axis=axis, keepdims=keepdims)


def safe_sqrt(square: jax.Array) -> jax.Array:
    """``sqrt(square)`` whose derivative at 0 is 0 instead of ``inf`` (which turns into NaN); NaN stays NaN."""
    positive = square > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, square, 1)), square)


def _unit_axes(shape: tuple[int, ...], axis: Any, path: str) -> int | tuple[int, ...] | None:
    """The axes that make up one unit of an array of ``shape`` (``None``: all of it), as optax infers them."""
    if axis is not None:
        return axis
    if sum(n != 1 for n in shape) <= 1:  # scalars, vectors, and arrays with one axis longer than 1
        return None
    if len(shape) in (2, 3):  # dense kernels (in, out), multi-head kernels (in, heads, out)
        return (0,)
    if len(shape) == 4:  # convolution kernels HWIO
        return (0, 1, 2)
    if len(shape) == 5:  # 3-D convolution kernels DHWIO
        return (0, 1, 2, 3)
    raise ValueError(
        f"adaptive_grad_clip: cannot infer the units of {path} with shape {tuple(shape)} (rank {len(shape)}); "
        "pass axis= (the axes that make up one unit) for leaves of rank above 5"
    )


def unitwise_norm(x: Any, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """The Euclidean norm of each unit of ``x``, broadcast to the shape of ``x``.

    A unit is the slice that one output of a layer reads. Without ``axis`` it is inferred from the
    rank, as in optax and Brock et al. (2021): a scalar or a vector (any array with at most one axis
    longer than 1) is one unit; rank 2 and 3 reduce over axis 0 (dense ``(in, out)`` and multi-head
    ``(in, heads, out)`` kernels); rank 4 over axes (0, 1, 2) (HWIO convolutions); rank 5 over
    (0, 1, 2, 3) (DHWIO convolutions). ``axis`` names the reduced axes explicitly.

    Args:
      x: an array.
      axis: the axis or axes of one unit; ``None`` infers them from the rank.

    Returns:
      An array shaped like ``x`` (dtype at least float32) holding the norm of the unit of each entry.

    Raises:
      ValueError: for rank above 5 without ``axis``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.clipping import unitwise_norm
      >>> unitwise_norm(jnp.array([[3.0, 0.0], [4.0, 1.0]]))  # columns are units
      Array([[5., 1.],
             [5., 1.]], dtype=float32)
    """
    x = jnp.asarray(x)
    axes = _unit_axes(x.shape, check_axis("unitwise_norm", "axis", axis), "the array")
    return jnp.broadcast_to(safe_sqrt(squared_norm(x, axes, keepdims=True)), x.shape)


def unitwise_clip(g_norm: Any, max_norm: Any, grad: Any, div_eps: Any = 1e-6) -> jax.Array:
    """Clip ``grad`` unit by unit, given each entry's unit norm ``g_norm`` and allowed norm ``max_norm``.

    grad ← grad where g_norm < max_norm, else grad · max_norm / max(g_norm, div_eps) (the rule inside
    :func:`adaptive_grad_clip`; ``div_eps`` only guards the division). The three arrays have one shape,
    as :func:`unitwise_norm` gives: a norm per entry, broadcast over its unit.

    Args:
      g_norm: the norm of the unit of each entry of ``grad``.
      max_norm: the largest norm allowed for the unit of each entry.
      grad: the array to clip.
      div_eps: the floor of the divisor.

    Returns:
      The clipped array.

    Raises:
      ValueError: if the shapes of ``g_norm``, ``max_norm`` and ``grad`` differ (naming them).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.clipping import unitwise_clip, unitwise_norm
      >>> g = jnp.array([[3.0, 0.1], [4.0, 0.0]])  # two columns (units) of norms 5 and 0.1
      >>> unitwise_clip(unitwise_norm(g), jnp.ones_like(g), g)
      Array([[0.6, 0.1],
             [0.8, 0. ]], dtype=float32)
    """
    shapes = {"g_norm": jnp.shape(g_norm), "max_norm": jnp.shape(max_norm), "grad": jnp.shape(grad)}
    if len(set(shapes.values())) != 1:
        got = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"unitwise_clip: g_norm, max_norm and grad must have the same shape, got {got}")
    clipped = grad * (max_norm / jnp.maximum(g_norm, div_eps))
    return jnp.where(g_norm < max_norm, grad, clipped)


@pytree_dataclass
class ClipByBlockRMS(Transform):
    """Rescale each leaf whose root mean square exceeds ``threshold``: u ← u / max(1, rms(u) / threshold).

    rms(u) = sqrt(mean(|u|²)) over the entries of one leaf (one parameter block).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.clip_by_block_rms(1.0)
      >>> tx.update(jnp.array([2.0, -2.0]), tx.init(None))[0]  # rms 2 is scaled down to 1
      Array([ 1., -1.], dtype=float32)
    """

    threshold: Any = hyperparameter(POSITIVE, outside="nan_updates")

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        threshold = jnp.asarray(self.threshold)

        def clip_leaf(u):
            u = jnp.asarray(u)
            rms = safe_sqrt(squared_norm(u) / max(u.size, 1))
            divisor = jnp.maximum(1, rms / threshold)
            return (u / divisor.astype(compute_dtype(u))).astype(u.dtype)

        return tree.map(clip_leaf, updates), state


@pytree_dataclass
class AdaptiveGradClip(Transform):
    """Adaptive gradient clipping (AGC, Brock et al., 2021), unit by unit.

    For each unit i (see :func:`unitwise_norm`) with update norm ‖u_i‖ and parameter norm ‖θ_i‖, let
    m_i = clipping · max(‖θ_i‖, eps). Then u_i ← u_i if ‖u_i‖ < m_i, else u_i · m_i / max(‖u_i‖, 10⁻⁶).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.adaptive_grad_clip(0.1)
      >>> params = jnp.array([3.0, 4.0])  # a vector is one unit: ‖θ‖ = 5
      >>> tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)[0]  # ‖u‖ = 2 is cut to 0.1·5
      Array([0. , 0.5], dtype=float32)
    """

    clipping: Any = hyperparameter(NONNEGATIVE, outside="nan_updates")
    eps: Any = hyperparameter(NONNEGATIVE, default=1e-3)
    axis: int | tuple[int, ...] | None = static_field(default=None)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("adaptive_grad_clip needs the parameters: call update(updates, state, params)")
        clipping, eps = jnp.asarray(self.clipping), jnp.asarray(self.eps)
        for path, leaf in jax.tree_util.tree_flatten_with_path(updates)[0]:  # a clear error before any work
            _unit_axes(jnp.shape(leaf), self.axis, f"updates{jax.tree_util.keystr(path)}")

        def clip_leaf(u, p):
            u, p = jnp.asarray(u), jnp.asarray(p)
            axes = _unit_axes(u.shape, self.axis, "updates")
            u_norm = safe_sqrt(squared_norm(u, axes, keepdims=True))
            max_norm = clipping * jnp.maximum(safe_sqrt(squared_norm(p, axes, keepdims=True)), eps)
            clipped = u * (max_norm / jnp.maximum(u_norm, _DIVISION_FLOOR)).astype(compute_dtype(u))
            return jnp.where(u_norm < max_norm, u, clipped).astype(u.dtype)

        return tree.map(clip_leaf, updates, params, names=("updates", "params")), state


def clip_by_block_rms(threshold: Any) -> ClipByBlockRMS:
    """Clip each parameter block (leaf) to a root mean square of at most ``threshold``.

    u ← u / max(1, rms(u) / threshold) with rms(u) = sqrt(mean(|u|²)) over the leaf, so a leaf whose
    RMS is below ``threshold`` is unchanged and any other is scaled down to RMS ``threshold``.

    Args:
      threshold: the largest RMS allowed for a leaf, > 0.

    Returns:
      A stateless transform.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.clipping import clip_by_block_rms
      >>> tx = clip_by_block_rms(1.0)
      >>> updates = {"w": jnp.array([3.0, -4.0]), "b": jnp.array([0.5])}
      >>> clipped, _ = tx.update(updates, tx.init(updates))
      >>> [round(float(x), 4) for x in clipped["w"]]  # rms(w) = 5/√2 is scaled down to 1
      [0.8485, -1.1314]
      >>> clipped["b"]  # rms(b) is below the threshold
      Array([0.5], dtype=float32)
    """
    check_range("clip_by_block_rms", "threshold", threshold, 0.0, float("inf"), low_open=True)
    return ClipByBlockRMS(threshold)


def adaptive_grad_clip(clipping: Any, eps: Any = 1e-3, axis: int | tuple[int, ...] | None = None) -> AdaptiveGradClip:
    """Adaptive gradient clipping: bound each unit's update norm by ``clipping`` times its parameter norm.

    Brock et al., 2021, "High-Performance Large-Scale Image Recognition Without Normalization" (AGC),
    with optax's unit conventions. For every unit i of every leaf (an output neuron's weights; see
    :func:`unitwise_norm`):

    m_i = clipping · max(‖θ_i‖, eps),  u_i ← u_i if ‖u_i‖ < m_i, else u_i · m_i / ‖u_i‖

    (the division uses max(‖u_i‖, 10⁻⁶), as optax does). ``eps`` keeps zero-initialised parameters
    (biases) from freezing: their updates may still have norm ``clipping · eps``.

    Args:
      clipping: the largest ratio ‖u_i‖ / max(‖θ_i‖, eps) allowed, ≥ 0 (the paper uses 0.01 to 0.16).
      eps: the smallest parameter norm assumed, ≥ 0.
      axis: the axis or axes that make up one unit, for every leaf; ``None`` infers them from each
        leaf's rank (see :func:`unitwise_norm`).

    Returns:
      A stateless transform whose ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.clipping import adaptive_grad_clip
      >>> tx = adaptive_grad_clip(0.1)
      >>> params = {"w": jnp.array([[3.0, 0.0], [4.0, 1.0]])}  # column norms 5 and 1
      >>> grads = {"w": jnp.array([[0.0, 1.0], [1.0, 0.0]])}   # column norms 1 and 1
      >>> tx.update(grads, tx.init(params), params)[0]["w"]    # allowed: 0.5 and 0.1
      Array([[0. , 0.1],
             [0.5, 0. ]], dtype=float32)
    """
    check_nonnegative("adaptive_grad_clip", "clipping", clipping)
    check_nonnegative("adaptive_grad_clip", "eps", eps)
    return AdaptiveGradClip(clipping, eps, check_axis("adaptive_grad_clip", "axis", axis))
