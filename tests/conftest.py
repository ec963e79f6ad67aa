"""Shared fixtures: a small pytree problem that every law and numeric test reuses."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# tests/multidevice needs 8 simulated devices, which must be set before jax starts; test_distributed.py
# runs it in a subprocess with XLA_FLAGS set, so the rest of the suite keeps one device.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    collect_ignore = ["multidevice"]


def make_params(dtype=jnp.float32, seed: int = 0):
    """A nested pytree with leaves of different shapes (and a tuple node)."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {"w": jnp.asarray(rng.normal(size=(3, 2)), dtype), "b": jnp.asarray(rng.normal(size=(2,)), dtype)},
        "scale": (jnp.asarray(rng.normal(size=()), dtype),),
    }


def loss(params):
    """A smooth non-quadratic loss over the tree of :func:`make_params`."""
    w, b = params["dense"]["w"], params["dense"]["b"]
    (s,) = params["scale"]
    x = jnp.arange(1.0, 4.0, dtype=w.dtype)
    y = jnp.tanh(x @ w + b)
    return jnp.sum((y - 0.5) ** 2) + 0.5 * s**2 + 0.1 * jnp.sum(w**4)


grad = jax.grad(loss)


@pytest.fixture
def params():
    return make_params()


def assert_signature_matches(ours, theirs, gradflow_only=frozenset()):
    """Same argument names, order, kinds and defaults as the optax function ``theirs``, so switching from
    optax is a rename of the import; gradflow's own additions (``gradflow_only``) must be keyword-only."""
    import inspect

    a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    extra = set(a) - set(b)
    assert extra == set(gradflow_only)
    assert all(a[k].kind is inspect.Parameter.KEYWORD_ONLY for k in extra)
    assert [k for k in a if k in b] == list(b)
    for key in b:
        assert a[key].kind == b[key].kind, key
        assert a[key].default == b[key].default, key
