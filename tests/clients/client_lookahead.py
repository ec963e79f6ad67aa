"""Lookahead around Adam on a small plain-JAX MLP, after optax's "Lookahead optimizer on MNIST" example.

Params are ``optax.LookaheadParams.init_synced(params)``; the gradient is taken at ``params.fast`` and
``solver.update(grads, state, params)`` returns updates for both the fast and the slow weights.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax

LEARNING_RATE = 0.02
SYNC_PERIOD = 4
SLOW_LEARNING_RATE = 0.5


def init_mlp(key, sizes=(6, 12, 3)):
    params = []
    for din, dout in itertools.pairwise(sizes):
        key, sub = jax.random.split(key)
        params.append({"w": jax.random.normal(sub, (din, dout)) / jnp.sqrt(din), "b": jnp.zeros(dout)})
    return params


def predict(params, x):
    for layer in params[:-1]:
        x = jax.nn.gelu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def loss_fn(params, batch):
    logits = predict(params, batch["x"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def main(steps: int = 14) -> dict:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 6)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 1).astype(np.int32)
    data = {"x": jnp.asarray(x), "y": jnp.asarray(y)}

    fast_solver = optax.adam(LEARNING_RATE)
    solver = optax.lookahead(fast_solver, sync_period=SYNC_PERIOD, slow_step_size=SLOW_LEARNING_RATE)
    params = optax.LookaheadParams.init_synced(init_mlp(jax.random.PRNGKey(0)))
    solver_state = solver.init(params)

    @jax.jit
    def train_step(params, solver_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params.fast, batch)
        updates, solver_state = solver.update(grads, solver_state, params)
        params = optax.apply_updates(params, updates)
        return params, solver_state, loss

    eval_loss = jax.jit(loss_fn)
    losses, slow_losses, steps_since_sync = [], [], []
    for step in range(steps):
        batch = {k: v[(step % 3) * 16 : (step % 3) * 16 + 16] for k, v in data.items()}
        params, solver_state, loss = train_step(params, solver_state, batch)
        losses.append(float(loss))
        slow_losses.append(float(eval_loss(params.slow, data)))
        steps_since_sync.append(int(solver_state.steps_since_sync))

    return {
        "losses": np.asarray(losses, np.float32),
        "slow_losses": np.asarray(slow_losses, np.float32),
        "steps_since_sync": np.asarray(steps_since_sync),
        "fast": np.concatenate([np.ravel(p) for p in jax.tree.leaves(params.fast)]),
        "slow": np.concatenate([np.ravel(p) for p in jax.tree.leaves(params.slow)]),
        "fast_state_count": np.asarray(solver_state.fast_state[0].count),
        "fast_state_mu": np.ravel(solver_state.fast_state[0].mu[0]["w"]),
        "params_type": type(params).__name__,
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
