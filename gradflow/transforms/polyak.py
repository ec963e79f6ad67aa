"""Polyak's step size: a step length from the gap between the loss and its minimum (seed 004).

Seed 004 looks for the flow along −g that makes the loss decay like dL/dt = −L. It finds
θ' = −L·g/‖g‖² (Polyak, 1987), whose step is singular where g = 0 but L > 0 (a local minimum), and
clips it: θ' = −(g/‖g‖)·L·min(1/‖g‖, M). Two transforms follow:

- :func:`scale_by_polyak`, the stochastic Polyak step of Loizou et al. (2021) as in optax:
  u ← min((value − f_min)/(‖g‖² + eps), max_learning_rate)·g, the cap on the step size;
- :func:`scale_by_clipped_polyak`, the seed's own form: u ← (value − f_min)·min(1/‖g‖, M)·g/‖g‖, the
  cap on the inverse norm, which bounds the step length by M·(value − f_min).

Both read the loss at ``params`` from the ``value`` extra argument of ``update`` and multiply every leaf
by one scalar; ‖g‖ is the global norm of all leaves together, accumulated in at least float32.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import (
    NONNEGATIVE,
    REAL,
    EmptyState,
    Interval,
    Transform,
    hyperparameter,
    pytree_dataclass,
    static_field,
)
from gradflow.transforms.normalize import safe_sqrt, scale_tree, squared_norm
from gradflow.validation import check_choice, check_number, check_range

__all__ = ["ScaleByClippedPolyak", "ScaleByPolyak", "scale_by_clipped_polyak", "scale_by_polyak"]

VARIANTS = ("sps", "sps+")


def _gap(owner: str, value: Any, f_min: Any, variant: str, norm_dtype: Any) -> jax.Array:
    """value − f_min (its positive part for ``sps+``) as a scalar in the computation dtype."""
    if value is None:
        raise ValueError(
            f"{owner} needs the loss at params: call update(grads, state, params, value=loss(params)) "
            "(the extra argument `value`)"
        )
    value = tree.check_value(owner, value)
    dtype = jnp.promote_types(norm_dtype, value.dtype)
    gap = value.astype(dtype) - jnp.asarray(f_min).astype(dtype)
    return jnp.maximum(gap, 0) if variant == "sps+" else gap


@pytree_dataclass
class ScaleByPolyak(Transform):
    """u ← min((value − f_min)/(‖u‖² + eps), max_learning_rate) · u, and u ← 0 where ‖u‖² + eps = 0.

    ``variant="sps+"`` uses max(value − f_min, 0). Needs the extra argument ``value``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_polyak()
      >>> g = jnp.array([3.0, 4.0])  # ‖g‖² = 25
      >>> tx.update(g, tx.init(g), value=5.0)[0]  # min(5/25, 1)·g
      Array([0.6, 0.8], dtype=float32)
    """

    f_min: Any = hyperparameter(REAL, default=0.0)
    max_learning_rate: Any = hyperparameter(Interval(0.0, math.inf, high_open=False), default=1.0)
    eps: Any = hyperparameter(NONNEGATIVE, default=0.0)
    variant: Literal["sps", "sps+"] = static_field(default="sps")

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, value: Any = None, **extra: Any) -> tuple[Any, Any]:
        squared = squared_norm(updates)
        gap = _gap("scale_by_polyak", value, self.f_min, self.variant, squared.dtype)
        denominator = squared.astype(gap.dtype) + jnp.asarray(self.eps).astype(gap.dtype)
        positive = denominator > 0
        ratio = gap / jnp.where(positive, denominator, 1)
        step = jnp.where(positive, jnp.minimum(ratio, jnp.asarray(self.max_learning_rate).astype(gap.dtype)), 0)
        return scale_tree(updates, step), state


@pytree_dataclass
class ScaleByClippedPolyak(Transform):
    """u ← (value − f_min) · min(1/‖u‖, max_inverse_norm) · u/‖u‖, and u ← 0 where u = 0 (seed 004).

    Needs the extra argument ``value``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_clipped_polyak()
      >>> g = jnp.array([3.0, 4.0])  # ‖g‖ = 5
      >>> tx.update(g, tx.init(g), value=10.0)[0]  # 10·(1/5)·g/5
      Array([1.2, 1.6], dtype=float32)
    """

    f_min: Any = hyperparameter(REAL, default=0.0)
    max_inverse_norm: Any = hyperparameter(Interval(0.0, math.inf, low_open=True, high_open=False), default=1000.0)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, value: Any = None, **extra: Any) -> tuple[Any, Any]:
        squared = squared_norm(updates)
        gap = _gap("scale_by_clipped_polyak", value, self.f_min, "sps", squared.dtype)
        norm = safe_sqrt(squared.astype(gap.dtype))
        positive = norm > 0
        inverse = 1 / jnp.where(positive, norm, 1)
        cap = jnp.asarray(self.max_inverse_norm).astype(gap.dtype)
        factor = jnp.where(positive, gap * jnp.minimum(inverse, cap) * inverse, 0)
        return scale_tree(updates, factor), state


def _check_variant(owner: str, variant: str) -> None:
    check_choice(owner, "variant", variant, VARIANTS)


def scale_by_polyak(
    f_min: Any = 0.0,
    max_learning_rate: Any = 1.0,
    eps: Any = 0.0,
    variant: Literal["sps", "sps+"] = "sps",
) -> ScaleByPolyak:
    """Scale the updates by the stochastic Polyak step size (Loizou et al., 2021; seed 004).

    u ← γ·g with γ = min((value − f_min) / (‖g‖² + eps), max_learning_rate), where ``value`` is the loss
    at ``params`` passed to ``update`` and ‖g‖ the global norm of the updates. ``variant="sps+"``
    (Garrigos et al., 2023) replaces value − f_min by max(value − f_min, 0). Where ‖g‖² + eps = 0 the
    update is 0 (optax: where ‖g‖² + eps ≤ 2.2e-16). Same arguments and defaults as
    ``optax.scale_by_polyak``; the result is a direction to descend along, so chain a learning rate (or
    use :func:`gradflow.optimizers.polyak.polyak_sgd`).

    Args:
      f_min: f*, a lower bound (or a guess) of the minimum of the loss.
      max_learning_rate: γ_max ≥ 0, the cap on the step size (``math.inf``: no cap).
      eps: ε ≥ 0 added to ‖g‖².
      variant: ``"sps"`` or ``"sps+"``.

    Returns:
      A stateless :class:`ScaleByPolyak`; its ``update`` needs ``value=`` (a scalar).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.transforms.polyak import scale_by_polyak
      >>> loss = lambda p: jnp.sum(p ** 2)
      >>> params = jnp.array([1.0, 2.0])
      >>> value, grads = jax.value_and_grad(loss)(params)  # 5 and [2, 4]
      >>> tx = scale_by_polyak(max_learning_rate=10.0)
      >>> tx.update(grads, tx.init(params), params, value=value)[0]  # (5 / 20) · g
      Array([0.5, 1. ], dtype=float32)
    """
    check_number("scale_by_polyak", "f_min", f_min)
    check_range("scale_by_polyak", "max_learning_rate", max_learning_rate, 0.0, math.inf, high_open=False)
    check_range("scale_by_polyak", "eps", eps, 0.0, math.inf)
    _check_variant("scale_by_polyak", variant)
    return ScaleByPolyak(f_min, max_learning_rate, eps, variant)


def scale_by_clipped_polyak(f_min: Any = 0.0, max_inverse_norm: Any = 1000.0) -> ScaleByClippedPolyak:
    """Seed 004's clipped Polyak flow: u ← (value − f_min) · min(1/‖g‖, max_inverse_norm) · g/‖g‖.

    The seed (苏剑林, "从动力学角度看优化算法（三）", 2019, eq. me-gd-3) writes the Polyak flow
    θ' = −L·g/‖g‖² as θ' = −(g/‖g‖)·L·(1/‖g‖) and caps the singular factor 1/‖g‖ at M ≫ 0, so that the
    step stays finite at a local minimum where g = 0 but L > 0: there the step length is M·L, which can
    carry θ out of a poor local minimum. Compared with :func:`scale_by_polyak` (cap on the step size
    L/‖g‖²), the cap here bounds the step length by M·L. At g = 0 exactly the direction g/‖g‖ is
    undefined and the update is 0 (the seed's NumPy code gives NaN there).

    Args:
      f_min: L*, the minimum of the loss (the seed assumes 0).
      max_inverse_norm: M > 0, the cap on 1/‖g‖ (the seed's experiment uses 1000; ``math.inf``: no cap).

    Returns:
      A stateless :class:`ScaleByClippedPolyak`; its ``update`` needs ``value=`` (a scalar).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.polyak import scale_by_clipped_polyak
      >>> tx = scale_by_clipped_polyak(max_inverse_norm=2.0)
      >>> g = jnp.array([0.3, 0.4])  # ‖g‖ = 0.5, 1/‖g‖ = 2 is within the cap
      >>> tx.update(g, tx.init(g), value=1.5)[0]  # 1.5 · 2 · g/‖g‖
      Array([1.8000001, 2.4      ], dtype=float32)
      >>> tx.update(g / 10, tx.init(g), value=1.5)[0]  # 1/‖g‖ = 20 is capped at 2
      Array([1.8000001, 2.4      ], dtype=float32)
    """
    check_number("scale_by_clipped_polyak", "f_min", f_min)
    check_range("scale_by_clipped_polyak", "max_inverse_norm", max_inverse_norm, 0.0, math.inf, low_open=True,
                high_open=False)  # fmt: skip
    return ScaleByClippedPolyak(f_min, max_inverse_norm)
