"""Stateless elementwise primitives: square, absolute value, sign, root, shift and scalings.

Each maps ``u ← f(u)`` over the leaves of the updates and returns them in the incoming dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradflow import arith, tree
from gradflow.core import (
    NONNEGATIVE,
    REAL,
    EmptyState,
    Identity,
    Transform,
    checked_inside,
    computed_once,
    hyperparameter,
    pytree_dataclass,
    scheduled_fields,
    static_field,
)
from gradflow.layout import composite
from gradflow.validation import check_flag, check_hyperparameters, check_learning_rate

__all__ = [
    "Absolute",
    "Clip",
    "Elementwise",
    "Root",
    "Scale",
    "ScaleByLearningRate",
    "Shift",
    "Sign",
    "Square",
    "Tanh",
    "absolute",
    "clip",
    "root",
    "scale",
    "scale_by_learning_rate",
    "shift",
    "sign",
    "square",
    "tanh",
]


class Elementwise(Transform):
    """Base of stateless transforms ``u ← f(u)``; subclasses define :meth:`apply` on one leaf."""

    def apply(self, u: Any) -> Any:
        raise NotImplementedError

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        out = tree.map(lambda u: tree._astype(self.apply(u), jnp.result_type(u)), updates)
        return out, state


@pytree_dataclass
class Square(Elementwise):
    """``u ← u²`` (``|u|²`` for complex updates)."""

    def apply(self, u: Any) -> jax.Array:
        return jnp.real(u * jnp.conj(u)) if jnp.iscomplexobj(u) else arith.square(u)


@pytree_dataclass
class Absolute(Elementwise):
    """``u ← |u|``."""

    def apply(self, u: Any) -> jax.Array:
        return jnp.abs(u)


@pytree_dataclass
class Sign(Elementwise):
    """``u ← sign(u)`` (0 where ``u = 0``): signSGD, Bernstein et al. 2018."""

    def apply(self, u: Any) -> jax.Array:
        return jnp.sign(u)


@pytree_dataclass
class Tanh(Elementwise):
    """``u ← tanh(u)``: a sign that is smooth near 0 (Lion's ``mode="smooth"``)."""

    def apply(self, u: Any) -> jax.Array:
        return jnp.tanh(u)


@pytree_dataclass
class Root(Elementwise):
    """``u ← sqrt(u + eps_root) + eps``: the denominator of RMSprop and Adam.

    ``eps_root`` is the textbook's ε inside the root (seeds: s ← s / √(s + ε)); ``eps`` is optax's ε
    outside it. Both may be set.
    """

    eps: Any = hyperparameter(NONNEGATIVE, default=0.0)
    eps_root: Any = hyperparameter(NONNEGATIVE, default=0.0)

    def apply(self, u: Any) -> jax.Array:
        return jnp.sqrt(u + self.eps_root) + self.eps

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        eps, eps_root = tree.promote_once(self.eps), tree.promote_once(self.eps_root)  # once per dtype, not leaf
        root = lambda u: arith.add(arith.sqrt(arith.add(u, eps_root(u))), eps(u))
        out = tree.map(lambda u: tree._astype(root(u), jnp.result_type(u)), updates)
        return out, state


@pytree_dataclass
class Shift(Elementwise):
    """``u ← u + offset``."""

    offset: Any = hyperparameter(REAL)

    def apply(self, u: Any) -> jax.Array:
        return u + self.offset


@pytree_dataclass
class Scale(Elementwise):
    """``u ← step_size · u``."""

    step_size: Any = hyperparameter(REAL)

    def apply(self, u: Any) -> jax.Array:
        return self.step_size * u


@pytree_dataclass
class ScaleByLearningRate(Elementwise):
    """``u ← −learning_rate · u`` (``+learning_rate · u`` with ``flip_sign=False``).

    A learning rate that is negative when the step runs (a traced value, one set in an injected state
    through ``set_hyperparam``, a schedule that turns negative between the counts checked at construction, or
    one rounded to −1e-8 by XLA, as a warmup from 0 is under ``jit``) counts as 0: the step is zero,
    never a step up the gradient. A NaN learning rate stays NaN (``apply_if_finite`` skips that step).
    """

    learning_rate: Any = hyperparameter(NONNEGATIVE, outside="own")
    flip_sign: bool = static_field(default=True)

    def apply(self, u: Any) -> jax.Array:
        return self._factor() * u

    def _factor(self) -> Any:
        learning_rate = self.learning_rate
        if type(learning_rate) in (float, int):  # known now: nothing to trace (NaN stays NaN)
            learning_rate = 0.0 if learning_rate < 0 else learning_rate
        elif not checked_inside(NONNEGATIVE, learning_rate):
            # where, not maximum: the derivative with respect to the learning rate stays 1 at 0.
            learning_rate = computed_once(jnp.where(learning_rate < 0, 0, learning_rate))
        return -learning_rate if self.flip_sign else learning_rate

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        # The factor once per step, not once per leaf: a step over thousands of leaves traces and compiles
        # one scalar instead of thousands.
        factor = self._factor()
        cast: dict[Any, jax.Array] = {}  # the factor in each promoted dtype, converted once

        def scaled(u: Any) -> jax.Array:
            wide = jnp.result_type(factor, u)
            if wide not in cast:  # a Python number is rounded once, straight to the leaf's dtype (as optax's is)
                cast[wide] = jnp.asarray(factor, wide)
            return tree._astype(arith.mul(cast[wide], u), jnp.result_type(u))

        return tree.map(scaled, updates), state


@pytree_dataclass
class Clip(Elementwise):
    """``u ← min(max(u, −max_delta), max_delta)``."""

    max_delta: Any = hyperparameter(NONNEGATIVE)

    def apply(self, u: Any) -> jax.Array:
        return jnp.clip(u, -self.max_delta, self.max_delta)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        tree.check_real_leaves("clip", updates, "updates", "complex numbers have no order to clip in")
        return super().update(updates, state, params, **extra)


def square() -> Square:
    """``u ← u²``, the input of second-moment statistics.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> gradflow.square().update(jnp.array([-2.0, 3.0]), None)[0]
      Array([4., 9.], dtype=float32)
    """
    return Square()


def absolute() -> Absolute:
    """``u ← |u|``, the input of AdaMax's infinity-norm statistic.

    Returns:
      A stateless :class:`Absolute` transform.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.absolute().update(jnp.array([-2.0, 3.0]), None)[0]
      Array([2., 3.], dtype=float32)
    """
    return Absolute()


def sign() -> Sign:
    """``u ← sign(u)``; chained with a learning rate this is signSGD (Bernstein et al., 2018).

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> gradflow.sign().update(jnp.array([-2.0, 0.0, 3.0]), None)[0]
      Array([-1.,  0.,  1.], dtype=float32)
    """
    return Sign()


def root(eps: Any = 0.0, eps_root: Any = 0.0) -> Root:
    """``u ← sqrt(u + eps_root) + eps`` (ε inside the root: textbook; outside: optax's Adam).

    Args:
      eps: ε ≥ 0 added outside the root.
      eps_root: ε ≥ 0 added inside the root.

    Returns:
      A stateless :class:`Root` transform.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.root(eps=1.0).update(jnp.array([4.0, 9.0]), None)[0]  # √u + 1
      Array([3., 4.], dtype=float32)
    """
    return check_hyperparameters(Root(eps, eps_root), "root")


def shift(offset: Any) -> Shift:
    """``u ← u + offset``.

    Args:
      offset: a number or an array broadcast against each leaf.

    Returns:
      A stateless :class:`Shift` transform.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.shift(1.0).update(jnp.array([1.0, -2.0]), None)[0]
      Array([ 2., -1.], dtype=float32)
    """
    return check_hyperparameters(Shift(offset), "shift")


def scale(step_size: Any) -> Scale:
    """``u ← step_size · u``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> gradflow.scale(0.5).update(jnp.array([2.0]), None)[0]
      Array([1.], dtype=float32)
    """
    return check_hyperparameters(Scale(step_size), "scale")


def scale_by_learning_rate(learning_rate: Any = None, *, flip_sign: bool = True) -> Transform:
    """``u ← −learning_rate · u``: turns a descent direction into the step added to the parameters.

    Args:
      learning_rate: η ≥ 0, a number, an array (a leaf of the optimizer's pytree) or a schedule; ``None``
        (optax's default) gives the identity.
      flip_sign: multiply by ``+learning_rate`` instead (for ascent).

    Returns:
      A stateless :class:`ScaleByLearningRate` transform; for a schedule, one whose state is optax's
      ``ScaleByScheduleState(count)``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.scale_by_learning_rate(0.1).update(jnp.array([1.0, -2.0]), None)[0]
      Array([-0.1,  0.2], dtype=float32)
    """
    flip_sign = check_flag("scale_by_learning_rate", "flip_sign", flip_sign)
    if learning_rate is None:
        return Identity()
    tx = ScaleByLearningRate(check_learning_rate("scale_by_learning_rate", learning_rate), flip_sign)
    if not scheduled_fields(tx):
        return tx
    # optax scales by a schedule with scale_by_schedule, whose state is ScaleByScheduleState(count).
    from gradflow.transforms.step_scaling import ScaleByScheduleState  # it imports this module

    return composite(tx, ScaleByScheduleState, count="count")


def tanh() -> Tanh:
    """``u ← tanh(u)``, leaf by leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> tanh().update(jnp.array([0.0, 100.0]), None)[0]
      Array([0., 1.], dtype=float32)
    """
    return Tanh()


def clip(max_delta: Any) -> Clip:
    """Clip every coordinate of the updates to ``[−max_delta, max_delta]``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> gradflow.clip(1.0).update(jnp.array([-3.0, 0.5]), None)[0]
      Array([-1. ,  0.5], dtype=float32)
    """
    return check_hyperparameters(Clip(max_delta), "clip")
