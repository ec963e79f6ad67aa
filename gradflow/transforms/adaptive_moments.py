"""Second-moment rules beyond Adam's EWMA, and the adaptive scalings built from them.

Each new rule is one small primitive that takes the place of a piece of Adam's denominator branch
``chain(square(), ewma(b2), bias_correction(b2), root(eps))``; the ``scale_by_<algo>`` functions below
are compositions with :func:`~gradflow.transforms.combine.ratio` and contain no arithmetic of their own:

- Yogi (Zaheer et al., 2018): :func:`yogi_moment` replaces ``ewma`` (an additive, sign-controlled update).
- AdaBelief (Zhuang et al., 2020): the second moment is an EWMA of the squared prediction error
  (g − m)², where ``difference(identity(), ewma(b1))`` is g − m; :func:`ewma_with_offset` adds
  ``eps_root`` inside the state at every step, as the paper does.
- RAdam (Liu et al., 2020): :func:`rectification` follows ``root`` and turns the denominator into
  (√v̂ + ε)/r_t once the variance of the adaptive rate is tractable, or 1 (momentum SGD) before.
- NovoGrad (Ginsburg et al., 2019): :func:`layer_second_moment` keeps one scalar per leaf (per layer),
  the EWMA of the squared norm of that leaf's gradient, started at its first value.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import (
    NONNEGATIVE,
    UNIT,
    Interval,
    Transform,
    chain,
    hyperparameter,
    identity,
    name_arguments,
    pytree_dataclass,
)
from gradflow.layout import composite
from gradflow.transforms.combine import difference, interpolate, ratio
from gradflow.transforms.elementwise import root, square
from gradflow.transforms.moments import EWMAState, bias_correction, canonical_dtype, ewma
from gradflow.transforms.regularization import add_decayed_weights
from gradflow.transforms.scaling import ScaleByAdamState
from gradflow.validation import (
    check_all,
    check_allowed,
    check_flag,
    check_hyperparameters,
)

__all__ = [
    "EWMAWithOffset",
    "LayerSecondMoment",
    "LayerSecondMomentState",
    "Rectification",
    "RectificationState",
    "ScaleByBeliefState",
    "ScaleByNovogradState",
    "YogiMoment",
    "ewma_with_offset",
    "layer_second_moment",
    "rectification",
    "scale_by_belief",
    "scale_by_novograd",
    "scale_by_radam",
    "scale_by_yogi",
    "yogi_moment",
]


THRESHOLD = Interval(4.0, math.inf)
"""RAdam's threshold on ρ_t: r_t is the root of (ρ_t − 4)(ρ_t − 2)/ρ_t·(positive), negative for 2 < ρ_t < 4, so a
threshold below 4 would let a NaN step through."""


# --- primitives -----------------------------------------------------------------------------------


@pytree_dataclass
class YogiMoment(Transform):
    """Yogi's additive second moment: v ← v − (1 − decay)·sign(v − u)·u, output v.

    Fed with u = g², v moves towards g² by at most (1 − decay)·g² per step, whatever its distance
    (Adam's EWMA moves by (1 − decay)·(g² − v)), so the effective learning rate cannot grow quickly.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.yogi_moment(0.5, initial=1.0)
      >>> _, state = tx.update(jnp.array([3.0, 0.0]), tx.init(jnp.zeros(2)))
      >>> state.mean  # v = 1 + 0.5·3 where u > v; unchanged where u = 0
      Array([2.5, 1. ], dtype=float32)
    """

    decay: Any = hyperparameter(UNIT)
    initial: Any = hyperparameter(NONNEGATIVE, default=1e-6)

    def init(self, params: Any) -> Any:
        return EWMAState(tree.full_like(params, self.initial))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        rate = 1 - self.decay  # in double for a Python number, as optax (see gradflow.transforms.moments.EWMA)
        mean = tree.map(
            lambda u, v: v - rate * jnp.sign(v - u) * u, updates, state.mean, names=("updates", "state.mean")
        )
        return tree.cast_like(mean, updates), EWMAState(tree.cast_like(mean, state.mean))


@pytree_dataclass
class EWMAWithOffset(Transform):
    """A moving average that also adds ``offset`` inside its state: m ← decay·m + (1 − decay)·u + offset.

    AdaBelief's s_t (Zhuang et al., 2020, Algorithm 2) with offset = ε; ``offset=0`` is :func:`ewma`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.ewma_with_offset(0.5, offset=1.0)
      >>> state = tx.init(jnp.zeros(1))
      >>> for _ in range(2):
      ...     m, state = tx.update(jnp.array([4.0]), state)
      >>> m  # 3, then 0.5·3 + 0.5·4 + 1
      Array([4.5], dtype=float32)
    """

    decay: Any = hyperparameter(UNIT)
    offset: Any = hyperparameter(NONNEGATIVE, default=0.0)

    def init(self, params: Any) -> Any:
        return EWMAState(tree.zeros_like(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        decay = self.decay  # 1 − decay in double for a Python number, as optax
        mean = tree.map(
            lambda u, m: decay * m + (1 - decay) * u + self.offset, updates, state.mean, names=("updates", "state.mean")
        )
        return tree.cast_like(mean, updates), EWMAState(tree.cast_like(mean, state.mean))


class RectificationState(NamedTuple):
    """The saturating int32 step counter t.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.rectification(0.999).init(jnp.zeros(2))
      RectificationState(count=Array(0, dtype=int32))
    """

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count


@pytree_dataclass
class Rectification(Transform):
    """RAdam's rectification of a denominator D = √v̂ + ε (Liu et al., 2020, Algorithm 2).

    With ρ∞ = 2/(1 − b2) − 1 and ρ_t = ρ∞ − 2t·b2^t/(1 − b2^t) (t counts the calls from 1):

    u ← u / r_t  where ρ_t ≥ threshold,  r_t = √((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)),
    u ← 1        otherwise (the step is then the bias-corrected momentum alone).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.rectification(0.999)
      >>> isinstance(tx, gf.Rectification), tx.threshold
      (True, 5.0)
    """

    b2: Any = hyperparameter(UNIT)
    threshold: Any = hyperparameter(THRESHOLD, default=5.0, outside="nan_updates")

    def init(self, params: Any) -> Any:
        return RectificationState(jnp.zeros([], jnp.int32))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        count = tree.saturating_increment(state.count)
        b2 = jnp.asarray(self.b2)
        dtype = jnp.promote_types(b2.dtype, jnp.float32)
        b2 = b2.astype(dtype)
        t = count.astype(dtype)
        rho_inf = jnp.asarray(2 / (1 - self.b2) - 1).astype(dtype)  # in double for a Python number, as optax
        b2_t = b2**t
        rho = rho_inf - 2 * t * b2_t / (1 - b2_t)
        tractable = rho >= jnp.asarray(self.threshold)
        # Where the variance is intractable r_t is the root of a negative number: both wheres keep the NaN
        # out of the forward pass and out of gradients (jax.grad through a hyperparameter).
        squared = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        r = jnp.where(tractable, jnp.sqrt(jnp.where(tractable, squared, 1)), 1)
        out = tree.map(lambda u: jnp.where(tractable, u / r.astype(u.dtype), jnp.ones_like(u)), updates)
        return out, RectificationState(count)


class LayerSecondMomentState(NamedTuple):
    """One scalar per leaf (the layer's second moment) and the saturating int32 step counter.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.layer_second_moment(0.5).init({"w": jnp.zeros(2)})
      LayerSecondMomentState(count=Array(0, dtype=int32), moment={'w': Array(0., dtype=float32)})
    """

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count
    moment: Any


def _squared_norm(u: jax.Array) -> jax.Array:
    """‖u‖², summed in at least float32 (float16 squares overflow at 256)."""
    u = jnp.asarray(u)
    u = u.astype(jnp.promote_types(u.dtype, jnp.float32))
    return jnp.sum(jnp.real(u * jnp.conj(u))) if jnp.iscomplexobj(u) else jnp.sum(jnp.square(u))


@pytree_dataclass
class LayerSecondMoment(Transform):
    """NovoGrad's layer-wise second moment: one scalar v_l per leaf l, broadcast to the leaf's shape.

    v_l ← ‖u_l‖² at the first step, then v_l ← decay·v_l + (1 − decay)·‖u_l‖² (Ginsburg et al., 2019).
    The state holds only the scalars; the output is v_l repeated over the leaf, so that it can be the
    denominator branch of :func:`~gradflow.transforms.combine.ratio`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.layer_second_moment(0.5)
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> for g in ([3.0, 4.0], [1.0, 0.0]):
      ...     v, state = tx.update({"w": jnp.array(g)}, state)
      >>> v["w"], state.moment["w"]  # 0.5·25 + 0.5·1, kept as one scalar per leaf
      (Array([13., 13.], dtype=float32), Array(13., dtype=float32))
    """

    decay: Any = hyperparameter(UNIT)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        moment = jax.tree.map(lambda p: jnp.zeros([], jnp.result_type(p)), params)
        return LayerSecondMomentState(jnp.zeros([], jnp.int32), moment)

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        structure: Any = jax.tree.structure(updates)  # a jaxlib PyTreeDef, which has no type stubs
        if structure != jax.tree.structure(state.moment):
            raise tree.TreeMismatchError(tree.describe_mismatch(updates, state.moment, "updates", "state.moment"))
        decay = self.decay  # 1 − decay in double for a Python number, as optax
        first = state.count == 0
        moment = jax.tree.map(
            lambda u, v: jnp.where(first, _squared_norm(u), decay * v + (1 - decay) * _squared_norm(u)).astype(v.dtype),
            updates,
            state.moment,
        )
        out = jax.tree.map(lambda u, v: jnp.broadcast_to(v, jnp.shape(u)).astype(jnp.result_type(u)), updates, moment)
        return out, LayerSecondMomentState(tree.saturating_increment(state.count), moment)


def yogi_moment(decay: Any = 0.999, initial: Any = 1e-6) -> YogiMoment:
    """Yogi's second moment v ← v − (1 − decay)·sign(v − u)·u, starting from ``initial``.

    Chain it after :func:`~gradflow.transforms.elementwise.square` in place of ``ewma``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.transforms.adaptive_moments import yogi_moment
      >>> tx = gf.chain(gf.square(), yogi_moment(0.5, initial=1.0))
      >>> g = jnp.array([3.0, 0.0])
      >>> tx.update(g, tx.init(g))[0]  # 1 + 0.5·9 where g² > v; 1 − 0 where g = 0
      Array([5.5, 1. ], dtype=float32)
    """
    return check_hyperparameters(YogiMoment(decay, initial), "yogi_moment")


def ewma_with_offset(decay: Any, offset: Any = 0.0) -> EWMAWithOffset:
    """m ← decay·m + (1 − decay)·u + offset from m = 0 (AdaBelief's s_t with offset = ε).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import ewma_with_offset
      >>> tx = ewma_with_offset(0.5, offset=1.0)
      >>> tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))[0]
      Array([3.], dtype=float32)
    """
    return check_hyperparameters(EWMAWithOffset(decay, offset), "ewma_with_offset")


def rectification(b2: Any = 0.999, threshold: Any = 5.0) -> Rectification:
    """RAdam's rectification of the denominator √v̂ + ε: divide by r_t once ρ_t ≥ threshold, else 1.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import rectification
      >>> tx = rectification(0.999)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]  # ρ_1 = 1 < 5: no adaptive step yet
      Array([1.], dtype=float32)
    """
    return check_hyperparameters(Rectification(b2, threshold), "rectification")


def layer_second_moment(decay: Any = 0.25) -> LayerSecondMoment:
    """NovoGrad's per-leaf second moment of the squared gradient norm, broadcast to each leaf.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import layer_second_moment
      >>> tx = layer_second_moment(0.5)
      >>> g = {"w": jnp.array([3.0, 4.0])}
      >>> tx.update(g, tx.init(g))[0]["w"]  # ‖g‖² = 25 at the first step
      Array([25., 25.], dtype=float32)
    """
    return check_hyperparameters(LayerSecondMoment(decay), "layer_second_moment")


# --- scalings -------------------------------------------------------------------------------------
# Each is a Composite presenting its chain's state in optax's layout: ScaleByAdamState for Yogi and
# RAdam, as optax does, and the two states below.


class ScaleByBeliefState(NamedTuple):
    """AdaBelief's step count, first moment ``mu`` and belief ``nu`` (EWMA of (g − m)²).

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_belief().init(jnp.zeros(1))._fields
    ('count', 'mu', 'nu')
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    mu: Any
    nu: Any


class ScaleByNovogradState(NamedTuple):
    """NovoGrad's step count, momentum ``mu`` and per-leaf second moment ``nu``.

    >>> import jax.numpy as jnp, gradflow as gf
    >>> gf.scale_by_novograd().init({"w": jnp.zeros(3)}).nu
    {'w': Array(0., dtype=float32)}
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    mu: Any
    nu: Any


def _first_moment_paths(nesterov: bool) -> tuple[str, tuple[str, ...]]:
    """Where :func:`_first_moment` keeps m and its counters, inside the first branch of a ratio."""
    return ("0.0.0.mean", ("0.0.1.count", "0.1.count")) if nesterov else ("0.0.mean", ("0.1.count",))


_B1 = ("inner.first:decay", "inner.first:weight")
"""The fields of a composite that :func:`_first_moment` sets to b1 (its decays and NAdam's interpolation)."""


def _first_moment(b1: Any, nesterov: bool, initial: Any = 0.0, mu_dtype: Any = None) -> Transform:
    """m̂ = m / (1 − b1^t); with ``nesterov``, NAdam's b1·m/(1 − b1^(t+1)) + (1 − b1)·g/(1 − b1^t)."""
    average = ewma(b1, initial=initial, dtype=mu_dtype)
    if not nesterov:
        return chain(average, bias_correction(b1))
    return interpolate(chain(average, bias_correction(b1, step_offset=1)), bias_correction(b1), b1)


def scale_by_yogi(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-3,
    eps_root: Any = 0.0,
    initial_accumulator_value: Any = 1e-6,
) -> Transform:
    """Yogi's direction (Zaheer et al., 2018, "Adaptive Methods for Nonconvex Optimization").

    m ← b1·m + (1 − b1)·g,  v ← v − (1 − b2)·sign(v − g²)·g²,  both from ``initial_accumulator_value``;
    u = m̂ / (√(v̂ + eps_root) + eps) with m̂ = m/(1 − b1^t), v̂ = v/(1 − b2^t).

    The debiasing and the starting value of both moments are optax's; the paper's Algorithm 2 has no
    debiasing, which is ``ratio(ewma(b1), chain(square(), yogi_moment(b2), root(eps=eps)))``.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: rate of the second moment, in [0, 1).
      eps: added to the denominator outside the root.
      eps_root: added inside the root.
      initial_accumulator_value: starting value of m and v (≥ 0).

    Returns:
      The composition ``ratio(m̂ branch, v̂ branch)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import scale_by_yogi
      >>> tx = scale_by_yogi(eps=0.0, initial_accumulator_value=0.0)
      >>> g = jnp.array([0.5, -2.0])
      >>> tx.update(g, tx.init(g))[0].round(4)  # from zero moments the first direction is sign(g)
      Array([ 1., -1.], dtype=float32)
    """
    owner = "scale_by_yogi"
    check_all(owner, UNIT, b1=b1, b2=b2)
    check_all(owner, NONNEGATIVE, eps=eps, eps_root=eps_root, initial_accumulator_value=initial_accumulator_value)
    inner = ratio(
        _first_moment(b1, False, initial=initial_accumulator_value),
        chain(square(), YogiMoment(b2, initial_accumulator_value), bias_correction(b2), root(eps, eps_root)),
    )
    tx = composite(inner, ScaleByAdamState, count=("0.1.count", "1.2.count"), mu="0.0.mean", nu="1.1.mean")
    return name_arguments(tx, b1="inner.first:decay", b2="inner.second:decay", initial_accumulator_value=":initial")


def scale_by_radam(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    threshold: Any = 5.0,
    *,
    nesterov: bool = False,
) -> Transform:
    """Rectified Adam's direction (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and Beyond").

    u = r_t·m̂ / (√(v̂ + eps_root) + eps) where ρ_t ≥ ``threshold``, else u = m̂ (see :class:`Rectification`
    for ρ_t and r_t); m̂, v̂ are Adam's bias-corrected moments. ``nesterov=True`` uses NAdam's m̂.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the denominator outside the root.
      eps_root: added inside the root.
      threshold: smallest ρ_t at which the adaptive step is used (5 as in the paper's code); at least 4,
        below which r_t is not real.
      nesterov: use the look-ahead first moment of NAdam.

    Returns:
      ``ratio(m̂, chain(square(), ewma(b2), bias_correction(b2), root(eps, eps_root), rectification(b2, threshold)))``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import scale_by_radam
      >>> tx = scale_by_radam()
      >>> g = jnp.array([0.5, -2.0])
      >>> tx.update(g, tx.init(g))[0].round(4)  # the first steps are momentum SGD: m̂ = g
      Array([ 0.5, -2. ], dtype=float32)
    """
    owner = "scale_by_radam"
    nesterov = check_flag(owner, "nesterov", nesterov)
    check_all(owner, UNIT, b1=b1, b2=b2)
    check_all(owner, NONNEGATIVE, eps=eps, eps_root=eps_root)
    check_allowed(owner, "threshold", threshold, THRESHOLD)
    inner = ratio(
        _first_moment(b1, nesterov),
        chain(square(), ewma(b2), bias_correction(b2), root(eps, eps_root), Rectification(b2, threshold)),
    )
    mu, counts = _first_moment_paths(nesterov)
    tx = composite(inner, ScaleByAdamState, count=(*counts, "1.2.count", "1.4.count"), mu=mu, nu="1.1.mean")
    return name_arguments(tx, b1=_B1, b2=("inner.second:decay", "inner.second:b2"))


def scale_by_belief(
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-16,
    eps_root: Any = 1e-16,
    *,
    nesterov: bool = False,
) -> Transform:
    """AdaBelief's direction (Zhuang et al., 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in
    Observed Gradients").

    m ← b1·m + (1 − b1)·g,  s ← b2·s + (1 − b2)·(g − m)² + eps_root,
    u = m̂ / (√ŝ + eps) with m̂ = m/(1 − b1^t), ŝ = s/(1 − b2^t). ``nesterov=True`` uses NAdam's m̂.

    The denominator branch keeps its own copy of m (the prediction of g), so that either branch can
    be swapped independently.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief s, in [0, 1).
      eps: added to the denominator outside the root.
      eps_root: added to s at every step (inside the state, as in the paper).
      nesterov: use the look-ahead first moment of NAdam.

    Returns:
      ``ratio(m̂, chain(difference(identity(), ewma(b1)), square(), ewma_with_offset(b2, eps_root),
      bias_correction(b2), root(eps)))``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import scale_by_belief
      >>> tx = scale_by_belief()
      >>> g = jnp.array([0.5, -2.0])
      >>> tx.update(g, tx.init(g))[0].round(4)  # first step: m̂ = g, ŝ = (g − 0.1·g)², so g/(0.9·|g|)
      Array([ 1.1111, -1.1111], dtype=float32)
    """
    owner = "scale_by_belief"
    nesterov = check_flag(owner, "nesterov", nesterov)
    check_all(owner, UNIT, b1=b1, b2=b2)
    check_all(owner, NONNEGATIVE, eps=eps, eps_root=eps_root)
    prediction_error = difference(identity(), ewma(b1))
    inner = ratio(
        _first_moment(b1, nesterov),
        chain(prediction_error, square(), EWMAWithOffset(b2, eps_root), bias_correction(b2), root(eps)),
    )
    # The prediction error's own EWMA of g is the same m as the first moment's: both are rebuilt from mu.
    mu, counts = _first_moment_paths(nesterov)
    tx = composite(inner, ScaleByBeliefState, count=(*counts, "1.3.count"), mu=(mu, "1.0.1.mean"), nu="1.2.mean")
    return name_arguments(
        tx,
        b1=(*_B1, "inner.second.transforms.0:decay"),
        b2=("inner.second.transforms.2:decay", "inner.second.transforms.3:decay"),
        eps_root="inner.second:offset",
    )


def scale_by_novograd(
    b1: Any = 0.9,
    b2: Any = 0.25,
    eps: Any = 1e-8,
    eps_root: Any = 0.0,
    weight_decay: Any = 0.0,
    mu_dtype: Any = None,
) -> Transform:
    """NovoGrad's direction (Ginsburg et al., 2019, "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks").

    Per leaf (layer) l: v_l ← ‖g_l‖² at the first step, then v_l ← b2·v_l + (1 − b2)·‖g_l‖²;
    m_l ← b1·m_l + g_l/(√(v_l + eps_root) + eps) + weight_decay·θ_l (m from 0); u = m.

    Args:
      b1: momentum of m, in [0, 1).
      b2: decay of the layer-wise second moment, in [0, 1).
      eps: added to the denominator outside the root.
      eps_root: added inside the root.
      weight_decay: λ ≥ 0, added to the normalised gradient (a number or a schedule); needs ``params``.
      mu_dtype: dtype of m (defaults to each parameter's dtype).

    Returns:
      ``chain(ratio(identity(), chain(layer_second_moment(b2), root(eps, eps_root))),
      add_decayed_weights(weight_decay), ewma(b1, kind="momentum"))``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.adaptive_moments import scale_by_novograd
      >>> tx = scale_by_novograd(eps=0.0)
      >>> g = {"w": jnp.array([3.0, 4.0])}
      >>> tx.update(g, tx.init(g), g)[0]["w"]  # g / ‖g‖ at the first step
      Array([0.6, 0.8], dtype=float32)
    """
    owner = "scale_by_novograd"
    check_all(owner, UNIT, b1=b1, b2=b2)
    check_all(owner, NONNEGATIVE, eps=eps, eps_root=eps_root, weight_decay=weight_decay)
    inner = chain(
        ratio(identity(), chain(LayerSecondMoment(b2), root(eps, eps_root))),
        add_decayed_weights(weight_decay),
        ewma(b1, kind="momentum", dtype=canonical_dtype(mu_dtype, owner, "mu_dtype")),
    )
    tx = composite(inner, ScaleByNovogradState, count="0.1.0.count", mu="2.mean", nu="0.1.0.moment")
    return name_arguments(tx, b1="inner.transforms.2:decay", b2="inner.transforms.0:decay")
