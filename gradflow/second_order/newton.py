"""Newton's method from Hessian-vector products: solve (H + damping·I)·d = g, then step along −d.

Seed 001 sets the derivative of the second-order model f(θ₀) + gᵀδ + ½·δᵀHδ to zero: Hδ = −g, the
Newton step. Forming and factorising H costs n² memory and n³ time; Hessian-free Newton (Martens, 2010,
"Deep learning via Hessian-free optimization") instead runs conjugate gradient on the system, which
touches H only through products H·v (Pearlmutter, 1994), each about the cost of two gradients.
``damping`` adds λ·I (Levenberg-Marquardt / Tikhonov damping): it makes the system positive definite
where H is only positive semi-definite, and shortens the step towards λ⁻¹·g as λ grows.

- :func:`conjugate_gradient`: CG on a flat vector with a fixed, static number of iterations (so it runs
  under ``jit``, ``vmap``, ``lax.scan`` and reverse-mode ``jax.grad``), stopping early on a small
  residual or on non-positive curvature.
- :func:`scale_by_newton`: the transform u ← (H + damping·I)⁻¹·u, by CG or by a dense solve.
- :func:`newton`: the optimizer θ ← θ − learning_rate·(H + damping·I)⁻¹·g.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gradflow import tree
from gradflow.core import NONNEGATIVE, Chain, Transform, chain, hyperparameter, pytree_dataclass, static_field
from gradflow.second_order.curvature import compute_dtype, hessian_from_grad, require_grad_fn
from gradflow.transforms.elementwise import scale_by_learning_rate
from gradflow.validation import check_choice, check_integer, check_nonnegative, check_range

__all__ = ["CGResult", "NewtonState", "ScaleByNewton", "conjugate_gradient", "newton", "scale_by_newton"]

SOLVERS = ("cg", "dense")


class CGResult(NamedTuple):
    """The result of :func:`conjugate_gradient`.

    Attributes:
      x: the approximate solution of A·x = b.
      iterations: int32 number of CG steps taken (each one product A·p, plus one more product when
        the iteration stopped on non-positive curvature).
      negative_curvature: whether the iteration stopped on a direction p with pᵀAp ≤ 0.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> result = gf.conjugate_gradient(lambda v: 2.0 * v, jnp.array([2.0, 4.0]))  # A = 2·I
      >>> result.x, int(result.iterations), bool(result.negative_curvature)
      (Array([1., 2.], dtype=float32), 1, False)
    """

    x: jax.Array
    iterations: jax.Array
    negative_curvature: jax.Array


def conjugate_gradient(
    matvec: Callable[[jax.Array], jax.Array],
    b: jax.Array,
    *,
    tolerance: Any = 1e-5,
    max_iterations: int = 20,
) -> CGResult:
    """Solve A·x = b by conjugate gradient from x₀ = 0 (Hestenes & Stiefel, 1952; Nocedal & Wright, Alg. 5.2).

    r₀ = p₀ = b; at each step α = rᵀr / pᵀAp, x ← x + α·p, r ← r − α·Ap, p ← r + (r'ᵀr'/rᵀr)·p. The
    iteration stops when ‖r‖ ≤ tolerance·‖b‖, after ``max_iterations`` steps, or at a direction of
    non-positive curvature pᵀAp ≤ 0 (A is not positive definite there). In that case it returns the
    current iterate, or b itself when it happens at the first step: Nocedal & Wright's line-search
    Newton-CG (Algorithm 7.1), which keeps the result a descent direction for a Newton step. For a
    symmetric positive definite A these are the iterates of ``scipy.sparse.linalg.cg(A, b,
    rtol=tolerance, atol=0, maxiter=max_iterations)`` (up to scipy's strict < in its stopping test).

    The loop always runs ``max_iterations`` times (``lax.fori_loop``, reverse-differentiable); once
    stopped, a ``lax.cond`` skips the product A·p (under ``vmap`` both branches run).

    Args:
      matvec: the linear map v ↦ A·v on arrays shaped like ``b``, A symmetric.
      b: the right-hand side, a 1-D floating-point array.
      tolerance: relative residual at which to stop, ≥ 0.
      max_iterations: static number of CG steps at most, ≥ 1.

    Returns:
      A :class:`CGResult`.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.second_order import conjugate_gradient
      >>> A = jnp.array([[4.0, 1.0], [1.0, 3.0]])
      >>> result = conjugate_gradient(lambda v: A @ v, jnp.array([1.0, 2.0]), tolerance=0.0, max_iterations=2)
      >>> result.x   # A⁻¹b = (1/11, 7/11)
      Array([0.09090909, 0.6363636 ], dtype=float32)
    """
    b = jnp.asarray(b)
    if b.ndim != 1:
        raise ValueError(f"conjugate_gradient: b must be a 1-D array, got shape {b.shape}")
    rr = jnp.vdot(b, b)
    threshold = jnp.square(jnp.asarray(tolerance).astype(rr.dtype)) * rr  # ‖r‖² ≤ tolerance²·‖b‖²

    def step(carry):
        x, r, p, rr, iterations, _, _ = carry
        ap = jnp.asarray(matvec(p)).astype(b.dtype)
        curvature = jnp.vdot(p, ap)
        positive = curvature > 0
        alpha = rr / jnp.where(positive, curvature, 1)
        x_next = x + alpha * p
        r_next = r - alpha * ap
        rr_next = jnp.vdot(r_next, r_next)
        beta = rr_next / jnp.where(rr > 0, rr, 1)
        p_next = r_next + beta * p
        x_stop = jnp.where(iterations == 0, b, x)  # non-positive curvature: the current iterate, or b
        return (
            jnp.where(positive, x_next, x_stop),
            jnp.where(positive, r_next, r),
            jnp.where(positive, p_next, p),
            jnp.where(positive, rr_next, rr),
            iterations + positive.astype(jnp.int32),
            ~positive | (rr_next <= threshold),
            ~positive,
        )

    def body(_, carry):
        return jax.lax.cond(carry[5], lambda c: c, step, carry)

    zero = jnp.zeros_like(b)
    init = (zero, b, b, rr, jnp.zeros([], jnp.int32), rr <= threshold, jnp.zeros([], bool))
    x, _, _, _, iterations, _, negative = jax.lax.fori_loop(0, max_iterations, body, init)
    return CGResult(x, iterations, negative)


class NewtonState(NamedTuple):
    """Diagnostics of the latest solve (zeros before the first).

    Attributes:
      cg_iterations: CG steps taken (0 for the dense solver).
      negative_curvature: whether CG met a direction of non-positive curvature of H + damping·I
        (always ``False`` for the dense solver).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> gf.scale_by_newton().init(jnp.zeros(2))
      NewtonState(cg_iterations=Array(0, dtype=int32), negative_curvature=Array(False, dtype=bool))
    """

    cg_iterations: jax.Array
    negative_curvature: jax.Array


@pytree_dataclass
class ScaleByNewton(Transform):
    """u ← (H + damping·I)⁻¹·u, H the Hessian at ``params`` (from ``grad_fn``), by CG or a dense solve.

    Needs ``params`` and the extra argument ``grad_fn``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_newton(damping=0.1, solver="dense")
      >>> isinstance(tx, gf.ScaleByNewton), tx.damping, tx.solver
      (True, 0.1, 'dense')
    """

    damping: Any = hyperparameter(NONNEGATIVE, default=0.0)
    tolerance: Any = hyperparameter(NONNEGATIVE, default=1e-5, outside="nan_updates")
    max_cg_iterations: int = static_field(default=20)
    solver: Literal["cg", "dense"] = static_field(default="cg")

    def init(self, params: Any) -> Any:
        return NewtonState(jnp.zeros([], jnp.int32), jnp.zeros([], bool))

    def update(
        self,
        updates: Any,
        state: Any,
        params: Any = None,
        grad_fn: Callable[[Any], Any] | None = None,
        **extra: Any,
    ) -> tuple[Any, Any]:
        require_grad_fn("scale_by_newton", grad_fn, params, "Hessian-vector products")
        assert grad_fn is not None  # require_grad_fn raised otherwise (narrows the type for mypy)
        tree.map(lambda u, p: None, updates, params, names=("updates", "params"), frozen=False)  # same leaves
        dtype = compute_dtype(params)
        flat_params, unravel_params = ravel_pytree(params)
        flat_updates, unravel_updates = ravel_pytree(updates)
        b = flat_updates.astype(dtype)
        damping = jnp.asarray(self.damping).astype(dtype)

        if self.solver == "dense":
            hessian = hessian_from_grad(grad_fn, params).astype(dtype)
            d = jnp.linalg.solve(hessian + damping * jnp.eye(b.size, dtype=dtype), b)
            new_state = NewtonState(jnp.zeros([], jnp.int32), jnp.zeros([], bool))
        else:
            _, linear = jax.linearize(grad_fn, params)  # the forward pass once, then one tangent pass per product

            def matvec(v):
                hv = ravel_pytree(linear(unravel_params(v.astype(flat_params.dtype))))[0]
                return hv.astype(dtype) + damping * v

            result = conjugate_gradient(matvec, b, tolerance=self.tolerance, max_iterations=self.max_cg_iterations)
            d = result.x
            new_state = NewtonState(result.iterations, result.negative_curvature)
        return unravel_updates(d.astype(flat_updates.dtype)), new_state


def _check_structure(owner: str, max_cg_iterations: Any, solver: Any) -> None:
    check_choice(owner, "solver", solver, SOLVERS)
    check_integer(owner, "max_cg_iterations", max_cg_iterations, low=1)


def scale_by_newton(
    damping: Any = 0.0,
    *,
    solver: Literal["cg", "dense"] = "cg",
    max_cg_iterations: int = 20,
    tolerance: Any = 1e-5,
) -> ScaleByNewton:
    """Precondition the updates by the inverse damped Hessian: u ← (H + damping·I)⁻¹·u.

    H = ∇²f(params) is read from the ``grad_fn`` extra argument; the incoming updates u (normally the
    gradient g at ``params``) are the right-hand side. With u = g the output d solves
    (H + λ·I)·d = g, the Newton direction of seed 001 (λ = 0) or its damped form (Levenberg-Marquardt;
    Martens, 2010, §4.1). Like every ``scale_by_*`` transform the output points uphill, along g: chain
    ``scale_by_learning_rate`` (or use :func:`newton`) to descend.

    ``solver="cg"`` is Hessian-free: :func:`conjugate_gradient` on Hessian-vector products (one
    ``jax.linearize`` of ``grad_fn``, then one tangent pass per product), at most ``max_cg_iterations``
    of them, stopping at ‖r‖ ≤ tolerance·‖u‖. Where H + λ·I has non-positive curvature along a CG
    direction, CG stops there and returns its current iterate (or u itself at the first step), so that
    −d stays a descent direction (truncated Newton, Nocedal & Wright, 2006, Algorithm 7.1).
    ``solver="dense"`` forms the n×n Hessian (``jax.jacfwd`` of ``grad_fn``) and solves exactly with
    ``jnp.linalg.solve``: for small n only, and H + λ·I must be nonsingular (positive definite for a
    descent direction). Arithmetic runs in the parameters' dtype, at least float32; the output has
    the dtype of the updates.

    Args:
      damping: λ ≥ 0 added to the diagonal of H (a number or a schedule).
      solver: ``"cg"`` (Hessian-free) or ``"dense"``.
      max_cg_iterations: static number of CG steps at most, ≥ 1 (ignored by the dense solver); n steps
        solve an n-dimensional positive definite system in exact arithmetic.
      tolerance: CG's relative residual, ≥ 0 (0: run all ``max_cg_iterations`` steps).

    Returns:
      A :class:`ScaleByNewton`; its ``update`` needs ``params`` and ``grad_fn=``. The state records the
      CG steps of the latest solve and whether it met non-positive curvature.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from gradflow.second_order import scale_by_newton
      >>> loss = lambda p: 0.5 * (2 * p[0] ** 2 + 8 * p[1] ** 2)   # H = diag(2, 8)
      >>> params = jnp.array([1.0, 1.0]); g = jax.grad(loss)(params)
      >>> tx = scale_by_newton(damping=0.0)
      >>> updates, state = tx.update(g, tx.init(params), params, grad_fn=jax.grad(loss))
      >>> jnp.round(updates, 5)   # H⁻¹g = params: one Newton step reaches the minimum of a quadratic
      Array([1., 1.], dtype=float32)
      >>> state.cg_iterations     # two distinct eigenvalues: CG is exact in two steps
      Array(2, dtype=int32)
    """
    check_nonnegative("scale_by_newton", "damping", damping)
    check_nonnegative("scale_by_newton", "tolerance", tolerance)
    _check_structure("scale_by_newton", max_cg_iterations, solver)
    return ScaleByNewton(damping, tolerance, int(max_cg_iterations), solver)


def newton(
    learning_rate: Any = 1.0,
    damping: Any = 0.0,
    *,
    solver: Literal["cg", "dense"] = "cg",
    max_cg_iterations: int = 20,
    tolerance: Any = 1e-5,
) -> Chain:
    """Newton's method (seed 001), Hessian-free by default: θ ← θ − learning_rate · (H + damping·I)⁻¹·g.

    From the second-order model f(θ + δ) ≈ f + gᵀδ + ½·δᵀHδ, whose minimiser solves H·δ = −g
    (Nocedal & Wright, 2006, §2.2 and §7.1). ``learning_rate = 1`` and ``damping = 0`` is the pure
    Newton step, which minimises a strongly convex quadratic in one step; a smaller ``learning_rate``
    or a positive ``damping`` (Levenberg-Marquardt, as in Martens's Hessian-free optimization, 2010)
    shortens it far from a minimum. H is read through Hessian-vector products from ``grad_fn``
    (Pearlmutter, 1994), so ``update`` must be called as
    ``tx.update(grads, state, params, grad_fn=jax.grad(loss))``. See :func:`scale_by_newton` for the
    solvers and for what happens at negative curvature.

    Args:
      learning_rate: η ≥ 0 (a number or a schedule), 1 for the full Newton step.
      damping: λ ≥ 0 added to the diagonal of H.
      solver: ``"cg"`` (Hessian-free) or ``"dense"`` (small problems).
      max_cg_iterations: static number of CG steps at most, ≥ 1.
      tolerance: CG's relative residual, ≥ 0.

    Returns:
      ``chain(scale_by_newton(damping, ...), scale_by_learning_rate(learning_rate))``.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import newton
      >>> A = jnp.array([[3.0, 1.0], [1.0, 2.0]]); b = jnp.array([1.0, -1.0])
      >>> loss = lambda x: 0.5 * x @ A @ x - b @ x
      >>> tx = newton(learning_rate=1.0, solver="dense")
      >>> params = jnp.zeros(2)
      >>> updates, _ = tx.update(jax.grad(loss)(params), tx.init(params), params, grad_fn=jax.grad(loss))
      >>> gradflow.apply_updates(params, updates)   # A⁻¹b = (0.6, −0.8)
      Array([ 0.6      , -0.8000001], dtype=float32)
    """
    check_range("newton", "learning_rate", learning_rate, 0.0, math.inf)
    return chain(
        scale_by_newton(damping, solver=solver, max_cg_iterations=max_cg_iterations, tolerance=tolerance),
        scale_by_learning_rate(learning_rate),
    )
