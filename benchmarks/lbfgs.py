"""Wall time of a whole L-BFGS solve to ‖∇f‖ < tol: gradflow against scipy and optax.

Usage: python benchmarks/lbfgs.py [--dims 1000] [--repeats 15] [--tol 1e-6] [--quick] [--out benchmarks/results]

On the 2-D Rosenbrock function from (−1.2, 1) and the extended Rosenbrock function of ``--dims`` variables
(Moré, Garbow & Hillstrom 1981, problem 21: Σᵢ 100(x₂ᵢ − x₂ᵢ₋₁²)² + (1 − x₂ᵢ₋₁)², from (−1.2, 1, −1.2, 1, ...)),
in float64 on jax's default device, it times

- gradflow: ``minimize(f, x0, lbfgs(), tol=tol)``, the whole solve in one compiled ``lax.while_loop`` (memory 10,
  zoom line search with first trial 1, the line search's last value and gradient reused);
- optax: ``optax.lbfgs()`` (the same rule) driven by its own jitted ``lax.while_loop``, as in optax's documentation
  (``optax.value_and_grad_from_state``, stop when the stored gradient's norm is below tol);
- scipy: ``scipy.optimize.minimize(method="L-BFGS-B")`` (memory 10, Moré-Thuente line search), with f and ∇f a
  jitted ``jax.value_and_grad`` (``scipy + jax``) and hand-written NumPy (``scipy + numpy``); a callback stops it at
  the same rule ‖∇f‖₂ < tol (its own tests are switched off: ``ftol=0``, ``gtol=0``).

Each row is the median wall time of ``--repeats`` solves after one warm-up solve (the first, compiling, solve is
kept apart as "first call"). Ratios are gradflow's median over the other's (below 1: gradflow is faster).
Prints a markdown table and writes it to OUT/lbfgs.md, and every number to OUT/lbfgs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize  # noqa: E402
from harness import environment  # noqa: E402

from gradflow.second_order import lbfgs, minimize  # noqa: E402

MAX_STEPS = 10_000


# --- problems --------------------------------------------------------------------------------------------------------


def extended_rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return jnp.sum(100.0 * (even - odd**2) ** 2 + (1.0 - odd) ** 2)


def numpy_extended_rosenbrock(x):
    """Value and gradient in NumPy."""
    odd, even = x[0::2], x[1::2]
    r = even - odd**2
    grad = np.empty_like(x)
    grad[0::2] = -400.0 * r * odd - 2.0 * (1.0 - odd)
    grad[1::2] = 200.0 * r
    return float(np.sum(100.0 * r**2 + (1.0 - odd) ** 2)), grad


def problems(dims: int) -> dict:
    start = lambda n: np.tile([-1.2, 1.0], n // 2)
    return {
        "rosenbrock 2-D": {"fun": extended_rosenbrock, "numpy": numpy_extended_rosenbrock, "x0": start(2)},
        f"extended rosenbrock {dims:,}-D": {
            "fun": extended_rosenbrock,
            "numpy": numpy_extended_rosenbrock,
            "x0": start(dims),
        },
    }


# --- solvers ---------------------------------------------------------------------------------------------------------


def gradflow_solver(fun, tol):
    tx = lbfgs()

    def solve(x0):
        result = minimize(fun, x0, tx, max_steps=MAX_STEPS, tol=tol)
        result = jax.block_until_ready(result)
        return np.asarray(result.params), int(result.num_steps)

    return solve


def optax_solver(fun, tol):
    """optax.lbfgs in the jitted while loop of optax's documentation."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=fun)
        return optax.apply_updates(params, updates), state

    def keep_going(carry):
        _, state = carry
        count = optax.tree.get(state, "count")
        grad = optax.tree.get(state, "grad")
        return (count == 0) | ((count < MAX_STEPS) & (optax.tree.norm(grad) >= tol))

    @jax.jit
    def run(x0):
        return jax.lax.while_loop(keep_going, step, (x0, opt.init(x0)))

    def solve(x0):
        params, state = jax.block_until_ready(run(x0))
        return np.asarray(params), int(optax.tree.get(state, "count"))

    return solve


def scipy_solver(value_and_grad, tol):
    """L-BFGS-B with f and ∇f from ``value_and_grad`` (NumPy in, (float, array) out), stopped at ‖∇f‖₂ < tol."""

    def solve(x0):
        last = {}

        def fun(x):
            value, grad = value_and_grad(x)
            last["x"], last["grad"] = x.copy(), grad
            return value, grad

        def callback(intermediate_result):
            x = intermediate_result.x
            grad = last["grad"] if np.array_equal(x, last["x"]) else value_and_grad(x)[1]
            if np.linalg.norm(grad) < tol:
                raise StopIteration

        options = {"maxiter": MAX_STEPS, "ftol": 0.0, "gtol": 0.0, "maxcor": 10}
        result = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", callback=callback, options=options)
        return np.asarray(result.x), int(result.nit)

    return solve


def jax_value_and_grad(fun):
    compiled = jax.jit(jax.value_and_grad(fun))

    def value_and_grad(x):
        value, grad = compiled(jnp.asarray(x))
        return float(value), np.asarray(grad)

    return value_and_grad


# --- timing ----------------------------------------------------------------------------------------------------------


def time_solver(solve, x0, repeats: int, fun) -> dict:
    start = time.perf_counter()
    params, steps = solve(x0)
    first = time.perf_counter() - start
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, steps = solve(x0)
        samples.append(time.perf_counter() - start)
    grad = np.asarray(jax.grad(fun)(jnp.asarray(params)))
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "samples_s": samples,
        "first_call_s": first,
        "iterations": steps,
        "final_value": float(fun(jnp.asarray(params))),
        "final_grad_norm": float(np.linalg.norm(grad)),
        "distance_to_minimiser": float(np.linalg.norm(params - 1.0)),
    }


def run_problem(name: str, problem: dict, tol: float, repeats: int) -> list[dict]:
    fun, x0 = problem["fun"], problem["x0"]
    solvers = {
        "gradflow": gradflow_solver(fun, tol),
        "optax": optax_solver(fun, tol),
        "scipy + jax": scipy_solver(jax_value_and_grad(fun), tol),
        "scipy + numpy": scipy_solver(problem["numpy"], tol),
    }
    rows = []
    for solver_name, solve in solvers.items():
        row = {"problem": name, "dims": len(x0), "solver": solver_name, **time_solver(solve, x0, repeats, fun)}
        rows.append(row)
        print(
            f"{name:>28} | {solver_name:>14} | {1e3 * row['median_s']:9.3f} ms | {row['iterations']:4d} iterations | "
            f"‖g‖ {row['final_grad_norm']:.1e}",
            flush=True,
        )
    return rows


# --- report ----------------------------------------------------------------------------------------------------------


def ratios(rows: list[dict]) -> list[dict]:
    out = []
    for problem in dict.fromkeys(row["problem"] for row in rows):
        by_solver = {row["solver"]: row for row in rows if row["problem"] == problem}
        ours = by_solver["gradflow"]["median_s"]
        entry = {"problem": problem}
        for other in ("optax", "scipy + jax", "scipy + numpy"):
            entry[f"gradflow / {other}"] = ours / by_solver[other]["median_s"]
        out.append(entry)
    return out


def markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(x) + " |" for x in lines]


def report(results: dict) -> str:
    meta = results["meta"]
    rows = [
        [
            r["problem"],
            r["solver"],
            f"{1e3 * r['median_s']:.3f}",
            f"{1e3 * r['min_s']:.3f}",
            f"{1e3 * r['first_call_s']:.0f}",
            str(r["iterations"]),
            f"{r['final_grad_norm']:.1e}",
            f"{r['distance_to_minimiser']:.1e}",
        ]
        for r in results["rows"]
    ]
    ratio_columns = ["gradflow / optax", "gradflow / scipy + jax", "gradflow / scipy + numpy"]
    ratio_rows = [[r["problem"], *(f"{r[c]:.2f}" for c in ratio_columns)] for r in results["ratios"]]
    lines = [
        "# L-BFGS to ‖∇f‖ < tol: gradflow, optax, scipy",
        "",
        f"{meta['date']}; {meta['platform']} ({', '.join(meta['devices'])}), {meta['cpu_count']} CPUs; "
        f"jax {meta['jax']}, optax {meta['optax']}, scipy {meta['scipy']}, "
        f"gradflow {meta['gradflow']} ({meta['git_commit']}). float64; "
        f"tol = {meta['tol']:g} on the Euclidean norm of the gradient. Median of {meta['repeats']} solves after one "
        f"warm-up solve. Load average (1 min) at start {meta['load_average_at_start'][0]:.2f}, at end "
        f"{meta['load_average_at_end'][0]:.2f}; total {meta['total_s']:.0f} s.",
        "",
        "gradflow: `minimize(f, x0, lbfgs(), tol=tol)`, one compiled while loop; optax: `optax.lbfgs()` in the jitted "
        "while loop of its documentation; scipy: `minimize(method='L-BFGS-B')` with f and ∇f from a jitted "
        "`jax.value_and_grad` or from NumPy, stopped by a callback at the same rule. gradflow and optax apply the same "
        "rule (memory 10, zoom line search, first trial 1); scipy's L-BFGS-B uses the Moré-Thuente line search.",
        "",
        "## Solve time",
        "",
        *markdown_table(
            ["problem", "solver", "median (ms)", "min (ms)", "first call (ms)", "iterations", "final ‖∇f‖", "‖x − x*‖"],
            rows,
        ),
        "",
        "## Ratios (gradflow's median over the other's; below 1 means gradflow is faster)",
        "",
        *markdown_table(["problem", *ratio_columns], ratio_rows),
    ]
    return "\n".join(lines) + "\n"


def metadata(args) -> dict:
    return {**environment(), "scipy": scipy.__version__, "dims": args.dims, "tol": args.tol, "repeats": args.repeats}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=1000, help="variables of the extended Rosenbrock (even)")
    parser.add_argument("--repeats", type=int, default=None, help="timed solves per row (default 15; 3 with --quick)")
    parser.add_argument("--tol", type=float, default=1e-6, help="stop when ‖∇f‖₂ < tol")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats, 100 variables unless --dims")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="folder for .json, .md")
    args = parser.parse_args()
    if args.dims % 2:
        parser.error("--dims must be even")
    if args.quick and args.dims == parser.get_default("dims"):
        args.dims = 100
    args.repeats = args.repeats or (3 if args.quick else 15)
    return args


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    results = {"meta": metadata(args)}
    rows = []
    for name, problem in problems(args.dims).items():
        rows += run_problem(name, problem, args.tol, args.repeats)
    results["rows"] = rows
    results["ratios"] = ratios(rows)
    results["meta"]["total_s"] = time.perf_counter() - start
    results["meta"]["load_average_at_end"] = os.getloadavg()
    text = report(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lbfgs.md").write_text(text)
    (args.out / "lbfgs.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
