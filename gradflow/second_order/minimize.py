"""Minimise a function with any gradflow optimizer in one compiled ``lax.while_loop``."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import Transform, apply_updates, chain, checked_on_host
from gradflow.second_order.linesearch import ends_with_linesearch, final_linesearch_state, scalar_dtype, tree_vdot
from gradflow.validation import check_hyperparameters_before_tracing, check_range

__all__ = ["MinimizeResult", "minimize"]


class MinimizeResult(NamedTuple):
    """The outcome of :func:`minimize` (a pytree).

    Attributes:
      params: the last point.
      value: f(params).
      grad_norm: ‖∇f(params)‖, the Euclidean norm over all leaves.
      num_steps: int32 number of optimizer steps taken.
      converged: whether ``grad_norm < tol``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> result = gf.minimize(lambda w: jnp.sum((w - 1.0) ** 2), jnp.zeros(2), gf.sgd(0.5))
      >>> result.params, int(result.num_steps), bool(result.converged)  # one exact step
      (Array([1., 1.], dtype=float32), 1, True)
    """

    params: Any
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    converged: jax.Array


def _solve(tx, x0, max_steps, tol, *, fun, checked):
    """:func:`minimize`'s program; with ``checked``, the loop does not check the ranges of ``tx``'s
    hyperparameters again at every step (:func:`gradflow.core.checked_on_host`)."""
    with checked_on_host(tx, checked):
        return _solve_body(tx, x0, max_steps, tol, fun)


def _solve_body(tx, x0, max_steps, tol, fun):
    grad_fn = jax.grad(fun)
    value_and_grad = jax.value_and_grad(fun)
    dtype = scalar_dtype(x0)
    reuse = ends_with_linesearch(tx)

    def norm(grad):
        return jnp.sqrt(tree_vdot(grad, grad, dtype))

    def keep_going(carry):
        _, _, value, grad, steps = carry
        return (steps < max_steps) & ~(norm(grad) < tol) & jnp.isfinite(value)

    def step(carry):
        params, state, value, grad, steps = carry
        updates, state = tx.update(grad, state, params, value=value, grad=grad, value_fn=fun, grad_fn=grad_fn)
        params = apply_updates(params, updates)
        searched = final_linesearch_state(state) if reuse else None
        if searched is None:
            new_value, new_grad = value_and_grad(params)
        else:  # the line search evaluated f and ∇f at the point it accepted, which is params now
            stored = (searched.value.astype(value.dtype), tree.cast_like(searched.grad, grad))
            new_value, new_grad = jax.lax.cond(
                jnp.isfinite(searched.value), lambda: stored, lambda: value_and_grad(params)
            )
        return params, state, jnp.asarray(new_value).astype(value.dtype), tree.cast_like(new_grad, grad), steps + 1

    value, grad = value_and_grad(x0)
    carry = (x0, tx.init(x0), jnp.asarray(value), grad, jnp.zeros([], jnp.int32))
    params, _, value, grad, steps = jax.lax.while_loop(keep_going, step, carry)
    grad_norm = norm(grad)
    return MinimizeResult(params, value, grad_norm, steps, grad_norm < tol)


_solve_jit = jax.jit(_solve, static_argnames=("fun", "checked"))


def minimize(
    fun: Callable[[Any], jax.Array],
    x0: Any,
    tx: Any,
    *,
    max_steps: int = 1000,
    tol: float = 1e-6,
) -> MinimizeResult:
    r"""Minimise ``fun`` from ``x0`` with the optimizer ``tx``: the whole solve in one compiled while loop.

    Repeats ``updates, state = tx.update(g, state, w, value=f(w), grad=g, value_fn=fun, grad_fn=∇f)``,
    ``w ← apply_updates(w, updates)`` until ‖∇f(w)‖ < ``tol``, ``max_steps`` steps are taken, or f(w) is
    not finite. Every extra argument a gradflow transform may need is passed (a line search's
    ``value_fn``, the look-ahead ``grad_fn`` of ``nag``, the ``value`` of a Polyak step), so any gradflow
    optimizer works: ``lbfgs()``, ``sgd(0.1)``, ``adam(1e-2)``. When the optimizer ends with a line search
    that keeps the value and gradient at the accepted point (:func:`scale_by_zoom_linesearch`,
    :func:`scale_by_backtracking_linesearch` with ``store_grad=True``), they are reused instead of being
    computed again (deterministic ``fun`` only).

    The loop is compiled once per ``fun`` (by identity: define it once, not as a new lambda at each
    call), tree structure of ``x0`` and of the optimizer: new starting points, new numeric hyperparameters
    of ``tx`` (leaves), ``max_steps`` and ``tol`` reuse the compiled program. ``tx``'s hyperparameters are
    checked against their ranges before the loop is traced (an error names the argument), so the loop does
    not check them again at every step.

    Args:
      fun: the objective, ``params -> scalar``, traceable by JAX.
      x0: the starting point, any pytree of floating-point arrays.
      tx: a gradflow transform (an optax ``GradientTransformation`` is wrapped with :func:`gradflow.chain`).
      max_steps: most optimizer steps (≥ 0).
      tol: stop when the Euclidean norm of the gradient over all leaves is below ``tol`` (≥ 0).

    Returns:
      A :class:`MinimizeResult`: ``params``, ``value``, ``grad_norm``, ``num_steps``, ``converged``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import lbfgs, minimize
      >>> def rosenbrock(w):
      ...     return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2
      >>> result = minimize(rosenbrock, jnp.array([-1.2, 1.0]), lbfgs(), tol=1e-4)
      >>> bool(result.converged), [round(float(x), 3) for x in result.params]
      (True, [1.0, 1.0])
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, jax.Array)):
        raise TypeError(f"minimize: max_steps must be an int >= 0, got {max_steps!r}")
    check_range("minimize", "max_steps", max_steps, 0, math.inf)
    check_range("minimize", "tol", tol, 0.0, math.inf)
    if not callable(fun):
        raise TypeError(f"minimize: fun must be a function params -> scalar, got {type(fun).__name__}")
    if not isinstance(tx, Transform):
        tx = chain(tx)
    checked = check_hyperparameters_before_tracing(tx, "minimize")
    tree.check_float_leaves(x0, "x0")
    # NumPy scalars: jit takes them on its fast path (an eager jnp.asarray costs more than a small solve).
    steps_limit = np.asarray(max_steps, np.int32)
    tolerance = np.asarray(tol, scalar_dtype(x0))
    try:
        hash(fun)
    except TypeError:
        return jax.jit(functools.partial(_solve, fun=fun, checked=checked))(tx, x0, steps_limit, tolerance)
    return _solve_jit(tx, x0, steps_limit, tolerance, fun=fun, checked=checked)
