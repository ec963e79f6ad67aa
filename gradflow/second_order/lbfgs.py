"""L-BFGS: the limited-memory BFGS direction by the two-loop recursion, and the optimizer with a line search.

:func:`scale_by_lbfgs` keeps the curvature pairs (s, y) = (Δw, Δg) of the last ``memory_size`` steps in a
ring buffer of static size (per leaf, stacked along a leading axis of ``memory_size`` rows, optax's layout)
and maps the gradient g to H·g, H the L-BFGS approximation of the inverse Hessian (Nocedal & Wright, *Numerical
Optimization*, 2006, Algorithm 7.4). :func:`lbfgs` chains it with a sign flip (or a learning rate) and a
line search, as ``optax.lbfgs`` does.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Chain, Transform, chain, pytree_dataclass, static_field
from gradflow.second_order.linesearch import scalar_dtype, scale_by_zoom_linesearch, tree_vdot
from gradflow.transforms.elementwise import scale, scale_by_learning_rate
from gradflow.validation import check_flag, check_integer, check_learning_rate

__all__ = ["ScaleByLBFGS", "ScaleByLBFGSState", "lbfgs", "scale_by_lbfgs"]


class ScaleByLBFGSState(NamedTuple):
    """State of :func:`scale_by_lbfgs` (optax's fields, shapes and slot order).

    Attributes:
      count: int32 number of updates done (saturating).
      params: the parameters at the previous update (zeros at init).
      updates: the gradient at the previous update (zeros at init).
      diff_params_memory: the stored s = Δw, per leaf an array of shape ``(memory_size, *leaf.shape)``, a
        ring buffer: the update with ``count`` = k writes the pair of its step to row ``(k − 1) % memory_size``
        (row ``memory_size − 1`` at k = 0), overwriting the oldest, so row ``k % memory_size`` is the oldest.
      diff_updates_memory: the stored y = Δg, same layout.
      weights_memory: ρ = 1/⟨s, y⟩ of each row, shape ``(memory_size,)``; 0 marks an empty row (the first
        update's, or a pair of non-positive curvature, whose s and y rows are zeros).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.scale_by_lbfgs(memory_size=3).init(jnp.zeros(2))
      >>> state.diff_params_memory.shape, state.weights_memory.shape
      ((3, 2), (3,))
    """

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count
    params: Any
    updates: Any
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: jax.Array


def _safe_divide(numerator: jax.Array, denominator: jax.Array, where: jax.Array, otherwise: Any) -> jax.Array:
    """numerator / denominator where ``where`` holds, else ``otherwise``, with finite gradients in both branches."""
    return jnp.where(where, numerator / jnp.where(where, denominator, 1), otherwise)


def two_loop_recursion(
    updates: Any,
    diff_params_memory: Any,
    diff_updates_memory: Any,
    weights_memory: jax.Array,
    identity_scale: jax.Array,
    memory_idx: jax.Array,
) -> Any:
    """H·g by Algorithm 7.4 of Nocedal & Wright over the pairs in the ring buffer, oldest to newest.

    q ← g; for i from newest to oldest: αᵢ = ρᵢ⟨sᵢ, q⟩, q ← q − αᵢyᵢ; r ← γ·q;
    for i from oldest to newest: βᵢ = ρᵢ⟨yᵢ, r⟩, r ← r + (αᵢ − βᵢ)·sᵢ; return r.

    ``memory_idx`` is the oldest row (the row after the newest, as in optax). Empty rows have ρ = 0 and
    s = y = 0, and leave q and r unchanged. The recursion runs in the scalar dtype of the weights (at
    least float32) and the result comes back in each leaf's dtype.
    """
    dtype = weights_memory.dtype
    memory_size = weights_memory.shape[0]
    order = (memory_idx + jnp.arange(memory_size)) % memory_size  # oldest slot first
    vector = tree.map(lambda g: g.astype(jnp.promote_types(g.dtype, dtype)), updates)
    pair = lambda memory, i: jax.tree.map(lambda m: m[i], memory)

    def newest_to_oldest(q, i):
        alpha = weights_memory[i] * tree_vdot(pair(diff_params_memory, i), q, dtype)
        q = tree.map(lambda q, y: q - (alpha * y).astype(q.dtype), q, pair(diff_updates_memory, i))
        return q, alpha

    vector, alphas = jax.lax.scan(newest_to_oldest, vector, order, reverse=True)
    vector = tree.map(lambda q: (identity_scale * q).astype(q.dtype), vector)

    def oldest_to_newest(r, i_alpha):
        i, alpha = i_alpha
        beta = weights_memory[i] * tree_vdot(pair(diff_updates_memory, i), r, dtype)
        r = tree.map(lambda r, s: r + ((alpha - beta) * s).astype(r.dtype), r, pair(diff_params_memory, i))
        return r, None

    vector, _ = jax.lax.scan(oldest_to_newest, vector, (order, alphas))
    return tree.cast_like(vector, updates)


@pytree_dataclass
class ScaleByLBFGS(Transform):
    """u ← H·g, the L-BFGS inverse-Hessian approximation applied to the gradient (see :func:`scale_by_lbfgs`).

    Needs ``params``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_lbfgs(memory_size=5)
      >>> isinstance(tx, gf.ScaleByLBFGS), tx.memory_size, tx.scale_init_precond
      (True, 5, True)
    """

    memory_size: int = static_field(default=10)
    scale_init_precond: bool = static_field(default=True)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        rows = self.memory_size
        stacked = jax.tree.map(lambda p: jnp.zeros((rows, *jnp.shape(p)), jnp.result_type(p)), params)
        return ScaleByLBFGSState(
            count=jnp.zeros([], jnp.int32),
            params=tree.zeros_like(params),
            updates=tree.zeros_like(params),
            diff_params_memory=stacked,
            diff_updates_memory=stacked,
            weights_memory=jnp.zeros([rows], scalar_dtype(params)),
        )

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if params is None:
            raise ValueError(
                "scale_by_lbfgs needs params (the curvature pairs are differences of parameters): call "
                "update(grads, state, params)"
            )
        tree.check_real_leaves("scale_by_lbfgs", params, "params", "its curvature pairs assume a real loss landscape")
        dtype = state.weights_memory.dtype
        memory_size = self.memory_size
        # 1. The pair (s, y) of the previous step, stored if its curvature ⟨s, y⟩ is positive.
        diff_params = tree.map(lambda p, q: p - q, params, state.params, names=("params", "state.params"))
        diff_updates = tree.map(
            lambda g, h: g - h.astype(g.dtype), updates, state.updates, names=("updates", "state.updates")
        )
        sy = tree_vdot(diff_params, diff_updates, dtype)
        yy = tree_vdot(diff_updates, diff_updates, dtype)
        accept = (state.count > 0) & (sy > jnp.finfo(dtype).eps * yy)
        # The pair of this step goes to row (count − 1) % m, optax's slot, overwriting the oldest; a skipped
        # pair is an empty row (zeros, ρ = 0). One in-place row update either way (a select between the new
        # and the old memory would make XLA copy all of it).
        slot = (state.count - 1) % memory_size
        store = lambda memory, new: memory.at[slot].set(jnp.where(accept, new, 0).astype(memory.dtype))
        s_memory = jax.tree.map(store, state.diff_params_memory, diff_params)
        y_memory = jax.tree.map(store, state.diff_updates_memory, diff_updates)
        weights = state.weights_memory.at[slot].set(_safe_divide(jnp.ones([], dtype), sy, accept, 0.0).astype(dtype))

        # 2. γ, the scale of the initial inverse Hessian γ·I: ⟨s, y⟩/⟨y, y⟩ of the newest stored pair, and
        # min(1, 1/‖g‖) before any pair (optax's choice: the first step has length at most 1).
        if self.scale_init_precond:

            def from_newest_stored_pair():  # when this step's pair was skipped
                recent_first = (state.count - 1 - jnp.arange(memory_size)) % memory_size
                newest = recent_first[jnp.argmax(weights[recent_first] > 0)]
                y_newest = jax.tree.map(lambda m: m[newest], y_memory)
                yy_newest = tree_vdot(y_newest, y_newest, dtype)
                sy_newest = _safe_divide(jnp.ones([], dtype), weights[newest], weights[newest] > 0, 0.0)
                return _safe_divide(sy_newest, yy_newest, yy_newest > 0, 1.0).astype(dtype)

            from_pairs = jax.lax.cond(
                accept, lambda: _safe_divide(sy, yy, accept, 1.0).astype(dtype), from_newest_stored_pair
            )
            norm = jnp.sqrt(jax.lax.stop_gradient(tree_vdot(updates, updates, dtype)))
            first = jnp.minimum(1.0, _safe_divide(jnp.ones([], dtype), norm, norm > 0, jnp.inf))
            identity_scale = jnp.where(jnp.any(weights > 0), from_pairs, first).astype(dtype)
        else:
            identity_scale = jnp.ones([], dtype)

        # 3. The direction H·g by the two-loop recursion.
        direction = two_loop_recursion(updates, s_memory, y_memory, weights, identity_scale, state.count % memory_size)
        new_state = ScaleByLBFGSState(
            count=tree.saturating_increment(state.count),
            params=tree.cast_like(params, state.params),
            updates=tree.cast_like(updates, state.updates),
            diff_params_memory=s_memory,
            diff_updates_memory=y_memory,
            weights_memory=weights,
        )
        return direction, new_state


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> ScaleByLBFGS:
    r"""Scale the gradient by the L-BFGS approximation of the inverse Hessian (Algorithm 7.4 of Nocedal & Wright).

    With the pairs sᵢ = wᵢ₊₁ − wᵢ, yᵢ = gᵢ₊₁ − gᵢ, ρᵢ = 1/⟨sᵢ, yᵢ⟩ of the last m = ``memory_size`` steps,

        H = Vₖ₋₁ᵀ ⋯ Vₖ₋ₘᵀ (γ I) Vₖ₋ₘ ⋯ Vₖ₋₁ + Σᵢ ρᵢ (Vₖ₋₁ᵀ ⋯ Vᵢ₊₁ᵀ) sᵢsᵢᵀ (Vᵢ₊₁ ⋯ Vₖ₋₁),   Vᵢ = I − ρᵢ yᵢsᵢᵀ,

    and the output is H·g, computed by the two-loop recursion in O(m·n) without forming H. With
    ``scale_init_precond``, γ = ⟨s, y⟩/⟨y, y⟩ of the newest stored pair (N&W eq. 7.20) and, with no
    pair in memory, min(1, 1/‖g‖); otherwise γ = 1. A pair is stored only when ⟨s, y⟩ > ε_machine·⟨y, y⟩
    (positive curvature, as BFGS needs to stay positive definite; a line search with the Wolfe
    conditions guarantees it, a fixed step on a non-convex loss does not): a skipped pair takes its
    step's slot as an empty one, so the memory holds the accepted pairs among the last m steps. The
    state is optax's, slot for slot, and when every pair is accepted (as under a Wolfe line search) the
    numbers are optax's; optax stores every pair, with ρ < 0 or 1/0 → 0 when the curvature is not
    positive, and takes γ from the latest pair whatever its sign. The output is the direction +H·g:
    chain it with ``scale(-1)`` and a line search, as :func:`lbfgs` does. Liu & Nocedal (1989).

    Args:
      memory_size: m ≥ 1, the number of pairs kept (static: it sets the state's shapes).
      scale_init_precond: scale the initial inverse Hessian γ·I as above (else γ = 1).

    Returns:
      A :class:`ScaleByLBFGS` transform; its ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.second_order import scale_by_lbfgs
      >>> tx = scale_by_lbfgs()
      >>> w = jnp.array([3.0, 4.0]); state = tx.init(w)
      >>> tx.update(jnp.array([3.0, 4.0]), state, w)[0]  # first step: g / max(1, ‖g‖)
      Array([0.6, 0.8], dtype=float32)
    """
    memory_size = check_integer("scale_by_lbfgs", "memory_size", memory_size, low=1)
    return ScaleByLBFGS(memory_size, check_flag("scale_by_lbfgs", "scale_init_precond", scale_init_precond))


_DEFAULT_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


def lbfgs(
    learning_rate: Any = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: Transform | None = _DEFAULT_LINESEARCH,
) -> Chain:
    r"""L-BFGS (Liu & Nocedal, 1989): w ← w − η·H·g, H from the two-loop recursion, η from a line search.

    ``chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1), linesearch)``, optax's rule and
    defaults: the line search is a strong-Wolfe zoom whose first trial is the full quasi-Newton step
    η = 1 (:func:`scale_by_zoom_linesearch` with ``max_linesearch_steps=20,
    initial_guess_strategy="one"``). A ``learning_rate`` replaces ``scale(-1)`` by
    ``scale_by_learning_rate(learning_rate)`` (before the line search, if any); ``linesearch=None``
    takes the fixed step −learning_rate·H·g and needs no ``value_fn``.

    With a line search, ``update`` needs ``params`` and the extra arguments ``value_fn`` (the objective)
    and, to avoid recomputing them, ``value`` and ``grad`` at ``params``. :func:`gradflow.minimize` runs
    the whole solve in one compiled loop and reuses the line search's last evaluation.

    Args:
      learning_rate: optional fixed step size or schedule (``None``: −1, the line search sets the step).
      memory_size: number of curvature pairs kept (static).
      scale_init_precond: scale the initial inverse Hessian by ⟨s, y⟩/⟨y, y⟩ (see :func:`scale_by_lbfgs`).
      linesearch: a line search transform (:func:`scale_by_zoom_linesearch`,
        :func:`scale_by_backtracking_linesearch`), or ``None`` for none.

    Returns:
      The chained transform.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import lbfgs
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = lbfgs(); w = jnp.array([1.0, 2.0, 3.0]); state = tx.init(w)
      >>> for _ in range(2):
      ...     value, grad = jax.value_and_grad(f)(w)
      ...     updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=f)
      ...     w = gradflow.apply_updates(w, updates)
      >>> float(f(w)) < 1e-10
      True
    """
    step: Transform
    if learning_rate is None:
        step = scale(-1.0)
    else:
        step = scale_by_learning_rate(check_learning_rate("lbfgs", learning_rate))
    transforms: list[Transform] = [scale_by_lbfgs(memory_size, scale_init_precond), step]
    if linesearch is not None:
        if not (callable(getattr(linesearch, "init", None)) and callable(getattr(linesearch, "update", None))):
            raise TypeError(f"lbfgs: linesearch must be a transform or None, got {type(linesearch).__name__}")
        transforms.append(linesearch)
    return chain(*transforms)
