"""Adaptive optimizers beyond the seeds: Yogi, RAdam, AdaBelief, NovoGrad, Adafactor and Schedule-Free.

Each is a ``chain`` of the scalings in :mod:`gradflow.transforms.adaptive_moments`,
:mod:`gradflow.transforms.factored` and :mod:`gradflow.transforms.schedule_free` with a learning rate,
under optax's names, arguments and defaults (``schedule_free_sgd``/``schedule_free_adamw`` are
optax.contrib's).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradflow.core import Chain, chain, name_arguments
from gradflow.optimizers.classic import sgd
from gradflow.schedules import warmup_constant_schedule
from gradflow.transforms.adaptive_moments import scale_by_belief, scale_by_novograd, scale_by_radam, scale_by_yogi
from gradflow.transforms.clipping import clip_by_block_rms
from gradflow.transforms.elementwise import scale, scale_by_learning_rate
from gradflow.transforms.factored import scale_by_factored_rms, scale_by_param_block_rms
from gradflow.transforms.moments import ema
from gradflow.transforms.regularization import add_decayed_weights
from gradflow.transforms.scaling import scale_by_rms
from gradflow.transforms.schedule_free import ScheduleFree, schedule_free
from gradflow.validation import check_flag, check_integer, check_learning_rate, check_nonnegative, check_range

__all__ = [
    "adabelief",
    "adafactor",
    "novograd",
    "radam",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "yogi",
]


def yogi(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-3) -> Chain:
    """Yogi (Zaheer et al., 2018, "Adaptive Methods for Nonconvex Optimization"):

    m ← b1·m + (1 − b1)·g,  v ← v − (1 − b2)·sign(v − g²)·g²  (both from 1e-6),
    θ ← θ − learning_rate·m̂/(√v̂ + eps),  m̂ = m/(1 − b1^t), v̂ = v/(1 − b2^t).

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: rate of the second moment, in [0, 1).
      eps: added to √v̂ (Yogi's default 1e-3 is larger than Adam's).

    Returns:
      ``chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.optimizers.adaptive import yogi
      >>> tx = yogi(0.1)
      >>> params = jnp.array([1.0, -1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -4.0]), state, params)
      >>> updates.round(3)  # about −η·sign(g) at the first step
      Array([-0.1,  0.1], dtype=float32)
    """
    check_learning_rate("yogi", learning_rate)
    return chain(scale_by_yogi(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


def radam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
    *,
    nesterov: bool = False,
) -> Chain:
    """Rectified Adam (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and Beyond"):

    ρ∞ = 2/(1 − b2) − 1,  ρ_t = ρ∞ − 2t·b2^t/(1 − b2^t),
    θ ← θ − learning_rate·r_t·m̂/(√(v̂ + eps_root) + eps) if ρ_t ≥ threshold, else θ ← θ − learning_rate·m̂,
    r_t = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)), with Adam's m̂ and v̂ (NAdam's m̂ if ``nesterov``).

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the root.
      eps_root: added inside the root.
      threshold: smallest ρ_t with an adaptive step.
      nesterov: use NAdam's look-ahead first moment.

    Returns:
      ``chain(scale_by_radam(...), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.optimizers.adaptive import radam
      >>> tx = radam(0.1)
      >>> params = jnp.array([1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # ρ_1 = 1 < 5: a momentum-SGD step −η·m̂ = −η·g
      [-0.2]
    """
    check_learning_rate("radam", learning_rate)
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov), scale_by_learning_rate(learning_rate)
    )


def adabelief(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
) -> Chain:
    """AdaBelief (Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
    Gradients"):

    m ← b1·m + (1 − b1)·g,  s ← b2·s + (1 − b2)·(g − m)² + eps_root,
    θ ← θ − learning_rate·m̂/(√ŝ + eps),  m̂ = m/(1 − b1^t), ŝ = s/(1 − b2^t).

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief s, in [0, 1).
      eps: added to √ŝ.
      eps_root: added to s at every step.
      nesterov: use NAdam's look-ahead first moment.

    Returns:
      ``chain(scale_by_belief(...), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.optimizers.adaptive import adabelief
      >>> tx = adabelief(0.1)
      >>> params = jnp.array([1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0]), state, params)
      >>> updates.round(4)  # first step: ŝ = (0.9·g)², so −η·g/(0.9·|g|)
      Array([-0.1111], dtype=float32)
    """
    check_learning_rate("adabelief", learning_rate)
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))


def novograd(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.25,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
) -> Chain:
    """NovoGrad (Ginsburg et al., 2019), with one second moment per leaf (layer) l:

    v_l ← ‖g_l‖² (first step), v_l ← b2·v_l + (1 − b2)·‖g_l‖² (later),
    m_l ← b1·m_l + g_l/(√(v_l + eps_root) + eps) + weight_decay·θ_l,  θ_l ← θ_l − learning_rate·m_l.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: momentum, in [0, 1).
      b2: decay of the layer-wise second moment, in [0, 1).
      eps: added to the denominator outside the root.
      eps_root: added inside the root.
      weight_decay: λ ≥ 0 (a number or a schedule); ``update`` needs ``params``.

    Returns:
      ``chain(scale_by_novograd(...), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.optimizers.adaptive import novograd
      >>> tx = novograd(0.1, eps=0.0)
      >>> params = {"w": jnp.array([1.0, 1.0])}; state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([3.0, 4.0])}, state, params)
      >>> updates["w"].round(4)  # −η·g/‖g‖
      Array([-0.06, -0.08], dtype=float32)
    """
    check_learning_rate("novograd", learning_rate)
    return chain(
        scale_by_novograd(b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate),
    )


def adafactor(
    learning_rate: Any = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: Any = 0.8,
    decay_offset: Any = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: Any = 1.0,
    momentum: Any = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: Any = None,
    eps: Any = 1e-30,
    factored: bool = True,
    weight_decay_mask: Any = None,
) -> Chain:
    """Adafactor (Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost").

    û = g/√V̂ with the factored second moment of :func:`~gradflow.transforms.factored.scale_by_factored_rms`
    (decay ρ_t = 1 − (t − decay_offset + 1)^(−decay_rate), V̂ of g² + eps), then, each step optional:
    û ← û / max(1, rms(û)/clipping_threshold) per leaf;  û ← learning_rate·û;
    û ← û·max(rms(θ), 1e-3) per leaf (``multiply_by_parameter_scale``);
    m ← momentum·m + (1 − momentum)·û, û = m;  û ← û + weight_decay_rate·θ;  θ ← θ − û.

    As in optax, the learning rate multiplies before the parameter scale, the momentum and the weight
    decay (which is therefore not multiplied by the learning rate), and ``learning_rate=None`` means 1.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule), or ``None`` for no scaling.
      min_dim_size_to_factor: factor only leaves whose second-largest axis has at least this size.
      decay_rate: exponent of the second-moment decay schedule.
      decay_offset: subtracted from the step count in that schedule (for fine-tuning).
      multiply_by_parameter_scale: scale by the RMS of each parameter leaf (relative step size).
      clipping_threshold: per-leaf RMS clipping of û (``None``: no clipping).
      momentum: EWMA of the updates with this decay (``None``: no momentum).
      dtype_momentum: dtype of the momentum buffer.
      weight_decay_rate: λ ≥ 0 (``None``: no weight decay).
      eps: added to g² (ε₁).
      factored: ``False`` keeps a full second moment for every leaf.
      weight_decay_mask: where to apply weight decay (a tree of booleans or a function of the params).

    Returns:
      The chain of the enabled steps, ending with ``scale(-1)``; ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.optimizers.adaptive import adafactor
      >>> tx = adafactor(0.1)
      >>> params = {"w": jnp.full((2, 3), 2.0)}; state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.full((2, 3), 0.5)}, state, params)
      >>> updates["w"][0]  # −η·sign(g)·rms(θ)
      Array([-0.2, -0.2, -0.2], dtype=float32)
    """
    owner = "adafactor"
    check_nonnegative(owner, "decay_offset", decay_offset)
    steps = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        check_range(owner, "clipping_threshold", clipping_threshold, 0.0, float("inf"), low_open=True)
        steps.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        check_learning_rate(owner, learning_rate)
        steps.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if check_flag(owner, "multiply_by_parameter_scale", multiply_by_parameter_scale):
        steps.append(scale_by_param_block_rms())
    arguments = {"decay_rate": "transforms.0:decay_rate", "decay_offset": "transforms.0:step_offset"}
    arguments |= {"clipping_threshold": ":threshold", "eps": "transforms.0:offset"}
    if momentum is not None:
        check_range(owner, "momentum", momentum, 0.0, 1.0)
        arguments["momentum"] = f"transforms.{len(steps)}:decay"
        steps.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        check_nonnegative(owner, "weight_decay_rate", weight_decay_rate)
        arguments["weight_decay_rate"] = ":weight_decay"
        steps.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    steps.append(scale(-1.0))
    return name_arguments(chain(*steps), **arguments)


def _warmup(owner: str, learning_rate: Any, warmup_steps: int | None) -> Any:
    """``learning_rate``, or a linear warmup from 0 to it over ``warmup_steps`` (a positive integer)."""
    check_learning_rate(owner, learning_rate)
    if warmup_steps is None:
        return learning_rate
    warmup_steps = check_integer(owner, "warmup_steps", warmup_steps, low=1, high=jnp.iinfo(jnp.int32).max)
    return warmup_constant_schedule(0.0, learning_rate, int(warmup_steps))


def schedule_free_sgd(
    learning_rate: Any = 1.0,
    warmup_steps: int | None = None,
    b1: Any = 0.9,
    weight_decay: Any = None,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    """Schedule-Free SGD (Defazio et al., 2024, "The Road Less Scheduled"), optax.contrib's shortcut:

    z ← z − γ_t·(g + weight_decay·y) at y,  x ← (1 − c)·x + c·z,  y ← b1·x + (1 − b1)·z
    (see :func:`~gradflow.transforms.schedule_free.schedule_free`); γ_t warms up linearly from 0 over
    ``warmup_steps`` steps when given. Evaluate at ``schedule_free_eval_params(state, params)``.

    Args:
      learning_rate: peak step size γ ≥ 0.
      warmup_steps: length of the linear warmup (a positive integer), or ``None``.
      b1: interpolation weight, in (0, 1].
      weight_decay: λ ≥ 0 added to the gradient (multiplied by the learning rate), or ``None``.
      weight_lr_power: p ≥ 0 of the averaging weights (max γ)^p.
      state_dtype: dtype of z.

    Returns:
      ``schedule_free(chain(add_decayed_weights(weight_decay), sgd(γ)), γ, b1, weight_lr_power, state_dtype)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.optimizers.adaptive import schedule_free_sgd
      >>> from gradflow.transforms.schedule_free import schedule_free_eval_params
      >>> loss = lambda p: jnp.sum(p ** 2)
      >>> tx = schedule_free_sgd(0.25)
      >>> params = jnp.array([1.0, 2.0]); state = tx.init(params)
      >>> for _ in range(3):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params)
      ...     params = params + updates
      >>> round(float(loss(schedule_free_eval_params(state, params))), 4)
      0.3724
    """
    learning_rate = _warmup("schedule_free_sgd", learning_rate, warmup_steps)
    base = sgd(learning_rate)
    if weight_decay is not None:
        base = chain(add_decayed_weights(check_nonnegative("schedule_free_sgd", "weight_decay", weight_decay)), base)
    return name_arguments(
        schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype), learning_rate=":learning_rate"
    )


def schedule_free_adamw(
    learning_rate: Any = 0.0025,
    warmup_steps: int | None = None,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_lr_power: Any = 2.0,
    state_dtype: Any = None,
) -> ScheduleFree:
    """Schedule-Free AdamW (Defazio et al., 2024), optax.contrib's shortcut:

    v ← b2·v + (1 − b2)·g²,  z ← z − γ_t·(g/(√(v/(1 − b2^t)) + eps) + weight_decay·y) at y,
    then x and y as in :func:`~gradflow.transforms.schedule_free.schedule_free`. The base optimizer is
    Adam without momentum (b1 is the interpolation weight), written as a bias-corrected RMS scaling.

    Args:
      learning_rate: peak step size γ ≥ 0.
      warmup_steps: length of the linear warmup (a positive integer), or ``None``.
      b1: interpolation weight, in (0, 1].
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the root.
      weight_decay: λ ≥ 0, decoupled (multiplied by the learning rate only).
      weight_lr_power: p ≥ 0 of the averaging weights (max γ)^p.
      state_dtype: dtype of z.

    Returns:
      ``schedule_free(chain(scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
      add_decayed_weights(weight_decay), scale_by_learning_rate(γ)), γ, ...)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.optimizers.adaptive import schedule_free_adamw
      >>> tx = schedule_free_adamw(0.1)
      >>> params = jnp.array([1.0, -2.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -3.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # the first step moves y by −γ·sign(g) (x = z after one step)
      [-0.1, 0.1]
    """
    learning_rate = _warmup("schedule_free_adamw", learning_rate, warmup_steps)
    check_range("schedule_free_adamw", "b2", b2, 0.0, 1.0)
    base = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
    tx = schedule_free(base, learning_rate, b1, weight_lr_power, state_dtype)
    return name_arguments(tx, learning_rate=":learning_rate", b2="base_optimizer:decay")
