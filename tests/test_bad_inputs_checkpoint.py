"""Bad inputs and faults for gradflow.checkpoint: each ends in an error naming the culprit, or in documented
safe behaviour checked with numbers.

Each ``ERRORS`` probe asserts the exception and a message that names the argument, the key path, the leaf
or the optimizer, and what to do; each ``SAFE`` probe asserts a documented outcome bit for bit. Related
tests, not repeated here: tests/test_checkpoint.py (mismatched templates, damaged data, a failed save
that lets the process exit) and tests/test_checkpoint_crash.py (saves killed at any point).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from bad_input_probes import error_probe, safe_probe

import gradflow as gf
from gradflow import checkpoint

# After a failed read, orbax's event loop is closed before TensorStore's last callbacks: Python reports
# them as unraisable ("Event loop is closed"). That is orbax's noise, not a probe's outcome.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

P = {"dense": {"w": jnp.arange(6.0).reshape(3, 2), "b": jnp.array([0.5, -0.5])}}
ADAM = gf.adam(1e-3)
S = ADAM.init(P)
CLIPPED_ADAM = gf.chain(gf.clip_by_global_norm(1.0), ADAM)


def in_tmp(action: Callable[[Path], Any]) -> Callable[[], Any]:
    """A probe case: ``action(directory)`` in a fresh temporary directory."""

    def build():
        with tempfile.TemporaryDirectory() as tmp:
            return action(Path(tmp))

    return build


def saved(action: Callable[[Path], Any], **kwargs) -> Callable[[], Any]:
    """A probe case: ``action(checkpoint)`` where ``checkpoint`` holds ``(P, S)`` saved with ``kwargs``."""

    def with_checkpoint(tmp: Path) -> Any:
        checkpoint.save(tmp / "ckpt", P, S, **kwargs)
        return action(tmp / "ckpt")

    return in_tmp(with_checkpoint)


def bitwise_equal(a: Any, b: Any) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("mine")
    return tmp / "notes.txt"


def truncate_data(ckpt: Path) -> None:
    for path in ckpt.rglob("*"):
        if path.parent.name == "d" and path.is_file():
            os.truncate(path, path.stat().st_size // 2)


ERRORS = [
    error_probe(
        "checkpoint-directory-not-a-path", TypeError,
        (lambda: checkpoint.save(3, P, S), r"save: directory must be a non-empty str or os\.PathLike of str, got 3"),
        (lambda: checkpoint.save("", P, S), r"save: directory must be a non-empty str .*got ''"),
        (lambda: checkpoint.restore(None, P, S), r"restore: directory must be a non-empty str .*got None"),
    ),
    error_probe(
        "checkpoint-directory-is-a-file", NotADirectoryError,
        (in_tmp(lambda t: checkpoint.save(a_file(t), P, S)), r"save: .*notes\.txt is a file, not a directory; .*pass"),
        (in_tmp(lambda t: checkpoint.save(a_file(t) / "ckpt", P, S, step=1)),
         r"save: .*notes\.txt \(a parent of .*notes\.txt/ckpt\) is a file"),
        (in_tmp(lambda t: checkpoint.restore(a_file(t), P, S)), r"restore: .*notes\.txt is a file, not a directory"),
        (in_tmp(lambda t: checkpoint.latest_step(a_file(t))), r"latest_step: .*notes\.txt is a file"),
    ),
    error_probe(
        "checkpoint-step-not-an-integer", TypeError,
        (in_tmp(lambda t: checkpoint.save(t, P, S, step=1.5)), r"save: step must be an integer >= 0, got 1\.5"),
        (in_tmp(lambda t: checkpoint.save(t, P, S, step="3")), r"save: step must be an integer >= 0, got '3'"),
        (in_tmp(lambda t: checkpoint.restore(t, P, S, step=True)), r"restore: step must be an integer >= 0, got True"),
    ),
    error_probe(
        "checkpoint-step-negative-or-max-to-keep-below-one", ValueError,
        (in_tmp(lambda t: checkpoint.save(t, P, S, step=-1)), r"save: step must be an integer >= 0, got -1"),
        (in_tmp(lambda t: checkpoint.save(t, P, S, step=1, max_to_keep=0)),
         r"save: max_to_keep must be an integer >= 1, got 0"),
        (in_tmp(lambda t: checkpoint.save(t, P, S, max_to_keep=2)),
         r"save: max_to_keep applies to a run of steps; pass step="),
    ),
    error_probe(
        "checkpoint-overwrite-not-a-bool", TypeError,
        (in_tmp(lambda t: checkpoint.save(t, P, S, overwrite="no")),
         r"save: overwrite must be True or False, got 'no'"),
        (in_tmp(lambda t: checkpoint.save(t, P, S, overwrite=1)), r"save: overwrite must be True or False, got 1"),
    ),
    error_probe(
        "checkpoint-colliding-key-paths", ValueError,
        (in_tmp(lambda t: checkpoint.save(t / "c", {"a.b": jnp.ones(1), "a": {"b": jnp.ones(1)}}, ())),
         r"save: params\['a'\]\['b'\] and params\['a\.b'\] would be stored under the same name 'params\.a\.b' .*"
         r"rename one of the keys"),
    ),
    error_probe(
        "checkpoint-leaf-not-an-array", TypeError,
        (in_tmp(lambda t: checkpoint.save(t / "c", {"name": "resnet"}, ())),
         r"save: params\['name'\] is a str, not an array: a checkpoint holds arrays and numbers"),
        (in_tmp(lambda t: checkpoint.save(t / "c", P, {"fn": print})),
         r"save: opt_state\['fn'\] is a builtin_function"),
        (in_tmp(lambda t: checkpoint.save(t / "c", jax.eval_shape(lambda: P), S)),
         r"save: params\['dense'\]\['b'\] is a ShapeDtypeStruct, not an array"),
    ),
    error_probe(
        "checkpoint-save-inside-jit", TypeError,
        (in_tmp(lambda t: jax.jit(lambda p: checkpoint.save(t / "c", p, ()))(P)),
         r"save: params\['dense'\]\['b'\] is a traced value; call save outside jax\.jit"),
    ),
    error_probe(
        "checkpoint-optimizer-not-a-transform", TypeError,
        (in_tmp(lambda t: checkpoint.save(t / "c", P, S, optimizer=1e-3)),
         r"save: optimizer must be a gradient transformation \(with init and update.*got 0\.001"),
        (saved(lambda c: checkpoint.restore(c, P, optimizer="adam")),
         r"restore: optimizer must be a gradient transformation"),
    ),
    error_probe(
        "checkpoint-restore-without-a-state-template", TypeError,
        (saved(lambda c: checkpoint.restore(c, P)),
         r"restore: pass opt_state_like \(tx\.init\(params_like\).*or optimizer=tx"),
    ),
    error_probe(
        "checkpoint-exists-without-overwrite", FileExistsError,
        (saved(lambda c: checkpoint.save(c, P, S)),
         r"save: a checkpoint already exists at .*ckpt; pass overwrite=True"),
        (saved(lambda c: checkpoint.save(c, P, S, step=1), step=1),
         r"save: .*ckpt already holds a checkpoint of step 1; pass overwrite=True"),
    ),
    error_probe(
        "checkpoint-never-replaces-other-files", FileExistsError,
        (in_tmp(lambda t: (a_file(t), checkpoint.save(t, P, S, overwrite=True))),
         r"save: .* is a non-empty directory that is not a checkpoint"),
    ),
    error_probe(
        "checkpoint-steps-must-increase", ValueError,
        (saved(lambda c: checkpoint.save(c, P, S, step=4), step=5),
         r"save: step 4 comes before the saved step 5 in .*ckpt; steps must increase \(delete the later steps"),
        (saved(lambda c: checkpoint.save(c, P, S, step=1)),
         r"save: .*ckpt holds a single checkpoint \(saved without step\)"),
    ),
    error_probe(
        "checkpoint-missing", FileNotFoundError,
        (in_tmp(lambda t: checkpoint.restore(t / "nowhere", P, S)),
         r"restore: no checkpoint at .*nowhere: the directory does"),
        (in_tmp(lambda t: checkpoint.restore(t, P, S)),
         r"restore: .* holds no checkpoint \(neither one written by save"),
        (saved(lambda c: checkpoint.restore(c, P, S, step=2), step=5),
         r"holds no checkpoint of step 2 \(its steps: 5\)"),
    ),
    error_probe(
        "checkpoint-another-optimizer-same-state-layout", checkpoint.CheckpointMismatchError,
        (saved(lambda c: checkpoint.restore(c, P, optimizer=gf.yogi(1e-3)), optimizer=ADAM),
         r"saved by another optimizer: at optimizer\.transforms\[0\]\.inner\.second\.transforms\[1\], EWMA\('average', "
         r"False, None\) in the checkpoint, YogiMoment in the optimizer given"),
        (saved(lambda c: checkpoint.restore(c, P, optimizer=CLIPPED_ADAM), optimizer=ADAM),
         r"saved by another optimizer: at optimizer\.transforms\[0\], Composite.* in the checkpoint, ClipByGlobalNorm"),
    ),
    error_probe(
        "checkpoint-another-state-type-same-fields", checkpoint.CheckpointMismatchError,
        (saved(lambda c: checkpoint.restore(c, P, gf.adabelief(1e-3).init(P))),
         r"opt_state\[0\] is a ScaleByAdamState in the checkpoint, a ScaleByBeliefState in the template: was the "
         r"checkpoint saved with another optimizer\?"),
    ),
    error_probe(
        "checkpoint-template-of-another-shape", checkpoint.CheckpointMismatchError,
        (saved(lambda c: checkpoint.restore(c, {"dense": {**P["dense"], "b": jnp.zeros(3)}}, S)),
         r"params\['dense'\]\['b'\] has shape \(2,\) in the checkpoint, \(3,\) in the template\nRestore into "
         r"templates built like the saved trees"),
    ),
    error_probe(
        "checkpoint-truncated-data", checkpoint.CheckpointCorruptError,
        (saved(lambda c: (truncate_data(c), checkpoint.restore(c, P, S))),
         r"^could not read the checkpoint at .*ckpt \(reading [^)]+\): a file of it is missing, truncated or damaged "
         r"\(ValueError: .{1,160}\)\. Restore another step or another copy of it\.$"),
    ),
]  # fmt: skip


def save_creates_missing_parent_directories():
    with tempfile.TemporaryDirectory() as tmp:
        place = Path(tmp, "runs", "2024", "ckpt")
        checkpoint.save(place, P, S)
        assert bitwise_equal(checkpoint.restore(place, P, S), (P, S))


def restore_takes_new_hyperparameters():
    """Hyperparameter values may change (resuming with another learning rate); the structure may not."""
    with tempfile.TemporaryDirectory() as tmp:
        state = ADAM.update(P, S, P)[1]
        checkpoint.save(Path(tmp, "c"), P, state, optimizer=ADAM)
        params, restored = checkpoint.restore(Path(tmp, "c"), P, optimizer=gf.adam(0.5, b1=0.5, eps=1e-4))
        assert bitwise_equal((params, restored), (P, state)) and int(restored[0].count) == 1


def restore_reads_plain_orbax_unverified():
    """A checkpoint that plain orbax wrote has no checksums: it restores, unverified, bit for bit."""
    with tempfile.TemporaryDirectory() as tmp:
        with ocp.StandardCheckpointer() as plain:
            plain.save(Path(tmp, "c"), {"params": P, "opt_state": S})
        assert bitwise_equal(checkpoint.restore(Path(tmp, "c"), P, S), (P, S))


def overwrite_keeps_only_the_new_checkpoint():
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(Path(tmp, "c"), P, S)
        newer = jax.tree.map(lambda x: x + 1, P)
        checkpoint.save(Path(tmp, "c"), newer, S, overwrite=True)
        assert os.listdir(tmp) == ["c"]  # no staging or old copy left beside it
        assert bitwise_equal(checkpoint.restore(Path(tmp, "c"), P, S), (newer, S))


def leftovers_are_not_steps_and_are_cleaned():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint.save(root, P, S, step=5)
        (root / ".6.gradflow-staging").mkdir()  # what a save killed while writing step 6 leaves
        assert checkpoint.latest_step(root) == 5
        checkpoint.save(root, P, S, step=6)
        assert sorted(os.listdir(root)) == ["5", "6"]


def rotation_keeps_the_latest_steps():
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(1, 6):
            checkpoint.save(tmp, jax.tree.map(lambda x, s=step: x * s, P), S, step=step, max_to_keep=2)
        assert sorted(os.listdir(tmp)) == ["4", "5"] and checkpoint.latest_step(tmp) == 5
        assert bitwise_equal(checkpoint.restore(tmp, P, S, step=4)[0], jax.tree.map(lambda x: x * 4, P))


def arrays_without_elements_round_trip():
    with tempfile.TemporaryDirectory() as tmp:
        params = {**P, "empty": jnp.zeros((0, 3), jnp.bfloat16)}
        state = ADAM.init(params)
        checkpoint.save(Path(tmp, "c"), params, state)
        restored = checkpoint.restore(Path(tmp, "c"), params, state)
        assert bitwise_equal(restored, (params, state)) and restored[1][0].mu["empty"].shape == (0, 3)


def an_existing_empty_directory_is_a_place_to_save():
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint.save(tmp, P, S)
        assert bitwise_equal(checkpoint.restore(tmp, P, S), (P, S))
        assert checkpoint.latest_step(tmp) is None  # a single checkpoint, not a root of steps


SAFE = [
    safe_probe(save_creates_missing_parent_directories, "checkpoint-save-creates-missing-parents"),
    safe_probe(restore_takes_new_hyperparameters, "checkpoint-restore-new-hyperparameters"),
    safe_probe(restore_reads_plain_orbax_unverified, "checkpoint-plain-orbax-restores-unverified"),
    safe_probe(overwrite_keeps_only_the_new_checkpoint, "checkpoint-overwrite-leaves-nothing-beside"),
    safe_probe(leftovers_are_not_steps_and_are_cleaned, "checkpoint-leftovers-ignored-then-cleaned"),
    safe_probe(rotation_keeps_the_latest_steps, "checkpoint-max-to-keep-rotation"),
    safe_probe(arrays_without_elements_round_trip, "checkpoint-zero-size-arrays"),
    safe_probe(an_existing_empty_directory_is_a_place_to_save, "checkpoint-existing-empty-directory"),
]


@pytest.mark.parametrize("probe", ERRORS + SAFE)
def test_probe(probe):
    probe()


def test_probe_ids_are_distinct():
    ids = [probe.id for probe in ERRORS + SAFE]
    assert len(ids) == len(set(ids)) >= 15
