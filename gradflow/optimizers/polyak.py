"""Optimizers with Polyak's step size (seed 004), each a ``chain`` of a Polyak scaling and a learning rate.

Both need the loss at the current parameters: ``tx.update(grads, state, params, value=loss(params))``
(``jax.value_and_grad`` gives both at once).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from gradflow.core import Chain, chain, name_arguments
from gradflow.transforms.elementwise import scale_by_learning_rate
from gradflow.transforms.polyak import scale_by_clipped_polyak, scale_by_polyak
from gradflow.validation import check_learning_rate, check_range

__all__ = ["clipped_polyak_sgd", "polyak_sgd"]


def polyak_sgd(
    max_learning_rate: Any = 1.0,
    scaling: Any = 1.0,
    f_min: Any = 0.0,
    eps: Any = 0.0,
    variant: Literal["sps", "sps+"] = "sps",
) -> Chain:
    """SGD with the stochastic Polyak step size (Loizou et al., 2021; Polyak, 1987; seed 004):

    θ ← θ − scaling · min((value − f_min) / (‖g‖² + eps), max_learning_rate) · g.

    ``value`` is the loss at θ, passed to ``update``; ``variant="sps+"`` (Garrigos et al., 2023) uses
    max(value − f_min, 0). This is the formula of optax's documentation with optax's argument names,
    order and defaults, and for ``scaling=1`` optax's numbers. **Difference from optax**: here
    ``scaling`` multiplies the step, as the formula says. ``optax.polyak_sgd(scaling=s)`` scales the
    gradient before the Polyak step, which divides the uncapped step by s (s = 0.5 doubles it) and
    multiplies the cap by s. In full, ``gradflow.polyak_sgd(M, c, f, e)`` equals
    ``optax.polyak_sgd(c²·M, 1/c, f, e/c²)``; without cap and eps, optax's ``scaling=s`` is gradflow's
    ``scaling=1/s``.

    Args:
      max_learning_rate: γ_max ≥ 0, the cap on the Polyak step size (``math.inf``: no cap).
      scaling: s ≥ 0 multiplying the step (a number or a schedule).
      f_min: f*, a lower bound (or a guess) of the minimum of the loss.
      eps: ε ≥ 0 added to ‖g‖².
      variant: ``"sps"`` or ``"sps+"``.

    Returns:
      ``chain(scale_by_polyak(f_min, max_learning_rate, eps, variant), scale_by_learning_rate(scaling))``.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.optimizers.polyak import polyak_sgd
      >>> loss = lambda p: jnp.sum(p ** 2)
      >>> tx = polyak_sgd()
      >>> params = jnp.array([1.0, 2.0, 3.0]); state = tx.init(params)
      >>> for _ in range(3):
      ...     value, grads = jax.value_and_grad(loss)(params)
      ...     updates, state = tx.update(grads, state, params, value=value)
      ...     params = gradflow.apply_updates(params, updates)
      >>> float(loss(params))  # each step divides this loss by 4
      0.21875
    """
    check_range("polyak_sgd", "scaling", scaling, 0.0, math.inf)
    tx = chain(scale_by_polyak(f_min, max_learning_rate, eps, variant), scale_by_learning_rate(scaling))
    return name_arguments(tx, scaling="transforms.1:learning_rate")


def clipped_polyak_sgd(learning_rate: Any, max_inverse_norm: Any = 1000.0, f_min: Any = 0.0) -> Chain:
    """Seed 004's clipped Polyak flow, integrated by Euler steps of size ``learning_rate``:

    θ ← θ − learning_rate · (value − f_min) · min(1/‖g‖, max_inverse_norm) · g/‖g‖.

    The Polyak flow θ' = −L·g/‖g‖² makes the loss decay like dL/dt = −(L − f_min) but is singular at
    a local minimum (g = 0, L > f_min); capping 1/‖g‖ at M keeps the step length at most
    learning_rate·M·(L − f_min) there, which can carry θ out of a poor local minimum. The seed's
    experiment, f(x) = x(x−1)(x−3)² + 1.62276 from x₀ = 4 with learning_rate 0.01, M = 1000 and 2500
    steps, hovers around the local minimum x = 3 and then settles at the global minimum x ≈ 0.41, where
    gradient descent stays at 3. As the seed notes, escaping every local minimum needs M and the number
    of steps large; a zero gradient gives a zero update.

    Args:
      learning_rate: h ≥ 0, the Euler step (a number or a schedule).
      max_inverse_norm: M > 0, the cap on 1/‖g‖ (``math.inf``: the unclipped flow).
      f_min: L*, the minimum of the loss (the seed assumes 0).

    Returns:
      ``chain(scale_by_clipped_polyak(f_min, max_inverse_norm), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.optimizers.polyak import clipped_polyak_sgd
      >>> f = lambda x: x * (x - 1) * (x - 3) ** 2 + 1.62276
      >>> tx = clipped_polyak_sgd(0.01, max_inverse_norm=1000.0)
      >>> x = jnp.array(3.0)  # the local minimum: g = 0 but f = 1.62
      >>> updates, _ = tx.update(jnp.array(1e-4), tx.init(x), x, value=f(x))
      >>> round(float(updates), 4)  # −0.01 · 1.62276 · 1000: a long step out of the well
      -16.2276
    """
    check_learning_rate("clipped_polyak_sgd", learning_rate)
    return chain(scale_by_clipped_polyak(f_min, max_inverse_norm), scale_by_learning_rate(learning_rate))
