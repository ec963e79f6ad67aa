"""``named_chain``: :func:`gradflow.chain` whose state is a dict keyed by a name per transform (optax's)."""

from __future__ import annotations

import collections
from typing import Any

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.wrappers._common import as_transform

__all__ = ["NamedChain", "named_chain"]


@pytree_dataclass
class NamedChain(Transform):
    """Apply the transforms in order; the state maps each name to its transform's state.

    u ← t_n(…t_2(t_1(u))); state = OrderedDict(name_i: state_i), in the order given (built by
    :func:`named_chain`).

    Example:
      >>> import gradflow as gf
      >>> tx = gf.named_chain(("clip", gf.clip(1.0)), ("sgd", gf.sgd(0.1)))
      >>> isinstance(tx, gf.NamedChain), tx.names
      (True, ('clip', 'sgd'))
    """

    transforms: tuple[Transform, ...]
    names: tuple[str, ...] = static_field()

    def init(self, params: Any) -> Any:
        return collections.OrderedDict((name, tx.init(params)) for name, tx in zip(self.names, self.transforms))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        updates = tree.check_updates(updates, params)  # errors that name the key path
        missing = [name for name in self.names if not hasattr(state, "keys") or name not in state]
        if missing:
            raise ValueError(
                f"named_chain: the state has no entry for {', '.join(map(repr, missing))}; pass the state that "
                "this named_chain's init returned (a dict keyed by the names)"
            )
        new_state = collections.OrderedDict()
        for name, tx in zip(self.names, self.transforms):
            updates, new_state[name] = tx.update(updates, state[name], params, **extra)
        return updates, new_state


def named_chain(*args: Any) -> NamedChain:
    """Chain ``(name, transform)`` pairs; the state is a dict keyed by the names, in order.

    u ← t_n(…t_1(u)) as in :func:`gradflow.chain`, but ``state[name]`` is the state of the transform
    called ``name`` (an ``OrderedDict``, so the pytree keeps the chain's order, as in optax). Extra
    arguments (``value``, ``grad_fn`` …) go to every transform.

    Args:
      *args: ``(name, transform)`` pairs: a string name, unique, and a gradflow or optax transform.

    Returns:
      A :class:`NamedChain`.

    Raises:
      TypeError: if an argument is not a ``(str, transform)`` pair; ValueError: if a name repeats.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.named_chain(("momentum", gf.sgd(0.1, momentum=0.9)), ("clip", gf.clip(0.05)))
      >>> updates, state = tx.update(jnp.array([1.0, -0.2]), tx.init(jnp.zeros(2)))
      >>> list(state), updates
      (['momentum', 'clip'], Array([-0.05,  0.02], dtype=float32))
    """
    names, txs = [], []
    for position, pair in enumerate(args):
        if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise TypeError(
                f"named_chain: argument {position} must be a (name, transform) pair with a string name, got {pair!r}"
            )
        names.append(pair[0])
        txs.append(as_transform("named_chain", pair[1], f"the transform of {pair[0]!r}"))
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(
            f"named_chain: the names must be unique, got {names} ({', '.join(map(repr, repeated))} repeated)"
        )
    return NamedChain(tuple(txs), tuple(names))
