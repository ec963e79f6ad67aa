"""Adafactor's factored second moment, and its relative step size (scaling by each parameter leaf's RMS).

Shazeer & Stern (2018), "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost". For a matrix
gradient G (n × m), instead of the EWMA V of G² (n·m numbers) Adafactor keeps the EWMAs of its row
means R (n numbers) and column means C (m numbers) and uses the rank-one estimate V̂ = R·Cᵀ / mean(R).
:func:`factored_ewma` is that statistic, a drop-in replacement for ``ewma`` in a denominator branch;
:func:`scale_by_factored_rms` is ``ratio(identity(), chain(square(), shift(eps), factored_ewma(ρ_t), root()))``
where the decay ρ_t = 1 − (t + 1)^(−decay_rate) is a :class:`AdafactorDecay` schedule. Adafactor's
update clipping is :func:`gradflow.transforms.clipping.clip_by_block_rms`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import (
    NONNEGATIVE,
    UNIT_CLOSED,
    EmptyState,
    Schedule,
    Transform,
    chain,
    hyperparameter,
    identity,
    name_arguments,
    pytree_dataclass,
    static_field,
)
from gradflow.layout import composite
from gradflow.transforms.combine import ratio
from gradflow.transforms.elementwise import root, shift, square
from gradflow.validation import check_flag, check_integer, check_nonnegative, check_range

__all__ = [
    "AdafactorDecay",
    "FactoredEWMA",
    "FactoredEWMAState",
    "FactoredState",
    "ScaleByParamBlockRMS",
    "decay_rate_pow",
    "factored_dims",
    "factored_ewma",
    "scale_by_factored_rms",
    "scale_by_param_block_rms",
]


def decay_rate_pow(step: Any, exponent: Any = 0.8) -> jax.Array:
    """Adafactor's second-moment decay at ``step`` (0 at the first update): 1 − (step + 1)^(−exponent).

    It is 0 at the first step (V̂ is the first g²) and tends to 1, so V̂ averages ever more steps.

    Example:
      >>> from gradflow.transforms.factored import decay_rate_pow
      >>> [round(float(decay_rate_pow(s, 0.5)), 4) for s in (0, 3)]
      [0.0, 0.5]
    """
    exponent = jnp.asarray(exponent)
    dtype = jnp.promote_types(exponent.dtype, jnp.float32)
    t = (jnp.asarray(step) + 1).astype(dtype)
    return 1 - t ** (-exponent.astype(dtype))


@pytree_dataclass
class AdafactorDecay(Schedule):
    """The schedule ρ(count) = decay_rate_fn(count − step_offset, decay_rate) (default :func:`decay_rate_pow`).

    ``decay_rate`` and ``step_offset`` are leaves; ``decay_rate_fn`` (a function of the step and the
    rate) is static. ``count − step_offset`` must be ≥ 0: set ``step_offset`` only for a state whose
    count is already past it.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> schedule = gf.AdafactorDecay(decay_rate=0.5)
      >>> [round(float(schedule(jnp.array(count))), 4) for count in (0, 3)]  # 1 − (count + 1)^(−0.5)
      [0.0, 0.5]
    """

    decay_rate: Any = 0.8
    step_offset: Any = 0
    decay_rate_fn: Callable[[Any, Any], Any] | None = static_field(default=None)

    def __call__(self, count: jax.Array) -> jax.Array:
        step = count - jnp.asarray(self.step_offset).astype(jnp.result_type(count))
        fn = decay_rate_pow if self.decay_rate_fn is None else self.decay_rate_fn
        return jnp.asarray(fn(step, self.decay_rate))


def factored_dims(shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """The axes ``(d1, d0)`` of the second-largest and largest sizes of ``shape``, or ``None`` if a leaf of
    this shape keeps a full second moment (rank < 2, or the second-largest size < min_dim_size_to_factor).

    Ties are broken by position (the later axis counts as larger).

    Example:
      >>> from gradflow.transforms.factored import factored_dims
      >>> factored_dims((3, 5, 4), True, 2), factored_dims((3, 5), True, 4), factored_dims((7,), True, 1)
      ((2, 1), None, None)
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape, kind="stable")
    d1, d0 = int(order[-2]), int(order[-1])
    if shape[d1] < min_dim_size_to_factor:
        return None
    return d1, d0


class FactoredEWMAState(NamedTuple):
    """The state of :class:`FactoredEWMA`: three trees shaped like the params.

    ``v_row``/``v_col`` hold the row/column statistics of factored leaves and ``v`` the full statistic of
    the others; an unused entry is a placeholder of shape (1,), as in optax.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.factored_ewma(0.5, min_dim_size_to_factor=2)
      >>> state = tx.init({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
      >>> state.v_row["w"].shape, state.v_col["w"].shape, state.v["w"].shape, state.v["b"].shape
      ((2,), (3,), (1,), (3,))
    """

    v_row: Any
    v_col: Any
    v: Any


class FactoredState(NamedTuple):
    """Adafactor's state in optax's layout: the step count and the :class:`FactoredEWMAState` fields.

    Example:
      >>> import jax.numpy as jnp
      >>> state = scale_by_factored_rms(min_dim_size_to_factor=2).init({"w": jnp.zeros((2, 3))})
      >>> int(state.count), state.v_row["w"].shape, state.v_col["w"].shape
      (0, (2,), (3,))
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name; mypy: it shadows tuple.count
    v_row: Any
    v_col: Any
    v: Any


def _empty(dtype: Any) -> jax.Array:
    return jnp.zeros((1,), dtype)


def _without_axis(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    return shape[:axis] + shape[axis + 1 :]


@pytree_dataclass
class FactoredEWMA(Transform):
    """The EWMA of the updates, factored over the two largest axes of each leaf where possible.

    For a leaf with factored axes (d1, d0) (see :func:`factored_dims`):
      R ← decay·R + (1 − decay)·mean_{d0}(u),  C ← decay·C + (1 − decay)·mean_{d1}(u),
      output V̂ = R·C / mean_{d1}(R)  (R broadcast along d0, C along d1);
    for any other leaf: V ← decay·V + (1 − decay)·u, output V. Both start at 0.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.factored_ewma(0.5)
      >>> isinstance(tx, gf.FactoredEWMA), tx.decay, tx.min_dim_size_to_factor
      (True, 0.5, 128)
    """

    decay: Any = hyperparameter(UNIT_CLOSED)
    factored: bool = static_field(default=True)
    min_dim_size_to_factor: int = static_field(default=128)

    def _dims(self, x: Any) -> tuple[int, int] | None:
        return factored_dims(tuple(jnp.shape(x)), self.factored, self.min_dim_size_to_factor)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)

        def leaf(p):
            shape, dtype = tuple(jnp.shape(p)), jnp.result_type(p)
            dims = self._dims(p)
            if dims is None:
                return _empty(dtype), _empty(dtype), jnp.zeros(shape, dtype)
            d1, d0 = dims
            return jnp.zeros(_without_axis(shape, d0), dtype), jnp.zeros(_without_axis(shape, d1), dtype), _empty(dtype)

        return _unzip(params, jax.tree.map(leaf, params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        decay = jnp.asarray(self.decay)

        def leaf(u, v_row, v_col, v):
            dims = self._dims(u)
            if dims is None:
                v = (decay * v + (1 - decay) * u).astype(v.dtype)
                return v.astype(u.dtype), v_row, v_col, v
            d1, d0 = dims
            v_row = (decay * v_row + (1 - decay) * jnp.mean(u, axis=d0)).astype(v_row.dtype)
            v_col = (decay * v_col + (1 - decay) * jnp.mean(u, axis=d1)).astype(v_col.dtype)
            row_axis = d1 - 1 if d1 > d0 else d1  # axis d1 of the leaf is this axis of v_row
            normalised_rows = v_row / jnp.mean(v_row, axis=row_axis, keepdims=True)
            estimate = jnp.expand_dims(normalised_rows, d0) * jnp.expand_dims(v_col, d1)
            return estimate.astype(u.dtype), v_row, v_col, v

        names = ("updates", "state.v_row", "state.v_col", "state.v")
        _check_structure(updates, state, names)
        results = jax.tree.map(leaf, updates, state.v_row, state.v_col, state.v)
        out = jax.tree.map(lambda _, r: r[0], updates, results)
        return out, _unzip(updates, results, first=1)


def _check_structure(updates: Any, state: FactoredEWMAState, names: tuple[str, ...]) -> None:
    structure: Any = jax.tree.structure(updates)  # a jaxlib PyTreeDef, which has no type stubs
    for name, other in zip(names[1:], state):
        if structure != jax.tree.structure(other):
            raise tree.TreeMismatchError(tree.describe_mismatch(updates, other, names[0], name))


def _unzip(like: Any, results: Any, first: int = 0) -> FactoredEWMAState:
    """Split a tree of per-leaf tuples (shaped like ``like``) into a :class:`FactoredEWMAState`."""
    pick = lambda i: jax.tree.map(lambda _, r: r[i], like, results)
    return FactoredEWMAState(pick(first), pick(first + 1), pick(first + 2))


@pytree_dataclass
class ScaleByParamBlockRMS(Transform):
    """Per leaf: u ← u · max(rms(θ), min_scale), rms(θ) = √mean(|θ|²) (Adafactor's relative step size).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_param_block_rms(min_scale=0.1)
      >>> tx.update(jnp.ones(2), tx.init(None), jnp.zeros(2))[0]  # rms(θ) = 0 is raised to min_scale
      Array([0.1, 0.1], dtype=float32)
    """

    min_scale: Any = hyperparameter(NONNEGATIVE, default=1e-3)

    def init(self, params: Any) -> Any:
        return EmptyState()

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError("scale_by_param_block_rms needs the parameters: call update(updates, state, params)")

        def leaf(u, p):
            p = jnp.asarray(p).astype(jnp.promote_types(jnp.result_type(p), jnp.float32))  # float16 squares overflow
            mean_square = jnp.mean(jnp.real(p * jnp.conj(p)))
            large = jnp.sqrt(mean_square) > self.min_scale
            rms = jnp.where(large, jnp.sqrt(jnp.where(large, mean_square, 1)), self.min_scale)
            return (u * rms).astype(u.dtype)

        return tree.map(leaf, updates, params, names=("updates", "params")), state


def factored_ewma(decay: Any, factored: bool = True, min_dim_size_to_factor: int = 128) -> FactoredEWMA:
    """The factored EWMA V̂ = R·C/mean(R) of the updates (see :class:`FactoredEWMA`).

    Args:
      decay: in [0, 1], a number or a schedule (Adafactor's :class:`AdafactorDecay`).
      factored: ``False`` keeps a full EWMA for every leaf.
      min_dim_size_to_factor: factor a leaf only if its second-largest axis has at least this size.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.factored import factored_ewma
      >>> tx = factored_ewma(0.0, min_dim_size_to_factor=2)
      >>> u = jnp.array([[1.0, 1.0, 4.0], [4.0, 4.0, 16.0]])  # rank one: rows ∝ (1, 4), columns ∝ (1, 1, 4)
      >>> tx.update(u, tx.init(u))[0]
      Array([[ 1.,  1.,  4.],
             [ 4.,  4., 16.]], dtype=float32)
    """
    check_range("factored_ewma", "decay", decay, 0.0, 1.0, high_open=False)
    return FactoredEWMA(
        decay, check_flag("factored_ewma", "factored", factored), _check_size("factored_ewma", min_dim_size_to_factor)
    )


def _check_size(owner: str, value: Any) -> int:
    return check_integer(owner, "min_dim_size_to_factor", value, low=1)


def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: Any = 0.8,
    step_offset: Any = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: Any = 1e-30,
    decay_rate_fn: Callable[[Any, Any], Any] = decay_rate_pow,
) -> Transform:
    """Adafactor's scaling by the factored RMS of the gradient (Shazeer & Stern, 2018, Algorithms 4–5).

    With ρ_t = decay_rate_fn(t − step_offset, decay_rate) (t = 0 at the first update; by default
    1 − (t + 1)^(−decay_rate)) and x = g² + epsilon:
      matrices (axes d1, d0 of :func:`factored_dims`): R ← ρ_t·R + (1 − ρ_t)·mean_{d0}(x),
      C ← ρ_t·C + (1 − ρ_t)·mean_{d1}(x), V̂ = R·C/mean(R);  other leaves: V̂ ← ρ_t·V̂ + (1 − ρ_t)·x;
      u = g / √V̂.

    Args:
      factored: whether to factor the second moment of matrices.
      decay_rate: the exponent of the default decay schedule (≥ 0).
      step_offset: subtracted from the step count before the schedule (≥ 0; for fine-tuning a state
        whose count is past it).
      min_dim_size_to_factor: factor only leaves whose second-largest axis has at least this size.
      epsilon: added to g² (ε₁ of the paper).
      decay_rate_fn: ``(step, decay_rate) -> ρ`` (static: any Python function of JAX arrays).

    Returns:
      ``ratio(identity(), chain(square(), shift(epsilon), factored_ewma(AdafactorDecay(...)), root()))``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.factored import scale_by_factored_rms
      >>> tx = scale_by_factored_rms(epsilon=0.0)
      >>> g = jnp.array([0.5, -2.0])
      >>> tx.update(g, tx.init(g))[0]  # ρ_0 = 0: the first direction is sign(g)
      Array([ 1., -1.], dtype=float32)
    """
    owner = "scale_by_factored_rms"
    check_nonnegative(owner, "decay_rate", decay_rate)
    check_nonnegative(owner, "step_offset", step_offset)
    check_nonnegative(owner, "epsilon", epsilon)
    if not callable(decay_rate_fn):
        raise TypeError(f"{owner}: decay_rate_fn must be a function (step, decay_rate) -> decay, got {decay_rate_fn!r}")
    schedule = AdafactorDecay(decay_rate, step_offset, None if decay_rate_fn is decay_rate_pow else decay_rate_fn)
    statistic = FactoredEWMA(
        schedule, check_flag("scale_by_factored_rms", "factored", factored), _check_size(owner, min_dim_size_to_factor)
    )
    inner = ratio(identity(), chain(square(), shift(epsilon), statistic, root()))
    moments = "1.2.inner"  # the ScheduleState of the scheduled decay holds the count and the moments
    tx = composite(
        inner, FactoredState, count="1.2.count", v_row=f"{moments}.v_row", v_col=f"{moments}.v_col", v=f"{moments}.v"
    )
    return name_arguments(tx, epsilon="inner.second:offset")


def scale_by_param_block_rms(min_scale: Any = 1e-3) -> ScaleByParamBlockRMS:
    """Multiply each leaf of the updates by max(rms(θ), min_scale) of its parameter (Adafactor's relative step).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.factored import scale_by_param_block_rms
      >>> tx = scale_by_param_block_rms()
      >>> params = {"w": jnp.array([3.0, 4.0]), "b": jnp.zeros(1)}
      >>> tx.update({"w": jnp.ones(2), "b": jnp.ones(1)}, tx.init(params), params)[0]["w"]  # rms = √12.5
      Array([3.535534, 3.535534], dtype=float32)
    """
    return ScaleByParamBlockRMS(check_nonnegative("scale_by_param_block_rms", "min_scale", min_scale))
