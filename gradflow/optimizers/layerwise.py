"""Layer-wise adaptive optimizers for large batches, LARS and LAMB, each a ``chain`` of primitives.

Both rescale each layer's (leaf's) step by a trust ratio ‖θ‖ / ‖u‖ (:func:`scale_by_trust_ratio`), so
that every layer moves by a fixed fraction of its weights. Names, arguments and defaults are optax's.
"""

from __future__ import annotations

from typing import Any

from gradflow.core import Chain, Transform, chain, name_arguments
from gradflow.transforms.elementwise import scale_by_learning_rate
from gradflow.transforms.moments import trace
from gradflow.transforms.regularization import add_decayed_weights, presented_as_masked
from gradflow.transforms.scaling import scale_by_adam
from gradflow.transforms.trust_ratio import prefix_mask, scale_by_trust_ratio
from gradflow.validation import check_learning_rate, check_nonnegative, check_range

__all__ = ["lamb", "lars"]


def _decayed_weights(owner: str, name: str, weight_decay: Any, mask: Any) -> Transform:
    """``add_decayed_weights`` under a prefix mask; whenever a mask is given (``True`` too) its state is the
    ``MaskedState`` that optax's wrapping in ``masked`` holds."""
    mask_of_leaves = prefix_mask(owner, name, mask)  # None for True: every leaf decays
    decay = add_decayed_weights(weight_decay, mask_of_leaves)
    return presented_as_masked(decay) if mask is not None and mask_of_leaves is None else decay


def lars(
    learning_rate: Any,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: Any = 0.001,
    eps: Any = 0.0,
    trust_ratio_mask: Any = True,
    momentum: Any = 0.9,
    nesterov: bool = False,
) -> Chain:
    """LARS: momentum SGD whose step for each layer is rescaled to a fraction of the layer's norm.

    Layer-wise adaptive rate scaling, You et al., 2017, "Large Batch Training of Convolutional
    Networks", in optax's form. For each leaf (layer) θ with gradient g:

    u = g + weight_decay·θ,  r = trust_coefficient·‖θ‖ / (‖u‖ + eps)  (r = 1 if ‖θ‖ or ‖u‖ is 0),
    m ← momentum·m + learning_rate·r·u,  θ ← θ − m
    (``nesterov=True``: θ ← θ − (momentum·m + learning_rate·r·u) with the new m).

    The paper's local rate divides by ‖g‖ + weight_decay·‖θ‖ (an upper bound of ‖u‖); this rule, like
    optax's, divides by ‖g + weight_decay·θ‖ (the two agree without weight decay).

    Args:
      learning_rate: η ≥ 0, a number or a schedule.
      weight_decay: λ ≥ 0, a number or a schedule.
      weight_decay_mask: where to decay: a tree of booleans that is a prefix of the params, or a
        function of the params returning one (``True``: every leaf).
      trust_coefficient: LARS's η_trust ≥ 0 (the fraction of ‖θ‖ a step moves, before the rate).
      eps: ≥ 0, added to ‖u‖ in the trust ratio.
      trust_ratio_mask: where to apply the trust ratio (elsewhere r = 1), like ``weight_decay_mask``;
        e.g. leave out biases and normalisation scales.
      momentum: the heavy-ball decay in [0, 1).
      nesterov: use Nesterov's look-ahead form of the momentum.

    Returns:
      The optimizer, a :class:`gradflow.Chain`.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.optimizers.layerwise import lars
      >>> tx = lars(learning_rate=1.0, trust_coefficient=0.1)
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> grads = jax.grad(lambda x: jnp.sum(x ** 2))(params)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> gradflow.apply_updates(params, updates)  # the first step moves by 0.1·‖θ‖
      Array([0.9, 1.8, 2.7], dtype=float32)
    """
    check_learning_rate("lars", learning_rate)
    check_nonnegative("lars", "weight_decay", weight_decay)
    check_nonnegative("lars", "trust_coefficient", trust_coefficient)
    check_nonnegative("lars", "eps", eps)
    check_range("lars", "momentum", momentum, 0.0, 1.0)
    tx = chain(
        _decayed_weights("lars", "weight_decay_mask", weight_decay, weight_decay_mask),
        presented_as_masked(
            scale_by_trust_ratio(
                trust_coefficient=trust_coefficient,
                eps=eps,
                mask=prefix_mask("lars", "trust_ratio_mask", trust_ratio_mask),
            )
        ),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )
    return name_arguments(tx, momentum="transforms.3:decay", eps="transforms.1:eps")


def lamb(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-6,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    mask: Any = None,
) -> Chain:
    """LAMB: AdamW whose step for each layer is rescaled to the learning rate times the layer's norm.

    Layer-wise adaptive moments, You et al., 2020, "Large Batch Optimization for Deep Learning:
    Training BERT in 76 minutes", Algorithm 2. For each leaf (layer) θ with gradient g:

    m ← b1·m + (1−b1)·g,  v ← b2·v + (1−b2)·g²,  m̂ = m/(1−b1^t),  v̂ = v/(1−b2^t),
    u = m̂/(√(v̂ + eps_root) + eps) + weight_decay·θ,  θ ← θ − learning_rate·(‖θ‖/‖u‖)·u
    (the ratio is 1 where ‖θ‖ or ‖u‖ is 0), so each layer moves by learning_rate·‖θ‖.

    Args:
      learning_rate: η ≥ 0, a number or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: ≥ 0, added to √v̂ (outside the root).
      eps_root: ≥ 0, added to v̂ inside the root.
      weight_decay: λ ≥ 0, a number or a schedule.
      mask: where to decay: a tree of booleans that is a prefix of the params, or a function of the
        params returning one (``None``: every leaf).

    Returns:
      The optimizer, a :class:`gradflow.Chain`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.optimizers.layerwise import lamb
      >>> tx = lamb(learning_rate=0.1)
      >>> params = jnp.array([1.0, 2.0, 3.0])
      >>> grads = jax.grad(lambda x: jnp.sum(x ** 2))(params)
      >>> updates, state = tx.update(grads, tx.init(params), params)
      >>> round(float(jnp.linalg.norm(updates) / jnp.linalg.norm(params)), 4)  # the step is 0.1·‖θ‖
      0.1
    """
    check_learning_rate("lamb", learning_rate)
    check_range("lamb", "b1", b1, 0.0, 1.0)
    check_range("lamb", "b2", b2, 0.0, 1.0)
    check_nonnegative("lamb", "eps", eps)
    check_nonnegative("lamb", "eps_root", eps_root)
    check_nonnegative("lamb", "weight_decay", weight_decay)
    tx = chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        _decayed_weights("lamb", "mask", weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )
    return name_arguments(tx, eps="transforms.0:eps", eps_root="transforms.0:eps_root")
