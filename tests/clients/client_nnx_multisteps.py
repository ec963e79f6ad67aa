"""Flax NNX classifier trained with ``nnx.Optimizer`` and gradient accumulation (``optax.MultiSteps``).

Written the way the Flax NNX tutorials write it: an ``nnx.Module`` MLP, an optax loss, an ``nnx.jit`` train
step that calls ``optimizer.update(model, grads)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, din: int, dmid: int, dout: int, *, rngs: nnx.Rngs):
        self.linear1 = nnx.Linear(din, dmid, rngs=rngs)
        self.linear2 = nnx.Linear(dmid, dout, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.linear1(x))
        return self.linear2(x)


def loss_fn(model: MLP, batch):
    logits = model(batch["x"])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits=logits, labels=batch["y"]).mean()
    return loss, logits


@nnx.jit
def train_step(model: MLP, optimizer: nnx.Optimizer, metrics: nnx.MultiMetric, batch):
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, logits), grads = grad_fn(model, batch)
    metrics.update(loss=loss, logits=logits, labels=batch["y"])
    optimizer.update(model, grads)
    return loss


def make_data(n=64, din=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, din)).astype(np.float32) * 2
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, din)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y, dtype=jnp.int32)


def main(steps: int = 12, batch_size: int = 16) -> dict:
    x, y = make_data()
    model = MLP(8, 16, 3, rngs=nnx.Rngs(0))
    tx = optax.MultiSteps(optax.adam(learning_rate=5e-2), every_k_schedule=3)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    metrics = nnx.MultiMetric(accuracy=nnx.metrics.Accuracy(), loss=nnx.metrics.Average("loss"))

    losses, mini_steps, gradient_steps = [], [], []
    for step in range(steps):
        start = (step * batch_size) % x.shape[0]
        batch = {"x": x[start : start + batch_size], "y": y[start : start + batch_size]}
        losses.append(float(train_step(model, optimizer, metrics, batch)))
        mini_steps.append(int(optimizer.opt_state.mini_step[...]))
        gradient_steps.append(int(optimizer.opt_state.gradient_step[...]))

    computed = metrics.compute()
    params = nnx.state(model, nnx.Param)
    adam_state = optimizer.opt_state.inner_opt_state[0]
    return {
        "losses": np.asarray(losses, np.float32),
        "mini_step": np.asarray(mini_steps),
        "gradient_step": np.asarray(gradient_steps),
        "optimizer_step": np.asarray(optimizer.step[...]),
        "inner_adam_count": np.asarray(adam_state.count[...]),
        "inner_adam_mu_kernel": np.asarray(adam_state.mu["linear1"]["kernel"][...]),
        "acc_grads_bias": np.asarray(optimizer.opt_state.acc_grads["linear2"]["bias"][...]),
        "accuracy": float(computed["accuracy"]),
        "mean_loss": float(computed["loss"]),
        "params": np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)]),
        "logits": np.asarray(model(x[:4])),
    }


if __name__ == "__main__":
    for key, value in main().items():
        print(key, value)
