"""The battery's update-time probes: malformed ``init``/``update`` inputs and the numerical edge cases.

Each error probe traces its cases abstractly (``jax.eval_shape``: the checks run while tracing, nothing
compiles) and matches a message that names the culprit: the key path of the leaf, the argument, or the
hyperparameter with both shapes. Each safe probe checks numbers against an independent reference (NumPy, or
optax where both implement the same rule). The rules are those of :func:`gradflow.tree.check_updates`,
:func:`gradflow.tree.map` and :func:`gradflow.tree.hyperparameter_mismatch`:

- a hyperparameter is a scalar, or an array that broadcasts to the shape of every leaf it meets;
- a ``None`` leaf (no parameter) is ``None`` in the params, the updates and the state alike; an update may
  be ``None`` where a parameter exists and no state is kept for it (a frozen parameter);
- complex parameters work where optax's rule does (and match it), and the transforms that order values
  (``clip``, Rprop, ``keep_params_nonnegative``) or assume a real loss (Newton, L-BFGS, line searches, the
  curvature step) refuse them, naming the transform and the leaf;
- norms are summed in at least float32, and a zero norm gives zero updates (and finite derivatives).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from bad_input_probes import error_probe, safe_probe

import gradflow as gf
from gradflow.transforms.factored import scale_by_param_block_rms
from gradflow.transforms.noise import AddNoiseState

P = {"dense": {"w": jnp.arange(6.0).reshape(3, 2) / 10, "b": jnp.array([0.5, -0.5])}, "scale": (jnp.array(2.0),)}
G = {"dense": {"w": jnp.full((3, 2), 0.5), "b": jnp.array([-0.25, 1.0])}, "scale": (jnp.array(-2.0),)}
LR = 1e-3
Z = {"z": jnp.array([1 + 1j, 2 - 1j, -0.5j], jnp.complex64), "m": jnp.array([[1 + 2j, 0.3 - 1j]], jnp.complex64)}
GZ = {"z": jnp.array([0.5 - 1j, -2 + 0.25j, 1j], jnp.complex64), "m": jnp.array([[0.2 + 1j, -0.5]], jnp.complex64)}


def _identity_grad(params):
    return params


def _loss(params):
    return sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(params))


def _set(tree, value, where="scale"):
    """``tree`` with its leaf ``where`` (``"scale"``: the scalar; ``"b"``: the bias) replaced by ``value``."""
    if where == "scale":
        return {**tree, "scale": (value,)}
    return {**tree, "dense": {**tree["dense"], where: value}}


def _traced(tx, updates=G, params=P, init_params=None, state=None, **extra):
    """One update of ``tx``, traced abstractly; the state is ``tx.init(init_params or params)`` unless given."""

    def run():
        start = tx.init(params if init_params is None else init_params) if state is None else state
        return tx.update(updates, start, params, **extra)

    return lambda: jax.eval_shape(run)


def _cases(transforms, pattern, **kwargs):
    return [(_traced(tx, **kwargs), pattern) for tx in transforms]


BROADCAST = r"which does not broadcast to updates\['dense'\]\['b'\] of shape \(2,\): a hyperparameter must be a scalar"
NONE_RULE = r"a leaf that is None in the params at init \(no parameter\) must be None in the updates and the state too"
NOT_A_KEY = r"must be a PRNG key \(jax\.random\.key\(seed\) or jax\.random\.PRNGKey\(seed\)\), got"
WRAPPERS = {
    "apply_if_finite": gf.apply_if_finite(gf.adam(LR), 5),
    "multi_steps": gf.multi_steps(gf.adam(LR), 2),
    "flatten": gf.flatten(gf.adam(LR)),
    "named_chain": gf.named_chain(("adam", gf.adam(LR))),
    "scale_by_schedule": gf.scale_by_schedule(gf.linear_schedule(-LR, 0.0, 4)),
    "partition": gf.partition({"a": gf.adam(LR)}, "a"),
    "masked": gf.masked(gf.adam(LR), True),
    "lookahead": gf.lookahead(gf.adam(LR), 2, 0.5),
}
SECOND_ORDER = [
    gf.newton(1.0, damping=1.0),
    gf.curvature_step(),
    gf.lbfgs(LR, linesearch=None),
    gf.chain(gf.sgd(LR), gf.scale_by_backtracking_linesearch(5)),
    gf.chain(gf.sgd(LR), gf.scale_by_zoom_linesearch(5)),
]
EXTRA = {"grad_fn": _identity_grad, "value_fn": _loss, "value": jnp.float32(1.0)}

ERRORS = [
    # --- hyperparameter arrays: a scalar, or broadcast to every leaf ---------------------------------------------
    error_probe(
        "hyperparameter-array-learning-rate-wrong-shape",
        ValueError,
        (
            _traced(gf.adam(jnp.ones(3))),
            rf"ScaleByLearningRate\): the hyperparameter learning_rate .* shape \(3,\), {BROADCAST}",
        ),
        (_traced(gf.sgd(jnp.ones((3, 2)))), rf"learning_rate .* shape \(3, 2\), {BROADCAST}"),
    ),
    error_probe(
        "hyperparameter-array-moment-decay-wrong-shape",
        ValueError,
        (_traced(gf.adam(LR, b1=jnp.full(3, 0.9))), rf"the hyperparameter decay .* shape \(3,\), {BROADCAST}"),
        (_traced(gf.rmsprop(LR, decay=jnp.full(4, 0.9))), rf"the hyperparameter decay .* shape \(4,\), {BROADCAST}"),
    ),
    error_probe(
        "hyperparameter-array-would-grow-a-leaf",
        ValueError,
        (
            _traced(gf.sgd(LR, momentum=jnp.full(2, 0.9))),
            r"decay .* has shape \(2,\), which does not broadcast to updates\['scale'\]\[0\] of shape \(\)",
        ),
    ),
    error_probe(
        "hyperparameter-array-in-schedule-noise-injected",
        ValueError,
        (_traced(gf.sgd(gf.linear_schedule(jnp.ones(3), 0.0, 10))), rf"init_value .* shape \(3,\), {BROADCAST}"),
        (_traced(gf.chain(gf.add_noise(jnp.ones(3), 0.5, key=0))), rf"AddNoise.eta\) has shape \(3,\), {BROADCAST}"),
        (_traced(gf.inject_hyperparams(gf.adam)(learning_rate=jnp.ones(3))), rf"learning_rate .*{BROADCAST}"),
    ),
    # --- None leaves on one side only --------------------------------------------------------------------------
    error_probe(
        "none-leaf-params-only",
        gf.TreeMismatchError,
        *_cases(
            [gf.adamw(LR), gf.lion(LR), gf.lars(LR), gf.adafactor(LR), gf.sgd(LR)],
            r"params\['scale'\]\[0\] is None but updates\['scale'\]\[0\] is an array of shape \(\): " + NONE_RULE,
            params=_set(P, None),
            init_params=P,
        ),
    ),
    error_probe(
        "none-leaf-init-only",
        gf.TreeMismatchError,
        *_cases(
            [gf.adam(LR), gf.sgd(LR, momentum=0.9), gf.adagrad(LR), gf.rprop(LR), gf.inject_hyperparams(gf.adam)(LR)],
            r"state\.\w+\['scale'\]\[0\] is None but updates\['scale'\]\[0\] is an array",
            init_params=_set(P, None),
        ),
    ),
    error_probe(
        "none-update-where-state-is-kept",
        gf.TreeMismatchError,
        *_cases(
            [gf.adam(LR), gf.yogi(LR), gf.lookahead(gf.adam(LR), 2, 0.5)],
            r"updates\['scale'\]\[0\] is None but \w+\.\w+\['scale'\]\[0\] is an array",
            updates=_set(G, None),
        ),
    ),
    error_probe(
        "none-update-second-order",
        gf.TreeMismatchError,
        *_cases(
            SECOND_ORDER,
            r"updates\['scale'\]\[0\] is None but (params|state\.\w+)\['scale'\]\[0\] is an array",
            updates=_set(G, None),
            **EXTRA,
        ),
    ),
    error_probe(
        "none-param-apply-updates",
        gf.TreeMismatchError,
        (lambda: gf.apply_updates(_set(P, None), G), r"params\['scale'\]\[0\] is None but updates\['scale'\]\[0\]"),
    ),
    # --- complex numbers -----------------------------------------------------------------------------------------
    error_probe(
        "complex-refused-by-ordering-transforms",
        TypeError,
        (_traced(gf.clip(0.5), GZ, Z), r"clip: updates\['m'\] has dtype complex64, but clip takes real numbers only"),
        (_traced(gf.rprop(LR), GZ, Z), r"scale_by_rprop: updates\['m'\] has dtype complex64, but scale_by_rprop"),
        (_traced(gf.keep_params_nonnegative(), GZ, Z), r"keep_params_nonnegative: params\['m'\] has dtype complex64"),
        (_traced(gf.chain(gf.clip_by_global_norm(1.0), gf.clip(0.5)), GZ, Z), r"clip: updates\['m'\]"),
    ),
    error_probe(
        "complex-refused-by-second-order",
        TypeError,
        *_cases(
            SECOND_ORDER,
            r"(scale_by_\w+): params\['m'\] has dtype complex64, but \1 takes real numbers only",
            updates=GZ,
            params=Z,
            **EXTRA,
        ),
    ),
    error_probe(
        "complex-update-real-param",
        TypeError,
        *_cases(
            [gf.adam(LR), gf.sgd(LR), gf.apply_if_finite(gf.sgd(LR), 5)],
            r"updates\['dense'\]\['b'\] has dtype complex64 but params\['dense'\]\['b'\] has dtype float32: a complex "
            r"update needs a complex parameter",
            updates=jax.tree.map(lambda x: x.astype(jnp.complex64), G),
        ),
    ),
    # --- PRNG keys -----------------------------------------------------------------------------------------------
    error_probe(
        "add-noise-key-not-a-key",
        TypeError,
        (lambda: gf.add_noise(0.01, 0.55, key=1.5), rf"add_noise: key {NOT_A_KEY} 1\.5"),
        (lambda: gf.add_noise(0.01, 0.55, key="0"), rf"add_noise: key {NOT_A_KEY} '0'"),
        (lambda: gf.add_noise(0.01, 0.55, key=True), rf"add_noise: key {NOT_A_KEY} True"),
        (lambda: gf.add_noise(0.01, 0.55, key=jnp.ones(3, jnp.uint32)), rf"add_noise: key {NOT_A_KEY} Array"),
        (lambda: gf.add_noise(0.01, 0.55, key=jnp.zeros(2)), rf"add_noise: key {NOT_A_KEY} Array"),
        (lambda: gf.add_noise(0.01, 0.55, seed=2.0), rf"add_noise: seed {NOT_A_KEY} 2\.0"),
    ),
    error_probe(
        "add-noise-state-key-not-a-key",
        TypeError,
        (
            _traced(gf.add_noise(0.01, 0.55, key=0), state=AddNoiseState(jnp.int32(0), 5)),
            rf"add_noise: state\.rng_key {NOT_A_KEY} 5",
        ),
    ),
    error_probe(
        "add-noise-batch-of-keys",
        ValueError,
        (
            lambda: gf.add_noise(0.01, 0.55, key=jax.random.split(jax.random.key(0), 2)),
            r"add_noise: key must be a single PRNG key \(shape \(\)\), got shape \(2,\)",
        ),
        (
            lambda: gf.add_noise(0.01, 0.55, key=jnp.zeros((3, 2), jnp.uint32)),
            r"add_noise: key must be a single PRNG key \(shape \(\)\), got shape \(3,\)",
        ),
    ),
    # --- leaves that are not floating-point arrays, at every wrapper -------------------------------------------
    error_probe(
        "string-update-leaf-every-wrapper",
        TypeError,
        *_cases(WRAPPERS.values(), r"updates\['scale'\]\[0\] is a str \('x'\), not an array", updates=_set(G, "x")),
    ),
    error_probe(
        "bool-update-leaf-every-wrapper",
        TypeError,
        *_cases(
            WRAPPERS.values(), r"updates\['dense'\]\['b'\] has dtype bool", updates=_set(G, jnp.ones(2, bool), "b")
        ),
    ),
    error_probe(
        "integer-param-at-update",
        TypeError,
        *_cases(
            [gf.sgd(LR), gf.adamw(LR), *SECOND_ORDER],
            r"params\['dense'\]\['b'\] has dtype int32: gradflow updates floating-point arrays only",
            params=_set(P, jnp.ones(2, jnp.int32), "b"),
            init_params=P,
            **EXTRA,
        ),
    ),
    # --- params that do not match the updates ---------------------------------------------------------------------
    error_probe(
        "params-mismatch-line-search",
        gf.TreeMismatchError,
        (
            _traced(SECOND_ORDER[3], params={"dense": P["dense"]}, init_params=P, **EXTRA),
            r"updates\['scale'\]\[0\] has no counterpart in params",
        ),
        (
            _traced(SECOND_ORDER[4], params=_set(P, jnp.ones(3)), init_params=P, **EXTRA),
            r"updates\['scale'\]\[0\] has shape \(\) but params\['scale'\]\[0\] has shape \(3,\)",
        ),
    ),
    error_probe(
        "updates-wrong-shape-stale-gradients",
        gf.TreeMismatchError,
        (
            _traced(gf.chain(gf.stale_gradients(2), gf.sgd(LR)), updates=_set(G, jnp.ones(3))),
            r"updates\['scale'\]\[0\] has shape \(3,\) but params\['scale'\]\[0\] has shape \(\)",
        ),
    ),
    # --- a state that is not the one init returned -------------------------------------------------------------
    error_probe(
        "wrapper-given-another-optimizers-state",
        ValueError,
        *[
            (_traced(WRAPPERS[name], state=gf.adam(LR).init(P)), rf"{name} needs the \w+State that its init returned")
            for name in ("apply_if_finite", "multi_steps", "partition", "masked")
        ],
        (_traced(gf.lbfgs(LR, linesearch=None), state=gf.adam(LR).init(P)), r"got a ScaleByAdamState as its state"),
    ),
    # --- extra arguments -----------------------------------------------------------------------------------------
    error_probe(
        "extra-value-not-a-real-scalar",
        TypeError,
        (_traced(gf.polyak_sgd(), value="1.0"), r"scale_by_polyak: value must be a real number \(the loss at params\)"),
        (_traced(gf.polyak_sgd(), value=jnp.ones((), jnp.complex64)), r"scale_by_polyak: value .* dtype complex64"),
        (
            _traced(SECOND_ORDER[3], value="1.0", value_fn=_loss),
            r"scale_by_backtracking_linesearch: value must be a real number",
        ),
    ),
    error_probe(
        "extra-function-not-callable",
        TypeError,
        (_traced(gf.nag(LR), grad_fn=3.0), r"look-ahead gradient: grad_fn must be a function, got 3\.0"),
        (_traced(gf.newton(1.0), grad_fn="grad"), r"scale_by_newton: grad_fn must be a function, got 'grad'"),
        (_traced(SECOND_ORDER[4], value_fn=0.0), r"scale_by_zoom_linesearch: value_fn must be a function, got 0\.0"),
    ),
]


@pytest.mark.parametrize("probe", ERRORS)
def test_update_error_names_the_culprit(probe):
    probe()


# --- documented safe behaviour, checked with numbers -----------------------------------------------------------------


def _leaves(tree):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(tree)]


def _np_clip_by_global_norm(tree, max_norm):
    """NumPy, in float64: u · max_norm / max(‖u‖, max_norm), zeros where ‖u‖ = max_norm = 0."""
    leaves = _leaves(tree)
    norm = np.sqrt(sum(np.sum(x**2) for x in leaves))
    factor = 1.0 if norm <= max_norm else max_norm / norm
    return [x * factor for x in leaves]


@jax.jit
def _clip_step(max_norm, updates):
    """clip_by_global_norm's updates and their derivative (sum of the clipped updates) for a traced max_norm."""

    def clipped_sum(u):
        out, _ = gf.clip_by_global_norm(max_norm).update(u, gf.EmptyState())
        return sum(jnp.sum(x) for x in jax.tree.leaves(out)), out

    (_, out), derivative = jax.value_and_grad(clipped_sum, has_aux=True)(updates)
    return out, derivative


def clip_by_global_norm_zero_max_norm():
    """max_norm = 0: an all-zero gradient gives zero updates (not 0/0 = NaN) with derivative 1, any other gives
    zeros; max_norm > 0 on a zero gradient too (derivative finite)."""
    zeros = jax.tree.map(jnp.zeros_like, G)
    for max_norm, updates in ((0.0, zeros), (0.0, G), (1.0, zeros), (1.0, G)):
        out, derivative = _clip_step(jnp.float32(max_norm), updates)
        for got, want in zip(_leaves(out), _np_clip_by_global_norm(updates, max_norm)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
        assert all(np.isfinite(x).all() for x in _leaves(derivative)), (max_norm, derivative)


def global_norm_low_precision_in_float32():
    """float16 and bfloat16 leaves whose squares overflow their own dtype (300² · 1000 > 65504): the norm is
    summed in float32 and equals NumPy's in float64; clip_by_global_norm returns float16 updates equal to
    NumPy's clip (where the float16 sum of squares would give inf and a zero step)."""
    for dtype in (jnp.float16, jnp.bfloat16):
        updates = {"w": jnp.full((1000,), 300.0, dtype), "b": jnp.full((3,), -2.0, dtype)}
        norm = gf.tree.global_norm(updates)
        assert norm.dtype == jnp.float32
        np.testing.assert_allclose(float(norm), np.sqrt(1000 * 300.0**2 + 3 * 4.0), rtol=1e-6)
        out, _ = _clip_step(jnp.float32(1.0), updates)
        assert all(x.dtype == dtype for x in jax.tree.leaves(out))
        for got, want in zip(_leaves(out), _np_clip_by_global_norm(updates, 1.0)):
            np.testing.assert_allclose(got, want, rtol=1e-2)


def global_norm_squares_overflow_float32():
    """float32 and complex64 entries whose squares overflow float32 while the norm does not, beside a zero-size
    leaf: clip_by_global_norm rescales by the largest part and equals NumPy's clip in float64."""
    updates = {"z": jnp.array([1e19 + 1e19j, 1e19j], jnp.complex64), "w": jnp.array([2e19]), "e": jnp.zeros((0,))}
    out, _ = gf.clip_by_global_norm(1.0).update(updates, gf.EmptyState())
    entries = np.array([2e19, 1e19 + 1e19j, 1e19j])  # the leaves in flattening order: e, w, z
    expected = entries / np.linalg.norm(entries)
    np.testing.assert_allclose(np.concatenate([np.ravel(x) for x in jax.tree.leaves(out)]), expected, rtol=1e-6)
    assert out["e"].shape == (0,) and out["z"].dtype == jnp.complex64


def per_leaf_norms_low_precision():
    """clip_by_block_rms, the trust ratio and Adafactor's parameter scale on float16 leaves whose sum of squares
    overflows float16: NumPy's numbers in float64, in float16."""
    u = jnp.full((1000,), 300.0, jnp.float16)
    p = jnp.full((1000,), 400.0, jnp.float16)
    rms = np.sqrt(np.mean(np.asarray(u, np.float64) ** 2))
    out, _ = gf.clip_by_block_rms(1.0).update(u, gf.EmptyState())
    assert out.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(out, np.float64), np.asarray(u, np.float64) / rms, rtol=1e-3)
    tx = gf.scale_by_trust_ratio()
    out, _ = tx.update(u, tx.init(p), p)
    ratio = np.linalg.norm(np.asarray(p, np.float64)) / np.linalg.norm(np.asarray(u, np.float64))
    assert out.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(out, np.float64), np.asarray(u, np.float64) * ratio, rtol=1e-3)
    small, tx = jnp.full((1000,), 0.1, jnp.float16), scale_by_param_block_rms()
    out, _ = tx.update(small, tx.init(p), p)
    assert out.dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(out, np.float64), np.asarray(small, np.float64) * 400.0, rtol=1e-3)


NORM_BASED = {
    "clip_by_global_norm": gf.clip_by_global_norm(0.0),
    "clip_by_block_rms": gf.clip_by_block_rms(1.0),
    "adaptive_grad_clip": gf.adaptive_grad_clip(0.1, eps=0.0),
    "normalize_by_update_norm": gf.normalize_by_update_norm(eps=0.0),
    "scale_by_trust_ratio": gf.scale_by_trust_ratio(),
    "lars": gf.lars(0.1),
    "lamb": gf.lamb(0.1),
    "novograd": gf.novograd(0.1),
    "polyak_sgd": gf.polyak_sgd(),
    "clipped_polyak_sgd": gf.clipped_polyak_sgd(0.1),
}


# Adam-like denominators √v with v = g² (or ‖g‖²): the derivative with respect to an exactly zero gradient is
# NaN there (0·∞), as in optax; their values are checked.
SQRT_OF_SQUARE = {"lamb", "novograd"}


def zero_norm_is_never_nan():
    """A zero gradient at zero parameters through every norm-based transform: zero updates (NumPy's answer: a
    zero step) and, but for SQRT_OF_SQUARE, finite derivatives with respect to the gradient, in one program."""
    zeros = jax.tree.map(jnp.zeros_like, P)

    @jax.jit
    def run(g):
        out = {}
        for name, tx in NORM_BASED.items():

            def total(g, tx=tx):
                updates, _ = tx.update(g, tx.init(zeros), zeros, value=jnp.float32(0.0))
                return sum(jnp.sum(x) for x in jax.tree.leaves(updates)), updates

            out[name] = jax.value_and_grad(total, has_aux=True)(g)
        return out

    for name, ((_, updates), derivative) in run(zeros).items():
        assert all(np.all(x == 0) for x in _leaves(updates)), name
        assert name in SQRT_OF_SQUARE or all(np.isfinite(x).all() for x in _leaves(derivative)), name


def _run(tx, params, grads, steps=3, **extra):
    state = tx.init(params)
    for k in range(steps):
        g = jax.tree.map(lambda x, k=k: x * (1 + k), grads)
        updates, state = tx.update(g, state, params, **extra)
        params = optax.apply_updates(params, updates)
    return params


COMPLEX_PAIRS = {
    "rmsprop_centered": (gf.rmsprop(0.1, centered=True, momentum=0.9), optax.rmsprop(0.1, centered=True, momentum=0.9)),
    "adagrad": (gf.adagrad(0.1), optax.adagrad(0.1)),
    "lion": (gf.lion(0.1), optax.lion(0.1)),
    "yogi": (gf.yogi(0.1), optax.yogi(0.1)),
    "adabelief": (gf.adabelief(0.1), optax.adabelief(0.1)),
    "novograd": (gf.novograd(0.1), optax.novograd(0.1)),
    "lamb": (gf.lamb(0.1), optax.lamb(0.1)),
    "lars": (gf.lars(0.1), optax.lars(0.1)),
    "adafactor": (gf.adafactor(0.1), optax.adafactor(0.1)),
    "clip_by_global_norm": (gf.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0)),
    "clip_by_block_rms": (gf.clip_by_block_rms(0.5), optax.clip_by_block_rms(0.5)),
    "adaptive_grad_clip": (gf.adaptive_grad_clip(0.1), optax.adaptive_grad_clip(0.1)),
    "normalize_by_update_norm": (gf.normalize_by_update_norm(), optax.normalize_by_update_norm()),
    "schedule_free_adamw": (gf.schedule_free_adamw(0.1), optax.contrib.schedule_free_adamw(0.1)),
}


def complex_params_match_optax_everywhere():
    """The complex-capable transforms (beyond Adam and SGD, tests/test_bad_inputs.py) equal optax over three
    steps on complex64 parameters, in one program; the parameters stay complex64."""

    @jax.jit
    def run():
        return {name: (_run(ours, Z, GZ), _run(theirs, Z, GZ)) for name, (ours, theirs) in COMPLEX_PAIRS.items()}

    for name, (ours, theirs) in run().items():
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
            assert a.dtype == jnp.complex64, name
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=name)


def adadelta_complex_uses_squared_magnitude():
    """Adadelta on complex parameters (Zeiler, 2012, with |·|² as Adam's complex moments): NumPy's recursion.
    optax squares the complex update itself (Δ², not |Δ|²), a complex "mean square": documented difference."""
    rho, eps, lr = 0.9, 1e-6, 0.1
    z, e_g, e_x = np.asarray(Z["z"], np.complex128), 0.0, 0.0
    for k in range(3):
        g = np.asarray(GZ["z"], np.complex128) * (1 + k)
        e_g = rho * e_g + (1 - rho) * np.abs(g) ** 2
        delta = np.sqrt(e_x + eps) / np.sqrt(e_g + eps) * g
        e_x = rho * e_x + (1 - rho) * np.abs(delta) ** 2
        z = z - lr * delta
    ours = _run(gf.adadelta(lr, rho=rho, eps=eps), {"z": Z["z"]}, {"z": GZ["z"]})
    np.testing.assert_allclose(ours["z"], z, rtol=1e-5)


def add_noise_accepts_what_optax_accepts():
    """An integer seed (Python, NumPy, 0-d array) or a typed key gives optax's noise for the same key; a raw
    key (jax.random.PRNGKey, which optax refuses) gives the typed key's noise."""
    g = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    expected = _run(optax.add_noise(0.01, 0.55, key=jax.random.key(3)), g, g, steps=2)
    for key in (3, np.int64(3), jnp.int32(3), jax.random.key(3), jax.random.PRNGKey(3)):
        ours = _run(gf.add_noise(0.01, 0.55, key=key), g, g, steps=2)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(expected)):
            np.testing.assert_array_equal(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seed is optax's deprecated spelling
        theirs = _run(optax.add_noise(0.01, 0.55, seed=3), g, g, steps=2)
    ours = _run(gf.add_noise(0.01, 0.55, seed=3), g, g, steps=2)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)))


def per_leaf_hyperparameter_that_broadcasts():
    """A learning rate of shape (2,) on leaves whose last axis is 2 (and the momentum of shape (1,)): SGD with
    momentum equals NumPy's per-coordinate rule over two steps."""
    params = {"w": P["dense"]["w"], "b": P["dense"]["b"]}
    grads = {"w": G["dense"]["w"], "b": G["dense"]["b"]}
    lr, mu = np.array([0.1, 0.2]), np.array([0.5])
    tx = gf.sgd(jnp.asarray(lr, jnp.float32), momentum=jnp.asarray(mu, jnp.float32))
    state, theta = tx.init(params), params
    expected = {k: np.asarray(v, np.float64) for k, v in params.items()}
    trace = {k: 0.0 for k in params}
    for _ in range(2):
        updates, state = tx.update(grads, state, theta)
        theta = gf.apply_updates(theta, updates)
        for k in params:
            trace[k] = np.asarray(grads[k], np.float64) + mu * trace[k]
            expected[k] = expected[k] - lr * trace[k]
    for k in params:
        np.testing.assert_allclose(theta[k], expected[k], rtol=1e-6)


def frozen_none_update():
    """An update that is None where a parameter exists (a frozen parameter) with a stateless optimizer that
    reads the params (weight decay, then SGD): that parameter is unchanged bit for bit, the others follow NumPy."""
    tx = gf.chain(gf.add_decayed_weights(0.1), gf.sgd(0.5))
    updates, _ = tx.update(_set(G, None), tx.init(P), P)
    new = gf.apply_updates(P, updates)
    assert updates["scale"][0] is None and new["scale"][0] is P["scale"][0]
    expected = np.asarray(P["dense"]["b"]) - 0.5 * (np.asarray(G["dense"]["b"]) + 0.1 * np.asarray(P["dense"]["b"]))
    np.testing.assert_allclose(new["dense"]["b"], expected, rtol=1e-6)


def python_number_update_leaves():
    """Python floats as update leaves (as optax accepts): SGD inside each wrapper gives NumPy's −η·g in float32,
    and L-BFGS's first step (no curvature pairs yet) −η·g/max(‖g‖, 1), as optax's."""
    floats = {"a": 0.5, "b": jnp.array([1.0, -2.0])}
    params = {"a": jnp.float32(1.0), "b": jnp.zeros(2)}
    g = np.array([0.5, 1.0, -2.0])
    sgd = gf.sgd(0.1)
    wrappers = (gf.apply_if_finite(sgd, 5), gf.multi_steps(sgd, 1), gf.named_chain(("sgd", sgd)))
    for tx, scale in [*[(w, 1.0) for w in wrappers], (gf.lbfgs(0.1, linesearch=None), 1 / np.linalg.norm(g))]:
        updates, _ = tx.update(floats, tx.init(params), params)
        assert updates["a"].dtype == jnp.float32, tx
        np.testing.assert_allclose([updates["a"], *updates["b"]], -0.1 * scale * g, rtol=1e-6)


SAFE = [
    safe_probe(clip_by_global_norm_zero_max_norm, "clip-by-global-norm-zero-max-norm-zero-gradient"),
    safe_probe(global_norm_low_precision_in_float32, "global-norm-float16-bf16-summed-in-float32"),
    safe_probe(global_norm_squares_overflow_float32, "clip-by-global-norm-squares-overflow-complex-zero-size"),
    safe_probe(per_leaf_norms_low_precision, "block-rms-trust-ratio-float16-norms"),
    safe_probe(zero_norm_is_never_nan, "zero-norm-never-nan-every-norm-based-transform"),
    safe_probe(complex_params_match_optax_everywhere, "complex-params-match-optax-fourteen-transforms"),
    safe_probe(adadelta_complex_uses_squared_magnitude, "adadelta-complex-squared-magnitude"),
    safe_probe(add_noise_accepts_what_optax_accepts, "add-noise-int-seed-and-keys-as-optax"),
    safe_probe(per_leaf_hyperparameter_that_broadcasts, "hyperparameter-array-broadcasting-per-coordinate"),
    safe_probe(frozen_none_update, "none-update-frozen-parameter"),
    safe_probe(python_number_update_leaves, "python-float-update-leaves"),
]


@pytest.mark.parametrize("probe", SAFE)
def test_update_edge_case_has_documented_safe_behaviour(probe):
    probe()


def test_probe_ids_are_distinct():
    ids = [p.id for p in ERRORS + SAFE]
    assert len(ERRORS) + len(SAFE) >= 25 and len(set(ids)) == len(ids)
