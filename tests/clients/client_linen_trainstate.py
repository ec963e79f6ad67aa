"""Flax Linen CNN trained with ``flax.training.train_state.TrainState``.

The usual Linen recipe: ``TrainState.create(apply_fn=model.apply, params=..., tx=...)`` with a warmup-cosine
schedule and ``optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(...))``; the loop logs the learning
rate from the step count it reads out of ``state.opt_state``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state


class CNN(nn.Module):
    num_classes: int = 4

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(features=4, kernel_size=(3, 3))(x)
        x = nn.relu(x)
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(features=16)(x)
        x = nn.relu(x)
        return nn.Dense(features=self.num_classes)(x)


def create_train_state(rng, learning_rate_fn, weight_decay):
    model = CNN()
    params = model.init(rng, jnp.ones([1, 8, 8, 1]))["params"]
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(learning_rate=learning_rate_fn, weight_decay=weight_decay),
    )
    return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


@jax.jit
def train_step(state, batch):
    def loss_fn(params):
        logits = state.apply_fn({"params": params}, batch["image"])
        one_hot = jax.nn.one_hot(batch["label"], 4)
        loss = optax.softmax_cross_entropy(logits=logits, labels=one_hot).mean()
        return loss, logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    metrics = {
        "loss": loss,
        "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
        "grad_norm": optax.global_norm(grads),
    }
    return state, metrics


def make_data(n=32, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    images = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    # a class-dependent bright quadrant so there is something to learn
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        images[i, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4, 0] += 2.0
    return {"image": jnp.asarray(images), "label": jnp.asarray(labels, jnp.int32)}


def main(steps: int = 10) -> dict:
    data = make_data()
    learning_rate_fn = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=1e-2, warmup_steps=3, decay_steps=steps, end_value=1e-3
    )
    state = create_train_state(jax.random.PRNGKey(0), learning_rate_fn, weight_decay=1e-2)

    history = {"loss": [], "accuracy": [], "grad_norm": [], "lr": [], "adam_count": []}
    for step in range(steps):
        batch = {k: v[(step % 4) * 8 : (step % 4) * 8 + 8] for k, v in data.items()}
        state, metrics = train_step(state, batch)
        for key in ("loss", "accuracy", "grad_norm"):
            history[key].append(float(metrics[key]))
        # state.opt_state = (clip state, adamw state); adamw's first element is ScaleByAdamState
        count = state.opt_state[1][0].count
        history["adam_count"].append(int(count))
        history["lr"].append(float(learning_rate_fn(count)))

    counts = optax.tree_utils.tree_get_all_with_path(state.opt_state, "count")
    result = {key: np.asarray(value, np.float32) for key, value in history.items()}
    result.update(
        {
            "step": np.asarray(state.step),
            "counts": np.asarray([int(v) for _, v in counts]),
            "count_paths": " ".join(jax.tree_util.keystr(path) for path, _ in counts),
            "mu_dense_bias": np.asarray(state.opt_state[1][0].mu["Dense_1"]["bias"]),
            "nu_conv_kernel": np.ravel(state.opt_state[1][0].nu["Conv_0"]["kernel"]),
            "params": np.concatenate([np.ravel(p) for p in jax.tree.leaves(state.params)]),
            "schedule": np.asarray([learning_rate_fn(i) for i in range(steps + 2)], np.float32),
        }
    )
    return result


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
