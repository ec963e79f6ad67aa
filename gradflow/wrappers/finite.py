"""Guards against non-finite numbers: skip a non-finite step (``apply_if_finite``), zero NaNs (``zero_nans``)."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.validation import check_choice, check_integer
from gradflow.wrappers._common import as_transform, is_none

__all__ = [
    "ApplyIfFinite",
    "ApplyIfFiniteState",
    "ZeroNans",
    "ZeroNansState",
    "all_finite",
    "apply_if_finite",
    "zero_nans",
]


class ApplyIfFiniteState(NamedTuple):
    """The state of :func:`apply_if_finite` (optax's field names).

    Attributes:
      notfinite_count: int32 number of non-finite steps in a row (0 after a finite step).
      last_finite: bool, whether the latest step was finite (its gradient and the inner's output).
      total_notfinite: int32 number of non-finite steps since init (never reset).
      inner_state: the inner transform's state, as of the latest applied step.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.apply_if_finite(gf.sgd(0.1), max_consecutive_errors=5).init(jnp.zeros(2))
      >>> int(state.notfinite_count), bool(state.last_finite), state.inner_state
      (0, True, (EmptyState(), EmptyState()))
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


class ZeroNansState(NamedTuple):
    """``found_nan``: one boolean per leaf, whether the latest updates had a NaN in that leaf.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.zero_nans().init({"a": jnp.zeros(2)})
      ZeroNansState(found_nan={'a': Array(False, dtype=bool)})
    """

    found_nan: Any


def all_finite(updates: Any) -> jax.Array:
    """A boolean scalar: whether every element of every leaf is finite (no NaN, no ±Inf)."""
    checks = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(updates)]
    return jnp.all(jnp.stack(checks)) if checks else jnp.array(True)


def _zeros(updates: Any) -> Any:
    return jax.tree.map(lambda u: None if u is None else jnp.zeros_like(u), updates, is_leaf=is_none)


@pytree_dataclass
class ApplyIfFinite(Transform):
    """Run ``inner`` and apply its step only if the incoming updates and its output are all finite.

    finite = all(isfinite(g)) ∧ all(isfinite(inner(g))); u ← inner(g) and the inner state advances if
    finite, else u ← 0 and the inner state stays as it was. With ``after_limit="apply"``, optax's rule:
    finite = all(isfinite(g)) only, and a step that is the (max_consecutive_errors + 1)-th non-finite one
    in a row is applied as it is.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.apply_if_finite(gf.sgd(0.1), max_consecutive_errors=3)
      >>> isinstance(tx, gf.ApplyIfFinite), isinstance(tx.inner, gf.Chain), tx.max_consecutive_errors
      (True, True, 3)
    """

    inner: Transform
    max_consecutive_errors: int = static_field()
    after_limit: Literal["skip", "apply"] = static_field(default="skip")

    def init(self, params: Any) -> Any:
        zero = jnp.zeros([], jnp.int32)
        return ApplyIfFiniteState(zero, jnp.array(True), zero, self.inner.init(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        updates = tree.check_updates(updates, params)  # errors that name the key path
        old = tree.check_state("apply_if_finite", state, ApplyIfFiniteState).inner_state
        # Past the limit (only with after_limit="apply"), a non-finite step is applied: optax's rule.
        give_up = jnp.array(self.after_limit == "apply") & (
            tree.saturating_increment(state.notfinite_count) > self.max_consecutive_errors
        )

        def attempt(_):
            out, new = self.inner.update(updates, old, params, **extra)
            out = tree.cast_like(out, updates)
            ok = all_finite(updates) if self.after_limit == "apply" else all_finite(out) & all_finite(updates)
            accept = ok | give_up
            out = jax.tree.map(lambda o: jnp.where(accept, o, jnp.zeros_like(o)), out)
            new = jax.tree.map(lambda n, o: jnp.where(accept, n, o).astype(jnp.result_type(o)), new, old)
            return out, new, ok

        def skip(_):
            return _zeros(updates), old, jnp.array(False)

        # The inner update does not even run on a non-finite gradient (under vmap, both branches run).
        out, inner_state, finite = jax.lax.cond(all_finite(updates) | give_up, attempt, skip, None)
        notfinite_count = jnp.where(finite, 0, tree.saturating_increment(state.notfinite_count))
        total = jnp.where(finite, state.total_notfinite, tree.saturating_increment(state.total_notfinite))
        return out, ApplyIfFiniteState(notfinite_count, finite, total, inner_state)

    def exceeded(self, state: Any) -> jax.Array:
        """Whether more than ``max_consecutive_errors`` steps in a row were not finite (the run has diverged).

        Args:
          state: this transform's :class:`ApplyIfFiniteState`.

        Returns:
          A boolean scalar: ``state.notfinite_count > max_consecutive_errors``.

        Example:
          >>> import jax.numpy as jnp, gradflow as gf
          >>> tx = gf.apply_if_finite(gf.sgd(0.1), max_consecutive_errors=1)
          >>> params = jnp.zeros(1); state = tx.init(params)
          >>> for _ in range(2):
          ...     _, state = tx.update(jnp.array([jnp.nan]), state, params)
          ...     print(bool(tx.exceeded(state)))
          False
          True
        """
        return jnp.asarray(state.notfinite_count) > self.max_consecutive_errors


@pytree_dataclass
class ZeroNans(Transform):
    """Replace NaNs by zero: u ← 0 where isnan(u), else u; record per leaf whether a NaN was found.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.zero_nans()
      >>> g = jnp.array([jnp.nan, 1.0])
      >>> tx.update(g, tx.init(g))[0]
      Array([0., 1.], dtype=float32)
    """

    def init(self, params: Any) -> Any:
        return ZeroNansState(jax.tree.map(lambda p: None if p is None else jnp.array(False), params, is_leaf=is_none))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        found = tree.map(lambda u: jnp.any(jnp.isnan(u)), updates)
        out = tree.map(lambda u: jnp.where(jnp.isnan(u), jnp.zeros_like(u), u), updates)
        return out, ZeroNansState(found)


def apply_if_finite(
    inner: Any, max_consecutive_errors: int, *, after_limit: Literal["skip", "apply"] = "skip"
) -> ApplyIfFinite:
    """Skip every step whose gradient, or whose update from ``inner``, holds a NaN or an Inf.

    On a skipped step the returned updates are zeros and ``inner``'s state is left exactly as it was,
    so a burst of bad batches (an overflow in mixed precision, a corrupt example) leaves no trace in
    the optimizer's moments. The state counts consecutive and total skipped steps and records whether
    the latest step was finite (:class:`ApplyIfFiniteState`, optax's fields).

    ``max_consecutive_errors`` is optax's argument, with gradflow's default meaning: when more than that
    many steps in a row were not finite, the run has diverged and :meth:`ApplyIfFinite.exceeded`
    ``(state)`` says so (stop the run, restore a checkpoint, lower the learning rate); gradflow still
    skips every further non-finite step, so nothing non-finite reaches the parameters or the state.
    By default gradflow checks the inner's output as well as the incoming gradient (optax: the gradient
    only). ``after_limit="apply"`` is optax's rule instead, all of it: only the gradient is checked, and
    past the limit the next non-finite step is applied as it is (NaN into the parameters and the inner
    state), e.g. to reproduce an optax run.

    Args:
      inner: the transform to guard (gradflow or optax).
      max_consecutive_errors: an integer >= 0, the number of non-finite steps in a row that are skipped
        before :meth:`ApplyIfFinite.exceeded` turns true (static).
      after_limit: ``"skip"`` (default) keeps skipping non-finite steps past the limit; ``"apply"``
        applies them and checks only the gradient, as optax does.

    Returns:
      An :class:`ApplyIfFinite` whose state is an :class:`ApplyIfFiniteState`.

    Raises:
      TypeError: if ``inner`` is not a transform or ``max_consecutive_errors`` not an integer.
      ValueError: if ``max_consecutive_errors`` is negative or ``after_limit`` is neither value.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> from gradflow.wrappers import apply_if_finite
      >>> tx = apply_if_finite(gf.sgd(0.1, momentum=0.9), max_consecutive_errors=5)
      >>> params = jnp.array([1.0, 2.0]); state = tx.init(params)
      >>> updates, state = tx.update(jnp.array([1.0, jnp.nan]), state, params)
      >>> updates, int(state.notfinite_count), bool(state.last_finite)
      (Array([0., 0.], dtype=float32), 1, False)
      >>> updates, state = tx.update(jnp.array([1.0, 1.0]), state, params)
      >>> updates, int(state.notfinite_count), int(state.total_notfinite)
      (Array([-0.1, -0.1], dtype=float32), 0, 1)
    """
    limit = check_integer("apply_if_finite", "max_consecutive_errors", max_consecutive_errors, low=0)
    check_choice("apply_if_finite", "after_limit", after_limit, ("skip", "apply"))
    return ApplyIfFinite(as_transform("apply_if_finite", inner), limit, after_limit)


def zero_nans() -> ZeroNans:
    """Replace every NaN in the updates by 0 (±Inf pass through), as optax's ``zero_nans``.

    u ← 0 where isnan(u), else u. The state's ``found_nan`` holds, for each leaf, whether the latest
    updates had a NaN there.

    Returns:
      A :class:`ZeroNans` whose state is a :class:`ZeroNansState`.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.wrappers import zero_nans
      >>> tx = zero_nans()
      >>> g = {"a": jnp.array([1.0, jnp.nan]), "b": jnp.array([2.0])}
      >>> updates, state = tx.update(g, tx.init(g))
      >>> updates["a"], bool(state.found_nan["a"]), bool(state.found_nan["b"])
      (Array([1., 0.], dtype=float32), True, False)
    """
    return ZeroNans()
