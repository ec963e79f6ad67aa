"""Gradient centralization (Yong et al., 2020): remove the mean of each weight's gradient slices."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradflow import tree
from gradflow.core import EmptyState, Transform, pytree_dataclass, static_field
from gradflow.validation import check_axis

__all__ = ["Centralize", "centralize"]


@pytree_dataclass
class Centralize(Transform):
    """u ← u − mean(u) over ``axis`` for every leaf of rank ≥ 2; vectors and scalars pass unchanged.

    ``axis=None`` averages over every axis but the first (one mean per leading index), as optax does.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.centralize()
      >>> tx.update(jnp.array([[1.0, 3.0], [2.0, 2.0]]), tx.init(None))[0]  # each row loses its mean
      Array([[-1.,  1.],
             [ 0.,  0.]], dtype=float32)
    """

    axis: int | tuple[int, ...] | None = static_field(default=None)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        def centre(u):
            u = jnp.asarray(u)
            if u.ndim < 2:  # biases and scalars (a structural choice, known while tracing)
                return u
            axes = tuple(range(1, u.ndim)) if self.axis is None else self.axis
            return (u - jnp.mean(u, axis=axes, keepdims=True)).astype(u.dtype)

        return tree.map(centre, updates), state


def centralize(*, axis: int | tuple[int, ...] | None = None) -> Centralize:
    """Gradient centralization: make the gradient of each weight slice zero-mean.

    Yong et al., 2020, "Gradient Centralization: A New Optimization Technique for Deep Neural
    Networks". For every leaf u of rank ≥ 2: u ← u − mean(u) over ``axis``; leaves of rank 0 and 1 (biases,
    scales) are left alone, as in the paper. The default, every axis but the first, is optax's and the
    paper's for weights stored output-first (PyTorch's ``(out, in)`` and ``(out, in, kh, kw)``): one
    mean per output unit. For Flax's input-first kernels (``(in, out)``, HWIO) the paper's rule is
    ``axis=0`` (dense) or ``axis=(0, 1, 2)`` (convolution). ``axis`` is gradflow's addition.

    Args:
      axis: keyword-only; the axes to average over in leaves of rank ≥ 2; ``None`` means all but
        the first.

    Returns:
      A stateless transform.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.centralize import centralize
      >>> tx = centralize()
      >>> grads = {"w": jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]]), "b": jnp.array([1.0, 2.0])}
      >>> out, _ = tx.update(grads, tx.init(grads))
      >>> out["w"], out["b"]
      (Array([[-1.,  0.,  1.],
             [-2., -1.,  3.]], dtype=float32), Array([1., 2.], dtype=float32))
    """
    return Centralize(check_axis("centralize", "axis", axis))
