"""Rprop (Riedmiller & Braun, 1993), a ``chain`` of its sign-based scaling and a sign flip."""

from __future__ import annotations

from typing import Any

from gradflow.core import Chain, chain
from gradflow.transforms.elementwise import scale
from gradflow.transforms.rprop import check_rprop_hyperparameters, scale_by_rprop

__all__ = ["rprop"]


def rprop(
    learning_rate: Any,
    eta_minus: Any = 0.5,
    eta_plus: Any = 1.2,
    min_step_size: Any = 1e-6,
    max_step_size: Any = 50.0,
    *,
    weight_backtracking: bool = False,
) -> Chain:
    """Rprop: each coordinate moves by its own step size against the sign of its gradient.

    Resilient backpropagation, Riedmiller & Braun, 1993, "A Direct Adaptive Method for Faster
    Backpropagation Learning: The RPROP Algorithm": the step size Δ of each coordinate adapts to the
    sign of the gradient alone. Per coordinate, with s = sign(g_t)·sign(g_{t−1}):

    Δ ← min(eta_plus·Δ, max_step_size) if s > 0,  Δ ← max(eta_minus·Δ, min_step_size) if s < 0,
    θ ← θ − Δ·sign(g) if s ≥ 0;  after a sign change (s < 0) θ stays and g_t is forgotten (s = 0 next).

    Δ starts at ``learning_rate``. This is optax's rule, the iRprop⁻ variant of Igel & Hüsken (2000),
    as ``torch.optim.Rprop`` implements it. With ``weight_backtracking=True`` (gradflow's addition) a
    sign change undoes the previous step, θ ← θ + Δ_{t−1}·sign(g_{t−1}), as in the 1993 paper.
    optax 0.2.8 applies each step one update late (its first update is 0); gradflow does not copy
    that (see :func:`gradflow.transforms.rprop.scale_by_rprop`).

    Args:
      learning_rate: the initial step size Δ₀ ≥ 0.
      eta_minus: factor of Δ after a sign change, in [0, 1].
      eta_plus: factor of Δ while the sign is kept, ≥ 1.
      min_step_size: lower bound of Δ, ≥ 0.
      max_step_size: upper bound of Δ, ≥ min_step_size.
      weight_backtracking: keyword-only; undo the previous step after a sign change.

    Returns:
      The optimizer, ``chain(scale_by_rprop(...), scale(-1.0))``.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.optimizers.rprop import rprop
      >>> tx = rprop(learning_rate=0.5)
      >>> params = jnp.array([2.0]); state = tx.init(params)
      >>> grad = jax.grad(lambda x: jnp.sum(x ** 2))
      >>> for _ in range(6):
      ...     updates, state = tx.update(grad(params), state, params)
      ...     params = gradflow.apply_updates(params, updates)
      ...     print(round(float(params[0]), 4))
      1.5
      0.9
      0.18
      -0.684
      -0.684
      -0.252
    """
    check_rprop_hyperparameters("rprop", learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)
    return chain(
        scale_by_rprop(
            learning_rate,
            eta_minus,
            eta_plus,
            min_step_size,
            max_step_size,
            weight_backtracking=weight_backtracking,
        ),
        scale(-1.0),
    )
