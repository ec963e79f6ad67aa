"""Adafactor and its parts: NumPy float64 references, optax parity, factoring, state layout, validation.

The float64 problem of test_adaptive.py has leaves of shapes (3,), (2, 3), (4, 2), (2, 1, 3) and (), so
with ``min_dim_size_to_factor=2`` the factored statistic is exercised with the largest axis last, first,
and in a rank-3 leaf, next to unfactored vectors and scalars.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_adaptive import STEPS, THETA0, assert_trajectories_close, numpy_grad, run_gradflow, same, start, with_lr
from test_optax_parity import MASK, PARAMS, assert_moved, assert_same_trajectory, f32, run_pair

import gradflow as gf
from gradflow.optimizers import adaptive
from gradflow.transforms import factored as fa

# --- NumPy reference (Shazeer & Stern 2018, with optax's ordering of the optional steps) -------------


def ref_factored_axes(shape: tuple, min_dim: int):
    """(second-largest, largest) axis, ties going to the later axis; None if not factored."""
    if len(shape) < 2:
        return None
    by_size = sorted(range(len(shape)), key=lambda i: (shape[i], i))
    second, largest = by_size[-2], by_size[-1]
    return None if shape[second] < min_dim else (second, largest)


def ref_adafactor(
    steps,
    learning_rate=None,
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    multiply_by_parameter_scale=True,
    clipping_threshold=1.0,
    momentum=None,
    weight_decay_rate=None,
    eps=1e-30,
    factored=True,
    weight_decay_mask=None,
    dtype_momentum=None,  # accepted for the callers' convenience: everything here is float64
    decay=None,
):
    """Adafactor: V̂ from row/column EWMAs of g² + eps (rank-one estimate R·C/mean(R)) or a full EWMA;
    ``decay(step)`` replaces the default schedule 1 − (step + 1)^(−decay_rate). Returns the trajectory and,
    for each leaf and step, whether the block-RMS clip was active."""
    theta = start()
    stats, m = {}, {k: np.zeros(np.shape(x)) for k, x in theta.items()}
    for k, x in theta.items():
        axes = ref_factored_axes(np.shape(x), min_dim_size_to_factor) if factored else None
        if axes is None:
            stats[k] = (None, np.zeros(np.shape(x)))
        else:
            second, largest = axes
            stats[k] = (axes, (np.zeros(np.delete(np.shape(x), largest)), np.zeros(np.delete(np.shape(x), second))))
    out, clipped = [{k: x.copy() for k, x in theta.items()}], []
    for step in range(steps):
        rho = 1.0 - (step + 1.0) ** (-decay_rate) if decay is None else decay(step)
        g = numpy_grad(theta)
        new = {}
        for k in theta:
            x = g[k] ** 2 + eps
            axes, stat = stats[k]
            if axes is None:
                v = rho * stat + (1 - rho) * x
                stats[k] = (None, v)
            else:
                second, largest = axes
                rows = rho * stat[0] + (1 - rho) * x.mean(axis=largest)
                cols = rho * stat[1] + (1 - rho) * x.mean(axis=second)
                stats[k] = (axes, (rows, cols))
                # rows has lost axis `largest`; its axis `second` moved down by one if it came after it
                row_mean = rows.mean(axis=second - (second > largest), keepdims=True)
                v = np.expand_dims(rows / row_mean, largest) * np.expand_dims(cols, second)
            u = g[k] / np.sqrt(v)
            if clipping_threshold is not None:
                clipped.append(np.sqrt(np.mean(u**2)) > clipping_threshold)
                u = u / max(1.0, np.sqrt(np.mean(u**2)) / clipping_threshold)
            if learning_rate is not None:
                u = learning_rate * u
            if multiply_by_parameter_scale:
                u = u * max(np.sqrt(np.mean(theta[k] ** 2)), 1e-3)
            if momentum is not None:
                m[k] = momentum * m[k] + (1 - momentum) * u
                u = m[k]
            if weight_decay_rate is not None and (weight_decay_mask is None or weight_decay_mask[k]):
                u = u + weight_decay_rate * theta[k]
            new[k] = theta[k] - u
        theta = new
        out.append({k: np.array(x, dtype=np.float64) for k, x in theta.items()})
    return out, clipped


DECAY_MASK = {"a": False, "b": True, "w": True, "t": True, "c": False}


def capped_decay(step, decay_rate):
    """Zhai et al. (2021): Adafactor's decay schedule capped at 0.9 (a custom ``decay_rate_fn``)."""
    return jnp.minimum(1.0 - (step + 1.0) ** (-decay_rate), 0.9)


ADAFACTOR_CASES = {
    "default": dict(learning_rate=0.05),
    "factored-momentum-decay": dict(
        learning_rate=0.05,
        min_dim_size_to_factor=2,
        decay_rate=0.5,
        clipping_threshold=0.5,
        momentum=0.9,
        weight_decay_rate=0.01,
        eps=1e-20,
        weight_decay_mask=DECAY_MASK,
        dtype_momentum=jnp.float64,  # optax's default float32 buffer would round at 1e-10 of the params
    ),
    "factored-rank3": dict(learning_rate=0.1, min_dim_size_to_factor=1, multiply_by_parameter_scale=False),
    "no-learning-rate-unfactored": dict(
        min_dim_size_to_factor=2, factored=False, multiply_by_parameter_scale=False, clipping_threshold=0.1
    ),
}


@pytest.mark.parametrize("name", sorted(ADAFACTOR_CASES))
def test_adafactor_matches_reference(name):
    hyper = ADAFACTOR_CASES[name]
    reference, clipped = ref_adafactor(STEPS, **hyper)
    if hyper.get("clipping_threshold", 1.0) is not None:  # the clip is active for some leaves and steps only
        assert any(clipped) and not all(clipped), name
    assert_trajectories_close(run_gradflow(adaptive.adafactor(**hyper)), reference)


def test_custom_decay_rate_fn_matches_reference():
    tx = gf.chain(
        fa.scale_by_factored_rms(min_dim_size_to_factor=2, decay_rate_fn=capped_decay), gf.scale_by_learning_rate(0.05)
    )
    reference, _ = ref_adafactor(
        STEPS,
        learning_rate=0.05,
        min_dim_size_to_factor=2,
        multiply_by_parameter_scale=False,
        clipping_threshold=None,
        decay=lambda step: min(1.0 - (step + 1.0) ** -0.8, 0.9),
    )
    assert_trajectories_close(run_gradflow(tx), reference)


def test_factored_state_holds_rows_and_columns_only():
    """The memory claim: a factored leaf keeps |rows| + |columns| numbers; unused entries are (1,) placeholders."""
    tx = adaptive.adafactor(0.05, min_dim_size_to_factor=2)
    _, states = run_gradflow(tx, steps=2, with_states=True)
    nodes = jax.tree.leaves(states[-1], is_leaf=lambda x: isinstance(x, fa.FactoredState))
    (state,) = [n for n in nodes if isinstance(n, fa.FactoredState)]
    shapes = {k: (np.shape(state.v_row[k]), np.shape(state.v_col[k]), np.shape(state.v[k])) for k in THETA0}
    assert shapes == {
        "a": ((1,), (1,), (3,)),
        "b": ((2,), (3,), (1,)),
        "w": ((2,), (4,), (1,)),
        "t": ((2, 1), (1, 3), (1,)),
        "c": ((1,), (1,), ()),
    }


def test_factored_dims():
    assert fa.factored_dims((3, 5, 4), True, 2) == (2, 1)
    assert fa.factored_dims((4, 4), True, 2) == (0, 1)  # a tie: the later axis counts as the largest
    assert fa.factored_dims((2, 1, 3), True, 1) == (0, 2)
    assert fa.factored_dims((6, 2), True, 3) is None
    assert fa.factored_dims((6, 2), False, 1) is None
    assert fa.factored_dims((7,), True, 1) is None


def test_factored_ewma_is_exact_on_rank_one_statistics():
    """For a rank-one input (and decay 0) the estimate R·C/mean(R) reproduces it exactly."""
    rows, cols = np.array([1.0, 4.0, 0.5]), np.array([2.0, 1.0, 3.0, 0.25])
    u = jnp.asarray(np.outer(rows, cols), jnp.float32)
    tx = fa.factored_ewma(0.0, min_dim_size_to_factor=2)
    np.testing.assert_allclose(tx.update(u, tx.init(u))[0], np.outer(rows, cols), rtol=1e-6)


def test_decay_offset_shifts_the_schedule():
    """decay_offset is subtracted from the count: ρ(count) = 1 − (count − offset + 1)^(−decay_rate)."""
    schedule = fa.AdafactorDecay(0.8, 3)
    np.testing.assert_allclose(float(schedule(jnp.int32(5))), 1 - 3.0**-0.8, rtol=1e-6)
    np.testing.assert_allclose(float(schedule(jnp.int32(3))), 0.0, atol=0)
    tx = adaptive.adafactor(0.1, decay_offset=2)
    nodes = jax.tree.leaves(tx, is_leaf=lambda x: isinstance(x, fa.AdafactorDecay))
    (decay,) = [x for x in nodes if isinstance(x, fa.AdafactorDecay)]
    assert jax.tree.leaves(decay) == [0.8, 2]  # both are leaves of the optimizer's pytree


# --- float32: parity with optax -----------------------------------------------------------------------

PARITY_CASES = [
    pytest.param(same(adaptive.adafactor, optax.adafactor, 1e-2), id="adafactor"),
    pytest.param(
        same(
            adaptive.adafactor,
            optax.adafactor,
            1e-2,
            min_dim_size_to_factor=2,
            decay_rate=0.6,
            clipping_threshold=0.5,
            momentum=0.9,
            weight_decay_rate=1e-3,
            eps=1e-20,
            weight_decay_mask=MASK,
        ),
        id="adafactor-factored-momentum-decay-masked",
    ),
    pytest.param(
        same(
            adaptive.adafactor,
            optax.adafactor,
            2e-2,
            min_dim_size_to_factor=3,
            multiply_by_parameter_scale=False,
            clipping_threshold=None,
            factored=True,
        ),
        id="adafactor-partly-factored-no-param-scale",
    ),
    pytest.param(same(adaptive.adafactor, optax.adafactor, 2e-2, factored=False), id="adafactor-unfactored"),
    pytest.param(with_lr(same(fa.scale_by_factored_rms, optax.scale_by_factored_rms)), id="scale_by_factored_rms"),
    pytest.param(
        with_lr(
            same(
                fa.scale_by_factored_rms,
                optax.scale_by_factored_rms,
                True,
                0.5,
                min_dim_size_to_factor=2,
                epsilon=1e-10,
                decay_rate_fn=capped_decay,
            )
        ),
        id="scale_by_factored_rms-custom-decay",
    ),
    pytest.param(
        lambda: (
            gf.chain(fa.scale_by_param_block_rms(f32(0.5)), gf.scale_by_learning_rate(f32(0.02))),
            optax.chain(optax.scale_by_param_block_rms(f32(0.5)), optax.scale_by_learning_rate(f32(0.02))),
        ),
        id="scale_by_param_block_rms",
    ),
]


@pytest.mark.parametrize("make", PARITY_CASES)
def test_matches_optax(make):
    ours, theirs = make()
    out = run_pair(ours, theirs)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def test_parity_problem_is_factored():
    """The parity cases are not vacuous: with min_dim_size_to_factor=2 two leaves are factored, with 3 one."""
    leaves = jax.tree.leaves(PARAMS)  # dense.b (4,), dense.w (3, 4), extra.k (2, 2), gain ()
    assert [fa.factored_dims(np.shape(p), True, 2) for p in leaves] == [None, (0, 1), (0, 1), None]
    assert [fa.factored_dims(np.shape(p), True, 3) for p in leaves] == [None, (0, 1), None, None]


SIGNATURES = [
    (adaptive.adafactor, optax.adafactor, set()),
    (fa.scale_by_factored_rms, optax.scale_by_factored_rms, {"decay_rate_fn"}),
    (fa.scale_by_param_block_rms, optax.scale_by_param_block_rms, set()),
]


@pytest.mark.parametrize("ours, theirs, different", SIGNATURES, ids=[f.__name__ for f, _, _ in SIGNATURES])
def test_signature_matches_optax(ours, theirs, different):
    """Same names, order, kinds and defaults. The default ``decay_rate_fn`` is gradflow's own
    :func:`decay_rate_pow` (optax's is a private function); both compute 1 − (step + 1)^(−decay_rate)."""
    a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    assert list(a) == list(b)
    for key in a:
        assert a[key].kind == b[key].kind, key
        if key not in different:
            assert a[key].default == b[key].default, key


def test_default_decay_rate_fn_computes_optax_schedule():
    theirs = inspect.signature(optax.scale_by_factored_rms).parameters["decay_rate_fn"].default
    steps = jnp.arange(0, 1000, 37)
    np.testing.assert_allclose(fa.decay_rate_pow(steps, 0.8), theirs(steps, 0.8), rtol=1e-6)


# --- intended differences from optax --------------------------------------------------------------


def test_momentum_keeps_the_gradient_dtype():
    """With bfloat16 params, optax's Adafactor momentum (a float32 buffer) returns float32 updates;
    gradflow returns the gradient's dtype (law 6) and keeps the buffer in dtype_momentum."""
    params = {"w": jnp.ones((4, 3), jnp.bfloat16)}
    grads = {"w": jnp.full((4, 3), 0.25, jnp.bfloat16)}
    ours = adaptive.adafactor(0.1, momentum=0.9)
    updates, _ = ours.update(grads, ours.init(params), params)
    assert updates["w"].dtype == jnp.bfloat16
    theirs = optax.adafactor(0.1, momentum=0.9)
    assert theirs.update(grads, theirs.init(params), params)[0]["w"].dtype == jnp.float32


def test_unused_statistics_are_placeholders_as_in_optax():
    """Each unused statistic is a (1,)-shaped placeholder, as optax stores it (so checkpoints match)."""
    params = {"m": jnp.ones((4, 3)), "v": jnp.ones(5)}
    ours = fa.factored_ewma(0.5, min_dim_size_to_factor=2).init(params)
    assert ours.v["m"].shape == ours.v_row["v"].shape == ours.v_col["v"].shape == (1,)
    theirs = optax.scale_by_factored_rms(min_dim_size_to_factor=2).init(params)
    assert theirs.v["m"].shape == theirs.v_row["v"].shape == theirs.v_col["v"].shape == (1,)


# --- construction and call errors -----------------------------------------------------------------

BAD = [
    (lambda: adaptive.adafactor(-1.0), "adafactor: learning_rate"),
    (lambda: adaptive.adafactor(min_dim_size_to_factor=0), "min_dim_size_to_factor must be an integer >= 1"),
    (lambda: adaptive.adafactor(min_dim_size_to_factor=2.5), "min_dim_size_to_factor must be an integer >= 1"),
    (lambda: adaptive.adafactor(decay_rate=-0.8), r"scale_by_factored_rms: decay_rate must be in \[0.0, inf\)"),
    (lambda: adaptive.adafactor(decay_offset=-1), "adafactor: decay_offset"),
    (lambda: adaptive.adafactor(eps=-1e-30), "scale_by_factored_rms: epsilon"),
    (lambda: adaptive.adafactor(clipping_threshold=0.0), r"adafactor: clipping_threshold must be in \(0.0, inf\)"),
    (lambda: adaptive.adafactor(momentum=1.0), r"adafactor: momentum must be in \[0.0, 1.0\)"),
    (lambda: adaptive.adafactor(weight_decay_rate=-0.1), "adafactor: weight_decay_rate"),
    (lambda: fa.scale_by_param_block_rms(-1.0), "scale_by_param_block_rms: min_scale"),
    (lambda: fa.factored_ewma(1.5), r"factored_ewma: decay must be in \[0.0, 1.0\]"),
]


@pytest.mark.parametrize("build, message", BAD, ids=[m for _, m in BAD])
def test_bad_hyperparameters_are_rejected(build, message):
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_decay_rate_fn_must_be_callable():
    with pytest.raises(TypeError, match="decay_rate_fn must be a function"):
        fa.scale_by_factored_rms(decay_rate_fn=0.8)


def test_parameter_scale_needs_params():
    tx = adaptive.adafactor(0.1)
    params = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="scale_by_param_block_rms needs the parameters"):
        tx.update(params, tx.init(params))


def test_state_of_other_params_is_reported():
    tx = fa.factored_ewma(0.5, min_dim_size_to_factor=2)
    state = tx.init({"w": jnp.ones((2, 2))})
    with pytest.raises(gf.TreeMismatchError, match=r"updates and state\.v_row"):
        tx.update({"u": jnp.ones((2, 2))}, state)
