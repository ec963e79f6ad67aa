"""Schedule-Free learning: replace a base optimizer's momentum by interpolation and online averaging.

Defazio et al. (2024), "The Road Less Scheduled". Three sequences: z (the base optimizer's iterates),
x (a weighted average of the z's, where the model should be evaluated) and y (where gradients are
taken, the ``params`` that training sees). With c_t = w_t / Σ_{i≤t} w_i and w_t = (max_{i≤t} γ_i)^p:

  z_{t+1} = z_t + base_update(∇f(y_t)),  x_{t+1} = (1 − c_{t+1})·x_t + c_{t+1}·z_{t+1},
  y_{t+1} = b1·x_{t+1} + (1 − b1)·z_{t+1}.

Only y and z are stored (x = (y − (1 − b1)·z)/b1), so the memory is the base optimizer's plus one copy of
the parameters. This is a wrapper rather than a chain of primitives: its output is a difference of
parameter iterates that needs ``params`` and its own copy of z, not a statistic of the gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import (
    NONNEGATIVE,
    ForeignTransform,
    Interval,
    Schedule,
    Transform,
    evaluates_own_schedules,
    hyperparameter,
    pytree_dataclass,
    static_field,
)
from gradflow.transforms.moments import canonical_dtype
from gradflow.validation import check_learning_rate, check_nonnegative, check_range

__all__ = [
    "ScheduleFree",
    "ScheduleFreeState",
    "ShiftedSchedule",
    "schedule_free",
    "schedule_free_eval_params",
]


class ScheduleFreeState(NamedTuple):
    """The state of :class:`ScheduleFree`, in optax.contrib's layout.

    Attributes:
      b1: the interpolation weight used by the latest update (needed to recover x from y and z).
      weight_sum: Σ w_i of the averaging weights so far.
      step_count: int32 t of the next update, from 1 (the count at which a scheduled learning rate is read).
      max_lr: the largest learning rate seen so far.
      base_optimizer_state: the base optimizer's state.
      z: the base optimizer's iterate, shaped like the parameters (dtype ``state_dtype``).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.schedule_free(gf.sgd(0.5), learning_rate=0.5)
      >>> state = tx.init(jnp.array([2.0, -1.0]))
      >>> state.z, state.weight_sum  # z starts at the parameters
      (Array([ 2., -1.], dtype=float32), Array(0., dtype=float32))
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: Any
    z: Any


@pytree_dataclass
class ShiftedSchedule(Schedule):
    """``schedule(count + offset)``: the value of ``schedule`` ``offset`` steps ahead.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> schedule = gf.ShiftedSchedule(gf.linear_schedule(0.0, 1.0, transition_steps=10))
      >>> round(float(schedule(jnp.array(0))), 4)  # the linear schedule's value at count 1
      0.1
    """

    schedule: Any
    offset: int = static_field(default=1)

    def __call__(self, count: jax.Array) -> jax.Array:
        count = jnp.asarray(count)
        top = jnp.iinfo(count.dtype).max
        return jnp.asarray(self.schedule(jnp.where(count <= top - self.offset, count + self.offset, top)))


def _scalar_dtype(params: Any) -> Any:
    """float32, or wider when a parameter is (float64 under x64): the dtype of the averaging weights."""
    dtype = jnp.dtype(jnp.float32)
    for leaf in jax.tree.leaves(params):
        dtype = jnp.promote_types(dtype, jnp.result_type(leaf))
    return dtype


@pytree_dataclass
class ScheduleFree(Transform):
    """Schedule-Free wrapper around ``base_optimizer`` (see the module docstring for the rule).

    ``learning_rate`` (a number or a schedule) only sets the averaging weights w_t = max_{i≤t}(γ_i)^p,
    p = ``weight_lr_power``; the step on z is the base optimizer's. Needs ``params`` (the current y).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.schedule_free(gf.sgd(0.5), learning_rate=0.5)
      >>> isinstance(tx, gf.ScheduleFree), tx.b1, tx.weight_lr_power
      (True, 0.9, 2.0)
    """

    base_optimizer: Transform
    learning_rate: Any = hyperparameter(NONNEGATIVE)
    b1: Any = hyperparameter(Interval(0.0, 1.0, low_open=True, high_open=False), default=0.9)
    weight_lr_power: Any = hyperparameter(NONNEGATIVE, default=2.0)
    state_dtype: Any = static_field(default=None)
    arguments: tuple[tuple[str, tuple[str, ...]], ...] = static_field(default=())

    @evaluates_own_schedules
    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        dtype = _scalar_dtype(params)
        z = jax.tree.map(lambda p: jnp.array(p, dtype=self.state_dtype or jnp.result_type(p), copy=True), params)
        return ScheduleFreeState(
            b1=jnp.asarray(self.b1).astype(dtype),
            weight_sum=jnp.zeros([], dtype),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], dtype),
            base_optimizer_state=self.base_optimizer.init(params),
            z=z,
        )

    @evaluates_own_schedules
    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("schedule_free needs the parameters (the current y): call update(grads, state, params)")
        dtype = tree.check_state("schedule_free", state, ScheduleFreeState).weight_sum.dtype
        b1 = jnp.asarray(self.b1).astype(dtype)
        learning_rate = self.learning_rate
        if isinstance(learning_rate, Schedule):  # read at t, from 1: one step ahead of a base optimizer's count
            learning_rate = learning_rate(state.step_count)
        max_lr = jnp.maximum(state.max_lr, jnp.asarray(learning_rate).astype(dtype))
        weight = max_lr ** jnp.asarray(self.weight_lr_power).astype(dtype)
        weight_sum = state.weight_sum + weight
        # c = w / Σw, and 0 while every learning rate so far is 0 (Σw = 0); NaN still propagates.
        empty = weight_sum == 0
        c = jnp.where(empty, 0, weight / jnp.where(empty, 1, weight_sum))

        base_updates, base_state = self.base_optimizer.update(updates, state.base_optimizer_state, params, **extra)
        z = tree.map(lambda z, u: (z + u).astype(z.dtype), state.z, base_updates, names=("state.z", "base updates"))

        def step(y, z_old, z_new, u):
            x = (y - (1 - b1) * z_old) / b1
            x = (1 - c) * x + c * z_new
            return (b1 * x + (1 - b1) * z_new - y).astype(jnp.result_type(u))

        out = tree.map(step, params, state.z, z, updates, names=("params", "state.z", "z", "updates"))
        step_count = tree.saturating_increment(state.step_count)
        return out, ScheduleFreeState(b1, weight_sum, step_count, max_lr, base_state, z)


def schedule_free(
    base_optimizer: Any,
    learning_rate: Any,
    b1: Any = 0.9,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    """Make ``base_optimizer`` Schedule-Free (Defazio et al., 2024, "The Road Less Scheduled").

    z ← z + base_update(g),  c = w_t/Σ_{i≤t} w_i with w_t = (max_{i≤t} learning_rate_i)^weight_lr_power,
    x ← (1 − c)·x + c·z,  y ← b1·x + (1 − b1)·z;  the update is y_new − y. Gradients are taken at y
    (``params``); evaluate the model at x = :func:`schedule_free_eval_params` ``(state, params)``.

    As in optax.contrib, the base optimizer should have no momentum of its own (``adam(lr, b1=0.0)``), and
    a scheduled ``learning_rate`` is read one step ahead of the base optimizer's: at the t-th update (t
    from 1) the averaging weight uses learning_rate(t) while a base optimizer with the same schedule
    steps with learning_rate(t − 1). (The authors' reference code uses learning_rate(t) for both: give
    the base optimizer ``ShiftedSchedule(schedule)`` for that.)

    Args:
      base_optimizer: a gradflow transform, or any object with optax's ``init``/``update``.
      learning_rate: the learning rate (a number or a schedule with warmup but no decay) of the weights.
      b1: interpolation weight of x in y, in (0, 1].
      weight_lr_power: p ≥ 0; larger p down-weights the iterates of the warmup in the average.
      state_dtype: dtype of z (defaults to each parameter's dtype).

    Returns:
      A :class:`ScheduleFree` transform; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.transforms.schedule_free import schedule_free, schedule_free_eval_params
      >>> tx = schedule_free(gf.sgd(0.5), learning_rate=0.5)
      >>> params = jnp.array([2.0]); state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(params, state, params)  # gradient of ½θ²
      ...     params = gf.apply_updates(params, updates)
      >>> x = schedule_free_eval_params(state, params)  # the average of z₁ = 1 and z₂ = 0.5
      >>> [round(float(v[0]), 4) for v in (params, x)]  # y = 0.9·x + 0.1·z₂
      [0.725, 0.75]
    """
    owner = "schedule_free"
    if not isinstance(base_optimizer, Transform):
        if not (callable(getattr(base_optimizer, "init", None)) and callable(getattr(base_optimizer, "update", None))):
            raise TypeError(
                f"{owner}: base_optimizer must be a transform with init and update, got {type(base_optimizer).__name__}"
            )
        base_optimizer = ForeignTransform(base_optimizer)
    check_learning_rate(owner, learning_rate)
    check_range(owner, "b1", b1, 0.0, 1.0, low_open=True, high_open=False)
    check_nonnegative(owner, "weight_lr_power", weight_lr_power)
    state_dtype = canonical_dtype(state_dtype, owner, "state_dtype")  # ValueError if not floating point
    return ScheduleFree(base_optimizer, learning_rate, b1, weight_lr_power, state_dtype)


def _find_states(state: Any) -> list[Any]:
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, ScheduleFreeState))
    return [node for node in nodes if isinstance(node, ScheduleFreeState)]


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The point x = (y − (1 − b1)·z)/b1 where a Schedule-Free model should be evaluated.

    Args:
      state: the state of a :func:`schedule_free` optimizer, or of a chain (or schedule wrapper) that
        holds exactly one; optax.contrib's ``ScheduleFreeState`` is accepted too.
      params: the current training parameters y.

    Returns:
      x, shaped like ``params`` and in their dtypes.

    Raises:
      ValueError: if ``state`` holds no Schedule-Free state, or more than one.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.schedule_free import ScheduleFreeState, schedule_free_eval_params
      >>> state = ScheduleFreeState(jnp.array(0.5), jnp.array(1.0), jnp.array(2), jnp.array(1.0), (), jnp.array([3.0]))
      >>> schedule_free_eval_params(state, jnp.array([2.0]))  # (2 − 0.5·3)/0.5
      Array([1.], dtype=float32)
    """
    found = _find_states(state)
    if not found and hasattr(state, "b1") and hasattr(state, "z"):
        found = [state]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ValueError(
            f"schedule_free_eval_params needs the state of a schedule_free optimizer; {what} ScheduleFreeState "
            f"found in a {type(state).__name__}"
        )
    sf = found[0]
    b1 = jnp.asarray(sf.b1)

    def leaf(y, z):
        return ((y - (1 - b1) * z) / b1).astype(jnp.result_type(y))

    return tree.map(leaf, params, sf.z, names=("params", "state.z"))
