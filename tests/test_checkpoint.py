"""gradflow.checkpoint: optimizer states saved and restored with orbax-checkpoint, bit for bit.

The headline test trains 100 steps straight and, separately, 50 steps, saves, restores in a fresh Python
process and trains 50 more; the two runs agree bit for bit (a chain with a schedule, clipping, bfloat16
moments and int32 counters, see checkpoint_resume_worker.py). The rest check the structure of what is
restored (NamedTuples, dtypes, shardings), keeping the last k steps, states of every kind (optax's, plain
containers, arrays without elements), and that restoring into a template of another structure, shape or
dtype fails with an error naming the key path, before orbax is asked to read anything.
"""

from __future__ import annotations

import os
import re
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
    "kwargs, message",
    [
        ({"step": -1}, "step must be an integer >= 0"),
        ({"step": True}, "step must be an integer >= 0"),
        ({"step": 1.0}, "step must be an integer >= 0"),
        ({"step": 1, "max_to_keep": 0}, "max_to_keep must be None or an integer >= 1"),
        ({"max_to_keep": 2}, "pass step= as well"),
    ],
)
def test_save_checks_its_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        checkpoint.save(tmp_path / "ckpt", {"w": jnp.ones(1)}, (), **kwargs)


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
