"""Line searches as chainable transforms: Armijo backtracking and the strong-Wolfe zoom.

Both scale the incoming direction u by a step size η found along the line w + η·u, so they sit at the
end of a chain whose earlier transforms produce a descent direction (``lbfgs``, ``sgd``). They read the
extra arguments of ``update``:

- ``value_fn`` (required): the objective, ``value_fn(params, **data)``; extra keyword arguments of
  ``update`` that ``value_fn`` names (a batch ``x=``, ``y=``) are passed on to it, as in optax;
- ``value`` and ``grad``: f(w) and ∇f(w) at the current ``params``. When absent they are computed
  (``grad`` from ``grad_fn(params)`` when given, else by differentiating ``value_fn``).

Each search is a ``lax.while_loop`` inside a ``jax.jit`` keyed on ``value_fn`` (and on ``grad_fn`` when
``grad`` is not given), so an eager ``update`` with the same ``value_fn`` reuses one compiled search
instead of tracing ``value_fn`` again at every step (optax issue #1171). Define ``value_fn`` once: a new
lambda or ``functools.partial`` at every step is a new key. The inputs of the search are held constant for
differentiation: ``jax.grad`` through a step treats the step size η as a constant, which is exact for
backtracking (η is piecewise constant in the parameters) and for a zoom that accepts its first guess,
and neglects ∂η/∂w when the zoom interpolates.

Scalars (values, slopes, step sizes) are computed in the parameters' dtype promoted to at least
float32; the scaled updates come back in each leaf's dtype.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradflow import tree
from gradflow.core import Chain, ScheduleState, Transform, pytree_dataclass, static_field
from gradflow.validation import (
    check_callable,
    check_choice,
    check_flag,
    check_integer,
    check_nonnegative,
    check_range,
)

__all__ = [
    "BacktrackingLinesearchInfo",
    "ScaleByBacktrackingLinesearch",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByZoomLinesearch",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "scale_by_backtracking_linesearch",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]

# Extra arguments that belong to the protocol and are never passed on to ``value_fn``.
RESERVED_EXTRA = frozenset({"value", "grad", "value_fn", "grad_fn"})
INITIAL_GUESS_STRATEGIES = ("one", "keep")


# --- helpers shared with lbfgs.py and minimize.py --------------------------------------------------------------------


def scalar_dtype(params: Any) -> jnp.dtype:
    """The dtype of scalar products over ``params``: the leaves' real dtype, promoted to at least float32."""
    leaves = [x for x in jax.tree.leaves(params) if x is not None]
    dtype = jnp.result_type(*leaves) if leaves else jnp.float32
    real = jnp.finfo(dtype).dtype  # the real dtype of a complex one
    return jnp.promote_types(real, jnp.float32)


def tree_vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """Σ over leaves of Re⟨a, b⟩, each leaf product accumulated in ``dtype`` (at least float32)."""
    parts = [
        jnp.real(jnp.vdot(x.astype(jnp.promote_types(x.dtype, dtype)), y.astype(jnp.promote_types(y.dtype, dtype))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    ]
    if len(parts) <= 1:
        return parts[0].astype(dtype) if parts else jnp.zeros((), dtype)
    return jnp.sum(jnp.stack([p.astype(dtype) for p in parts]))


def add_scale(params: Any, stepsize: jax.Array, updates: Any) -> Any:
    """``params + stepsize·updates`` computed exactly as ``apply_updates(params, stepsize·updates)``."""
    return tree.map(
        lambda p, u: (p + (stepsize * u).astype(u.dtype)).astype(p.dtype),
        params,
        updates,
        names=("params", "updates"),
    )


def scale_updates(stepsize: jax.Array, updates: Any) -> Any:
    """``stepsize·u`` leaf by leaf, in each leaf's dtype."""
    return tree.map(lambda u: (stepsize * u).astype(u.dtype), updates)


def value_fn_kwargs(value_fn: Callable, extra: dict[str, Any]) -> dict[str, Any]:
    """The extra arguments of ``update`` that ``value_fn`` takes by name (all of them if it takes ``**kwargs``)."""
    candidates = {k: v for k, v in extra.items() if k not in RESERVED_EXTRA}
    if not candidates:
        return {}
    try:
        parameters = list(inspect.signature(value_fn).parameters.values())
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return candidates
    named = {
        p.name
        for p in parameters[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {k: v for k, v in candidates.items() if k in named}


def require_extras(owner: str, params: Any, value_fn: Any) -> None:
    """Raise a ``ValueError`` naming ``params`` or ``value_fn`` when a line search cannot run without it."""
    if params is None:
        raise ValueError(
            f"{owner} needs params (the point the line starts from): call "
            "update(updates, state, params, value_fn=loss, value=loss(params), grad=grads)"
        )
    if value_fn is None:
        raise ValueError(
            f"{owner} needs the objective as the extra argument value_fn: call "
            "update(updates, state, params, value_fn=loss, value=loss(params), grad=grads) "
            "(value and grad are computed from value_fn when absent)"
        )
    check_callable(owner, "value_fn", value_fn)
    if not callable(value_fn):
        raise TypeError(f"{owner}: value_fn must be a function params -> scalar, got {type(value_fn).__name__}")


def _value_and_grad_at(params, value, grad, fn_kwargs, value_fn, grad_fn):
    """f(params) and ∇f(params): the given ones, or computed from ``value_fn`` / ``grad_fn``."""
    if value is None and grad is None:
        return jax.value_and_grad(value_fn)(params, **fn_kwargs)
    if value is None:
        value = value_fn(params, **fn_kwargs)
    if grad is None:
        if grad_fn is not None and not fn_kwargs:
            grad = grad_fn(params)
        else:
            grad = jax.grad(value_fn)(params, **fn_kwargs)
    return value, grad


def _check_value(owner: str, value: Any) -> None:
    if value is not None:
        tree.check_value(owner, value)


def _jit_search(search: Callable) -> Callable:
    """``search(ls, *args, value_fn=..., grad_fn=...)`` compiled once per (value_fn, grad_fn) and shapes.

    Falls back to the plain function when ``value_fn`` or ``grad_fn`` cannot be hashed (it is then traced
    at every eager call, as any closure would be).
    """
    compiled = jax.jit(search, static_argnames=("value_fn", "grad_fn"))

    @functools.wraps(search)
    def call(*args, value_fn, grad_fn):
        args = jax.tree.map(jax.lax.stop_gradient, args)  # the step size is a constant for differentiation
        try:
            hash((value_fn, grad_fn))
        except TypeError:
            return search(*args, value_fn=value_fn, grad_fn=grad_fn)
        return compiled(*args, value_fn=value_fn, grad_fn=grad_fn)

    return call


def _search_update(owner, search, ls, updates, state, params, value, grad, value_fn, grad_fn, extra):
    """The ``update`` of both line searches: run ``search`` from the state's step size, scale the direction."""
    require_extras(owner, params, value_fn)
    tree.check_real_leaves(owner, params, "params", "a line search compares real slopes")
    tree.map(lambda u, p: None, updates, params, names=("updates", "params"), frozen=False)  # the same leaves
    _check_value(owner, value)
    dtype = jnp.result_type(state.learning_rate)
    new_state = search(
        ls,
        params,
        updates,
        value,
        grad,
        state.learning_rate,
        value_fn_kwargs(value_fn, extra),
        value_fn=value_fn,
        grad_fn=grad_fn if grad is None else None,  # not a key of the compiled search when unused
    )
    new_state = jax.tree.map(lambda new, old: new.astype(jnp.result_type(old)), new_state, state)
    return scale_updates(new_state.learning_rate.astype(dtype), updates), new_state


def _cond_print(condition: jax.Array, message: str, **kwargs: Any) -> None:
    jax.lax.cond(condition, lambda: jax.debug.print(message, **kwargs), lambda: None)


def _nan_to_inf(error: jax.Array) -> jax.Array:
    """Keep only a violation (error > 0); a NaN error (value outside the domain) counts as +inf."""
    error = jnp.maximum(error, 0.0)
    return jnp.where(jnp.isnan(error), jnp.inf, error)


# --- backtracking (Armijo) -------------------------------------------------------------------------------------------


class BacktrackingLinesearchInfo(NamedTuple):
    """Diagnostics of the latest backtracking search.

    Attributes:
      num_linesearch_steps: int32 number of values of ``value_fn`` evaluated.
      decrease_error: how much the accepted step violates the Armijo condition (0 when it holds).

    Example:
      >>> import jax, jax.numpy as jnp, gradflow as gf
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = gf.chain(gf.sgd(1.0), gf.scale_by_backtracking_linesearch(15))
      >>> w = jnp.array([1.0, 2.0]); state = tx.init(w)
      >>> _, state = tx.update(jax.grad(f)(w), state, w, value_fn=f)
      >>> info = state[-1].info
      >>> int(info.num_linesearch_steps), float(info.decrease_error)  # η = 1 fails, η = 0.8 passes
      (2, 0.0)
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """State of :func:`scale_by_backtracking_linesearch`.

    Attributes:
      learning_rate: the step size η accepted at the latest update (1 at init).
      value: f(w + η·u) at the accepted step (+inf at init).
      grad: ∇f(w + η·u) with ``store_grad=True``, else ``None``.
      info: a :class:`BacktrackingLinesearchInfo`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.scale_by_backtracking_linesearch(15).init(jnp.zeros(2))
      >>> state.learning_rate, state.value, state.grad  # no gradient is kept unless store_grad=True
      (Array(1., dtype=float32), Array(inf, dtype=float32), None)
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: BacktrackingLinesearchInfo


def _backtracking_search(ls, params, updates, value, grad, learning_rate, fn_kwargs, *, value_fn, grad_fn):
    dtype = jnp.result_type(learning_rate)
    value, grad = _value_and_grad_at(params, value, grad, fn_kwargs, value_fn, grad_fn)
    value = jnp.asarray(value).astype(dtype)
    slope = tree_vdot(updates, grad, dtype)

    def decrease_error(stepsize, new_value):
        return _nan_to_inf(new_value - (1.0 + ls.rtol) * value - stepsize * ls.slope_rtol * slope)

    def cond(carry):
        _, _, error, steps = carry
        return ~(error <= ls.atol) & (steps <= ls.max_backtracking_steps)

    def body(carry):
        stepsize, _, _, steps = carry
        stepsize = jnp.where(steps > 0, ls.decrease_factor * stepsize, stepsize).astype(dtype)
        new_value = jnp.asarray(value_fn(add_scale(params, stepsize, updates), **fn_kwargs)).astype(dtype)
        return stepsize, new_value, decrease_error(stepsize, new_value).astype(dtype), steps + 1

    guess = jnp.minimum(ls.increase_factor * learning_rate, ls.max_learning_rate).astype(dtype)
    init = (guess, value, jnp.asarray(jnp.inf, dtype), jnp.zeros((), jnp.int32))
    stepsize, new_value, error, steps = jax.lax.while_loop(cond, body, init)
    # No step at all when every trial left the domain (inf or NaN values).
    stepsize = jnp.where(jnp.isinf(error), jnp.zeros_like(stepsize), stepsize)
    if ls.store_grad:
        new_value, new_grad = jax.value_and_grad(value_fn)(add_scale(params, stepsize, updates), **fn_kwargs)
        new_value, new_grad = jnp.asarray(new_value).astype(dtype), tree.cast_like(new_grad, params)
    else:
        new_value, new_grad = jnp.where(stepsize == 0, value, new_value), None
    if ls.verbose:
        _cond_print(
            error > ls.atol,
            "gradflow.scale_by_backtracking_linesearch: no step size with sufficient decrease after {steps} "
            "values (value {value}, slope {slope}, step size {stepsize}, decrease error {error})",
            steps=steps,
            value=value,
            slope=slope,
            stepsize=stepsize,
            error=error,
        )
    info = BacktrackingLinesearchInfo(steps, error)
    return ScaleByBacktrackingLinesearchState(stepsize, new_value, new_grad, info)


_backtracking = _jit_search(_backtracking_search)


@pytree_dataclass
class ScaleByBacktrackingLinesearch(Transform):
    """u ← η·u, η the first of guess·decrease_factorᵏ with f(w + η·u) ≤ (1 + rtol)·f(w) + η·c₁·⟨u, ∇f(w)⟩ + atol.

    c₁ is ``slope_rtol``. The guess is min(increase_factor · η_prev, max_learning_rate). Needs ``params`` and the extra
    argument ``value_fn`` (see :func:`scale_by_backtracking_linesearch`).

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_backtracking_linesearch(15, store_grad=True)
      >>> isinstance(tx, gf.ScaleByBacktrackingLinesearch), tx.max_backtracking_steps, tx.store_grad
      (True, 15, True)
    """

    slope_rtol: Any = 1e-4
    decrease_factor: Any = 0.8
    increase_factor: Any = 1.5
    max_learning_rate: Any = 1.0
    atol: Any = 0.0
    rtol: Any = 0.0
    max_backtracking_steps: int = static_field(default=15)
    store_grad: bool = static_field(default=False)
    verbose: bool = static_field(default=False)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        dtype = scalar_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=tree.zeros_like(params) if self.store_grad else None,
            info=BacktrackingLinesearchInfo(jnp.zeros([], jnp.int32), jnp.full([], jnp.inf, dtype)),
        )

    def update(
        self,
        updates: Any,
        state: Any,
        params: Any = None,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[..., Any] | None = None,
        grad_fn: Callable[[Any], Any] | None = None,
        **extra: Any,
    ) -> tuple[Any, Any]:
        return _search_update(
            "scale_by_backtracking_linesearch", _backtracking, self, updates, state, params, value, grad,
            value_fn, grad_fn, extra,
        )  # fmt: skip


def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: Any = 1e-4,
    decrease_factor: Any = 0.8,
    increase_factor: Any = 1.5,
    max_learning_rate: Any = 1.0,
    atol: Any = 0.0,
    rtol: Any = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> ScaleByBacktrackingLinesearch:
    r"""Backtracking line search for sufficient decrease (the Armijo condition).

    Starting from η₀ = min(increase_factor · η_prev, max_learning_rate) (η_prev: the step accepted at the
    previous update, 1 at the first), the step shrinks as η ← decrease_factor · η until

        f(w + η·u) ≤ (1 + rtol)·f(w) + η·slope_rtol·⟨u, ∇f(w)⟩ + atol,

    or ``max_backtracking_steps`` shrinks have been tried; the updates become η·u. If every value tried
    is inf or NaN, η = 0 (no step). u must be a descent direction (⟨u, ∇f(w)⟩ < 0), as the output of
    ``sgd`` or ``lbfgs`` is. Armijo (1966); Nocedal & Wright, *Numerical Optimization* (2006),
    Algorithm 3.1; the arguments and defaults are optax's.

    ``update`` needs ``params`` and the extra argument ``value_fn``; it uses ``value`` = f(w) and
    ``grad`` = ∇f(w) when given (else computes them; ``grad`` from ``grad_fn(params)`` when given).
    Keyword arguments of ``update`` that ``value_fn`` names are passed on to it (a data batch).

    Args:
      max_backtracking_steps: most shrinks of the step per update (static, ≥ 0).
      slope_rtol: c₁ ∈ [0, 1), the fraction of the linear decrease required.
      decrease_factor: factor ∈ (0, 1) applied to η at each shrink.
      increase_factor: factor ≥ 1 applied to the previous step to make the first guess (``math.inf``: start
        from ``max_learning_rate`` every time).
      max_learning_rate: largest step tried (> 0).
      atol: absolute slack ε ≥ 0 of the condition.
      rtol: relative slack δ ≥ 0 on f(w).
      store_grad: also compute ∇f at the accepted point and keep it (with the value) in the state, where
        :func:`value_and_grad_from_state` and :func:`gradflow.minimize` reuse it for the next step.
      verbose: print a line (``jax.debug.print``) when no step satisfies the condition.

    Returns:
      A :class:`ScaleByBacktrackingLinesearch` transform.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import scale_by_backtracking_linesearch
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = gradflow.chain(gradflow.sgd(1.0), scale_by_backtracking_linesearch(15))
      >>> w = jnp.array([1.0, 2.0, 3.0]); state = tx.init(w)
      >>> updates, state = tx.update(jax.grad(f)(w), state, w, value=f(w), value_fn=f)
      >>> round(float(state[-1].learning_rate), 6)  # η = 1 maps w to −w (no decrease); η = 0.8 passes
      0.8
    """
    owner = "scale_by_backtracking_linesearch"
    max_backtracking_steps = check_integer(owner, "max_backtracking_steps", max_backtracking_steps, low=0)
    check_range(owner, "slope_rtol", slope_rtol, 0.0, 1.0)
    check_range(owner, "decrease_factor", decrease_factor, 0.0, 1.0, low_open=True)
    check_range(owner, "increase_factor", increase_factor, 1.0, math.inf, high_open=False)
    check_range(owner, "max_learning_rate", max_learning_rate, 0.0, math.inf, low_open=True, high_open=False)
    check_nonnegative(owner, "atol", atol)
    check_nonnegative(owner, "rtol", rtol)
    return ScaleByBacktrackingLinesearch(
        slope_rtol,
        decrease_factor,
        increase_factor,
        max_learning_rate,
        atol,
        rtol,
        max_backtracking_steps,
        check_flag("scale_by_backtracking_linesearch", "store_grad", store_grad),
        check_flag("scale_by_backtracking_linesearch", "verbose", verbose),
    )


# --- zoom (strong Wolfe) ---------------------------------------------------------------------------------------------


class ZoomLinesearchInfo(NamedTuple):
    """Diagnostics of the latest zoom search.

    Attributes:
      num_linesearch_steps: int32 number of values and gradients of ``value_fn`` evaluated.
      decrease_error: violation of the sufficient decrease condition at the returned step (0: it holds).
      curvature_error: violation of the curvature condition at the returned step (0: it holds).

    Example:
      >>> import jax, jax.numpy as jnp, gradflow as gf
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = gf.chain(gf.sgd(0.5), gf.scale_by_zoom_linesearch(10))
      >>> w = jnp.array([1.0, 2.0]); state = tx.init(w)
      >>> _, state = tx.update(jax.grad(f)(w), state, w, value_fn=f)
      >>> info = state[-1].info  # the first trial η = 1 lands on the minimum: both conditions hold
      >>> int(info.num_linesearch_steps), float(info.decrease_error), float(info.curvature_error)
      (1, 0.0, 0.0)
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """State of :func:`scale_by_zoom_linesearch`.

    Attributes:
      learning_rate: the step size η returned by the latest search (1 at init).
      value: f(w + η·u) (+inf at init).
      grad: ∇f(w + η·u) (zeros at init); reused by :func:`value_and_grad_from_state`.
      info: a :class:`ZoomLinesearchInfo`.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> state = gf.scale_by_zoom_linesearch(10).init(jnp.zeros(2))
      >>> state.learning_rate, state.value, state.grad
      (Array(1., dtype=float32), Array(inf, dtype=float32), Array([0., 0.], dtype=float32))
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: Any
    info: ZoomLinesearchInfo


class _Zoom(NamedTuple):
    """The carry of the zoom loop: the latest trial, the bracket [low, high] and the best safe step."""

    count: jax.Array  # type: ignore[assignment]  # mypy: the field shadows tuple.count
    stepsize: jax.Array
    value: jax.Array
    grad: Any
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: Any


def _cubicmin(a, fa, fpa, b, fb, c, fc):
    """Minimiser of the cubic through (a, fa), (b, fb), (c, fc) with slope fpa at a (NaN when there is none)."""
    db, dc = b - a, c - a
    denom = (db * dc) ** 2 * (db - dc)
    rb, rc = fb - fa - fpa * db, fc - fa - fpa * dc
    big_a = (dc**2 * rb - db**2 * rc) / denom
    big_b = (-(dc**3) * rb + db**3 * rc) / denom
    radical = big_b * big_b - 3.0 * big_a * fpa
    return a + (-big_b + jnp.sqrt(radical)) / (3.0 * big_a)


def _quadmin(a, fa, fpa, b, fb):
    """Minimiser of the quadratic through (a, fa), (b, fb) with slope fpa at a (NaN or inf when there is none)."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * curvature)


def _zoom_search(ls, params, updates, value, grad, learning_rate, fn_kwargs, *, value_fn, grad_fn):
    dtype = jnp.result_type(learning_rate)
    value, grad = _value_and_grad_at(params, value, grad, fn_kwargs, value_fn, grad_fn)
    value_init = jnp.asarray(value).astype(dtype)
    grad_init = tree.cast_like(grad, params)
    slope_init = tree_vdot(updates, grad_init, dtype)
    scalar = lambda x: jnp.asarray(x).astype(dtype)
    if ls.initial_guess_strategy == "one":
        guess = scalar(1.0)
    else:  # "keep", restarting from 1 after a search that returned 0
        guess = jnp.where(learning_rate > 0, learning_rate, 1.0).astype(dtype)

    def decrease_error(stepsize, new_value, new_slope):
        error = new_value - value_init - ls.slope_rtol * stepsize * slope_init  # Armijo, N&W (3.7a)
        if ls.approx_dec_rtol is not None:
            # Approximate Wolfe condition of Hager & Zhang (2006), eq. (23), near the minimiser only.
            approx = new_slope - (2 * ls.slope_rtol - 1.0) * slope_init
            approx = jnp.maximum(approx, new_value - value_init - ls.approx_dec_rtol * jnp.abs(value_init))
            error = jnp.minimum(approx, error)
        return _nan_to_inf(error)

    def curvature_error(new_slope):
        return _nan_to_inf(jnp.abs(new_slope) - ls.curv_rtol * jnp.abs(slope_init))  # N&W (3.7b)

    def trial_stepsize(s):
        # Interval search (N&W Algorithm 3.5): the guess, then larger steps.
        extrapolated = jnp.where(s.count == 0, guess, ls.increase_factor * s.stepsize)
        max_reached = jnp.asarray(False)
        if ls.max_learning_rate is not None:
            max_reached = extrapolated >= ls.max_learning_rate
            extrapolated = jnp.minimum(extrapolated, ls.max_learning_rate)
        # Zoom (N&W Algorithm 3.6): cubic, else quadratic interpolation, else bisection, kept away from the ends.
        delta = jnp.abs(s.high - s.low)
        left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
        cubic = _cubicmin(s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref, s.value_cubic_ref)
        use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
        quad = _quadmin(s.low, s.value_low, s.slope_low, s.high, s.value_high)
        use_quad = ~use_cubic & (quad > left + 0.1 * delta) & (quad < right - 0.1 * delta)
        middle = jnp.where(use_cubic, cubic, jnp.where(use_quad, quad, (s.low + s.high) / 2.0))
        trial = jnp.where(s.interval_found, middle, extrapolated).astype(dtype)
        return trial, max_reached, delta <= ls.stepsize_precision

    def after_interval_search(s, trial, new, error, max_reached):
        new_value, new_grad, new_slope, dec = new
        keep_safe = dec <= ls.tol
        safe = tree.map(
            lambda a, b: jnp.where(keep_safe, a, b),
            (trial, new_value, new_grad),
            (s.safe_stepsize, s.safe_value, s.safe_grad),
        )
        set_high = (dec > 0.0) | ((new_value >= s.value) & (s.count > 0))
        set_low = (new_slope >= 0.0) & ~set_high
        previous, latest = (s.stepsize, s.value, s.slope), (trial, new_value, new_slope)
        low = tuple(jnp.where(set_low, a, b) for a, b in zip(latest, previous))
        high = tuple(jnp.where(set_low, a, b) for a, b in zip(previous, latest))
        interval_found = set_high | set_low | (error <= ls.tol)
        done = (error <= ls.tol) | (max_reached & ~interval_found)
        return interval_found, done, low, high, (low[0], low[1]), safe

    def after_zoom(s, trial, new, error, too_small):
        new_value, new_grad, new_slope, dec = new
        keep_safe = (dec <= ls.tol) & (new_value < s.safe_value)
        safe = tree.map(
            lambda a, b: jnp.where(keep_safe, a, b),
            (trial, new_value, new_grad),
            (s.safe_stepsize, s.safe_value, s.safe_grad),
        )
        done = error <= ls.tol
        set_high_to_trial = (dec > 0.0) | (new_value >= s.value_low)
        set_high_to_low = (new_slope * (s.high - s.low) >= 0.0) & ~set_high_to_trial
        low, high, latest = (
            (s.low, s.value_low, s.slope_low),
            (s.high, s.value_high, s.slope_high),
            (trial, new_value, new_slope),
        )
        new_high = tuple(
            jnp.where(set_high_to_trial, t, jnp.where(set_high_to_low, lo, hi)) for t, lo, hi in zip(latest, low, high)
        )
        new_low = tuple(jnp.where(set_high_to_trial, lo, t) for t, lo in zip(latest, low))
        changed_high = set_high_to_trial | set_high_to_low
        cubic_ref = (jnp.where(changed_high, s.high, s.low), jnp.where(changed_high, s.value_high, s.value_low))
        failed = (too_small & (safe[0] > 0.0)) & ~done
        return done, new_low, new_high, cubic_ref, safe, failed

    def body(s):
        trial, max_reached, too_small = trial_stepsize(s)
        new_value, new_grad = jax.value_and_grad(value_fn)(add_scale(params, trial, updates), **fn_kwargs)
        new_value, new_grad = scalar(new_value), tree.cast_like(new_grad, params)
        new_slope = tree_vdot(new_grad, updates, dtype)
        dec, curv = decrease_error(trial, new_value, new_slope), curvature_error(new_slope)
        error = jnp.maximum(dec, curv)
        new = (new_value, new_grad, new_slope, dec)
        found, done_s, low_s, high_s, ref_s, safe_s = after_interval_search(s, trial, new, error, max_reached)
        done_z, low_z, high_z, ref_z, safe_z, failed_z = after_zoom(s, trial, new, error, too_small)
        pick = lambda zoomed, searched: tree.map(lambda a, b: jnp.where(s.interval_found, a, b), zoomed, searched)
        done = pick(done_z, done_s)
        low, high, ref, safe = pick(low_z, low_s), pick(high_z, high_s), pick(ref_z, ref_s), pick(safe_z, safe_s)
        out_of_steps = s.count + 1 >= ls.max_linesearch_steps
        failed = (out_of_steps & ~done) | jnp.where(s.interval_found, failed_z, False)
        # On failure, fall back to the best step with sufficient decrease (or to no step if the last trial
        # left the domain); failing both, the last trial is taken as it is.
        fallback = failed & ((safe[0] > 0.0) | jnp.isinf(dec))
        stepsize, final_value, final_grad = tree.map(
            lambda a, b: jnp.where(fallback, a, b), safe, (trial, new_value, new_grad)
        )
        return _Zoom(
            count=s.count + 1,
            stepsize=scalar(stepsize),
            value=scalar(final_value),
            grad=final_grad,
            slope=new_slope,
            decrease_error=dec,
            curvature_error=curv,
            interval_found=jnp.where(s.interval_found, True, found),
            done=done,
            failed=failed,
            low=scalar(low[0]),
            value_low=scalar(low[1]),
            slope_low=scalar(low[2]),
            high=scalar(high[0]),
            value_high=scalar(high[1]),
            slope_high=scalar(high[2]),
            cubic_ref=scalar(ref[0]),
            value_cubic_ref=scalar(ref[1]),
            safe_stepsize=scalar(safe[0]),
            safe_value=scalar(safe[1]),
            safe_grad=safe[2],
        )

    zero, inf, false = scalar(0.0), scalar(jnp.inf), jnp.asarray(False)
    init = _Zoom(
        count=jnp.zeros([], jnp.int32),
        stepsize=zero,
        value=value_init,
        grad=grad_init,
        slope=slope_init,
        decrease_error=inf,
        curvature_error=inf,
        interval_found=false,
        done=false,
        failed=false,
        low=zero,
        value_low=value_init,
        slope_low=slope_init,
        high=zero,
        value_high=value_init,
        slope_high=slope_init,
        cubic_ref=zero,
        value_cubic_ref=value_init,
        safe_stepsize=zero,
        safe_value=value_init,
        safe_grad=grad_init,
    )
    final = jax.lax.while_loop(lambda s: ~(s.done | s.failed), body, init)
    if ls.verbose:
        _cond_print(
            final.failed,
            "gradflow.scale_by_zoom_linesearch: no step size satisfying both Wolfe conditions after {count} "
            "evaluations (value {value}, slope {slope}); returning step size {stepsize} (decrease error "
            "{dec}, curvature error {curv}). A slope >= 0 means the direction is not a descent direction.",
            count=final.count,
            value=value_init,
            slope=slope_init,
            stepsize=final.stepsize,
            dec=final.decrease_error,
            curv=final.curvature_error,
        )
    info = ZoomLinesearchInfo(final.count, final.decrease_error, final.curvature_error)
    return ScaleByZoomLinesearchState(final.stepsize, final.value, final.grad, info)


_zoom = _jit_search(_zoom_search)


@pytree_dataclass
class ScaleByZoomLinesearch(Transform):
    """u ← η·u for a step η satisfying the strong Wolfe conditions (see :func:`scale_by_zoom_linesearch`).

    Needs ``params`` and the extra argument ``value_fn``.

    Example:
      >>> import jax.numpy as jnp, gradflow as gf
      >>> tx = gf.scale_by_zoom_linesearch(10)
      >>> isinstance(tx, gf.ScaleByZoomLinesearch), tx.max_linesearch_steps, tx.initial_guess_strategy
      (True, 10, 'keep')
    """

    max_learning_rate: Any = None
    tol: Any = 0.0
    increase_factor: Any = 2.0
    slope_rtol: Any = 1e-4
    curv_rtol: Any = 0.9
    approx_dec_rtol: Any = 1e-6
    stepsize_precision: Any = 1e-5
    max_linesearch_steps: int = static_field(default=20)
    initial_guess_strategy: str = static_field(default="keep")
    verbose: bool = static_field(default=False)

    def init(self, params: Any) -> Any:
        tree.check_float_leaves(params)
        dtype = scalar_dtype(params)
        inf = jnp.full([], jnp.inf, dtype)
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=inf,
            grad=tree.zeros_like(params),
            info=ZoomLinesearchInfo(jnp.zeros([], jnp.int32), inf, inf),
        )

    def update(
        self,
        updates: Any,
        state: Any,
        params: Any = None,
        *,
        value: Any = None,
        grad: Any = None,
        value_fn: Callable[..., Any] | None = None,
        grad_fn: Callable[[Any], Any] | None = None,
        **extra: Any,
    ) -> tuple[Any, Any]:
        return _search_update(
            "scale_by_zoom_linesearch", _zoom, self, updates, state, params, value, grad,
            value_fn, grad_fn, extra,
        )  # fmt: skip


def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: Any = None,
    tol: Any = 0.0,
    increase_factor: Any = 2.0,
    slope_rtol: Any = 1e-4,
    curv_rtol: Any = 0.9,
    approx_dec_rtol: Any = 1e-6,
    stepsize_precision: Any = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> ScaleByZoomLinesearch:
    r"""Line search for a step satisfying the strong Wolfe conditions: bracketing, then zoom.

    Finds η with, for c₁ = ``slope_rtol``, c₂ = ``curv_rtol``, ε = ``tol`` and slope
    φ'(η) = ⟨∇f(w + η·u), u⟩,

        f(w + η·u) ≤ f(w) + c₁·η·φ'(0) + ε          (sufficient decrease)
        |φ'(η)| ≤ c₂·|φ'(0)| + ε                      (curvature)

    Phase 1 (Nocedal & Wright, *Numerical Optimization*, 2006, Algorithm 3.5) tries the initial guess,
    then η ← increase_factor·η, until a trial satisfies both conditions or brackets such a step. Phase 2
    (Algorithm 3.6, "zoom") shrinks the bracket with the minimiser of a cubic interpolant (of the two
    ends and the previous end), else of a quadratic one, else bisection, as scipy's
    ``line_search`` does. Near the minimiser, where f(w + η·u) ≤ f(w) + ``approx_dec_rtol``·|f(w)|, the
    decrease condition may instead be Hager & Zhang's (2006) approximate Wolfe condition
    φ'(η) ≤ (2c₁ − 1)·φ'(0), which resolves decreases below √ε_machine (``approx_dec_rtol=None``: Armijo
    only, the textbook and scipy rule). Every trial costs one value and gradient of ``value_fn``. When
    ``max_linesearch_steps`` trials fail, or the bracket is shorter than ``stepsize_precision``, the
    step with the least value among those with sufficient decrease is returned (no step if the last
    trial left the domain; failing both, the last trial). The arguments and defaults are optax's.

    ``update`` needs ``params`` and the extra argument ``value_fn``; it uses ``value`` and ``grad`` at
    ``params`` when given (else computes them). The value and gradient at the accepted step are kept in
    the state, where :func:`value_and_grad_from_state` and :func:`gradflow.minimize` reuse them.

    Args:
      max_linesearch_steps: most trials per update (static, ≥ 1).
      max_learning_rate: largest step tried (``None``: no bound).
      tol: slack ε ≥ 0 of both conditions.
      increase_factor: factor > 1 between the trials of phase 1.
      slope_rtol: c₁ ∈ [0, 1) of the decrease condition.
      curv_rtol: c₂ > 0 of the curvature condition (c₁ < c₂ < 1 for the theory; ``math.inf`` disables it).
      approx_dec_rtol: relative tolerance of the switch to the approximate condition (``None``: never).
      stepsize_precision: bracket length below which a step with sufficient decrease is accepted.
      initial_guess_strategy: ``"one"`` (first trial η = 1, for Newton-like directions such as L-BFGS'), or
        ``"keep"`` (the previous step; 1 after a step of 0).
      verbose: print a diagnosis (``jax.debug.print``) when the search fails.

    Returns:
      A :class:`ScaleByZoomLinesearch` transform.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import scale_by_zoom_linesearch
      >>> f = lambda w: jnp.sum((w - 1.0) ** 4)
      >>> tx = gradflow.chain(gradflow.sgd(1.0), scale_by_zoom_linesearch(20))
      >>> w = jnp.array([3.0, -1.0]); state = tx.init(w)
      >>> updates, state = tx.update(jax.grad(f)(w), state, w, value_fn=f)
      >>> bool(state[-1].info.decrease_error == 0) and bool(state[-1].info.curvature_error == 0)
      True
    """
    owner = "scale_by_zoom_linesearch"
    max_linesearch_steps = check_integer(owner, "max_linesearch_steps", max_linesearch_steps, low=1)
    if max_learning_rate is not None:
        check_range(owner, "max_learning_rate", max_learning_rate, 0.0, math.inf, low_open=True, high_open=False)
    check_nonnegative(owner, "tol", tol)
    check_range(owner, "increase_factor", increase_factor, 1.0, math.inf, low_open=True, high_open=False)
    check_range(owner, "slope_rtol", slope_rtol, 0.0, 1.0)
    check_range(owner, "curv_rtol", curv_rtol, 0.0, math.inf, low_open=True, high_open=False)
    if approx_dec_rtol is not None:
        check_nonnegative(owner, "approx_dec_rtol", approx_dec_rtol)
    check_nonnegative(owner, "stepsize_precision", stepsize_precision)
    check_choice(owner, "initial_guess_strategy", initial_guess_strategy, INITIAL_GUESS_STRATEGIES)
    try:
        if float(slope_rtol) >= float(curv_rtol):
            raise ValueError(f"{owner}: slope_rtol must be below curv_rtol, got {slope_rtol!r} >= {curv_rtol!r}")
    except (TypeError, jax.errors.ConcretizationTypeError):
        pass  # traced or array-valued: not checked
    return ScaleByZoomLinesearch(
        max_learning_rate,
        tol,
        increase_factor,
        slope_rtol,
        curv_rtol,
        approx_dec_rtol,
        stepsize_precision,
        max_linesearch_steps,
        initial_guess_strategy,
        check_flag("scale_by_zoom_linesearch", "verbose", verbose),
    )


# --- reuse of the line search's last evaluation ----------------------------------------------------------------------

_LINESEARCH_STATES = (ScaleByZoomLinesearchState, ScaleByBacktrackingLinesearchState)


def final_linesearch_state(state: Any) -> Any:
    """The state of a line search that ends the optimizer (the last of a chain's states), else ``None``."""
    while True:
        if isinstance(state, ScheduleState):
            state = state.inner
        elif isinstance(state, _LINESEARCH_STATES):
            return state if state.grad is not None else None
        elif isinstance(state, tuple) and not hasattr(state, "_fields") and state:
            state = state[-1]
        else:
            return None


def ends_with_linesearch(tx: Any) -> bool:
    """Whether ``tx`` (or the last transform of a chain) is a line search that keeps value and gradient."""
    while isinstance(tx, Chain) and tx.transforms:
        tx = tx.transforms[-1]
    return isinstance(tx, ScaleByZoomLinesearch) or (isinstance(tx, ScaleByBacktrackingLinesearch) and tx.store_grad)


def value_and_grad_from_state(value_fn: Callable[..., Any]) -> Callable[..., tuple[Any, Any]]:
    """Like ``jax.value_and_grad(value_fn)``, but reuses the value and gradient that a line search kept.

    A line search that ends the optimizer has already evaluated f and ∇f at the accepted point, which is
    where the parameters are after ``apply_updates``. The returned function, called as
    ``value_and_grad(params, *args, state=opt_state, **kwargs)``, returns them when the state holds a
    finite value (every step but the first) and computes them otherwise. Valid only when nothing after
    the line search changes the updates and the objective is deterministic (full batch); optax's name
    and use.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> from gradflow.second_order import lbfgs, value_and_grad_from_state
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = lbfgs(); w = jnp.array([1.0, 2.0]); state = tx.init(w)
      >>> value_and_grad = value_and_grad_from_state(f)
      >>> for _ in range(2):
      ...     value, grad = value_and_grad(w, state=state)
      ...     updates, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=f)
      ...     w = gradflow.apply_updates(w, updates)
      >>> float(f(w)) < 1e-10
      True
    """

    def value_and_grad(params, *args, state, **kwargs):
        found = final_linesearch_state(state)
        if found is None:
            raise ValueError(
                "value_and_grad_from_state: the optimizer state holds no line search value and gradient; the "
                "optimizer must end with scale_by_zoom_linesearch or scale_by_backtracking_linesearch(store_grad=True)"
            )
        try:
            hash(value_fn)
        except TypeError:
            return _reuse_or_compute(found.value, found.grad, params, args, kwargs, value_fn=value_fn)
        return _reuse_or_compute_jit(found.value, found.grad, params, args, kwargs, value_fn=value_fn)

    return value_and_grad


def _reuse_or_compute(value, grad, params, args, kwargs, *, value_fn):
    def compute():
        new_value, new_grad = jax.value_and_grad(value_fn)(params, *args, **kwargs)
        return jnp.asarray(new_value).astype(value.dtype), tree.cast_like(new_grad, grad)

    return jax.lax.cond(jnp.isfinite(value), lambda: (value, grad), compute)


_reuse_or_compute_jit = jax.jit(_reuse_or_compute, static_argnames="value_fn")
