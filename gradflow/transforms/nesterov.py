"""The look-ahead gradient of Nesterov: evaluate the gradient where momentum is about to carry θ.

Seed 000 §5.1.3 and seed 003: m ← γ·m + η·∇L(θ − γ·m), θ ← θ − m (Nesterov, 1983). The wrapper keeps
the previous outgoing update u = −m and evaluates ``grad_fn`` at θ + γ·u before running the inner
momentum transform on that gradient. The equivalent form that needs only the current gradient is
``ewma(..., nesterov=True)`` (``sgd(nesterov=True)``), which follows the shifted variable θ − γ·m.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from gradflow import tree
from gradflow.core import UNIT, Transform, hyperparameter, pytree_dataclass
from gradflow.validation import check_callable, check_range

__all__ = ["LookaheadGradient", "LookaheadGradientState", "lookahead_gradient"]


class LookaheadGradientState(NamedTuple):
    """The inner transform's state and its previous output (−m in the textbook's notation)."""

    inner: Any
    previous_update: Any


@pytree_dataclass
class LookaheadGradient(Transform):
    """Replace the incoming gradient by ∇L(θ + momentum · previous update), then apply ``inner``.

    Needs ``params`` and the extra argument ``grad_fn`` (a function params -> gradient); the incoming
    updates are not used (they may be ``None``).
    """

    inner: Transform
    momentum: Any = hyperparameter(UNIT)

    def init(self, params: Any) -> Any:
        return LookaheadGradientState(self.inner.init(params), tree.zeros_like(params))

    def update(
        self,
        updates: Any,
        state: Any,
        params: Any = None,
        grad_fn: Callable[[Any], Any] | None = None,
        **extra: Any,
    ) -> tuple[Any, Any]:
        if grad_fn is None or params is None:
            raise ValueError(
                "the Nesterov look-ahead gradient needs params and grad_fn: call "
                "update(grads, state, params, grad_fn=jax.grad(loss)) so that the gradient can be "
                "evaluated at the look-ahead point θ − γ·m"
            )
        check_callable("the Nesterov look-ahead gradient", "grad_fn", grad_fn)
        lookahead = tree.map(
            lambda p, u: p + self.momentum * u, params, state.previous_update, names=("params", "state.previous_update")
        )
        gradient = tree.map(
            lambda g, p: g.astype(p.dtype), grad_fn(lookahead), params, names=("grad_fn(lookahead)", "params")
        )
        out, inner_state = self.inner.update(gradient, state.inner, params, grad_fn=grad_fn, **extra)
        return out, LookaheadGradientState(inner_state, tree.cast_like(out, state.previous_update))


def lookahead_gradient(inner: Transform, momentum: Any) -> LookaheadGradient:
    """Evaluate the gradient at θ + momentum · (previous update) and feed it to ``inner``.

    With ``inner = chain(ewma(γ, kind="momentum"), scale_by_learning_rate(η))`` this is the true
    Nesterov accelerated gradient of the seeds (Nesterov, 1983; :func:`gradflow.nag`):
    m ← γ·m + ∇L(θ − η·γ·m), θ ← θ − η·m, the previous update being −η·m.

    Args:
      inner: the transform that turns the look-ahead gradient into the update (a momentum and a
        learning rate).
      momentum: γ in [0, 1), how far ahead along the previous update the gradient is taken.

    Returns:
      A :class:`LookaheadGradient`; its ``update`` needs ``params`` and ``grad_fn=`` (the incoming
      updates are not used).

    Example:
      >>> import jax, jax.numpy as jnp, gradflow as gf
      >>> loss = lambda p: jnp.sum(p ** 2)
      >>> inner = gf.chain(gf.ewma(0.5, kind="momentum"), gf.scale_by_learning_rate(0.1))
      >>> tx = gf.lookahead_gradient(inner, 0.5)
      >>> params = jnp.array([1.0, 2.0]); state = tx.init(params)
      >>> for _ in range(2):
      ...     updates, state = tx.update(None, state, params, grad_fn=jax.grad(loss))
      ...     params = gf.apply_updates(params, updates)
      ...     print([round(float(u), 4) for u in updates])  # the second gradient is taken at θ + 0.5·u
      [-0.2, -0.4]
      [-0.24, -0.48]
    """
    check_range("lookahead_gradient", "momentum", momentum, 0.0, 1.0)
    return LookaheadGradient(inner, momentum)
