"""The test landscapes: analytic gradients, minima against NumPy and scipy references, saddles, grids."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import gradflow
from gradflow.experiments import landscapes
from gradflow.experiments.landscapes import LANDSCAPES, Landscape, start_point

NAMES = ["rosenbrock", "beale", "himmelblau", "booth", "rastrigin", "saddle", "monkey_saddle", "ravine", "double_well"]
BOUNDED = [name for name in NAMES if LANDSCAPES[name].minima]
SADDLES = ["saddle", "monkey_saddle"]

# Independent float64 references, written from the textbook formulas (x is a NumPy array of shape (dim,)).
REFERENCE = {
    "rosenbrock": lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2,
    "beale": lambda x: (
        (1.5 - x[0] + x[0] * x[1]) ** 2 + (2.25 - x[0] + x[0] * x[1] ** 2) ** 2 + (2.625 - x[0] + x[0] * x[1] ** 3) ** 2
    ),
    "himmelblau": lambda x: (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2,
    "booth": lambda x: (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2,
    "rastrigin": lambda x: 10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)),
    "saddle": lambda x: x[0] ** 2 - x[1] ** 2,
    "monkey_saddle": lambda x: x[0] ** 3 - 3 * x[0] * x[1] ** 2,
    "ravine": lambda x: 0.05 * x[0] ** 2 + 5 * x[1] ** 2,
    "double_well": lambda x: x[0] * (x[0] - 1) * (x[0] - 3) ** 2 + 1.62276,
}


def check_points(landscape: Landscape, random: int = 4) -> np.ndarray:
    """The starts, the (local) minima and ``random`` uniform points of the window, shape (k, dim)."""
    lo, hi = np.array(landscape.window).T
    rng = np.random.default_rng(sum(map(ord, landscape.name)))
    uniform = lo + (hi - lo) * rng.random((random, landscape.dim))
    return np.concatenate([np.array(landscape.starts + landscape.minima + landscape.local_minima), uniform])


@functools.cache
def compiled(name: str):
    """Jitted ``fn``, ``grad`` and ``jax.hessian(fn)`` of a landscape, compiled once per dtype for the file."""
    landscape = LANDSCAPES[name]
    return jax.jit(landscape.fn), jax.jit(landscape.grad), jax.jit(jax.hessian(landscape.fn))


def batched(landscape: Landscape):
    """The loss summed over a batch of points and its analytic gradient: one check for all the points."""
    return jax.jit(lambda points: jnp.sum(jax.vmap(landscape.fn)(points))), jax.jit(jax.vmap(landscape.grad))


def test_registry_order_and_legacy_names():
    assert list(LANDSCAPES) == NAMES
    for name, landscape in LANDSCAPES.items():
        assert landscape.name == name and getattr(landscapes, name) is landscape
        assert "\n" not in landscape.description and landscape.start == landscape.starts[0]
        assert landscape.dim == len(landscape.start) == (1 if name == "double_well" else 2)
        assert landscape.minimum == (landscape.minima[0] if landscape.minima else None)
        assert (landscape.minimum_value is None) == (name in SADDLES)
    assert LANDSCAPES["rosenbrock"].start == (-1.2, 1.0) and LANDSCAPES["ravine"].start == (-8.0, 1.0)
    point = start_point(LANDSCAPES["double_well"])
    assert point.shape == (1,) and point.dtype == jnp.float32 and float(point[0]) == 4.0
    with jax.enable_x64(True):
        assert start_point(LANDSCAPES["rosenbrock"], jnp.float64).dtype == jnp.float64


def test_landscape_rejects_inconsistent_points():
    with pytest.raises(ValueError, match="does not have dim = 2"):
        dataclasses.replace(LANDSCAPES["booth"], starts=((1.0,),))
    with pytest.raises(ValueError, match="minimum_value is None exactly when minima is empty"):
        dataclasses.replace(LANDSCAPES["saddle"], minimum_value=0.0)
    with pytest.raises(ValueError, match=r"window \(1.0, -1.0\) must have lo < hi"):
        dataclasses.replace(LANDSCAPES["booth"], window=((1.0, -1.0), (0.0, 1.0)))


@pytest.mark.parametrize("name", NAMES)
def test_analytic_gradient_passes_check_grads_and_equals_autodiff(name):
    landscape = LANDSCAPES[name]
    with jax.enable_x64(True):
        points = jnp.asarray(check_points(landscape), jnp.float64)
        fun, grad_fn = batched(landscape)
        report = gradflow.check_grads(fun, points, grad_fn=grad_fn)
        assert report.ok and report.checked == points.size and report.dtype == "float64", str(report)
        analytic = np.asarray(grad_fn(points))
        autodiff = np.asarray(jax.jit(jax.vmap(jax.grad(landscape.fn)))(points))
    assert analytic.dtype == np.float64 and analytic.shape == points.shape
    np.testing.assert_allclose(analytic, autodiff, rtol=1e-10, atol=1e-10)


def test_wrong_gradient_is_a_mismatch():
    def wrong(p):  # Rosenbrock's gradient with 100 → 10 in the valley term
        x, y = p[0], p[1]
        return jnp.stack([-2 * (1 - x) - 40 * x * (y - x**2), 20 * (y - x**2)])

    with jax.enable_x64(True):
        report = gradflow.check_grads(landscapes.rosenbrock.fn, jnp.array([-1.2, 1.0]), grad_fn=wrong)
    assert not report.ok and {f.verdict for f in report.findings} == {"mismatch"}, str(report)
    assert len(report.findings) == 2


@pytest.mark.parametrize("name", BOUNDED)
def test_minima_values_stationarity_and_scipy(name):
    landscape = LANDSCAPES[name]
    reference = REFERENCE[name]
    fn, grad, hessian = compiled(name)
    with jax.enable_x64(True):
        for minimum in landscape.minima:
            point = np.array(minimum)
            np.testing.assert_allclose(reference(point), landscape.minimum_value, rtol=0, atol=1e-12)
            np.testing.assert_allclose(float(fn(jnp.asarray(point))), landscape.minimum_value, atol=1e-12)
            np.testing.assert_allclose(grad(jnp.asarray(point)), 0.0, atol=1e-9)
            # scipy from a nearby point, derivative-free on the NumPy formula: an independent minimiser.
            found = optimize.minimize(
                reference, point + 0.1, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-16, "maxiter": 4000}
            )
            np.testing.assert_allclose(found.x, point, rtol=0, atol=1e-5)
            np.testing.assert_allclose(found.fun, landscape.minimum_value, rtol=0, atol=1e-10)
        for local in landscape.local_minima:
            point = jnp.asarray(local)
            np.testing.assert_allclose(grad(point), 0.0, atol=1e-9)
            assert np.all(np.linalg.eigvalsh(np.asarray(hessian(point))) > 0)
            assert float(fn(point)) > landscape.minimum_value


def test_himmelblau_has_four_distinct_minima_and_rastrigin_its_minimum_at_the_origin():
    himmelblau = LANDSCAPES["himmelblau"]
    assert len(himmelblau.minima) == 4 and len(set(himmelblau.minima)) == 4
    assert {tuple(np.sign(m)) for m in himmelblau.minima} == {(1, 1), (-1, 1), (-1, -1), (1, -1)}
    assert LANDSCAPES["rastrigin"].minima == ((0.0, 0.0),) and LANDSCAPES["rastrigin"].minimum_value == 0.0
    ring = optimize.brentq(lambda x: 2 * x + 20 * np.pi * np.sin(2 * np.pi * x), 0.9, 1.1, xtol=1e-15)
    np.testing.assert_allclose(LANDSCAPES["rastrigin"].local_minima[0], (ring, 0.0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", SADDLES)
def test_saddles_are_stationary_at_origin_and_unbounded_below(name):
    landscape = LANDSCAPES[name]
    fn, grad, hessian = compiled(name)
    with jax.enable_x64(True):
        origin = jnp.zeros(2)
        np.testing.assert_array_equal(grad(origin), 0.0)
        eigenvalues = np.linalg.eigvalsh(np.asarray(hessian(origin)))
        downhill = {"saddle": np.array([0.0, 1.0]), "monkey_saddle": np.array([-1.0, 0.0])}[name]
        falling = [float(fn(jnp.asarray(t * downhill))) for t in (1.0, 10.0, 100.0)]
    if name == "saddle":
        np.testing.assert_allclose(eigenvalues, [-2.0, 2.0])
    else:
        np.testing.assert_array_equal(eigenvalues, 0.0)
    assert falling[0] > falling[1] > falling[2] <= -1e4
    for start in landscape.starts:  # near the ridge y = 0, but off it so that the escape shows
        assert start[0] != 0 and 0 < abs(start[1]) <= 1e-3
    assert landscape.minima == () and landscape.minimum is None and landscape.minimum_value is None


def test_double_well_minima():
    well = LANDSCAPES["double_well"]
    fn, grad, curvature = compiled("double_well")
    assert well.local_minima == ((3.0,),) and well.start == (4.0,)
    with jax.enable_x64(True):
        assert float(fn(jnp.array([3.0]))) == 1.62276 == REFERENCE["double_well"](np.array([3.0]))
        assert float(grad(jnp.array([3.0]))[0]) == 0.0
        (x_star,) = well.minimum
        # The global minimiser: the root of f' between the two wells, found by scipy.
        root = optimize.brentq(lambda x: 4 * x**3 - 21 * x**2 + 30 * x - 9, 0.0, 1.0, xtol=1e-15, rtol=1e-15)
        np.testing.assert_allclose(x_star, root, rtol=0, atol=1e-12)
        np.testing.assert_allclose(x_star, (9 - math.sqrt(33)) / 8, rtol=0, atol=1e-15)
        found = optimize.minimize_scalar(lambda x: REFERENCE["double_well"](np.array([x])), bounds=(0, 1))
        np.testing.assert_allclose(found.x, x_star, atol=1e-5)
        np.testing.assert_allclose(well.minimum_value, REFERENCE["double_well"](np.array([x_star])), rtol=1e-12)
        assert 0 < well.minimum_value < 1e-6  # 1.62276 cancels the polynomial's minimum to six decimals
        for x in (3.0, x_star):
            assert float(curvature(jnp.array([x]))[0, 0]) > 0
        np.testing.assert_allclose(float(curvature(jnp.array([3.0]))[0, 0]), 12.0)  # f'' = 12x² − 42x + 30


@pytest.mark.parametrize("name", NAMES)
def test_window_contains_minima_and_starts(name):
    landscape = LANDSCAPES[name]
    lo, hi = np.array(landscape.window).T
    for point in landscape.minima + landscape.local_minima + landscape.starts:
        assert np.all((lo < np.array(point)) & (np.array(point) < hi)), point


@pytest.mark.parametrize("name", ["rosenbrock", "himmelblau", "monkey_saddle", "double_well"])
def test_grid_matches_fn_at_nodes(name):
    landscape = LANDSCAPES[name]
    n = 9
    *coords, values = landscape.grid(n)
    assert len(coords) == landscape.dim
    assert all(c.shape == values.shape == (n,) * landscape.dim for c in coords)
    assert all(isinstance(a, np.ndarray) for a in (*coords, values))
    np.testing.assert_allclose([coords[0].min(), coords[0].max()], landscape.window[0])
    fn = compiled(name)[0]
    for index in [(0,) * landscape.dim, (n - 1,) * landscape.dim, (2, 7)[: landscape.dim], (5, 1)[: landscape.dim]]:
        point = jnp.array([c[index] for c in coords], jnp.float32)
        np.testing.assert_allclose(values[index], float(fn(point)), rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_float32_under_jit_and_vmap(name):
    landscape = LANDSCAPES[name]
    points = check_points(landscape)
    both = jax.jit(jax.vmap(lambda point: (landscape.fn(point), landscape.grad(point))))
    values, grads = both(jnp.asarray(points, jnp.float32))
    assert values.dtype == grads.dtype == jnp.float32 and values.shape == (len(points),)
    assert grads.shape == points.shape
    expected = np.array([REFERENCE[name](p.astype(np.float32).astype(np.float64)) for p in points])
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4)
