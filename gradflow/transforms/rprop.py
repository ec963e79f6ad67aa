"""Rprop's sign-based step sizes (Riedmiller & Braun, 1993), one adaptive step size per coordinate."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import (
    NONNEGATIVE,
    UNIT_CLOSED,
    Interval,
    Schedule,
    Transform,
    hyperparameter,
    is_schedule_like,
    pytree_dataclass,
    static_field,
)
from gradflow.validation import check_flag, check_learning_rate, check_nonnegative, check_range

__all__ = ["ScaleByRprop", "ScaleByRpropState", "check_rprop_hyperparameters", "scale_by_rprop"]


class ScaleByRpropState(NamedTuple):
    """Rprop's buffers, shaped like the parameters (and in their dtypes).

    Attributes:
      step_sizes: the current step size Δ of every coordinate.
      prev_updates: the previous output d = Δ·sign(g) (0 after a sign change), whose sign stands for
        the previous gradient's.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.scale_by_rprop(0.1).init(jnp.zeros(2))
      >>> state.step_sizes, state.prev_updates
      (Array([0.1, 0.1], dtype=float32), Array([0., 0.], dtype=float32))
    """

    step_sizes: Any
    prev_updates: Any


@pytree_dataclass
class ScaleByRprop(Transform):
    """Rprop's direction, coordinate by coordinate (see :func:`scale_by_rprop`).

    With s = sign(g)·sign(d_prev):
    Δ ← clip(eta_plus·Δ, min_step_size, max_step_size) if s > 0,
    Δ ← clip(eta_minus·Δ, min_step_size, max_step_size) if s < 0, Δ unchanged if s = 0;
    d = 0 if s < 0 else Δ·sign(g); output d (``weight_backtracking``: output −d_prev where s < 0).
    Δ starts at ``learning_rate`` and d_prev at 0.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_rprop(0.1, weight_backtracking=True)
      >>> isinstance(tx, gf.ScaleByRprop), tx.weight_backtracking
      (True, True)
    """

    learning_rate: Any = hyperparameter(NONNEGATIVE)
    eta_minus: Any = hyperparameter(UNIT_CLOSED, default=0.5)
    eta_plus: Any = hyperparameter(Interval(1.0, math.inf), default=1.2)
    min_step_size: Any = hyperparameter(NONNEGATIVE, default=1e-6)
    max_step_size: Any = hyperparameter(NONNEGATIVE, default=50.0)
    weight_backtracking: bool = static_field(default=False)

    def init(self, params: Any) -> Any:
        return ScaleByRpropState(tree.full_like(params, self.learning_rate), tree.zeros_like(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        tree.check_real_leaves("scale_by_rprop", updates, "updates", "its step sizes follow sign changes")
        eta_minus, eta_plus = jnp.asarray(self.eta_minus), jnp.asarray(self.eta_plus)
        low, high = jnp.asarray(self.min_step_size), jnp.asarray(self.max_step_size)

        def leaf(g, step, prev):
            # Signs, not the product g·prev: a tiny gradient whose product with the previous step
            # would underflow to 0 still counts as a sign change (or agreement).
            agreement = jnp.sign(g) * jnp.sign(prev)
            factor = jnp.where(agreement > 0, eta_plus, eta_minus)
            new_step = jnp.where(agreement == 0, step, jnp.clip(step * factor, low, high)).astype(step.dtype)
            direction = jnp.where(agreement < 0, 0, new_step * jnp.sign(g)).astype(prev.dtype)
            out = jnp.where(agreement < 0, -prev, direction) if self.weight_backtracking else direction
            return out.astype(jnp.result_type(g)), new_step, direction

        results = tree.map(
            leaf,
            updates,
            state.step_sizes,
            state.prev_updates,
            names=("updates", "state.step_sizes", "state.prev_updates"),
        )
        structure: Any  # a jaxlib PyTreeDef, which has no type stubs
        structure = jax.tree.structure(updates, is_leaf=lambda x: x is None)
        parts = [
            (None, s, d) if r is None else r
            for r, s, d in zip(
                structure.flatten_up_to(results),
                structure.flatten_up_to(state.step_sizes),
                structure.flatten_up_to(state.prev_updates),
            )
        ]
        out, step_sizes, prev_updates = (structure.unflatten(list(x)) for x in zip(*parts))
        return out, ScaleByRpropState(step_sizes, prev_updates)


def _is_concrete(value: Any) -> bool:
    return not (isinstance(value, (jax.core.Tracer, Schedule)) or is_schedule_like(value))


def scale_by_rprop(
    learning_rate: Any,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
    *,
    weight_backtracking: bool = False,
) -> ScaleByRprop:
    """Rprop's direction: a step size per coordinate, adapted by the sign of the gradient alone.

    Riedmiller & Braun, 1993, "A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP
    Algorithm". With s = sign(g_t)·sign(g_{t−1}) per coordinate, the step size Δ grows to eta_plus·Δ while the
    gradient keeps its sign (s > 0) and shrinks to eta_minus·Δ when it flips (s < 0), always within
    [min_step_size, max_step_size]; the output is Δ·sign(g) (a descent direction: chain a negative
    scale, as :func:`gradflow.optimizers.rprop.rprop` does). After a flip the output is 0 and the
    gradient is forgotten (s = 0 at the next step, which keeps Δ). This is optax's variant, iRprop⁻
    (Igel & Hüsken, 2000). ``weight_backtracking=True`` gives the 1993 paper's rule instead: after a
    flip the output is −d_{t−1}, which undoes the previous step.

    Differences from optax (0.2.8): optax's ``scale_by_rprop`` computes the same state (Δ and d) but
    outputs the *previous* step's d (zeroed where s < 0), so its first update is 0 and every later
    one lags a step behind (optax pull request #1725); gradflow outputs the current d, as the papers
    and ``torch.optim.Rprop`` do. And the test of s uses the signs, so a tiny gradient whose product
    with d_{t−1} underflows to 0 still counts as a sign change (optax multiplies).

    Args:
      learning_rate: the initial step size Δ₀ ≥ 0 of every coordinate.
      eta_minus: factor applied to Δ after a sign change, in [0, 1] (the paper: 0.5).
      eta_plus: factor applied to Δ while the sign is kept, ≥ 1 (the paper: 1.2).
      min_step_size: lower bound of Δ, ≥ 0.
      max_step_size: upper bound of Δ, ≥ min_step_size.
      weight_backtracking: keyword-only (gradflow's addition): undo the previous step after a sign
        change, as in the 1993 paper.

    Returns:
      A transform whose state is a :class:`ScaleByRpropState`.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.rprop import scale_by_rprop
      >>> tx = scale_by_rprop(0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> for g in ([1.0, 1.0], [2.0, -3.0], [0.5, 4.0]):
      ...     out, state = tx.update(jnp.array(g), state)
      ...     print([round(float(x), 4) for x in out])
      [0.1, 0.1]
      [0.12, 0.0]
      [0.144, 0.05]
    """
    check_rprop_hyperparameters("scale_by_rprop", learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
    return ScaleByRprop(
        learning_rate,
        eta_minus,
        eta_plus,
        min_step_size,
        max_step_size,
        check_flag("scale_by_rprop", "weight_backtracking", weight_backtracking),
    )


def check_rprop_hyperparameters(
    owner: str, learning_rate: Any, eta_minus: Any, eta_plus: Any, min_step_size: Any, max_step_size: Any
) -> None:
    """Raise a ValueError naming the argument and its range when a concrete hyperparameter is out of range."""
    check_learning_rate(owner, learning_rate)
    check_range(owner, "eta_minus", eta_minus, 0.0, 1.0, high_open=False)
    check_range(owner, "eta_plus", eta_plus, 1.0, float("inf"))
    check_nonnegative(owner, "min_step_size", min_step_size)
    check_nonnegative(owner, "max_step_size", max_step_size)
    if _is_concrete(min_step_size) and _is_concrete(max_step_size):
        if np.any(np.asarray(max_step_size) < np.asarray(min_step_size)):
            raise ValueError(
                f"{owner}: max_step_size must be >= min_step_size ({min_step_size!r}), got {max_step_size!r}"
            )
