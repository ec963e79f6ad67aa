"""Crash consistency of gradflow.checkpoint: a save killed at any point leaves only complete checkpoints.

Two kinds of kill:

- SIGKILL at random moments: a worker process (checkpoint_crash_worker.py) forks a child that saves in
  a loop (one checkpoint overwritten again and again; or a run of steps with ``max_to_keep=2``, each
  step saved and then overwritten) and kills it after a random delay. After each kill, the latest
  complete checkpoint restores bit-exact, and nothing else is reported as valid: every visible step is
  one that was saved (or was being saved) and restores bit-exact; hidden leftovers are all that remain
  of the interrupted save. Then the next child resumes after the latest step.
- A simulated death at each file operation of a save (each rename, exchange and deletion raises), with
  the one-step exchange and with the two-rename fallback, checked the same way, which covers every point
  between the operations deterministically.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import checkpoint_crash_worker as worker
import jax
import numpy as np
import pytest
from etils import epath

from gradflow import checkpoint

# One xdist worker runs the file, so the worker process of the module fixture starts once.
pytestmark = pytest.mark.xdist_group("checkpoint_crash")

ROOT = Path(__file__).resolve().parents[1]
KILLS = 10  # per phase


def delay(rng: random.Random, kill: int) -> float:
    """Seconds before the kill: mostly within the first saves, longer for the last two kills so that even a
    loaded machine gets through several saves (and a rotation)."""
    return rng.uniform(0.02, 0.5) if kill < KILLS - 2 else rng.uniform(0.5, 1.5)


LEFTOVER = re.compile(r"\.(?:\w+)\.gradflow-(?:staging|old|trash)")


def bit_exact(actual, expected) -> bool:
    """The same tree structure and, leaf by leaf, the same dtype and bytes."""
    return jax.tree.structure(actual) == jax.tree.structure(expected) and all(
        np.asarray(a).dtype == np.asarray(b).dtype and np.asarray(a).tobytes() == np.asarray(b).tobytes()
        for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected))
    )


def matching_version(restored, step: int, versions) -> int:
    """The version among ``versions`` whose trees ``restored`` equals bit for bit (or an assertion error)."""
    for version in versions:
        if bit_exact(restored, worker.trees(step, version)):
            return version
    raise AssertionError(f"step {step} restored to none of the versions {sorted(versions)} it may hold")


@pytest.fixture(scope="module")
def zygote():
    if not hasattr(os, "fork"):
        pytest.skip("the worker forks a saving child for each kill")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, str(Path(worker.__file__).resolve())],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "ready"
    yield process
    process.stdin.close()
    process.wait(timeout=60)


def kill_after(zygote, mode: str, directory: Path, first: int, seconds: float, log: Path) -> list[tuple[int, int]]:
    """Let a child save from ``first`` on for ``seconds``, SIGKILL it; the ``(step, version)`` s it finished."""
    log.unlink(missing_ok=True)
    zygote.stdin.write(f"{mode} {directory} {first} {seconds:.4f} {log}\n")
    zygote.stdin.flush()
    assert zygote.stdout.readline().strip() == "killed"
    lines = log.read_text().splitlines() if log.exists() else []
    errors = [line for line in lines if line.startswith("error")]
    assert not errors, errors[0].replace(" | ", "\n")
    return [tuple(map(int, line.split()[1:])) for line in lines]


def visible(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if not name.startswith("."))


def test_overwrite_killed_at_random_points(tmp_path, zygote):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    target, saved = tmp_path / "ckpt", None  # the latest step whose save returned
    template = worker.trees(0, 0)
    for kill in range(KILLS):
        first = 1 if saved is None else saved + 1
        finished = kill_after(zygote, "single", target, first, delay(rng, kill), tmp_path / "log")
        where = f"seed {seed}, kill {kill}, finished {finished}"
        saved = finished[-1][0] if finished else saved
        in_progress = finished[-1][0] + 1 if finished else first
        assert visible(tmp_path) in ([], ["ckpt"], ["ckpt", "log"], ["log"]), where
        if not target.exists():  # killed during the very first save
            assert saved is None, where
            with pytest.raises(FileNotFoundError):
                checkpoint.restore(target, *template)
            continue
        restored = checkpoint.restore(target, *template)
        count = int(np.asarray(restored[1][0]["count"]))
        assert count in ({saved, in_progress} - {None}), where
        matching_version(restored, count, [0])
        saved = count
        leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".")]
        assert all(name.startswith(".ckpt.gradflow-") for name in leftovers), (where, leftovers)
    assert saved is not None and saved >= 2, f"seed {seed}: the children saved too little ({saved})"


def test_steps_killed_at_random_points_during_saves_overwrites_and_rotation(tmp_path, zygote):
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    root = tmp_path / "run"
    done: dict[int, int] = {}  # step -> the version whose save returned last
    template = worker.trees(0, 0)
    for kill in range(KILLS):
        first = max(done, default=0) + 1
        finished = kill_after(zygote, "steps", root, first, delay(rng, kill), tmp_path / "log")
        where = f"seed {seed}, kill {kill}, finished {finished}"
        done.update(finished)
        last = finished[-1] if finished else None
        in_progress = (first, 0) if last is None else (last[0], 1) if last[1] == 0 else (last[0] + 1, 0)
        steps = [int(name) for name in visible(root)] if root.exists() else []
        assert all(name.isdigit() for name in (visible(root) if root.exists() else [])), where
        assert checkpoint.latest_step(root) == (max(steps) if steps else None), where
        if done:
            assert max(done) in steps, where  # the latest complete step is never lost
        assert len(steps) <= worker.MAX_TO_KEEP + 1, where  # at most one rotation in flight
        for step in steps:  # every step reported is valid: saved (or being saved), and bit-exact
            allowed = {done[step]} if step in done else set()
            allowed |= {in_progress[1]} if step == in_progress[0] else set()
            assert allowed, f"{where}: step {step} was never saved"
            done[step] = matching_version(checkpoint.restore(root, *template, step=step), step, allowed)
        leftovers = [name for name in os.listdir(root) if name.startswith(".")] if root.exists() else []
        assert all(LEFTOVER.fullmatch(name.split(".orbax")[0]) for name in leftovers), (where, leftovers)
    assert max(done) >= 2, f"seed {seed}: the children saved too little to test rotation ({done})"


# --------------------------------------------------------------------------------------------------
# A simulated death at each file operation
# --------------------------------------------------------------------------------------------------


class Died(BaseException):
    """Raised in place of the n-th file operation, as if the process had been killed just before it."""


@pytest.fixture
def die_at(monkeypatch, tmp_path):
    """``die_at(n, exchange)``: the n-th rename, exchange or deletion (from 0) raises :class:`Died` (``None``:
    none does); ``exchange=False`` makes the one-step exchange unavailable. Returns the list of operations."""
    path_type = type(epath.Path(tmp_path))  # the local path class, whose methods orbax and gradflow call
    real = {name: getattr(path_type, name) for name in ("rename", "rmtree", "rmdir")}
    real["_exchange"] = checkpoint._exchange

    def install(n: int | None, exchange: bool) -> list[str]:
        calls = []

        def wrap(name, function):
            def operation(*args, **kwargs):
                calls.append(name)
                if len(calls) - 1 == n:
                    raise Died(name)
                return function(*args, **kwargs)

            return operation

        for name in ("rename", "rmtree", "rmdir"):
            monkeypatch.setattr(path_type, name, wrap(name, real[name]))
        unavailable = lambda first, second: False
        monkeypatch.setattr(checkpoint, "_exchange", wrap("exchange", real["_exchange"] if exchange else unavailable))
        return calls

    return install


OPERATIONS = {  # name -> (saves before, the save that dies): each a (step or None, version)
    "overwrite": ([(None, 0)], (None, 1)),
    "new step and rotation": ([(1, 0), (2, 0)], (3, 0)),
    "step overwrite": ([(1, 0), (2, 0)], (2, 1)),
}


def _save(place: Path, step, version: int, **kwargs) -> None:
    trees = worker.trees(step or 0, version)
    if step is None:
        checkpoint.save(place, *trees, overwrite=True)
    else:
        checkpoint.save(place, *trees, step=step, max_to_keep=worker.MAX_TO_KEEP, overwrite=True)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two renames"])
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_death_at_each_file_operation(tmp_path, die_at, operation, exchange):
    before, dying = OPERATIONS[operation]
    calls = die_at(None, exchange)
    base = tmp_path / "base" / "ckpt"
    for step, version in before:
        _save(base, step, version)
    shutil.copytree(base, tmp_path / "count")
    calls.clear()
    _save(tmp_path / "count", *dying)  # count the file operations of the dying save
    count = len(calls)
    assert count >= 2
    template = worker.trees(0, 0)
    for n in range(count + 1):  # n == count: no death
        place = tmp_path / f"at{n}"
        shutil.copytree(base, place)
        die_at(n, exchange)
        try:
            _save(place, *dying)
        except Died:
            pass
        die_at(None, exchange)
        step, version = dying
        old = dict(before)
        if step is None:  # the old checkpoint or the new one, bit for bit; the next save cleans up
            matching_version(checkpoint.restore(place, *template), 0, {old[None], version})
            _save(place, None, 2)
            assert [name for name in os.listdir(tmp_path) if name.startswith(f".{place.name}.")] == []
            continue
        latest = checkpoint.latest_step(place)  # first: it puts back a step that the two renames set aside
        steps = [int(name) for name in visible(place)]
        assert latest == max(steps)
        assert max(old) in steps, (n, steps)
        for saved in steps:
            allowed = ({old[saved]} if saved in old else set()) | ({version} if saved == step else set())
            assert allowed, (n, saved)
            matching_version(checkpoint.restore(place, *template, step=saved), saved, allowed)
        _save(place, step + 1, 0)  # the next save cleans up what the death left
        assert [name for name in os.listdir(place) if name.startswith(".")] == []
