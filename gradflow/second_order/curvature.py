"""Curvature without the matrix: Hessian- and Gauss-Newton-vector products, and the curvature step size.

Seed 001 expands the loss to second order around θ₀: f(θ₀ + δ) ≈ f(θ₀) + gᵀδ + ½·δᵀHδ. Everything
here reads H through products H·v only, the way Pearlmutter (1994, "Fast exact multiplication by the
Hessian") computes them: the directional derivative of the gradient, H·v = d/dε ∇f(θ + εv) at ε = 0,
exact (no finite difference) and at the cost of a few gradients. In JAX that is forward-over-reverse,
``jax.jvp(jax.grad(f), (θ,), (v,))``.

- :func:`hvp` and :func:`hvp_from_grad`: H·v on pytrees, from the loss or from its gradient function.
- :func:`gnvp`: the Gauss-Newton product Jᵀ(J·v) of a least-squares loss f = ½‖r(θ)‖² (Martens, 2010;
  Schraudolph, 2002), positive semi-definite even where H is not.
- :func:`hessian` and :func:`hessian_from_grad`: the dense matrix, for small problems (rows and columns in
  ``ravel_pytree`` order).
- :func:`scale_by_curvature_step` / :func:`curvature_step`: seed 001's step size along −g, the exact
  minimiser of the local quadratic model, η* = gᵀg / gᵀHg, with a cap for directions of non-positive
  curvature.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradflow import tree
from gradflow.core import Chain, Interval, Transform, chain, hyperparameter, name_arguments, pytree_dataclass
from gradflow.transforms.elementwise import scale_by_learning_rate
from gradflow.validation import check_callable, check_range

__all__ = [
    "CurvatureStepState",
    "ScaleByCurvatureStep",
    "compute_dtype",
    "curvature_step",
    "gnvp",
    "hessian",
    "hessian_from_grad",
    "hvp",
    "hvp_from_grad",
    "require_grad_fn",
    "scale_by_curvature_step",
    "tangent_like",
    "tree_vdot",
]


def compute_dtype(params: Any) -> jnp.dtype:
    """The dtype of curvature arithmetic for ``params``: their common dtype, at least float32."""
    leaves = [x for x in jax.tree.leaves(params) if x is not None]
    if not leaves:
        return jnp.dtype(jnp.float32)
    return jnp.dtype(jnp.promote_types(jnp.result_type(*leaves), jnp.float32))


def tree_vdot(a: Any, b: Any, dtype: Any = None) -> jax.Array:
    """Σ over all leaves of ⟨a, b⟩, accumulated in ``dtype`` (default: at least float32)."""
    dtype = dtype or compute_dtype(a)
    parts = [
        jnp.vdot(jnp.asarray(x).astype(dtype).ravel(), jnp.asarray(y).astype(dtype).ravel())
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ]
    return jnp.sum(jnp.stack(parts)) if parts else jnp.zeros([], dtype)


def tangent_like(v: Any, params: Any, name: str = "v") -> Any:
    """``v`` with the dtypes of ``params`` (a JVP tangent must match its primal); names ``name`` on a mismatch."""
    return tree.map(
        lambda x, p: jnp.asarray(x).astype(jnp.result_type(p)), v, params, names=(name, "params"), frozen=False
    )


def hvp_from_grad(grad_fn: Callable[[Any], Any], params: Any, v: Any) -> Any:
    """The Hessian-vector product H(params)·v from the gradient function (forward over ``grad_fn``).

    H·v = d/dε grad_fn(params + ε·v) at ε = 0 (Pearlmutter, 1994), one ``jax.jvp`` of ``grad_fn``.

    Args:
      grad_fn: ``params -> gradient`` (e.g. ``jax.grad(loss)``), traceable by JAX.
      params: the point θ, any pytree of floating-point arrays.
      v: the vector, a pytree shaped like ``params`` (cast to the dtypes of ``params``).

    Returns:
      H·v, a pytree shaped like the gradient.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.second_order import hvp_from_grad
      >>> grad_fn = jax.grad(lambda x: jnp.sum(x ** 3))   # H = diag(6x)
      >>> hvp_from_grad(grad_fn, jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]))
      Array([ 6., 12.], dtype=float32)
    """
    return jax.jvp(grad_fn, (params,), (tangent_like(v, params),))[1]


def hvp(fun: Callable[[Any], jax.Array], params: Any, v: Any) -> Any:
    """The exact Hessian-vector product ∇²f(params)·v, forward-over-reverse (Pearlmutter, 1994).

    H·v = d/dε ∇f(params + ε·v) at ε = 0 = ``jax.jvp(jax.grad(fun), (params,), (v,))[1]``: the cost of
    about two gradients, exact to rounding, and the n×n Hessian is never formed.

    Args:
      fun: the scalar loss ``params -> f``.
      params: the point θ, any pytree of floating-point arrays.
      v: the vector, a pytree shaped like ``params``.

    Returns:
      H·v, a pytree shaped like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.second_order.curvature import hvp
      >>> f = lambda p: p["x"] ** 2 * p["y"]        # H = [[2y, 2x], [2x, 0]]
      >>> out = hvp(f, {"x": 1.0, "y": 3.0}, {"x": 1.0, "y": 0.0})
      >>> float(out["x"]), float(out["y"])
      (6.0, 2.0)
    """
    return hvp_from_grad(jax.grad(fun), params, v)


def gnvp(residual_fn: Callable[[Any], Any], params: Any, v: Any) -> Any:
    """The Gauss-Newton-vector product Jᵀ(J·v) of the least-squares loss f(θ) = ½‖r(θ)‖².

    The Hessian of f is JᵀJ + Σᵢ rᵢ·∇²rᵢ; the Gauss-Newton matrix G = JᵀJ drops the second term, so
    it is positive semi-definite everywhere and equals H where the residuals vanish (or r is linear).
    J·v is one forward-mode ``jax.jvp`` of ``residual_fn`` and Jᵀ(·) one reverse-mode ``jax.vjp``
    (Schraudolph, 2002; Martens, 2010, "Deep learning via Hessian-free optimization", §4.2).

    Args:
      residual_fn: ``params -> r``, the residuals (an array or a pytree of arrays).
      params: the point θ, any pytree of floating-point arrays.
      v: the vector, a pytree shaped like ``params``.

    Returns:
      Jᵀ(J·v), a pytree shaped like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.second_order import gnvp
      >>> A = jnp.array([[1.0, 2.0], [0.0, 1.0], [1.0, 0.0]])
      >>> gnvp(lambda x: A @ x - 1.0, jnp.zeros(2), jnp.array([1.0, 0.0]))   # AᵀA·e₁
      Array([2., 2.], dtype=float32)
    """
    tangent = tangent_like(v, params)
    residuals, vjp = jax.vjp(residual_fn, params)
    _, jv = jax.jvp(residual_fn, (params,), (tangent,))
    jv = jax.tree.map(lambda t, r: jnp.asarray(t).astype(jnp.result_type(r)), jv, residuals)
    return vjp(jv)[0]


def hessian(fun: Callable[[Any], jax.Array], params: Any) -> jax.Array:
    """The dense n×n Hessian of ``fun`` over the flattened parameters, for small problems.

    Rows and columns follow ``jax.flatten_util.ravel_pytree(params)``: with
    ``flat, unravel = ravel_pytree(params)``, ``unravel(H @ ravel_pytree(v)[0])`` is :func:`hvp`. A
    single matrix (rather than ``jax.hessian``'s pytree of pytrees) is what a dense solve, an
    eigendecomposition or a comparison with NumPy needs. Computed as ``jax.jacfwd`` of the gradient:
    n Hessian-vector products, n² memory.

    Args:
      fun: the scalar loss ``params -> f``.
      params: the point θ, any pytree of floating-point arrays (n scalars in all).

    Returns:
      The (n, n) Hessian in the dtype of the flattened parameters.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.second_order import hessian
      >>> hessian(lambda p: p["x"] ** 2 * p["y"], {"x": 1.0, "y": 3.0})   # keys in sorted order
      Array([[6., 2.],
             [2., 0.]], dtype=float32)
    """
    return hessian_from_grad(jax.grad(fun), params)


def hessian_from_grad(grad_fn: Callable[[Any], Any], params: Any) -> jax.Array:
    """The dense Hessian over the flattened parameters from the gradient function: ``jax.jacfwd(grad_fn)``.

    Same layout as :func:`hessian` (rows and columns in ``ravel_pytree(params)`` order): column j is
    H·eⱼ = d/dε grad_fn(params + ε·eⱼ) at ε = 0 (Pearlmutter, 1994), n forward passes over ``grad_fn``.

    Args:
      grad_fn: ``params -> gradient`` (e.g. ``jax.grad(loss)``), traceable by JAX.
      params: the point θ, any pytree of floating-point arrays (n scalars in all).

    Returns:
      The (n, n) Hessian in the dtype of the flattened parameters.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow as gf
      >>> grad_fn = jax.grad(lambda x: jnp.sum(x ** 3))  # H = diag(6x)
      >>> gf.hessian_from_grad(grad_fn, jnp.array([1.0, 2.0]))
      Array([[ 6.,  0.],
             [ 0., 12.]], dtype=float32)
    """
    flat, unravel = ravel_pytree(params)
    return jax.jacfwd(lambda x: ravel_pytree(grad_fn(unravel(x)))[0].astype(flat.dtype))(flat)


def require_grad_fn(owner: str, grad_fn: Any, params: Any, what: str) -> None:
    """Raise the error that names the missing extra arguments ``grad_fn`` / ``params``."""
    if grad_fn is None or params is None:
        missing = " and ".join(name for name, x in (("params", params), ("grad_fn", grad_fn)) if x is None)
        raise ValueError(
            f"{owner} needs {missing}: call update(grads, state, params, grad_fn=jax.grad(loss)) so that "
            f"{what} can be computed at params"
        )
    check_callable(owner, "grad_fn", grad_fn)
    tree.check_real_leaves(owner, params, "params", "second-order steps assume a real loss landscape")


class CurvatureStepState(NamedTuple):
    """Diagnostics of the latest step (zeros before the first).

    Attributes:
      learning_rate: η, the step size that multiplied the updates.
      curvature: uᵀHu / uᵀu, the curvature of the loss along the updates (a Rayleigh quotient of H).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.scale_by_curvature_step().init(jnp.zeros(2))
      CurvatureStepState(learning_rate=Array(0., dtype=float32), curvature=Array(0., dtype=float32))
    """

    learning_rate: jax.Array
    curvature: jax.Array


@pytree_dataclass
class ScaleByCurvatureStep(Transform):
    """u ← η·u with η = clip(gᵀu / uᵀHu, 0, max_learning_rate), the line minimiser of the quadratic model.

    Where uᵀHu ≤ 0 the model is unbounded below along −u: η = max_learning_rate if gᵀu > 0, else 0.
    Needs ``params`` and the extra argument ``grad_fn``; g and H are taken at ``params``.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow as gf
      >>> loss = lambda p: jnp.sum(p ** 2)  # H = 2·I
      >>> tx = gf.scale_by_curvature_step()
      >>> params = jnp.array([1.0, -1.0])
      >>> _, state = tx.update(jax.grad(loss)(params), tx.init(params), params, grad_fn=jax.grad(loss))
      >>> state.learning_rate, state.curvature  # η = gᵀg/gᵀHg = 1/2; the curvature along g is 2
      (Array(0.5, dtype=float32), Array(2., dtype=float32))
    """

    max_learning_rate: Any = hyperparameter(Interval(0.0, math.inf, high_open=False), default=1.0)

    def init(self, params: Any) -> Any:
        zero = jnp.zeros([], compute_dtype(params))
        return CurvatureStepState(zero, zero)

    def update(
        self,
        updates: Any,
        state: Any,
        params: Any = None,
        grad_fn: Callable[[Any], Any] | None = None,
        **extra: Any,
    ) -> tuple[Any, Any]:
        require_grad_fn("scale_by_curvature_step", grad_fn, params, "the curvature gᵀHg along the updates")
        assert grad_fn is not None  # require_grad_fn raised otherwise (narrows the type for mypy)
        dtype = compute_dtype(params)
        gradient, curvature_product = jax.jvp(grad_fn, (params,), (tangent_like(updates, params, "updates"),))
        squared = tree_vdot(updates, updates, dtype)
        slope = tree_vdot(gradient, updates, dtype)  # gᵀu: −slope is the model's derivative along −u
        curvature = tree_vdot(updates, curvature_product, dtype)  # uᵀHu
        cap = jnp.asarray(self.max_learning_rate).astype(dtype)
        convex = curvature > 0
        minimiser = jnp.clip(slope / jnp.where(convex, curvature, 1), 0, cap)
        fallback = jnp.where(slope > 0, cap, jnp.zeros([], dtype))
        step = jnp.where(convex, minimiser, fallback)
        rayleigh = jnp.where(squared > 0, curvature / jnp.where(squared > 0, squared, 1), 0)

        def scaled(u):
            return (jnp.asarray(u).astype(dtype) * step).astype(jnp.result_type(u))

        new_state = CurvatureStepState(step.astype(state.learning_rate.dtype), rayleigh.astype(state.curvature.dtype))
        return tree.map(scaled, updates), new_state


def scale_by_curvature_step(max_learning_rate: Any = 1.0) -> ScaleByCurvatureStep:
    """Scale the updates by the exact line minimiser of the local quadratic model (seed 001).

    Along θ − η·u the second-order model is m(η) = f − η·gᵀu + ½η²·uᵀHu, whose minimiser is
    η* = gᵀu / uᵀHu. For u = g (the gradient) this is seed 001's η* = gᵀg / gᵀHg, the exact
    steepest-descent step on a quadratic (Nocedal & Wright, 2006, eq. 3.26). The model decreases iff
    0 < η < 2·η*: the seed writes the bound as η < gᵀg/gᵀHg, which is sufficient, but from
    −η·gᵀg + ½η²·gᵀHg < 0 the exact bound is twice that (steps in (η*, 2η*) overshoot the minimiser and
    still decrease the model).

    Fallbacks (no Python branching, every case a ``jnp.where``):

    - η = min(η*, max_learning_rate): the cap also bounds steps where the curvature is tiny;
    - uᵀHu ≤ 0 (a direction of zero or negative curvature, where the model is unbounded below):
      η = max_learning_rate when gᵀu > 0, and 0 otherwise;
    - gᵀu ≤ 0 (u is no descent direction): η = 0; a zero gradient gives a zero update, not NaN.

    g and H·u come from one ``jax.jvp`` of ``grad_fn`` at ``params`` (Pearlmutter, 1994), so the step
    costs about two gradients. The arithmetic runs in the parameters' dtype, at least float32; the
    updates keep their dtype. The result is a direction to descend along: chain a learning rate, or
    use :func:`curvature_step`.

    Args:
      max_learning_rate: the cap on η, finite and ≥ 0 (also the step along non-positive curvature).

    Returns:
      A :class:`ScaleByCurvatureStep`; its ``update`` needs ``params`` and ``grad_fn=``. Its state
      records the latest η and the curvature uᵀHu/uᵀu.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.second_order import scale_by_curvature_step
      >>> loss = lambda p: 0.5 * (p[0] ** 2 + 4 * p[1] ** 2)     # H = diag(1, 4)
      >>> params = jnp.array([1.0, 1.0]); g = jax.grad(loss)(params)   # g = (1, 4)
      >>> tx = scale_by_curvature_step(max_learning_rate=10.0)
      >>> updates, state = tx.update(g, tx.init(params), params, grad_fn=jax.grad(loss))
      >>> state.learning_rate   # gᵀg / gᵀHg = 17 / 65
      Array(0.26153848, dtype=float32)
    """
    check_range("scale_by_curvature_step", "max_learning_rate", max_learning_rate, 0.0, math.inf)
    return ScaleByCurvatureStep(max_learning_rate)


def curvature_step(scaling: Any = 1.0, max_learning_rate: Any = 1.0) -> Chain:
    """Gradient descent with seed 001's curvature step size: θ ← θ − scaling · η · g,

    η = min(gᵀg / gᵀHg, max_learning_rate), and η = max_learning_rate where gᵀHg ≤ 0 (see
    :func:`scale_by_curvature_step`). With ``scaling = 1`` every step is the exact line minimiser along
    −g of the local quadratic model (steepest descent with exact line search on a quadratic, Nocedal &
    Wright, 2006, §3.3); any ``scaling`` in (0, 2) still decreases the model. The update needs
    ``params`` and ``grad_fn=jax.grad(loss)``.

    Args:
      scaling: s ≥ 0 multiplying the step (a number or a schedule; the optimizer's learning rate).
      max_learning_rate: the cap on η, finite and ≥ 0.

    Returns:
      ``chain(scale_by_curvature_step(max_learning_rate), scale_by_learning_rate(scaling))``.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import curvature_step
      >>> loss = lambda p: 0.5 * jnp.sum(jnp.array([1.0, 10.0]) * p ** 2)
      >>> tx = curvature_step(max_learning_rate=10.0)
      >>> params = jnp.array([1.0, 1.0]); state = tx.init(params)
      >>> for _ in range(20):
      ...     updates, state = tx.update(jax.grad(loss)(params), state, params, grad_fn=jax.grad(loss))
      ...     params = gradflow.apply_updates(params, updates)
      >>> bool(loss(params) < 1e-5)
      True
    """
    check_range("curvature_step", "scaling", scaling, 0.0, math.inf)
    tx = chain(scale_by_curvature_step(max_learning_rate), scale_by_learning_rate(scaling))
    return name_arguments(tx, scaling="transforms.1:learning_rate")
