"""Lookahead (Zhang et al., 2019): k fast steps forward, then one step back towards slow weights.

Two ways to hold the slow weights, both with optax's numbers:

- optax's: the parameters are a :class:`LookaheadParams` ``(fast, slow)`` pair (``init_synced(params)``),
  the updates are such a pair too, and the state is optax's :class:`LookaheadState`
  ``(fast_state, steps_since_sync)``;
- gradflow's: the parameters are the plain tree of fast weights and the slow weights live in the state,
  a :class:`LookaheadSlowState` ``(lookahead_state, slow)`` (read them with :func:`slow_params`).

``init`` picks the way from the parameters it is given.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import UNIT_CLOSED, Transform, hyperparameter, pytree_dataclass, static_field
from gradflow.validation import check_flag, check_integer, check_range
from gradflow.wrappers._common import as_transform, find_one_state, is_none

__all__ = ["Lookahead", "LookaheadParams", "LookaheadSlowState", "LookaheadState", "lookahead", "slow_params"]


class LookaheadState(NamedTuple):
    """The state of :func:`lookahead` (optax's fields).

    Attributes:
      fast_state: the fast optimizer's state.
      steps_since_sync: int32 number of fast steps since the latest synchronization (0 … sync_period−1).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.lookahead(gf.sgd(1.0), sync_period=2, slow_step_size=0.5)
      >>> state = tx.init(gf.LookaheadParams.init_synced(jnp.array([1.0, 2.0])))
      >>> state.steps_since_sync, state.fast_state
      (Array(0, dtype=int32), (EmptyState(), EmptyState()))
    """

    fast_state: Any
    steps_since_sync: jax.Array


class LookaheadParams(NamedTuple):
    """The fast and the slow weights of :func:`lookahead`, passed together as the parameters (optax's class).

    Compute the gradient at ``fast``; evaluate the model with ``slow``.

    Attributes:
      fast: the fast weights, which the fast optimizer moves at every step.
      slow: the slow weights, pulled towards the fast ones at every synchronization.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.LookaheadParams.init_synced(jnp.zeros(2))
      LookaheadParams(fast=Array([0., 0.], dtype=float32), slow=Array([0., 0.], dtype=float32))
    """

    fast: Any
    slow: Any

    @classmethod
    def init_synced(cls, params: Any) -> LookaheadParams:
        """The pair ``(params, params)``: fast and slow weights start equal.

        Args:
          params: the initial parameters.

        Returns:
          ``LookaheadParams(fast=params, slow=params)``.

        Example:
          >>> import jax.numpy as jnp, gradflow as gf
          >>> gf.LookaheadParams.init_synced({"w": jnp.ones(1)}).slow
          {'w': Array([1.], dtype=float32)}
        """
        return cls(fast=params, slow=params)


class LookaheadSlowState(NamedTuple):
    """The state of :func:`lookahead` given plain parameters (gradflow's way): optax's state and the slow weights.

    Attributes:
      lookahead_state: the :class:`LookaheadState` ``(fast_state, steps_since_sync)``.
      slow: the slow weights, shaped and typed like the parameters (read them with :func:`slow_params`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.lookahead(gf.sgd(1.0), 2, 0.5).init(jnp.array([1.0, 2.0]))
      >>> state.lookahead_state.steps_since_sync, state.slow  # the slow weights start at θ₀
      (Array(0, dtype=int32), Array([1., 2.], dtype=float32))
    """

    lookahead_state: LookaheadState
    slow: Any

    @property
    def fast_state(self) -> Any:
        """The fast optimizer's state, ``lookahead_state.fast_state``."""
        return self.lookahead_state.fast_state

    @property
    def steps_since_sync(self) -> jax.Array:
        """The fast steps since the latest synchronization, ``lookahead_state.steps_since_sync``."""
        return self.lookahead_state.steps_since_sync


def _cast_to(x: Any, like: Any) -> jax.Array:
    return jnp.asarray(x).astype(jnp.result_type(like))


@pytree_dataclass
class Lookahead(Transform):
    """Take ``sync_period`` steps of ``fast_optimizer``, then pull the slow weights towards the fast ones
    and restart the fast weights from them.

    With fast weights θ and slow weights φ (φ₀ = θ₀), each step: θ ← θ + fast_optimizer(g); after every
    ``sync_period``-th step: φ ← φ + slow_step_size·(θ − φ), θ ← φ. In one update, with
    d = θ + u − φ and s = 1 at a synchronization (else 0): u_fast = u − s·(1 − slow_step_size)·d and
    u_slow = s·slow_step_size·d, optax's form.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.lookahead(gf.sgd(0.1), sync_period=6, slow_step_size=0.5)
      >>> isinstance(tx, gf.Lookahead), tx.sync_period, tx.slow_step_size
      (True, 6, 0.5)
    """

    fast_optimizer: Transform
    slow_step_size: Any = hyperparameter(UNIT_CLOSED)
    sync_period: int = static_field()
    reset_state: bool = static_field(default=False)

    def init(self, params: Any) -> Any:
        if isinstance(params, LookaheadParams):
            return LookaheadState(self.fast_optimizer.init(params.fast), jnp.zeros([], jnp.int32))
        tree.check_float_leaves(params)
        slow = jax.tree.map(lambda p: None if p is None else jnp.asarray(p), params, is_leaf=is_none)
        return LookaheadSlowState(LookaheadState(self.fast_optimizer.init(params), jnp.zeros([], jnp.int32)), slow)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError(
                "lookahead needs the parameters (a LookaheadParams pair, or the fast weights): call "
                "update(updates, state, params)"
            )
        paired = isinstance(params, LookaheadParams)
        if paired and isinstance(state, LookaheadState):
            inner, fast, slow = state, params.fast, params.slow
        elif not paired and isinstance(state, LookaheadSlowState):
            inner, fast, slow = state.lookahead_state, params, state.slow
        else:
            given, expected = (
                ("LookaheadParams", "LookaheadState") if paired else ("plain parameters", "LookaheadSlowState")
            )
            raise ValueError(
                f"lookahead: given {given}, the state must be the {expected} that init returned for them, "
                f"got {type(state).__name__}"
            )
        fast_updates, fast_state = self.fast_optimizer.update(updates, inner.fast_state, fast, **extra)
        sync = inner.steps_since_sync >= self.sync_period - 1  # this step ends the period
        alpha = jnp.asarray(self.slow_step_size)
        names = ("params", "updates", "slow weights")
        # d = θ + u − φ, the fast weights after this step minus the slow ones.
        diff = tree.map(lambda f, u, s: f + u.astype(jnp.result_type(f)) - s, fast, fast_updates, slow, names=names)
        # Between synchronizations the fast updates pass exactly (a where, not optax's 0·d: d may be inf).
        new_fast_updates = tree.map(
            lambda u, d: _cast_to(jnp.where(sync, u - (1 - alpha) * d, u), u), fast_updates, diff
        )
        slow_updates = tree.map(lambda s, d: _cast_to(jnp.where(sync, alpha * d, jnp.zeros_like(d)), s), slow, diff)
        if self.reset_state:
            fresh = self.fast_optimizer.init(fast)
            fast_state = jax.tree.map(
                lambda new, old: jnp.where(sync, new, old).astype(jnp.result_type(old)), fresh, fast_state
            )
        steps = jnp.where(sync, 0, inner.steps_since_sync + 1).astype(jnp.int32)
        new_inner = LookaheadState(fast_state, steps)
        if paired:
            return LookaheadParams(new_fast_updates, slow_updates), new_inner
        new_slow = tree.map(lambda s, u: _cast_to(s + u, s), slow, slow_updates)
        return new_fast_updates, LookaheadSlowState(new_inner, new_slow)


def lookahead(fast_optimizer: Any, sync_period: int, slow_step_size: Any, reset_state: bool = False) -> Lookahead:
    """Lookahead (Zhang, Lucas, Hinton & Ba, 2019, "Lookahead Optimizer: k steps forward, 1 step back").

    Every step applies the fast optimizer to the fast weights, θ ← θ + fast_optimizer(g); after every
    ``sync_period``-th step the slow weights move, φ ← φ + slow_step_size·(θ − φ), and the fast weights
    restart from them, θ ← φ. Put lookahead last in a chain: a transform after it would change the
    synchronizing update.

    The parameters are either optax's :class:`LookaheadParams` pair (start with
    ``LookaheadParams.init_synced(params)``; compute the gradient at ``params.fast``, evaluate at
    ``params.slow``; the updates are a pair too and the state is optax's :class:`LookaheadState`), so
    optax lookahead programs run unchanged and give optax's numbers; or the plain tree of fast weights,
    gradflow's way: the slow weights then live in the state (a :class:`LookaheadSlowState`) and
    :func:`slow_params` ``(state)`` reads them, so lookahead drops into any training loop.

    Args:
      fast_optimizer: the inner optimizer (gradflow or optax).
      sync_period: k, the number of fast steps between synchronizations (an integer >= 1, static).
      slow_step_size: α in [0, 1], the slow weights' step towards the fast ones (a leaf: may be
        vmapped over or be a schedule).
      reset_state: re-initialize the fast optimizer's state at each synchronization.

    Returns:
      A :class:`Lookahead` transform.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import lookahead, slow_params
      >>> tx = lookahead(gf.sgd(1.0), sync_period=2, slow_step_size=0.5)
      >>> params = gf.LookaheadParams.init_synced(jnp.array([0.0])); state = tx.init(params)
      >>> for _ in range(2):  # two fast steps of +1 each, then φ = 0 + 0.5·(2 − 0)
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = gf.apply_updates(params, updates)
      >>> params.fast, params.slow
      (Array([1.], dtype=float32), Array([1.], dtype=float32))
      >>> theta = jnp.array([0.0]); state = tx.init(theta)  # plain parameters: slow weights in the state
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([-1.0]), state, theta)
      ...     theta = gf.apply_updates(theta, updates)
      >>> theta, slow_params(state)
      (Array([1.], dtype=float32), Array([1.], dtype=float32))
    """
    k = check_integer("lookahead", "sync_period", sync_period, low=1)
    check_range("lookahead", "slow_step_size", slow_step_size, 0.0, 1.0, high_open=False)
    return Lookahead(
        as_transform("lookahead", fast_optimizer, "fast_optimizer"),
        slow_step_size,
        k,
        check_flag("lookahead", "reset_state", reset_state),
    )


def slow_params(state: Any) -> Any:
    """The slow weights of the (single) :func:`lookahead` given plain parameters, inside an optimizer state.

    With :class:`LookaheadParams` as the parameters, the slow weights are ``params.slow`` instead.

    Args:
      state: the state of an optimizer that contains one lookahead (or the lookahead's own state).

    Returns:
      The slow weights φ, a tree like the parameters.

    Raises:
      ValueError: if the state holds no :class:`LookaheadSlowState`, or several.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.lookahead(gf.sgd(1.0), sync_period=2, slow_step_size=0.5)
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> updates, state = tx.update(-jnp.ones(2), state, params)  # one fast step: no synchronization yet
      >>> gf.apply_updates(params, updates), gf.slow_params(state)
      (Array([1., 1.], dtype=float32), Array([0., 0.], dtype=float32))
    """
    found = [s for s in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, (LookaheadSlowState, LookaheadState)))]
    if not any(isinstance(s, LookaheadSlowState) for s in found) and any(isinstance(s, LookaheadState) for s in found):
        raise ValueError(
            "slow_params: this lookahead was given LookaheadParams, which hold the slow weights: read params.slow"
        )
    return find_one_state("slow_params", state, LookaheadSlowState, "lookahead").slow
