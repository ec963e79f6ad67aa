"""Lookahead (Zhang et al., 2019): k fast steps forward, then one step back towards slow weights."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.validation import check_range
from gradflow.wrappers._common import as_transform, check_positive_int, find_one_state, is_none

__all__ = ["Lookahead", "LookaheadState", "lookahead", "slow_params"]


class LookaheadState(NamedTuple):
    """The state of :func:`lookahead`.

    Attributes:
      fast_state: the fast optimizer's state.
      steps_since_sync: int32 number of fast steps since the latest synchronization (0 … sync_period−1).
      slow: the slow weights, shaped and typed like the parameters (read them with :func:`slow_params`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.lookahead(gf.sgd(1.0), sync_period=2).init(jnp.array([1.0, 2.0]))
      >>> state.steps_since_sync, state.slow  # the slow weights start at θ₀
      (Array(0, dtype=int32), Array([1., 2.], dtype=float32))
    """

    fast_state: Any
    steps_since_sync: jax.Array
    slow: Any


@pytree_dataclass
class Lookahead(Transform):
    """Take ``sync_period`` steps of ``fast_optimizer``, then pull the slow weights towards the fast ones
    and restart the fast weights from them.

    The parameters θ are the fast weights; the slow weights φ live in the state (φ₀ = θ₀). Each step:
    θ ← θ + fast_optimizer(g); after every ``sync_period``-th step: φ ← φ + slow_step_size·(θ − φ),
    θ ← φ (the returned update is then φ_new − θ_old).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.lookahead(gf.sgd(0.1))
      >>> isinstance(tx, gf.Lookahead), tx.sync_period, tx.slow_step_size
      (True, 6, 0.5)
    """

    fast_optimizer: Transform
    slow_step_size: Any
    sync_period: int = static_field(default=6)
    reset_state: bool = static_field(default=False)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        slow = jax.tree.map(lambda p: None if p is None else jnp.asarray(p), params, is_leaf=is_none)
        return LookaheadState(self.fast_optimizer.init(params), jnp.zeros([], jnp.int32), slow)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("lookahead needs the parameters (the fast weights): call update(updates, state, params)")
        fast_updates, fast_state = self.fast_optimizer.update(updates, state.fast_state, params, **extra)
        count = state.steps_since_sync + 1
        sync = count >= self.sync_period
        alpha = jnp.asarray(self.slow_step_size)

        def new_slow(p, u, s):
            fast = jnp.asarray(p + u).astype(jnp.result_type(p))  # θ after the fast step, as apply_updates gives it
            moved = (s + alpha * (fast - s)).astype(jnp.result_type(s))
            return jnp.where(sync, moved, s)

        slow = tree.map(new_slow, params, fast_updates, state.slow, names=("params", "updates", "state.slow"))
        out = tree.map(
            lambda u, p, s: jnp.where(sync, s - p, u).astype(jnp.result_type(u)),
            fast_updates,
            params,
            slow,
            names=("updates", "params", "state.slow"),
        )
        if self.reset_state:
            fresh = self.fast_optimizer.init(params)
            fast_state = jax.tree.map(
                lambda new, old: jnp.where(sync, new, old).astype(jnp.result_type(old)), fresh, fast_state
            )
        return out, LookaheadState(fast_state, jnp.where(sync, 0, count).astype(jnp.int32), slow)


def lookahead(
    fast_optimizer: Any, sync_period: int = 6, slow_step_size: Any = 0.5, reset_state: bool = False
) -> Lookahead:
    """Lookahead (Zhang, Lucas, Hinton & Ba, 2019, "Lookahead Optimizer: k steps forward, 1 step back").

    The parameters θ given to ``update`` are the fast weights; the slow weights φ are kept in the
    state, starting at φ₀ = θ₀. Every step applies the fast optimizer, θ ← θ + fast_optimizer(g); after
    every ``sync_period``-th step, φ ← φ + slow_step_size·(θ − φ) and θ ← φ. Evaluate the model with the
    slow weights, :func:`slow_params` ``(state)``. Put lookahead last in a chain: a transform after it
    would change the synchronizing update.

    Difference from ``optax.lookahead``: optax's params are a ``LookaheadParams(fast, slow)`` pair that
    the training loop must build and carry, and its updates are such a pair too. gradflow keeps the
    user's params tree as it is (the fast weights), so lookahead drops into any training loop; the
    slow weights cost the same memory in the state instead. gradflow also gives defaults
    (``sync_period=6``, ``slow_step_size=0.5``; optax has none).

    Args:
      fast_optimizer: the inner optimizer (gradflow or optax).
      sync_period: k, the number of fast steps between synchronizations (an integer >= 1).
      slow_step_size: α in [0, 1], the slow weights' step towards the fast ones (a leaf: may be
        vmapped over or be a schedule).
      reset_state: re-initialize the fast optimizer's state at each synchronization.

    Returns:
      A :class:`Lookahead` whose state is a :class:`LookaheadState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import lookahead, slow_params
      >>> tx = lookahead(gf.sgd(1.0), sync_period=2, slow_step_size=0.5)
      >>> params = jnp.array([0.0]); state = tx.init(params)
      >>> for _ in range(2):  # two fast steps of +1 each, then φ = 0 + 0.5·(2 − 0)
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = gf.apply_updates(params, updates)
      >>> params, slow_params(state)
      (Array([1.], dtype=float32), Array([1.], dtype=float32))
    """
    k = check_positive_int("lookahead", "sync_period", sync_period)
    check_range("lookahead", "slow_step_size", slow_step_size, 0.0, 1.0, high_open=False)
    return Lookahead(as_transform("lookahead", fast_optimizer, "fast_optimizer"), slow_step_size, k, bool(reset_state))


def slow_params(state: Any) -> Any:
    """The slow weights of the (single) :func:`lookahead` inside an optimizer state, for evaluation.

    Args:
      state: the state of an optimizer that contains one lookahead (or the lookahead's own state).

    Returns:
      The slow weights φ, a tree like the parameters.

    Raises:
      ValueError: if the state holds no lookahead state, or several.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.lookahead(gf.sgd(1.0), sync_period=2)
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> updates, state = tx.update(-jnp.ones(2), state, params)  # one fast step: no synchronization yet
      >>> gf.apply_updates(params, updates), gf.slow_params(state)
      (Array([1., 1.], dtype=float32), Array([0., 0.], dtype=float32))
    """
    return find_one_state("slow_params", state, LookaheadState, "lookahead").slow
