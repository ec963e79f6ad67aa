"""Save params + optimizer state with Orbax, restore them in a later process and keep training.

Usage::

    python client_checkpoint.py save CKPT_DIR      # train 4 steps, checkpoint into CKPT_DIR/step_4
    python client_checkpoint.py restore CKPT_DIR   # restore (template: tx.init(params)), train 4 more
    python client_checkpoint.py full               # 8 steps in one go, for comparison

The optimizer is the common "clip, AdamW with a schedule" chain, so the checkpoint holds a nested state
with counts, moments and empty states.
"""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

SAVE_AT = 4
TOTAL_STEPS = 8


def init_params(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    return {
        "encoder": {"w": jax.random.normal(k1, (5, 12)) * 0.4, "b": jnp.zeros(12)},
        "head": {"w": jax.random.normal(k2, (12, 3)) * 0.3, "b": jax.random.normal(k3, (3,)) * 0.01},
    }


def loss_fn(params, x, y):
    h = jax.nn.silu(x @ params["encoder"]["w"] + params["encoder"]["b"])
    logits = h @ params["head"]["w"] + params["head"]["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def make_optimizer():
    schedule = optax.exponential_decay(init_value=3e-2, transition_steps=2, decay_rate=0.8)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(learning_rate=schedule, weight_decay=1e-4))


def get_batch(step):
    rng = np.random.default_rng(100 + step)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


tx = make_optimizer()


@jax.jit
def train_step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train(params, opt_state, first_step, last_step):
    losses = []
    for step in range(first_step, last_step):
        params, opt_state, loss = train_step(params, opt_state, *get_batch(step))
        losses.append(float(loss))
    return params, opt_state, losses


def summary(params, opt_state, losses):
    return {
        "losses": np.asarray(losses, np.float32),
        "params": np.concatenate([np.ravel(p) for p in jax.tree.leaves(params)]),
        "opt_state_leaves": np.concatenate([np.ravel(np.asarray(s, np.float32)) for s in jax.tree.leaves(opt_state)]),
        "adam_count": np.asarray(opt_state[1][0].count),
    }


def main(command: str = "full", ckpt_dir: str | None = None) -> dict:
    params = init_params()
    checkpointer = ocp.StandardCheckpointer()

    if command == "full":
        return summary(*train(params, tx.init(params), 0, TOTAL_STEPS))

    path = Path(ckpt_dir).absolute() / f"step_{SAVE_AT}"
    if command == "save":
        params, opt_state, losses = train(params, tx.init(params), 0, SAVE_AT)
        checkpointer.save(path, {"params": params, "opt_state": opt_state})
        checkpointer.wait_until_finished()
        return summary(params, opt_state, losses)

    if command == "restore":
        target = {"params": params, "opt_state": tx.init(params)}
        abstract_target = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = checkpointer.restore(path, abstract_target)
        params, opt_state = restored["params"], restored["opt_state"]
        result = {"restored_adam_count": np.asarray(opt_state[1][0].count)}
        result.update(summary(*train(params, opt_state, SAVE_AT, TOTAL_STEPS)))
        return result

    raise ValueError(f"unknown command {command!r}")


if __name__ == "__main__":
    for key, value in main(*sys.argv[1:]).items():
        print(key, value)
