"""The training run shared by tests/test_checkpoint.py and the fresh process that resumes it.

Imported by the test (``import checkpoint_resume_worker``) and run as a script by it::

    python tests/checkpoint_resume_worker.py ROOT OUT

which restores the latest checkpoint under ROOT with :mod:`gradflow.checkpoint`, trains to
:data:`TOTAL_STEPS` in this process and writes :func:`encode` of the result to OUT (an ``.npz``).
Everything here is deterministic: the data is a fixed NumPy draw and the step is one jitted program.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradflow
from gradflow import checkpoint

TOTAL_STEPS = 100
RESUME_AT = 50
_BATCHES = 7

_rng = np.random.default_rng(20240607)
INPUTS = _rng.normal(size=(_BATCHES, 5, 4)).astype(np.float32)
TARGETS = _rng.normal(size=(_BATCHES, 5, 3)).astype(np.float32)


@functools.cache  # building it checks the schedule's values eagerly, which takes a second or two on a CPU
def make_optimizer() -> gradflow.Chain:
    """A chain with a schedule, clipping, bfloat16 first moments and two int32 counters (Adam's, the schedule's)."""
    schedule = gradflow.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=0.05, warmup_steps=10, decay_steps=TOTAL_STEPS, end_value=1e-3
    )
    return gradflow.chain(
        gradflow.clip_by_global_norm(1.0),
        gradflow.adamw(schedule, b1=0.9, b2=0.99, mu_dtype=jnp.bfloat16, weight_decay=1e-2),
    )


def init_params() -> dict[str, Any]:
    """Parameters with a float32 matrix, a bfloat16 bias and a float32 scalar."""
    rng = np.random.default_rng(0)
    return {
        "dense": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.zeros(3, jnp.bfloat16)},
        "scale": jnp.asarray(1.0, jnp.float32),
    }


def loss(params: dict[str, Any], x: jax.Array, y: jax.Array) -> jax.Array:
    prediction = jnp.tanh(x @ params["dense"]["w"] + params["dense"]["b"].astype(jnp.float32)) * params["scale"]
    return jnp.mean((prediction - y) ** 2)


@jax.jit
def train_step(tx: Any, params: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple[Any, Any, Any]:
    grads = jax.grad(loss)(params, x, y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return gradflow.apply_updates(params, updates), opt_state, updates


def train(tx: Any, params: Any, opt_state: Any, start: int, stop: int) -> tuple[Any, Any, list[Any]]:
    """Steps ``start, ..., stop - 1`` (step ``i`` reads batch ``i mod 7``); returns every step's updates too."""
    all_updates = []
    for step in range(start, stop):
        batch = step % _BATCHES
        params, opt_state, updates = train_step(tx, params, opt_state, INPUTS[batch], TARGETS[batch])
        all_updates.append(updates)
    return params, opt_state, all_updates


def encode(trees: dict[str, Any]) -> dict[str, np.ndarray]:
    """Each tree's structure (NamedTuple types included), key paths, dtypes and leaf bit patterns, for ``np.savez``."""
    out = {}
    for name, tree in trees.items():
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
        arrays = [np.asarray(leaf) for _, leaf in leaves]
        out[f"{name}.treedef"] = np.array(str(treedef))
        out[f"{name}.paths"] = np.array([jax.tree_util.keystr(path) for path, _ in leaves])
        out[f"{name}.dtypes"] = np.array([str(a.dtype) for a in arrays])
        for i, a in enumerate(arrays):  # the bits, so that bfloat16 survives np.savez and NaN == NaN
            out[f"{name}.leaf{i}"] = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    return out


def main(root: str, out: str) -> None:
    tx = make_optimizer()
    params_like = jax.eval_shape(init_params)  # abstract templates: nothing is computed
    opt_state_like = jax.eval_shape(tx.init, params_like)
    step = checkpoint.latest_step(root)
    if step != RESUME_AT:
        raise SystemExit(f"expected the latest step under {root} to be {RESUME_AT}, found {step}")
    params, opt_state = checkpoint.restore(root, params_like, opt_state_like)
    restored = {"restored_params": params, "restored_state": opt_state}
    params, opt_state, updates = train(tx, params, opt_state, step, TOTAL_STEPS)
    np.savez(out, **encode({**restored, "params": params, "opt_state": opt_state, "first_updates": updates[0]}))


if __name__ == "__main__":
    main(*sys.argv[1:])
