"""Gradients applied late: a reproducible simulation of asynchronous SGD (seed 003).

In Downpour SGD and delay-tolerant SGD (seed 003's parallel family) a worker computes a gradient at
parameters that the server has moved on from by the time it arrives. ``stale_gradients(delay=k)``
reproduces that deterministically: the update of step t is the incoming update of step t − k,
held in a ring buffer of k slots; for the first k steps nothing has arrived yet and the output is
zero. On a quadratic with curvature λ, delayed gradient descent θ ← θ − η·λ·θ_{t−k} is stable iff
η·λ < 2·sin(π / (2(2k + 1))): 2 without delay, 1 for k = 1, 0.445 for k = 2 — a delay forces a
smaller learning rate.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.validation import check_integer

__all__ = ["StaleGradients", "StaleGradientsState", "stale_gradients"]


class StaleGradientsState(NamedTuple):
    """The state of :class:`StaleGradients`: a ring buffer of the last ``delay`` updates.

    Attributes:
      pending: the last ``delay`` updates, each leaf with a leading axis of ``delay`` slots.
      slot: int32 index of the oldest one (the next to be released).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.stale_gradients(2).init(jnp.zeros(3))
      >>> state.pending.shape, int(state.slot)  # 2 slots of the parameters' shape
      ((2, 3), 0)
    """

    pending: Any
    slot: jax.Array


@pytree_dataclass
class StaleGradients(Transform):
    """Output the update received ``delay`` steps ago (zeros until then); see the module docstring.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.stale_gradients(1)
      >>> isinstance(tx, gf.StaleGradients), tx.delay
      (True, 1)
    """

    delay: int = static_field()

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        pending = jax.tree.map(lambda p: jnp.zeros((self.delay, *jnp.shape(p)), jnp.result_type(p)), params)
        return StaleGradientsState(pending, jnp.zeros([], jnp.int32))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if self.delay == 0:
            return updates, state
        structure: Any = jax.tree.structure(updates)  # a jaxlib PyTreeDef, which has no type stubs
        if structure != jax.tree.structure(state.pending):
            raise tree.TreeMismatchError(
                f"stale_gradients: updates {jax.tree.structure(updates)} do not match the state's pending "
                f"updates {jax.tree.structure(state.pending)}"
            )
        released = jax.tree.map(lambda u, buffer: buffer[state.slot].astype(u.dtype), updates, state.pending)
        pending = jax.tree.map(lambda u, buffer: buffer.at[state.slot].set(u.astype(buffer.dtype)), updates,
                               state.pending)  # fmt: skip
        return released, StaleGradientsState(pending, (state.slot + 1) % self.delay)


def stale_gradients(delay: int) -> StaleGradients:
    """Apply each update ``delay`` steps late: u_t ← g_{t−delay}, and u_t ← 0 for t ≤ delay.

    ``chain(stale_gradients(k), sgd(lr))`` simulates asynchronous SGD (Downpour SGD, Dean et al., 2012)
    whose gradients arrive k steps after the parameters they were computed at.

    Args:
      delay: k ≥ 0, the number of steps each update is held back (static: it sets the buffer's size).

    Returns:
      A :class:`StaleGradients` whose state is a :class:`StaleGradientsState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.stale_gradients(2)
      >>> state = tx.init(jnp.zeros(1))
      >>> outs = []
      >>> for g in (1.0, 2.0, 3.0, 4.0):
      ...     out, state = tx.update(jnp.array([g]), state)
      ...     outs.append(float(out[0]))
      >>> outs
      [0.0, 0.0, 1.0, 2.0]
    """
    return StaleGradients(check_integer("stale_gradients", "delay", delay, low=0))
