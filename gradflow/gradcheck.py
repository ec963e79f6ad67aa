"""Check a gradient against central differences of the function, with the seed's diagnosis.

Seed 000 §4: the central difference (L(w + h·eᵢ) − L(w − h·eᵢ)) / 2h differs from ∂L/∂wᵢ by about
M·h². A component passes when |numeric − analytic| ≤ h (plus ``rtol``·|analytic|). When it does not,
h is shrunk tenfold, repeatedly: if the error falls about a hundredfold the first h was simply too
large (**truncation**, and the component passes at a smaller h); if it stays put, the gradient code
is wrong (**mismatch**); if it grows, the dtype cannot resolve the difference (**roundoff**).

Non-finite values are never called roundoff: a NaN or infinite loss at ``params`` is an error (nothing
can be checked), a NaN or infinite gradient component is a **nonfinite_gradient** finding at its leaf and
index, and a loss that is NaN or infinite at w ± h·eᵢ for every h tried is a **nonfinite_loss** finding.

Choice of h. The difference quotient carries a rounding error of about ε·|L|/h (ε: machine epsilon),
which must stay well below the tolerance h, so h ≳ 3·√(ε·|L|). For |L| ~ 1 that gives the seed's
1e-7 in float64 (√ε = 1.5e-8) but 1e-3 in float32 (√ε = 3.5e-4): the float64 step would leave
float32 with nothing but rounding noise. For a large loss (a sum over a million parameters) the
default h grows by the decades of √|L|.

Directions mode perturbs along random directions v with unit RMS per component (‖v‖ = √n), so each
parameter moves by about h, as in coordinates mode, and the signal 2h·⟨∇L, v⟩ grows with √n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from gradflow import tree
from gradflow.validation import (
    check_arity,
    check_callable,
    check_choice,
    check_integer,
    check_nonnegative,
    check_prng_key,
    check_range,
    check_scalar_output,
)

__all__ = ["Finding", "GradCheckError", "GradCheckReport", "central_differences", "check_grads", "default_step"]

Verdict = Literal["truncation", "mismatch", "roundoff", "nonfinite_gradient", "nonfinite_loss"]
_DEFAULT_STEP = {"float64": 1e-7, "float32": 1e-3, "float16": 5e-2, "bfloat16": 1e-1}
_COORDINATE_LIMIT = 10_000  # mode=None checks every coordinate up to this many parameters
_CHUNK_ELEMENTS = 1 << 22  # perturbed copies held at once: chunk size × n ≤ 4M elements


class GradCheckError(AssertionError):
    """Raised by :meth:`GradCheckReport.raise_if_failed`; its message is the report's table.

    >>> report = check_grads(lambda w: jnp.sum(w**3), jnp.array([2.0]), grad_fn=lambda w: 3 * w**2 + 1)
    >>> try:
    ...     report.raise_if_failed()
    ... except GradCheckError as error:
    ...     print(str(error).splitlines()[-1].split()[-2:])
    ['mismatch', '(FAILED)']
    """


@dataclasses.dataclass(frozen=True)
class Finding:
    """One component (or direction) that did not pass at the first step size.

    Attributes:
      path: key path of the parameter leaf, e.g. ``"['dense']['w']"`` (``""`` when params is one
        array, or for a direction that involves the whole tree); in directions mode, the leaves
        blamed for a mismatching direction, one finding each.
      index: index inside the leaf (coordinates mode), or ``None`` (directions mode).
      direction: number of the random direction (directions mode), else ``None``.
      analytic, numeric: the gradient value and its central-difference estimate at the final h.
      error: |numeric − analytic| at the final h.
      h: the last step size tried.
      verdict: ``"truncation"`` (passed after shrinking h), ``"mismatch"`` (the error does not fall
        like h²: the gradient is wrong), ``"roundoff"`` (the error grows as h shrinks),
        ``"nonfinite_gradient"`` (the gradient component is NaN or infinite) or ``"nonfinite_loss"``
        (``fun`` is NaN or infinite at w ± h along it, at every h tried; ``numeric`` is then ``inf``).
      passed: whether the component passed at its final h.
      history: ``((h, error), ...)`` for every step size tried.

    Example: a gradient that is off by 1 in its second component is a mismatch at ``['w']``, index 1.

    >>> wrong = lambda p: {"w": 3 * p["w"] ** 2 + jnp.array([0.0, 1.0])}
    >>> finding = check_grads(lambda p: jnp.sum(p["w"] ** 3), {"w": jnp.array([1.0, 2.0])}, grad_fn=wrong).findings[0]
    >>> finding.path, finding.index, finding.verdict, finding.passed
    ("['w']", (1,), 'mismatch', False)
    """

    path: str
    index: tuple[int, ...] | None
    direction: int | None
    analytic: float
    numeric: float
    error: float
    h: float
    verdict: Verdict
    passed: bool
    history: tuple[tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class GradCheckReport:
    """The result of :func:`check_grads`.

    Attributes:
      mode: ``"coordinates"`` or ``"directions"`` (the one actually used).
      h: the first step size.
      dtype: dtype of the check (the least precise parameter dtype).
      checked: number of components (or directions) compared.
      findings: one :class:`Finding` per component that did not pass at the first h.

    >>> report = check_grads(lambda w: jnp.sum(jnp.sin(w)), jnp.array([0.5, 1.0]))
    >>> report.ok, report.mode, report.checked, report.dtype
    (True, 'coordinates', 2, 'float32')
    """

    mode: str
    h: float
    dtype: str
    checked: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True when every component passes at its final step size."""
        return all(f.passed for f in self.findings)

    def __str__(self) -> str:
        unit = "components" if self.mode == "coordinates" else "random directions"
        status = "OK" if self.ok else "FAILED"
        lines = [
            f"check_grads: {self.checked} {unit} checked against central differences "
            f"(mode={self.mode}, h={self.h:g}, {self.dtype}): {len(self.findings)} finding(s), {status}"
        ]
        if self.findings:
            lines.append(f"{'path':<24} {'index':<10} {'analytic':>12} {'numeric':>12} {'error':>10} {'h':>8}  verdict")
            for f in self.findings:
                where = str(f.index) if f.index is not None else f"dir {f.direction}"
                path = "params" + f.path
                lines.append(
                    f"{path:<24} {where:<10} {f.analytic:>12.5g} {f.numeric:>12.5g} {f.error:>10.3g} "
                    f"{f.h:>8.0e}  {f.verdict}{'' if f.passed else ' (FAILED)'}"
                )
        return "\n".join(lines)

    def raise_if_failed(self) -> GradCheckReport:
        """Raise :class:`GradCheckError` with the report's table unless :attr:`ok`; return self."""
        if not self.ok:
            raise GradCheckError(str(self))
        return self


def default_step(dtype: Any, loss_scale: float = 1.0) -> float:
    """The first step size for ``dtype`` and a loss of magnitude ``loss_scale`` (see the module docstring).

    The table value (1e-7 for float64, 1e-3 for float32: about 3·√ε), times the power of ten below
    √|L| when |L| > 1, so that the rounding error ε·|L|/h stays below h.
    """
    name = jnp.dtype(dtype).name
    if name not in _DEFAULT_STEP:
        raise TypeError(f"check_grads: no default step size for dtype {name}; pass h explicitly")
    decades = math.floor(math.log10(math.sqrt(max(1.0, abs(loss_scale)))))
    return float(f"{_DEFAULT_STEP[name] * 10**decades:.0e}")


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where each flat coordinate lives: leaf paths, shapes and offsets."""

    paths: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]

    @classmethod
    def of(cls, params: Any) -> _Layout:
        flat, _ = jax.tree_util.tree_flatten_with_path(params)
        paths = tuple(jax.tree_util.keystr(p) for p, _ in flat)
        shapes = tuple(tuple(jnp.shape(x)) for _, x in flat)
        offsets = tuple(np.cumsum([0] + [math.prod(s) for s in shapes])[:-1].tolist())
        return cls(paths, shapes, offsets)

    def locate(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        leaf = int(np.searchsorted(self.offsets, flat_index, side="right") - 1)
        inner = np.unravel_index(flat_index - self.offsets[leaf], self.shapes[leaf]) if self.shapes[leaf] else ()
        return self.paths[leaf], tuple(int(i) for i in inner)

    def leaf_slices(self) -> list[tuple[str, slice]]:
        return [(p, slice(o, o + math.prod(s))) for p, s, o in zip(self.paths, self.shapes, self.offsets)]


def _validate(fun: Callable, params: Any) -> jnp.dtype:
    check_callable("check_grads", "fun", fun)
    check_arity("check_grads", "fun", fun, "fun(params)", 1)
    tree.check_float_leaves(params)
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("check_grads: params has no array leaves to check")
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if jnp.iscomplexobj(leaf):
            raise TypeError(f"check_grads: params{jax.tree_util.keystr(path)} is complex; only real params are checked")
    check_scalar_output("check_grads", "fun", fun, params)
    return max((jnp.result_type(x) for x in leaves), key=lambda d: jnp.finfo(d).eps)


def _analytic(fun: Callable, params: Any, grad_fn: Callable | None) -> jax.Array:
    grads = (grad_fn or jax.grad(fun))(params)
    grads = tree.map(
        lambda g, p: jnp.asarray(g, jnp.result_type(p)), grads, params, names=("grad_fn(params)", "params")
    )
    return ravel_pytree(grads)[0]


def central_differences(fun: Callable, params: Any, h: float | Sequence[float], indices: Any = None) -> np.ndarray:
    """(L(w + h·eᵢ) − L(w − h·eᵢ)) / (2h) for the flat coordinates ``indices`` (default: all).

    ``h`` may be a sequence of step sizes (one row of the result each); all of them share one
    compiled, vmapped evaluation. The denominator is the step actually taken, (wᵢ + h) − (wᵢ − h) in
    the parameter dtype, which removes the rounding of wᵢ ± h from the quotient.

    >>> central_differences(lambda w: jnp.sum(w**2), jnp.array([1.0, 2.0]), h=[1e-1, 1e-2]).round(4)
    array([[2., 4.],
           [2., 4.]])
    """
    x, unravel = ravel_pytree(params)
    differences = _Differences(lambda v: fun(unravel(v)), x)
    indices = np.arange(x.size) if indices is None else np.asarray(indices, np.int64)
    steps = np.asarray(h, np.float64)
    if steps.ndim == 0:
        return differences.coordinates(indices, float(steps))
    return np.stack([differences.coordinates(indices, float(step)) for step in steps])


class _Differences:
    """Central differences of ``flat_fun`` around ``x``, compiled once and evaluated in vmapped chunks."""

    def __init__(self, flat_fun: Callable[[jax.Array], jax.Array], x: jax.Array, mask: jax.Array | None = None):
        self.x = x
        self.mask = jnp.ones_like(x) if mask is None else mask  # the coordinates random directions move
        self.chunk = int(max(1, _CHUNK_ELEMENTS // max(1, x.size)))

        def quotient(upper, lower, step):
            """The difference quotient; ``inf`` marks a NaN or infinite loss (0/0 stays NaN: roundoff)."""
            finite = jnp.isfinite(upper) & jnp.isfinite(lower)
            return jnp.where(finite, (upper - lower) / step, jnp.inf)

        def along_coordinate(x, i, h):
            plus, minus = x.at[i].add(h), x.at[i].add(-h)
            return quotient(flat_fun(plus), flat_fun(minus), plus[i] - minus[i])

        def along_direction(x, key, h, mask):
            v = jax.random.normal(key, x.shape, x.dtype) * mask
            v = v * jnp.sqrt(jnp.sum(mask)) / jnp.linalg.norm(v)  # unit RMS per perturbed component
            return quotient(flat_fun(x + h * v), flat_fun(x - h * v), 2 * h), v

        self._coordinates = jax.jit(jax.vmap(along_coordinate, in_axes=(None, 0, None)))
        self._directions = jax.jit(
            lambda x, keys, h, mask: jax.lax.map(lambda key: along_direction(x, key, h, mask), keys)
        )

    def coordinates(self, indices: np.ndarray, h: float) -> np.ndarray:
        chunk = min(self.chunk, max(1, len(indices)))
        out = []
        for start in range(0, len(indices), chunk):
            idx = indices[start : start + chunk]
            padded = np.pad(idx, (0, chunk - len(idx)))
            out.append(np.asarray(self._coordinates(self.x, padded, jnp.asarray(h, self.x.dtype)))[: len(idx)])
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def directions(self, keys: jax.Array, h: float, mask: jax.Array | None = None) -> tuple[np.ndarray, jax.Array]:
        """Quotients along the random directions drawn from ``keys`` (restricted to ``mask``), and the directions."""
        mask = self.mask if mask is None else mask * self.mask
        q, v = self._directions(self.x, keys, jnp.asarray(h, self.x.dtype), mask)
        return np.asarray(q, np.float64), v


def _refine(
    evaluate: Callable[[np.ndarray, float], np.ndarray],
    analytic: np.ndarray,
    numeric: np.ndarray,
    h: float,
    tolerance: Callable[[float, np.ndarray], np.ndarray],
    roundoff: Callable[[float], float],
    max_refinements: int,
) -> list[dict]:
    """The seed's refinement for the failing entries; returns one record per failing entry.

    ``roundoff(h)`` estimates the rounding error of the difference quotient, about ε·|L|/h: an error
    within a few times of it (or one that grows when h shrinks) is the dtype's resolution, not a bug.
    """
    error = np.abs(numeric - analytic)
    failing = np.flatnonzero(~(error <= tolerance(h, analytic)))
    records: list[dict[str, Any]] = [
        {"i": int(i), "history": [(h, float(error[i]))], "numeric": float(numeric[i]), "verdict": None, "passed": False}
        for i in failing
    ]
    active = list(range(len(records)))
    step = h
    for _ in range(max_refinements):
        if not active:
            break
        step /= 10
        rows = np.array([records[a]["i"] for a in active])
        new_numeric = evaluate(rows, step)
        new_error = np.abs(new_numeric - analytic[rows])
        passed = new_error <= tolerance(step, analytic[rows])
        still = []
        for a, num, err, ok in zip(active, new_numeric, new_error, passed):
            record = records[a]
            previous = record["history"][-1][1]
            record["history"].append((step, float(err)))
            record["numeric"] = float(num)
            if ok:
                record["verdict"], record["passed"] = "truncation", True
                continue
            if np.isinf(num) or np.isinf(previous):  # the loss is not finite at w ± h (yet): shrink h
                still.append(a)
                continue
            ratio = previous / err if err > 0 else np.inf
            if np.isnan(err):  # w ± h rounds back to w: the quotient is 0/0
                record["verdict"] = "roundoff"
            elif ratio < 0.5 or err <= 4 * roundoff(step):
                record["verdict"] = "roundoff"
            elif ratio < 10:
                record["verdict"] = "mismatch"
            else:
                still.append(a)
        active = still
    for a in active:  # still falling like h² but never inside the tolerance, or a loss never finite
        records[a]["verdict"] = "nonfinite_loss" if np.isinf(records[a]["numeric"]) else "truncation"
    return records


def check_grads(
    fun: Callable[[Any], jax.Array],
    params: Any,
    *,
    grad_fn: Callable[[Any], Any] | None = None,
    h: float | None = None,
    mode: Literal["coordinates", "directions"] | None = None,
    num_directions: int = 16,
    key: jax.Array | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    max_refinements: int = 4,
) -> GradCheckReport:
    """Compare a gradient with central differences of ``fun``, and diagnose what does not match.

    A component passes when |numeric − analytic| ≤ atol + rtol·|analytic|, with ``atol`` defaulting to
    the current h (the seed's test) and ``rtol`` to 10·√ε of the dtype. Failing components are
    re-evaluated at h/10, h/100, ... and classified (see :class:`Finding`).

    Args:
      fun: ``params -> scalar`` loss, traceable by JAX.
      params: any pytree of real floating-point arrays.
      grad_fn: the gradient to check (default ``jax.grad(fun)``), e.g. a hand-written one.
      h: first step size (default: :func:`default_step` of the least precise leaf dtype and |fun(params)|).
      mode: ``"coordinates"`` checks every component (2n evaluations of ``fun``, in vmapped chunks);
        ``"directions"`` checks ⟨∇L, v⟩ along ``num_directions`` random directions v and, for a
        failing direction, names the leaves responsible. Default: coordinates up to 10,000 parameters.
      num_directions: directions checked in ``"directions"`` mode.
      key: PRNG key for the directions (default ``jax.random.key(0)``).
      rtol, atol: tolerances (see above).
      max_refinements: how many times h is shrunk tenfold for a failing component.

    Returns:
      A :class:`GradCheckReport`; ``print`` it for a table, ``.raise_if_failed()`` in tests.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> double_well = lambda x: jnp.sum(x * (x - 1) * (x - 3) ** 2 + 1.62276)   # seed 004
      >>> derivative = lambda x: 4 * x**3 - 21 * x**2 + 30 * x - 9
      >>> gradflow.check_grads(double_well, jnp.array([0.5, 2.0]), grad_fn=derivative).ok
      True
      >>> wrong = lambda x: 4 * x**3 - 21 * x**2 + 31 * x - 9
      >>> gradflow.check_grads(double_well, jnp.array([0.5, 2.0]), grad_fn=wrong).findings[0].verdict
      'mismatch'
    """
    dtype = _validate(fun, params)
    _check_options(grad_fn, h, mode, num_directions, key, rtol, atol, max_refinements)
    scale = abs(float(fun(params)))
    if not math.isfinite(scale):
        raise ValueError(f"check_grads: fun(params) is {float(fun(params))}; the loss must be finite at params "
                         "for its gradient to be checked")  # fmt: skip
    h = float(h if h is not None else default_step(dtype, scale))
    rtol = float(rtol if rtol is not None else 10 * math.sqrt(jnp.finfo(dtype).eps))

    def tolerance(step: float, analytic: np.ndarray) -> np.ndarray:
        return (step if atol is None else atol) + rtol * np.abs(analytic)

    def roundoff(step: float) -> float:
        return 2 * float(jnp.finfo(dtype).eps) * scale / step

    x, unravel = ravel_pytree(params)
    gradient = np.asarray(_analytic(fun, params, grad_fn), np.float64)
    finite = np.isfinite(gradient)
    differences = _Differences(lambda v: fun(unravel(v)), x, jnp.asarray(finite, x.dtype))
    layout = _Layout.of(params)
    mode = mode or ("coordinates" if x.size <= _COORDINATE_LIMIT else "directions")
    findings = _nonfinite_gradient(differences, gradient, layout, h)
    gradient = np.where(finite, gradient, 0.0)

    if mode == "coordinates":
        indices = np.flatnonzero(finite)
        evaluate: Callable[[np.ndarray, float], np.ndarray] = lambda rows, step: differences.coordinates(
            indices[rows], step
        )
        records = _refine(evaluate, gradient[indices], evaluate(np.arange(len(indices)), h), h, tolerance, roundoff,
                          max_refinements)  # fmt: skip
        for r in records:
            path, index = layout.locate(int(indices[r["i"]]))
            findings.append(_finding(r, path, index, None, gradient[indices[r["i"]]]))
        return GradCheckReport(mode, h, jnp.dtype(dtype).name, int(x.size), tuple(findings))

    keys = jax.random.split(key if key is not None else jax.random.key(0), num_directions)
    numeric, directions = differences.directions(keys, h)
    analytic = np.asarray(directions @ jnp.asarray(gradient, x.dtype), np.float64)
    evaluate = lambda rows, step: differences.directions(keys[rows], step)[0]
    check: dict[str, Any] = {"h": h, "tolerance": tolerance, "roundoff": roundoff, "max_refinements": max_refinements}
    records = _refine(evaluate, analytic, numeric, **check)
    for r in records:
        blame = r["verdict"] == "mismatch"
        paths = _blame(differences, keys[r["i"]], gradient, layout, check) if blame else [""]
        findings.extend(_finding(r, path, None, r["i"], analytic[r["i"]]) for path in paths)
    return GradCheckReport(mode, h, jnp.dtype(dtype).name, num_directions, tuple(findings))


def _check_options(grad_fn, h, mode, num_directions, key, rtol, atol, max_refinements) -> None:
    """Check :func:`check_grads`' options with the shared validation vocabulary."""
    if grad_fn is not None:
        check_callable("check_grads", "grad_fn", grad_fn)
    if h is not None:
        check_range("check_grads", "h", h, 0.0, math.inf, low_open=True)
    check_choice("check_grads", "mode", mode, (None, "coordinates", "directions"))
    check_integer("check_grads", "num_directions", num_directions, low=1)
    check_integer("check_grads", "max_refinements", max_refinements, low=0)
    if key is not None:
        check_prng_key("check_grads", "key", key)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None:
            check_nonnegative("check_grads", name, value)


def _nonfinite_gradient(differences: _Differences, gradient: np.ndarray, layout: _Layout, h: float) -> list[Finding]:
    """One ``nonfinite_gradient`` finding per NaN or infinite gradient component, with its central difference."""
    indices = np.flatnonzero(~np.isfinite(gradient))
    numeric = differences.coordinates(indices, h) if len(indices) else np.zeros(0)
    findings = []
    for i, value in zip(indices, numeric):
        path, index = layout.locate(int(i))
        record = {"history": [(h, math.inf)], "numeric": float(value), "verdict": "nonfinite_gradient", "passed": False}
        findings.append(_finding(record, path, index, None, gradient[i]))
    return findings


def _blame(differences: _Differences, key, gradient, layout, check: dict) -> list[str]:
    """Leaves whose share of a mismatching direction is itself a mismatch (same test and refinement)."""
    x = differences.x
    blamed = []
    for path, part in layout.leaf_slices():
        mask = jnp.zeros_like(x).at[part].set(1)
        numeric, v = differences.directions(key[None], check["h"], mask)
        analytic = np.asarray(v @ jnp.asarray(gradient, x.dtype), np.float64)
        evaluate = lambda rows, step, mask=mask: differences.directions(key[None], step, mask)[0]
        records = _refine(evaluate, analytic, numeric, **check)
        if records and records[0]["verdict"] == "mismatch":
            blamed.append(path)
    return blamed or [""]


def _finding(record: dict, path: str, index, direction, analytic: float) -> Finding:
    h, error = record["history"][-1]
    return Finding(
        path=path,
        index=index,
        direction=direction,
        analytic=float(analytic),
        numeric=record["numeric"],
        error=error,
        h=h,
        verdict=record["verdict"],
        passed=record["passed"],
        history=tuple(record["history"]),
    )
