"""Acceptance: ordinary optax programs give optax's numbers when they import gradflow as ``optax``.

The programs in ``tests/clients/client_*.py`` are written against optax the way projects and tutorials
write them (``import optax`` and nothing gradflow-specific): a Flax NNX model with ``nnx.Optimizer`` and
``optax.MultiSteps``, a Flax Linen ``TrainState`` with a warmup-cosine AdamW chain, an Equinox MLP,
plain-JAX meta-learning through ``inject_hyperparams``, ``lookahead``, ``apply_if_finite`` with hand-written
``GradientTransformation``\\ s and ``optax.tree_utils``, params sharded over 4 host devices, and an Orbax
checkpoint saved in one process and restored in another. Each ``main()`` returns the numbers to compare.

How gradflow replaces optax (``tests/clients/clients_launcher.py``): every program runs in a subprocess,
once as is and once with an ``__import__`` hook that turns the import statements *written in the program*
that name ``optax`` / ``optax.<sub>`` into imports of ``gradflow`` / ``gradflow.<sub>``: exactly what
``import gradflow as optax`` in the program's source does, without rewriting the file. Every other module
keeps the real optax, flax included (``nnx.Optimizer`` and ``train_state`` then drive gradflow transforms
through ``tx.init`` / ``tx.update`` and optax's ``apply_updates``, which is what a user who renames the
import gets). Binding gradflow as ``optax`` process-wide (so that flax would see it too) was the first
choice and is impossible by design: gradflow's ``losses``, ``tree_utils``, ``projections`` ... re-export
optax's own functions and import the real ``optax`` to do so (DESIGN.md: "What is not a gradient
transformation is not rewritten"), so the process-wide alias recursed into itself; and flax lists optax as
a dependency, so it is installed wherever flax is. ``test_programs_see_the_right_optax`` checks which
library each program's ``optax`` name was bound to.

Comparison: every key of the optax run's result must be in the gradflow run's, with the same dtype and
shape; strings (state layouts, sharding specs, key paths) and integer/bool arrays exactly; floats with
``rtol=1e-5, atol=1e-6`` (float32, a few to a few dozen steps). The checkpoint program is also resumed across
libraries: saved under optax and restored under gradflow and vice versa, each compared with optax's
uninterrupted run.

Runs are grouped to keep the file fast: per mode, one subprocess for the single-device programs plus the
checkpoint's first half, then one with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (CPU) for the
sharded program and the checkpoint's second half (restoring both modes' checkpoints); the two modes run
side by side.
"""

from __future__ import annotations

import difflib
import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import subprocess_environment

# One xdist worker runs the whole file, so the subprocesses of the module fixture start once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("clients")]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LAUNCHER = HERE / "clients" / "clients_launcher.py"
MODES = ("optax", "gradflow")
RTOL, ATOL = 1e-5, 1e-6
SUBPROCESS_TIMEOUT_S = 300

# job name -> client module, in the single-device group
PROGRAMS = {
    "nnx_multisteps": "client_nnx_multisteps",  # flax nnx.Optimizer, MultiSteps, optax loss
    "linen_trainstate": "client_linen_trainstate",  # TrainState, warmup-cosine, clip + adamw, opt_state fields
    "equinox_mlp": "client_equinox_mlp",  # eqx.filter / filter_value_and_grad / apply_updates, adam
    "jax_metalearning": "client_jax_metalearning",  # inject_hyperparams, hypergradient through k inner steps
    "lookahead": "client_lookahead",  # LookaheadParams.init_synced, lookahead(adam)
    "finite_custom": "client_finite_custom",  # apply_if_finite, custom GradientTransformation, tree_utils
}
SAVE_AT = 4  # client_checkpoint.SAVE_AT
BASELINE_JOBS = [*PROGRAMS, "sharded", "checkpoint_full", "checkpoint_save"]


def _groups() -> dict[str, tuple[list[dict], int | None]]:
    """group name -> (jobs, simulated CPU devices or None); every group runs once per mode. ``{ckpt}`` and ``{mode}``
    in the arguments are filled in per run."""
    single = [{"name": name, "program": program} for name, program in PROGRAMS.items()]
    single.append({"name": "checkpoint_full", "program": "client_checkpoint", "args": ["full"]})
    single.append({"name": "checkpoint_save", "program": "client_checkpoint", "args": ["save", "{ckpt}/{mode}"]})
    restore = [
        {
            "name": f"checkpoint_restore_saved_by_{by}",
            "program": "client_checkpoint",
            "args": ["restore", f"{{ckpt}}/{by}"],
        }
        for by in MODES
    ]
    sharded = [{"name": "sharded", "program": "client_sharded"}]
    # The restore is the checkpoint program's second invocation; it shares the 4-device process with the
    # sharded program to save one interpreter start per mode (it uses the default device only).
    return {"single": (single, None), "sharded_and_restore": (sharded + restore, 4)}


def _run_group(mode: str, group: str, jobs: list[dict], devices: int | None, workdir: Path) -> dict:
    """Run ``jobs`` in one launcher subprocess (on ``devices`` simulated CPU devices, if given); a crash of the
    whole process becomes every job's error."""
    ckpt = workdir / "checkpoints"
    jobs = [job | {"args": [a.format(ckpt=ckpt, mode=mode) for a in job.get("args", [])]} for job in jobs]
    jobs_file, out = workdir / f"{group}-{mode}.json", workdir / f"{group}-{mode}.pkl"
    jobs_file.write_text(json.dumps(jobs))
    env = subprocess_environment(devices) | ({"JAX_PLATFORMS": "cpu"} if devices else {})
    try:
        proc = subprocess.run(
            [sys.executable, str(LAUNCHER), mode, str(out), str(jobs_file)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT_S,
        )
        crash = None if proc.returncode == 0 and out.exists() else f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        crash = f"launcher timed out after {SUBPROCESS_TIMEOUT_S} s"
    if crash is not None:
        failed = {"ok": False, "result": None, "error": f"{group}/{mode} launcher crashed", "traceback": crash}
        failed |= {"optax": None, "seconds": None}
        return {job["name"]: failed for job in jobs}
    return pickle.loads(out.read_bytes())


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict[str, dict]]:
    """``runs[mode][job]`` -> the launcher's record (``ok``, ``result``, ``error``, ``traceback``, ``seconds``)."""
    workdir = tmp_path_factory.mktemp("clients")
    groups = _groups()
    records: dict[str, dict[str, dict]] = {mode: {} for mode in MODES}

    def run(key):
        group, mode = key
        jobs, devices = groups[group]
        records[mode].update(_run_group(mode, group, jobs, devices, workdir))

    with ThreadPoolExecutor(max_workers=2) as pool:  # restoring needs both modes' checkpoints first
        list(pool.map(run, [("single", mode) for mode in MODES]))
        list(pool.map(run, [("sharded_and_restore", mode) for mode in MODES]))
    return records


def _failure(record: dict, what: str) -> str:
    return f"{what} failed: {record['error']}\n{record['traceback']}"


def differences(expected: dict, actual: dict) -> list[str]:
    """Everything in which ``actual`` differs from ``expected`` (the optax run), one line per key."""
    problems = []
    if set(expected) != set(actual):
        problems.append(
            f"keys: missing {sorted(set(expected) - set(actual))}, extra {sorted(set(actual) - set(expected))}"
        )
    for key in sorted(set(expected) & set(actual)):
        want, got = expected[key], actual[key]
        if isinstance(want, str) or isinstance(got, str):
            if want != got:
                diff = difflib.unified_diff(
                    str(want).splitlines(), str(got).splitlines(), "optax", "gradflow", lineterm=""
                )
                problems.append(f"{key}: strings differ\n" + "\n".join(diff))
            continue
        want, got = np.asarray(want), np.asarray(got)
        if want.dtype != got.dtype or want.shape != got.shape:
            problems.append(f"{key}: {got.dtype}{list(got.shape)} where optax has {want.dtype}{list(want.shape)}")
            continue
        try:
            if np.issubdtype(want.dtype, np.inexact):
                np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
            else:
                np.testing.assert_array_equal(got, want)
        except AssertionError as error:
            problems.append(f"{key}: {str(error).strip()}")
    return problems


@pytest.mark.parametrize("mode", MODES)
def test_programs_see_the_right_optax(runs, mode):
    """In each mode, every module-level name that a program bound to ``optax`` or one of its submodules
    (``optax``, ``otu`` ...) is that library's module."""
    bound = {job: record["optax"] for job, record in runs[mode].items() if record["optax"]}
    assert bound, f"no program could be imported under {mode}"
    wrong = {job: names for job, names in bound.items() if any(m.split(".")[0] != mode for m in names.values())}
    assert not wrong, wrong
    assert all(names.get("optax") == mode for names in bound.values()), bound


@pytest.mark.parametrize("job", BASELINE_JOBS)
def test_program_runs_under_optax(runs, job):
    """The baseline: each program runs as written against optax."""
    record = runs["optax"][job]
    assert record["ok"], _failure(record, f"{job} under optax")


@pytest.mark.parametrize("job", BASELINE_JOBS)
def test_gradflow_gives_optax_numbers(runs, job):
    """The drop-in contract: the same program with gradflow as ``optax`` runs and gives the same numbers."""
    baseline, record = runs["optax"][job], runs["gradflow"][job]
    assert baseline["ok"], _failure(baseline, f"{job} under optax (the baseline)")
    assert record["ok"], _failure(record, f"{job} under gradflow")
    problems = differences(baseline["result"], record["result"])
    assert not problems, f"{job}: gradflow differs from optax in\n" + "\n".join(problems)


@pytest.mark.parametrize("saved_by", MODES)
@pytest.mark.parametrize("restored_by", MODES)
def test_checkpoint_resumes_like_an_uninterrupted_run(runs, saved_by, restored_by):
    """Save after ``SAVE_AT`` steps in one process, restore into ``tx.init(params)`` in another and finish:
    the continued losses, final params and optimizer state equal optax's uninterrupted run, whichever
    library saved and whichever restored."""
    full = runs["optax"]["checkpoint_full"]
    assert full["ok"], _failure(full, "the uninterrupted run under optax")
    save = runs[saved_by]["checkpoint_save"]
    assert save["ok"], _failure(save, f"saving under {saved_by}")
    record = runs[restored_by][f"checkpoint_restore_saved_by_{saved_by}"]
    assert record["ok"], _failure(record, f"restoring under {restored_by} a checkpoint saved under {saved_by}")

    expected = dict(full["result"], restored_adam_count=np.asarray(SAVE_AT, full["result"]["adam_count"].dtype))
    expected["losses"] = expected["losses"][SAVE_AT:]
    problems = differences(expected, record["result"])
    heading = f"saved by {saved_by}, restored by {restored_by}: differs from optax's uninterrupted run in"
    assert not problems, heading + "\n" + "\n".join(problems)
