"""Every row of the speed issue in one run: gradflow against optax (and torch.optim where it applies).

Usage: python benchmarks/speed.py [--profile full|quick|gpu] [--quick] [--rows loop,run,sweep,step,compile,memory]
       [--repeats N] [--budget SECONDS] [--out FOLDER]

Rows (each compared row is measured in rounds that alternate gradflow and optax, see harness.interleaved):

- loop: Adam on 2-D Rosenbrock, a Python loop of a jitted step, per call: optax (tx closed over), gradflow closed
  over, gradflow with the optimizer as a jit argument (the README's way), torch.optim.Adam;
- run: the whole run in one program, per step: ``experiments.run`` against a hand-written optax ``lax.scan`` that
  records what ``run`` records by default (the loss before every step, the final params, state and loss);
- sweep: 256 learning rates in one program, per configuration-step: ``experiments.sweep`` against optax's
  ``vmap`` over ``inject_hyperparams(adam)`` in the same hand-written scan;
- step: one Adam step per call with params and state donated on each layout (500 × 8,192 and 1 × 16M): optax,
  gradflow closed over, gradflow with the optimizer as a jit argument, torch.optim foreach and fused;
- compile: trace, lower and XLA-compile times of that step for Adam and for
  ``chain(clip_by_global_norm(1.0), adamw(1e-3))`` on 500 and 2,000 leaves (abstract arguments, caches cleared,
  the persistent compilation cache off; the 2,000-leaf programs are compiled once each, and Adam's there only
  traced and lowered: the issue's goal for it is on those stages);
- memory: XLA's buffer assignment of the donated step programs (``compiled.memory_analysis()``).

Writes OUT/speed.json (every sample) and OUT/speed.md (mode, optax, gradflow, ratio, goal, met?); OUT defaults to
``$OUT`` when that is set, else benchmarks/results. ``--quick`` (the quick profile) is a smoke run of about 1 minute
on 2 CPU cores; the full profile about 8 minutes there when the machine is otherwise idle (17 minutes at a load
average of 9-16), and rows that would start after its 720 s budget (``--budget``) are skipped and listed;
``benchmarks/gpu.sh`` runs the gpu profile.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradflow as gf
from gradflow.experiments import LANDSCAPES, optimizer_grid, run, sweep

sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    RESULTS,
    abstract_tree,
    copy_tree,
    donated_call,
    environment,
    import_torch,
    interleaved,
    make_tree,
    markdown_table,
    memory,
    staged_compile,
    step_of,
    torch_step_calls,
)

ROSENBROCK = LANDSCAPES["rosenbrock"]
ROWS = ("loop", "run", "sweep", "step", "compile", "memory")
OPTIMIZERS = {
    "adam": {"jax": lambda lib: lib.adam(1e-3), "label": "Adam", "torch": ("Adam", {"lr": 1e-3})},
    "clip_adamw": {
        "jax": lambda lib: lib.chain(lib.clip_by_global_norm(1.0), lib.adamw(1e-3)),
        "label": "clip_by_global_norm + adamw",
        "torch": ("AdamW", {"lr": 1e-3}),
    },
}
LIBRARIES = {"optax": optax, "gradflow": gf}
# the jitted variants of a step: (library, optimizer passed as a jit argument?)
VARIANTS = {
    "optax": ("optax", False),
    "gradflow": ("gradflow", False),
    "gradflow (tx as jit argument)": ("gradflow", True),
}

PROFILES = {
    "quick": {
        "loop_calls": 200, "loop_repeats": 5, "run_steps": 2000, "run_repeats": 5, "run_per_sample": 10,
        "configs": 256, "sweep_repeats": 5, "sweep_per_sample": 2, "layouts": [(100, 8192), (1, 1_000_000)],
        "step_repeats": 10, "compile_leaves": [100], "compile_repeats": {100: 1}, "compile_size": 8192,
        "budget_s": 300,
    },
    "full": {
        "loop_calls": 2000, "loop_repeats": 5, "run_steps": 2000, "run_repeats": 15, "run_per_sample": 10,
        "configs": 256, "sweep_repeats": 7, "sweep_per_sample": 3, "layouts": [(500, 8192), (1, 16_000_000)],
        "step_repeats": 20, "compile_leaves": [500, 2000], "compile_repeats": {500: 3, 2000: 1},
        "compile_size": 8192, "trace_only": [("adam", 2000)], "budget_s": 720,
    },
    "gpu": {
        "loop_calls": 2000, "loop_repeats": 5, "run_steps": 2000, "run_repeats": 15, "run_per_sample": 10,
        "configs": 256, "sweep_repeats": 7, "sweep_per_sample": 3,
        "layouts": [(500, 8192), (1, 16_000_000), (1, 256_000_000)], "step_repeats": 50,
        "compile_leaves": [500, 2000], "compile_repeats": {500: 2, 2000: 1}, "compile_size": 8192,
        "trace_only": [("adam", 2000)], "budget_s": 330,
    },
}  # fmt: skip


class Budget:
    """Wall-clock budget of the whole run: a section (or a compile) that would start after it is skipped."""

    def __init__(self, seconds: float):
        self.start, self.seconds, self.skipped = time.perf_counter(), seconds, []

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self, what: str) -> bool:
        if self.elapsed() < self.seconds:
            return True
        self.skipped.append(what)
        print(f"skipped (budget of {self.seconds:g} s spent): {what}", flush=True)
        return False


def line(mode, optax_value, gradflow_value, unit, goal=None, note="", key=None) -> dict:
    """One row of the table: ``ratio`` is gradflow over optax, ``met`` whether it is at most ``goal``."""
    ratio = None if optax_value in (None, 0) or gradflow_value is None else gradflow_value / optax_value
    met = None if goal is None or ratio is None else ratio <= goal
    entry = {"mode": mode, "optax": optax_value, "gradflow": gradflow_value, "unit": unit, "ratio": ratio,
             "goal": goal, "met": met, "note": note, "key": key}  # fmt: skip
    shown = "—" if ratio is None else f"{ratio:.2f}"
    print(f"  {mode}: optax {fmt(optax_value, unit)}, gradflow {fmt(gradflow_value, unit)}, ratio {shown}", flush=True)
    return entry


# --- rows 1-3: Rosenbrock --------------------------------------------------------------------------------------------


def rosenbrock_start():
    return jnp.asarray(ROSENBROCK.start, jnp.float32)


def jitted_step_loop(library, as_argument: bool, calls: int, device_put: bool = False):
    """A Python loop of ``calls`` calls of a jitted Adam step on Rosenbrock; the optimizer closed over or passed
    (with ``device_put``, its hyperparameters put on the device once rather than converted at every call)."""
    tx, grad = library.adam(1e-2), jax.grad(ROSENBROCK.fn)
    if device_put:
        tx = jax.device_put(tx)

    def step(tx, params, state):
        updates, state = tx.update(grad(params), state, params)
        return library.apply_updates(params, updates), state

    params0 = rosenbrock_start()
    state0 = tx.init(params0)
    if as_argument:
        jitted = jax.jit(step)

        def loop():
            params, state = params0, state0
            for _ in range(calls):
                params, state = jitted(tx, params, state)
            return jax.block_until_ready(params)
    else:
        jitted = jax.jit(functools.partial(step, tx))

        def loop():
            params, state = params0, state0
            for _ in range(calls):
                params, state = jitted(params, state)
            return jax.block_until_ready(params)

    return loop


def torch_rosenbrock_loop(torch, calls: int):
    start = np.asarray(ROSENBROCK.start, np.float32)

    def loop():
        params = torch.tensor(start, requires_grad=True)
        opt = torch.optim.Adam([params], lr=1e-2)
        for _ in range(calls):
            opt.zero_grad()
            x, y = params[0], params[1]
            ((1 - x) ** 2 + 100 * (y - x**2) ** 2).backward()
            opt.step()
        return params

    return loop


def loop_rows(profile, repeats, torch, results) -> list[dict]:
    calls_n = profile["loop_calls"]
    calls = {name: jitted_step_loop(LIBRARIES[lib], arg, calls_n) for name, (lib, arg) in VARIANTS.items()}
    calls["gradflow (tx as jit argument, device_put once)"] = jitted_step_loop(gf, True, calls_n, device_put=True)
    if torch is not None:
        torch.set_num_threads(1)  # a 2-element problem: threads only add overhead
        calls["torch.optim.Adam"] = torch_rosenbrock_loop(torch, calls_n)
    timed = interleaved(calls, repeats or profile["loop_repeats"])
    per = {name: t["median_s"] / calls_n for name, t in timed.items()}
    results["samples"]["loop"] = {"calls_per_sample": calls_n, **timed}
    note = (
        f"torch.optim.Adam {fmt(per['torch.optim.Adam'], 's')}" if "torch.optim.Adam" in per else "torch: not installed"
    )
    mode = f"Python loop of a jitted step, per call (Adam, 2-D Rosenbrock, {calls_n} calls)"
    return [
        line(mode + ", tx closed over", per["optax"], per["gradflow"], "s", 0.9, note, "loop"),
        line(mode + ", gradflow's tx as jit argument", per["optax"], per["gradflow (tx as jit argument)"], "s", 0.9,
             "optax's tx closed over", "loop_tx_arg"),
        line(mode + ", gradflow's tx as jit argument after `jax.device_put(tx)`", per["optax"],
             per["gradflow (tx as jit argument, device_put once)"], "s", None,
             "diagnostic, not an issue row: Python-number hyperparameters are converted to arrays at every call",
             "loop_tx_arg_device_put"),
    ]  # fmt: skip


def optax_scan(learning_rates, steps: int):
    """optax's whole run in one program, recording what ``experiments.run`` records by default: the loss before
    every step (one ``value_and_grad`` per step), the final params and state, and the loss at the final params.
    With a batch of learning rates, vmapped through ``inject_hyperparams``."""
    fn = ROSENBROCK.fn

    def one(learning_rate):
        tx = optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)

        def body(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(fn)(params)
            updates, state = tx.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        params = rosenbrock_start()
        (params, state), losses = jax.lax.scan(body, (params, tx.init(params)), length=steps)
        return {"loss": losses, "final_params": params, "final_state": state, "final_loss": fn(params)}

    compiled = jax.jit(jax.vmap(one) if jnp.ndim(learning_rates) else one)
    return lambda: jax.block_until_ready(compiled(learning_rates))


RECORDS = "records the loss before every step, the final params, state and loss (as run does by default)"


def run_rows(profile, repeats, results) -> list[dict]:
    steps, params, tx = profile["run_steps"], rosenbrock_start(), gf.adam(1e-2)
    calls = {
        "optax": optax_scan(jnp.float32(1e-2), steps),
        "gradflow": lambda: jax.block_until_ready(run(ROSENBROCK.fn, params, tx, steps=steps)),
    }
    long = 10 * steps  # the same run 10 times longer: what a step costs once run's fixed cost per call is spread
    calls["optax, long"] = optax_scan(jnp.float32(1e-2), long)
    calls["gradflow, long"] = lambda: jax.block_until_ready(run(ROSENBROCK.fn, params, tx, steps=long))
    per_sample = profile["run_per_sample"]
    timed = interleaved(calls, repeats or profile["run_repeats"], per_sample=per_sample)
    results["samples"]["run"] = {"steps": steps, "long_steps": long, "calls_per_sample": per_sample, **timed}
    mode = f"whole run in one program, per step (`lax.scan` vs `experiments.run`, {steps:,} steps)"
    note = (
        "both "
        + RECORDS.replace("records", "record", 1)
        + "; run's time includes its argument checks and building its History"
    )
    per = {name: t["median_s"] / (long if name.endswith("long") else steps) for name, t in timed.items()}
    fixed = {lib: (timed[lib]["median_s"] - steps * (per[f"{lib}, long"])) for lib in ("optax", "gradflow")}
    diagnostic = (
        f"diagnostic, not an issue row; fixed cost per call (the {steps:,}-step time less {steps:,} long-run "
        f"steps): optax {fmt(fixed['optax'], 's')}, gradflow {fmt(fixed['gradflow'], 's')}"
    )
    return [
        line(mode, per["optax"], per["gradflow"], "s", 0.9, note, "run"),
        line(f"the same, {long:,} steps", per["optax, long"], per["gradflow, long"], "s", None, diagnostic, "run_long"),
    ]


def sweep_rows(profile, repeats, results) -> list[dict]:
    steps, configs, params = profile["run_steps"], profile["configs"], rosenbrock_start()
    grid = optimizer_grid(gf.adam, learning_rate=np.logspace(-4, 0, configs))
    calls = {
        "optax": optax_scan(jnp.asarray(grid.values["learning_rate"], jnp.float32), steps),
        "gradflow": lambda: jax.block_until_ready(sweep(ROSENBROCK.fn, params, grid.txs, steps=steps)),
    }
    per_sample = profile["sweep_per_sample"]
    timed = interleaved(calls, repeats or profile["sweep_repeats"], per_sample=per_sample)
    results["samples"]["sweep"] = {"steps": steps, "configs": configs, "calls_per_sample": per_sample, **timed}
    mode = f"sweep of {configs} learning rates, per config-step (vmap + inject_hyperparams vs `experiments.sweep`)"
    per = [timed[n]["median_s"] / (steps * configs) for n in ("optax", "gradflow")]
    return [line(mode, *per, "s", 0.9, "both " + RECORDS.replace("records", "record", 1), "sweep")]


# --- rows 4-5: one optimizer step on big layouts ---------------------------------------------------------------------


def jitted_step(variant: str, optimizer: str):
    """``(fn, tx, head, donate)`` of a variant: ``fn(*head, params, state, grads)`` with params and state donated."""
    library_name, as_argument = VARIANTS[variant]
    library = LIBRARIES[library_name]
    tx, step = OPTIMIZERS[optimizer]["jax"](library), step_of(library)
    if as_argument:
        return step, tx, (tx,), (1, 2)
    return functools.partial(step, tx), tx, (), (0, 1)


def layout_name(leaves: int, size: int) -> str:
    return f"{leaves:,} × {size:,}"


def step_rows(profile, repeats, torch, results, compiled_programs, budget) -> list[dict]:
    lines = []
    for leaves, size in profile["layouts"]:
        name = layout_name(leaves, size)
        if not budget.allows(f"step {name}"):
            continue
        params = make_tree(jax.random.key(0), leaves, size)
        grads = make_tree(jax.random.key(1), leaves, size, scale=1e-3)
        calls, compile_times = {}, {}
        for variant in VARIANTS:
            fn, tx, head, donate = jitted_step(variant, "adam")
            fresh = copy_tree(params)
            args = [*head, fresh, tx.init(fresh), grads]
            compiled, compile_times[variant] = staged_compile(fn, tuple(args), donate)
            compiled_programs[("adam", leaves, size, variant)] = compiled
            calls[variant] = donated_call(compiled, args, donate)
        torch_note = "torch: not installed"
        if torch is not None and jax.default_backend() != "cpu" and not torch.cuda.is_available():
            torch_note = "torch: no CUDA in this torch, so no comparable row"
        elif torch is not None:
            torch.set_num_threads(os.cpu_count())
            torch_calls = torch_step_calls(torch, *OPTIMIZERS["adam"]["torch"], leaves, size)
            calls.update({f"torch {v}": c for v, c in torch_calls.items() if callable(c)})
            torch_note = "; ".join(f"torch {v}: {c}" for v, c in torch_calls.items() if not callable(c))
        timed = interleaved(calls, repeats or profile["step_repeats"])
        for variant, times in compile_times.items():
            timed[variant]["compile"] = times
        results["samples"][f"step {name}"] = timed
        medians = {k: t["median_s"] for k, t in timed.items()}
        torch_part = ", ".join(f"{k} {fmt(v, 's')}" for k, v in medians.items() if k.startswith("torch"))
        note = "; ".join(filter(None, [torch_part, torch_note]))
        mode = f"Adam, {name}, per-call step (donated)"
        lines.append(line(mode + ", tx closed over", medians["optax"], medians["gradflow"], "s", 0.9, note,
                          f"step {name}"))  # fmt: skip
        lines.append(line(mode + ", gradflow's tx as jit argument", medians["optax"],
                          medians["gradflow (tx as jit argument)"], "s", 0.9, "", f"step {name} tx_arg"))  # fmt: skip
        del params, grads, calls
        gc.collect()
    return lines


# --- row 6: trace, lower, compile ------------------------------------------------------------------------------------


def compile_once(variant: str, optimizer: str, leaves: int, size: int, xla: bool = True):
    """Trace, lower and (with ``xla``) compile a variant's step on abstract arguments after clearing jax's caches."""
    jax.clear_caches()
    gc.collect()
    fn, tx, head, donate = jitted_step(variant, optimizer)
    params = abstract_tree(leaves, size)
    return staged_compile(fn, (*head, params, jax.eval_shape(tx.init, params), params), donate, xla)


def median_of(values: list) -> float | None:
    return None if None in values else float(np.median(values))


def compile_rows(profile, repeats, results, compiled_programs, budget, emit) -> list[dict]:
    """Compile rows, handed to ``emit`` as each optimizer and leaf count is done (a stopped run keeps them)."""
    size, lines = profile["compile_size"], []
    for optimizer in OPTIMIZERS:  # warm-up: the first trace in a process pays for imports and rule registration
        for variant in VARIANTS:
            compile_once(variant, optimizer, 4, 16)
    stages = ("trace_s", "lower_s", "trace_lower_s", "xla_s", "compile_s")
    for leaves in profile["compile_leaves"]:
        for optimizer, spec in OPTIMIZERS.items():
            count = repeats if repeats and leaves == min(profile["compile_leaves"]) else None
            count = count or profile["compile_repeats"].get(leaves, 1)
            times = {variant: [] for variant in VARIANTS}
            names = list(VARIANTS)
            for round_ in range(count):  # rounds alternate the variants, as harness.interleaved does
                shift = round_ % len(names)
                for variant in names[shift:] + names[:shift]:
                    what = f"compile {optimizer} {leaves} leaves {variant}"
                    if not budget.allows(what):
                        continue
                    xla = [optimizer, leaves] not in [list(x) for x in profile.get("trace_only", [])]
                    compiled, stage_times = compile_once(variant, optimizer, leaves, size, xla)
                    times[variant].append(stage_times)
                    # kept only for the memory rows: every program held makes the later compiles of the process slower
                    # (3 clip + adamw programs on 2,000 leaves, kept: 24.5, 27.7, 29.9 s for the same XLA work)
                    if compiled is not None and (optimizer, leaves, size) in memory_targets(profile):
                        compiled_programs[(optimizer, leaves, size, variant)] = compiled
                    del compiled
                    print(f"  {what}: " + ", ".join(f"{k} {v:.2f}" for k, v in stage_times.items() if v), flush=True)
            median = {v: ({s: median_of([t[s] for t in ts]) for s in stages} if ts else None)
                      for v, ts in times.items()}  # fmt: skip
            results["samples"][f"compile {optimizer} {leaves}"] = {"repeats": count, "rounds": times, "median": median}

            compile_goal = 0.5 if optimizer == "clip_adamw" and leaves >= 2000 else 0.9
            if optimizer == "adam" and leaves > 500:
                compile_goal = None  # the issue sets a goal for tracing + lowering only here
            label = f"{spec['label']}, {leaves:,} leaves"
            emit(compile_lines(label, median, count, compile_goal, f"{optimizer} {leaves}"))
    return lines


def compile_lines(label: str, median: dict, count: int, compile_goal, key: str) -> list[dict]:
    """Table rows of one optimizer and leaf count: whole compile, then trace + lower, per gradflow variant."""

    def stage(variant, name):
        return None if median[variant] is None else median[variant][name]

    def both(name, variant):
        return f"optax {fmt(stage('optax', name), 's')}, gradflow {fmt(stage(variant, name), 's')}"

    once = "" if count > 1 else "compiled once each"
    variants = (("gradflow", ""), ("gradflow (tx as jit argument)", ", gradflow's tx as jit argument"))
    lines = []
    for variant, suffix in variants if stage("optax", "compile_s") is not None else ():  # traced and lowered only
        note = "; ".join(filter(None, [f"of which XLA: {both('xla_s', variant)}", once]))
        lines.append(line(f"{label}, compile (trace + lower + XLA){suffix}", stage("optax", "compile_s"),
                          stage(variant, "compile_s"), "s", compile_goal, note,
                          f"compile {key} {variant}"))  # fmt: skip
    for variant, suffix in variants:
        note = f"trace: {both('trace_s', variant)}; lower: {both('lower_s', variant)}"
        lines.append(line(f"{label}, trace + lower{suffix}", stage("optax", "trace_lower_s"),
                          stage(variant, "trace_lower_s"), "s", 1.0, note, f"trace_lower {key} {variant}"))  # fmt: skip
    return lines


# --- row 7: memory ---------------------------------------------------------------------------------------------------


def memory_targets(profile) -> list[tuple[str, int, int]]:
    """``(optimizer, leaves, size)`` of the step programs whose memory is measured."""
    targets = [("adam", leaves, size) for leaves, size in profile["layouts"]]
    return [*targets, ("clip_adamw", min(profile["compile_leaves"]), profile["compile_size"])]


def memory_rows(profile, results, compiled_programs, budget) -> list[dict]:
    """Temporary bytes of each donated step program; met when gradflow's exceed optax's by less than one leaf."""
    lines, stats = [], {}
    for optimizer, leaves, size in memory_targets(profile):
        for variant in VARIANTS:
            key = (optimizer, leaves, size, variant)
            if key not in compiled_programs:
                if not budget.allows(f"memory {key}"):
                    continue
                compiled_programs[key] = compile_once(variant, optimizer, leaves, size)[0]
            stats[key] = memory(compiled_programs[key])
        results["samples"][f"memory {optimizer} {leaves} {size}"] = {v: stats.get((optimizer, leaves, size, v))
                                                                    for v in VARIANTS}  # fmt: skip
        base = stats.get((optimizer, leaves, size, "optax"))
        for variant, suffix in (("gradflow", ""), ("gradflow (tx as jit argument)", ", gradflow's tx as jit argument")):
            mine = stats.get((optimizer, leaves, size, variant))
            if base is None or mine is None:
                continue
            extra = mine["temp"] - base["temp"]
            entry = line(f"{OPTIMIZERS[optimizer]['label']}, {layout_name(leaves, size)}, temporary bytes of a donated "
                         f"step{suffix}", base["temp"], mine["temp"], "B", None,
                         f"peak: optax {fmt(base['peak'], 'B')}, gradflow {fmt(mine['peak'], 'B')}; arguments "
                         f"{fmt(mine['argument'], 'B')}, aliased {fmt(base['alias'], 'B')} / {fmt(mine['alias'], 'B')}",
                         f"memory {optimizer} {leaves} {size} {variant}")  # fmt: skip
            entry["goal"] = f"extra < one leaf ({fmt(4 * size, 'B')})"
            entry["met"] = extra < 4 * size and mine["alias"] >= base["alias"]
            lines.append(entry)
    return lines


# --- report ----------------------------------------------------------------------------------------------------------


def fmt(value, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "B":
        for scale, name in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(value) >= scale:
                return f"{value / scale:.1f} {name}"
        return f"{value:.0f} B"
    for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {name}"
    return f"{value / 1e-9:.3g} ns"


def fmt_ratio(ratio) -> str:
    return "—" if ratio is None else f"{ratio:.3g}"


def met_text(met) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def goal_text(entry) -> str:
    goal = entry["goal"]
    return "—" if goal is None else goal if isinstance(goal, str) else f"≤ {goal:g}"


def report(results: dict) -> str:
    meta = results["meta"]
    torch_note = "torch not installed: its numbers are missing"
    if meta["torch"]:
        torch_note = f"torch {meta['torch']} ({meta['torch_device']})"
    load0, load1 = meta["load_average_at_start"], meta["load_average_at_end"]
    lines = [
        "# gradflow against optax: every row of the speed issue",
        "",
        f"`{meta['command']}` (profile {meta['profile']}); {meta['date']}; {meta['platform']} "
        f"({', '.join(meta['devices'][:2])}{', …' if len(meta['devices']) > 2 else ''}), {meta['cpu_count']} CPUs; "
        f"jax {meta['jax']}, optax {meta['optax']}, gradflow {meta['gradflow']} ({meta['git_commit']}); {torch_note}. "
        f"Medians; gradflow and optax measured in alternating rounds; float32. Load average (1, 5, 15 min) at start "
        f"{load0[0]:.2f}, {load0[1]:.2f}, {load0[2]:.2f}, at end {load1[0]:.2f}, {load1[1]:.2f}, {load1[2]:.2f}; "
        f"total {meta['total_s']:.0f} s.",
        "",
        "Ratio: gradflow over optax (below 1: gradflow is faster or smaller). Goals from the issue: each mode ≤ 0.9; "
        "trace + lower ≤ 1.0; compile of clip + adamw on 2,000 leaves ≤ 0.5; a donated step's temporaries exceed "
        "optax's by less than one leaf.",
        "",
    ]
    rows = [[e["mode"], fmt(e["optax"], e["unit"]), fmt(e["gradflow"], e["unit"]), fmt_ratio(e["ratio"]), goal_text(e),
             met_text(e["met"]), e["note"]] for e in results["table"]]  # fmt: skip
    lines += markdown_table(["mode", "optax", "gradflow", "ratio", "goal", "met?", "notes"], rows)
    if not meta["complete"]:
        lines += ["", "**Incomplete**: the run was stopped after the rows above."]
    if meta["skipped"]:
        lines += ["", f"Skipped (the {meta['budget_s']:g} s budget was spent): {', '.join(meta['skipped'])}."]
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--quick", action="store_true", help="the quick profile: a smoke run of about a minute")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of %(default)s")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per row (default: the profile's)")
    parser.add_argument("--budget", type=float, default=None, help="seconds after which rows are skipped")
    default_out = os.environ.get("OUT") or str(RESULTS)
    parser.add_argument("--out", type=Path, default=Path(default_out), help="folder for speed.json and speed.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.profile = "quick"
    args.rows = [r for r in args.rows.split(",") if r]
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    jax.config.update("jax_enable_compilation_cache", False)  # compile times are cold compiles
    profile = PROFILES[args.profile]
    budget = Budget(args.budget or profile["budget_s"])
    torch = import_torch() if {"loop", "step"} & set(args.rows) else None
    print(f"jax {jax.__version__} backend {jax.default_backend()}: {jax.devices()}; profile {args.profile}", flush=True)
    results = {"meta": {**environment(torch), "profile": args.profile, "settings": profile, "rows": args.rows,
                        "command": " ".join(["python benchmarks/speed.py", *(argv or sys.argv[1:])])},
               "samples": {}, "table": []}  # fmt: skip
    compiled_programs: dict = {}
    sections = {
        "loop": lambda: loop_rows(profile, args.repeats, torch, results),
        "run": lambda: run_rows(profile, args.repeats, results),
        "sweep": lambda: sweep_rows(profile, args.repeats, results),
        "step": lambda: step_rows(profile, args.repeats, torch, results, compiled_programs, budget),
        "compile": lambda: compile_rows(profile, args.repeats, results, compiled_programs, budget, emit),
        "memory": lambda: memory_rows(profile, results, compiled_programs, budget),
    }

    def emit(lines):
        results["table"].extend(lines)
        write(results, budget, args.out, final=False)  # a run cut short still leaves what it measured

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)  # timeout(1) stops the run: what is measured is already written
    complete = False
    try:
        for name in ROWS:
            if name in args.rows and (name == "memory" or budget.allows(name)):
                print(f"{name} ({budget.elapsed():.0f} s)", flush=True)
                emit(sections[name]())
        complete = True
    finally:
        text = write(results, budget, args.out, final=complete)
    print(text)
    print(f"wrote {args.out / 'speed.md'} and {args.out / 'speed.json'}")


def write(results: dict, budget: Budget, out: Path, final: bool) -> str:
    results["meta"].update(total_s=budget.elapsed(), load_average_at_end=os.getloadavg(), skipped=budget.skipped,
                           budget_s=budget.seconds, complete=final)  # fmt: skip
    text = report(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speed.md").write_text(text)
    (out / "speed.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    return text


if __name__ == "__main__":
    main()
