"""Pytree arithmetic shared by the transforms, with errors that name the path that differs.

Every transform maps its elementwise rule over the leaves of ``updates`` together with the matching
leaves of its state or of ``params``. :func:`map` does that and, when the trees do not line up, raises
a :class:`TreeMismatchError` that says which tree and which key path differs, instead of JAX's generic
prefix error. All checks run while tracing, so a jitted step pays nothing for them.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import arith
from gradflow._optax_reexport import lazy_reexport

__all__ = [
    "TreeMismatchError",
    "cast_like",
    "cast_once",
    "check_float_leaves",
    "check_real_leaves",
    "check_state",
    "check_updates",
    "check_value",
    "describe_mismatch",
    "full_like",
    "global_norm",
    "hyperparameter_mismatch",
    "map",
    "promote_once",
    "saturating_increment",
    "shape_change",
    "zeros_like",
]


class TreeMismatchError(ValueError):
    """Two pytrees that a transform combines leaf by leaf do not have the same structure or shapes.

    >>> import gradflow
    >>> try:
    ...     gradflow.apply_updates({"w": jnp.zeros(2)}, {"b": jnp.zeros(2)})
    ... except TreeMismatchError as error:
    ...     print(str(error).splitlines()[1])
      params['w'] has no counterpart in updates
    """


def _is_none(x: Any) -> bool:
    return x is None


def _paths(tree: Any) -> dict[str, Any]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def describe_mismatch(first: Any, second: Any, first_name: str, second_name: str) -> str:
    """A human-readable account of how two pytrees differ, naming key paths.

    >>> print(describe_mismatch({"a": 1, "b": 2}, {"a": 1}, "state", "updates"))
    state and updates have different tree structures:
      state['b'] has no counterpart in updates
    """
    a, b = _paths(first), _paths(second)
    only_a = [p for p in a if p not in b]
    only_b = [p for p in b if p not in a]
    lines = [f"{first_name} and {second_name} have different tree structures:"]
    for path in only_a[:5]:
        lines.append(f"  {first_name}{path} has no counterpart in {second_name}")
    for path in only_b[:5]:
        lines.append(f"  {second_name}{path} has no counterpart in {first_name}")
    hidden = builtins.max(0, len(only_a) - 5) + builtins.max(0, len(only_b) - 5)
    if hidden:
        lines.append(f"  ... and {hidden} more paths")
    if not only_a and not only_b:
        lines.append(
            f"  same key paths but different containers: {first_name} is "
            f"{jax.tree.structure(first, is_leaf=_is_none)}, {second_name} is "
            f"{jax.tree.structure(second, is_leaf=_is_none)}"
        )
    return "\n".join(lines)


def map(  # noqa: A001 - mirrors jax.tree.map on purpose
    fn: Callable[..., Any],
    tree: Any,
    *rest: Any,
    names: Sequence[str] | None = None,
    frozen: bool = True,
) -> Any:
    """``jax.tree.map`` over trees that must have the same structure and leaf shapes.

    ``None`` leaves of ``tree`` (masked parameters) are passed through as ``None``. A ``None`` must be
    matched by ``None`` in every other tree, except that an update may be ``None`` where the parameter
    exists (a frozen parameter: ``fn`` gets the ``None``), unless ``frozen`` is false.

    Args:
      fn: function applied to the matching leaves.
      tree: the tree that defines the structure (usually ``updates``).
      *rest: trees with the same structure (state buffers, ``params``).
      names: display names of ``(tree, *rest)`` used in error messages.
      frozen: whether the trees named ``updates`` and ``params`` may differ by a ``None`` update.

    Raises:
      TreeMismatchError: if a tree of ``rest`` has another structure, a leaf of another shape or a ``None`` of
        its own.

    Example:
      >>> map(lambda u, m: u + m, {"w": jnp.ones(2), "frozen": None}, {"w": jnp.ones(2), "frozen": None})
      {'frozen': None, 'w': Array([2., 2.], dtype=float32)}
      >>> map(jnp.add, {"w": jnp.ones(2)}, {"w": jnp.ones(3)}, names=["updates", "state.mean"])
      Traceback (most recent call last):
      gradflow.tree.TreeMismatchError: updates['w'] has shape (2,) but state.mean['w'] has shape (3,)
    """
    names = list(names) if names is not None else ["updates"] + [f"tree{i}" for i in range(1, len(rest) + 1)]
    treedef: Any  # a jaxlib PyTreeDef, which has no type stubs
    leaves, treedef = jax.tree.flatten(tree, is_leaf=_is_none)
    others = []
    for name, other in zip(names[1:], rest):
        try:
            other_leaves = treedef.flatten_up_to(other)
        except (ValueError, TypeError):
            raise TreeMismatchError(describe_mismatch(tree, other, names[0], name)) from None
        for i, (x, y) in enumerate(zip(leaves, other_leaves)):
            if x is None or y is None:
                if (x is None) != (y is None) and not (frozen and _frozen(names[0], name, x is None)):
                    raise TreeMismatchError(_one_sided_none(tree, i, names[0], name, x is None, x if y is None else y))
                continue
            if jnp.shape(x) != jnp.shape(y):
                path = list(_paths(tree))[i]
                raise TreeMismatchError(
                    f"{names[0]}{path} has shape {jnp.shape(x)} but {name}{path} has shape {jnp.shape(y)}"
                )
        others.append(other_leaves)
    out = [None if xs[0] is None else fn(*xs) for xs in zip(leaves, *others)]
    return treedef.unflatten(out)


def _frozen(first: str, second: str, first_is_none: bool) -> bool:
    """Whether a one-sided ``None`` is a frozen parameter: a ``None`` update where the parameter exists."""
    none_side, array_side = (first, second) if first_is_none else (second, first)
    return none_side == "updates" and array_side == "params"


def _one_sided_none(tree: Any, i: int, first: str, second: str, first_is_none: bool, leaf: Any) -> str:
    path = list(_paths(tree))[i]
    none_side, array_side = (first, second) if first_is_none else (second, first)
    what = f"an array of shape {jnp.shape(leaf)}" if hasattr(leaf, "shape") else f"a {type(leaf).__name__}"
    return (
        f"{none_side}{path} is None but {array_side}{path} is {what}: a leaf that is None in the params at init (no "
        "parameter) must be None in the updates and the state too, and an update may be None only where a parameter "
        "exists and no state is kept for it"
    )


def check_float_leaves(tree: Any, name: str = "params") -> None:
    """Raise ``TypeError`` naming the first leaf that is not a floating-point (or complex) array or number.

    >>> check_float_leaves({"w": jnp.zeros(2), "steps": jnp.arange(3)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: params['steps'] has dtype int32: gradflow updates floating-point arrays only ...
    """
    for i, leaf in enumerate(jax.tree.leaves(tree, is_leaf=_is_none)):
        if leaf is None:
            continue
        if isinstance(leaf, (str, bytes)) or not (hasattr(leaf, "dtype") or isinstance(leaf, (int, float, complex))):
            raise TypeError(
                f"{name}{list(_paths(tree))[i]} is a {type(leaf).__name__} ({leaf!r}), not an array: gradflow "
                "updates floating-point arrays only"
            )
        dtype = getattr(leaf, "dtype", None)
        dtype = jnp.result_type(leaf) if dtype is None else dtype  # result_type is slow for an array
        if not jnp.issubdtype(dtype, jnp.inexact):
            path = list(_paths(tree))[i]
            hint = (
                "(an integer parameter would be silently truncated); keep it out of the optimized tree"
                if name == "params"
                else "(integer values would be silently truncated); cast it to a floating-point dtype"
            )
            raise TypeError(f"{name}{path} has dtype {dtype}: gradflow updates floating-point arrays only {hint}")


def check_updates(updates: Any, params: Any = None) -> Any:
    """The arguments of an ``update``, checked: ``updates`` with its Python numbers made arrays.

    The rules, each error naming the key path: every leaf of ``updates`` (and of ``params``) is a
    floating-point or complex array or number, or ``None``; ``params``, when given, has the structure and
    the leaf shapes of ``updates``, ``None`` at the same places (an update may be ``None`` where a parameter
    exists: it stays frozen); a complex update needs a complex parameter (a real one would drop the
    imaginary part). Everything runs while tracing.

    >>> check_updates({"w": 1.0})
    {'w': Array(1., dtype=float32, weak_type=True)}
    >>> check_updates({"w": jnp.ones(2, jnp.complex64)}, {"w": jnp.zeros(2)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: updates['w'] has dtype complex64 but params['w'] has dtype float32: a complex update needs ...
    """
    check_float_leaves(updates, "updates")
    if params is not None:
        check_float_leaves(params, "params")
        map(lambda u, p: None, updates, params, names=("updates", "params"))  # structure, shapes, None leaves
        pairs = zip(jax.tree.leaves(updates, is_leaf=_is_none), jax.tree.leaves(params, is_leaf=_is_none))
        for i, (u, p) in enumerate(pairs):
            if u is not None and jnp.iscomplexobj(u) and not jnp.iscomplexobj(p):
                path = list(_paths(updates))[i]
                raise TypeError(
                    f"updates{path} has dtype {jnp.result_type(u)} but params{path} has dtype {jnp.result_type(p)}: "
                    "a complex update needs a complex parameter (a real one would drop the imaginary part)"
                )
    return jax.tree.map(lambda u: u if u is None else jnp.asarray(u), updates, is_leaf=_is_none)


def check_value(owner: str, value: Any) -> jax.Array:
    """The extra argument ``value`` (the loss at ``params``) as a real scalar array; errors name ``owner``.

    >>> check_value("scale_by_polyak", "1.0")
    Traceback (most recent call last):
    TypeError: scale_by_polyak: value must be a real number (the loss at params), got '1.0'
    """
    if isinstance(value, (str, bytes, bool)) or not (hasattr(value, "dtype") or isinstance(value, (int, float))):
        raise TypeError(f"{owner}: value must be a real number (the loss at params), got {value!r}")
    value = jnp.asarray(value)
    if not jnp.issubdtype(value.dtype, jnp.floating) and not jnp.issubdtype(value.dtype, jnp.integer):
        raise TypeError(f"{owner}: value must be a real number (the loss at params), got dtype {value.dtype}")
    if value.shape != ():
        raise ValueError(f"{owner}: value must be a scalar (the loss at params), got shape {value.shape}")
    return value


def check_state(owner: str, state: Any, cls: type) -> Any:
    """``state`` if it is a ``cls`` (what ``owner``'s init returns), else a ``ValueError`` naming both types.

    >>> check_state("apply_if_finite", (), tuple)
    ()
    >>> check_state("masked", {}, tuple)
    Traceback (most recent call last):
    ValueError: masked needs the tuple that its init returned as its state, got dict
    """
    if not isinstance(state, cls):
        got = type(state).__name__
        raise ValueError(f"{owner} needs the {cls.__name__} that its init returned as its state, got {got}")
    return state


def check_real_leaves(owner: str, tree: Any, name: str, why: str) -> None:
    """Raise ``TypeError`` naming ``owner`` and the first complex leaf of ``tree``, and ``why`` it takes reals only.

    >>> check_real_leaves("clip", {"z": jnp.ones(2, jnp.complex64)}, "updates", "it compares values")
    Traceback (most recent call last):
    TypeError: clip: updates['z'] has dtype complex64, but clip takes real numbers only (it compares values)
    """
    for i, leaf in enumerate(jax.tree.leaves(tree)):
        if jnp.iscomplexobj(leaf):
            raise TypeError(
                f"{owner}: {name}{list(_paths(tree))[i]} has dtype {jnp.result_type(leaf)}, but {owner} takes real "
                f"numbers only ({why})"
            )


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without changing it."""
    return len(shape) <= len(target) and all(a in (1, b) for a, b in zip(shape[::-1], target[::-1]))


def hyperparameter_mismatch(transform: Any, updates: Any) -> str | None:
    """Which array hyperparameter of ``transform`` does not broadcast to a leaf of ``updates``, or ``None``.

    The rule: a hyperparameter is a scalar, or an array that broadcasts to the shape of every leaf it meets
    without changing that shape. The account names the hyperparameter (its path in ``transform``), the leaf's
    key path and both shapes.

    >>> import gradflow
    >>> print(hyperparameter_mismatch(gradflow.scale_by_learning_rate(jnp.ones(3)), {"b": jnp.ones(2)}))
    the hyperparameter learning_rate (ScaleByLearningRate.learning_rate) has shape (3,), which does not broadcast \
to updates['b'] of shape (2,): a hyperparameter must be a scalar or broadcast to the shape of every leaf
    """
    leaves = [(path, jnp.shape(u)) for path, u in _paths(updates).items() if u is not None]
    for key_path, value in jax.tree_util.tree_flatten_with_path(transform)[0]:
        if jnp.ndim(value) == 0 or not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            continue
        for path, shape in leaves:
            if not _broadcasts_to(jnp.shape(value), shape):
                name = jax.tree_util.keystr(key_path[-1:]).lstrip(".")
                return (
                    f"the hyperparameter {name} ({type(transform).__name__}{jax.tree_util.keystr(key_path)}) has "
                    f"shape {jnp.shape(value)}, which does not broadcast to updates{path} of shape {shape}: a "
                    "hyperparameter must be a scalar or broadcast to the shape of every leaf"
                )
    return None


def shape_change(before: Any, after: Any) -> str | None:
    """The first key path where ``after`` has another leaf shape than ``before`` (same structure), or ``None``.

    >>> shape_change({"w": jnp.zeros(2)}, {"w": jnp.zeros((3, 2))})
    "updates['w'] of shape (2,) became shape (3, 2)"
    """
    first, second = jax.tree.leaves(before), jax.tree.leaves(after)
    structure: Any = jax.tree.structure(before)  # a jaxlib PyTreeDef, which has no type stubs
    if structure != jax.tree.structure(after):
        return None
    for i, (x, y) in enumerate(zip(first, second)):
        if jnp.shape(x) != jnp.shape(y):
            return f"updates{list(_paths(before))[i]} of shape {jnp.shape(x)} became shape {jnp.shape(y)}"
    return None


def full_like(tree: Any, fill_value: Any, dtype: Any = None, name: str = "params") -> Any:
    """A tree shaped like ``tree`` filled with ``fill_value``, in ``dtype`` or each leaf's own dtype.

    Each new leaf keeps the sharding of the leaf it is shaped like (``jnp.full_like``), so the state of
    sharded parameters is built sharded the same way, not gathered on one device.

    >>> full_like({"w": jnp.zeros(2, jnp.bfloat16), "masked": None}, 0.1)
    {'masked': None, 'w': Array([0.100098, 0.100098], dtype=bfloat16)}
    """
    check_float_leaves(tree, name)
    return jax.tree.map(
        lambda x: None if x is None else jnp.full_like(x, fill_value, dtype or jnp.result_type(x)),
        tree,
        is_leaf=_is_none,
    )


def zeros_like(tree: Any, dtype: Any = None, name: str = "params") -> Any:
    """A tree of zeros shaped like ``tree`` (see :func:`full_like`).

    >>> zeros_like((jnp.ones(2), jnp.ones((), jnp.float16)))
    (Array([0., 0.], dtype=float32), Array(0., dtype=float16))
    """
    return full_like(tree, 0, dtype, name)


def _astype(x: Any, dtype: Any) -> Any:
    """``jnp.asarray(x).astype(dtype)``, returning ``x`` itself when it already is a strongly typed array of
    ``dtype`` (the conversion would be a no-op; skipping it saves tracing time over thousands of leaves)."""
    if isinstance(x, jax.Array) and x.dtype == dtype and not x.weak_type:
        return x
    return jnp.asarray(x).astype(dtype)


def cast_like(tree: Any, other_tree: Any) -> Any:
    """Cast each leaf of ``tree`` to the dtype of the matching leaf of ``other_tree``.

    >>> cast_like({"w": jnp.array([1.5])}, {"w": jnp.zeros(1, jnp.bfloat16)})["w"].dtype
    dtype(bfloat16)
    """
    return jax.tree.map(
        lambda x, y: None if x is None else _astype(x, jnp.result_type(y)),
        tree,
        other_tree,
        is_leaf=_is_none,
    )


def promote_once(value: Any) -> Callable[[Any], Any]:
    """``value`` (a hyperparameter) as a function of a leaf ``like``: ``value`` converted to the dtype that
    ``value * like`` computes in, converted once per dtype and shared by every leaf of that dtype.

    ``jnp`` converts a traced (weakly typed) scalar anew at each operation; over thousands of leaves that
    is thousands of converts to trace, lower and compile. The numbers are the same: ``promote_once(v)(x) * x``
    is ``v * x``. Python numbers (folded into the program as constants) and weakly typed leaves (whose
    result stays weak) are left to ``jnp``.

    >>> decay = promote_once(jnp.asarray(0.5))
    >>> decay(jnp.ones(2, jnp.bfloat16)).dtype, decay(jnp.ones(2, jnp.bfloat16)) is decay(jnp.zeros(3, jnp.bfloat16))
    (dtype(bfloat16), True)
    """
    if not isinstance(value, jax.Array):
        return lambda like: value
    converted: dict[Any, Any] = {}

    def at(like: Any) -> Any:
        if not isinstance(like, jax.Array) or like.weak_type:
            return value
        dtype = jnp.result_type(value, like)
        if dtype not in converted:
            converted[dtype] = _astype(value, dtype)
        return converted[dtype]

    return at


def cast_once(value: Any) -> Callable[[Any], Any]:
    """``value`` as a function of a leaf ``like``: ``jnp.asarray(value).astype(like's dtype)``, converted once
    per dtype and shared by every leaf of that dtype.

    >>> half = cast_once(0.5)
    >>> half(jnp.ones(2, jnp.float16)), half(jnp.ones(2, jnp.float16)) is half(jnp.zeros(3, jnp.float16))
    (Array(0.5, dtype=float16), True)
    """
    converted: dict[Any, Any] = {}

    def at(like: Any) -> Any:
        dtype = jnp.result_type(like)
        if dtype not in converted:
            converted[dtype] = jnp.asarray(value).astype(dtype)
        return converted[dtype]

    return at


def _sum_of_squares(x: jax.Array) -> jax.Array:
    """Σ|x|², accumulated in at least float32 (float16 squares overflow at 256)."""
    x = jnp.asarray(x)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    if jnp.iscomplexobj(x):
        return jnp.sum(jnp.real(x * jnp.conj(x)))
    return jnp.sum(arith.square(x))


def global_norm(tree: Any) -> jax.Array:
    """Euclidean norm of all leaves taken together: sqrt(sum_i ||x_i||^2), in at least float32.

    The per-leaf sums are stacked and reduced once, so the reduction is a single balanced tree
    rather than a chain of additions as long as the number of leaves. Its derivative at 0 is 0, not NaN.

    >>> global_norm({"a": jnp.array([3.0]), "b": jnp.array([[4.0]]), "masked": None})
    Array(5., dtype=float32)
    """
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    if not leaves:
        return jnp.zeros([], jnp.float32)
    partial = [_sum_of_squares(x) for x in leaves]
    dtype = jnp.result_type(*partial)
    square = jnp.sum(jnp.stack([p.astype(dtype) for p in partial]))
    positive = square > 0  # √0 = 0 with derivative 0, not NaN; a NaN stays NaN
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, square, 1)), square)


def saturating_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` for an integer counter, staying at the dtype's maximum instead of wrapping.

    >>> saturating_increment(jnp.int32(7)), saturating_increment(jnp.int32(2**31 - 1))
    (Array(8, dtype=int32), Array(2147483647, dtype=int32))
    """
    count = jnp.asarray(count)
    top = np.iinfo(count.dtype).max
    return jnp.where(count < top, count + 1, count)


# optax.tree's functions that this module does not define, re-exported (optax's own, read lazily: optax
# is an optional dependency). ``bias_correction`` here is optax's tree function (moment, decay, count).
_FROM_OPTAX = (
    "add",
    "add_scale",
    "allclose",
    "batch_shape",
    "bias_correction",
    "cast",
    "clip",
    "conj",
    "div",
    "dtype",
    "get",
    "get_all_with_path",
    "map_params",
    "max",
    "min",
    "mul",
    "norm",
    "ones_like",
    "random_like",
    "real",
    "scale",
    "set",
    "size",
    "split_key_like",
    "sub",
    "sum",
    "unwrap_random_key_data",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
    "vdot",
    "where",
)
__getattr__, __dir__ = lazy_reexport(__name__, {"optax.tree": _FROM_OPTAX})
__all__ += _FROM_OPTAX
