"""Time of one optimizer step and its compile time: gradflow against optax and torch.optim.

Usage: python benchmarks/optimizer_step.py [--layouts 1x16000000,1000x16000,4000x4000] [--repeats 20] [--quick]
       [--optimizers adam,sgd,clip_adamw] [--loop-steps 10] [--clip-compile] [--clip-timeout 600]
       [--out benchmarks/results]

For Adam (lr 1e-3), SGD with momentum 0.9 (lr 1e-2) and AdamW (lr 1e-3) after clip-by-global-norm (1.0) on float32
parameter lists of each layout (LEAVESxSIZE), on jax's default device, it times

- a jitted step ``params, state = step(params, state, grads)`` with params and state donated, for optax, for gradflow
  with the optimizer closed over and for gradflow with the optimizer passed as a jit argument;
- ``--loop-steps`` steps in one jitted ``lax.fori_loop`` (per step), for gradflow and optax;
- ``torch.optim`` with ``foreach=True`` and with ``fused=True`` (CUDA when torch sees it), when torch imports;
- the compile time of every jitted program: wall time of ``jax.jit(...).lower(...).compile()``;
- with ``--clip-compile``: the compile time of ``chain(clip_by_global_norm(1.0), adamw(1e-3))`` on the layout with the
  most leaves, each in a child process that is killed after ``--clip-timeout`` seconds.

Gradients are a fixed precomputed tree, so only the optimizer step is timed. Step times are medians over ``--repeats``
calls after 2 warm-up calls, each waited for. A jitted triad ``a + s*b`` gives the memory bandwidth that bounds these
steps; a row's GB/s counts the least traffic of its step (Adam reads p, g, m, v and writes p, m, v: 7 buffers; SGD 5).
Prints a markdown table and writes it to OUT/optimizer_step.md, and every raw number to OUT/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import gradflow

sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    WARMUP,
    abstract_tree,
    copy_tree,
    donated_call,
    environment,
    import_torch,
    make_tree,
    markdown_table,
    staged_compile,
    step_of,
    time_calls,
    torch_step_calls,
)

DEFAULT_LAYOUTS = "1x16000000,1000x16000,4000x4000"
QUICK_LAYOUTS = "1x1000000,100x10000"
JAX_LIBRARIES = {"gradflow": gradflow, "optax": optax}
OPTIMIZERS = {  # "buffers": the least memory traffic of one step, in parameter-sized buffers
    "adam": {"jax": lambda library: library.adam(1e-3), "torch": ("Adam", {"lr": 1e-3}), "buffers": 7},
    "sgd": {
        "jax": lambda library: library.sgd(1e-2, momentum=0.9),
        "torch": ("SGD", {"lr": 1e-2, "momentum": 0.9}),
        "buffers": 5,
    },
    "clip_adamw": {  # the norm reads g once more: 8 buffers; torch clips with clip_grad_norm_(foreach=True)
        "jax": lambda library: library.chain(library.clip_by_global_norm(1.0), library.adamw(1e-3)),
        "torch": ("AdamW", {"lr": 1e-3}),
        "clip_norm": 1.0,
        "buffers": 8,
    },
}
TORCH_VARIANTS = ("foreach", "fused")


def parse_layouts(text: str) -> list[tuple[int, int]]:
    """``"1x16000000,1000x16000"`` → ``[(1, 16000000), (1000, 16000)]`` (leaves, elements per leaf)."""
    return [tuple(int(n) for n in item.lower().split("x")) for item in text.split(",")]


def layout_name(leaves: int, size: int) -> str:
    return f"{leaves:,} × {size:,}"


# --- JAX -------------------------------------------------------------------------------------------------------------


def make_optimizer(library, optimizer: str):
    return OPTIMIZERS[optimizer]["jax"](library)


def loop_of(step, steps: int):
    """``steps`` calls of ``step(params, state, grads)`` in one ``lax.fori_loop`` with the gradients fixed."""

    def loop(params, state, grads):
        return jax.lax.fori_loop(0, steps, lambda _, carry: step(*carry, grads), (params, state))

    return loop


def compile_timed(fn, args: tuple, donate: tuple[int, ...]):
    """harness.staged_compile, with this script's keys: lower_s is tracing and lowering, compile_s the whole."""
    compiled, times = staged_compile(fn, args, donate)
    return compiled, {"lower_s": times["trace_lower_s"], "compile_s": times["compile_s"], "stages": times}


def time_jax(fn, args: tuple, donate: tuple[int, ...], repeats: int) -> dict:
    """Compile ``fn`` and time its calls; the donated arguments are replaced by the outputs after each call."""
    compiled, compile_times = compile_timed(fn, args, donate)
    return {**time_calls(donated_call(compiled, list(args), donate), repeats), **compile_times}


def jax_rows(optimizer: str, params, grads, repeats: int, loop_steps: int) -> list[dict]:
    """Step rows (gradflow closed over, gradflow as argument, optax) and fori_loop rows (gradflow, optax)."""
    rows = []
    for library_name, library in JAX_LIBRARIES.items():
        tx, step = make_optimizer(library, optimizer), step_of(library)
        closed = functools.partial(step, tx)
        variants = [("step", closed, (), (0, 1), 1), ("loop", loop_of(closed, loop_steps), (), (0, 1), loop_steps)]
        if library is gradflow:
            variants.insert(1, ("tx as jit argument", step, (tx,), (1, 2), 1))
        for variant, fn, head, donate, steps in variants:
            fresh = copy_tree(params)
            result = time_jax(fn, (*head, fresh, tx.init(fresh), grads), donate, repeats)
            rows.append({"library": library_name, "variant": variant, "steps_per_call": steps, **result})
            gc.collect()
    return rows


def triad(size: int, repeats: int) -> dict:
    """A jitted ``a + s*b`` on ``size`` float32, written over ``a`` (donated, as the steps' params are): three streams
    of memory traffic, as STREAM counts them."""
    a, b = make_tree(jax.random.key(1), 2, size)
    result = time_jax(lambda a, b, s: (a + s * b,), (a, b, jnp.float32(1e-3)), (0,), repeats)
    return {"size": size, "gb_per_s": 3 * 4 * size / result["median_s"] / 1e9, **result}


# --- torch -----------------------------------------------------------------------------------------------------------


def torch_rows(torch, optimizer: str, leaves: int, size: int, repeats: int) -> list[dict]:
    """``opt.step()`` of torch.optim with each of harness.TORCH_VARIANTS; one that raises is recorded as unavailable."""
    name, kwargs = OPTIMIZERS[optimizer]["torch"]
    calls = torch_step_calls(torch, name, kwargs, leaves, size, OPTIMIZERS[optimizer].get("clip_norm"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for variant, call in calls.items():
        row = {"library": "torch", "variant": variant, "steps_per_call": 1, "device": device}
        row.update(time_calls(call, repeats) if callable(call) else {"unavailable": call})
        rows.append(row)
    del calls
    gc.collect()
    return rows


# --- clip + adamw compile time in a child process --------------------------------------------------------------------


def clip_compile_child(library_name: str, leaves: int, size: int, queue) -> None:
    """Compile time of ``chain(clip_by_global_norm(1.0), adamw(1e-3))`` on abstract arrays; put on ``queue``."""
    jax.config.update("jax_enable_compilation_cache", False)
    library = JAX_LIBRARIES[library_name]
    tx = make_optimizer(library, "clip_adamw")
    params = abstract_tree(leaves, size)
    state = jax.eval_shape(tx.init, params)
    _, times = compile_timed(functools.partial(step_of(library), tx), (params, state, params), (0, 1))
    queue.put(times)


def clip_compile(library_name: str, leaves: int, size: int, timeout: float) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=clip_compile_child, args=(library_name, leaves, size, queue))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        return {"library": library_name, "timed_out_after_s": timeout}
    if child.exitcode != 0:
        return {"library": library_name, "failed_exit_code": child.exitcode}
    return {"library": library_name, **queue.get()}


def clip_rows(layouts: list[tuple[int, int]], timeout: float) -> dict:
    leaves, size = max(layouts)
    rows = [clip_compile(name, leaves, size, timeout) for name in JAX_LIBRARIES]
    return {"leaves": leaves, "size": size, "timeout_s": timeout, "rows": rows}


# --- report ----------------------------------------------------------------------------------------------------------


def row_label(row: dict, loop_steps: int) -> str:
    if row["variant"] == "step":
        return row["library"]
    if row["variant"] == "loop":
        return f"{row['library']}, {loop_steps} steps in one jit"
    return f"{row['library']} ({row['variant']})"


def per_step(row: dict, key: str = "median_s") -> float | None:
    return None if "unavailable" in row else row[key] / row["steps_per_call"]


def find(rows: list[dict], optimizer: str, layout: tuple, library: str, variant: str) -> dict | None:
    key = (optimizer, layout, library, variant)
    for row in rows:
        if (row["optimizer"], tuple(row["layout"]), row["library"], row["variant"]) == key:
            return row
    return None


def ratio(numerator: dict | None, denominator: dict | None, key: str = "median_s") -> float | None:
    if numerator is None or denominator is None or "unavailable" in numerator or "unavailable" in denominator:
        return None
    if key == "median_s":
        return per_step(numerator) / per_step(denominator)
    return numerator[key] / denominator[key]


RATIOS = {  # column → ((library, variant) over (library, variant), key)
    "gradflow / optax": (("gradflow", "step"), ("optax", "step"), "median_s"),
    "gradflow (tx arg) / optax": (("gradflow", "tx as jit argument"), ("optax", "step"), "median_s"),
    "gradflow / torch foreach": (("gradflow", "step"), ("torch", "foreach"), "median_s"),
    "gradflow / torch fused": (("gradflow", "step"), ("torch", "fused"), "median_s"),
    "gradflow / optax, loop": (("gradflow", "loop"), ("optax", "loop"), "median_s"),
    "gradflow / optax compile": (("gradflow", "step"), ("optax", "step"), "compile_s"),
    "gradflow (tx arg) / optax compile": (("gradflow", "tx as jit argument"), ("optax", "step"), "compile_s"),
}


def ratio_rows(rows: list[dict], optimizers: list[str], layouts: list[tuple[int, int]]) -> list[dict]:
    table = []
    for optimizer in optimizers:
        for layout in layouts:
            entry = {"optimizer": optimizer, "layout": list(layout)}
            for column, (top, bottom, key) in RATIOS.items():
                entry[column] = ratio(find(rows, optimizer, layout, *top), find(rows, optimizer, layout, *bottom), key)
            table.append(entry)
    return table


def fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


STEP_COLUMNS = ["optimizer", "layout", "row", "step median (ms)", "step min (ms)", "GB/s"]
STEP_COLUMNS += ["compile (s)", "of which lower (s)", "note"]


def step_table(rows: list[dict], loop_steps: int) -> list[str]:
    lines = []
    for row in rows:
        cells = [row["optimizer"], layout_name(*row["layout"]), row_label(row, loop_steps)]
        if "unavailable" in row:
            lines.append([*cells, "—", "—", "—", "—", "—", row["unavailable"]])
            continue
        median, size = per_step(row), row["layout"][0] * row["layout"][1]
        traffic = OPTIMIZERS[row["optimizer"]]["buffers"] * 4 * size / median / 1e9
        times = [fmt(1e3 * median), fmt(1e3 * per_step(row, "min_s")), fmt(traffic, 1)]
        lines.append([*cells, *times, fmt(row.get("compile_s")), fmt(row.get("lower_s")), ""])
    return markdown_table(STEP_COLUMNS, lines)


def ratio_table(ratios: list[dict]) -> list[str]:
    lines = [[r["optimizer"], layout_name(*r["layout"])] + [fmt(r[c]) for c in RATIOS] for r in ratios]
    return markdown_table(["optimizer", "layout", *RATIOS], lines)


def scaling_table(rows: list[dict], layouts: list[tuple[int, int]], loop_steps: int) -> list[str]:
    """Each row's per-step time on every layout over its time on the layout with the fewest leaves."""
    base = min(layouts)
    lines = []
    for row in rows:
        if tuple(row["layout"]) != base:
            continue
        others = [find(rows, row["optimizer"], layout, row["library"], row["variant"]) for layout in layouts]
        lines.append([row["optimizer"], row_label(row, loop_steps)] + [fmt(ratio(other, row)) for other in others])
    return markdown_table(["optimizer", "row", *(layout_name(*layout) for layout in layouts)], lines)


def clip_note(row: dict) -> str:
    if "timed_out_after_s" in row:
        return f"timed out after {row['timed_out_after_s']:g} s (child process killed)"
    if "failed_exit_code" in row:
        return f"child process failed with exit code {row['failed_exit_code']}"
    return ""


def clip_lines(clip: dict | None) -> list[str]:
    if clip is None:
        return ["Compile time of `chain(clip_by_global_norm(1.0), adamw(1e-3))`: not measured (pass --clip-compile)."]
    lines = [[r["library"], fmt(r.get("compile_s")), fmt(r.get("lower_s")), clip_note(r)] for r in clip["rows"]]
    layout = layout_name(clip["leaves"], clip["size"])
    title = f"Compile time of `chain(clip_by_global_norm(1.0), adamw(1e-3))` on {layout}:"
    return [title, "", *markdown_table(["library", "compile (s)", "of which lower (s)", "note"], lines)]


def report(results: dict) -> str:
    meta, triad_row, loop_steps = results["meta"], results["triad"], results["meta"]["loop_steps"]
    torch_note = "torch not installed: its rows are skipped"
    if meta["torch"]:
        torch_note = f"torch {meta['torch']} ({meta['torch_threads']} threads, {meta['torch_device']})"
    lines = [
        "# One optimizer step: gradflow, optax, torch.optim",
        "",
        f"{meta['date']}; {meta['platform']} ({', '.join(meta['devices'])}), {meta['cpu_count']} CPUs; "
        f"jax {meta['jax']}, optax {meta['optax']}, gradflow {meta['gradflow']} ({meta['git_commit']}); {torch_note}. "
        f"Median of {meta['repeats']} calls after {WARMUP} warm-ups; float32; params and state donated. "
        f"Load average (1 min) at start {meta['load_average_at_start'][0]:.2f}, "
        f"at end {meta['load_average_at_end'][0]:.2f}; total {meta['total_s']:.0f} s.",
        "",
        f"Reference: jitted triad `a + s*b` on {triad_row['size']:,} float32: {1e3 * triad_row['median_s']:.2f} ms, "
        f"{triad_row['gb_per_s']:.1f} GB/s. GB/s below counts the least traffic of a step: 7 buffers for Adam "
        "(read p, g, m, v; write p, m, v), 5 for SGD with momentum.",
        "",
        "## Step time (loop rows: per step; compile: `lower(...).compile()` wall time)",
        "",
        *step_table(results["rows"], loop_steps),
        "",
        "## Ratios (gradflow over the other, same optimizer and layout; below 1 means gradflow is faster)",
        "",
        *ratio_table(results["ratios"]),
        "",
        f"## Per-step time relative to {layout_name(*min(results['meta']['layouts']))} (same row)",
        "",
        *scaling_table(results["rows"], [tuple(x) for x in meta["layouts"]], loop_steps),
        "",
        *clip_lines(results["clip_compile"]),
    ]
    return "\n".join(lines) + "\n"


# --- main ------------------------------------------------------------------------------------------------------------


def metadata(args, layouts, torch) -> dict:
    return {**environment(torch), "layouts": [list(layout) for layout in layouts], "optimizers": args.optimizers,
            "repeats": args.repeats, "loop_steps": args.loop_steps, "warmup": WARMUP}  # fmt: skip


def run_layout(torch, optimizers: list[str], leaves: int, size: int, repeats: int, loop_steps: int) -> list[dict]:
    params = make_tree(jax.random.key(0), leaves, size)
    grads = make_tree(jax.random.key(1), leaves, size, scale=1e-3)
    rows = []
    for optimizer in optimizers:
        layout_rows = jax_rows(optimizer, params, grads, repeats, loop_steps)
        if torch is not None:
            layout_rows += torch_rows(torch, optimizer, leaves, size, repeats)
        rows += [{"optimizer": optimizer, "layout": [leaves, size], **row} for row in layout_rows]
        print(*step_table(rows[-len(layout_rows) :], loop_steps)[2:], sep="\n", flush=True)
    del params, grads
    jax.clear_caches()
    gc.collect()
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", default=None, help=f"LEAVESxSIZE,... (default {DEFAULT_LAYOUTS})")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma-separated subset of %(default)s")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 20; 5 with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: layouts {QUICK_LAYOUTS} unless given")
    parser.add_argument("--loop-steps", type=int, default=10, help="steps in the one-jit fori_loop rows")
    clip_help = "also time the compile of chain(clip_by_global_norm, adamw) on the layout with the most leaves"
    parser.add_argument("--clip-compile", action="store_true", help=clip_help)
    parser.add_argument("--clip-timeout", type=float, default=600.0, help="seconds per clip compile before giving up")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="folder for .json, .md")
    args = parser.parse_args()
    args.layouts = args.layouts or (QUICK_LAYOUTS if args.quick else DEFAULT_LAYOUTS)
    args.repeats = args.repeats or (5 if args.quick else 20)
    args.optimizers = args.optimizers.split(",")
    unknown = sorted(set(args.optimizers) - set(OPTIMIZERS))
    if unknown:
        parser.error(f"--optimizers: unknown {', '.join(unknown)}; choose from {', '.join(OPTIMIZERS)}")
    return args


def main() -> None:
    args = parse_args()
    jax.config.update("jax_enable_compilation_cache", False)  # compile times are cold compiles
    layouts = parse_layouts(args.layouts)
    torch = import_torch()
    start = time.perf_counter()
    results = {"meta": metadata(args, layouts, torch)}
    results["triad"] = triad(max(leaves * size for leaves, size in layouts), args.repeats)
    rows = [run_layout(torch, args.optimizers, *layout, args.repeats, args.loop_steps) for layout in layouts]
    results["rows"] = [row for layout_rows in rows for row in layout_rows]
    results["ratios"] = ratio_rows(results["rows"], args.optimizers, layouts)
    results["clip_compile"] = clip_rows(layouts, args.clip_timeout) if args.clip_compile else None
    results["meta"]["total_s"] = time.perf_counter() - start
    results["meta"]["load_average_at_end"] = os.getloadavg()
    text = report(results)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "optimizer_step.md").write_text(text)
    (args.out / "optimizer_step.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
