"""gradflow.check_grads: central differences, the seed's refinement and its three verdicts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow as gf
from gradflow import gradcheck
from gradflow.experiments.landscapes import LANDSCAPES
from gradflow.testing import assert_grads_close


@pytest.fixture
def float64():
    with jax.enable_x64(True):
        yield


def nested_params(dtype=jnp.float64):
    rng = np.random.default_rng(0)
    return {
        "encoder": {"w": jnp.asarray(rng.normal(size=(3, 2)), dtype), "b": jnp.asarray(rng.normal(size=2), dtype)},
        "head": (jnp.asarray(rng.normal(size=(2,)), dtype),),
    }


def nested_loss(p):
    hidden = jnp.tanh(jnp.arange(1.0, 4.0, dtype=p["encoder"]["w"].dtype) @ p["encoder"]["w"] + p["encoder"]["b"])
    return jnp.sum(hidden * p["head"][0]) + 0.1 * jnp.sum(p["encoder"]["w"] ** 3)


def double_well(x):
    """Seed 004: f(x) = x(x−1)(x−3)² + 1.62276."""
    return jnp.sum(x * (x - 1) * (x - 3) ** 2 + 1.62276)


def double_well_derivative(x):
    return 4 * x**3 - 21 * x**2 + 30 * x - 9


def test_central_difference_error_falls_like_h_squared(float64):
    """Seed 000 §4: the error is ≈ M·h², so its log-log slope against h is 2 (float64, h from 1e-2 to 1e-5)."""
    params = nested_params()
    analytic = jax.flatten_util.ravel_pytree(jax.grad(nested_loss)(params))[0]
    hs = np.logspace(-2, -5, 7)
    errors = np.max(np.abs(gradcheck.central_differences(nested_loss, params, hs) - np.asarray(analytic)), axis=1)
    slope = np.polyfit(np.log10(hs), np.log10(errors), 1)[0]
    assert 1.9 < slope < 2.1, (slope, errors)


def test_seed_004_hand_written_derivative_passes(float64):
    x = jnp.linspace(-1.0, 4.0, 11)
    report = gf.check_grads(double_well, x, grad_fn=double_well_derivative)
    assert report.ok and report.findings == () and report.mode == "coordinates" and report.h == 1e-7
    assert gf.check_grads(double_well, x.astype(jnp.float32), grad_fn=double_well_derivative).ok


def test_wrong_coefficient_is_a_mismatch_at_each_index(float64):
    wrong = lambda x: 4 * x**3 - 21 * x**2 + 31 * x - 9  # 30x mistyped as 31x: error x at every point
    x = jnp.array([0.5, 0.0, 2.0])
    report = gf.check_grads(double_well, x, grad_fn=wrong)
    assert not report.ok
    assert [(f.index, f.verdict) for f in report.findings] == [((0,), "mismatch"), ((2,), "mismatch")]
    finding = report.findings[1]
    assert finding.analytic == pytest.approx(float(wrong(2.0))) and finding.numeric == pytest.approx(-1.0, abs=1e-6)
    assert finding.history[0][0] == 1e-7 and finding.h == 1e-8


def test_wrong_component_in_one_leaf_is_located(float64):
    params = nested_params()

    def wrong_grad(p):
        g = jax.grad(nested_loss)(p)
        return {**g, "encoder": {**g["encoder"], "w": g["encoder"]["w"].at[2, 1].multiply(1.5)}}

    report = gf.check_grads(nested_loss, params, grad_fn=wrong_grad)
    assert [(f.path, f.index, f.verdict) for f in report.findings] == [("['encoder']['w']", (2, 1), "mismatch")]
    with pytest.raises(gf.GradCheckError, match=r"params\['encoder'\]\['w'\]\s+\(2, 1\).*mismatch"):
        assert_grads_close(nested_loss, params, grad_fn=wrong_grad)


def test_wrong_custom_vjp_is_a_mismatch(float64):
    @jax.custom_vjp
    def softplus(x):
        return jnp.log1p(jnp.exp(x))

    def forward(x):
        return softplus(x), x

    def backward(x, cotangent):
        return (cotangent * jnp.exp(-x) / (1 + jnp.exp(-x)),)  # should be the sigmoid 1/(1+e^−x)

    softplus.defvjp(forward, backward)
    loss = lambda x: jnp.sum(softplus(x))
    report = gf.check_grads(loss, jnp.array([-1.0, 0.0, 2.0]))
    assert {f.index for f in report.findings if f.verdict == "mismatch"} == {(0,), (2,)}
    assert not report.ok  # x = 0 is the only point where the wrong derivative happens to be right


def test_too_large_step_on_a_fast_oscillation_is_truncation(float64):
    loss = lambda x: jnp.sum(jnp.sin(40.0 * x))
    report = gf.check_grads(loss, jnp.linspace(0.0, 1.0, 5), h=1e-2)
    assert report.findings and all(f.verdict == "truncation" and f.passed for f in report.findings)
    assert report.ok
    for f in report.findings:  # the error fell about a hundredfold per tenfold smaller h
        (h0, e0), (h1, e1) = f.history[:2]
        assert h1 == pytest.approx(h0 / 10) and 50 < e0 / e1 < 200


def test_float32_that_cannot_resolve_the_difference_is_roundoff():
    loss = lambda x: 1e6 + jnp.sum(x**2)  # float32 spacing at 1e6 is 0.06: L(w ± 1e-3) are equal
    x = jnp.array([0.3, -0.7], jnp.float32)
    report = gf.check_grads(loss, x, h=1e-3)
    assert not report.ok and {f.verdict for f in report.findings} == {"roundoff"}
    default = gf.check_grads(loss, x)  # the default step grows with √|L| and resolves it
    assert default.h == 1.0 and default.ok


def test_directions_mode_blames_the_wrong_leaf(float64):
    rng = np.random.default_rng(1)
    params = {"a": jnp.asarray(rng.normal(size=(300, 40))), "b": jnp.asarray(rng.normal(size=50))}
    loss = lambda p: jnp.sum(jnp.tanh(p["a"])) + jnp.sum(p["b"] ** 2) * jnp.mean(p["a"])
    assert gf.check_grads(loss, params, mode="directions", num_directions=4).ok

    def wrong(p):
        g = jax.grad(loss)(p)
        return {"a": g["a"], "b": g["b"] * 1.01}

    report = gf.check_grads(loss, params, grad_fn=wrong, mode="directions", num_directions=4)
    assert not report.ok and report.checked == 4
    assert {(f.path, f.verdict) for f in report.findings} == {("['b']", "mismatch")}


def test_mode_is_chosen_by_size():
    small = gf.check_grads(lambda x: jnp.sum(x**2), jnp.ones(10))
    large = gf.check_grads(lambda x: jnp.sum(jnp.sin(x)), jnp.ones(20_000), num_directions=2)
    assert (small.mode, small.checked) == ("coordinates", 10) and (large.mode, large.checked) == ("directions", 2)
    assert "mode=directions" in str(large) and "OK" in str(large)


def test_chunked_evaluation_equals_one_chunk(monkeypatch, float64):
    params = nested_params()
    whole = gradcheck.central_differences(nested_loss, params, 1e-5)
    monkeypatch.setattr(gradcheck, "_CHUNK_ELEMENTS", 3 * 14)  # 3 points per chunk, last chunk padded
    np.testing.assert_array_equal(gradcheck.central_differences(nested_loss, params, 1e-5), whole)


def test_landscape_gradients(float64):
    for landscape in LANDSCAPES.values():
        assert_grads_close(landscape.fn, jnp.array([0.3, -0.7]))


def test_default_step_by_dtype():
    assert gradcheck.default_step(jnp.float64) == 1e-7 and gradcheck.default_step(jnp.float32) == 1e-3
    assert gradcheck.default_step(jnp.float64, 50.0) == 1e-7 and gradcheck.default_step(jnp.float64, 1e6) == 1e-4
    mixed = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.bfloat16)}
    assert gf.check_grads(lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(p["b"].astype(jnp.float32)), mixed).h == 0.1


@pytest.mark.parametrize(
    ("fun", "params", "kwargs", "error", "message"),
    [
        (lambda x: x**2, jnp.ones(3), {}, ValueError, r"check_grads: fun must return .*, got shape \(3,\)"),
        (lambda x: (x.sum(), x.sum()), jnp.ones(3), {}, TypeError, r"fun must return a real .*got a tuple"),
        (lambda x: jnp.sum(x).astype(jnp.int32), jnp.ones(3), {}, TypeError, "real floating-point scalar"),
        (lambda p: jnp.sum(p["w"]), {"w": jnp.ones(2), "n": jnp.arange(2)}, {}, TypeError,
         r"params\['n'\] has dtype int32"),
        (lambda x: jnp.sum(jnp.abs(x)), jnp.ones(2, jnp.complex64), {}, TypeError, "is complex"),
        (lambda p: jnp.sum(p["w"]), {"w": jnp.ones(2)}, {"grad_fn": lambda p: {"v": p["w"]}},
         gf.TreeMismatchError, r"grad_fn\(params\)\['v'\] has no counterpart in params"),
        (lambda p: jnp.sum(p["w"]), {"w": jnp.ones(2)}, {"grad_fn": lambda p: {"w": jnp.ones(3)}},
         gf.TreeMismatchError, r"has shape \(3,\) but params\['w'\] has shape \(2,\)"),
        (lambda x: jnp.sum(x), jnp.ones(2), {"mode": "rows"}, ValueError, "mode must be"),
        (lambda x: jnp.sum(x), jnp.ones(2), {"h": -1.0}, ValueError, r"h must be in \(0.0, inf\), got -1.0"),
        (lambda x: jnp.sum(x), {}, {}, ValueError, "no array leaves"),
    ],
)  # fmt: skip
def test_bad_input(fun, params, kwargs, error, message):
    with pytest.raises(error, match=message):
        gf.check_grads(fun, params, **kwargs)


@pytest.mark.slow
def test_million_parameter_model_in_directions_mode():
    """The benchmark's 1,002,001-parameter MLP checks in directions mode (time: benchmarks/, not asserted)."""
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "gradcheck_directions.py"
    spec = importlib.util.spec_from_file_location("gradcheck_directions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params, loss = module.build()
    report = gf.check_grads(loss, params, num_directions=2)
    assert report.mode == "directions" and report.checked == 2 and report.ok

    def wrong(p):
        g = jax.grad(loss)(p)
        return {**g, "out": {**g["out"], "b": -g["out"]["b"]}}

    findings = gf.check_grads(loss, params, grad_fn=wrong, num_directions=2).findings
    assert {(f.path, f.verdict) for f in findings} == {("['out']['b']", "mismatch")}


def test_a_step_below_the_dtype_resolution_is_roundoff_not_truncation():
    """At w = 3.2 in float32, w ± 1e-7 rounds back to w, so the quotient is 0/0 = NaN: that is roundoff."""
    landscape = LANDSCAPES["rastrigin"]
    report = gf.check_grads(landscape.fn, jnp.array([3.2, 2.8], jnp.float32), grad_fn=landscape.grad, h=1e-6)
    assert not report.ok and report.findings
    assert {finding.verdict for finding in report.findings} == {"roundoff"}
