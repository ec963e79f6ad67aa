"""Wall time of gradflow.check_grads in directions mode on a model with about a million parameters.

Usage: python benchmarks/gradcheck_directions.py [--repeats 3] [--directions 16] [--x64]
Prints the median wall time of whole check_grads calls (compilation included: each call traces the
loss afresh, as a user's call does) and, for scale, of one jitted loss+gradient evaluation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np


def build(seed: int = 0, width: int = 1000, dtype=jnp.float32):
    """A two-layer MLP with 1000×1000 + 1000×1 weights (1,002,001 parameters) and a fixed batch."""
    rng = np.random.default_rng(seed)
    params = {
        "hidden": {"w": jnp.asarray(rng.normal(size=(width, width)) / np.sqrt(width), dtype),
                   "b": jnp.zeros(width, dtype)},
        "out": {"w": jnp.asarray(rng.normal(size=(width, 1)) / np.sqrt(width), dtype), "b": jnp.zeros(1, dtype)},
    }  # fmt: skip
    inputs = jnp.asarray(rng.normal(size=(64, width)), dtype)
    targets = jnp.asarray(rng.normal(size=(64, 1)), dtype)

    def loss(p):
        hidden = jnp.tanh(inputs @ p["hidden"]["w"] + p["hidden"]["b"])
        return jnp.mean((hidden @ p["out"]["w"] + p["out"]["b"] - targets) ** 2)

    return params, loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--directions", type=int, default=16)
    parser.add_argument("--x64", action="store_true", help="check in float64")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.x64)

    import gradflow

    params, loss = build(dtype=jnp.float64 if args.x64 else jnp.float32)
    n = sum(x.size for x in jax.tree.leaves(params))
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    jax.block_until_ready(value_and_grad(params))
    start = time.perf_counter()
    jax.block_until_ready(value_and_grad(params))
    one_gradient = time.perf_counter() - start

    times, report = [], None
    for _ in range(args.repeats):
        start = time.perf_counter()
        report = gradflow.check_grads(loss, params, mode="directions", num_directions=args.directions)
        times.append(time.perf_counter() - start)
    print(report)
    print(
        f"{n:,} parameters, {args.directions} directions, {jax.devices()[0].platform}: check_grads median "
        f"{statistics.median(times):.2f} s over {args.repeats} calls (min {min(times):.2f} s); "
        f"one jitted loss+gradient {one_gradient * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
