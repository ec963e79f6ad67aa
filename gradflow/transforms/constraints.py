"""Constraints on the parameters enforced through the updates: ``keep_params_nonnegative``."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradflow import tree
from gradflow.core import EmptyState, Transform, pytree_dataclass

__all__ = [
    "KeepParamsNonnegative",
    "NonNegativeParamsState",
    "keep_params_nonnegative",
]

# optax's NonNegativeParamsState is its EmptyState under another name; so is gradflow's.
NonNegativeParamsState = EmptyState


@pytree_dataclass
class KeepParamsNonnegative(Transform):
    """``u ← −θ`` where ``θ + u < 0``, else ``u`` (built by :func:`keep_params_nonnegative`).

    Example:
      >>> import gradflow as gf
      >>> isinstance(gf.keep_params_nonnegative(), gf.KeepParamsNonnegative)
      True
    """

    def init(self, params: Any) -> Any:
        return NonNegativeParamsState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("keep_params_nonnegative needs the parameters: call update(updates, state, params)")
        tree.check_real_leaves("keep_params_nonnegative", params, "params", "complex numbers are not ordered")

        def clamp(u, p):
            if p is None:
                return u
            return jnp.where(p + u < 0, -p, u).astype(jnp.result_type(u))

        return tree.map(clamp, updates, params, names=("updates", "params")), state


def keep_params_nonnegative() -> KeepParamsNonnegative:
    """Change the updates so that the parameters stay non-negative: ``u ← −θ`` where ``θ + u < 0``.

    A step that would take a parameter below zero takes it to exactly zero instead; the other updates
    pass unchanged. Put it last in a chain (it must see the final step). A parameter that is already
    negative is moved to zero. The state is :data:`NonNegativeParamsState` (optax's alias of the empty
    state).

    Returns:
      A stateless :class:`KeepParamsNonnegative` transform whose ``update`` needs ``params``.

    Raises:
      ValueError: at ``update`` without ``params``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.chain(gf.sgd(1.0), gf.keep_params_nonnegative())
      >>> params = jnp.array([0.5, 2.0])
      >>> updates, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(params), params)
      >>> gf.apply_updates(params, updates)  # 0.5 − 1 would be negative: it stops at 0
      Array([0., 1.], dtype=float32)
    """
    return KeepParamsNonnegative()
