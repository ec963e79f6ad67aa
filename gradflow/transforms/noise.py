"""Annealed Gaussian gradient noise (Neelakantan et al., 2015; seed 003, "Gradient noise").

u ← g + n,  n ~ N(0, σ_t² I),  σ_t² = eta / (1 + t)^gamma,

where t is the number of updates done before the current one (t = 0 at the first update, so the first
noise has variance ``eta``). This is optax's convention: ``optax.add_noise`` counts from 1 and divides by
t^gamma, the same numbers. The PRNG key lives in the state (a typed key, optax's ``AddNoiseState``), so a
training loop stays a pure function of its inputs: the same key gives the same noise, and every update
splits off a fresh key.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import Transform, pytree_dataclass, static_field
from gradflow.validation import check_prng_key, check_range

__all__ = ["AddNoise", "AddNoiseState", "add_noise"]


class AddNoiseState(NamedTuple):
    """The state of :class:`AddNoise` (optax's fields).

    Attributes:
      count: int32 number of updates done (saturating), the t of σ_t² = eta / (1 + t)^gamma.
      rng_key: the typed PRNG key (shape ``()``, a ``jax.random.key``) that the next update splits.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.add_noise(eta=0.01, gamma=0.55, key=0).init(jnp.zeros(2))
      >>> state.count, state.rng_key.dtype, state.rng_key.shape
      (Array(0, dtype=int32), key<fry>, ())
    """

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count
    rng_key: jax.Array


@pytree_dataclass
class AddNoise(Transform):
    """Add Gaussian noise of variance eta / (1 + t)^gamma to every coordinate of the updates.

    ``key`` holds the raw data of a PRNG key of the implementation named by ``impl`` (the state holds the
    typed key); it is a leaf, so a batch of keys can be vmapped over like a batch of hyperparameters
    (independent noise per member).
    Each update splits the state's key into the next key and a sample key; the sample key is split once
    more into one key per leaf of the updates (in ``jax.tree.leaves`` order), the order optax uses, so
    that the same key gives optax's noise on float32 updates. Noise is drawn in float32 (float64 for
    float64 updates), added in that precision, and the sum is cast back to the gradient's dtype.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.add_noise(eta=0.01, gamma=0.55, seed=0)
      >>> isinstance(tx, gf.AddNoise), tx.impl
      (True, 'threefry2x32')
    """

    eta: Any
    gamma: Any
    key: Any
    impl: str = static_field(default="threefry2x32")

    def init(self, params: Any) -> Any:
        return AddNoiseState(jnp.zeros([], jnp.int32), jax.random.wrap_key_data(jnp.asarray(self.key), impl=self.impl))

    def update(self, updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        eta, gamma = jnp.asarray(self.eta), jnp.asarray(self.gamma)
        dtype = jnp.promote_types(jnp.result_type(eta, gamma), jnp.result_type(float))
        steps = (state.count + 1).astype(dtype)  # 1 + t, t updates done before this one
        std = jnp.sqrt(eta.astype(dtype) / steps ** gamma.astype(dtype))

        key = check_prng_key("add_noise", "state.rng_key", state.rng_key)
        typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        if not typed:  # raw key data (an older gradflow state, or restored so): the state keeps its form
            key = jax.random.wrap_key_data(key, impl=self.impl)
        next_key, sample_key = jax.random.split(key)
        treedef: Any  # a jaxlib PyTreeDef, which has no type stubs
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))

        def noisy(u, key):
            wide = jnp.promote_types(jnp.result_type(u), jnp.float32)
            noise = jax.random.normal(key, jnp.shape(u), wide)
            return (jnp.asarray(u).astype(wide) + std.astype(wide) * noise).astype(jnp.result_type(u))

        out = treedef.unflatten([noisy(u, keys[i]) for i, u in enumerate(leaves)])
        next_key = next_key if typed else jax.random.key_data(next_key).astype(state.rng_key.dtype)
        return out, AddNoiseState(tree.saturating_increment(state.count), next_key)


def _is_key_array(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _is_seed(value: Any) -> bool:
    """An integer seed: a Python or NumPy integer, or a 0-d integer array (not a bool)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and jnp.ndim(value) == 0 and jnp.issubdtype(dtype, jnp.integer)


def _key_data(name: str, key: Any) -> tuple[jax.Array, str]:
    """``(raw key data, implementation name)`` of one PRNG key: a typed key, a raw uint32 key or an integer seed.

    optax accepts a typed key or an integer seed; a raw key (``jax.random.PRNGKey``) is accepted too. Anything
    else is :func:`~gradflow.validation.check_prng_key`'s error.
    """
    if _is_seed(key):
        typed = jax.random.key(key)
    else:
        check_prng_key("add_noise", name, key)
        typed = key if _is_key_array(key) else jax.random.wrap_key_data(jnp.asarray(key))
    if jnp.shape(typed) != ():
        raise ValueError(f"add_noise: {name} must be a single PRNG key (shape ()), got shape {jnp.shape(typed)}")
    return jax.random.key_data(typed), str(jax.random.key_impl(typed))


def add_noise(eta: Any, gamma: Any, key: Any = None, *, seed: Any = None) -> AddNoise:
    """Annealed Gaussian gradient noise (Neelakantan et al., 2015): u ← g + N(0, σ_t²).

    σ_t² = eta / (1 + t)^gamma, where t = 0, 1, 2, ... is the number of updates done before the current
    one: the first update adds noise of variance ``eta``, the same numbers as ``optax.add_noise`` (which
    writes eta / t^gamma with t counting from 1). The paper's η ∈ {0.01, 0.3, 1.0} with γ = 0.55 (seed 003:
    noise helps to leave saddle points and poor local minima).

    The key is held in the state and split at every update, so the noise is a deterministic function of
    ``key`` and differs from step to step. Without a key or seed, key 0 is used with a warning, as in
    optax (every such run draws the same noise). Noise is drawn in float32 (float64 for float64 updates)
    and the noisy updates are returned in the gradient's dtype; optax draws bfloat16 noise for bfloat16
    gradients.

    Args:
      eta: base variance η ≥ 0 (a number, an array or a schedule).
      gamma: annealing exponent γ ≥ 0.
      key: a ``jax.random.key``, a raw uint32 key (``jax.random.PRNGKey``) or an integer seed.
      seed: an integer seed, accepted in place of ``key`` (optax's older argument).

    Returns:
      An :class:`AddNoise` transform whose state is :class:`AddNoiseState`.

    Raises:
      ValueError: if both ``key`` and ``seed`` are given, or eta/gamma are out of range.
      TypeError: if ``key`` is neither a key nor an integer seed.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.transforms.noise import add_noise
      >>> tx = add_noise(eta=0.01, gamma=0.55, key=0)
      >>> g = jnp.zeros(20000)
      >>> state = tx.init(g)
      >>> noisy, state = tx.update(g, state)
      >>> round(float(jnp.var(noisy)), 3)  # σ_0² = eta
      0.01
      >>> noisy_again, _ = tx.update(g, tx.init(g))
      >>> bool(jnp.all(noisy == noisy_again))  # same key, same noise
      True
    """
    check_range("add_noise", "eta", eta, 0.0, math.inf)
    check_range("add_noise", "gamma", gamma, 0.0, math.inf)
    if key is None and seed is None:
        warnings.warn(
            "add_noise: no key given, so key 0 is used (as optax does); pass key=jax.random.key(...) or an "
            "integer seed for noise of your own",
            UserWarning,
            stacklevel=2,
        )
        key = 0
    if key is not None and seed is not None:
        raise ValueError("add_noise: pass only one of key and seed")
    data, impl = _key_data("key", key) if key is not None else _key_data("seed", seed)
    return AddNoise(eta, gamma, data, impl)
