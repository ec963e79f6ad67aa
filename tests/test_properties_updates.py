"""Property tests: malformed ``init``/``update`` inputs to every registered optimizer work or name the culprit.

hypothesis draws a malformation of the law suites' problem (tests/conftest.py) and the leaf it hits: a
leaf missing from or added to the updates, a leaf of another shape in the updates or the params, a
``None`` on one side only (updates, params or the params given to ``init``), a string, bool, integer,
complex, float16, bfloat16 or Python-number leaf, NaN / Inf entries, a list for the dict, params omitted,
another optimizer's state, and a ``value`` that is a string or a vector. Each update is traced abstractly
(``jax.eval_shape``: the checks run while tracing and nothing compiles), and must either

- work: the updates have the structure and the leaf shapes of the gradient, in the gradient's dtype
  (law 6) wherever the gradient is floating point; or
- raise ``TypeError`` or ``ValueError`` whose message names an argument or a key path.

tests/test_bad_inputs_updates.py pins the messages and checks the numbers of the documented safe
behaviours (zero norms, float16 norms, complex parameters against optax). Budget: one trace costs
10–100 ms, so by default each optimizer gets two derandomized examples (the same in every run);
``GRADFLOW_PROPERTIES=thorough`` draws 50 fresh ones per optimizer and shrinks failures.
"""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import pytest
from conftest import grad, loss, make_params, property_settings
from hypothesis import given
from hypothesis import strategies as st
from registry import OPTIMIZERS

import gradflow as gf

LR = 0.01
MALFORMED = property_settings(2, 50)

PARAMS = make_params()
GRADS = grad(PARAMS)
EXTRA = {"grad_fn": grad, "value_fn": loss, "value": loss(PARAMS)}
# NAG's gradient is grad_fn at the look-ahead point, in the parameters' dtype: the updates it is given are ignored
# (they may even be None), so its output follows the parameters, not the updates.
IGNORES_UPDATES = {"nag"}
PATHS = (("dense", "w"), ("dense", "b"), ("scale", 0))
# A message names the culprit: a key path (``updates['dense']['w']``, ``mask['scale'][0]``) or an argument.
NAMED = re.compile(
    r"\w\[['\d]|\b(updates|params|state|value|value_fn|grad_fn|key|mask|param_labels|label)\b|\w+State\b"
)


def _replace(tree, path, value):
    """``tree`` with the leaf at ``path`` replaced by ``value`` (``path`` from PATHS)."""
    first, second = path
    if first == "scale":
        return {**tree, "scale": (value,)}
    return {**tree, "dense": {**tree["dense"], second: value}}


def _leaf(tree, path):
    first, second = path
    return tree[first][second]


def _cast(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype), tree)


# name -> (path -> (updates, params, params given to init, extra arguments)).
MALFORMATIONS = {
    "updates-missing-leaf": lambda path: (_replace(GRADS, path, {}), PARAMS, PARAMS, EXTRA),
    "updates-extra-leaf": lambda path: ({**GRADS, "extra": jnp.ones(2)}, PARAMS, PARAMS, EXTRA),
    "updates-wrong-shape": lambda path: (_replace(GRADS, path, jnp.ones(5)), PARAMS, PARAMS, EXTRA),
    "params-wrong-shape": lambda path: (GRADS, _replace(PARAMS, path, jnp.ones((1, 5))), PARAMS, EXTRA),
    "updates-list-for-dict": lambda path: (jax.tree.leaves(GRADS), PARAMS, PARAMS, EXTRA),
    "updates-none": lambda path: (_replace(GRADS, path, None), PARAMS, PARAMS, EXTRA),
    "params-none": lambda path: (GRADS, _replace(PARAMS, path, None), PARAMS, EXTRA),
    "init-none": lambda path: (GRADS, PARAMS, _replace(PARAMS, path, None), EXTRA),
    "updates-string": lambda path: (_replace(GRADS, path, "0.5"), PARAMS, PARAMS, EXTRA),
    "updates-bool": lambda path: (
        _replace(GRADS, path, jnp.ones_like(_leaf(GRADS, path), bool)),
        PARAMS,
        PARAMS,
        EXTRA,
    ),
    "updates-int": lambda path: (_replace(GRADS, path, jnp.ones_like(_leaf(GRADS, path), int)), PARAMS, PARAMS, EXTRA),
    "params-int": lambda path: (GRADS, _replace(PARAMS, path, jnp.ones_like(_leaf(PARAMS, path), int)), PARAMS, EXTRA),
    "updates-complex": lambda path: (_cast(GRADS, jnp.complex64), PARAMS, PARAMS, EXTRA),
    "all-complex": lambda path: (
        _cast(GRADS, jnp.complex64),
        _cast(PARAMS, jnp.complex64),
        _cast(PARAMS, jnp.complex64),
        {"grad_fn": lambda p: p, "value_fn": lambda p: jnp.float32(0.0), "value": jnp.float32(0.0)},
    ),
    "updates-float16": lambda path: (_cast(GRADS, jnp.float16), PARAMS, PARAMS, EXTRA),
    "all-bfloat16": lambda path: (
        _cast(GRADS, jnp.bfloat16),
        _cast(PARAMS, jnp.bfloat16),
        _cast(PARAMS, jnp.bfloat16),
        {**EXTRA, "grad_fn": lambda p: _cast(grad(_cast(p, jnp.float32)), jnp.bfloat16)},
    ),
    "updates-python-float": lambda path: (_replace(GRADS, path, 0.5), PARAMS, PARAMS, EXTRA),
    "updates-nan": lambda path: (_replace(GRADS, path, _leaf(GRADS, path) * jnp.nan), PARAMS, PARAMS, EXTRA),
    "updates-inf": lambda path: (_replace(GRADS, path, _leaf(GRADS, path) * jnp.inf), PARAMS, PARAMS, EXTRA),
    "params-omitted": lambda path: (GRADS, None, PARAMS, EXTRA),
    "value-string": lambda path: (GRADS, PARAMS, PARAMS, {**EXTRA, "value": "0.5"}),
    "value-vector": lambda path: (GRADS, PARAMS, PARAMS, {**EXTRA, "value": jnp.ones(2)}),
    "state-of-adam": lambda path: (GRADS, PARAMS, "adam", EXTRA),
}


def _trace(tx, updates, params, init_params, extra):
    """``tx.update`` from ``tx.init(init_params)`` (or Adam's state), traced abstractly."""

    def step():
        state = gf.adam(LR).init(PARAMS) if init_params == "adam" else tx.init(init_params)
        return tx.update(updates, state, params, **extra)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jax.eval_shape(step)


def _assert_works(updates, out):
    """The output updates have the structure and shapes of ``updates`` and, for a floating gradient, its dtype."""
    is_none = lambda x: x is None
    assert jax.tree.structure(out, is_leaf=is_none) == jax.tree.structure(updates, is_leaf=is_none)
    for u, o in zip(jax.tree.leaves(updates, is_leaf=is_none), jax.tree.leaves(out, is_leaf=is_none)):
        assert (u is None) == (o is None), "a None update (a frozen parameter) must stay None"
        if u is None:
            continue
        assert jnp.shape(u) == o.shape
        if hasattr(u, "dtype") and jnp.issubdtype(u.dtype, jnp.inexact):
            assert o.dtype == u.dtype, (u.dtype, o.dtype)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@MALFORMED
@given(malformation=st.sampled_from(sorted(MALFORMATIONS)), path=st.sampled_from(PATHS))
def test_malformed_update_works_or_names_the_culprit(name, malformation, path):
    updates, params, init_params, extra = MALFORMATIONS[malformation](path)
    tx = OPTIMIZERS[name](LR)
    try:
        out, _ = _trace(tx, updates, params, init_params, extra)
    except (TypeError, ValueError) as error:
        message = str(error).split("\n--------------------")[0]  # without JAX's note on filtered frames
        assert NAMED.search(message), f"{name} / {malformation} at {path}: {type(error).__name__}: {message}"
        return
    _assert_works(params if name in IGNORES_UPDATES else updates, out)
