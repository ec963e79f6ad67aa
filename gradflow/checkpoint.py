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

A checkpoint is an ordinary orbax checkpoint of the dict ``{"params": params, "opt_state": opt_state}``
(an ``orbax.checkpoint.StandardCheckpointer`` directory; with ``step``, an
``orbax.checkpoint.CheckpointManager`` root whose step directories hold it as the ``default`` item). So
plain orbax reads what :func:`save` writes, and :func:`restore` reads what plain orbax wrote in that
layout::

    import orbax.checkpoint as ocp
    target = {"params": params_like, "opt_state": opt_state_like}
    restored = ocp.StandardCheckpointer().restore(path, target)                   # save(path, ...)
    restored = ocp.CheckpointManager(root).restore(step, args=ocp.args.StandardRestore(target))  # step=

One departure: orbax refuses to save arrays with no elements, which some states hold as placeholders
(:func:`gradflow.adafactor` for the factors of an unfactored leaf). :func:`save` stores ``None`` in
their place and lists their key paths, shapes and dtypes in the checkpoint's custom metadata;
:func:`restore` checks them like any other leaf and rebuilds them from the template (plain orbax
restores such a checkpoint into a target with ``None`` at those places).

:func:`save` returns once the checkpoint is complete on disk (orbax writes to a temporary directory and
renames it, so a crash never leaves a half-written checkpoint). To save asynchronously, or to save more
items (a data-loader state, metrics), use ``orbax.checkpoint.CheckpointManager`` directly in the layout
above. In a multi-process run, every process calls :func:`save` and :func:`restore`, as with orbax.

orbax-checkpoint is imported when a function here is first called; ``import gradflow`` does not need it.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.tree import TreeMismatchError

__all__ = ["CheckpointMismatchError", "latest_step", "restore", "save"]

_MAX_LINES = 12
_ZERO_SIZE = "gradflow.zero_size_arrays"  # custom-metadata key: [[keys...], shown path, shape, dtype] per array


class CheckpointMismatchError(TreeMismatchError):
    """A checkpoint does not fit the templates it is restored into (key paths, shapes or dtypes).

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


def save(
    directory: str | os.PathLike[str],
    params: Any,
    opt_state: Any,
    *,
    step: int | None = None,
    max_to_keep: int | None = None,
    overwrite: bool = False,
) -> None:
    """Save ``params`` and ``opt_state`` with orbax-checkpoint; returns when the checkpoint is on disk.

    Args:
      directory: without ``step``, the checkpoint's own directory (it must not exist yet, or be empty);
        with ``step``, the root of a run's checkpoints, one subdirectory per step. A relative path is
        taken from the current directory; ``gs://`` and other paths that orbax supports work too.
      params: a pytree of arrays (the model parameters, and anything that is to be restored with them).
      opt_state: the optimizer state, as ``tx.init`` and ``tx.update`` return it (gradflow's or optax's).
      step: the training step; the checkpoint goes to ``directory/<step>`` through an orbax
        ``CheckpointManager``. Steps must increase: a step below the latest saved one is an error.
      max_to_keep: with ``step``, keep only the latest ``max_to_keep`` steps (``None``: keep all).
      overwrite: replace an existing checkpoint at ``directory`` (or of ``step``) instead of raising.
        Only a checkpoint is ever replaced: a non-empty directory that is not one is never deleted.

    Raises:
      FileExistsError: if the checkpoint (or the step) exists and ``overwrite`` is false, or if
        ``directory`` is a non-empty directory that is not a checkpoint.
      ValueError: for a negative or non-integer ``step``, a ``max_to_keep`` below 1 or without ``step``,
        a ``step`` below the latest saved step, or ``step`` given for a directory that holds a single
        checkpoint.

    Example:
      >>> import os, tempfile, jax.numpy as jnp, gradflow
      >>> from gradflow import checkpoint
      >>> tx = gradflow.adam(1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     for step in (100, 200, 300):
      ...         checkpoint.save(tmp, params, tx.init(params), step=step, max_to_keep=2)
      ...     sorted(os.listdir(tmp)), checkpoint.latest_step(tmp)
      (['200', '300'], 300)
    """
    ocp = _orbax()
    path = _path(directory)
    item, zero_size = _without_zero_size(_keys_as_data({"params": params, "opt_state": opt_state}))
    args = ocp.args.StandardSave(item, custom_metadata={_ZERO_SIZE: zero_size} if zero_size else None)
    if step is None:
        if max_to_keep is not None:
            raise ValueError("save: max_to_keep applies to a run of steps; pass step= as well")
        force = False
        if path.exists() and any(path.iterdir()):
            if not _is_checkpoint(ocp, path):
                raise FileExistsError(f"save: {path} is a non-empty directory that is not a checkpoint")
            if not overwrite:
                raise FileExistsError(f"save: a checkpoint already exists at {path}; pass overwrite=True to replace it")
            force = True
        elif path.exists():
            force = True  # an empty directory: orbax refuses any existing path unless forced
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:  # synchronous
            checkpointer.save(path, args=args, force=force)
        return
    step = _check_step(step)
    if max_to_keep is not None and (
        isinstance(max_to_keep, bool) or not isinstance(max_to_keep, (int, np.integer)) or max_to_keep < 1
    ):
        raise ValueError(f"save: max_to_keep must be None or an integer >= 1, got {max_to_keep!r}")
    if path.exists() and _is_checkpoint(ocp, path):
        raise ValueError(
            f"save: {path} holds a single checkpoint (saved without step), so it cannot be the root of steps"
        )
    with _manager(ocp, path, max_to_keep=max_to_keep) as manager:
        steps = manager.all_steps()
        later = sorted(s for s in steps if s > step)
        if later:
            raise ValueError(
                f"save: step {step} comes before the saved step {later[-1]} in {path}; steps must increase "
                "(delete the later steps, or save to another directory)"
            )
        if step in steps:
            if not overwrite:
                raise FileExistsError(
                    f"save: {path} already holds a checkpoint of step {step}; pass overwrite=True to replace it"
                )
            manager.delete(step)
        if not manager.save(step, args=args):  # pragma: no cover - orbax declined
            raise RuntimeError(f"save: orbax's CheckpointManager declined to save step {step} in {path}")
        manager.wait_until_finished()


def restore(
    directory: str | os.PathLike[str],
    params_like: Any,
    opt_state_like: Any,
    *,
    step: int | None = None,
) -> tuple[Any, Any]:
    """Restore the ``(params, opt_state)`` that :func:`save` wrote, into the structure of templates.

    The templates give the restored trees their containers, dtypes and shardings: pass the arrays of a
    freshly built model and ``tx.init(params)``, or ``jax.eval_shape`` of them (``jax.ShapeDtypeStruct``
    leaves, with a ``sharding`` to place the restored arrays), so nothing is computed. The checkpoint's
    stored key paths, shapes and dtypes must equal the templates' (no silent casting); they are
    compared before any array is read.

    Args:
      directory: a checkpoint written by ``save(directory, ...)``, or the root of one written by
        ``save(directory, ..., step=...)``.
      params_like: a pytree like the saved ``params`` (arrays or ``jax.ShapeDtypeStruct`` s).
      opt_state_like: a pytree like the saved ``opt_state``: the same optimizer's ``init`` on
        ``params_like``, or ``jax.eval_shape(tx.init, params_like)``.
      step: the step to restore from a root of steps (``None``: the latest).

    Returns:
      ``(params, opt_state)``, with the tree structures, dtypes and shardings of the templates.

    Raises:
      FileNotFoundError: if ``directory`` does not exist, holds no checkpoint, or has no such ``step``.
      CheckpointMismatchError: (a ``ValueError``) if the checkpoint's key paths, shapes or dtypes differ
        from the templates'; the message names each path that differs.

    Example:
      >>> import os, tempfile, jax, jax.numpy as jnp, gradflow
      >>> from gradflow import checkpoint
      >>> tx = gradflow.chain(gradflow.clip_by_global_norm(1.0), gradflow.adam(1e-3, mu_dtype=jnp.bfloat16))
      >>> params = {"w": jnp.ones(3), "b": jnp.zeros(2, jnp.bfloat16)}
      >>> opt_state = tx.init(params)  # in a training loop: the latest tx.update's state
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     checkpoint.save(os.path.join(tmp, "ckpt"), params, opt_state)
      ...     params_like = jax.eval_shape(lambda: params)
      ...     new_params, new_state = checkpoint.restore(os.path.join(tmp, "ckpt"), params_like,
      ...                                                jax.eval_shape(tx.init, params_like))
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
    ocp = _orbax()
    path = _path(directory)
    if step is not None:
        step = _check_step(step, "restore")
    if not path.exists():
        raise FileNotFoundError(f"restore: no checkpoint at {path}: the directory does not exist")
    template = {"params": params_like, "opt_state": opt_state_like}
    stored_like = _keys_as_data(template)  # what save wrote: PRNG keys as their data
    params_like, opt_state_like = stored_like["params"], stored_like["opt_state"]
    target = _without_zero_size(stored_like)[0]
    with _manager(ocp, path, create=False) as manager:
        steps = manager.all_steps()
        if step is not None and step not in steps:
            available = ", ".join(map(str, sorted(steps))) or "none"
            raise FileNotFoundError(f"restore: {path} holds no checkpoint of step {step} (its steps: {available})")
        if step is None and steps:
            step = max(steps)
        if step is not None:
            location = f"step {step} of {path}"
            metadata = manager.item_metadata(step)
            if _stored_tree(metadata) is None:
                raise FileNotFoundError(f"restore: {location} holds no single-item checkpoint that save could write")
            _check_fits(metadata, params_like, opt_state_like, location)
            restored = manager.restore(step, args=ocp.args.StandardRestore(target))
            return _data_as_keys(_with_zero_size(restored, stored_like), template)
    metadata = _single_checkpoint_metadata(ocp, path)
    if metadata is None:
        raise FileNotFoundError(
            f"restore: {path} holds no checkpoint (neither one written by save(directory, ...) nor "
            "steps written by save(directory, ..., step=...))"
        )
    _check_fits(metadata, params_like, opt_state_like, str(path))
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
        restored = checkpointer.restore(path, args=ocp.args.StandardRestore(target))
    return _data_as_keys(_with_zero_size(restored, stored_like), template)


def latest_step(directory: str | os.PathLike[str]) -> int | None:
    """The latest step saved under ``directory`` by ``save(..., step=...)``; ``None`` if there is none.

    A directory that does not exist has no steps, so a training loop can resume with::

        start = checkpoint.latest_step(root)
        if start is not None:
            params, opt_state = checkpoint.restore(root, params, opt_state)

    Example:
      >>> import tempfile
      >>> from gradflow import checkpoint
      >>> with tempfile.TemporaryDirectory() as tmp:
      ...     checkpoint.latest_step(tmp) is None
      True
    """
    ocp = _orbax()
    path = _path(directory)
    if not path.exists():
        return None
    with _manager(ocp, path, create=False) as manager:
        return manager.latest_step()


# --------------------------------------------------------------------------------------------------
# orbax plumbing
# --------------------------------------------------------------------------------------------------


def _orbax() -> Any:
    try:
        import orbax.checkpoint as ocp
    except ImportError as error:  # pragma: no cover - orbax-checkpoint is a dev dependency
        raise ImportError("gradflow.checkpoint needs orbax-checkpoint: pip install orbax-checkpoint") from error
    return ocp


def _path(directory: str | os.PathLike[str]) -> Any:
    """An ``epath.Path``, absolute for a local path (orbax requires absolute paths)."""
    from etils import epath  # a dependency of orbax-checkpoint

    name = os.fspath(directory)
    if not isinstance(name, str):
        raise TypeError(f"checkpoint directory must be a str or os.PathLike of str, got {type(directory).__name__}")
    if "://" not in name:
        name = os.path.abspath(name)
    return epath.Path(name)


def _check_step(step: Any, owner: str = "save") -> int:
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"{owner}: step must be an integer >= 0, got {step!r}")
    return int(step)


def _manager(ocp: Any, root: Any, *, max_to_keep: int | None = None, create: bool = True) -> Any:
    # Readers pass create=False rather than orbax's read_only=True, which logs two warnings per call.
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
    return ocp.CheckpointManager(root, item_handlers=ocp.StandardCheckpointHandler(), options=options)


def _stored_tree(metadata: Any) -> Any:
    """The tree of per-array metadata in what orbax's ``metadata`` returns (``None``: no checkpoint)."""
    metadata = getattr(metadata, "item_metadata", metadata)  # a StepMetadata, or the item's own
    return getattr(metadata, "tree", metadata)  # a TreeMetadata, or the bare tree


def _single_checkpoint_metadata(ocp: Any, path: Any) -> Any:
    """The item metadata of the checkpoint at ``path`` itself (not a root of steps); ``None`` if there is none."""
    handler = ocp.StandardCheckpointHandler()
    try:  # the handler raises quietly where StandardCheckpointer.metadata logs warnings first
        metadata = handler.metadata(path)
    except (FileNotFoundError, NotImplementedError, ValueError, TypeError):
        return None
    finally:
        handler.close()
    return None if _stored_tree(metadata) is None else metadata


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


def _is_checkpoint(ocp: Any, path: Any) -> bool:
    return _single_checkpoint_metadata(ocp, path) is not None


def _is_zero_size(leaf: Any) -> bool:
    return leaf is not None and 0 in _shape_dtype(leaf)[0]


def _without_zero_size(item: Any) -> tuple[Any, list[list[Any]]]:
    """``item`` with ``None`` for each array without elements (orbax refuses them), and a record of those."""
    records = []
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(item)[0]:
        if _is_zero_size(leaf):
            shape, dtype = _shape_dtype(leaf)
            shown = _key_name(keypath[0]) + jax.tree_util.keystr(keypath[1:])
            records.append([[_key_name(k) for k in keypath], shown, list(shape), dtype.name])
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
# comparing the stored tree with the templates
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


def _check_fits(metadata: Any, params_like: Any, opt_state_like: Any, location: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming each key path whose presence, shape or dtype differs."""
    stored = _stored_tree(metadata)
    custom = getattr(getattr(metadata, "item_metadata", metadata), "custom_metadata", None)
    custom = custom if isinstance(custom, dict) else {}
    expected: dict[tuple[str, ...], tuple[str, tuple[int, ...], np.dtype]] = {}
    for name, template in (("params", params_like), ("opt_state", opt_state_like)):
        for keypath, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
            keys = (name, *map(_key_name, keypath))
            expected[keys] = (name + jax.tree_util.keystr(keypath), *_shape_dtype(leaf))
    found: dict[tuple[str, ...], tuple[str, tuple[int, ...], np.dtype]] = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(stored, is_leaf=_is_array_metadata)[0]:
        keys = tuple(map(_key_name, keypath))
        shown = keys[0] + jax.tree_util.keystr(keypath[1:]) if keypath else "<root>"
        found[keys] = (shown, *_shape_dtype(leaf))
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
    if not problems:
        return
    stored_state = [k for k in found if k[0] == "opt_state"]
    if stored_state and not any(k in expected for k in stored_state):
        problems.insert(0, "  no key path of opt_state matches: was the checkpoint saved with another optimizer?")
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
