"""Cost of a data-parallel training step: gradflow.distributed against the optax step a user writes.

An MLP (``--width`` hidden units, Adam) on a global batch split over ``--devices`` devices (simulated
CPU devices unless the machine has them). Rows, each the median over ``--repeats`` of ``--steps``
steps that wait for every step's result (compilation excluded):

- optax, replicated: ``jax.jit`` of value_and_grad + optax.adam + apply_updates, with params and
  state replicated and the batch split along the mesh's data axis (the usual hand-written step);
- optax, ZeRO-1: the same with the state's out_shardings split as :func:`zero_shardings` lays it out;
- gradflow ``DataParallel`` replicated and ZeRO-1; ``LocalSGD`` (every 1 and 8 steps);
  ``ElasticAveraging`` (every 8 steps).

Every row is also reported as the bytes of optimizer state one device holds.
``python benchmarks/distributed.py`` writes benchmarks/results/distributed.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=8, help="simulated CPU devices (default 8)")
    parser.add_argument("--width", type=int, default=512, help="hidden units (default 512)")
    parser.add_argument("--batch-size", type=int, default=256, help="global batch (default 256)")
    parser.add_argument("--steps", type=int, default=50, help="steps per measurement (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per row (default 5)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "distributed"))
    return parser.parse_args()


def main() -> None:
    args = parse_arguments()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    import gradflow as gf
    from gradflow import distributed

    mesh = distributed.data_mesh()
    rng = np.random.default_rng(0)
    width, features = args.width, 64
    params = {
        "hidden": {"w": jnp.asarray(rng.normal(size=(features, width)) / 8, jnp.float32),
                   "b": jnp.zeros(width, jnp.float32)},
        "out": {"w": jnp.asarray(rng.normal(size=(width, features)) / 16, jnp.float32),
                "b": jnp.zeros(features, jnp.float32)},
    }  # fmt: skip
    host_batch = {"x": rng.normal(size=(args.batch_size, features)).astype(np.float32),
                  "y": rng.normal(size=(args.batch_size, features)).astype(np.float32)}  # fmt: skip
    batch = distributed.shard_batch(host_batch, mesh)

    def loss_fn(params, batch):
        hidden = jnp.tanh(batch["x"] @ params["hidden"]["w"] + params["hidden"]["b"])
        return jnp.mean((hidden @ params["out"]["w"] + params["out"]["b"] - batch["y"]) ** 2)

    def timed(step, carry):
        def loop(carry):
            for _ in range(args.steps):
                carry = step(carry)
                jax.block_until_ready(carry)
            return carry

        carry = loop(carry)  # warm-up: compiles
        samples = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            carry = loop(carry)
            samples.append((time.perf_counter() - began) / args.steps)
        return statistics.median(samples), carry

    def optax_row(shard_state):
        tx = optax.adam(1e-3)
        replicated = NamedSharding(mesh, P())
        placed = distributed.replicate(params, mesh)
        shapes = jax.eval_shape(tx.init, placed)
        layout = (distributed.zero_shardings(shapes, mesh) if shard_state
                  else jax.tree.map(lambda _: replicated, shapes))  # fmt: skip
        state = jax.jit(tx.init, out_shardings=layout)(placed)

        @jax.jit
        def step(params, state, batch):
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            updates, state = tx.update(grads, state, params)
            params = jax.lax.with_sharding_constraint(optax.apply_updates(params, updates), replicated)
            return params, jax.lax.with_sharding_constraint(state, layout), loss

        seconds, (_, state, _) = timed(lambda c: step(c[0], c[1], batch), (placed, state, None))
        return seconds, distributed.bytes_per_device(state)

    def data_parallel_row(shard_state):
        trainer = distributed.DataParallel(loss_fn, gf.adam(1e-3), mesh, shard_optimizer_state=shard_state)
        seconds, (_, state, _) = timed(lambda c: trainer.step(c[0], c[1], batch), (*trainer.init(params), None))
        return seconds, distributed.bytes_per_device(state)

    def workers_row(trainer):
        seconds, (state, _) = timed(lambda c: trainer.step(c[0], batch), (trainer.init(params), None))
        return seconds, distributed.bytes_per_device(state.opt_state)

    rows = {
        "optax, replicated": lambda: optax_row(False),
        "optax, ZeRO-1": lambda: optax_row(True),
        "gradflow DataParallel": lambda: data_parallel_row(False),
        "gradflow DataParallel, ZeRO-1": lambda: data_parallel_row(True),
        "gradflow LocalSGD, every 1": lambda: workers_row(distributed.LocalSGD(loss_fn, gf.adam(1e-3), mesh)),
        "gradflow LocalSGD, every 8": lambda: workers_row(distributed.LocalSGD(loss_fn, gf.adam(1e-3), mesh,
                                                                                every=8)),
        "gradflow EASGD, every 8": lambda: workers_row(distributed.ElasticAveraging(loss_fn, gf.adam(1e-3), mesh,
                                                                                     every=8)),
    }  # fmt: skip
    results = []
    for name, measure in rows.items():
        seconds, state_bytes = measure()
        results.append({"row": name, "seconds_per_step": seconds, "state_bytes_per_device": state_bytes})
        print(f"{name:<32} {seconds * 1e6:>10.1f} µs/step {state_bytes:>12,} state bytes/device", flush=True)

    reference = results[0]["seconds_per_step"]
    lines = [
        f"# Data-parallel step ({datetime.date.today()}, {platform.machine()}, {jax.device_count()} "
        f"{jax.devices()[0].platform} devices)",
        "",
        f"MLP {features}→{width}→{features}, Adam, global batch {args.batch_size}; median of {args.repeats} × "
        f"{args.steps} steps, each waited for.",
        "",
        "| step | µs per step | / optax replicated | optimizer state bytes per device |",
        "|---|---|---|---|",
    ]
    for row in results:
        lines.append(f"| {row['row']} | {row['seconds_per_step'] * 1e6:.1f} | "
                     f"{row['seconds_per_step'] / reference:.2f} | {row['state_bytes_per_device']:,} |")  # fmt: skip
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    Path(args.out + ".json").write_text(json.dumps({"arguments": vars(args), "rows": results}, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
