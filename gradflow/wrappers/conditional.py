"""Run a transform only at the steps a condition picks: ``conditionally_transform``, ``conditionally_mask``.

The condition ``should_transform_fn(step, **extra)`` is a Python function of the int32 number of
updates done (and, with ``forward_extra_args=True``, of the extra arguments); it is static data of the
wrapper (define it once: a new function object recompiles a jitted step). At the steps where it is
false the inner transform does not run (``lax.cond``; under ``vmap`` with a batched condition both
branches run and one is selected) and its state is left as it was. The two wrappers differ in what
they return then: ``conditionally_transform`` passes the updates through, ``conditionally_mask``
returns zeros.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.validation import check_flag
from gradflow.wrappers._common import as_transform, is_none

__all__ = [
    "ConditionallyMask",
    "ConditionallyMaskState",
    "ConditionallyTransform",
    "ConditionallyTransformState",
    "conditionally_mask",
    "conditionally_transform",
]


class ConditionallyTransformState(NamedTuple):
    """The state of :func:`conditionally_transform` (optax's field order: the inner state first).

    Attributes:
      inner_state: the inner transform's state, as of the latest step where it ran.
      step: int32 number of updates done (saturating), the argument of the condition.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.conditionally_transform(gf.scale(2.0), lambda step: step > 0).init(jnp.zeros(1))
      ConditionallyTransformState(inner_state=EmptyState(), step=Array(0, dtype=int32))
    """

    inner_state: Any
    step: jax.Array


class ConditionallyMaskState(NamedTuple):
    """The state of :func:`conditionally_mask` (optax's field order: the step first).

    Attributes:
      step: int32 number of updates done (saturating), the argument of the condition.
      inner_state: the inner transform's state, as of the latest step where it ran.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.conditionally_mask(gf.scale(2.0), lambda step: step > 0).init(jnp.zeros(1))
      ConditionallyMaskState(step=Array(0, dtype=int32), inner_state=EmptyState())
    """

    step: jax.Array
    inner_state: Any


def _zeros(updates: Any) -> Any:
    return jax.tree.map(lambda u: None if u is None else jnp.zeros_like(u), updates, is_leaf=is_none)


class _Conditional(Transform):
    """What both wrappers share: run ``inner`` where the condition holds, else ``otherwise(updates)``."""

    inner: Transform
    should_transform_fn: Any
    forward_extra_args: bool

    def _otherwise(self, updates: Any) -> Any:
        raise NotImplementedError

    def _run(self, updates: Any, inner_state: Any, step: jax.Array, params: Any, extra: dict[str, Any]):
        def run(_):
            out, new = self.inner.update(updates, inner_state, params, **extra)
            # both branches of lax.cond must give the same types: keep the incoming dtypes
            return tree.cast_like(out, updates), tree.cast_like(new, inner_state)

        def skip(_):
            return self._otherwise(updates), inner_state

        condition = self.should_transform_fn(step, **(extra if self.forward_extra_args else {}))
        return jax.lax.cond(jnp.asarray(condition, bool), run, skip, None)


@pytree_dataclass
class ConditionallyTransform(_Conditional):
    """u ← inner(u) where ``should_transform_fn(step)``, else u unchanged (built by :func:`conditionally_transform`).

    Example:
      >>> import gradflow as gf
      >>> tx = gf.conditionally_transform(gf.sgd(0.1), lambda step: step % 2 == 0)
      >>> isinstance(tx, gf.ConditionallyTransform), tx.forward_extra_args
      (True, False)
    """

    inner: Transform
    should_transform_fn: Any = static_field()
    forward_extra_args: bool = static_field(default=False)

    def _otherwise(self, updates: Any) -> Any:
        return updates

    def init(self, params: Any) -> Any:
        return ConditionallyTransformState(self.inner.init(params), jnp.zeros([], jnp.int32))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        state = tree.check_state("conditionally_transform", state, ConditionallyTransformState)
        out, inner_state = self._run(updates, state.inner_state, state.step, params, extra)
        return out, ConditionallyTransformState(inner_state, tree.saturating_increment(state.step))


@pytree_dataclass
class ConditionallyMask(_Conditional):
    """u ← inner(u) where ``should_transform_fn(step)``, else u ← 0 (built by :func:`conditionally_mask`).

    Example:
      >>> import gradflow as gf
      >>> tx = gf.conditionally_mask(gf.sgd(0.1), lambda step: step % 2 == 0)
      >>> isinstance(tx, gf.ConditionallyMask), tx.forward_extra_args
      (True, False)
    """

    inner: Transform
    should_transform_fn: Any = static_field()
    forward_extra_args: bool = static_field(default=False)

    def _otherwise(self, updates: Any) -> Any:
        return _zeros(updates)

    def init(self, params: Any) -> Any:
        return ConditionallyMaskState(jnp.zeros([], jnp.int32), self.inner.init(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        state = tree.check_state("conditionally_mask", state, ConditionallyMaskState)
        out, inner_state = self._run(updates, state.inner_state, state.step, params, extra)
        return out, ConditionallyMaskState(tree.saturating_increment(state.step), inner_state)


def _check(owner: str, inner: Any, should_transform_fn: Any) -> Transform:
    if not callable(should_transform_fn):
        raise TypeError(
            f"{owner}: should_transform_fn must be a function of the step count returning a boolean, "
            f"got {should_transform_fn!r}"
        )
    return as_transform(owner, inner)


def conditionally_transform(
    inner: Any, should_transform_fn: Any, forward_extra_args: bool = False
) -> ConditionallyTransform:
    """Run ``inner`` only at the steps where ``should_transform_fn(step)`` is true; pass the updates elsewhere.

    At each update, with ``step`` the number of updates done before it (int32, 0 at the first):
    u ← inner(u) and the inner state advances if ``should_transform_fn(step)``, else u ← u and the
    inner state stays as it was. To return zeros instead, use :func:`conditionally_mask`.

    Args:
      inner: the transform to run (gradflow or optax).
      should_transform_fn: ``step -> bool`` (a scalar boolean array or a Python bool); static data.
      forward_extra_args: also pass the extra arguments of ``update`` (``value`` …) to
        ``should_transform_fn`` as keyword arguments.

    Returns:
      A :class:`ConditionallyTransform` whose state is a :class:`ConditionallyTransformState`.

    Raises:
      TypeError: if ``should_transform_fn`` is not callable or ``inner`` is not a transform.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.conditionally_transform(gf.scale(10.0), lambda step: step >= 1)
      >>> state = tx.init(jnp.zeros(1))
      >>> for _ in range(2):
      ...     u, state = tx.update(jnp.ones(1), state)
      ...     print(float(u[0]))
      1.0
      10.0
    """
    return ConditionallyTransform(
        _check("conditionally_transform", inner, should_transform_fn),
        should_transform_fn,
        check_flag("conditionally_transform", "forward_extra_args", forward_extra_args),
    )


def conditionally_mask(inner: Any, should_transform_fn: Any, forward_extra_args: bool = False) -> ConditionallyMask:
    """Run ``inner`` only at the steps where ``should_transform_fn(step)`` is true; the updates are zero elsewhere.

    At each update, with ``step`` the number of updates done before it (int32, 0 at the first):
    u ← inner(u) and the inner state advances if ``should_transform_fn(step)``, else u ← 0 and the
    inner state stays as it was. To pass the updates through instead, use :func:`conditionally_transform`.

    Args:
      inner: the transform to run (gradflow or optax).
      should_transform_fn: ``step -> bool`` (a scalar boolean array or a Python bool); static data.
      forward_extra_args: also pass the extra arguments of ``update`` (``value`` …) to
        ``should_transform_fn`` as keyword arguments.

    Returns:
      A :class:`ConditionallyMask` whose state is a :class:`ConditionallyMaskState`.

    Raises:
      TypeError: if ``should_transform_fn`` is not callable or ``inner`` is not a transform.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.conditionally_mask(gf.sgd(0.1), lambda step: step % 2 == 1)  # every other step
      >>> state = tx.init(jnp.zeros(1))
      >>> for _ in range(2):
      ...     u, state = tx.update(jnp.ones(1), state)
      ...     print(round(float(u[0]), 4))
      0.0
      -0.1
    """
    return ConditionallyMask(
        _check("conditionally_mask", inner, should_transform_fn),
        should_transform_fn,
        check_flag("conditionally_mask", "forward_extra_args", forward_extra_args),
    )
