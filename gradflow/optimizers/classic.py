"""The named optimizers of the seeds, each a ``chain`` of primitives with optax's names and defaults.

Switching from optax is a rename of the import. Where the seeds' textbook form differs from optax's
default, an argument reaches it (documented on each function and in the README).
"""

from __future__ import annotations

from typing import Any

from gradflow.core import Chain, Transform, chain, identity, name_arguments
from gradflow.transforms.elementwise import scale_by_learning_rate, sign
from gradflow.transforms.moments import canonical_dtype, ema, ewma, trace
from gradflow.transforms.nesterov import lookahead_gradient
from gradflow.transforms.regularization import FrozenMask, add_decayed_weights
from gradflow.transforms.scaling import (
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_lion,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from gradflow.validation import check_flag, check_learning_rate, check_range

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "amsgrad",
    "lion",
    "nadam",
    "nag",
    "rmsprop",
    "sgd",
    "sign_sgd",
    "signum",
]


def _momentum(owner: str, momentum: Any, nesterov: bool, dtype: Any = None) -> Transform:
    dtype = canonical_dtype(dtype, owner, "accumulator_dtype")
    nesterov = check_flag(owner, "nesterov", nesterov)
    if momentum is None:
        return identity()
    check_range(owner, "momentum", momentum, 0.0, 1.0)
    return trace(momentum, nesterov, dtype)


def sgd(learning_rate: Any, momentum: Any = None, nesterov: bool = False, accumulator_dtype: Any = None) -> Chain:
    """Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

    θ ← θ − η·g; with momentum γ (Polyak, 1964; seed 002 eqs. 1–2): m ← γm + g, θ ← θ − η·m, whose
    terminal step on a constant gradient is η·g/(1−γ). ``nesterov=True`` uses g + γ·m, the
    reformulation of NAG at the shifted point θ − γ·m (Sutskever et al., 2013); see :func:`nag`.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.sgd(0.1, momentum=0.9)
      >>> params = jnp.array([1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0]), state, params)
      >>> updates
      Array([-0.2], dtype=float32)
    """
    check_learning_rate("sgd", learning_rate)
    tx = chain(_momentum("sgd", momentum, nesterov, accumulator_dtype), scale_by_learning_rate(learning_rate))
    return name_arguments(tx, momentum="transforms.0:decay")


def nag(learning_rate: Any, momentum: Any = 0.9) -> Chain:
    """Nesterov's accelerated gradient in its look-ahead form (Nesterov, 1983; seed 000 §5.1.3):

    m ← γ·m + η·∇L(θ − γ·m),  θ ← θ − m.

    The gradient is evaluated at the look-ahead point through the ``grad_fn`` extra argument, so
    ``update`` must be called as ``tx.update(grads, state, params, grad_fn=jax.grad(loss))``.
    ``sgd(learning_rate, momentum, nesterov=True)`` is the same algorithm expressed in the shifted
    variable θ − γ·m and needs only the current gradient.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> loss = lambda p: jnp.sum(p ** 2)
      >>> tx = gradflow.nag(0.1, momentum=0.9)
      >>> params = jnp.array([1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jax.grad(loss)(params), state, params, grad_fn=jax.grad(loss))
      >>> updates
      Array([-0.2], dtype=float32)
    """
    check_learning_rate("nag", learning_rate)
    check_range("nag", "momentum", momentum, 0.0, 1.0)
    inner = chain(ewma(momentum, kind="momentum"), scale_by_learning_rate(learning_rate))
    return name_arguments(chain(lookahead_gradient(inner, momentum)), momentum=(":momentum", ":decay"))


def adagrad(learning_rate: Any, initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> Chain:
    """AdaGrad (Duchi et al., 2011): s ← s + g², θ ← θ − η·g/√(s + ε).

    Defaults are optax's. The seeds' textbook form (seed 002: s₀ = 0, ε = 1e-10) is
    ``adagrad(lr, initial_accumulator_value=0.0, eps=1e-10)``. On a constant gradient the effective
    rate η/√(t·g² + s₀ + ε) decays like 1/√t.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      initial_accumulator_value: s₀ ≥ 0, the starting value of s.
      eps: ε ≥ 0 inside the root.

    Returns:
      ``chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(jnp.array([3.0, -4.0]), state, params)
      ...     print([round(float(u), 4) for u in updates])  # −η·g/√(g²), then −η·g/√(2g²)
      [-0.1, 0.1]
      [-0.0707, 0.0707]
    """
    check_learning_rate("adagrad", learning_rate)
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))


def rmsprop(
    learning_rate: Any,
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Any = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> Chain:
    """RMSprop (Hinton, 2012; seed 000 §5.1.5, seed 002 eqs. 10–11): s ← γs + (1−γ)g², θ ← θ − η·g/√(s + ε).

    ``centered=True`` divides by √(E[g²] − E[g]² + ε) (Graves, 2013). ``momentum`` adds a heavy-ball
    buffer over the scaled step (m ← γ_m·m + η·g/√(s+ε), θ ← θ − m), as optax and TensorFlow do.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      decay: γ in [0, 1), the decay of s.
      eps: ε ≥ 0 added to s inside the root (outside it with ``eps_in_sqrt=False``).
      initial_scale: s₀ ≥ 0, the starting value of s.
      eps_in_sqrt: put ``eps`` inside the root (optax's default) or outside it.
      centered: divide by the standard deviation √(E[g²] − E[g]² + ε) instead.
      momentum: γ_m in [0, 1), or ``None`` for no momentum.
      nesterov: use Nesterov's form of the momentum.
      bias_correction: divide the averages by 1 − γ^t.

    Returns:
      ``chain(scale_by_rms(...) or scale_by_stddev(...), scale_by_learning_rate(learning_rate), momentum)``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.rmsprop(0.1, decay=0.75, eps=0.0)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([2.0, -2.0]), state, params)
      >>> updates  # s = 0.25·4 = 1, so the step is −η·g
      Array([-0.2,  0.2], dtype=float32)
    """
    check_learning_rate("rmsprop", learning_rate)
    scaling = scale_by_stddev if check_flag("rmsprop", "centered", centered) else scale_by_rms
    tx = chain(
        scaling(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scale_by_learning_rate(learning_rate),
        _momentum("rmsprop", momentum, nesterov),
    )
    return name_arguments(tx, decay="transforms.0:decay", momentum="transforms.2:decay")


def adadelta(
    learning_rate: Any = None,
    rho: Any = 0.9,
    eps: Any = 1e-6,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
) -> Chain:
    """Adadelta (Zeiler, 2012; seed 002 eqs. 12–15), which needs no learning rate:

    s ← ρs + (1−ρ)g²,  g' = √(Δ + ε)/√(s + ε)·g,  Δ ← ρΔ + (1−ρ)g'²,  θ ← θ − g'.

    ``learning_rate=None`` means 1 (the seed's rule) and the step descends. optax's
    ``adadelta(learning_rate=None)`` skips the sign flip and ascends; gradflow does not copy that.

    Args:
      learning_rate: η ≥ 0 multiplying g' (``None``: 1, the paper's rule), a number or a schedule.
      rho: ρ in [0, 1), the decay of both averages.
      eps: ε ≥ 0 inside both roots.
      weight_decay: λ ≥ 0; λ·θ is added to g before the scaling.
      weight_decay_mask: where to apply the weight decay (a tree of booleans or a function of the params).

    Returns:
      ``chain(add_decayed_weights(weight_decay, weight_decay_mask), scale_by_adadelta(rho, eps),
      scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.adadelta(rho=0.5, eps=1.0)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([4.0, -4.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # −√(0 + 1)/√(0.5·16 + 1)·g
      [-1.3333, 1.3333]
    """
    if learning_rate is None:
        learning_rate = 1.0
    check_learning_rate("adadelta", learning_rate)
    FrozenMask.of(weight_decay_mask, "adadelta", "weight_decay_mask")
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


def adam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    nesterov: bool = False,
) -> Chain:
    """Adam (Kingma & Ba, 2015; seed 000 §5.1.7, seed 002 eqs. 16–19):

    m ← b1·m + (1−b1)g,  v ← b2·v + (1−b2)g²,  m̂ = m/(1−b1^t),  v̂ = v/(1−b2^t),
    θ ← θ − η·m̂/(√(v̂ + eps_root) + eps).

    The seeds put ε inside the root: ``adam(lr, eps=0.0, eps_root=1e-8)``. ``mu_dtype``/``nu_dtype``
    set the dtypes of the two moment buffers (optax has only the first).

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = gradflow.adam(0.1)
      >>> params = {"w": jnp.array([1.0, -1.0])}; state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([0.5, -3.0])}, state, params)
      >>> [round(float(u), 4) for u in updates["w"]]  # the first Adam step is −η·sign(g)
      [-0.1, 0.1]
    """
    check_learning_rate("adam", learning_rate)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nu_dtype=nu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-4,
    mask: Any = None,
    *,
    nu_dtype: Any = None,
    nesterov: bool = False,
) -> Chain:
    """AdamW (Loshchilov & Hutter, 2019): θ ← θ − η·(m̂/(√(v̂ + eps_root) + eps) + λ·θ).

    m̂ and v̂ are Adam's bias-corrected moments (see :func:`adam`); the decay λ·θ is decoupled from them.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: ε ≥ 0 added to the denominator outside the root.
      eps_root: ε ≥ 0 added inside the root.
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      weight_decay: λ ≥ 0.
      mask: where to apply the weight decay (a tree of booleans or a function of the params).
      nu_dtype: keyword-only; dtype of v.
      nesterov: keyword-only; use NAdam's look-ahead m̂.

    Returns:
      ``chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.adamw(0.1, weight_decay=0.5)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -3.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # −η·(sign(g) + 0.5·θ) at the first step
      [-0.15, 0.05]
    """
    check_learning_rate("adamw", learning_rate)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nu_dtype=nu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    nesterov: bool = True,
) -> Chain:
    """NAdam (Dozat, 2016): Adam whose first moment looks one step ahead,

    m̂ = b1·m_t/(1−b1^(t+1)) + (1−b1)·g_t/(1−b1^t),  θ ← θ − η·m̂/(√(v̂ + eps_root) + eps).

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: ε ≥ 0 added to the denominator outside the root.
      eps_root: ε ≥ 0 added inside the root.
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      nu_dtype: keyword-only; dtype of v.
      nesterov: keyword-only; ``False`` gives plain Adam.

    Returns:
      ``adam(learning_rate, ..., nesterov=True)``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.nadam(0.1)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -3.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # m̂ = (0.9·0.1/0.19 + 1)·g at the first step
      [-0.1474, 0.1474]
    """
    check_learning_rate("nadam", learning_rate)
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype=nu_dtype, nesterov=nesterov)


def adamax(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> Chain:
    """AdaMax (Kingma & Ba, 2015, §7.1): u ← max(b2·u, |g| + eps), θ ← θ − η·m̂/u.

    m ← b1·m + (1 − b1)·g, m̂ = m/(1 − b1^t); m and u start at 0.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the infinity norm u, in [0, 1).
      eps: ε ≥ 0 added to |g|.

    Returns:
      ``chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.adamax(0.1)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -3.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # −η·sign(g) at the first step
      [-0.1, 0.1]
    """
    check_learning_rate("adamax", learning_rate)
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


def amsgrad(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
) -> Chain:
    """AMSGrad (Reddi et al., 2018; seed 003): v̂_max ← max(v̂_max, v̂), θ ← θ − η·m̂/(√(v̂_max + eps_root) + eps).

    Defaults are optax's (maximum over the bias-corrected v̂). The paper's rule, without bias
    correction and with the maximum over raw v, is ``bias_correction_mu=False, bias_correction_nu=False``.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: ε ≥ 0 added to the denominator outside the root.
      eps_root: ε ≥ 0 added inside the root.
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      bias_correction_mu: divide m by 1 − b1^t.
      bias_correction_nu: divide v by 1 − b2^t before the maximum.
      nu_dtype: keyword-only; dtype of v.

    Returns:
      ``chain(scale_by_amsgrad(...), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.amsgrad(0.1, b1=0.0, b2=0.5, eps=0.0)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> for g in ([1.0, 1.0], [0.5, 2.0]):
      ...     updates, state = tx.update(jnp.array(g), state, params)
      ...     print([round(float(u), 4) for u in updates])  # the first v̂ falls to 0.5; its maximum stays 1
      [-0.1, -0.1]
      [-0.05, -0.1155]
    """
    check_learning_rate("amsgrad", learning_rate)
    return chain(
        scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def lion(
    learning_rate: Any,
    b1: Any = 0.9,
    b2: Any = 0.99,
    mu_dtype: Any = None,
    weight_decay: Any = 1e-3,
    mask: Any = None,
) -> Chain:
    """Lion (Chen et al., 2023): θ ← θ − η·(sign(b1·m + (1−b1)·g) + λ·θ), then m ← b2·m + (1−b2)·g.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      b1: weight of the momentum in the direction, in [0, 1).
      b2: decay of the momentum m (from 0), in [0, 1).
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      weight_decay: λ ≥ 0.
      mask: where to apply the weight decay (a tree of booleans or a function of the params).

    Returns:
      ``chain(scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.lion(0.1)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([0.5, -3.0]), state, params)
      >>> [round(float(u), 4) for u in updates]  # −η·(sign(g) + 0.001·θ)
      [-0.1001, 0.0999]
    """
    check_learning_rate("lion", learning_rate)
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def sign_sgd(learning_rate: Any) -> Chain:
    """signSGD (Bernstein et al., 2018; seed 004's ODE view θ' = −sign(∇L)): θ ← θ − η·sign(g).

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).

    Returns:
      ``chain(sign(), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.sign_sgd(0.1)
      >>> params = jnp.array([1.0, 1.0])
      >>> tx.update(jnp.array([0.5, -3.0]), tx.init(params), params)[0]
      Array([-0.1,  0.1], dtype=float32)
    """
    check_learning_rate("sign_sgd", learning_rate)
    return chain(sign(), scale_by_learning_rate(learning_rate))


def signum(learning_rate: Any, beta: Any = 0.9, accumulator_dtype: Any = None) -> Chain:
    """Signum (Bernstein et al., 2018): m ← β·m + (1−β)·g, θ ← θ − η·sign(m).

    Args:
      learning_rate: η ≥ 0 (a number or a schedule).
      beta: β in [0, 1), the decay of the momentum m (from 0).
      accumulator_dtype: dtype of m (defaults to each parameter's dtype).

    Returns:
      ``chain(ema(beta, debias=False), sign(), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.signum(0.1, beta=0.9)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> for g in ([0.5, -3.0], [-0.1, -3.0]):
      ...     updates, state = tx.update(jnp.array(g), state, params)
      ...     print([round(float(u), 4) for u in updates])  # m = 0.9·0.05 − 0.01 > 0 keeps its sign
      [-0.1, 0.1]
      [-0.1, 0.1]
    """
    check_learning_rate("signum", learning_rate)
    check_range("signum", "beta", beta, 0.0, 1.0)
    accumulator_dtype = canonical_dtype(accumulator_dtype, "signum", "accumulator_dtype")
    tx = chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype), sign(), scale_by_learning_rate(learning_rate)
    )
    return name_arguments(tx, beta="transforms.0:decay")
