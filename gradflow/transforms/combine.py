"""Combinators over branches: several statistics of the same raw updates, joined leaf by leaf.

Adam's step m̂ / (√v̂ + ε) is ``ratio(numerator, denominator)`` where each branch is a chain of
primitives that sees the same incoming gradient. Swapping one branch gives another optimizer: replace
the denominator's ``ewma`` by a ``running_max`` of it and Adam becomes AMSGrad.
"""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp

from gradflow import arith, tree
from gradflow.core import UNIT_CLOSED, Transform, chain, hyperparameter, pytree_dataclass, static_field
from gradflow.validation import check_range

__all__ = ["Combine", "difference", "interpolate", "product", "ratio", "total"]

_OPS = {
    "divide": lambda a, b, w: arith.div(a, b),
    "multiply": lambda a, b, w: arith.mul(a, b),
    "add": lambda a, b, w: arith.add(a, b),
    "subtract": lambda a, b, w: arith.sub(a, b),
    "interpolate": lambda a, b, w: arith.add(arith.mul(w, a), arith.mul(arith.sub(1, w), b)),
}


@pytree_dataclass
class Combine(Transform):
    """Feed the same updates to two branches and join their outputs with ``op``.

    ``op`` is one of ``divide`` (a / b), ``multiply`` (a · b), ``add`` (a + b), ``subtract`` (a − b),
    ``interpolate`` (weight · a + (1 − weight) · b). The state is the pair of branch states.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.ratio(gf.identity(), gf.absolute())
      >>> isinstance(tx, gf.Combine), tx.op
      (True, 'divide')
    """

    first: Transform
    second: Transform
    weight: Any = hyperparameter(UNIT_CLOSED, default=None)
    op: Literal["divide", "multiply", "add", "subtract", "interpolate"] = static_field(default="divide")

    def init(self, params: Any) -> Any:
        return (self.first.init(params), self.second.init(params))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        if type(state) is not tuple or len(state) != 2:  # a NamedTuple is the state of some other transform
            got = type(state).__name__
            if isinstance(state, tuple):
                got = f"a {got} of length {len(state)}"
            raise ValueError(
                f"combine ({self.op}) of two branches got {got} as its state; "
                "pass the state that this transform's init returned"
            )
        a, first_state = self.first.update(updates, state[0], params, **extra)
        b, second_state = self.second.update(updates, state[1], params, **extra)
        join = _OPS[self.op]
        if self.op == "interpolate":  # w and 1 − w once per dtype, not once per leaf (the same numbers)
            weight = jnp.asarray(self.weight)
            first_weight, second_weight = tree.promote_once(weight), tree.promote_once(1 - weight)

            def join(a: Any, b: Any, w: Any) -> Any:
                return first_weight(a) * a + second_weight(b) * b

        out = tree.map(
            lambda u, x, y: tree._astype(join(x, y, None), jnp.result_type(u)),
            updates,
            a,
            b,
            names=("updates", "first branch", "second branch"),
        )
        return out, (first_state, second_state)


def _branch(owner: str, name: str, tx: Any) -> Transform:
    """A branch: a gradflow transform, or another library's (wrapped by :func:`chain`)."""
    if isinstance(tx, Transform):
        return tx
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return chain(tx)
    raise TypeError(f"{owner}: {name} must be a transform (init and update), got {tx!r}")


def ratio(numerator: Any, denominator: Any) -> Combine:
    """Leafwise ``numerator(u) / denominator(u)`` over two branches of the same updates.

    Example (Adam's direction from primitives):
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.ratio(gf.chain(gf.ewma(0.9), gf.debias(0.9)),
      ...               gf.chain(gf.square(), gf.ewma(0.999), gf.debias(0.999), gf.root(eps=1e-8)))
      >>> g = jnp.array([0.3, -2.0])
      >>> tx.update(g, tx.init(g))[0].round(4)  # the first Adam direction is sign(g)
      Array([ 1., -1.], dtype=float32)
    """
    return Combine(
        _branch("ratio", "numerator", numerator), _branch("ratio", "denominator", denominator), None, "divide"
    )


def product(first: Any, second: Any) -> Combine:
    """Leafwise ``first(u) · second(u)`` over two branches of the same updates.

    Args:
      first: a transform (gradflow or optax).
      second: a transform (gradflow or optax).

    Returns:
      A :class:`Combine` whose state is the pair of branch states.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.product(gf.identity(), gf.sign())  # u · sign(u) = |u|
      >>> g = jnp.array([-2.0, 3.0])
      >>> tx.update(g, tx.init(g))[0]
      Array([2., 3.], dtype=float32)
    """
    return Combine(_branch("product", "first", first), _branch("product", "second", second), None, "multiply")


def total(first: Any, second: Any) -> Combine:
    """Leafwise ``first(u) + second(u)`` over two branches of the same updates.

    Args:
      first: a transform (gradflow or optax).
      second: a transform (gradflow or optax).

    Returns:
      A :class:`Combine` whose state is the pair of branch states.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.total(gf.identity(), gf.shift(1.0))  # u + (u + 1)
      >>> g = jnp.array([-2.0, 3.0])
      >>> tx.update(g, tx.init(g))[0]
      Array([-3.,  7.], dtype=float32)
    """
    return Combine(_branch("total", "first", first), _branch("total", "second", second), None, "add")


def difference(first: Any, second: Any) -> Combine:
    """Leafwise ``first(u) − second(u)`` (e.g. E[g²] − E[g]² for centered RMSprop).

    Args:
      first: a transform (gradflow or optax).
      second: a transform (gradflow or optax).

    Returns:
      A :class:`Combine` whose state is the pair of branch states.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.difference(gf.chain(gf.square(), gf.ewma(0.5)), gf.chain(gf.ewma(0.5), gf.square()))
      >>> g = jnp.array([2.0, -2.0])
      >>> tx.update(g, tx.init(g))[0]  # E[g²] − E[g]² = 0.5·4 − (0.5·2)²
      Array([1., 1.], dtype=float32)
    """
    return Combine(_branch("difference", "first", first), _branch("difference", "second", second), None, "subtract")


def interpolate(first: Any, second: Any, weight: Any) -> Combine:
    """Leafwise ``weight · first(u) + (1 − weight) · second(u)`` with ``weight`` in [0, 1].

    Args:
      first: a transform (gradflow or optax).
      second: a transform (gradflow or optax).
      weight: w in [0, 1] (a leaf: a number, an array or a schedule).

    Returns:
      A :class:`Combine` whose state is the pair of branch states.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.interpolate(gf.identity(), gf.sign(), 0.25)  # 0.25·u + 0.75·sign(u)
      >>> g = jnp.array([-2.0, 4.0])
      >>> tx.update(g, tx.init(g))[0]
      Array([-1.25,  1.75], dtype=float32)
    """
    check_range("interpolate", "weight", weight, 0.0, 1.0, high_open=False)
    branches = _branch("interpolate", "first", first), _branch("interpolate", "second", second)
    return Combine(*branches, weight, "interpolate")
