"""Helpers the wrappers share: wrapping foreign transforms, static per-leaf specs, finding a state."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from gradflow import tree
from gradflow.core import ForeignTransform, Transform

__all__ = [
    "LeafSpec",
    "as_transform",
    "find_one_state",
    "find_states",
    "is_none",
    "keep",
    "leaves_of",
    "mask_extra",
    "normalize_bool",
    "normalize_label",
]


def is_none(x: Any) -> bool:
    return x is None


def as_transform(owner: str, tx: Any, name: str = "inner") -> Transform:
    """``tx`` as a gradflow transform (an optax transform is wrapped in a :class:`ForeignTransform`)."""
    if isinstance(tx, Transform):
        return tx
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return ForeignTransform(tx)
    raise TypeError(f"{owner}: {name} must be a transform with init and update methods, got {type(tx).__name__}")


def leaves_of(structure: Any, other: Any, names: tuple[str, str]) -> list[Any]:
    """The leaves of ``other`` aligned with the treedef ``structure``, or a TreeMismatchError naming paths."""
    try:
        return structure.flatten_up_to(other)
    except (ValueError, TypeError):
        raise tree.TreeMismatchError(
            tree.describe_mismatch(structure.unflatten([0] * structure.num_leaves), other, *names)
        ) from None


def _paths(like: Any) -> list[str]:
    flat, _ = jax.tree_util.tree_flatten_with_path(like, is_leaf=is_none)
    return [jax.tree_util.keystr(path) for path, _ in flat]


@dataclasses.dataclass(frozen=True)
class LeafSpec:
    """One hashable value per parameter leaf (a label, a mask bit), kept as static data.

    Either a pytree whose structure is a prefix of the parameters' (stored flattened, so that the
    wrapper holding it stays hashable and a jitted step does not recompile), or a function
    ``params -> such a pytree``. A function should be defined once (not a new ``lambda`` per call):
    it is part of the optimizer's tree structure, and a new function object means a new compilation.
    """

    fn: Callable[[Any], Any] | None = None
    treedef: Any = None
    leaves: tuple[Any, ...] = ()

    @classmethod
    def of(cls, owner: str, name: str, spec: Any, normalize: Callable[[str, str, Any], Any]) -> LeafSpec:
        if callable(spec) and not isinstance(spec, (jax.Array, np.ndarray, np.generic)):
            return cls(fn=spec)
        leaves, treedef = jax.tree.flatten(spec, is_leaf=is_none)
        paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(spec, is_leaf=is_none)[0]]
        values = tuple(normalize(owner, f"{name}{path}", leaf) for path, leaf in zip(paths, leaves))
        return cls(treedef=treedef, leaves=values)

    @property
    def values(self) -> tuple[Any, ...] | None:
        """The distinct values of a static spec (``None`` for a function, known only given the params)."""
        return None if self.fn is not None else tuple(dict.fromkeys(self.leaves))

    def resolve(
        self, owner: str, name: str, like: Any, normalize: Callable[[str, str, Any], Any]
    ) -> tuple[list[Any], list[str]]:
        """One value per leaf of ``like`` (a prefix leaf is broadcast over its subtree), and the leaf paths."""
        treedef: Any  # a jaxlib PyTreeDef, which has no type stubs
        if self.fn is not None:
            spec = self.fn(like)
            flat = jax.tree_util.tree_flatten_with_path(spec, is_leaf=is_none)[0]
            values = [normalize(owner, f"{name}{jax.tree_util.keystr(p)}", leaf) for p, leaf in flat]
            treedef = jax.tree.structure(spec, is_leaf=is_none)
        else:
            values, treedef = list(self.leaves), self.treedef
        try:
            subtrees = treedef.flatten_up_to(like)
        except (ValueError, TypeError):
            spec = treedef.unflatten(values)
            raise tree.TreeMismatchError(
                f"{owner}: {name} must have the structure of the parameters (or a prefix of it); "
                + tree.describe_mismatch(spec, like, name, "params")
            ) from None
        out: list[Any] = []
        for value, subtree in zip(values, subtrees):
            out.extend([value] * len(jax.tree.leaves(subtree, is_leaf=is_none)))
        return out, _paths(like)


def normalize_bool(owner: str, where: str, value: Any) -> bool:
    """A mask bit: a Python or NumPy boolean, or a concrete 0-d boolean array."""
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{owner}: {where} is a traced array; a mask must be known when tracing (Python booleans, "
            "or a function of the params that returns them, e.g. from their shapes)"
        )
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (jax.Array, np.ndarray)) and value.shape == () and value.dtype == np.bool_:
        return bool(value)
    raise TypeError(f"{owner}: {where} must be a boolean, got {value!r}")


def normalize_label(owner: str, where: str, value: Any) -> Any:
    """A partition label: any hashable value that is not an array."""
    if isinstance(value, (jax.Array, np.ndarray)) or value is None:
        raise TypeError(f"{owner}: {where} must be a hashable label (e.g. a string), got {value!r}")
    try:
        hash(value)
    except TypeError:
        raise TypeError(f"{owner}: {where} must be a hashable label (e.g. a string), got {value!r}") from None
    return value


def keep(leaves: list[Any], chosen: list[bool]) -> list[Any]:
    """``leaves`` with ``None`` where not ``chosen`` (the wrapped transform does not see those leaves)."""
    return [leaf if c else None for leaf, c in zip(leaves, chosen)]


def mask_extra(extra: dict[str, Any], structure: Any, chosen: list[bool], enabled: bool) -> dict[str, Any]:
    """Mask the extra arguments that have the updates' tree structure, when ``enabled``."""
    if not enabled:
        return extra
    out = {}
    for key, value in extra.items():
        if jax.tree.structure(value, is_leaf=is_none) == structure:
            value = structure.unflatten(keep(structure.flatten_up_to(value), chosen))
        out[key] = value
    return out


def find_states(state: Any, cls: type) -> list[Any]:
    """Every node of type ``cls`` inside an optimizer state (a chain's tuple, a ScheduleState ...)."""
    nodes = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, cls))
    return [node for node in nodes if isinstance(node, cls)]


def find_one_state(owner: str, state: Any, cls: type, transform: str) -> Any:
    """The single node of type ``cls`` in ``state``, or a ValueError saying why there is not one."""
    found = find_states(state, cls)
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise ValueError(
            f"{owner}: found {what} {cls.__name__} in the state; pass the state of an optimizer that "
            f"contains exactly one {transform} (or that {transform}'s own state)"
        )
    return found[0]
