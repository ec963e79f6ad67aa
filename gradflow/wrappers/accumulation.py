"""Gradient accumulation over micro-steps: ``MultiSteps`` runs the inner optimizer once every k calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.protocol import ShouldSkipUpdateFunction
from gradflow.transforms.moments import canonical_dtype
from gradflow.validation import check_choice, check_flag, check_integer
from gradflow.wrappers._common import as_transform, is_none

__all__ = ["MultiSteps", "MultiStepsState", "multi_steps"]


class MultiStepsState(NamedTuple):
    """The state of :class:`MultiSteps` (optax's fields, in optax's order).

    Attributes:
      mini_step: int32 number of micro-steps accumulated since the latest inner step (0 … k−1).
      gradient_step: int32 number of inner steps taken (saturating).
      inner_opt_state: the inner optimizer's state; it changes only on an inner step.
      acc_grads: the mean (or sum) of the gradients of the current micro-steps.
      skip_state: what ``should_skip_update_fn`` returned for the latest micro-step (``()`` without one);
        see :class:`gradflow.ShouldSkipUpdateFunction`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.MultiSteps(gf.sgd(0.1), every_k_schedule=2)
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> _, state = tx.update(jnp.array([1.0, 3.0]), state, params)
      >>> state.mini_step, state.acc_grads, state.skip_state  # one micro-step accumulated, no inner step yet
      (Array(1, dtype=int32), Array([1., 3.], dtype=float32), ())
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: Any
    skip_state: Any = ()


def _check_every_k(owner: str, every_k_schedule: Any) -> Any:
    """An integer >= 1 (as a Python int), or a function of the gradient step (returned as it is)."""
    if callable(every_k_schedule) and not isinstance(every_k_schedule, (int, np.integer)):
        return every_k_schedule
    return check_integer(owner, "every_k_schedule", every_k_schedule, low=1)


@pytree_dataclass
class MultiSteps(Transform):
    """Accumulate gradients over ``every_k_schedule`` micro-steps, then take one inner step (optax's class).

    At micro-step i = 1 … k of each group (k = ``every_k_schedule``, or its value at the current
    ``gradient_step`` when it is a function): a ← a + (g − a)/i (``use_grad_mean``) or a ← a + g; then
    at i = k: u ← opt(a), a ← 0; at i < k: u ← 0. The inner update runs only at i = k, inside
    ``jax.lax.cond``. A micro-step for which ``should_skip_update_fn`` says skip changes nothing but
    ``skip_state`` and returns zeros.

    ``MultiSteps(opt, every_k_schedule, use_grad_mean, should_skip_update_fn, accumulator_dtype)`` is
    optax's constructor, with its defaults (accumulation in float32); :func:`multi_steps` is gradflow's
    spelling. ``init``, ``update``, ``has_updated``, ``inner_opt`` and ``gradient_transformation()``
    are optax's methods; a ``MultiSteps`` is itself a transform and pytree data (the functions and
    dtype are static).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.MultiSteps(gf.sgd(0.1), every_k_schedule=2)
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> for g in (1.0, 3.0):
      ...     updates, state = tx.update(jnp.full(2, g), state, params)
      ...     print(bool(tx.has_updated(state)), updates)
      False [0. 0.]
      True [-0.2 -0.2]
    """

    opt: Transform
    every_k_schedule: int | Callable[[jax.Array], Any] = static_field()
    use_grad_mean: bool = static_field(default=True)
    should_skip_update_fn: ShouldSkipUpdateFunction | None = static_field(default=None)
    accumulator_dtype: Any = static_field(default=jnp.float32)

    def __post_init__(self) -> None:
        # Also runs when JAX rebuilds the transform from its leaves: only cheap checks here.
        if not isinstance(self.opt, Transform):
            object.__setattr__(self, "opt", as_transform("MultiSteps", self.opt, "opt"))
        object.__setattr__(self, "every_k_schedule", _check_every_k("MultiSteps", self.every_k_schedule))
        object.__setattr__(self, "use_grad_mean", check_flag("MultiSteps", "use_grad_mean", self.use_grad_mean))
        if self.should_skip_update_fn is not None and not callable(self.should_skip_update_fn):
            raise TypeError(
                f"MultiSteps: should_skip_update_fn must be None or a function "
                f"(updates, gradient_step, params) -> (should_skip, skip_state), got {self.should_skip_update_fn!r}"
            )
        dtype = canonical_dtype(self.accumulator_dtype, "MultiSteps", "accumulator_dtype")
        object.__setattr__(self, "accumulator_dtype", dtype)

    @property
    def inner_opt(self) -> Transform:
        """The wrapped optimizer (optax's attribute)."""
        return self.opt

    def gradient_transformation(self) -> MultiSteps:
        """This object as a gradient transformation (optax's method): a gradflow transform already is one.

        Returns:
          ``self``, which unpacks as ``(init, update)`` like an optax ``GradientTransformation``.

        Example:
          >>> import gradflow as gf
          >>> init, update = gf.MultiSteps(gf.sgd(0.1), 2).gradient_transformation()
        """
        return self

    def _acc_dtype(self, param: Any) -> Any:
        if self.accumulator_dtype is not None:
            return self.accumulator_dtype
        return jnp.promote_types(jnp.result_type(param), jnp.float32)

    def _skip(self, updates: Any, gradient_step: jax.Array, params: Any) -> tuple[jax.Array | None, Any]:
        if self.should_skip_update_fn is None:
            return None, ()
        should_skip, skip_state = self.should_skip_update_fn(updates, gradient_step, params)
        should_skip = jnp.asarray(should_skip)
        if (should_skip.dtype, should_skip.shape) != (jnp.bool_, ()):
            raise ValueError(
                "MultiSteps: should_skip_update_fn must return a boolean scalar array as its first output, got "
                f"dtype {should_skip.dtype} and shape {should_skip.shape}"
            )
        return should_skip, skip_state

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        acc = jax.tree.map(
            lambda p: None if p is None else jnp.zeros_like(p, self._acc_dtype(p)), params, is_leaf=is_none
        )
        zero = jnp.zeros([], jnp.int32)
        zeros = jax.tree.map(lambda p: None if p is None else jnp.zeros_like(p), params, is_leaf=is_none)
        _, skip_state = self._skip(zeros, zero, params)
        return MultiStepsState(zero, zero, self.opt.init(params), acc, skip_state)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        updates = tree.check_updates(updates, params)  # errors that name the key path
        tree.check_state("multi_steps", state, MultiStepsState)
        if callable(self.every_k_schedule):
            k = jnp.asarray(self.every_k_schedule(state.gradient_step)).astype(jnp.int32)
        else:
            k = jnp.asarray(self.every_k_schedule, jnp.int32)
        should_skip, skip_state = self._skip(updates, state.gradient_step, params)
        count = state.mini_step + 1  # this micro-step's index in its group, 1 … k
        if self.use_grad_mean:
            rule = lambda g, a: a + (g.astype(a.dtype) - a) / count.astype(a.dtype)
        else:
            rule = lambda g, a: a + g.astype(a.dtype)
        acc = tree.map(rule, updates, state.acc_grads, names=("updates", "state.acc_grads"))
        emit = count >= k
        if should_skip is not None:  # a skipped micro-step leaves the accumulator and the counters as they were
            acc = tree.map(lambda new, old: jnp.where(should_skip, old, new), acc, state.acc_grads)
            emit = emit & ~should_skip
            count = jnp.where(should_skip, state.mini_step, count)

        def inner_step(_):
            out, inner_state = self.opt.update(tree.cast_like(acc, updates), state.inner_opt_state, params, **extra)
            return tree.cast_like(out, updates), inner_state

        def wait(_):
            zeros = jax.tree.map(lambda u: None if u is None else jnp.zeros_like(u), updates, is_leaf=is_none)
            return zeros, state.inner_opt_state

        out, inner_state = jax.lax.cond(emit, inner_step, wait, None)
        acc = tree.map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc)
        mini_step = jnp.where(emit, 0, count).astype(jnp.int32)
        gradient_step = jnp.where(emit, tree.saturating_increment(state.gradient_step), state.gradient_step)
        return out, MultiStepsState(mini_step, gradient_step, inner_state, acc, skip_state)

    def has_updated(self, state: Any) -> jax.Array:
        """Whether the latest call took an inner step (optax's ``MultiSteps.has_updated``).

        Args:
          state: this transform's :class:`MultiStepsState`.

        Returns:
          A boolean scalar: ``mini_step == 0`` and ``gradient_step > 0``.

        Example:
          >>> import jax.numpy as jnp, gradflow as gf
          >>> tx = gf.MultiSteps(gf.sgd(0.1), 1)
          >>> bool(tx.has_updated(tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[1]))
          True
        """
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)


def multi_steps(
    inner: Any,
    every_k_schedule: int | Callable[[jax.Array], Any],
    reduction: Literal["mean", "sum"] = "mean",
    accumulator_dtype: Any = None,
    *,
    should_skip_update_fn: ShouldSkipUpdateFunction | None = None,
) -> MultiSteps:
    """Gradient accumulation: one step of ``inner`` on the mean (or sum) of every k micro-batch gradients.

    Micro-step i = 1 … k of each group: a ← a + (g − a)/i (mean) or a ← a + g (sum). At i = k the
    inner optimizer runs on a, its update is returned and a ← 0; at i < k the returned updates are
    zeros. With the mean, k micro-batches of size b give the step of one batch of size k·b.
    ``every_k_schedule`` may also be a function of the number of inner steps taken (a growing batch).

    This is :class:`MultiSteps` (optax's class, same numbers and state) with gradflow's argument names:
    ``reduction="sum"`` is optax's ``use_grad_mean=False``, and the accumulator defaults to each
    parameter's dtype promoted to at least float32 (optax: always float32).

    Difference from ``optax.MultiSteps``: optax runs the inner optimizer on every micro-step and
    discards the result (optax issue #472), which costs a full optimizer step per micro-batch; here
    ``jax.lax.cond`` runs it only at i = k. Under ``jax.vmap``, a ``lax.cond`` whose predicate is
    batched becomes a ``select`` that runs both branches, so every micro-step pays for the inner
    step again: that happens when the state is batched (e.g. made by a vmapped ``init``). When the
    state is made inside the vmapped function (vmapping over hyperparameters, as in a sweep), the
    micro-step counter stays unbatched and the ``cond`` stays.

    Args:
      inner: the optimizer to run every k micro-steps (gradflow or optax).
      every_k_schedule: k, the number of micro-steps per inner step (an integer >= 1, static), or a
        function of ``gradient_step`` that returns it.
      reduction: ``"mean"`` (default) or ``"sum"`` of the micro-step gradients.
      accumulator_dtype: dtype of the accumulator; defaults to each parameter's dtype promoted to at
        least float32.
      should_skip_update_fn: optax's ``(updates, gradient_step, params) -> (should_skip, skip_state)``
        (e.g. ``optax.skip_not_finite``): a skipped micro-step is ignored.

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
    every_k_schedule = _check_every_k("multi_steps", every_k_schedule)
    check_choice("multi_steps", "reduction", reduction, ("mean", "sum"))
    accumulator_dtype = canonical_dtype(accumulator_dtype, "multi_steps", "accumulator_dtype")
    return MultiSteps(
        as_transform("multi_steps", inner),
        every_k_schedule,
        use_grad_mean=reduction == "mean",
        should_skip_update_fn=should_skip_update_fn,
        accumulator_dtype=accumulator_dtype,
    )
