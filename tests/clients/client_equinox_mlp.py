"""Equinox MLP regression, as in the Equinox "train a network with optax" example.

``optim.init(eqx.filter(model, eqx.is_array))``, ``eqx.filter_value_and_grad``, ``optim.update(..., params)``
and ``eqx.apply_updates`` inside an ``eqx.filter_jit`` step.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax


def get_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 2)).astype(np.float32)
    y = np.sin(3 * x[:, :1]) * np.cos(2 * x[:, 1:]) + 0.05 * rng.normal(size=(n, 1)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def loss(model, x, y):
    pred_y = jax.vmap(model)(x)
    return jnp.mean((y - pred_y) ** 2)


def main(steps: int = 15, learning_rate: float = 3e-3) -> dict:
    x, y = get_data()
    model = eqx.nn.MLP(in_size=2, out_size=1, width_size=16, depth=2, activation=jax.nn.tanh, key=jax.random.PRNGKey(1))

    optim = optax.adam(learning_rate)
    opt_state = optim.init(eqx.filter(model, eqx.is_array))

    @eqx.filter_jit
    def make_step(model, opt_state, x, y):
        loss_value, grads = eqx.filter_value_and_grad(loss)(model, x, y)
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return model, opt_state, loss_value

    losses = []
    for step in range(steps):
        batch = slice((step % 4) * 16, (step % 4) * 16 + 16)
        model, opt_state, loss_value = make_step(model, opt_state, x[batch], y[batch])
        losses.append(loss_value.item())

    @eqx.filter_jit
    def evaluate(model, opt_state, x, y):
        # one more update, applied with optax.apply_updates on the filtered model and with eqx.apply_updates
        params, static = eqx.partition(model, eqx.is_array)
        loss_value, grads = eqx.filter_value_and_grad(loss)(model, x, y)
        updates, _ = optim.update(grads, opt_state, params)
        by_optax = eqx.combine(optax.apply_updates(params, updates), static)
        by_eqx = eqx.apply_updates(model, updates)
        return loss_value, by_optax, by_eqx, jax.vmap(model)(x[:5])

    final_loss, by_optax, by_eqx, prediction = evaluate(model, opt_state, x, y)

    def flat(tree):
        return np.concatenate([np.ravel(p) for p in jax.tree.leaves(eqx.filter(tree, eqx.is_array))])

    return {
        "losses": np.asarray(losses, np.float32),
        "final_loss": float(final_loss),
        "params": flat(model),
        "opt_count": np.asarray(opt_state[0].count),
        "opt_mu_first_weight": np.ravel(opt_state[0].mu.layers[0].weight),
        "opt_nu_last_bias": np.asarray(opt_state[0].nu.layers[-1].bias),
        "apply_updates_optax": flat(by_optax),
        "apply_updates_eqx": flat(by_eqx),
        "prediction": np.asarray(prediction),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
