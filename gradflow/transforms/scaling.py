"""The adaptive scalings of the seeds, each a composition of primitives (``scale_by_<algo>``).

Nothing here does arithmetic of its own: every function returns a ``chain`` or a branch combinator of
the primitives in :mod:`gradflow.transforms.elementwise`, :mod:`~gradflow.transforms.moments` and
:mod:`~gradflow.transforms.combine`, so each rule can be read, and changed, as a formula.
"""

from __future__ import annotations

from typing import Any

from gradflow.core import Transform, chain, identity
from gradflow.transforms.combine import difference, interpolate, ratio
from gradflow.transforms.elementwise import absolute, root, shift, sign, square
from gradflow.transforms.moments import (
    accumulate,
    ewma,
    interpolated_momentum,
    running_max,
    scale_by_update_rms,
)
from gradflow.transforms.moments import bias_correction as _bias_correction
from gradflow.validation import check_nonnegative, check_range

__all__ = [
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_lion",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
]


def _check_unit(owner: str, **values: Any) -> None:
    for name, value in values.items():
        check_range(owner, name, value, 0.0, 1.0)


def _check_eps(owner: str, **values: Any) -> None:
    for name, value in values.items():
        check_nonnegative(owner, name, value)


def _root(eps: Any, eps_in_sqrt: bool) -> Transform:
    return root(eps_root=eps) if eps_in_sqrt else root(eps=eps)


def scale_by_rss(initial_accumulator_value: Any = 0.1, eps: Any = 1e-7) -> Transform:
    """AdaGrad's scaling (Duchi et al., 2011): s ← s + g², u ← g / √(s + eps).

    The seeds' textbook form (seed 000 §5.1.4, seed 002 eq. 9) starts from s = 0 with ε = 1e-10;
    the defaults here are optax's (s₀ = 0.1, ε = 1e-7).
    """
    _check_eps("scale_by_rss", initial_accumulator_value=initial_accumulator_value, eps=eps)
    return ratio(identity(), chain(square(), accumulate(initial_accumulator_value), root(eps_root=eps)))


def scale_by_rms(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Transform:
    """RMSprop's scaling (Hinton, 2012; seed 000 §5.1.5): s ← γs + (1−γ)g², u ← g / √(s + eps).

    ``eps_in_sqrt=False`` gives g / (√s + eps); ``bias_correction=True`` divides s by 1 − γ^t.
    """
    _check_unit("scale_by_rms", decay=decay)
    _check_eps("scale_by_rms", eps=eps, initial_scale=initial_scale)
    debias = [_bias_correction(decay)] if bias_correction else []
    return ratio(identity(), chain(square(), ewma(decay, initial=initial_scale), *debias, _root(eps, eps_in_sqrt)))


def scale_by_stddev(
    decay: Any = 0.9,
    eps: Any = 1e-8,
    initial_scale: Any = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Transform:
    """Centered RMSprop (Graves, 2013): u ← g / √(E[g²] − E[g]² + eps), both averages with rate γ."""
    _check_unit("scale_by_stddev", decay=decay)
    _check_eps("scale_by_stddev", eps=eps, initial_scale=initial_scale)
    debias = [_bias_correction(decay)] if bias_correction else []
    variance = difference(
        chain(square(), ewma(decay, initial=initial_scale), *debias),
        chain(ewma(decay), *debias, square()),
    )
    return ratio(identity(), chain(variance, _root(eps, eps_in_sqrt)))


def scale_by_adadelta(rho: Any = 0.9, eps: Any = 1e-6) -> Transform:
    """Adadelta's scaling (Zeiler, 2012; seed 002 eqs. 12–15):

    s ← ρs + (1−ρ)g²;  g' = √(Δ + ε) / √(s + ε) · g;  Δ ← ρΔ + (1−ρ)g'².
    """
    _check_unit("scale_by_adadelta", rho=rho)
    _check_eps("scale_by_adadelta", eps=eps)
    return chain(scale_by_rms(rho, eps), scale_by_update_rms(rho, eps))


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
    """
    _check_unit("scale_by_adam", b1=b1, b2=b2)
    _check_eps("scale_by_adam", eps=eps, eps_root=eps_root)
    return ratio(
        _first_moment(b1, mu_dtype, nesterov),
        chain(square(), ewma(b2, dtype=nu_dtype), _bias_correction(b2), root(eps=eps, eps_root=eps_root)),
    )


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

    With ``bias_correction_nu=True`` (optax) the maximum is over bias-corrected v̂_t; with False it is
    over the raw v_t as in the paper and seed 003 (set ``bias_correction_mu=False`` too for the paper's
    uncorrected m).
    """
    _check_unit("scale_by_amsgrad", b1=b1, b2=b2)
    _check_eps("scale_by_amsgrad", eps=eps, eps_root=eps_root)
    mu_debias = [_bias_correction(b1)] if bias_correction_mu else []
    nu_debias = [_bias_correction(b2)] if bias_correction_nu else []
    return ratio(
        chain(ewma(b1, dtype=mu_dtype), *mu_debias),
        chain(square(), ewma(b2, dtype=nu_dtype), *nu_debias, running_max(), root(eps=eps, eps_root=eps_root)),
    )


def scale_by_adamax(b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8) -> Transform:
    """AdaMax (Kingma & Ba, 2015, §7.1): m̂ / u with u ← max(b2·u, |g| + eps)."""
    _check_unit("scale_by_adamax", b1=b1, b2=b2)
    _check_eps("scale_by_adamax", eps=eps)
    return ratio(chain(ewma(b1), _bias_correction(b1)), chain(absolute(), shift(eps), running_max(b2)))


def scale_by_lion(b1: Any = 0.9, b2: Any = 0.99, mu_dtype: Any = None) -> Transform:
    """Lion's direction (Chen et al., 2023): sign(b1·m + (1−b1)·g), then m ← b2·m + (1−b2)·g."""
    return chain(interpolated_momentum(b1, b2, mu_dtype), sign())
