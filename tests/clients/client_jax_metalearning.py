"""Plain-JAX meta-learning of the learning rate, after optax's "Meta-Learning" example.

The inner optimizer is ``optax.inject_hyperparams(optax.sgd)``; the outer loss runs k inner steps after
writing ``sigmoid(eta)`` into ``state.hyperparams["learning_rate"]``, and ``jax.grad`` of the validation
loss with respect to ``eta`` drives an outer ``optax.adam``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax


def make_tasks(num_batches=4, batch_size=16, seed=0):
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=(3,)).astype(np.float32)
    xs = rng.normal(size=(num_batches, batch_size, 3)).astype(np.float32)
    ys = xs @ true_w + 0.1 * rng.normal(size=(num_batches, batch_size)).astype(np.float32)
    return jnp.asarray(xs), jnp.asarray(ys)


def loss(theta, x, y):
    w, b = theta
    return jnp.mean((x @ w + b - y) ** 2)


def main(outer_steps: int = 8, inner_steps: int = 3) -> dict:
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.5)
    meta_opt = optax.adam(learning_rate=0.1)

    def step(theta, state, x, y):
        grad = jax.grad(loss)(theta, x, y)
        updates, state = opt.update(grad, state)
        theta = optax.apply_updates(theta, updates)
        return theta, state

    def outer_loss(eta, theta, state, xs, ys):
        # Overwrite the learning rate stored in the optimizer state.
        state.hyperparams["learning_rate"] = jax.nn.sigmoid(eta)
        for i in range(inner_steps):
            theta, state = step(theta, state, xs[i], ys[i])
        return loss(theta, xs[-1], ys[-1]), (theta, state)

    @jax.jit
    def outer_step(eta, theta, meta_state, state, xs, ys):
        (val_loss, (theta, state)), grad = jax.value_and_grad(outer_loss, has_aux=True)(eta, theta, state, xs, ys)
        meta_updates, meta_state = meta_opt.update(grad, meta_state)
        eta = optax.apply_updates(eta, meta_updates)
        return eta, theta, meta_state, state, val_loss, grad

    xs, ys = make_tasks()
    theta = (jnp.zeros(3), jnp.zeros(()))
    state = opt.init(theta)
    eta = jnp.asarray(-2.0, dtype=jnp.float32)
    meta_state = meta_opt.init(eta)

    etas, learning_rates, val_losses, hypergrads = [], [], [], []
    for _ in range(outer_steps):
        eta, theta, meta_state, state, val_loss, grad = outer_step(eta, theta, meta_state, state, xs, ys)
        etas.append(float(eta))
        learning_rates.append(float(state.hyperparams["learning_rate"]))
        val_losses.append(float(val_loss))
        hypergrads.append(float(grad))

    return {
        "eta": np.asarray(etas, np.float32),
        "learning_rate": np.asarray(learning_rates, np.float32),
        "val_loss": np.asarray(val_losses, np.float32),
        "hypergrad": np.asarray(hypergrads, np.float32),
        "theta": np.concatenate([np.ravel(t) for t in theta]),
        "momentum": float(state.hyperparams["momentum"]),
        "hyperparam_names": " ".join(sorted(state.hyperparams)),
        "trace": np.concatenate([np.ravel(t) for t in jax.tree.leaves(state.inner_state)]),
        "inner_count": np.asarray(state.count),
        "meta_count": np.asarray(meta_state[0].count),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
