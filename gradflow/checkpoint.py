"""Saving and restoring training state (parameters and optimizer state) with orbax-checkpoint.

gradflow's optimizer states are pytrees of arrays (NamedTuples, dataclasses, tuples, dicts), as
optax's are, so orbax-checkpoint, the JAX ecosystem's standard, saves them as they are. This module is
the small recipe around it that a training loop needs:

- :func:`save` writes ``params`` and ``opt_state`` to a directory, either as one checkpoint
  (``save(path, params, opt_state)``) or as numbered steps of a run
  (``save(root, params, opt_state, step=step, max_to_keep=3)``, keeping the last ``max_to_keep``).
- :func:`restore` reads them back into templates (the ``init`` result, or ``jax.eval_shape`` of it),
  so the restored trees have the template's exact containers (gradflow's NamedTuples and dataclasses),
  dtypes (bfloat16 moments, int32 counters) and shardings. Under a root of steps it restores the
  latest one unless told a ``step``; :func:`latest_step` says which that is, to resume a loop.
- Before orbax reads anything, the checkpoint's stored tree is compared with the templates: a different
  optimizer, a missing or extra parameter, another shape or another dtype raises a
  :class:`CheckpointMismatchError` that names each key path that differs.

A checkpoint is never lost or silently wrong:

- **Complete or absent.** :func:`save` writes the whole checkpoint into a hidden sibling
  (``.<name>.gradflow-staging``) and moves it into place only when it is complete. An overwrite swaps
  the new directory with the old one in one step (Linux ``renameat2(RENAME_EXCHANGE)``), then deletes
  the old one; ``max_to_keep`` renames a step to a hidden name before deleting it. So a process killed
  at any point leaves every visible checkpoint (and step) complete: the previous one, or the new one.
  Where the exchange is not available (another OS, a remote filesystem), the old checkpoint is renamed
  aside (``.<name>.gradflow-old``) before the new one is moved in; if the process dies between the two
  renames, the next :func:`save`, :func:`restore` or :func:`latest_step` puts the old one back. Hidden
  leftovers of an interrupted save are deleted by the next save to the same place. One process (or one
  multi-process job) saves to a given place at a time.
- **Verified.** :func:`save` stores a checksum (BLAKE2b) of every array's bytes; :func:`restore`
  recomputes them and raises :class:`CheckpointCorruptError` naming each damaged leaf. A file that
  cannot be read (missing, truncated) raises the same error. Checkpoints written by plain orbax have no
  checksums and restore unverified. An array that no single process holds entirely (sharded across
  processes, not replicated) is stored without a checksum and restored unverified.
- **Unambiguous.** orbax stores each array under its key path joined with ``.``, so
  ``{"a.b": x, "a": {"b": y}}`` would keep one of the two: :func:`save` refuses such trees, naming both
  paths, before anything is written.
- **The right optimizer.** The checkpoint records the type of every node of ``opt_state`` that holds
  arrays (``ScaleByAdamState``, ``ScaleByBeliefState``: the class name, so optax's and gradflow's
  same-named states match) and, given ``optimizer=tx``, the optimizer's own structure (its transforms
  and static fields, without hyperparameter values, which may change between save and restore).
  :func:`restore` refuses another one, naming the path where they differ. Adam's and Yogi's states are
  alike (as in optax), so only ``optimizer=`` tells them apart; optax's own transforms (a NamedTuple of
  two closures) carry no structure, so for them only the state is compared.
- **Checked first.** Every argument is checked before orbax is called, so a failed save starts no
  background thread and the process can exit at once.

A checkpoint is an ordinary orbax checkpoint of the dict ``{"params": params, "opt_state": opt_state}``
(an ``orbax.checkpoint.StandardCheckpointer`` directory; with ``step``, an
``orbax.checkpoint.CheckpointManager`` root whose step directories hold it as the ``default`` item). So
plain orbax reads what :func:`save` writes, and :func:`restore` reads what plain orbax wrote in that
layout (the hidden staging names are ignored by orbax's listing of steps)::

    import orbax.checkpoint as ocp
    target = {"params": params_like, "opt_state": opt_state_like}
    restored = ocp.StandardCheckpointer().restore(path, target)                   # save(path, ...)
    restored = ocp.CheckpointManager(root).restore(step, args=ocp.args.StandardRestore(target))  # step=

One departure: orbax refuses to save arrays with no elements, which some states hold as placeholders
(:func:`gradflow.adafactor` for the factors of an unfactored leaf). :func:`save` stores ``None`` in
their place and lists their key paths, shapes and dtypes in the checkpoint's custom metadata;
:func:`restore` checks them like any other leaf and rebuilds them from the template (plain orbax
restores such a checkpoint into a target with ``None`` at those places).

:func:`save` returns once the checkpoint is complete on disk. To save asynchronously, or to save more
items (a data-loader state, metrics), use ``orbax.checkpoint.CheckpointManager`` directly in the layout
above. In a multi-process run, every process calls :func:`save` and :func:`restore`, as with orbax;
renames and deletions happen on process 0, and every process waits for them (orbax's barrier).

orbax-checkpoint is imported when a function here is first called; ``import gradflow`` does not need it.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import itertools
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.tree import TreeMismatchError
from gradflow.validation import check_flag, check_integer

__all__ = ["CheckpointCorruptError", "CheckpointMismatchError", "latest_step", "restore", "save"]

_MAX_LINES = 12
# Custom-metadata keys (JSON): one [[keys...], ...] record per array or node, keyed by its key names.
_ZERO_SIZE = "gradflow.zero_size_arrays"  # [[keys...], shown path, shape, dtype] per array without elements
_CHECKSUMS = "gradflow.checksums"  # [[keys...], BLAKE2b hex digest of the bytes] per array
_STATE_TYPES = "gradflow.state_types"  # [[keys...], class name, shown path] per named node of opt_state
_OPTIMIZER = "gradflow.optimizer"  # the optimizer's structure (see _describe), when save was given one
_BARRIERS = itertools.count()  # orbax's barriers need a unique name; every process counts alike


class CheckpointMismatchError(TreeMismatchError):
    """A checkpoint does not fit the templates it is restored into (key paths, shapes, dtypes, optimizer).

    A :class:`~gradflow.tree.TreeMismatchError`, so a ``ValueError``; :func:`restore` raises it before
    orbax reads any array, with one line per key path that differs.

    Example:
      >>> import os, tempfile, jax.numpy as jnp, gradflow
      >>> from gradflow import checkpoint
      >>> params = {"w": jnp.ones(3)}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     checkpoint.save(os.path.join(tmp, "ckpt"), params, ())
      ...     try:
      ...         checkpoint.restore(os.path.join(tmp, "ckpt"), {"w": jnp.ones(4)}, ())
      ...     except checkpoint.CheckpointMismatchError as error:
      ...         print(str(error).splitlines()[1])
        params['w'] has shape (3,) in the checkpoint, (4,) in the template
    """


class CheckpointCorruptError(ValueError):
    """A checkpoint's data is damaged: an array does not match its checksum, or a file cannot be read.

    A ``ValueError``, raised by :func:`restore` after reading; the message names the checkpoint and
    each damaged leaf (by its key path), when it is known. Such a checkpoint cannot be trusted: restore
    another step or another copy.

    Example:
      >>> import glob, os, tempfile, jax.numpy as jnp
      >>> from gradflow import checkpoint
      >>> params = {"w": jnp.arange(1000.0)}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     checkpoint.save(os.path.join(tmp, "ckpt"), params, ())
      ...     for name in glob.glob(os.path.join(tmp, "ckpt", "**", "d", "*"), recursive=True):
      ...         os.truncate(name, 10)  # damage every data file
      ...     try:
      ...         checkpoint.restore(os.path.join(tmp, "ckpt"), params, ())
      ...     except checkpoint.CheckpointCorruptError as error:
      ...         print(str(error).split(": ")[0])
      could not read the checkpoint at .../ckpt (reading params['w'])
    """


def save(
    directory: str | os.PathLike[str],
    params: Any,
    opt_state: Any,
    *,
    step: int | None = None,
    max_to_keep: int | None = None,
    overwrite: bool = False,
    optimizer: Any = None,
) -> None:
    """Save ``params`` and ``opt_state`` with orbax-checkpoint; returns when the checkpoint is on disk.

    The checkpoint is written beside its place and moved in when complete, with a checksum of every
    array (see the module docstring): a crash never leaves a visible checkpoint half written.

    Args:
      directory: without ``step``, the checkpoint's own directory (it must not exist yet, or be empty);
        with ``step``, the root of a run's checkpoints, one subdirectory per step. A relative path is
        taken from the current directory; missing parent directories are created; ``gs://`` and other
        paths that orbax supports work too (without the one-step swap of an overwrite).
      params: a pytree of arrays (the model parameters, and anything that is to be restored with them).
      opt_state: the optimizer state, as ``tx.init`` and ``tx.update`` return it (gradflow's or optax's).
      step: the training step; the checkpoint goes to ``directory/<step>`` in an orbax
        ``CheckpointManager`` layout. Steps must increase: a step below the latest saved one is an error.
      max_to_keep: with ``step``, keep only the latest ``max_to_keep`` steps (``None``: keep all).
      overwrite: replace an existing checkpoint at ``directory`` (or of ``step``) instead of raising.
        Only a checkpoint is ever replaced: a non-empty directory that is not one is never deleted.
      optimizer: the transform whose state ``opt_state`` is; its structure is recorded, so that
        ``restore(..., optimizer=other)`` refuses another optimizer (hyperparameter values may differ).

    Raises:
      FileExistsError: if the checkpoint (or the step) exists and ``overwrite`` is false, or if
        ``directory`` is a non-empty directory that is not a checkpoint.
      NotADirectoryError: if ``directory`` or one of its parents is a file.
      TypeError: for a leaf that is not an array or a number (a string, a traced value), a ``step`` or
        ``max_to_keep`` that is not an integer, an ``overwrite`` that is not a bool, or an ``optimizer``
        without ``init``.
      ValueError: for two key paths that orbax would store under one name, a negative ``step``, a
        ``max_to_keep`` below 1 or without ``step``, a ``step`` below the latest saved step, or ``step``
        given for a directory that holds a single checkpoint.

    Example:
      >>> import os, tempfile, jax.numpy as jnp, gradflow
      >>> from gradflow import checkpoint
      >>> tx = gradflow.adam(1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     for step in (100, 200, 300):
      ...         checkpoint.save(tmp, params, tx.init(params), step=step, max_to_keep=2, optimizer=tx)
      ...     sorted(os.listdir(tmp)), checkpoint.latest_step(tmp)
      (['200', '300'], 300)
    """
    path = _path(directory, "save")
    overwrite = check_flag("save", "overwrite", overwrite)
    if step is None and max_to_keep is not None:
        raise ValueError("save: max_to_keep applies to a run of steps; pass step= as well")
    if step is not None:
        step = check_integer("save", "step", step, low=0)
    if max_to_keep is not None:
        max_to_keep = check_integer("save", "max_to_keep", max_to_keep, low=1)
    if optimizer is not None:
        _check_optimizer("save", optimizer)
    _check_is_directory(path, "save")
    tree = _keys_as_data({"params": params, "opt_state": opt_state})
    _check_saveable(tree)
    item, zero_size = _without_zero_size(tree)
    custom: dict[str, Any] = {_CHECKSUMS: _checksums(item), _STATE_TYPES: _state_types(tree["opt_state"])}
    if zero_size:
        custom[_ZERO_SIZE] = zero_size
    if optimizer is not None:
        custom[_OPTIMIZER] = _identity(optimizer)
    ocp = _orbax()
    if step is None:
        _save_single(ocp, path, item, custom, overwrite)
    else:
        _save_step(ocp, path, step, item, custom, overwrite, max_to_keep)


def _save_single(ocp: Any, path: Any, item: Any, custom: dict[str, Any], overwrite: bool) -> None:
    _on_primary(lambda: _recover(path))
    replace = path.exists() and any(path.iterdir())
    if replace and not _is_checkpoint(path):
        raise FileExistsError(f"save: {path} is a non-empty directory that is not a checkpoint")
    if replace and not overwrite:
        raise FileExistsError(f"save: a checkpoint already exists at {path}; pass overwrite=True to replace it")
    _on_primary(lambda: _clean(path.parent, re.escape(path.name)))
    staging = _sibling(path, "staging")
    _write(ocp, staging, item, custom, as_step=False)
    _on_primary(lambda: _move_into_place(staging, path, replace=replace))


def _save_step(
    ocp: Any, root: Any, step: int, item: Any, custom: dict[str, Any], overwrite: bool, max_to_keep: int | None
) -> None:
    if root.exists() and _is_checkpoint(root):
        raise ValueError(
            f"save: {root} holds a single checkpoint (saved without step), so it cannot be the root of steps"
        )
    _on_primary(lambda: _recover_steps(root))
    steps = _all_steps(ocp, root)
    later = sorted(s for s in steps if s > step)
    if later:
        raise ValueError(
            f"save: step {step} comes before the saved step {later[-1]} in {root}; steps must increase "
            "(delete the later steps, or save to another directory)"
        )
    if step in steps and not overwrite:
        raise FileExistsError(
            f"save: {root} already holds a checkpoint of step {step}; pass overwrite=True to replace it"
        )
    _on_primary(lambda: _clean(root, r"\d+"))
    target = root / str(step)
    staging = _sibling(target, "staging")
    _write(ocp, staging, item, custom, as_step=True)
    _on_primary(lambda: _move_into_place(staging, target, replace=step in steps))
    if max_to_keep is not None:
        for old in sorted({*steps, step})[:-max_to_keep]:
            _on_primary(functools.partial(_delete, root / str(old)))


def restore(
    directory: str | os.PathLike[str],
    params_like: Any,
    opt_state_like: Any = None,
    *,
    step: int | None = None,
    optimizer: Any = None,
) -> tuple[Any, Any]:
    """Restore the ``(params, opt_state)`` that :func:`save` wrote, into the structure of templates.

    The templates give the restored trees their containers, dtypes and shardings: pass the arrays of a
    freshly built model and ``tx.init(params)``, or ``jax.eval_shape`` of them (``jax.ShapeDtypeStruct``
    leaves, with a ``sharding`` to place the restored arrays), so nothing is computed. The checkpoint's
    stored key paths, shapes, dtypes and state types must equal the templates' (no silent casting);
    they are compared before any array is read. Every array read is checked against its checksum.

    Args:
      directory: a checkpoint written by ``save(directory, ...)``, or the root of one written by
        ``save(directory, ..., step=...)``.
      params_like: a pytree like the saved ``params`` (arrays or ``jax.ShapeDtypeStruct`` s).
      opt_state_like: a pytree like the saved ``opt_state``: the same optimizer's ``init`` on
        ``params_like``, or ``jax.eval_shape(tx.init, params_like)``. Optional with ``optimizer``.
      step: the step to restore from a root of steps (``None``: the latest).
      optimizer: the transform the state is restored for. Without ``opt_state_like``, the template is
        ``jax.eval_shape(optimizer.init, params_like)``. If the checkpoint was saved with
        ``optimizer=``, the two optimizers' structures must be equal (hyperparameter values may differ).

    Returns:
      ``(params, opt_state)``, with the tree structures, dtypes and shardings of the templates.

    Raises:
      FileNotFoundError: if ``directory`` does not exist, holds no checkpoint, or has no such ``step``.
      CheckpointMismatchError: (a ``ValueError``) if the checkpoint's key paths, shapes, dtypes, state
        types or optimizer differ from the templates'; the message names each path that differs.
      CheckpointCorruptError: (a ``ValueError``) if an array does not match its checksum or a file of
        the checkpoint cannot be read; the message names the damaged leaves.

    Example:
      >>> import os, tempfile, jax, jax.numpy as jnp, gradflow
      >>> from gradflow import checkpoint
      >>> tx = gradflow.chain(gradflow.clip_by_global_norm(1.0), gradflow.adam(1e-3, mu_dtype=jnp.bfloat16))
      >>> params = {"w": jnp.ones(3), "b": jnp.zeros(2, jnp.bfloat16)}
      >>> opt_state = tx.init(params)  # in a training loop: the latest tx.update's state
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     checkpoint.save(os.path.join(tmp, "ckpt"), params, opt_state, optimizer=tx)
      ...     params_like = jax.eval_shape(lambda: params)
      ...     new_params, new_state = checkpoint.restore(os.path.join(tmp, "ckpt"), params_like, optimizer=tx)
      >>> new_state[1][0].count, new_state[1][0].mu["b"].dtype
      (Array(0, dtype=int32), dtype(bfloat16))
      >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +ELLIPSIS
      ...     checkpoint.save(os.path.join(tmp, "ckpt"), params, opt_state)
      ...     checkpoint.restore(os.path.join(tmp, "ckpt"), params, gradflow.sgd(0.1, momentum=0.9).init(params))
      Traceback (most recent call last):
      ...
      gradflow.checkpoint.CheckpointMismatchError: the checkpoint at .../ckpt does not fit the templates:
        no key path of opt_state matches: was the checkpoint saved with another optimizer?
        opt_state[0].trace['b'] is in the template, not in the checkpoint
      ...
    """
    path = _path(directory, "restore")
    if step is not None:
        step = check_integer("restore", "step", step, low=0)
    if optimizer is not None:
        _check_optimizer("restore", optimizer)
    if opt_state_like is None:
        if optimizer is None:
            raise TypeError(
                "restore: pass opt_state_like (tx.init(params_like), or jax.eval_shape of it) or optimizer=tx"
            )
        opt_state_like = jax.eval_shape(optimizer.init, params_like)
    _check_is_directory(path, "restore")
    ocp = _orbax()
    _on_primary(lambda: _recover(path))
    if not path.exists():
        raise FileNotFoundError(f"restore: no checkpoint at {path}: the directory does not exist")
    _on_primary(lambda: _recover_steps(path))
    template = {"params": params_like, "opt_state": opt_state_like}
    stored_like = _keys_as_data(template)  # what save wrote: PRNG keys as their data
    target = _without_zero_size(stored_like)[0]
    names = _names(target)
    with _manager(ocp, path, create=False) as manager:
        steps = manager.all_steps()
        if step is not None and step not in steps:
            available = ", ".join(map(str, sorted(steps))) or "none"
            raise FileNotFoundError(f"restore: {path} holds no checkpoint of step {step} (its steps: {available})")
        if step is None and steps:
            step = max(steps)
        if step is not None:
            location = f"step {step} of {path}"
            metadata = _read(location, names, lambda: manager.item_metadata(step))
            if _stored_tree(metadata) is None:
                raise FileNotFoundError(f"restore: {location} holds no single-item checkpoint that save could write")
            _check_fits(metadata, stored_like, optimizer, location)
            restored = _read(location, names, lambda: manager.restore(step, args=ocp.args.StandardRestore(target)))
            _verify(restored, metadata, location)
            return _data_as_keys(_with_zero_size(restored, stored_like), template)
    metadata = _single_checkpoint_metadata(ocp, path, names)
    if metadata is None:
        raise FileNotFoundError(
            f"restore: {path} holds no checkpoint (neither one written by save(directory, ...) nor "
            "steps written by save(directory, ..., step=...))"
        )
    _check_fits(metadata, stored_like, optimizer, str(path))
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
        restored = _read(str(path), names, lambda: checkpointer.restore(path, args=ocp.args.StandardRestore(target)))
    _verify(restored, metadata, str(path))
    return _data_as_keys(_with_zero_size(restored, stored_like), template)


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The latest step saved under ``directory`` by ``save(..., step=...)``; ``None`` if there is none.

    A directory that does not exist has no steps, so a training loop can resume with::

        start = checkpoint.latest_step(root)
        if start is not None:
            params, opt_state = checkpoint.restore(root, params, optimizer=tx)

    Only complete steps are listed (a step is moved into place once written).

    Example:
      >>> import tempfile
      >>> from gradflow import checkpoint
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     checkpoint.latest_step(tmp) is None
      True
    """
    path = _path(directory, "latest_step")
    _check_is_directory(path, "latest_step")
    if not path.exists():
        return None
    ocp = _orbax()
    _on_primary(lambda: _recover_steps(path))
    with _manager(ocp, path, create=False) as manager:
        return manager.latest_step()


# --------------------------------------------------------------------------------------------------
# Checking what save is given
# --------------------------------------------------------------------------------------------------


def _path(directory: Any, owner: str) -> Any:
    """An ``epath.Path``, absolute for a local path (orbax requires absolute paths)."""
    from etils import epath  # a dependency of orbax-checkpoint

    if isinstance(directory, os.PathLike):
        directory = os.fspath(directory)
    if not isinstance(directory, str) or not directory:
        raise TypeError(f"{owner}: directory must be a non-empty str or os.PathLike of str, got {directory!r}")
    return epath.Path(directory if "://" in directory else os.path.abspath(directory))


def _check_is_directory(path: Any, owner: str) -> None:
    """Raise ``NotADirectoryError`` if ``path`` or one of its parents is a file (a missing path is fine)."""
    for place in (path, *path.parents):
        if place.exists():
            if not place.is_dir():
                what = "" if place == path else f" (a parent of {path})"
                raise NotADirectoryError(
                    f"{owner}: {place}{what} is a file, not a directory; a checkpoint is a directory: pass the "
                    "path of a new or empty directory, or of a checkpoint"
                )
            return


def _check_optimizer(owner: str, optimizer: Any) -> None:
    if not callable(getattr(optimizer, "init", None)) or not callable(getattr(optimizer, "update", None)):
        raise TypeError(
            f"{owner}: optimizer must be a gradient transformation (with init and update, such as "
            f"gradflow.adam(1e-3) or an optax one), got {optimizer!r}"
        )


def _shown(keypath: tuple[Any, ...]) -> str:
    """A key path as the user writes it: ``opt_state[0].mu['w']``."""
    return _key_name(keypath[0]) + jax.tree_util.keystr(keypath[1:]) if keypath else "<root>"


def _check_saveable(tree: dict[str, Any]) -> None:
    """Every leaf is a concrete array or number, and no two key paths share orbax's stored name."""
    names: dict[str, str] = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shown = _shown(keypath)
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(f"save: {shown} is a traced value; call save outside jax.jit, jax.vmap and jax.grad")
        if isinstance(leaf, (str, bytes)) or not isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float)):
            raise TypeError(
                f"save: {shown} is a {type(leaf).__name__}, not an array: a checkpoint holds arrays and numbers "
                "(jax or NumPy arrays, Python ints and floats)"
            )
        name = ".".join(_key_name(key) for key in keypath)
        if name in names:
            raise ValueError(
                f"save: {names[name]} and {shown} would be stored under the same name {name!r} (orbax joins "
                "the keys of a path with '.'), and one would be lost; rename one of the keys"
            )
        names[name] = shown


# --------------------------------------------------------------------------------------------------
# Writing: stage beside the target, then move into place (on process 0)
# --------------------------------------------------------------------------------------------------


def _on_primary(action: Callable[[], Any]) -> None:
    """Run ``action`` (renames, deletions) on process 0 only; every process waits until it is done."""
    if jax.process_count() == 1:
        action()
        return
    if jax.process_index() == 0:
        action()
    from orbax.checkpoint import multihost

    multihost.sync_global_processes(f"gradflow_checkpoint_{next(_BARRIERS)}")


def _sibling(target: Any, role: str) -> Any:
    """The hidden name beside ``target`` for a staged (``staging``), set-aside (``old``) or deleted (``trash``) copy."""
    return target.parent / f".{target.name}.gradflow-{role}"


def _write(ocp: Any, staging: Any, item: Any, custom: dict[str, Any], *, as_step: bool) -> None:
    """Write the checkpoint to ``staging`` with orbax (synchronously), as a single checkpoint or as a step."""
    args = ocp.args.StandardSave(item, custom_metadata=custom)
    handler = ocp.StandardCheckpointHandler()
    if as_step:  # a CheckpointManager step directory: the item under "default", and the step's metadata
        handler, args = ocp.CompositeCheckpointHandler(), ocp.args.Composite(default=args)
    with ocp.Checkpointer(handler) as checkpointer:
        checkpointer.save(staging, args=args)


def _move_into_place(staging: Any, target: Any, *, replace: bool) -> None:
    """Move the complete checkpoint at ``staging`` to ``target``; an old one there is swapped out, then deleted."""
    if not replace:
        if target.exists():  # an empty directory
            target.rmdir()
        staging.rename(target)
    elif _exchange(staging, target):
        staging.rmtree()  # the old checkpoint, now under the staging name
    else:  # two renames: _recover puts the old one back if the process dies between them
        aside = _sibling(target, "old")
        target.rename(aside)
        staging.rename(target)
        aside.rmtree()


_RENAME_EXCHANGE = 2  # from <linux/fs.h>
_AT_FDCWD = -100


def _exchange(first: Any, second: Any) -> bool:
    """Swap two local directories in one step (Linux ``renameat2``); ``False`` where that is not available."""
    if not sys.platform.startswith("linux") or "://" in str(first):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc >= 2.28
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(str(first)), _AT_FDCWD, os.fsencode(str(second)), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # the filesystem or kernel cannot exchange
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def _delete(target: Any) -> None:
    """Delete a checkpoint so that it is complete or absent at its name: rename it to a hidden name first."""
    trash = _sibling(target, "trash")
    target.rename(trash)
    trash.rmtree()


def _recover(target: Any) -> None:
    """Put back the old checkpoint that an overwrite set aside, if the process died before moving the new one in."""
    aside = _sibling(target, "old")
    if aside.exists() and not target.exists():
        aside.rename(target)


def _recover_steps(root: Any) -> None:
    if root.is_dir():
        for aside in root.glob(".*.gradflow-old"):
            name = aside.name[1 : -len(".gradflow-old")]
            if name.isdigit():
                _recover(root / name)


def _clean(parent: Any, name_pattern: str) -> None:
    """Delete the hidden leftovers of interrupted saves (staged, set-aside, trashed) of names matching the pattern."""
    if parent.is_dir():
        leftover = re.compile(rf"\.(?:{name_pattern})\.gradflow-(?:staging|old|trash)")
        for child in parent.iterdir():
            if leftover.match(child.name):
                child.rmtree() if child.is_dir() else child.unlink()


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:  # pragma: no cover - orbax-checkpoint is a dev dependency
        raise ImportError("gradflow.checkpoint needs orbax-checkpoint: pip install orbax-checkpoint") from error
    return ocp


def _manager(ocp: Any, root: Any, *, create: bool = True) -> Any:
    # Readers pass create=False rather than orbax's read_only=True, which logs two warnings per call.
    options = ocp.CheckpointManagerOptions(create=create)
    return ocp.CheckpointManager(root, item_handlers=ocp.StandardCheckpointHandler(), options=options)


def _all_steps(ocp: Any, root: Any) -> list[int]:
    if not root.exists():
        return []
    with _manager(ocp, root, create=False) as manager:
        return list(manager.all_steps())


def _stored_tree(metadata: Any) -> Any:
    """The tree of per-array metadata in what orbax's ``metadata`` returns (``None``: no checkpoint)."""
    metadata = getattr(metadata, "item_metadata", metadata)  # a StepMetadata, or the item's own
    return getattr(metadata, "tree", metadata)  # a TreeMetadata, or the bare tree


def _custom_metadata(metadata: Any) -> dict[str, Any]:
    custom = getattr(getattr(metadata, "item_metadata", metadata), "custom_metadata", None)
    return custom if isinstance(custom, dict) else {}


def _single_checkpoint_metadata(ocp: Any, path: Any, names: dict[str, str]) -> Any:
    """The item metadata of the checkpoint at ``path`` itself (not a root of steps); ``None`` if there is none.

    A checkpoint whose metadata cannot be read is damaged: :class:`CheckpointCorruptError`, naming the
    leaves of ``names`` (stored name: shown path) that the error names.
    """
    if not _is_checkpoint(path):
        return None
    handler = ocp.StandardCheckpointHandler()
    try:  # the handler raises quietly where StandardCheckpointer.metadata logs warnings first
        return _read(str(path), names, lambda: handler.metadata(path))
    finally:
        handler.close()


def _is_checkpoint(path: Any) -> bool:
    """Whether ``path`` holds a single checkpoint (orbax's metadata files), not a root of steps or other files."""
    return (path / "_METADATA").exists()


def _names(tree: Any) -> dict[str, str]:
    """Each leaf's name as orbax stores it (``params.dense.w``) and its key path as shown to the user."""
    return {
        ".".join(map(_key_name, keypath)): _shown(keypath)
        for keypath, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _read(location: str, names: dict[str, str], read: Callable[[], Any]) -> Any:
    """``read()``; an error of orbax or TensorStore (a missing or truncated file) becomes a CheckpointCorruptError."""
    try:
        return read()
    except (CheckpointCorruptError, CheckpointMismatchError, FileNotFoundError):
        raise
    except Exception as error:  # TensorStore raises ValueError and others, with its storage spec
        raise CheckpointCorruptError(_unreadable(location, error, names)) from error


def _unreadable(location: str, error: Exception, names: dict[str, str]) -> str:
    """The message for a checkpoint that orbax could not read, naming the leaves that the error names."""
    text = str(error)
    leaves = sorted(shown for name, shown in names.items() if re.search(rf"(?<![\w.]){re.escape(name)}(?![\w.])", text))
    first_line = (text.splitlines() or [""])[0]
    summary = first_line if len(first_line) <= 160 else first_line[:157] + "..."
    named = f" (reading {', '.join(leaves)})" if leaves else ""
    return (
        f"could not read the checkpoint at {location}{named}: a file of it is missing, truncated or damaged "
        f"({type(error).__name__}: {summary}). Restore another step or another copy of it."
    )


def _digest(array: np.ndarray) -> str:
    """The BLAKE2b digest of an array's dtype, shape and bytes."""
    digest = hashlib.blake2b(f"{array.dtype.name}{array.shape}".encode(), digest_size=16)
    raw: Any = np.ascontiguousarray(array).reshape(-1).view(np.uint8)  # bytes of any dtype (bfloat16 too), no copy
    digest.update(raw)
    return digest.hexdigest()


def _host_value(leaf: Any) -> np.ndarray | None:
    """The whole array as this process holds it; ``None`` for one sharded across processes (none holds it all)."""
    if not isinstance(leaf, jax.Array) or leaf.is_fully_addressable:
        return np.asarray(leaf)
    whole = [shard.data for shard in leaf.addressable_shards if shard.data.shape == leaf.shape]  # replicated
    return np.asarray(whole[0]) if whole else None


def _checksums(item: Any) -> list[list[Any]]:
    records = []
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(item)[0]:
        value = _host_value(leaf)
        if value is not None:
            records.append([[_key_name(key) for key in keypath], _digest(value)])
    return records


def _verify(restored: Any, metadata: Any, location: str) -> None:
    """Raise :class:`CheckpointCorruptError` naming each restored array whose bytes differ from its checksum."""
    saved = {tuple(keys): digest for keys, digest in _custom_metadata(metadata).get(_CHECKSUMS, [])}
    if not saved:  # written by plain orbax: nothing to verify
        return
    damaged = []
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]:
        expected, value = saved.get(tuple(map(_key_name, keypath))), _host_value(leaf)
        if expected is not None and value is not None and _digest(value) != expected:
            damaged.append(_shown(keypath))
    if damaged:
        shown = damaged[:_MAX_LINES] + (
            [f"... and {len(damaged) - _MAX_LINES} more"] if len(damaged) > _MAX_LINES else []
        )
        raise CheckpointCorruptError(
            f"the checkpoint at {location} is damaged: the data of {', '.join(shown)} does not match the checksum "
            "saved with it. Restore another step or another copy of it."
        )


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _keys_as_data(tree: Any) -> Any:
    """``tree`` with each typed PRNG key (``AddNoiseState.rng_key``, as in optax) replaced by its uint32 data."""
    return jax.tree.map(
        lambda x: (
            jax.eval_shape(jax.random.key_data, x)
            if _is_key(x) and not isinstance(x, jax.Array)
            else (jax.random.key_data(x) if _is_key(x) else x)
        ),
        tree,
    )


def _data_as_keys(restored: tuple[Any, Any], template: dict[str, Any]) -> tuple[Any, Any]:
    """``(params, opt_state)`` with the key data put back into typed keys where the template has keys.

    The implementation is the template key's when it is an array, JAX's default one for an abstract template.
    """

    def wrap(data: Any, like: Any) -> Any:
        if not _is_key(like):
            return data
        impl = jax.random.key_impl(like) if isinstance(like, jax.Array) else None
        return jax.random.wrap_key_data(data, impl=impl)

    params, opt_state = restored
    return (
        jax.tree.map(wrap, params, template["params"], is_leaf=_is_none),
        jax.tree.map(wrap, opt_state, template["opt_state"], is_leaf=_is_none),
    )


def _is_zero_size(leaf: Any) -> bool:
    return leaf is not None and 0 in _shape_dtype(leaf)[0]


def _without_zero_size(item: Any) -> tuple[Any, list[list[Any]]]:
    """``item`` with ``None`` for each array without elements (orbax refuses them), and a record of those."""
    records = []
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(item)[0]:
        if _is_zero_size(leaf):
            shape, dtype = _shape_dtype(leaf)
            records.append([[_key_name(k) for k in keypath], _shown(keypath), list(shape), dtype.name])
    if not records:
        return item, records
    return jax.tree.map(lambda leaf: None if _is_zero_size(leaf) else leaf, item), records


def _with_zero_size(restored: dict[str, Any], template: dict[str, Any]) -> tuple[Any, Any]:
    """``(params, opt_state)`` with the arrays that :func:`_without_zero_size` took out rebuilt from the template."""
    template_leaves, treedef = jax.tree.flatten(template, is_leaf=_is_none)
    if any(_is_zero_size(leaf) for leaf in template_leaves):
        restored_leaves = jax.tree.leaves(restored, is_leaf=_is_none)
        leaves = [_zeros_like(t) if _is_zero_size(t) else r for t, r in zip(template_leaves, restored_leaves)]
        restored = jax.tree_util.tree_unflatten(treedef, leaves)
    return restored["params"], restored["opt_state"]


def _zeros_like(leaf: Any) -> Any:
    shape, dtype = _shape_dtype(leaf)
    if isinstance(leaf, np.ndarray):
        return np.zeros(shape, dtype)
    sharding = getattr(leaf, "sharding", None)
    zeros = jnp.zeros(shape, dtype)
    return zeros if sharding is None else jax.device_put(zeros, sharding)


def _is_none(node: Any) -> bool:
    return node is None


# --------------------------------------------------------------------------------------------------
# What identifies the optimizer: the state's node types, and the optimizer's own structure
# --------------------------------------------------------------------------------------------------


def _children(node: Any) -> tuple[list[tuple[Any, Any]], Any]:
    """The ``(key, child)`` pairs one level below ``node``, and that level's tree structure."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda child: child is not node)
    return [(keypath[0], child) for keypath, child in pairs if keypath], treedef


def _state_types(state: Any, keypath: tuple[Any, ...] = ()) -> list[list[Any]]:
    """``[[keys...], class name, shown path]`` per node of ``state`` that holds arrays and is no plain container.

    Plain containers (tuples, lists, mappings such as dict or flax's FrozenDict) are left out: their type
    is not the optimizer's, and a dict template may restore what a FrozenDict saved.
    """
    children, _ = _children(state)
    if not children:
        return []
    records = []
    plain = type(state) in (tuple, list) or isinstance(state, Mapping)
    if not plain and jax.tree.leaves(state):
        keys = ["opt_state", *map(_key_name, keypath)]
        records.append([keys, type(state).__name__, "opt_state" + jax.tree_util.keystr(keypath)])
    for key, child in children:
        records += _state_types(child, (*keypath, key))
    return records


def _identity(optimizer: Any) -> Any:
    """:func:`_describe` of the optimizer; ``None`` for one with no structure of its own (optax's transforms,
    a NamedTuple of two closures, look all alike)."""
    leaves = jax.tree.leaves(optimizer)
    return None if leaves and all(callable(leaf) for leaf in leaves) else _describe(optimizer)


def _describe(node: Any) -> Any:
    """The optimizer's structure as JSON: ``{"type", "static", "children": [[key, child], ...]}`` per node.

    A hyperparameter (an array or number leaf) is ``"*"``, so its value may change; a function leaf (in
    optax's transforms) is its name. Static fields are their ``repr`` without memory addresses.
    """
    children, treedef = _children(node)
    if treedef.num_nodes == 1 and treedef.num_leaves == 1:  # a leaf
        return _without_address(repr(node)) if callable(node) else "*"
    _, static = treedef.node_data()
    return {
        "type": type(node).__name__,
        "static": _without_address(repr(static)),
        "children": [[jax.tree_util.keystr((key,)), _describe(child)] for key, child in children],
    }


def _without_address(text: str) -> str:
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _label(description: Any) -> str:
    if not isinstance(description, dict):
        return "a hyperparameter" if description == "*" else description
    static = "" if description["static"] in ("()", "None") else description["static"]
    label = description["type"] + static
    return label if len(label) <= 100 else label[:97] + "..."


def _difference(saved: Any, given: Any, path: str = "optimizer") -> tuple[str, str, str] | None:
    """The deepest first place where two :func:`_describe` structures differ: ``(path, saved's, given's)``."""
    if saved == given:
        return None
    if isinstance(saved, dict) and isinstance(given, dict):
        if [key for key, _ in saved["children"]] == [key for key, _ in given["children"]]:
            for (key, saved_child), (_, given_child) in zip(saved["children"], given["children"]):
                found = _difference(saved_child, given_child, path + key)
                if found is not None:
                    return found
    return path, _label(saved), _label(given)


# --------------------------------------------------------------------------------------------------
# Comparing the stored tree with the templates
# --------------------------------------------------------------------------------------------------


def _key_name(key: Any) -> str:
    """A key as orbax names it on disk: dict keys, attribute names and sequence indices all as strings."""
    for attribute in ("key", "name", "idx"):  # DictKey / FlattenedIndexKey, GetAttrKey, SequenceKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _is_array_metadata(node: Any) -> bool:
    return hasattr(node, "shape") and hasattr(node, "dtype")


def _shape_dtype(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    if _is_array_metadata(leaf):
        return tuple(leaf.shape), jnp.dtype(leaf.dtype)
    return np.shape(leaf), np.result_type(leaf)  # a Python or NumPy scalar


def _check_fits(metadata: Any, template: dict[str, Any], optimizer: Any, location: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming each key path whose presence, shape, dtype or type differs."""
    custom = _custom_metadata(metadata)
    expected: dict[tuple[str, ...], tuple[str, tuple[int, ...], np.dtype]] = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        expected[tuple(map(_key_name, keypath))] = (_shown(keypath), *_shape_dtype(leaf))
    found: dict[tuple[str, ...], tuple[str, tuple[int, ...], np.dtype]] = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(_stored_tree(metadata), is_leaf=_is_array_metadata)[0]:
        found[tuple(map(_key_name, keypath))] = (_shown(keypath), *_shape_dtype(leaf))
    for keys, shown, shape, dtype in custom.get(_ZERO_SIZE, []):  # arrays without elements, stored as None
        found[tuple(keys)] = (shown, tuple(shape), jnp.dtype(dtype))

    problems = [
        f"  {shown} is in the template, not in the checkpoint" for k, (shown, *_) in expected.items() if k not in found
    ]
    problems += [
        f"  {shown} is in the checkpoint, not in the template" for k, (shown, *_) in found.items() if k not in expected
    ]
    for keys, (shown, shape, dtype) in expected.items():
        if keys not in found:
            continue
        _, stored_shape, stored_dtype = found[keys]
        if stored_shape != shape:
            problems.append(f"  {shown} has shape {stored_shape} in the checkpoint, {shape} in the template")
        elif stored_dtype != dtype:
            problems.append(f"  {shown} has dtype {stored_dtype} in the checkpoint, {dtype} in the template")
    another = _another_optimizer(custom, template["opt_state"], optimizer)
    stored_state = [k for k in found if k[0] == "opt_state"]
    if stored_state and not any(k in expected for k in stored_state):
        another.insert(0, "  no key path of opt_state matches: was the checkpoint saved with another optimizer?")
    problems = another + problems
    if not problems:
        return
    if len(problems) > _MAX_LINES:
        problems = [*problems[:_MAX_LINES], f"  ... and {len(problems) - _MAX_LINES} more"]
    raise CheckpointMismatchError(
        "\n".join(
            [
                f"the checkpoint at {location} does not fit the templates:",
                *problems,
                "Restore into templates built like the saved trees: the same optimizer's init (or "
                "jax.eval_shape(tx.init, params)) on parameters of the same structure, shapes and dtypes.",
            ]
        )
    )


def _another_optimizer(custom: dict[str, Any], opt_state_like: Any, optimizer: Any) -> list[str]:
    """Lines naming where the saved optimizer (its state's node types, its structure) differs from the given one."""
    lines = []
    given = None if optimizer is None else _identity(optimizer)
    if custom.get(_OPTIMIZER) is not None and given is not None:
        found = _difference(custom[_OPTIMIZER], given)
        if found is not None:
            path, saved, given = found
            lines.append(
                f"  the checkpoint was saved by another optimizer: at {path}, {saved} in the checkpoint, "
                f"{given} in the optimizer given"
            )
    if _STATE_TYPES in custom:
        saved_types = {tuple(keys): name for keys, name, _ in custom[_STATE_TYPES]}
        for keys, name, shown in _state_types(opt_state_like):
            saved_name = saved_types.get(tuple(keys))
            if saved_name is not None and saved_name != name:
                lines.append(
                    f"  {shown} is a {saved_name} in the checkpoint, a {name} in the template: "
                    "was the checkpoint saved with another optimizer?"
                )
    return lines
