"""Training through NaN batches with ``optax.apply_if_finite``, custom transformations and ``optax.tree_utils``.

A hand-written ``optax.GradientTransformation`` with ``optax.EmptyState`` (gradient centralization) and one
with its own NamedTuple state (a gradient-norm tracker) sit in an ``optax.chain`` with Adam, all guarded by
``apply_if_finite``. The loop reads state fields by name and index, uses ``tree_get`` for logging,
``tree_set`` to restart Adam's bias correction, and ``tree_map_params`` to zero the moments between phases.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu


def centralize() -> optax.GradientTransformation:
    """Gradient centralization: subtract the mean over the input axes of every matrix gradient."""

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params

        def center(g):
            if g.ndim > 1:
                return g - g.mean(axis=tuple(range(g.ndim - 1)), keepdims=True)
            return g

        return jax.tree.map(center, updates), state

    return optax.GradientTransformation(init_fn, update_fn)


class GradNormState(NamedTuple):
    last_norm: jax.Array
    max_norm: jax.Array


def track_grad_norm() -> optax.GradientTransformation:
    """Pass the updates through; remember their latest and largest global norm."""

    def init_fn(params):
        del params
        return GradNormState(last_norm=jnp.zeros([], jnp.float32), max_norm=jnp.zeros([], jnp.float32))

    def update_fn(updates, state, params=None):
        del params
        norm = optax.global_norm(updates)
        return updates, GradNormState(last_norm=norm, max_norm=jnp.maximum(state.max_norm, norm))

    return optax.GradientTransformation(init_fn, update_fn)


def loss_fn(params, x, y):
    h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
    pred = h @ params["out"]["kernel"] + params["out"]["bias"]
    return jnp.mean((pred - y) ** 2)


def main(steps: int = 12) -> dict:
    rng = np.random.default_rng(7)
    xs = rng.normal(size=(steps, 8, 4)).astype(np.float32)
    ys = np.sin(xs.sum(-1, keepdims=True)).astype(np.float32)
    xs[3, 0, 0] = np.nan  # a corrupted batch ...
    xs[4, 2, 1] = np.inf  # ... two in a row ...
    xs[9, 5, 2] = np.nan  # ... and a lone one later
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)

    key1, key2 = jax.random.split(jax.random.PRNGKey(42))
    params = {
        "hidden": {"kernel": 0.5 * jax.random.normal(key1, (4, 8)), "bias": jnp.zeros(8)},
        "out": {"kernel": 0.5 * jax.random.normal(key2, (8, 1)), "bias": jnp.zeros(1)},
    }

    tx = optax.apply_if_finite(
        optax.chain(centralize(), track_grad_norm(), optax.adam(learning_rate=1e-2)),
        max_consecutive_errors=3,
    )
    opt_state = tx.init(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    log = {"loss": [], "notfinite_count": [], "last_finite": [], "total_notfinite": [], "adam_count": []}
    log.update({"last_norm": [], "max_norm": []})
    for step in range(steps):
        if step == steps // 2:
            # warm restart between two phases: zero Adam's moments and its bias-correction count
            opt_state = otu.tree_map_params(tx, lambda p: jnp.zeros_like(p), opt_state)
            opt_state = otu.tree_set(opt_state, count=jnp.zeros([], jnp.int32))
        params, opt_state, loss = train_step(params, opt_state, xs[step], ys[step])
        log["loss"].append(float(loss))
        log["notfinite_count"].append(int(opt_state.notfinite_count))
        log["last_finite"].append(bool(opt_state.last_finite))
        log["total_notfinite"].append(int(otu.tree_get(opt_state, "total_notfinite")))
        log["adam_count"].append(int(opt_state.inner_state[2][0].count))
        norms = otu.tree_get(opt_state, "GradNormState")
        log["last_norm"].append(float(norms.last_norm))
        log["max_norm"].append(float(norms.max_norm))

    adam_state = opt_state.inner_state[2][0]
    result = {key: np.asarray(value) for key, value in log.items()}
    result["loss"] = result["loss"].astype(np.float32)
    result.update(
        {
            "params": np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)]),
            "all_finite": bool(all(np.isfinite(p).all() for p in jax.tree.leaves(params))),
            "mu_out_kernel": np.ravel(adam_state.mu["out"]["kernel"]),
            "nu_hidden_bias": np.asarray(otu.tree_get(opt_state, "nu")["hidden"]["bias"]),
            "centralize_state": type(opt_state.inner_state[0]).__name__,
            "state_layout": " ".join(
                f"{jax.tree_util.keystr(path)}:{np.asarray(leaf).dtype}{list(np.shape(leaf))}"
                for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]
            ),
        }
    )
    return result


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
