"""Gradient accumulation over micro-steps: ``multi_steps`` runs the inner optimizer once every k calls."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.transforms.moments import canonical_dtype
from gradflow.wrappers._common import as_transform, check_positive_int, is_none

__all__ = ["MultiSteps", "MultiStepsState", "multi_steps"]


class MultiStepsState(NamedTuple):
    """The state of :func:`multi_steps` (optax's field names, without ``skip_state``).

    Attributes:
      mini_step: int32 number of micro-steps accumulated since the latest inner step (0 … k−1).
      gradient_step: int32 number of inner steps taken (saturating).
      inner_opt_state: the inner optimizer's state; it changes only on an inner step.
      acc_grads: the mean (or sum) of the gradients of the current micro-steps.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.multi_steps(gf.sgd(0.1), every_k_schedule=2)
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> _, state = tx.update(jnp.array([1.0, 3.0]), state, params)
      >>> state.mini_step, state.acc_grads  # one micro-step accumulated, no inner step yet
      (Array(1, dtype=int32), Array([1., 3.], dtype=float32))
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: Any


def _accumulator_dtype(param: Any, dtype: Any) -> Any:
    return dtype if dtype is not None else jnp.promote_types(jnp.result_type(param), jnp.float32)


@pytree_dataclass
class MultiSteps(Transform):
    """Accumulate gradients over ``every_k_schedule`` micro-steps, then take one inner step.

    At micro-step i = 1 … k of each group (k = ``every_k_schedule``):
    a ← a + (g − a)/i (``reduction="mean"``) or a ← a + g (``"sum"``); then at i = k: u ← inner(a),
    a ← 0; at i < k: u ← 0. The inner update runs only at i = k, inside ``jax.lax.cond``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.multi_steps(gf.sgd(0.1), every_k_schedule=2)
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> for g in (1.0, 3.0):
      ...     updates, state = tx.update(jnp.full(2, g), state, params)
      ...     print(bool(tx.has_updated(state)), updates)
      False [0. 0.]
      True [-0.2 -0.2]
    """

    inner: Transform
    every_k_schedule: int = static_field()
    reduction: Literal["mean", "sum"] = static_field(default="mean")
    accumulator_dtype: Any = static_field(default=None)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        acc = jax.tree.map(
            lambda p: None if p is None else jnp.zeros(jnp.shape(p), _accumulator_dtype(p, self.accumulator_dtype)),
            params,
            is_leaf=is_none,
        )
        zero = jnp.zeros([], jnp.int32)
        return MultiStepsState(zero, zero, self.inner.init(params), acc)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        count = state.mini_step + 1  # this micro-step's index in its group, 1 … k
        if self.reduction == "mean":
            rule = lambda g, a: a + (g.astype(a.dtype) - a) / count.astype(a.dtype)
        else:
            rule = lambda g, a: a + g.astype(a.dtype)
        acc = tree.map(rule, updates, state.acc_grads, names=("updates", "state.acc_grads"))
        emit = count >= self.every_k_schedule

        def inner_step(_):
            out, inner_state = self.inner.update(tree.cast_like(acc, updates), state.inner_opt_state, params, **extra)
            return tree.cast_like(out, updates), inner_state

        def wait(_):
            zeros = jax.tree.map(lambda u: None if u is None else jnp.zeros_like(u), updates, is_leaf=is_none)
            return zeros, state.inner_opt_state

        out, inner_state = jax.lax.cond(emit, inner_step, wait, None)
        acc = tree.map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc)
        mini_step = jnp.where(emit, 0, count).astype(jnp.int32)
        gradient_step = jnp.where(emit, tree.saturating_increment(state.gradient_step), state.gradient_step)
        return out, MultiStepsState(mini_step, gradient_step, inner_state, acc)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """Whether the latest call took an inner step (as optax's ``MultiSteps.has_updated``)."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)


def multi_steps(
    inner: Any,
    every_k_schedule: int,
    reduction: Literal["mean", "sum"] = "mean",
    accumulator_dtype: Any = None,
) -> MultiSteps:
    """Gradient accumulation: one step of ``inner`` on the mean (or sum) of every k micro-batch gradients.

    Micro-step i = 1 … k of each group: a ← a + (g − a)/i (mean) or a ← a + g (sum). At i = k the
    inner optimizer runs on a, its update is returned and a ← 0; at i < k the returned updates are
    zeros. With the mean, k micro-batches of size b give the step of one batch of size k·b.

    Difference from ``optax.MultiSteps``: optax runs the inner optimizer on every micro-step and
    discards the result (optax issue #472), which costs a full optimizer step per micro-batch; here
    ``jax.lax.cond`` runs it only at i = k. Under ``jax.vmap``, a ``lax.cond`` whose predicate is
    batched becomes a ``select`` that runs both branches, so every micro-step pays for the inner
    step again: that happens when the state is batched (e.g. made by a vmapped ``init``). When the
    state is made inside the vmapped function (vmapping over hyperparameters, as in a sweep), the
    micro-step counter stays unbatched and the ``cond`` stays. ``every_k_schedule`` is a fixed
    integer (optax also takes a function of the step count); there is no ``should_skip_update_fn``
    (wrap the inner in :func:`~gradflow.wrappers.apply_if_finite` instead); ``reduction="sum"`` is
    optax's ``use_grad_mean=False``.

    Args:
      inner: the optimizer to run every k micro-steps (gradflow or optax).
      every_k_schedule: k, the number of micro-steps per inner step (an integer >= 1).
      reduction: ``"mean"`` (default) or ``"sum"`` of the micro-step gradients.
      accumulator_dtype: dtype of the accumulator; defaults to each parameter's dtype promoted to at
        least float32 (optax: always float32).

    Returns:
      A :class:`MultiSteps` whose state is a :class:`MultiStepsState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import multi_steps
      >>> tx = multi_steps(gf.sgd(0.1), every_k_schedule=2)
      >>> params = jnp.zeros(1); state = tx.init(params)
      >>> u1, state = tx.update(jnp.array([1.0]), state, params)
      >>> u2, state = tx.update(jnp.array([3.0]), state, params)
      >>> u1, u2  # nothing, then −0.1 · mean(1, 3)
      (Array([0.], dtype=float32), Array([-0.2], dtype=float32))
    """
    if callable(every_k_schedule):
        raise TypeError(
            "multi_steps: every_k_schedule must be an integer >= 1; a schedule of the number of "
            f"micro-steps is not supported, got {every_k_schedule!r}"
        )
    k = check_positive_int("multi_steps", "every_k_schedule", every_k_schedule)
    if reduction not in ("mean", "sum"):
        raise ValueError(f"multi_steps: reduction must be 'mean' or 'sum', got {reduction!r}")
    accumulator_dtype = canonical_dtype(accumulator_dtype, "multi_steps", "accumulator_dtype")
    return MultiSteps(as_transform("multi_steps", inner), k, reduction, accumulator_dtype)
