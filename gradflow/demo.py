"""``python -m gradflow``: race the seed optimizers on the Rosenbrock and ravine landscapes.

For each optimizer, a grid of learning rates runs as ONE compiled program: the optimizer is pytree
data, so ``jax.vmap`` maps over a batch of optimizers whose learning-rate leaf has a leading axis,
and ``lax.scan`` runs every step inside the program. The best learning rate of the grid is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import gradflow as gf
from gradflow.experiments.landscapes import LANDSCAPES, Landscape, start_point

RACERS: dict[str, Callable] = {
    "sgd": lambda lr: gf.sgd(lr),
    "momentum": lambda lr: gf.sgd(lr, momentum=0.9),
    "nag": lambda lr: gf.nag(lr, momentum=0.9),
    "adagrad": lambda lr: gf.adagrad(lr),
    "rmsprop": lambda lr: gf.rmsprop(lr),
    "adadelta": lambda lr: gf.adadelta(lr),
    "adam": lambda lr: gf.adam(lr),
    "amsgrad": lambda lr: gf.amsgrad(lr),
    "nadam": lambda lr: gf.nadam(lr),
    "adamax": lambda lr: gf.adamax(lr),
    "lion": lambda lr: gf.lion(lr, weight_decay=0.0),
}
TOLERANCE = 1e-6


def race_one(landscape: Landscape, factory: Callable, learning_rates: jax.Array, steps: int) -> np.ndarray:
    """Losses (len(learning_rates), steps) of one optimizer family over a learning-rate grid."""
    grad_fn = jax.grad(landscape.fn)

    def trajectory(tx):
        def body(carry, _):
            params, state = carry
            updates, state = tx.update(grad_fn(params), state, params, grad_fn=grad_fn)
            params = gf.apply_updates(params, updates)
            return (params, state), landscape.fn(params)

        params = start_point(landscape)
        return jax.lax.scan(body, (params, tx.init(params)), length=steps)[1]

    sweep = jax.jit(jax.vmap(lambda lr: trajectory(factory(lr))))
    return np.asarray(sweep(learning_rates))


def summarize(losses: np.ndarray, learning_rates: np.ndarray, minimum_value: float) -> dict:
    """Pick the learning rate whose loss settles below the tolerance first (else the lowest final loss).

    "Steps to 1e-6" counts until the gap to the minimum value stays below 1e-6 for the rest of the
    run, so an optimizer that touches the tolerance and bounces back out does not count as arrived.
    """
    gap = np.where(np.isfinite(losses), losses - minimum_value, np.inf)
    above = gap >= TOLERANCE
    settled = ~above[:, -1]
    last_above = np.where(above.any(axis=1), above.shape[1] - 1 - above[:, ::-1].argmax(axis=1), -1)
    first = np.where(settled, last_above + 2, np.iinfo(np.int64).max)
    best = np.lexsort((gap[:, -1], first))[0]
    return {
        "learning_rate": float(learning_rates[best]),
        "final_loss": float(losses[best, -1]),
        "steps_to_tol": int(first[best]) if settled[best] else None,
    }


def race(landscape: Landscape, names: list[str], steps: int, grid: int = 25) -> list[dict]:
    """Race ``names`` on ``landscape``; one row per optimizer."""
    learning_rates = jnp.logspace(-4, 0, grid)
    rows = []
    for name in names:
        start = time.perf_counter()
        losses = race_one(landscape, RACERS[name], learning_rates, steps)
        seconds = time.perf_counter() - start
        rows.append({"optimizer": name, **summarize(losses, np.asarray(learning_rates), landscape.minimum_value),
                     "seconds": seconds})  # fmt: skip
    return rows


def format_table(landscape: Landscape, rows: list[dict], steps: int, grid: int) -> str:
    lines = [
        f"{landscape.name}: {landscape.description}; start {landscape.start}, {steps} steps, "
        f"best of {grid} learning rates in one vmapped program per optimizer",
        f"{'optimizer':<10} {'best lr':>9} {'final loss':>11} {'steps to 1e-6':>14} {'wall s':>7}",
    ]
    for row in sorted(rows, key=lambda r: (r["steps_to_tol"] is None, r["steps_to_tol"] or 0, r["final_loss"])):
        reached = str(row["steps_to_tol"]) if row["steps_to_tol"] is not None else "—"
        lines.append(
            f"{row['optimizer']:<10} {row['learning_rate']:>9.2e} {row['final_loss']:>11.3e} {reached:>14} "
            f"{row['seconds']:>7.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradflow", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="steps per run (default 3000)")
    parser.add_argument("--grid", type=int, default=25, help="learning rates per optimizer (default 25)")
    parser.add_argument("--optimizers", default=",".join(RACERS), help="comma-separated names")
    parser.add_argument("--landscapes", default=",".join(LANDSCAPES), help="comma-separated names")
    args = parser.parse_args(argv)
    names = [n for n in args.optimizers.split(",") if n]
    unknown = [n for n in names if n not in RACERS]
    unknown_landscapes = [n for n in args.landscapes.split(",") if n not in LANDSCAPES]
    if unknown or unknown_landscapes or args.steps < 1 or args.grid < 1:
        parser.error(
            f"unknown optimizers {unknown} (choose from {', '.join(RACERS)}); "
            f"unknown landscapes {unknown_landscapes} (choose from {', '.join(LANDSCAPES)}); "
            "steps and grid must be >= 1"
        )
    for landscape_name in args.landscapes.split(","):
        landscape = LANDSCAPES[landscape_name]
        rows = race(landscape, names, args.steps, args.grid)
        print(format_table(landscape, rows, args.steps, args.grid), end="\n\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
