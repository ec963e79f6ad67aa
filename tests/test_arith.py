"""gradflow.arith: the per-leaf arithmetic that binds lax primitives gives jnp's operators' numbers, dtypes and
weak types, for every kind of operand a step passes (and hands the rest to jnp)."""

from __future__ import annotations

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradflow import arith

OPS = [(arith.add, operator.add), (arith.sub, operator.sub), (arith.mul, operator.mul), (arith.div, operator.truediv)]
LEAF = np.array([0.3, -1.7, 2.5e3, 1e-4])


def operands():
    """(name, a, b): the pairs a step's arithmetic meets, and some it must hand to jnp."""
    pairs = []
    for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
        leaf = jnp.asarray(LEAF, dtype)
        pairs += [
            (f"{jnp.dtype(dtype).name} leaf, leaf", leaf, jnp.asarray(LEAF[::-1], dtype)),
            (f"{jnp.dtype(dtype).name} 0-d, leaf", jnp.asarray(0.9, dtype), leaf),
            (f"{jnp.dtype(dtype).name} leaf, Python float", leaf, 0.1),
            (f"Python float, {jnp.dtype(dtype).name} leaf", 1e-8, leaf),
            (f"Python int, {jnp.dtype(dtype).name} leaf", 3, leaf),
        ]
    pairs += [
        ("float32 leaf, bfloat16 leaf (promotes)", jnp.asarray(LEAF, jnp.float32), jnp.asarray(LEAF, jnp.bfloat16)),
        ("weak 0-d, float32 leaf", jnp.asarray(0.999), jnp.asarray(LEAF, jnp.float32)),
        ("weak 0-d, Python float", jnp.asarray(0.5), 0.25),
        ("int32 leaf, int32 leaf", jnp.arange(1, 5), jnp.arange(2, 6)),
        ("int32 leaf, Python float", jnp.arange(4), 0.5),
        ("broadcast (4, 1), (4,)", jnp.asarray(LEAF, jnp.float32)[:, None], jnp.asarray(LEAF, jnp.float32)),
    ]
    return pairs


@pytest.mark.parametrize(("ours", "theirs"), OPS, ids=["add", "sub", "mul", "div"])
def test_binary_operations_equal_jnp_bit_for_bit(ours, theirs):
    for name, a, b in operands():
        expected, got = theirs(a, b), ours(a, b)
        assert (got.dtype, got.weak_type, got.shape) == (expected.dtype, expected.weak_type, expected.shape), name
        np.testing.assert_array_equal(np.asarray(got, np.float64), np.asarray(expected, np.float64), err_msg=name)


def test_a_traced_step_is_the_same_program():
    """Traced, a float32 step's arithmetic gives the jaxpr that jnp's operators give (theirs inlines a nested
    jit per operator, which is what costs tracing time: benchmarks/speed.py's trace rows)."""
    leaf = jnp.asarray(LEAF, jnp.float32)

    def step(add, mul, m, g, decay):
        return add(mul(decay, m), mul(0.1, g))

    ours = jax.make_jaxpr(lambda m, g, d: step(arith.add, arith.mul, m, g, d))(leaf, leaf, jnp.float32(0.9))
    theirs = jax.make_jaxpr(lambda m, g, d: step(operator.add, operator.mul, m, g, d))(leaf, leaf, jnp.float32(0.9))
    assert [e.primitive.name for e in ours.eqns] == [e.primitive.name for e in theirs.eqns] == ["mul", "mul", "add"]
    assert ours.out_avals == theirs.out_avals
    np.testing.assert_array_equal(
        jax.core.eval_jaxpr(ours.jaxpr, ours.consts, leaf, leaf, 0.9)[0],
        jax.core.eval_jaxpr(theirs.jaxpr, theirs.consts, leaf, leaf, 0.9)[0],
    )


def test_two_python_numbers_stay_python_arithmetic():
    """1 − b1 of a Python b1 is folded in double, as optax's closed-over programs do: not rounded to float32."""
    assert arith.sub(1, 0.9) == 1 - 0.9 and type(arith.sub(1, 0.9)) is float
    assert arith.mul(0.1, 3) == 0.1 * 3 and arith.div(1, 3) == 1 / 3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32])
def test_sqrt_and_square_equal_jnp(dtype):
    x = jnp.asarray([0.25, 4.0, 9.0, 2.0], dtype) if dtype != jnp.int32 else jnp.arange(4)
    for ours, theirs in ((arith.sqrt, jnp.sqrt), (arith.square, jnp.square)):
        got, expected = ours(x), theirs(x)
        assert (got.dtype, got.weak_type) == (expected.dtype, expected.weak_type)
        np.testing.assert_array_equal(np.asarray(got, np.float64), np.asarray(expected, np.float64))
