"""What the benchmark scripts share: one timing helper (interleaved rounds), trees, steps, staged compiles, torch.

``interleaved`` is the one timing helper: it calls every entry of a dict once per round, rotating the order each
round, so that a burst of load from other processes on the machine falls on all the compared rows alike instead
of on whichever ran in that second. ``time_calls`` is the one-entry case.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp

WARMUP = 2
RESULTS = Path(__file__).parent / "results"


# --- timing ----------------------------------------------------------------------------------------------------------


def summarize(samples: list[float]) -> dict:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "samples_s": samples}


def interleaved(
    calls: dict[str, Callable[[], object]], repeats: int, warmup: int = WARMUP, per_sample: int = 1
) -> dict[str, dict]:
    """Wall time of each ``calls[name]()`` (each call must wait for its own result), measured in rounds.

    Round ``r`` calls every entry ``per_sample`` times in a row, starting at entry ``r mod n``, and takes the mean
    of those calls as one sample (a call of a few hundred µs, timed alone right after another library's, measures
    cold caches and timer jitter more than the call). The first ``warmup`` rounds are not counted (the very first
    call of each entry is kept apart as ``first_call_s``). Returns, per name, the median, the minimum and every
    counted sample, each per call.
    """
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    first: dict[str, float] = {}
    for round_ in range(warmup + repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if name not in first:
                start = time.perf_counter()
                calls[name]()
                first[name] = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(per_sample):
                calls[name]()
            elapsed = (time.perf_counter() - start) / per_sample
            if round_ >= warmup:
                samples[name].append(elapsed)
    return {name: {**summarize(samples[name]), "first_call_s": first[name]} for name in names}


def time_calls(call: Callable[[], object], repeats: int, warmup: int = WARMUP) -> dict:
    """:func:`interleaved` of one call."""
    return interleaved({"call": call}, repeats, warmup)["call"]


# --- JAX -------------------------------------------------------------------------------------------------------------


def make_tree(key, leaves: int, size: int, scale: float = 1.0) -> list[jax.Array]:
    """``leaves`` float32 vectors of ``size`` normal draws (times ``scale``)."""
    block = scale * jax.random.normal(key, (leaves, size), jnp.float32)
    return [block[i] for i in range(leaves)]


def abstract_tree(leaves: int, size: int) -> list[jax.ShapeDtypeStruct]:
    return [jax.ShapeDtypeStruct((size,), jnp.float32)] * leaves


def copy_tree(tree):
    return jax.tree.map(jnp.copy, tree)


def step_of(library):
    """``step(tx, params, state, grads)``: one update applied with the library's own ``apply_updates``."""

    def step(tx, params, state, grads):
        updates, state = tx.update(grads, state, params)
        return library.apply_updates(params, updates), state

    return step


def staged_compile(fn, args: tuple, donate: tuple[int, ...] = (), xla: bool = True):
    """``jax.jit(fn, donate_argnums=donate)`` traced, lowered and compiled for ``args``, each stage timed.

    Returns ``(compiled, times)`` with ``trace_s``, ``lower_s`` (lowering the traced jaxpr to StableHLO; where the
    jax in use has no ``Jitted.trace``, tracing is inside it and ``trace_s`` is None), ``xla_s`` (XLA's compile) and
    ``compile_s``, the whole wall time from the Python function to the executable. With ``xla=False`` it stops
    after lowering: the program is None, and so are ``xla_s`` and ``compile_s``.
    """
    jitted = jax.jit(fn, donate_argnums=donate)
    start = time.perf_counter()
    if hasattr(jitted, "trace"):
        traced = jitted.trace(*args)
        traced_at = time.perf_counter()
        lowered = traced.lower()
    else:
        traced_at = None
        lowered = jitted.lower(*args)
    lowered_at = time.perf_counter()
    compiled = lowered.compile() if xla else None
    done = time.perf_counter() if xla else None
    return compiled, {
        "trace_s": None if traced_at is None else traced_at - start,
        "lower_s": lowered_at - (start if traced_at is None else traced_at),
        "trace_lower_s": lowered_at - start,
        "xla_s": None if done is None else done - lowered_at,
        "compile_s": None if done is None else done - start,
    }


def memory(compiled) -> dict | None:
    """The buffer sizes XLA assigned to a compiled program (``compiled.memory_analysis()``), in bytes."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # a backend without the analysis
        return None
    if stats is None:
        return None
    names = ("argument", "output", "alias", "temp", "generated_code")
    result = {name: int(getattr(stats, f"{name}_size_in_bytes", 0)) for name in names}
    peak = getattr(stats, "peak_memory_in_bytes", None)
    result["peak"] = None if peak is None else int(peak)
    return result


def donated_call(compiled, args: list, donate: tuple[int, ...]) -> Callable[[], None]:
    """A call of ``compiled(*args)`` that waits for it and puts the outputs in place of the donated arguments."""

    def call():
        outputs = jax.block_until_ready(compiled(*args))
        for index, output in zip(donate, outputs):
            args[index] = output

    return call


# --- torch -----------------------------------------------------------------------------------------------------------


def import_torch(threads: int | None = None):
    """torch, with ``threads`` intra-op threads (default: every CPU), or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads or os.cpu_count())
    return torch


TORCH_VARIANTS = ("foreach", "fused")


def torch_step_calls(torch, name: str, kwargs: dict, leaves: int, size: int, clip_norm: float | None = None,
                     variants=TORCH_VARIANTS) -> dict[str, Callable | str]:  # fmt: skip
    """One ``opt.step()`` of ``torch.optim.<name>`` per variant (``foreach=True``, ``fused=True``) on ``leaves``
    parameters of ``size`` with fixed gradients, on CUDA when torch sees it. A variant that cannot be built or
    stepped (device, dtype, torch version) maps to the error's text instead of a call."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    calls: dict[str, Callable | str] = {}
    for variant in variants:
        generator = torch.Generator(device).manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(size, generator=generator, device=device)) for _ in range(leaves)]
        for param in params:
            param.grad = 1e-3 * torch.randn(size, generator=generator, device=device)
        try:
            opt = getattr(torch.optim, name)(params, **kwargs, **{variant: True})

            def call(opt=opt, params=params):
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm, foreach=True)
                opt.step()
                sync()

            call()  # an unsupported variant raises here rather than inside the timing
            calls[variant] = call
        except Exception as error:
            calls[variant] = f"{type(error).__name__}: {error}"
    return calls


# --- metadata --------------------------------------------------------------------------------------------------------


def git_commit() -> str:
    """The short commit of the checkout, with ``+dirty`` when its tracked files differ from it."""
    folder = Path(__file__).parent

    def git(*command):
        done = subprocess.run(["git", *command], capture_output=True, text=True, check=False, cwd=folder)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def environment(torch=None) -> dict:
    import jaxlib
    import optax

    import gradflow

    devices = jax.devices()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": devices[0].platform,
        "devices": [f"{d} ({d.device_kind})" for d in devices],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "gradflow": gradflow.__version__,
        "git_commit": git_commit(),
        "torch": torch and torch.__version__,
        "torch_threads": torch and torch.get_num_threads(),
        "torch_device": torch and ("cuda" if torch.cuda.is_available() else "cpu"),
        "load_average_at_start": os.getloadavg(),
    }


def markdown_table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(x) + " |" for x in lines]
