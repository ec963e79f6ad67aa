"""Accumulate the updates and emit their sum every k steps: optax's ``apply_every``.

For a whole optimizer that should see the average gradient of k micro-batches (its state advancing
once per k steps), use :func:`gradflow.multi_steps` instead; ``apply_every`` is a link of a chain, and
the links before it still update their state at every step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass

__all__ = [
    "ApplyEvery",
    "ApplyEveryK",
    "apply_every",
]


class ApplyEvery(NamedTuple):
    """The state of :func:`apply_every` (optax's class name and fields).

    Attributes:
      count: int32 position in the current cycle, in ``[0, k)``.
      grad_acc: the sum of the updates since the last emitted step, shaped like the parameters.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.apply_every(3).init(jnp.zeros(2))
      ApplyEvery(count=Array(0, dtype=int32), grad_acc=Array([0., 0.], dtype=float32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    grad_acc: Any


@pytree_dataclass
class ApplyEveryK(Transform):
    """Sum the updates; emit the sum at every k-th step and zeros in between (built by :func:`apply_every`).

    With c = count mod k: a ← g + (a if c ≠ 0 else 0); u ← a if c = k − 1 else 0.

    Example:
      >>> import gradflow as gf
      >>> tx = gf.apply_every(4)
      >>> isinstance(tx, gf.ApplyEveryK), tx.k  # k is a leaf: a batch of k can be vmapped over
      (True, 4)
    """

    k: Any = 1

    def init(self, params: Any) -> Any:
        return ApplyEvery(jnp.zeros([], jnp.int32), tree.zeros_like(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        k = jnp.asarray(self.k).astype(state.count.dtype)
        cycle = state.count % k
        keep, emit = cycle != 0, cycle == k - 1
        grad_acc = tree.map(
            lambda g, a: (keep * a + g).astype(jnp.result_type(a)),
            updates,
            state.grad_acc,
            names=("updates", "state.grad_acc"),
        )
        out = tree.map(lambda g, a: (emit * a).astype(jnp.result_type(g)), updates, grad_acc)
        return out, ApplyEvery(tree.saturating_increment(state.count) % k, grad_acc)


def _check_k(k: Any) -> Any:
    if isinstance(k, jax.core.Tracer):
        return k
    if isinstance(k, (bool, np.bool_)) or k is None or isinstance(k, (str, bytes)):
        raise TypeError(f"apply_every: k must be an integer >= 1, got {k!r}")
    try:
        values = np.asarray(k)
    except Exception:
        raise TypeError(f"apply_every: k must be an integer >= 1, got {k!r}") from None
    if not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"apply_every: k must be an integer >= 1, got {k!r}")
    if np.any(values < 1):
        raise ValueError(f"apply_every: k must be an integer >= 1, got {k!r}")
    return k


def apply_every(k: Any = 1) -> ApplyEveryK:
    """Accumulate the updates and apply their sum every ``k`` steps (zeros in between).

    With c = count mod k at each update: a ← g + (a if c ≠ 0 else 0), and the step is u ← a when
    c = k − 1, else u ← 0. So steps k, 2k, … apply the sum of the last k updates. The state is optax's
    :class:`ApplyEvery` ``(count, grad_acc)``.

    The other transforms of a chain still update their state at every step, so ``apply_every`` with
    half-size batches and ``k=2`` is not the same as full batches; :func:`gradflow.multi_steps` is.

    Args:
      k: the period, an integer >= 1 (a leaf: a jitted step does not recompile for a new ``k``).

    Returns:
      An :class:`ApplyEveryK` whose state is an :class:`ApplyEvery`.

    Raises:
      TypeError: if ``k`` is not an integer; ValueError: if it is below 1.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.apply_every(k=2)
      >>> state = tx.init(jnp.zeros(1))
      >>> for g in (1.0, 2.0, 3.0, 4.0):
      ...     u, state = tx.update(jnp.array([g]), state)
      ...     print(float(u[0]))
      0.0
      3.0
      0.0
      7.0
    """
    return ApplyEveryK(_check_k(k))
