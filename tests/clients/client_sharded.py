"""Data-sharded training on a 1-D device mesh: params split over axis ``x``, optimizer state placed alike.

Needs 4 devices; on a CPU run it under ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before jax
is imported). ``tx.init(params)`` on sharded params, ``tree_map_params`` to derive the optimizer-state
shardings from the params' shardings (for ``jit(..., out_shardings=...)``), and a jitted step. The result
records every optimizer-state leaf's sharding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def describe(tree):
    """``path -> sharding`` for every leaf (a NamedSharding's spec, else the sharding's type)."""
    lines = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        sharding = leaf.sharding
        text = str(sharding.spec) if isinstance(sharding, NamedSharding) else type(sharding).__name__
        lines.append(f"{jax.tree_util.keystr(path)}={text}")
    return "\n".join(lines)


def loss_fn(params, x, y):
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return jnp.mean((h @ params["w2"] - y) ** 2)


def main(steps: int = 5) -> dict:
    assert jax.device_count() >= 4, "run with XLA_FLAGS=--xla_force_host_platform_device_count=4"
    mesh = Mesh(np.array(jax.devices()[:4]), ("x",))
    row_sharded = NamedSharding(mesh, P("x"))
    replicated = NamedSharding(mesh, P())

    rng = np.random.default_rng(0)
    params = {
        "w1": rng.normal(size=(8, 16)).astype(np.float32) / 3,
        "b1": np.zeros(16, np.float32),
        "w2": rng.normal(size=(16, 2)).astype(np.float32) / 4,
    }
    param_shardings = {"w1": row_sharded, "b1": row_sharded, "w2": row_sharded}
    params = jax.device_put(params, param_shardings)
    x = jax.device_put(rng.normal(size=(32, 8)).astype(np.float32), row_sharded)
    y = jax.device_put(rng.normal(size=(32, 2)).astype(np.float32), row_sharded)

    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(learning_rate=1e-2, weight_decay=1e-3))
    opt_state = tx.init(params)
    init_shardings = describe(opt_state)

    # The sharding rules of the optimizer state, derived from the params' shardings.
    state_shardings = optax.tree_utils.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        jax.eval_shape(tx.init, params),
        param_shardings,
        transform_non_params=lambda _: replicated,
    )
    opt_state_jit = jax.jit(tx.init, out_shardings=state_shardings)(params)

    @jax.jit
    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for _ in range(steps):
        params, opt_state, loss = train_step(params, opt_state, x, y)
        losses.append(float(loss))

    return {
        "losses": np.asarray(losses, np.float32),
        "params": np.concatenate([np.ravel(np.asarray(p)) for p in jax.tree.leaves(params)]),
        "mu_w1": np.asarray(opt_state[1][0].mu["w1"]),
        "count": np.asarray(opt_state[1][0].count),
        "init_state_shardings": init_shardings,
        "jit_init_state_shardings": describe(opt_state_jit),
        "trained_state_shardings": describe(opt_state),
        "param_shardings": describe(params),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
