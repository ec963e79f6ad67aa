"""The adaptive scalings of the seeds, each a composition of primitives (``scale_by_<algo>``).

Nothing here does arithmetic of its own: every function returns a ``chain`` or a branch combinator of
the primitives in :mod:`gradflow.transforms.elementwise`, :mod:`~gradflow.transforms.moments` and
:mod:`~gradflow.transforms.combine`, so each rule can be read, and changed, as a formula.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from gradflow.core import (
    NONNEGATIVE,
    UNIT,
    Transform,
    chain,
    identity,
    name_arguments,
)
from gradflow.layout import OWN_COUNT, composite
from gradflow.transforms.combine import difference, interpolate, ratio
from gradflow.transforms.elementwise import absolute, clip, root, scale, shift, sign, square, tanh
from gradflow.transforms.moments import (
    accumulate,
    canonical_dtype,
    ewma,
    interpolated_momentum,
    running_max,
    scale_by_update_rms,
)
from gradflow.transforms.moments import bias_correction as _bias_correction
from gradflow.validation import check_all, check_choice, check_flag, check_number

__all__ = [
    "ScaleByAdaDeltaState",
    "ScaleByAdamState",
    "ScaleByAmsgradState",
    "ScaleByLionState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScaleByRssState",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_lion",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
]


# The states, in optax's layout (each scaling below is a Composite presenting its chain's state so).


class ScaleByRssState(NamedTuple):
    """AdaGrad's accumulated squares, as optax lays them out.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_rss().init(jnp.zeros(2))
    ScaleByRssState(sum_of_squares=Array([0.1, 0.1], dtype=float32))
    """

    sum_of_squares: Any


class ScaleByRmsState(NamedTuple):
    """RMSprop's moving average of squares ``nu``.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_rms().init(jnp.zeros(1))
    ScaleByRmsState(nu=Array([0.], dtype=float32))
    """

    nu: Any


class ScaleByRmsWithCountState(NamedTuple):
    """RMSprop's ``nu`` with the step count its bias correction needs.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_rms(bias_correction=True).init(jnp.zeros(1)).count
    Array(0, dtype=int32)
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    nu: Any


class ScaleByRStdDevState(NamedTuple):
    """Centered RMSprop's averages of the gradient ``mu`` and of its square ``nu``.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_stddev().init(jnp.zeros(1))._fields
    ('mu', 'nu')
    """

    mu: Any
    nu: Any


class ScaleByRStdDevWithCountState(NamedTuple):
    """Centered RMSprop's ``mu`` and ``nu`` with the step count of their bias correction.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_stddev(bias_correction=True).init(jnp.zeros(1))._fields
    ('count', 'mu', 'nu')
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    mu: Any
    nu: Any


class ScaleByAdamState(NamedTuple):
    """Adam's step count and moments (also the state of AdaMax, NAdam, Yogi and RAdam, as in optax).

    >>> import jax.numpy as jnp, gradflow as gf
    >>> state = gf.adam(0.1).init({"w": jnp.zeros(2)})
    >>> int(state[0].count), state[0].mu["w"]
    (0, Array([0., 0.], dtype=float32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    mu: Any
    nu: Any


class ScaleByAmsgradState(NamedTuple):
    """AMSGrad's step count, moments and running maximum ``nu_max`` of the second moment.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_amsgrad().init(jnp.zeros(1))._fields
    ('count', 'mu', 'nu', 'nu_max')
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    mu: Any
    nu: Any
    nu_max: Any


class ScaleByLionState(NamedTuple):
    """Lion's step count and momentum.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_lion().init(jnp.zeros(1))
    ScaleByLionState(count=Array(0, dtype=int32), mu=Array([0.], dtype=float32))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    mu: Any


class ScaleByAdaDeltaState(NamedTuple):
    """Adadelta's averages of squared gradients ``e_g`` and of squared updates ``e_x``.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_adadelta().init(jnp.zeros(1))._fields
    ('e_g', 'e_x')
    """

    e_g: Any
    e_x: Any


def _check_dtypes(owner: str, **dtypes: Any) -> None:
    for name, dtype in dtypes.items():
        canonical_dtype(dtype, owner, name)


def _eps_field(eps_in_sqrt: bool) -> str:
    """The field of :func:`_root` that holds ``eps``."""
    return ":eps_root" if eps_in_sqrt else "inner.second:eps"


def _root(eps: Any, eps_in_sqrt: bool) -> Transform:
    return root(eps_root=eps) if eps_in_sqrt else root(eps=eps)


def scale_by_rss(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> Transform:
    """AdaGrad's scaling (Duchi et al., 2011): s ← s + g², u ← g / √(s + eps).

    The seeds' textbook form (seed 000 §5.1.4, seed 002 eq. 9) starts from s = 0 with ε = 1e-10;
    the defaults here are optax's (s₀ = 0.1, ε = 1e-7).

    Args:
      initial_accumulator_value: s₀ ≥ 0, the starting value of s.
      eps: ε ≥ 0 inside the root.

    Returns:
      ``ratio(identity(), chain(square(), accumulate(initial_accumulator_value), root(eps_root=eps)))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
      >>> g = jnp.array([3.0, -4.0]); state = tx.init(g)
      >>> for _ in range(2):
      ...     u, state = tx.update(g, state)
      ...     print([round(float(x), 4) for x in u])  # g/√(g²), then g/√(2g²)
      [1.0, -1.0]
      [0.7071, -0.7071]
    """
    check_all("scale_by_rss", NONNEGATIVE, initial_accumulator_value=initial_accumulator_value, eps=eps)
    inner = ratio(identity(), chain(square(), accumulate(initial_accumulator_value), root(eps_root=eps)))
    tx = composite(inner, ScaleByRssState, sum_of_squares="1.1.total")
    return name_arguments(tx, initial_accumulator_value=":initial", eps=":eps_root")


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Transform:
    """RMSprop's scaling (Hinton, 2012; seed 000 §5.1.5): s ← γs + (1−γ)g², u ← g / √(s + eps).

    ``eps_in_sqrt=False`` gives g / (√s + eps); ``bias_correction=True`` divides s by 1 − γ^t.

    Args:
      decay: γ in [0, 1), the decay of s.
      eps: ε ≥ 0 added to s inside the root (outside it with ``eps_in_sqrt=False``).
      initial_scale: s₀ ≥ 0, the starting value of s.
      eps_in_sqrt: put ``eps`` inside the root (optax's default) or outside it.
      bias_correction: divide s by 1 − γ^t (t counts the updates from 1).

    Returns:
      ``ratio(identity(), chain(square(), ewma(decay, initial=initial_scale), root(...)))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_rms(decay=0.75, eps=0.0)
      >>> g = jnp.array([2.0, -2.0])
      >>> tx.update(g, tx.init(g))[0]  # s = 0.25·4 = 1, so u = g
      Array([ 2., -2.], dtype=float32)
    """
    check_all("scale_by_rms", UNIT, decay=decay)
    eps_in_sqrt = check_flag("scale_by_rms", "eps_in_sqrt", eps_in_sqrt)
    bias_correction = check_flag("scale_by_rms", "bias_correction", bias_correction)
    check_all("scale_by_rms", NONNEGATIVE, eps=eps, initial_scale=initial_scale)
    debias = [_bias_correction(decay)] if bias_correction else []
    inner = ratio(identity(), chain(square(), ewma(decay, initial=initial_scale), *debias, _root(eps, eps_in_sqrt)))
    arguments = {"decay": ":decay", "eps": _eps_field(eps_in_sqrt), "initial_scale": ":initial"}
    if bias_correction:
        return name_arguments(composite(inner, ScaleByRmsWithCountState, count="1.2.count", nu="1.1.mean"), **arguments)
    return name_arguments(composite(inner, ScaleByRmsState, nu="1.1.mean"), **arguments)


def scale_by_stddev(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Transform:
    """Centered RMSprop (Graves, 2013): u ← g / √(E[g²] − E[g]² + eps), both averages with rate γ.

    E[g²] ← γ·E[g²] + (1 − γ)·g² from ``initial_scale`` and E[g] ← γ·E[g] + (1 − γ)·g from 0, with
    γ = ``decay``. ``eps_in_sqrt=False`` gives g / (√(E[g²] − E[g]²) + eps); ``bias_correction=True``
    divides both averages by 1 − γ^t.

    Args:
      decay: γ in [0, 1), the decay of both averages.
      eps: ε ≥ 0 added inside the root (outside it with ``eps_in_sqrt=False``).
      initial_scale: the starting value of E[g²], ≥ 0.
      eps_in_sqrt: put ``eps`` inside the root (optax's default) or outside it.
      bias_correction: divide both averages by 1 − γ^t (t counts the updates from 1).

    Returns:
      ``ratio(identity(), chain(difference(E[g²] branch, E[g]² branch), root(...)))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_stddev(decay=0.5, eps=0.0)
      >>> g = jnp.array([2.0, -2.0])
      >>> tx.update(g, tx.init(g))[0]  # E[g²] − E[g]² = 0.5·4 − 1² = 1, so u = g
      Array([ 2., -2.], dtype=float32)
    """
    check_all("scale_by_stddev", UNIT, decay=decay)
    eps_in_sqrt = check_flag("scale_by_stddev", "eps_in_sqrt", eps_in_sqrt)
    bias_correction = check_flag("scale_by_stddev", "bias_correction", bias_correction)
    check_all("scale_by_stddev", NONNEGATIVE, eps=eps, initial_scale=initial_scale)
    debias = [_bias_correction(decay)] if bias_correction else []
    variance = difference(
        chain(square(), ewma(decay, initial=initial_scale), *debias),
        chain(ewma(decay), *debias, square()),
    )
    inner = ratio(identity(), chain(variance, _root(eps, eps_in_sqrt)))
    arguments = {
        "decay": ":decay",
        "eps": _eps_field(eps_in_sqrt),
        "initial_scale": "inner.second.transforms.0.first:initial",
    }
    if bias_correction:
        return name_arguments(
            composite(
                inner,
                ScaleByRStdDevWithCountState,
                count=("1.0.0.2.count", "1.0.1.1.count"),
                mu="1.0.1.0.mean",
                nu="1.0.0.1.mean",
            ),
            **arguments,
        )
    return name_arguments(composite(inner, ScaleByRStdDevState, mu="1.0.1.0.mean", nu="1.0.0.1.mean"), **arguments)


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> Transform:
    """Adadelta's scaling (Zeiler, 2012; seed 002 eqs. 12–15):

    s ← ρs + (1−ρ)g²;  g' = √(Δ + ε) / √(s + ε) · g;  Δ ← ρΔ + (1−ρ)g'²,

    with ρ = ``rho``, ε = ``eps`` and s, Δ from 0.

    Args:
      rho: ρ in [0, 1), the decay of both averages.
      eps: ε ≥ 0 inside both roots.

    Returns:
      ``chain(scale_by_rms(rho, eps), scale_by_update_rms(rho, eps))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_adadelta(rho=0.5, eps=1.0)
      >>> g = jnp.array([4.0, -4.0])
      >>> [round(float(x), 4) for x in tx.update(g, tx.init(g))[0]]  # √(0 + 1)/√(0.5·16 + 1)·g
      [1.3333, -1.3333]
    """
    check_all("scale_by_adadelta", UNIT, rho=rho)
    check_all("scale_by_adadelta", NONNEGATIVE, eps=eps)
    mean_square = ratio(identity(), chain(square(), ewma(rho), root(eps_root=eps)))  # scale_by_rms(rho, eps)
    inner = chain(mean_square, scale_by_update_rms(rho, eps))
    tx = composite(inner, ScaleByAdaDeltaState, e_g="0.1.1.mean", e_x="1.mean_square")
    return name_arguments(tx, rho=":decay", eps=(":eps_root", "inner.transforms.1:eps"))


def _first_moment(b1: Any, mu_dtype: Any, nesterov: bool) -> Transform:
    if not nesterov:
        return chain(ewma(b1, dtype=mu_dtype), _bias_correction(b1))
    # NAdam (Dozat, 2016): b1 · m_t / (1 − b1^(t+1)) + (1 − b1) · g_t / (1 − b1^t).
    return interpolate(chain(ewma(b1, dtype=mu_dtype), _bias_correction(b1, step_offset=1)), _bias_correction(b1), b1)


def scale_by_adam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    *,
    nu_dtype: Any = None,
    nesterov: bool = False,
) -> Transform:
    """Adam's direction (Kingma & Ba, 2015; seed 000 §5.1.7): m̂ / (√(v̂ + eps_root) + eps).

    m ← b1·m + (1−b1)g, v ← b2·v + (1−b2)g², m̂ = m/(1−b1^t), v̂ = v/(1−b2^t). The seeds write
    √(v̂ + ε) (ε inside the root): ``eps=0, eps_root=ε``. ``nesterov=True`` is NAdam.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: ε ≥ 0 added to the denominator outside the root.
      eps_root: ε ≥ 0 added inside the root.
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      nu_dtype: keyword-only; dtype of v (defaults to each parameter's dtype).
      nesterov: keyword-only; use NAdam's look-ahead m̂ (Dozat, 2016).

    Returns:
      ``ratio(m̂ branch, chain(square(), ewma(b2), bias_correction(b2), root(eps, eps_root)))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_adam()
      >>> g = jnp.array([0.5, -2.0])
      >>> [round(float(x), 4) for x in tx.update(g, tx.init(g))[0]]  # the first direction is sign(g)
      [1.0, -1.0]
    """
    check_all("scale_by_adam", UNIT, b1=b1, b2=b2)
    nesterov = check_flag("scale_by_adam", "nesterov", nesterov)
    check_all("scale_by_adam", NONNEGATIVE, eps=eps, eps_root=eps_root)
    _check_dtypes("scale_by_adam", mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    inner = ratio(
        _first_moment(b1, mu_dtype, nesterov),
        chain(square(), ewma(b2, dtype=nu_dtype), _bias_correction(b2), root(eps=eps, eps_root=eps_root)),
    )
    first = ("0.0.0", ("0.0.1.count", "0.1.count")) if nesterov else ("0.0", ("0.1.count",))
    tx = composite(inner, ScaleByAdamState, count=(*first[1], "1.2.count"), mu=f"{first[0]}.mean", nu="1.1.mean")
    return name_arguments(tx, b1=("inner.first:decay", "inner.first:weight"), b2="inner.second:decay")


def scale_by_amsgrad(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
) -> Transform:
    """AMSGrad (Reddi et al., 2018): Adam with v̂ replaced by its running maximum.

    m ← b1·m + (1−b1)g, v ← b2·v + (1−b2)g², v_max ← max(v_max, v̂), u = m̂ / (√(v_max + eps_root) + eps).

    With ``bias_correction_nu=True`` (optax) the maximum is over bias-corrected v̂_t; with False it is
    over the raw v_t as in the paper and seed 003 (set ``bias_correction_mu=False`` too for the paper's
    uncorrected m).

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: ε ≥ 0 added to the denominator outside the root.
      eps_root: ε ≥ 0 added inside the root.
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      bias_correction_mu: divide m by 1 − b1^t.
      bias_correction_nu: divide v by 1 − b2^t before the maximum.
      nu_dtype: keyword-only; dtype of v (defaults to each parameter's dtype).

    Returns:
      ``ratio(m̂ branch, chain(square(), ewma(b2), bias_correction(b2), running_max(), root(eps, eps_root)))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_amsgrad(b1=0.0, b2=0.5, eps=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> for g in ([1.0, 1.0], [0.5, 2.0]):
      ...     u, state = tx.update(jnp.array(g), state)
      ...     print([round(float(x), 4) for x in u])  # the first v̂ falls from 1 to 0.5; the maximum keeps 1
      [1.0, 1.0]
      [0.5, 1.1547]
    """
    check_all("scale_by_amsgrad", UNIT, b1=b1, b2=b2)
    bias_correction_mu = check_flag("scale_by_amsgrad", "bias_correction_mu", bias_correction_mu)
    bias_correction_nu = check_flag("scale_by_amsgrad", "bias_correction_nu", bias_correction_nu)
    check_all("scale_by_amsgrad", NONNEGATIVE, eps=eps, eps_root=eps_root)
    _check_dtypes("scale_by_amsgrad", mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    mu_debias = [_bias_correction(b1)] if bias_correction_mu else []
    nu_debias = [_bias_correction(b2)] if bias_correction_nu else []
    inner = ratio(
        chain(ewma(b1, dtype=mu_dtype), *mu_debias),
        chain(square(), ewma(b2, dtype=nu_dtype), *nu_debias, running_max(), root(eps=eps, eps_root=eps_root)),
    )
    counts = ("0.1.count",) * bool(mu_debias) + ("1.2.count",) * bool(nu_debias)
    b2_fields = ("inner.second.transforms.1:decay", "inner.second.transforms.2:decay")[: 1 + len(nu_debias)]
    tx = composite(
        inner,
        ScaleByAmsgradState,
        count=counts or OWN_COUNT,
        mu="0.0.mean",
        nu="1.1.mean",
        nu_max=f"1.{2 + len(nu_debias)}.maximum",
    )
    return name_arguments(tx, b1="inner.first:decay", b2=b2_fields)


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> Transform:
    """AdaMax (Kingma & Ba, 2015, §7.1): m̂ / u with u ← max(b2·u, |g| + eps).

    m ← b1·m + (1 − b1)·g from 0, m̂ = m/(1 − b1^t); u, the exponentially weighted infinity norm, from 0.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the infinity norm u, in [0, 1).
      eps: ε ≥ 0 added to |g|.

    Returns:
      ``ratio(chain(ewma(b1), bias_correction(b1)), chain(absolute(), shift(eps), running_max(b2)))``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_adamax(b2=0.5, eps=0.0)
      >>> state = tx.init(jnp.zeros(2))
      >>> for g in ([2.0, -2.0], [0.5, -2.0]):
      ...     u, state = tx.update(jnp.array(g), state)
      ...     print([round(float(x), 4) for x in u])  # u₂ = max(0.5·2, 0.5) = 1 for the first coordinate
      [1.0, -1.0]
      [1.2105, -1.0]
    """
    check_all("scale_by_adamax", UNIT, b1=b1, b2=b2)
    check_all("scale_by_adamax", NONNEGATIVE, eps=eps)
    inner = ratio(chain(ewma(b1), _bias_correction(b1)), chain(absolute(), shift(eps), running_max(b2)))
    tx = composite(inner, ScaleByAdamState, count="0.1.count", mu="0.0.mean", nu="1.2.maximum")
    return name_arguments(tx, b1="inner.first:decay", b2="inner.second:decay", eps="inner.second:offset")


def scale_by_lion(
    b1: Any = 0.9,
    b2: Any = 0.99,
    mu_dtype: Any = None,
    *,
    mode: str = "hard",
    smooth_beta: Any = 1.0,
) -> Transform:
    """Lion's direction (Chen et al., 2023): sign(b1·m + (1−b1)·g), then m ← b2·m + (1−b2)·g.

    ``mode="smooth"`` replaces sign(x) by tanh(smooth_beta·x); ``mode="refined"`` by x clipped to
    [−1, 1] (linear near 0, the sign beyond), as optax 0.2.8.

    Args:
      b1: weight of the momentum in the direction, in [0, 1).
      b2: decay of the momentum m (from 0), in [0, 1).
      mu_dtype: dtype of m (defaults to each parameter's dtype).
      mode: keyword-only; ``"hard"`` (sign), ``"smooth"`` (tanh) or ``"refined"`` (clip to ±1).
      smooth_beta: keyword-only; the slope of the tanh of ``mode="smooth"``.

    Returns:
      ``chain(interpolated_momentum(b1, b2, mu_dtype), sign())`` (for the default mode).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_lion()
      >>> g = jnp.array([0.5, -2.0])
      >>> u, state = tx.update(g, tx.init(g))
      >>> u, [round(float(m), 4) for m in state.mu]  # sign(0.1·g); the momentum is now 0.01·g
      (Array([ 1., -1.], dtype=float32), [0.005, -0.02])
    """
    _check_dtypes("scale_by_lion", mu_dtype=mu_dtype)
    check_number("scale_by_lion", "smooth_beta", smooth_beta)
    modes: dict[str, list[Transform]] = {
        "hard": [sign()],
        "smooth": [scale(smooth_beta), tanh()],
        "refined": [clip(1.0)],
    }
    check_choice("scale_by_lion", "mode", mode, modes)
    inner = chain(interpolated_momentum(b1, b2, mu_dtype), *modes[mode])
    return name_arguments(
        composite(inner, ScaleByLionState, count=OWN_COUNT, mu="0.mean"), smooth_beta="inner.transforms.1:step_size"
    )
