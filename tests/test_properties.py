"""Property tests: the laws of DESIGN.md hold on random pytrees, for every registered optimizer.

tests/test_laws.py checks the laws on one fixed tree. Here hypothesis draws the parameters: nested
dicts, tuples and lists (depth at most 3, empty ones included), ``None`` leaves (an empty subtree: no
state, no update), scalars and arrays of up to 3 dimensions of size 1 to 4 (now and then one of size
0), in float32, bfloat16 and float64, often mixed within a tree. A tree with a float64 leaf runs under
``jax.enable_x64``, a context manager, so nothing leaks into the other tests of the worker. The
gradient of each step is that of a separable convex loss at the current parameters: random with the
parameters (exact zeros included), and consistent with the ``grad_fn`` / ``value`` / ``value_fn``
extra arguments that some optimizers read.

The properties:

- laws 1, 2 and 6 (:func:`test_pure_stable_state_and_dtypes`, eagerly, float32 / bfloat16 trees) for
  every optimizer; laws 2 and 6 on trees with float64 leaves under x64
  (:func:`test_stable_state_and_dtypes_under_x64`, by tracing: ``jax.eval_shape``);
- tree-structure independence (:func:`test_tree_structure_independence`, eagerly): for the optimizers
  whose update of a leaf depends on that leaf alone (elementwise and per-leaf "layerwise" rules), the
  updates of a tree equal those of each leaf optimized alone, and renaming the dict keys so that their
  order reverses permutes the result, bit for bit;
- law 3 (:func:`test_jit_equals_eager`) on one random tree and the hand-written one, for a few
  optimizers that cover the mechanisms that XLA compiles differently (a compilation costs 1–10 s per
  optimizer and tree).

Budget: JAX compilation dominates. The numeric laws run eagerly: eager primitives are compiled once per
shape, dtype and x64 mode, and since every optimizer gets the same trees (one fixed seed, see
``SAME_TREES``) they are compiled once for the whole module; still, each new (shape, dtype) costs about 5 s
over all optimizers, and x64 mode about 20 s (every primitive again), hence float64 trees are traced, not
run, by default. Optimizers that compile at every eager update, or for every new tree (``SLOW``), get
fewer examples. ``GRADFLOW_PROPERTIES=thorough`` runs 50 fresh random examples per optimizer and property,
float64 leaves in the eager properties too, law 3 for every optimizer, and shrinks failures.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import THOROUGH, numeric_leaves, property_settings
from hypothesis import Phase, example, given, seed
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from registry import OPTIMIZERS

import gradflow as gf

LR = 0.01

# --- settings --------------------------------------------------------------------------------------------

# Three examples per optimizer and property by default (derandomized, no shrinking: conftest.property_settings).
PROPERTIES = property_settings(3, 50)
# Law 3 and the traced x64 laws: by default one random example.
FEW = property_settings(1, 50)
# Slow optimizers (below): by default the explicit example only.
EXPLICIT = property_settings(3, 50, phases=[Phase.explicit])
# hypothesis's pytest plugin gives each parametrized invocation its own derandomized seed; one fixed seed
# instead gives every optimizer the same trees, so that the eager primitives compiled for their shapes
# and dtypes are reused from one optimizer to the next. Any seed works: the compilation time grows with
# the number of distinct (shape, dtype) among the drawn leaves, about 5 s each, and this seed's trees
# have few of them while covering every rank, depth 0 to 3, mixed dtypes and a zero-size leaf.
SAME_TREES = (lambda test: test) if THOROUGH else seed(42)

# --- which optimizers meet which property ----------------------------------------------------------------

# Their label / mask trees are written for the fixed tree of conftest.make_params, so they cannot take a
# random tree (tests/test_laws.py covers them).
FIXED_STRUCTURE = {"freeze_bias_sgd", "lars_nesterov_decay_masked", "partition_adam_sgd"}

# Slow eagerly: ``lax`` control flow over closures built at each call (lax.cond, lax.scan, fori_loop), which
# every eager update traces and compiles again (0.2–1 s), or a program compiled for each new tree (the jitted
# line searches, the dense Newton solve of the tree's size). By default they run the laws eagerly on the
# explicit example only (and are traced on a random tree by test_stable_state_and_dtypes_under_x64).
SLOW = {
    "apply_if_finite_adam",
    "clipped_adamw",
    "newton_dense",
    "sgd_backtracking",
    "sgd_zoom",
    "multi_steps_adam",
    "lbfgs",
    "lbfgs_backtracking_unscaled",
    "lbfgs_fixed_step_memory_2_unscaled",
    "lbfgs_fixed_step_schedule",
    "lbfgs_fixed_step_unscaled",
    "newton_cg",
    "newton_cg_damping_schedule",
}

# Coupled: the update of a leaf depends on the other leaves, on their number or on their order. Excluded
# from tree-structure independence, as are NOT_PER_LEAF.
COUPLED = {
    "clipped_adamw": "clip_by_global_norm: the norm of the whole tree",
    "clipped_curvature_step": "step gᵀg / gᵀHg over the whole tree",
    "clipped_polyak_sgd": "Polyak step: ‖g‖² over the whole tree",
    "curvature_step": "step gᵀg / gᵀHg over the whole tree",
    "flatten_adam": "flatten: one vector in the dtype all the leaves promote to",
    "lbfgs": "L-BFGS: inner products over the whole tree",
    "lbfgs_backtracking_unscaled": "L-BFGS: inner products over the whole tree",
    "lbfgs_fixed_step_memory_2_unscaled": "L-BFGS: inner products over the whole tree",
    "lbfgs_fixed_step_schedule": "L-BFGS: inner products over the whole tree",
    "lbfgs_fixed_step_unscaled": "L-BFGS: inner products over the whole tree",
    "newton_cg": "conjugate gradient over the whole tree",
    "newton_cg_damping_schedule": "conjugate gradient over the whole tree",
    "newton_dense": "Hessian of the whole tree",
    "noisy_adam_schedule": "one PRNG key per leaf, split in flattening order",
    "noisy_sgd": "one PRNG key per leaf, split in flattening order",
    "normalized_sgd": "norm of the whole update",
    "polyak_sgd": "Polyak step: ‖g‖² over the whole tree",
    "polyak_sgd_plus_capped": "Polyak step: ‖g‖² over the whole tree",
    "sgd_backtracking": "line search on the loss of the whole tree",
    "sgd_zoom": "line search on the loss of the whole tree",
}
NOT_PER_LEAF = {
    # not coupled, but lax.cond compiles the inner optimizer as one XLA program per tree, whose rewrites
    # change the last bits with the tree; and each leaf alone would cost many compilations (see SLOW)
    "apply_if_finite_adam": "lax.cond: one compiled program per tree (last bits differ; slow)",
    "multi_steps_adam": "lax.cond: one compiled program per tree (last bits differ; slow)",
    # partition rejects a label that no parameter carries: one leaf alone has only one of the two
    "partition_by_rank": "a leaf alone lacks one of the two labels, which partition rejects",
}
# The averaging weights of schedule-free are scalars shared by all leaves, kept in the widest parameter
# dtype (gradflow/transforms/schedule_free.py, by design): with a float64 leaf in the tree they are float64,
# so a float32 leaf alone (float32 weights) rounds differently. Its leaves are compared alone only when
# the tree has no float64 leaf.
WIDEST_DTYPE_SCALARS = {name for name in OPTIMIZERS if name.startswith("schedule_free")}

# Law 3 costs one compilation per optimizer and tree (1–10 s): a sample that covers what XLA compiles
# differently from the eager primitives, or where gradflow's code differs between concrete and traced
# values: Adam's fused moments inside a lax.cond wrapper, L-BFGS's two-loop lax.scan and lax.cond, a mask
# function (resolved to Python booleans when concrete); all optimizers with GRADFLOW_PROPERTIES=thorough.
JIT_SAMPLE = {"apply_if_finite_adam", "lbfgs_fixed_step_unscaled", "lamb_weight_decay_mask"}

# Known bugs (each one an xfail test at the bottom): these optimizers get trees with the offending leaves
# replaced, so that they still meet every other property.
NONE_LEAF_BUG = {"masked_weight_decay_adam", "partition_by_rank"}  # mask / label functions and None leaves
BARE_ARRAY_BUG: set[str] = set()  # params that are one array, not a tree (none since masked uses MaskedNode)
ZERO_SIZE_BUG: set[str] = set()  # zero-size leaves (none since clip_by_global_norm reduces with initial=0)

_NAMED = (FIXED_STRUCTURE, SLOW, COUPLED, NOT_PER_LEAF, JIT_SAMPLE, NONE_LEAF_BUG, BARE_ARRAY_BUG, ZERO_SIZE_BUG)
assert set().union(*_NAMED) <= set(OPTIMIZERS), sorted(set().union(*_NAMED) - set(OPTIMIZERS))


def _params(names: Any) -> list[Any]:
    # All properties of one optimizer run on the same xdist worker (--dist loadgroup), as in test_laws.py.
    return [pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in sorted(names)]


RANDOM_TREE_NAMES = set(OPTIMIZERS) - FIXED_STRUCTURE
PER_LEAF_NAMES = RANDOM_TREE_NAMES - set(COUPLED) - set(NOT_PER_LEAF)
JIT_NAMES = RANDOM_TREE_NAMES if THOROUGH else JIT_SAMPLE

# --- random pytrees --------------------------------------------------------------------------------------


class Leaf:
    """The recipe of one parameter: its dtype and its values (float32, or float64 for a float64 leaf).

    Trees are drawn as recipes and made into JAX arrays inside the test, under ``jax.enable_x64`` when a
    leaf is float64. A ``Leaf`` is not a registered pytree node, so ``jax.tree`` sees it as a leaf.
    """

    def __init__(self, dtype: str, values: np.ndarray):
        self.dtype, self.values = dtype, values

    def __repr__(self) -> str:
        return f"Leaf({self.dtype!r}, np.array({self.values.tolist()!r}, np.{self.values.dtype}))"

    def array(self) -> jax.Array:
        return jnp.asarray(self.values, self.dtype)


DTYPES = ("float32", "bfloat16", "float64")
KEYS = st.text(alphabet="abcwxyz", min_size=1, max_size=2)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
ZERO_SIZE_SHAPES = st.tuples(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=4), st.integers(0, 2)).map(
    lambda s: (*s[0][: s[1]], 0, *s[0][s[1] :])
)
ELEMENTS = {
    32: st.floats(-2, 2, width=32, allow_subnormal=False),
    64: st.floats(-2, 2, width=64, allow_subnormal=False),
}


@st.composite
def leaves(draw: st.DrawFn, dtypes: tuple[str, ...]) -> Leaf | None:
    """A ``Leaf`` of a dtype in ``dtypes`` (one in eight has a zero-size dimension), or ``None`` (one in six)."""
    if draw(st.integers(0, 5)) == 0:
        return None
    dtype = draw(st.sampled_from(dtypes))
    shape = draw(ZERO_SIZE_SHAPES if draw(st.integers(0, 7)) == 0 else SHAPES)
    width = 64 if dtype == "float64" else 32
    size = int(np.prod(shape))
    values = draw(st.lists(ELEMENTS[width], min_size=size, max_size=size))
    return Leaf(dtype, np.array(values, np.float64 if width == 64 else np.float32).reshape(shape))


def depth(tree: Any) -> int:
    if isinstance(tree, dict):
        return 1 + max(map(depth, tree.values()), default=0)
    if isinstance(tree, (list, tuple)):
        return 1 + max(map(depth, tree), default=0)
    return 0


def array_leaves(tree: Any) -> list[Any]:
    return numeric_leaves(tree)  # typed PRNG keys as their data


def containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.dictionaries(KEYS, children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
        st.lists(children, max_size=3),
    )


def with_leaf_of(dtype: str | None) -> Any:
    """A map over trees: the first array leaf cast to ``dtype`` when no leaf has it (``None``: no change)."""

    def ensure(tree: Any) -> Any:
        found = array_leaves(tree)
        if dtype is None or any(leaf.dtype == dtype for leaf in found):
            return tree
        first = found[0]
        values = first.values.astype(np.float64 if dtype == "float64" else np.float32)
        return jax.tree.map(lambda x: Leaf(dtype, values) if x is first else x, tree)

    return ensure


def pytrees(dtypes: tuple[str, ...], max_leaves: int = 4, require: str | None = None) -> st.SearchStrategy:
    """A params recipe: nested dicts / tuples / lists of ``Leaf`` and ``None``, with at least one array.

    The dtypes of a tree are a random subset of ``dtypes`` (so some trees have one dtype and others mix
    them); with ``require``, the subset includes it and some leaf has it. (The strategies are built once
    per subset: building them at each draw would cost more than the draws.)
    """
    subsets = [
        tuple(d for d, bit in zip(dtypes, bits) if bit)
        for bits in itertools.product((0, 1), repeat=len(dtypes))
        if any(bits) and (require is None or bits[dtypes.index(require)])
    ]
    valid = lambda tree: depth(tree) <= 3 and bool(array_leaves(tree))
    trees = {d: st.recursive(leaves(d), containers, max_leaves=max_leaves).filter(valid) for d in subsets}
    return st.sampled_from(subsets).flatmap(trees.__getitem__).map(with_leaf_of(require))


# float64 only under x64, which recompiles every eager primitive: traced by default, run when thorough.
EAGER_DTYPES = DTYPES if THOROUGH else ("float32", "bfloat16")
EAGER_TREES = pytrees(EAGER_DTYPES)
X64_TREES = pytrees(DTYPES, require="float64")


def edge_tree(dtype: str) -> Any:
    """A hand-written tree with every feature, run before the random ones: nested dict / tuple / list, an
    empty container, a ``None``, scalars, a zero-size leaf, float32, bfloat16 and ``dtype``."""
    return {
        "w": (Leaf("float32", np.zeros((2, 0), np.float32)), None, [Leaf("bfloat16", np.array([[1.5, -0.5, 0.0]]))]),
        "b": {"x": Leaf(dtype, np.array(0.75, np.float64 if dtype == "float64" else np.float32)), "empty": ()},
        "a": Leaf("float32", np.array(-1.25, np.float32)),
    }


EDGE_TREE, EDGE_TREE_X64 = edge_tree("float32"), edge_tree("float64")


def without_known_bugs(name: str, recipe: Any) -> Any:
    """``recipe`` adapted to ``name``: the leaves that its known bugs cannot take replaced (see the xfail
    tests at the bottom), and for ``partition_by_rank`` (which rejects a label that no parameter carries)
    a matrix and a vector added."""

    def fix(leaf: Leaf | None) -> Leaf | None:
        if leaf is None and name in NONE_LEAF_BUG:
            return Leaf("float32", np.array([0.5], np.float32))
        if leaf is not None and leaf.values.size == 0 and name in ZERO_SIZE_BUG:
            return Leaf(leaf.dtype, np.ones([max(n, 1) for n in leaf.values.shape], leaf.values.dtype))
        return leaf

    recipe = jax.tree.map(fix, recipe, is_leaf=lambda x: x is None)
    if name in BARE_ARRAY_BUG and isinstance(recipe, Leaf):
        recipe = (recipe,)
    if name == "partition_by_rank":
        matrix, vector = np.array([[0.5, -1.0]], np.float32), np.array([1.5], np.float32)
        recipe = {"tree": recipe, "matrix": Leaf("float32", matrix), "vector": Leaf("float32", vector)}
    return recipe


@contextlib.contextmanager
def materialized(recipe: Any):
    """The params of ``recipe`` as JAX arrays, under ``jax.enable_x64`` if a leaf is float64."""
    with jax.enable_x64(True) if has_float64(recipe) else contextlib.nullcontext():
        yield jax.tree.map(Leaf.array, recipe)


def has_float64(recipe: Any) -> bool:
    return any(leaf.dtype == "float64" for leaf in array_leaves(recipe))


# --- the problem: a separable convex loss ----------------------------------------------------------------


def grad_fn(params: Any) -> Any:
    """∇L for L(θ) = Σ 0.5·θ² + 0.1·θ⁴, leaf by leaf in each leaf's dtype (0 at θ = 0)."""
    return jax.tree.map(lambda x: x + 0.4 * x**3, params)


def value_fn(params: Any) -> jax.Array:
    """L(θ) = Σ 0.5·θ² + 0.1·θ⁴ over all leaves, in the widest of their dtypes and float32."""
    return sum((jnp.sum(0.5 * x * x + 0.1 * x**4) for x in array_leaves(params)), jnp.zeros([], jnp.float32))


def update(tx: Any, state: Any, params: Any, value: Any = None) -> tuple[Any, Any]:
    """One update at ``params``, with every extra argument (unused ones are ignored); ``value`` overrides L."""
    value = value_fn(params) if value is None else value
    return tx.update(grad_fn(params), state, params, grad_fn=grad_fn, value=value, value_fn=value_fn)


def trajectory(tx: Any, params: Any, values: list[Any] | None = None, steps: int = 2) -> tuple[list[Any], list[Any]]:
    """The updates of ``steps`` steps from ``tx.init(params)``, and the params after each step."""
    state, all_updates, all_params = tx.init(params), [], []
    for t in range(steps):
        updates, state = update(tx, state, params, None if values is None else values[t])
        params = gf.apply_updates(params, updates)
        all_updates.append(updates)
        all_params.append(params)
    return all_updates, all_params


# --- comparisons -----------------------------------------------------------------------------------------


def _is_none(x: Any) -> bool:
    return x is None


def signature(tree: Any) -> tuple[Any, list[Any]]:
    """Tree structure (``None`` positions included), and each leaf's shape and dtype."""
    leaves, structure = jax.tree.flatten(tree, is_leaf=_is_none)
    return structure, [None if x is None else (jnp.shape(x), jnp.result_type(x)) for x in leaves]


def assert_bitwise_equal(got: Any, want: Any, what: str) -> None:
    """Same structure (``None`` positions included), dtypes and bits (NaN equals NaN)."""
    assert signature(got) == signature(want), what
    for i, (a, b) in enumerate(zip(array_leaves(got), array_leaves(want))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=f"{what}: leaf {i}", strict=True)


def fresh_copy(tree: Any) -> Any:
    """``tree`` with every JAX array copied into a new buffer (equal inputs, not the same objects)."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True) if isinstance(x, jax.Array) else x, tree)


def other_dtype(dtype: Any) -> Any:
    return jnp.float32 if dtype == jnp.bfloat16 else jnp.bfloat16


def reverse_keys(tree: Any) -> Any:
    """``tree`` with every dict's keys renamed so that their sorted order reverses (the leaves permute)."""
    if isinstance(tree, dict):
        keys = sorted(tree)
        return {f"r{len(keys) - 1 - i}": reverse_keys(tree[k]) for i, k in enumerate(keys)}
    if isinstance(tree, (list, tuple)):
        return type(tree)(reverse_keys(x) for x in tree)
    return tree


def restore_keys(renamed: Any, like: Any) -> Any:
    """The inverse of :func:`reverse_keys`: ``renamed`` with the keys of ``like``."""
    if isinstance(like, dict):
        keys = sorted(like)
        return {k: restore_keys(renamed[f"r{len(keys) - 1 - i}"], like[k]) for i, k in enumerate(keys)}
    if isinstance(like, (list, tuple)):
        return type(like)(restore_keys(x, y) for x, y in zip(renamed, like))
    return renamed


def tolerance(dtype: Any) -> dict[str, float]:
    """jit vs eager, for a value of ``dtype``: XLA fuses and rewrites (x / sqrt(y) as x · rsqrt(y))."""
    return {
        jnp.dtype(jnp.float64): dict(rtol=1e-12, atol=1e-14),
        jnp.dtype(jnp.float32): dict(rtol=1e-5, atol=1e-7),
        jnp.dtype(jnp.bfloat16): dict(rtol=2e-2, atol=1e-4),
    }[jnp.dtype(dtype)]


def assert_close_to_eager(jitted: Any, eager: Any, precision: Any, what: str, params: Any = None) -> None:
    """``jitted`` equals ``eager``: exactly for integers and booleans, else to the tolerance of ``precision``
    (the least precise dtype the values were computed from) or of their own dtype if less precise.

    Updates (``params`` given) are also allowed a few ulps of their parameter: one computed as the
    difference of two parameter-sized values (schedule-free's y_new − y) is only known to that.
    """
    assert signature(jitted) == signature(eager), what
    offsets = [None] * len(array_leaves(eager)) if params is None else array_leaves(params)
    for i, (a, b, p) in enumerate(zip(array_leaves(jitted), array_leaves(eager), offsets)):
        dtype = jnp.result_type(a)
        if not jnp.issubdtype(dtype, jnp.inexact):
            np.testing.assert_array_equal(a, b, err_msg=f"{what}: leaf {i}")
            continue
        leaf_precision = dtype if jnp.finfo(dtype).eps > jnp.finfo(precision).eps else precision
        rtol, atol = tolerance(leaf_precision).values()
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if p is not None:
            atol = atol + 4 * float(jnp.finfo(leaf_precision).eps) * np.abs(np.asarray(p, np.float64))
        far = np.abs(a - b) > atol + rtol * np.abs(b)
        assert not far.any(), f"{what}: leaf {i}: jit {a[far]} != eager {b[far]} (rtol {rtol})"


# --- the properties --------------------------------------------------------------------------------------


def check_pure_stable_state_and_dtypes(name: str, recipe: Any) -> None:
    with materialized(without_known_bugs(name, recipe)) as params:
        tx = OPTIMIZERS[name](LR)
        state0 = tx.init(params)
        updates1, state1 = update(tx, state0, params)
        params1 = gf.apply_updates(params, updates1)
        updates2, state2 = update(tx, state1, params1)
        again = update(OPTIMIZERS[name](LR), fresh_copy(state1), fresh_copy(params1))
        assert_bitwise_equal(again, (updates2, state2), "law 1: equal inputs, equal (updates, state)")

        assert signature(state1) == signature(state0), "law 2: the state after 1 update"
        assert signature(state2) == signature(state0), "law 2: the state after 2 updates"

        assert signature(updates1) == signature(grad_fn(params)), "law 6: the updates of step 1"
        assert signature(updates2) == signature(grad_fn(params1)), "law 6: the updates of step 2"
        assert signature(params1) == signature(params), "law 6: apply_updates"
        crossed = jax.tree.map(lambda u: u.astype(other_dtype(u.dtype)), updates2)
        assert signature(gf.apply_updates(params1, crossed)) == signature(params), "law 6: mixed dtypes"


@pytest.mark.parametrize("name", _params(RANDOM_TREE_NAMES - SLOW))
@PROPERTIES
@SAME_TREES
@given(recipe=EAGER_TREES)
@example(recipe=EDGE_TREE)
def test_pure_stable_state_and_dtypes(name, recipe):
    """Laws 1, 2 and 6 on a random float32 / bfloat16 tree, eagerly.

    1: the second update, run twice from equal (freshly copied) inputs with a freshly built optimizer,
    gives bit-identical updates and states. 2: the state after init, after 1 and after 2 updates has
    the same structure, shapes and dtypes. 6: the updates have the gradient's structure, shape and dtype
    leaf by leaf (``None`` for a ``None`` parameter); ``apply_updates`` keeps each parameter's dtype,
    also for updates of another dtype.
    """
    check_pure_stable_state_and_dtypes(name, recipe)


@pytest.mark.parametrize("name", _params(SLOW))
@EXPLICIT
@SAME_TREES
@given(recipe=EAGER_TREES)
@example(recipe=EDGE_TREE)
def test_pure_stable_state_and_dtypes_slow_optimizers(name, recipe):
    """Laws 1, 2 and 6 as in :func:`test_pure_stable_state_and_dtypes`, on fewer trees (by default the
    explicit one only)."""
    check_pure_stable_state_and_dtypes(name, recipe)


@pytest.mark.parametrize("name", _params(RANDOM_TREE_NAMES))
@FEW
@SAME_TREES
@given(recipe=X64_TREES)
@example(recipe=EDGE_TREE_X64)
def test_stable_state_and_dtypes_under_x64(name, recipe):
    """Laws 2 and 6 on a random tree with float64 leaves (often beside float32 / bfloat16 ones), under x64.

    Traced with ``jax.eval_shape`` (shapes and dtypes are static), which also checks the "no Python
    branching on array values" half of law 1: the update runs on abstract values. 2: the state after init,
    1 and 2 updates has the same structure, shapes and dtypes. 6: the updates have the gradient's
    structure, shape and dtype leaf by leaf; ``apply_updates`` keeps each parameter's dtype.
    """

    def two_steps(params):
        tx = OPTIMIZERS[name](LR)
        state0 = tx.init(params)
        updates1, state1 = update(tx, state0, params)
        params1 = gf.apply_updates(params, updates1)
        updates2, state2 = update(tx, state1, params1)
        return (state0, state1, state2), (updates1, updates2), gf.apply_updates(params1, updates2)

    with materialized(without_known_bugs(name, recipe)) as params:
        states, updates, new_params = jax.eval_shape(two_steps, params)
        assert signature(states[1]) == signature(states[0]), "law 2: the state after 1 update"
        assert signature(states[2]) == signature(states[0]), "law 2: the state after 2 updates"
        assert signature(updates[0]) == signature(params), "law 6: the updates of step 1"
        assert signature(updates[1]) == signature(params), "law 6: the updates of step 2"
        assert signature(new_params) == signature(params), "law 6: apply_updates"


@pytest.mark.parametrize("name", _params(PER_LEAF_NAMES))
@PROPERTIES
@SAME_TREES
@given(recipe=EAGER_TREES)
@example(recipe=EDGE_TREE)
def test_tree_structure_independence(name, recipe):
    """The update of a leaf depends on that leaf alone, not on the tree around it.

    Over two steps, the updates of a tree equal, bit for bit, those of each array leaf optimized alone as a
    bare array (given the whole tree's loss as ``value``, the one extra shared by all leaves); and
    renaming the dict keys so that their order reverses (which permutes the flattened leaves, and so the
    state) gives the same updates under the new names.
    """
    recipe = without_known_bugs(name, recipe)
    with materialized(recipe) as params:
        tx = OPTIMIZERS[name](LR)
        whole, whole_params = trajectory(tx, params)
        values = [value_fn(params), value_fn(whole_params[0])]

        flat, structure = jax.tree.flatten(params, is_leaf=_is_none)
        for i, leaf in enumerate(flat):
            if leaf is None or (name in WIDEST_DTYPE_SCALARS and has_float64(recipe) and leaf.dtype != jnp.float64):
                continue
            alone, _ = trajectory(tx, (leaf,) if name in BARE_ARRAY_BUG else leaf, values)
            for t in range(2):
                got = structure.flatten_up_to(whole[t])[i]
                want = alone[t][0] if name in BARE_ARRAY_BUG else alone[t]
                assert_bitwise_equal(got, want, f"step {t + 1}, leaf {i}")

        renamed, _ = trajectory(tx, reverse_keys(params))
        for t in range(2):
            assert_bitwise_equal(restore_keys(renamed[t], params), whole[t], f"step {t + 1}: renamed keys")


@jax.jit
def update_jit(tx, state, params):
    return update(tx, state, params)


@pytest.mark.parametrize("name", _params(JIT_NAMES))
@FEW
@SAME_TREES
@given(recipe=EAGER_TREES)
@example(recipe=EDGE_TREE)
def test_jit_equals_eager(name, recipe):
    """Law 3: jit(update) == update on a random tree, at init and after one step (equal inputs to both).

    XLA keeps bfloat16 intermediates in float32 (``xla_allow_excess_precision``) where eager rounds each
    one to bfloat16, so a bfloat16 computation is compared with the same bfloat16 computation, at its
    precision (2⁻⁸), never with float32; and so is a float32 value computed from one: any state leaf
    of a tree with a bfloat16 parameter (a float32 moment of a bfloat16 gradient), and the updates of
    an optimizer that couples the leaves (a dot product over the whole tree). Updates at bfloat16
    precision are compared as the parameters they lead to (see :func:`assert_close_to_eager`).
    """
    with materialized(without_known_bugs(name, recipe)) as params:
        tx = OPTIMIZERS[name](LR)
        state = tx.init(params)
        lowest = max((jnp.result_type(p) for p in array_leaves(params)), key=lambda d: jnp.finfo(d).eps)
        for step in (1, 2):
            eager_updates, eager_state = update(tx, state, params)
            jitted_updates, jitted_state = update_jit(tx, state, params)
            updates_precision = lowest if name in COUPLED else jnp.float64
            what = f"step {step}: updates"
            assert_close_to_eager(jitted_updates, eager_updates, updates_precision, what, params)
            assert_close_to_eager(jitted_state, eager_state, lowest, f"step {step}: state")
            state = eager_state
            params = gf.apply_updates(params, eager_updates)


# --- known bugs that the properties found (the exclusions above refer to these) --------------------------


def test_clip_by_global_norm_takes_zero_size_leaves():
    """The overflow branch of clip_by_global_norm (traced by lax.cond even when not taken) reduces each
    leaf with jnp.max from 0, so a zero-size leaf passes (formerly ZERO_SIZE_BUG)."""
    params = {"w": jnp.ones(2), "z": jnp.ones((0, 3))}
    tx = gf.clip_by_global_norm(1.0)
    updates, _ = tx.update(params, tx.init(params), params)
    assert updates["z"].shape == (0, 3)


def _rank_2(params):
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def _rank_labels(params):
    return jax.tree.map(lambda p: "matrix" if p.ndim >= 2 else "other", params)


@pytest.mark.xfail(strict=True, raises=TypeError, reason="bug: masked/partition reject the None of a None parameter")
@pytest.mark.parametrize(
    "tx",
    [
        pytest.param(gf.masked(gf.add_decayed_weights(0.1), _rank_2), id="masked"),
        pytest.param(gf.partition({"matrix": gf.sgd(1.0), "other": gf.sgd(0.1)}, _rank_labels), id="partition"),
    ],
)
def test_mask_and_label_functions_take_none_leaves(tx):
    """A mask or label function built with jax.tree.map returns None at a None parameter (an empty subtree);
    masked and partition reject it, where optax.masked and optax.multi_transform accept it and every other
    gradflow transform passes None leaves through (NONE_LEAF_BUG)."""
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2), "frozen": None}
    updates, _ = tx.update(params, tx.init(params), params)
    assert updates["frozen"] is None


def test_masked_takes_a_bare_array():
    """With params that are one array and a false mask, masked hands the inner transform a ``MaskedNode``
    as its params (the whole tree masked out, as optax does), not ``params=None``, so add_decayed_weights
    does not raise that it needs the parameters (formerly BARE_ARRAY_BUG)."""
    params = jnp.ones(2)
    tx = gf.masked(gf.add_decayed_weights(0.1), False)
    updates, _ = tx.update(params, tx.init(params), params)
    np.testing.assert_array_equal(updates, params)


@pytest.mark.filterwarnings("error::DeprecationWarning")
def test_weight_decay_mask_function_with_none_leaves():
    """add_decayed_weights' mask function meets a None parameter: the mask's None stays None (no jnp.ndim(None),
    which JAX deprecates), and the masked leaf decays by λ·θ."""
    params = {"w": jnp.ones((2, 2)), "frozen": None}
    tx = gf.add_decayed_weights(0.1, mask=_rank_2)
    updates, _ = tx.update(params, tx.init(params), params)
    assert updates["frozen"] is None
    np.testing.assert_allclose(updates["w"], np.ones((2, 2)) + 0.1 * np.ones((2, 2)), rtol=1e-7)
