"""gradflow.checkpoint: optimizer states saved and restored with orbax-checkpoint, bit for bit.

The headline test trains 100 steps straight and, separately, 50 steps, saves, restores in a fresh Python
process and trains 50 more; the two runs agree bit for bit (a chain with a schedule, clipping, bfloat16
moments and int32 counters, see checkpoint_resume_worker.py). The rest check the structure of what is
restored (NamedTuples, dtypes, shardings), keeping the last k steps, states of every kind (optax's, plain
containers, arrays without elements), and that restoring into a template of another structure, shape or
dtype fails with an error naming the key path, before orbax is asked to read anything. The last section
checks the reliability guarantees: data that does not match its checksum and unreadable files are
refused naming the leaf, colliding key paths are refused at save, another optimizer with the same state
layout is refused while new hyperparameters are not, leftovers of interrupted saves are ignored and
cleaned, and a failed save lets the process exit at once (tests/test_checkpoint_crash.py kills saves).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import checkpoint_resume_worker as worker
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import make_params
from registry import OPTIMIZERS

import gradflow
from gradflow import checkpoint
from gradflow.tree import TreeMismatchError

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(worker.__file__).resolve()


def assert_bitwise_equal(actual, expected):
    """Same tree structure (container types included), and per leaf the same shape, dtype and bits
    (a typed PRNG key: the same key type and key data)."""
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(actual)[0], jax.tree.leaves(expected)):
        if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key):
            assert a.dtype == b.dtype, jax.tree_util.keystr(path)
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype, jax.tree_util.keystr(path)
        np.testing.assert_array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}"))


def assert_encoded_equal(actual: dict, expected: dict, name: str):
    assert str(actual[f"{name}.treedef"]) == str(expected[f"{name}.treedef"]), name
    assert list(actual[f"{name}.paths"]) == list(expected[f"{name}.paths"]), name
    assert list(actual[f"{name}.dtypes"]) == list(expected[f"{name}.dtypes"]), name
    for i, path in enumerate(expected[f"{name}.paths"]):
        np.testing.assert_array_equal(actual[f"{name}.leaf{i}"], expected[f"{name}.leaf{i}"], err_msg=f"{name}{path}")


@pytest.fixture(scope="module")
def trained():
    """The worker's optimizer, and its parameters and state after 5 steps (immutable, so shared)."""
    tx = worker.make_optimizer()
    params, opt_state, _ = worker.train(tx, worker.init_params(), tx.init(worker.init_params()), 0, 5)
    return tx, params, opt_state


@pytest.fixture
def no_orbax_restore(monkeypatch):
    """Make any call of orbax's restore fail the test: mismatches must be caught before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("orbax was asked to restore")

    monkeypatch.setattr(ocp.Checkpointer, "restore", refuse)  # StandardCheckpointer's base class
    monkeypatch.setattr(ocp.CheckpointManager, "restore", refuse)


# --------------------------------------------------------------------------------------------------
# Resuming is bit-exact
# --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_in_a_fresh_process_equals_the_straight_run_bit_for_bit(tmp_path):
    tx = worker.make_optimizer()
    params0 = worker.init_params()
    straight_params, straight_state, straight_updates = worker.train(tx, params0, tx.init(params0), 0, 100)
    params50, state50, _ = worker.train(tx, params0, tx.init(params0), 0, worker.RESUME_AT)
    checkpoint.save(tmp_path / "run", params50, state50, step=worker.RESUME_AT)

    out = tmp_path / "resumed.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        child = subprocess.run(
            [sys.executable, str(WORKER), str(tmp_path / "run"), str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the resuming process ran past its 240 s deadline and was killed")
    assert child.returncode == 0, child.stdout[-3000:] + child.stderr[-3000:]

    with np.load(out) as data:
        resumed = dict(data)
    expected = worker.encode(
        {
            "restored_params": params50,
            "restored_state": state50,
            "params": straight_params,
            "opt_state": straight_state,
            "first_updates": straight_updates[worker.RESUME_AT],  # the 51st update
        }
    )
    for name in ("restored_params", "restored_state", "first_updates", "params", "opt_state"):
        assert_encoded_equal(resumed, expected, name)
    # The run exercised what it claims: bfloat16 leaves, and int32 counters at 100 (clipping found no NaN).
    assert "bfloat16" in set(expected["opt_state.dtypes"]) and "bfloat16" in set(expected["params.dtypes"])
    counters = [int(leaf) for leaf in jax.tree.leaves(straight_state) if leaf.dtype == jnp.int32 and leaf.shape == ()]
    assert counters == [100, 100]  # Adam's count and the schedule's (optax's layout)


def test_counters_and_schedule_position_are_restored(tmp_path, trained):
    tx, params, opt_state = trained
    checkpoint.save(tmp_path / "ckpt", params, opt_state)
    restored_params, restored_state = checkpoint.restore(tmp_path / "ckpt", params, tx.init(params))
    assert_bitwise_equal(restored_state, opt_state)
    schedule_state = restored_state[-1][-1]  # (clip's, (adam's, decay's, the schedule's)): optax's nesting
    assert isinstance(schedule_state, gradflow.ScaleByScheduleState)
    assert schedule_state.count.dtype == jnp.int32 and int(schedule_state.count) == 5
    # The next (6th) update from the restored state equals the one from the original state.
    expected = worker.train(tx, params, opt_state, 5, 6)
    actual = worker.train(tx, restored_params, restored_state, 5, 6)
    assert_bitwise_equal(actual, expected)


def test_abstract_templates_restore_the_exact_structure_dtypes_and_shardings(tmp_path, trained):
    tx, params, opt_state = trained
    checkpoint.save(str(tmp_path / "ckpt"), params, opt_state)
    params_like = jax.eval_shape(lambda: params)
    for like in ((params, tx.init(params)), (params_like, jax.eval_shape(tx.init, params_like))):
        restored_params, restored_state = checkpoint.restore(tmp_path / "ckpt", *like)
        assert_bitwise_equal((restored_params, restored_state), (params, opt_state))
        for restored, original in zip(jax.tree.leaves(restored_state), jax.tree.leaves(opt_state)):
            assert isinstance(restored, jax.Array)
            assert restored.sharding == original.sharding
    assert restored_params["dense"]["b"].dtype == jnp.bfloat16
    assert type(restored_state[0]) is type(opt_state[0])  # ClipState, a NamedTuple


# --------------------------------------------------------------------------------------------------
# Runs of steps
# --------------------------------------------------------------------------------------------------


def test_steps_keep_the_last_k_and_restore_the_latest(tmp_path):
    params = {"w": jnp.zeros(2)}
    tx = gradflow.sgd(0.1, momentum=0.9)
    root = tmp_path / "run"
    assert checkpoint.latest_step(root) is None
    for step in (10, 20, 30):
        checkpoint.save(root, {"w": params["w"] + step}, tx.init(params), step=step, max_to_keep=2)
    assert sorted(p.name for p in root.iterdir() if p.name.isdigit()) == ["20", "30"]
    assert checkpoint.latest_step(root) == 30
    assert float(checkpoint.restore(root, params, tx.init(params))[0]["w"][0]) == 30.0
    assert float(checkpoint.restore(root, params, tx.init(params), step=20)[0]["w"][0]) == 20.0
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 10 .*\(its steps: 20, 30\)"):
        checkpoint.restore(root, params, tx.init(params), step=10)
    with pytest.raises(ValueError, match="step 25 comes before the saved step 30"):
        checkpoint.save(root, params, tx.init(params), step=25)
    with pytest.raises(FileExistsError, match="already holds a checkpoint of step 30"):
        checkpoint.save(root, params, tx.init(params), step=30)
    checkpoint.save(root, {"w": params["w"] - 1}, tx.init(params), step=30, overwrite=True)
    assert float(checkpoint.restore(root, params, tx.init(params))[0]["w"][0]) == -1.0


def test_save_never_replaces_what_it_was_not_told_to(tmp_path, monkeypatch):
    params, state = {"w": jnp.ones(2)}, gradflow.adam(0.1).init({"w": jnp.ones(2)})
    (tmp_path / "empty").mkdir()
    checkpoint.save(tmp_path / "empty", params, state)  # an existing empty directory is fine
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        checkpoint.save(tmp_path / "empty", params, state)
    checkpoint.save(tmp_path / "empty", {"w": jnp.zeros(2)}, state, overwrite=True)
    assert float(checkpoint.restore(tmp_path / "empty", params, state)[0]["w"][0]) == 0.0

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a checkpoint"):
        checkpoint.save(notes, params, state, overwrite=True)
    assert (notes / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="holds a single checkpoint"):
        checkpoint.save(tmp_path / "empty", params, state, step=1)

    monkeypatch.chdir(tmp_path)  # a relative path is taken from the current directory
    checkpoint.save("relative", params, state)
    assert_bitwise_equal(checkpoint.restore(tmp_path / "relative", params, state), (params, state))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"step": -1}, ValueError, "save: step must be an integer >= 0, got -1"),
        ({"step": True}, TypeError, "save: step must be an integer >= 0, got True"),
        ({"step": 1.0}, TypeError, "save: step must be an integer >= 0, got 1.0"),
        ({"step": 1, "max_to_keep": 0}, ValueError, "save: max_to_keep must be an integer >= 1, got 0"),
        ({"max_to_keep": 2}, ValueError, "pass step= as well"),
        ({"overwrite": "no"}, TypeError, "save: overwrite must be True or False, got 'no'"),
    ],
)
def test_save_checks_its_arguments(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        checkpoint.save(tmp_path / "ckpt", {"w": jnp.ones(1)}, (), **kwargs)
    assert not (tmp_path / "ckpt").exists()


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_missing_directory_and_empty_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"{missing}: the directory does not exist")):
        checkpoint.restore(missing, {}, ())
    with pytest.raises(FileNotFoundError, match=re.escape(f"{tmp_path} holds no checkpoint")):
        checkpoint.restore(tmp_path, {}, ())
    assert checkpoint.latest_step(missing) is None


def _momentum_state(params, tx):
    return gradflow.sgd(0.1, momentum=0.9).init(params)


def _missing_key(params, tx):
    missing = {"dense": {"w": params["dense"]["w"]}, "scale": params["scale"]}
    return missing, tx.init(missing)


def _extra_key(params, tx):
    extra = {**params, "bias2": jnp.zeros(3)}
    return extra, tx.init(extra)


def _float32_moments(params, tx):
    return gradflow.chain(gradflow.clip_by_global_norm(1.0), gradflow.adamw(0.1, weight_decay=1e-2)).init(params)


def _transposed(params):
    return {**params, "dense": {**params["dense"], "w": params["dense"]["w"].T}}


def _float32_bias(params):
    return {**params, "dense": {**params["dense"], "b": params["dense"]["b"].astype(jnp.float32)}}


# (templates from (params, tx) -> (params_like, opt_state_like), a fragment the message must contain)
WRONG_TEMPLATES = {
    "another optimizer": (
        lambda p, tx: (p, _momentum_state(p, tx)),
        "no key path of opt_state matches: was the checkpoint saved with another optimizer?",
    ),
    "another optimizer, template side": (
        lambda p, tx: (p, _momentum_state(p, tx)),
        "opt_state[0].trace['scale'] is in the template, not in the checkpoint",
    ),
    "another optimizer, checkpoint side": (
        lambda p, tx: (p, _momentum_state(p, tx)),
        "opt_state[1][0]['mu']['scale'] is in the checkpoint, not in the template",
    ),
    "a missing key": (_missing_key, "params['dense']['b'] is in the checkpoint, not in the template"),
    "an extra key": (_extra_key, "params['bias2'] is in the template, not in the checkpoint"),
    "a wrong shape": (
        lambda p, tx: (_transposed(p), tx.init(p)),
        "params['dense']['w'] has shape (4, 3) in the checkpoint, (3, 4) in the template",
    ),
    "a wrong dtype": (
        lambda p, tx: (_float32_bias(p), tx.init(p)),
        "params['dense']['b'] has dtype bfloat16 in the checkpoint, float32 in the template",
    ),
    "float32 moments": (
        lambda p, tx: (p, _float32_moments(p, tx)),
        "opt_state[1][0].mu['dense']['w'] has dtype bfloat16 in the checkpoint, float32 in the template",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_TEMPLATES))
@pytest.mark.parametrize("with_steps", [False, True])
def test_restoring_into_another_structure_names_the_path(tmp_path, trained, no_orbax_restore, case, with_steps):
    tx, params, opt_state = trained
    templates, fragment = WRONG_TEMPLATES[case]
    params_like, opt_state_like = templates(params, tx)
    kwargs = {"step": 7} if with_steps else {}
    checkpoint.save(tmp_path / "ckpt", params, opt_state, **kwargs)
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.restore(tmp_path / "ckpt", params_like, opt_state_like)
    assert isinstance(info.value, TreeMismatchError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert fragment in message, f"{case}:\n{message}"
    assert str(tmp_path / "ckpt") in message and ("step 7" in message) == with_steps


def test_a_long_mismatch_is_summarised(tmp_path, no_orbax_restore):
    many = {f"w{i:02d}": jnp.zeros(1) for i in range(30)}
    checkpoint.save(tmp_path / "ckpt", many, ())
    with pytest.raises(checkpoint.CheckpointMismatchError, match=r"\.\.\. and 18 more") as info:
        checkpoint.restore(tmp_path / "ckpt", {}, ())
    assert len(str(info.value).splitlines()) == 1 + 12 + 1 + 1


# --------------------------------------------------------------------------------------------------
# Other optimizers and plain containers
# --------------------------------------------------------------------------------------------------


def test_optax_state(tmp_path):
    params = {"w": jnp.arange(3.0), "b": jnp.ones(2, jnp.bfloat16)}
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adam(optax.warmup_cosine_decay_schedule(0.0, 0.1, 3, 20), mu_dtype=jnp.bfloat16),
    )
    state, update = tx.init(params), jax.jit(tx.update)  # jitted: eager optax takes seconds to warm up on a CPU
    for _ in range(3):
        _, state = update(jax.tree.map(jnp.ones_like, params), state, params)
    checkpoint.save(tmp_path / "ckpt", params, state)
    restored_params, restored_state = checkpoint.restore(tmp_path / "ckpt", params, tx.init(params))
    assert_bitwise_equal((restored_params, restored_state), (params, state))
    assert isinstance(restored_state[1][0], optax.ScaleByAdamState)
    assert int(restored_state[1][0].count) == 3 and restored_state[1][0].mu["b"].dtype == jnp.bfloat16
    with pytest.raises(
        checkpoint.CheckpointMismatchError, match=r"opt_state\[1\]\[0\]\['mu'\]\['w'\] is in the checkpoint"
    ):
        checkpoint.restore(tmp_path / "ckpt", params, gradflow.adam(0.1).init(params))


def test_plain_containers(tmp_path):
    params = {"layers": [{"w": jnp.ones((2, 2))}, {"w": jnp.full((2,), 2.0)}], "embed": (jnp.arange(4.0),)}
    state = {"count": jnp.asarray(7, jnp.int32), "trace": jax.tree.map(lambda x: 0.5 * x, params), "empty": ()}
    checkpoint.save(tmp_path / "ckpt", params, state)
    restored = checkpoint.restore(tmp_path / "ckpt", params, state)
    assert_bitwise_equal(restored, (params, state))
    assert isinstance(restored[0]["layers"], list) and isinstance(restored[0]["embed"], tuple)


def test_plain_orbax_reads_and_writes_the_same_layout(tmp_path, trained):
    tx, params, opt_state = trained
    target = {"params": params, "opt_state": tx.init(params)}
    checkpoint.save(tmp_path / "ours", params, opt_state)
    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(tmp_path / "ours", target)
        checkpointer.save(tmp_path / "theirs", {"params": params, "opt_state": opt_state})
    assert_bitwise_equal((restored["params"], restored["opt_state"]), (params, opt_state))
    assert_bitwise_equal(checkpoint.restore(tmp_path / "theirs", params, tx.init(params)), (params, opt_state))
    with ocp.CheckpointManager(tmp_path / "run") as manager:
        manager.save(3, args=ocp.args.StandardSave({"params": params, "opt_state": opt_state}))
    assert checkpoint.latest_step(tmp_path / "run") == 3
    assert_bitwise_equal(checkpoint.restore(tmp_path / "run", params, tx.init(params)), (params, opt_state))


# A sample of the registry with states of every kind: arrays without elements (adafactor), PRNG key data
# (uint32), booleans, masks, wrappers around inner states, injected hyperparameters, L-BFGS histories.
REGISTRY_SAMPLE = (
    "adafactor",
    "noisy_sgd",
    "apply_if_finite_adam",
    "multi_steps_adam",
    "lookahead_adam",
    "masked_weight_decay_adam",
    "injected_adam",
    "adam_reduce_on_plateau",
    "schedule_free_adamw",
    "lbfgs",
    "newton_cg",
)


def test_states_of_every_kind(tmp_path):
    params = make_params()
    states = {name: OPTIMIZERS[name](0.1).init(params) for name in REGISTRY_SAMPLE}
    checkpoint.save(tmp_path / "ckpt", params, states)
    restored = checkpoint.restore(tmp_path / "ckpt", *jax.eval_shape(lambda: (params, states)))
    assert_bitwise_equal(restored, (params, states))


def test_arrays_without_elements(tmp_path, no_orbax_restore):
    """orbax refuses to save them: save stores None and records them; restore checks and rebuilds them."""
    params = {**make_params(), "empty": jnp.zeros((0, 3))}  # a parameter with no elements: so are its moments
    state = OPTIMIZERS["adam"](0.1).init(params)
    empty = [jax.tree_util.keystr(path) for path, x in jax.tree_util.tree_flatten_with_path(state)[0] if x.size == 0]
    assert "[0].mu['empty']" in empty
    checkpoint.save(tmp_path / "ckpt", params, state)
    bfloat16_placeholders = jax.tree.map(lambda x: x.astype(jnp.bfloat16) if x.size == 0 else x, state)
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.restore(tmp_path / "ckpt", params, bfloat16_placeholders)
    fragment = "opt_state[0].mu['empty'] has dtype float32 in the checkpoint, bfloat16 in the template"
    assert fragment in str(info.value)
    no_empty = make_params()
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.restore(tmp_path / "ckpt", no_empty, OPTIMIZERS["adam"](0.1).init(no_empty))
    assert "opt_state[0].mu['empty'] is in the checkpoint, not in the template" in str(info.value)


# --------------------------------------------------------------------------------------------------
# Never lost, never silently wrong
# --------------------------------------------------------------------------------------------------


def _swap_data(ours: Path, theirs: Path) -> None:
    """Give the checkpoint ``ours`` the data files of ``theirs`` (same tree), keeping its own metadata and checksums."""
    for entry in theirs.iterdir():
        if entry.name not in ("_METADATA", "_CHECKPOINT_METADATA") and entry.is_dir():
            shutil.rmtree(ours / entry.name)
            shutil.copytree(entry, ours / entry.name)
        elif entry.name == "manifest.ocdbt":
            shutil.copy(entry, ours / entry.name)


@pytest.mark.parametrize("with_steps", [False, True])
def test_data_that_does_not_match_its_checksum_is_refused_naming_the_leaf(tmp_path, with_steps):
    params = {"w": jnp.arange(4.0), "b": jnp.ones(2)}
    state = gradflow.adam(0.1).init(params)
    other = {"w": params["w"], "b": jnp.full(2, 7.0)}  # another checkpoint of the same tree: only b differs
    kwargs = {"step": 1} if with_steps else {}
    checkpoint.save(tmp_path / "ours", params, state, **kwargs)
    checkpoint.save(tmp_path / "theirs", other, state, **kwargs)
    inner = Path("1", "default") if with_steps else Path()
    _swap_data(tmp_path / "ours" / inner, tmp_path / "theirs" / inner)
    with ocp.StandardCheckpointer() as plain:  # what orbax alone reads: b of the other checkpoint, silently
        stored = plain.restore(tmp_path / "ours" / inner, {"params": params, "opt_state": state})
    assert float(stored["params"]["b"][0]) == 7.0
    location = f"step 1 of {tmp_path / 'ours'}" if with_steps else str(tmp_path / "ours")
    message = (
        f"the checkpoint at {location} is damaged: the data of params['b'] does not match the checksum saved with "
        "it. Restore another step or another copy of it."
    )
    with pytest.raises(checkpoint.CheckpointCorruptError, match=re.escape(message)):
        checkpoint.restore(tmp_path / "ours", params, state)
    assert issubclass(checkpoint.CheckpointCorruptError, ValueError)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's closed event loop
def test_a_truncated_or_missing_file_is_a_short_error_naming_the_checkpoint(tmp_path):
    params = {"w": jnp.arange(100.0)}
    checkpoint.save(tmp_path / "ckpt", params, ())
    data_files = [p for p in (tmp_path / "ckpt").rglob("*") if p.parent.name == "d" and p.is_file()]
    for path in data_files:
        os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(checkpoint.CheckpointCorruptError) as info:
        checkpoint.restore(tmp_path / "ckpt", params, ())
    message = str(info.value)
    assert message.startswith(f"could not read the checkpoint at {tmp_path / 'ckpt'} (reading params['w']): ")
    assert "a file of it is missing, truncated or damaged" in message and "tensorstore_spec" not in message
    assert len(message) < 500 and message.endswith("Restore another step or another copy of it.")
    (tmp_path / "ckpt" / "manifest.ocdbt").unlink()
    with pytest.raises(checkpoint.CheckpointCorruptError, match=r"could not read the checkpoint at .*ckpt"):
        checkpoint.restore(tmp_path / "ckpt", params, ())


def test_colliding_key_paths_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError) as info:
        checkpoint.save(tmp_path / "ckpt", {"a.b": jnp.ones(1), "a": {"b": jnp.zeros(1)}}, ())
    assert str(info.value) == (
        "save: params['a']['b'] and params['a.b'] would be stored under the same name 'params.a.b' (orbax joins "
        "the keys of a path with '.'), and one would be lost; rename one of the keys"
    )
    state = ({"mu.w": jnp.ones(1), "mu": {"w": jnp.ones(1)}},)
    with pytest.raises(ValueError, match=re.escape("opt_state[0]['mu']['w'] and opt_state[0]['mu.w']")):
        checkpoint.save(tmp_path / "ckpt", {}, state, step=1)
    assert not (tmp_path / "ckpt").exists()


def test_another_optimizer_with_the_same_state_layout_is_refused(tmp_path, no_orbax_restore):
    params = {"w": jnp.arange(3.0)}
    adam = gradflow.adam(1e-3)
    checkpoint.save(tmp_path / "ckpt", params, adam.init(params), optimizer=adam)
    yogi = gradflow.yogi(1e-3)
    assert jax.tree.structure(yogi.init(params)) == jax.tree.structure(adam.init(params))  # as in optax
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.restore(tmp_path / "ckpt", params, optimizer=yogi)
    assert (
        "  the checkpoint was saved by another optimizer: at optimizer.transforms[0].inner.second.transforms[1], "
        "EWMA('average', False, None) in the checkpoint, YogiMoment in the optimizer given"
    ) in str(info.value).splitlines()
    # AdaBelief's state has Adam's fields: its type tells them apart, with or without optimizer=.
    belief = gradflow.adabelief(1e-3)
    with pytest.raises(checkpoint.CheckpointMismatchError) as info:
        checkpoint.restore(tmp_path / "ckpt", params, belief.init(params))
    assert (
        "  opt_state[0] is a ScaleByAdamState in the checkpoint, a ScaleByBeliefState in the template: was the "
        "checkpoint saved with another optimizer?"
    ) in str(info.value).splitlines()


def test_hyperparameters_may_change_between_save_and_restore(tmp_path):
    params = {"w": jnp.arange(3.0)}
    tx = gradflow.adam(1e-3)
    state = tx.update(params, tx.init(params), params)[1]
    checkpoint.save(tmp_path / "ckpt", params, state, optimizer=tx)
    restored = checkpoint.restore(tmp_path / "ckpt", params, optimizer=gradflow.adam(0.5, b1=0.8, eps=1e-6))
    assert_bitwise_equal(restored, (params, state))
    # optax's transforms have no structure of their own: only their state is compared (optax's layout).
    _, optax_state = checkpoint.restore(tmp_path / "ckpt", params, optimizer=optax.adam(0.1))
    assert isinstance(optax_state[0], optax.ScaleByAdamState)
    assert_bitwise_equal(jax.tree.leaves(optax_state), jax.tree.leaves(state))


def test_leftovers_of_an_interrupted_save_are_ignored_then_cleaned(tmp_path):
    params = {"w": jnp.arange(3.0)}
    root = tmp_path / "run"
    checkpoint.save(root, params, (), step=5)
    for leftover in (".6.gradflow-staging", ".6.gradflow-staging.orbax-checkpoint-tmp", ".4.gradflow-trash"):
        (root / leftover).mkdir()
    (root / "notes").mkdir()  # not gradflow's: kept
    assert checkpoint.latest_step(root) == 5
    with ocp.CheckpointManager(root) as manager:
        assert manager.all_steps() == [5]
    checkpoint.save(root, params, (), step=6)
    assert sorted(os.listdir(root)) == ["5", "6", "notes"]


SAVES_THAT_FAIL = """
import sys
import jax.numpy as jnp
import orbax.checkpoint as ocp
from gradflow import checkpoint

async def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")

a_file, a_directory = sys.argv[1:]
for directory in (a_file, a_directory):
    if directory == a_directory:  # orbax itself fails, in the middle of writing
        ocp.type_handlers.ArrayHandler.serialize = disk_full
    for kwargs in ({}, {"step": 3}):
        try:
            checkpoint.save(directory, {"w": jnp.ones(2)}, (), **kwargs)
        except OSError as error:
            print(type(error).__name__, flush=True)
        else:
            raise SystemExit("the save did not fail")
"""


def test_a_failed_save_lets_the_interpreter_exit_at_once(tmp_path):
    """Into a path that is a file (refused before orbax is called), or when orbax's writing fails: the
    process ends at once (it used to wait five minutes for a background thread)."""
    (tmp_path / "a file").write_text("not a directory")
    directory = tmp_path / "ckpt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        child = subprocess.run(
            [sys.executable, "-c", SAVES_THAT_FAIL, str(tmp_path / "a file"), str(directory)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("the process did not exit within 60 s of its failed saves")
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == ["NotADirectoryError"] * 2 + ["OSError"] * 2
    # No checkpoint and no step is left, only hidden staging that the next save deletes.
    assert all(name.startswith(".") for name in os.listdir(directory))
    assert checkpoint.latest_step(directory) is None
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        checkpoint.restore(directory, {"w": jnp.ones(2)}, ())
    checkpoint.save(directory, {"w": jnp.ones(2)}, (), step=3)
    assert os.listdir(directory) == ["3"]


TWO_PROCESSES = """
import os, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from gradflow import checkpoint

mesh = Mesh(np.array(jax.devices()), ("x",))
def placed(value, spec):
    return jax.make_array_from_callback(value.shape, NamedSharding(mesh, spec), lambda index: value[index])
single, root = sys.argv[3:]
for step in range(3):  # overwrites, and steps with a rotation: renames and deletions on process 0 only
    params = {"w": placed(np.arange(8.0).reshape(4, 2) + step, PartitionSpec("x")),
              "r": placed(np.full(3, float(step)), PartitionSpec())}
    checkpoint.save(single, params, (), overwrite=True)
    checkpoint.save(root, params, (), step=step, max_to_keep=2)
like = jax.eval_shape(lambda: params)
for place in (single, root):
    restored, _ = checkpoint.restore(place, like, ())
    assert restored["w"].sharding == params["w"].sharding
    for name in ("w", "r"):
        for shard, expected in zip(restored[name].addressable_shards, params[name].addressable_shards):
            np.testing.assert_array_equal(shard.data, expected.data)
print("restored", checkpoint.latest_step(root), flush=True)
"""


@pytest.mark.slow
def test_two_processes_save_and_restore_sharded_and_replicated_arrays(tmp_path):
    """Every process calls save and restore; process 0 alone renames and deletes, the others wait for it.
    The replicated array carries a checksum, the one sharded across the processes does not."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    single, root = tmp_path / "ckpt", tmp_path / "run"
    command = [sys.executable, "-c", TWO_PROCESSES, f"127.0.0.1:{port}"]
    children = [
        subprocess.Popen([*command, str(i), str(single), str(root)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    try:
        outputs = [child.communicate(timeout=180) for child in children]
    finally:
        for child in children:
            child.kill()
    for child, (out, err) in zip(children, outputs):
        assert child.returncode == 0 and out.split()[-2:] == ["restored", "2"], err[-3000:]  # after gloo's lines
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "run"] and sorted(os.listdir(root)) == ["1", "2"]
    with ocp.StandardCheckpointer() as plain:
        custom = plain.metadata(single).item_metadata.custom_metadata
    assert [keys for keys, _ in custom["gradflow.checksums"]] == [["params", "r"]]
    template = {"w": np.zeros((4, 2), np.float32), "r": np.zeros(3, np.float32)}
    restored, _ = checkpoint.restore(single, template, ())  # in one process
    np.testing.assert_array_equal(restored["w"], np.arange(8.0).reshape(4, 2) + 2)
    np.testing.assert_array_equal(restored["r"], np.full(3, 2.0))
