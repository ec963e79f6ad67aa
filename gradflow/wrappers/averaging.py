"""Averages of the parameters over training: exponential moving average (EMA) and Polyak–Ruppert averaging."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import UNIT, Transform, hyperparameter, pytree_dataclass, static_field
from gradflow.transforms.moments import canonical_dtype
from gradflow.validation import check_flag, check_range
from gradflow.wrappers._common import find_one_state, is_none

__all__ = ["AverageParams", "AverageParamsState", "average_params", "averaged_params"]


class AverageParamsState(NamedTuple):
    """The state of :func:`average_params`.

    Attributes:
      count: int32 number of updates seen (saturating).
      average: the averaged parameters (read them with :func:`averaged_params`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.average_params(0.9).init(jnp.array([1.0, 2.0]))
      >>> state.count, state.average  # the average starts at θ₀
      (Array(0, dtype=int32), Array([1., 2.], dtype=float32))
    """

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count
    average: Any


@pytree_dataclass
class AverageParams(Transform):
    """Pass the updates through unchanged; keep an average of the parameters after each update.

    With θ_t = params + updates (the parameters after this step) and avg₀ = θ₀:
    avg ← avg + w_t·(θ_t − avg), where w_t = 1/t (``decay=None``: the uniform average of θ₁ … θ_t),
    w_t = 1 − decay (EMA), or w_t = (1 − decay)/(1 − decay^t) (debiased EMA).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.average_params(0.5)  # an EMA of the parameters
      >>> params = jnp.zeros(2)
      >>> updates, state = tx.update(jnp.ones(2), tx.init(params), params)
      >>> updates, state.average  # the updates pass unchanged; avg = 0 + 0.5·(1 − 0)
      (Array([1., 1.], dtype=float32), Array([0.5, 0.5], dtype=float32))
    """

    decay: Any = hyperparameter(UNIT, default=None)
    debias: bool = static_field(default=False)
    accumulator_dtype: Any = static_field(default=None)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        average = jax.tree.map(
            lambda p: None if p is None else jnp.asarray(p).astype(self._dtype(p)), params, is_leaf=is_none
        )
        return AverageParamsState(jnp.zeros([], jnp.int32), average)

    def _dtype(self, p: Any) -> Any:
        if self.accumulator_dtype is not None:
            return self.accumulator_dtype
        return jnp.promote_types(jnp.result_type(p), jnp.float32)

    def _weight(self, count: jax.Array, dtype: Any) -> jax.Array:
        if self.decay is None:
            return 1 / count.astype(dtype)
        decay = jnp.asarray(self.decay)
        if self.debias:
            return (1 - decay) / (1 - decay**count)
        return 1 - decay

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError(
                "average_params needs the parameters: call update(updates, state, params), with "
                "average_params last in the chain (it averages params + updates)"
            )
        count = tree.saturating_increment(state.count)

        def step(u, p, a):
            new = jnp.asarray(p + u).astype(jnp.result_type(p)).astype(a.dtype)  # θ_t as apply_updates gives it
            return (a + self._weight(count, a.dtype).astype(a.dtype) * (new - a)).astype(a.dtype)

        average = tree.map(step, updates, params, state.average, names=("updates", "params", "state.average"))
        return updates, AverageParamsState(count, average)


def average_params(decay: Any = None, *, debias: bool = False, accumulator_dtype: Any = None) -> AverageParams:
    """Keep an average of the parameters in the state: an EMA, or the Polyak–Ruppert uniform average.

    The updates pass through unchanged. With θ_t = params + updates, the parameters after step t, and
    avg₀ = θ₀:

    - ``decay=None``: avg_t = (θ₁ + … + θ_t)/t (Polyak & Juditsky, 1992; Ruppert, 1988), i.e.
      avg ← avg + (θ_t − avg)/t;
    - ``decay`` = β: avg ← β·avg + (1 − β)·θ_t, an EMA started at θ₀ (as torch's ``AveragedModel``
      with ``get_ema_multi_avg_fn``);
    - ``decay`` = β, ``debias=True``: the zero-started EMA divided by 1 − β^t, i.e.
      avg ← avg + (1 − β)/(1 − β^t)·(θ_t − avg), a weighted average of θ₁ … θ_t alone.

    It sees params + updates, so it must be last in the chain (after the learning rate). Read the
    average with :func:`averaged_params` ``(state)``, e.g. to evaluate. optax has no parameter
    average (``optax.ema`` averages the updates).

    Args:
      decay: β in [0, 1), or ``None`` for the uniform average (a leaf: may be vmapped over).
      debias: divide the EMA by 1 − β^t (ignored when ``decay`` is ``None``).
      accumulator_dtype: dtype of the average; defaults to each parameter's dtype promoted to at least
        float32.

    Returns:
      An :class:`AverageParams` whose state is an :class:`AverageParamsState`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import average_params, averaged_params
      >>> tx = gf.chain(gf.sgd(1.0), average_params())  # Polyak–Ruppert average
      >>> params = jnp.array([0.0]); state = tx.init(params)
      >>> for _ in range(3):  # θ = 1, 2, 3
      ...     updates, state = tx.update(jnp.array([-1.0]), state, params)
      ...     params = gf.apply_updates(params, updates)
      >>> averaged_params(state)
      Array([2.], dtype=float32)
    """
    if decay is not None:
        check_range("average_params", "decay", decay, 0.0, 1.0)
    return AverageParams(
        decay,
        check_flag("average_params", "debias", debias),
        canonical_dtype(accumulator_dtype, "average_params", "accumulator_dtype"),
    )


def averaged_params(state: Any) -> Any:
    """The averaged parameters of the (single) :func:`average_params` inside an optimizer state.

    Args:
      state: the state of an optimizer that contains one ``average_params`` (or its own state).

    Returns:
      The average, a tree like the parameters (in the accumulator's dtype).

    Raises:
      ValueError: if the state holds no ``average_params`` state, or several.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.chain(gf.sgd(1.0), gf.average_params(0.5))
      >>> params = jnp.zeros(2); state = tx.init(params)
      >>> updates, state = tx.update(jnp.full(2, -2.0), state, params)  # θ₁ = 2
      >>> gf.averaged_params(state)  # 0.5·0 + 0.5·2
      Array([1., 1.], dtype=float32)
    """
    return find_one_state("averaged_params", state, AverageParamsState, "average_params").average
