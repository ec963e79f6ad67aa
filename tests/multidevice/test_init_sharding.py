"""``init`` keeps each parameter's sharding, as optax does, for concrete arrays and ``ShapeDtypeStruct``s.

With parameters sharded ``P('x')`` over a mesh, every state leaf shaped like a parameter must be laid out
like that parameter (optax's moments are): a state gathered on one device would put a large model's
whole optimizer state on device 0 when ``init`` runs eagerly (``nnx.Optimizer`` does). The reference is
optax's own state: same layout, so the shardings are compared leaf by leaf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import gradflow as gf

CASES = {
    "adam": lambda lib: lib.adam(1e-3),
    "adamw-schedule": lambda lib: lib.chain(
        lib.clip_by_global_norm(1.0), lib.adamw(lib.cosine_decay_schedule(1e-3, 10))
    ),
    "sgd-momentum": lambda lib: lib.sgd(1e-2, momentum=0.9),
    "rmsprop-centered": lambda lib: lib.rmsprop(1e-3, centered=True),
    "amsgrad": lambda lib: lib.amsgrad(1e-3),
    "lion": lambda lib: lib.lion(1e-4),
    "adagrad": lambda lib: lib.adagrad(1e-2),
    "rprop": lambda lib: lib.rprop(1e-2),
    "multi_steps": lambda lib: lib.MultiSteps(lib.adam(1e-3), every_k_schedule=2),
}


def sharded_params():
    mesh = jax.make_mesh((4, 2), ("x", "y"))
    rows = NamedSharding(mesh, P("x"))
    grid = NamedSharding(mesh, P("x", "y"))
    return {
        "w": jax.device_put(jnp.ones((8, 4), jnp.float32), grid),
        "b": jax.device_put(jnp.ones((8,), jnp.float32), rows),
        "scale": jnp.ones((), jnp.float32),  # uncommitted: a single device, as optax leaves it
    }


def shardings(state):
    return [getattr(leaf, "sharding", None) for leaf in jax.tree.leaves(state)]


def spec(sharding):
    return None if sharding is None else getattr(sharding, "spec", type(sharding).__name__)


@pytest.mark.parametrize("case", list(CASES))
def test_concrete_init_keeps_the_parameters_sharding(case):
    params = sharded_params()
    ours, theirs = CASES[case](gf).init(params), CASES[case](optax).init(params)
    assert jax.tree.structure(ours).num_leaves == jax.tree.structure(theirs).num_leaves
    assert [spec(s) for s in shardings(ours)] == [spec(s) for s in shardings(theirs)]
    assert shardings(ours) == shardings(theirs)
    moments = [leaf for leaf in jax.tree.leaves(ours) if leaf.shape == (8, 4)]
    assert moments and all(leaf.sharding.spec == P("x", "y") for leaf in moments)


@pytest.mark.parametrize("case", ["adam", "adamw-schedule", "sgd-momentum"])
def test_abstract_init_keeps_the_parameters_sharding(case):
    params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), sharded_params())
    ours = jax.eval_shape(CASES[case](gf).init, params)
    theirs = jax.eval_shape(CASES[case](optax).init, params)
    assert [spec(s) for s in shardings(ours)] == [spec(s) for s in shardings(theirs)]
    assert any(spec(s) == P("x", "y") for s in shardings(ours))


def test_jitted_step_keeps_the_state_sharding():
    params = sharded_params()
    tx = gf.adam(1e-3)
    state = tx.init(params)
    step = jax.jit(lambda tx, g, s, p: tx.update(g, s, p))
    _, new_state = step(tx, params, state, params)
    assert new_state[0].mu["w"].sharding.spec == P("x", "y")
    assert new_state[0].nu["b"].sharding.spec == P("x")
