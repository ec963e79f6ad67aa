"""Train one small model four ways on every device JAX sees: data parallel, ZeRO-1, local SGD, EASGD.

The same script runs unchanged on one device, on simulated devices, and on several processes:

    python examples/distributed_training.py
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python examples/distributed_training.py
    python examples/distributed_training.py --num-processes 2 --process-id 0 --coordinator 127.0.0.1:12355 &
    python examples/distributed_training.py --num-processes 2 --process-id 1 --coordinator 127.0.0.1:12355

On a multi-host GPU or TPU cluster, run it once per host with that host's ``--process-id`` and the
first host's address as ``--coordinator`` (on TPU pods and SLURM, ``jax.distributed.initialize()``
finds all three by itself). ``--save out.npz`` writes each method's final params and losses
(``{process}`` in the name is replaced by the process index).
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per method (default 40)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size (default 64)")
    parser.add_argument("--num-processes", type=int, default=1, help="processes in the job (default 1)")
    parser.add_argument("--process-id", type=int, default=0, help="this process's index")
    parser.add_argument("--coordinator", default="127.0.0.1:12355", help="host:port of process 0")
    parser.add_argument("--heartbeat-timeout", type=int, default=100,
                        help="seconds after which a silent peer aborts the job (default 100)")  # fmt: skip
    parser.add_argument("--save", help="write final params and losses to this .npz ({process} is replaced)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_arguments(argv)
    import jax

    if args.num_processes > 1:
        # Before anything else touches JAX: afterwards jax.devices() lists the devices of every process.
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id,
                                   heartbeat_timeout_seconds=args.heartbeat_timeout)  # fmt: skip
    import jax.numpy as jnp
    import numpy as np

    import gradflow as gf
    from gradflow import distributed

    rng = np.random.default_rng(0)  # every process draws the same data and the same initial params
    inputs = rng.normal(size=(args.batch_size * 8, 16)).astype(np.float32)
    teacher = rng.normal(size=(16, 4)).astype(np.float32)
    targets = np.tanh(inputs @ teacher)
    params = {
        "hidden": {"w": jnp.asarray(rng.normal(size=(16, 32)) / 4, jnp.float32), "b": jnp.zeros(32, jnp.float32)},
        "out": {"w": jnp.asarray(rng.normal(size=(32, 4)) / 6, jnp.float32), "b": jnp.zeros(4, jnp.float32)},
    }

    def loss_fn(params, batch):
        hidden = jnp.tanh(batch["x"] @ params["hidden"]["w"] + params["hidden"]["b"])
        prediction = hidden @ params["out"]["w"] + params["out"]["b"]
        return jnp.mean((prediction - batch["y"]) ** 2)

    def batch_at(step):
        rows = slice((step % 8) * args.batch_size, (step % 8 + 1) * args.batch_size)
        return {"x": inputs[rows], "y": targets[rows]}

    mesh = distributed.data_mesh()
    trainers = {
        "data parallel": distributed.DataParallel(loss_fn, gf.adam(1e-2), mesh),
        "ZeRO-1": distributed.DataParallel(loss_fn, gf.adam(1e-2), mesh, shard_optimizer_state=True),
        "local SGD": distributed.LocalSGD(loss_fn, gf.sgd(0.05, momentum=0.9), mesh, every=4),
        "EASGD": distributed.ElasticAveraging(loss_fn, gf.sgd(0.05, momentum=0.9), mesh, every=4),
    }
    rows, saved = [], {}
    for name, trainer in trainers.items():
        print(f"[process {jax.process_index()}] training: {name}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        losses = []
        if isinstance(trainer, distributed.DataParallel):
            trained, state = trainer.init(params)
            for step in range(args.steps):
                trained, state, loss = trainer.step(trained, state, batch_at(step))
                losses.append(float(jax.block_until_ready(loss)))  # wait: see the README on collectives
            state_bytes = distributed.bytes_per_device(state)
        else:
            state = trainer.init(params)
            for step in range(args.steps):
                state, worker_losses = trainer.step(state, batch_at(step))
                losses.append(float(np.mean(distributed.to_host(jax.block_until_ready(worker_losses)))))
            trained, state_bytes = state.center, distributed.bytes_per_device(state.opt_state)
        seconds = time.perf_counter() - start
        rows.append((name, losses[0], losses[-1], state_bytes, seconds))
        key = name.replace(" ", "_").replace("-", "")
        for path, leaf in jax.tree_util.tree_flatten_with_path(distributed.to_host(trained))[0]:
            saved[key + jax.tree_util.keystr(path)] = leaf
        saved[key + "/loss"] = np.asarray(losses)

    if jax.process_index() == 0:
        print(f"{jax.process_count()} process(es), {jax.device_count()} device(s) on mesh axis 'data', "
              f"global batch {args.batch_size}, {args.steps} steps")  # fmt: skip
        print(f"{'method':<14} {'first loss':>11} {'last loss':>11} {'state bytes/device':>19} {'seconds':>8}")
        for name, first, last, state_bytes, seconds in rows:
            print(f"{name:<14} {first:>11.5f} {last:>11.5f} {state_bytes:>19,} {seconds:>8.2f}")
    if args.save:
        np.savez(args.save.format(process=jax.process_index()), **saved)
    if args.num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main()
