"""Arithmetic on one leaf that binds JAX's primitives directly: the per-leaf operations of a step.

Inside a trace, ``a * b`` on arrays calls ``jnp.multiply``, itself a small jitted function: each call costs a
nested trace, about 40–80 µs on this CPU, against about 15 µs for binding ``lax.mul``. A step over thousands
of leaves runs a few of these per leaf, so they are most of its tracing time. These functions bind the
primitive when jnp would only have bound it too (same dtype, or a Python number next to a floating array,
and shapes that need no broadcasting beyond a scalar): the same primitive, so the same numbers. Anything
else goes through ``jnp`` unchanged.

>>> x = jnp.array([1.0, 2.0])
>>> add(mul(0.5, x), x), div(x, jnp.float32(4.0)), sub(x, 1)
(Array([1.5, 3. ], dtype=float32), Array([0.25, 0.5 ], dtype=float32), Array([0., 1.], dtype=float32))
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["add", "div", "mul", "sqrt", "square", "sub"]

_FLOATING = frozenset(jnp.dtype(name) for name in ("bfloat16", "float16", "float32", "float64"))


def add(a: Any, b: Any) -> Any:
    """``a + b``.

    >>> add(jnp.ones(2, jnp.bfloat16), 0.5)
    Array([1.5, 1.5], dtype=bfloat16)
    """
    return _binary(lax.add, operator.add, a, b)


def sub(a: Any, b: Any) -> Any:
    """``a - b``.

    >>> sub(1.0, jnp.array([0.25]))
    Array([0.75], dtype=float32)
    """
    return _binary(lax.sub, operator.sub, a, b)


def mul(a: Any, b: Any) -> Any:
    """``a * b``.

    >>> mul(jnp.float32(3.0), jnp.arange(3.0))
    Array([0., 3., 6.], dtype=float32)
    """
    return _binary(lax.mul, operator.mul, a, b)


def div(a: Any, b: Any) -> Any:
    """``a / b`` (true division).

    >>> div(jnp.arange(1, 3), 2)  # integers: jnp's true division, in floating point
    Array([0.5, 1. ], dtype=float32)
    """
    return _binary(lax.div, operator.truediv, a, b)


def sqrt(x: Any) -> Any:
    """``jnp.sqrt(x)``.

    >>> sqrt(jnp.array([4.0, 9.0]))
    Array([2., 3.], dtype=float32)
    """
    return lax.sqrt(x) if isinstance(x, jax.Array) and x.dtype in _FLOATING else jnp.sqrt(x)


def square(x: Any) -> Any:
    """``jnp.square(x)``.

    >>> square(jnp.array([-3.0]))
    Array([9.], dtype=float32)
    """
    return lax.square(x) if isinstance(x, jax.Array) and x.dtype in _FLOATING else jnp.square(x)


def _binary(primitive: Callable, fallback: Callable, a: Any, b: Any) -> Any:
    a_array, b_array = isinstance(a, jax.Array), isinstance(b, jax.Array)
    if a_array and b_array:
        if a.dtype == b.dtype and a.dtype in _FLOATING and (a.shape == b.shape or not a.shape or not b.shape):
            return primitive(a, b)
    elif a_array or b_array:
        array, number = (a, b) if a_array else (b, a)
        if type(number) in (float, int) and array.dtype in _FLOATING and not array.weak_type:
            # jnp's rule for a Python number: rounded to the array's dtype
            number = np.asarray(number, array.dtype)
            return primitive(array, number) if a_array else primitive(number, array)
    return fallback(a, b)  # jnp's promotion, or Python's arithmetic for two Python numbers (in double)
