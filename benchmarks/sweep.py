"""Cost per optimizer step of a small experiment: Python loops against one compiled run and one sweep.

The workload of the seeds' figures: Adam on the 2-D Rosenbrock function. Each row times ``steps``
steps after a warm-up call (compilation excluded) and reports the median over ``--repeats``:

- optax / gradflow, Python loop: a jitted step called once per step (the usual training loop);
- torch.optim.Adam, Python loop (skipped when torch is missing);
- optax / gradflow, one program: the whole loop in ``lax.scan`` (optax via a hand-written scan);
- optax / gradflow, sweep: 256 learning rates vmapped in one program (optax through
  ``inject_hyperparams``; gradflow through ``experiments.sweep``), per configuration-step.

``python benchmarks/sweep.py`` writes benchmarks/results/sweep.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradflow as gf
from gradflow.experiments import LANDSCAPES, optimizer_grid, run, sweep

ROSENBROCK = LANDSCAPES["rosenbrock"]


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up: compiles
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        jax.block_until_ready(call())
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def python_loop(tx, steps: int):
    grad = jax.grad(ROSENBROCK.fn)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    def call():
        params = jnp.asarray(ROSENBROCK.start, jnp.float32)
        state = tx.init(params)
        for _ in range(steps):
            params, state = step(params, state)
        return params

    return call


def optax_scan(learning_rates, steps: int):
    """optax's whole loop in one program; with a batch of learning rates, vmapped via inject_hyperparams."""
    grad = jax.grad(ROSENBROCK.fn)

    def one(learning_rate):
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)

        def body(carry, _):
            params, state = carry
            updates, state = tx.update(grad(params), state, params)
            return (optax.apply_updates(params, updates), state), ROSENBROCK.fn(params)

        params = jnp.asarray(ROSENBROCK.start, jnp.float32)
        return jax.lax.scan(body, (params, tx.init(params)), length=steps)

    compiled = jax.jit(jax.vmap(one) if jnp.ndim(learning_rates) else one)
    return lambda: compiled(learning_rates)


def torch_loop(steps: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    start = np.asarray(ROSENBROCK.start, np.float32)

    def call():
        params = torch.tensor(start, requires_grad=True)
        opt = torch.optim.Adam([params], lr=1e-2)
        for _ in range(steps):
            opt.zero_grad()
            x, y = params[0], params[1]
            ((1 - x) ** 2 + 100 * (y - x**2) ** 2).backward()
            opt.step()
        return jnp.asarray(params.detach().numpy())

    return call


def measure(steps: int, configs: int, repeats: int) -> list[dict]:
    params = jnp.asarray(ROSENBROCK.start, jnp.float32)
    grid = optimizer_grid(gf.adam, learning_rate=np.logspace(-4, 0, configs))
    rows = [
        ("optax", "Python loop of a jitted step", 1, python_loop(optax.adam(1e-2), steps)),
        ("gradflow", "Python loop of a jitted step", 1, python_loop(gf.adam(1e-2), steps)),
        ("torch", "Python loop (torch.optim.Adam)", 1, torch_loop(steps)),
        ("optax", "one program (lax.scan)", 1, optax_scan(jnp.float32(1e-2), steps)),
        ("gradflow", "one program (experiments.run)", 1,
         lambda: run(ROSENBROCK.fn, params, gf.adam(1e-2), steps=steps).final_params),
        ("optax", f"sweep of {configs} (vmap, inject_hyperparams)", configs,
         optax_scan(jnp.asarray(grid.values["learning_rate"]), steps)),
        ("gradflow", f"sweep of {configs} (experiments.sweep)", configs,
         lambda: sweep(ROSENBROCK.fn, params, grid.txs, steps=steps).final_params),
    ]  # fmt: skip
    results = []
    for library, mode, batch, call in rows:
        if call is None:
            print(f"skipped: {library} {mode} (not installed)")
            continue
        seconds = median_seconds(call, repeats)
        results.append({"library": library, "mode": mode, "configs": batch, "seconds": seconds,
                        "ns_per_config_step": 1e9 * seconds / (batch * steps)})  # fmt: skip
        print(f"{library:<9} {mode:<45} {results[-1]['ns_per_config_step']:>12.1f} ns per config-step", flush=True)
    return results


def markdown(results: list[dict], steps: int, repeats: int) -> str:
    base = next(r for r in results if r["library"] == "optax" and r["mode"].startswith("Python"))
    lines = [
        f"Adam on 2-D Rosenbrock, {steps} steps, median of {repeats} (compilation excluded); "
        f"{platform.processor() or platform.machine()}, jax {jax.__version__}, "
        f"{datetime.date.today().isoformat()}.",
        "",
        "| library | mode | time per configuration-step | speed-up over optax's Python loop |",
        "|---|---|---|---|",
    ]
    for r in results:
        per = r["ns_per_config_step"]
        shown = f"{per / 1000:.1f} µs" if per >= 1000 else f"{per:.1f} ns"
        speedup = base["ns_per_config_step"] / per
        lines.append(f"| {r['library']} | {r['mode']} | {shown} | {speedup:,.0f}× |" if speedup >= 10
                     else f"| {r['library']} | {r['mode']} | {shown} | {speedup:.2g}× |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--configs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sweep"))
    args = parser.parse_args()
    results = measure(args.steps, args.configs, args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "rows": results},
                                                   indent=2))  # fmt: skip
    table = markdown(results, args.steps, args.repeats)
    Path(args.out + ".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
