"""Every named optimizer, step by step in float64, against its textbook rule in NumPy (tests/textbook.py).

The test function is non-quadratic and couples the two leaves of a dict of params, so that every
statistic (moving averages, running maxima, bias corrections, look-ahead gradients) sees gradients that
change in size and sign from step to step. Every step's parameters must agree with the NumPy reference
to rtol 1e-10.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradflow
from gradflow import optimizers

try:  # tests/ is a rootdir-relative directory without __init__.py (pytest's "prepend" import mode)
    import textbook as tb
except ImportError:  # pragma: no cover - tests/ made a package
    from tests import textbook as tb

STEPS = 30
RTOL = 1e-10

C = np.array([0.5, -1.0, 2.0])
D = np.array([[1.0, -0.5], [0.3, 2.0]])
THETA0 = {"a": np.array([1.3, 0.2, -0.7]), "b": np.array([[0.4, -1.2], [1.5, 0.1]])}


def loss(params):
    """Σ log cosh(a − c) + ¼Σ(b − d)⁴ + ½Σb² + 0.1·(a₀a₁ + a₂b₀₀): smooth, non-quadratic, coupled."""
    a, b = params["a"], params["b"]
    return (
        jnp.sum(jnp.log(jnp.cosh(a - C)))
        + 0.25 * jnp.sum((b - D) ** 4)
        + 0.5 * jnp.sum(b**2)
        + 0.1 * (a[0] * a[1] + a[2] * b[0, 0])
    )


def numpy_grad(theta: np.ndarray) -> np.ndarray:
    """The analytic gradient of :func:`loss` on the flat vector (a, vec(b)), in NumPy."""
    a, b = theta[:3], theta[3:].reshape(2, 2)
    ga = np.tanh(a - C) + 0.1 * np.array([a[1], a[0], b[0, 0]])
    gb = (b - D) ** 3 + b
    gb[0, 0] += 0.1 * a[2]
    return np.concatenate([ga, gb.ravel()])


def flatten(params) -> np.ndarray:
    return np.concatenate([np.asarray(params["a"]).ravel(), np.asarray(params["b"]).ravel()])


THETA0_FLAT = flatten(THETA0)


GRAD_FN = jax.jit(jax.grad(loss))


@jax.jit
def _step(tx, params, state):
    """One step of any optimizer: ``tx`` is an argument (pytree data), so this is the one shared step.

    ``grad_fn`` is passed to every optimizer: NAG needs it, the others must ignore it.
    """
    updates, state = tx.update(GRAD_FN(params), state, params, grad_fn=GRAD_FN)
    return gradflow.apply_updates(params, updates), state


def run_gradflow(tx, steps: int = STEPS) -> list[np.ndarray]:
    """Run ``tx`` in float64 on :func:`loss`; return the flat params after each step (θ₀ first)."""
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), THETA0)
    state = tx.init(params)
    out = [flatten(params)]
    for _ in range(steps):
        params, state = _step(tx, params, state)
        assert params["a"].dtype == jnp.float64 and params["b"].dtype == jnp.float64
        out.append(flatten(params))
    return out


# (id, gradflow optimizer factory, NumPy reference, reference hyperparameters)
CASES = [
    ("sgd", lambda: gradflow.sgd(0.05), tb.run_sgd, dict(learning_rate=0.05)),
    ("sgd_momentum", lambda: gradflow.sgd(0.05, momentum=0.9), tb.run_momentum, dict(learning_rate=0.05, momentum=0.9)),
    (
        "sgd_momentum_seed_form",
        lambda: gradflow.sgd(0.05, momentum=0.9),
        tb.run_momentum_seed,
        dict(learning_rate=0.05, momentum=0.9),
    ),
    (
        "sgd_nesterov",
        lambda: gradflow.sgd(0.05, momentum=0.9, nesterov=True),
        tb.run_nesterov,
        dict(learning_rate=0.05, momentum=0.9),
    ),
    ("nag", lambda: gradflow.nag(0.05, momentum=0.9), tb.run_nag, dict(learning_rate=0.05, momentum=0.9)),
    ("nag_momentum_0.5", lambda: gradflow.nag(0.1, momentum=0.5), tb.run_nag, dict(learning_rate=0.1, momentum=0.5)),
    (
        "adagrad_optax_defaults",
        lambda: gradflow.adagrad(0.3),
        tb.run_adagrad,
        dict(learning_rate=0.3, initial_accumulator_value=0.1, eps=1e-7),
    ),
    (
        "adagrad_textbook",
        lambda: gradflow.adagrad(0.3, initial_accumulator_value=0.0, eps=1e-10),
        tb.run_adagrad,
        dict(learning_rate=0.3, initial_accumulator_value=0.0, eps=1e-10),
    ),
    ("rmsprop", lambda: gradflow.rmsprop(0.01), tb.run_rmsprop, dict(learning_rate=0.01)),
    (
        "rmsprop_decay_eps",
        lambda: gradflow.rmsprop(0.02, decay=0.7, eps=1e-3, initial_scale=0.5),
        tb.run_rmsprop,
        dict(learning_rate=0.02, decay=0.7, eps=1e-3, initial_scale=0.5),
    ),
    (
        "rmsprop_eps_outside_root",
        lambda: gradflow.rmsprop(0.02, eps=1e-3, eps_in_sqrt=False),
        tb.run_rmsprop,
        dict(learning_rate=0.02, eps=1e-3, eps_in_sqrt=False),
    ),
    (
        "rmsprop_bias_correction",
        lambda: gradflow.rmsprop(0.02, bias_correction=True),
        tb.run_rmsprop,
        dict(learning_rate=0.02, bias_correction=True),
    ),
    (
        "rmsprop_centered",
        lambda: gradflow.rmsprop(0.01, centered=True),
        tb.run_rmsprop,
        dict(learning_rate=0.01, centered=True),
    ),
    # eps 1e-2 here: with bias correction the centered variance E[g²] − E[g]² of the first step is exactly 0,
    # so with a tiny eps the first step is η·g/√eps and both sides' rounding of that cancellation is
    # magnified by g²/eps (1e4 at eps = 1e-4; checked against a long-double reference: no gradflow bug).
    (
        "rmsprop_centered_bias_correction",
        lambda: gradflow.rmsprop(0.01, decay=0.8, centered=True, bias_correction=True, eps=1e-2),
        tb.run_rmsprop,
        dict(learning_rate=0.01, decay=0.8, centered=True, bias_correction=True, eps=1e-2),
    ),
    (
        "rmsprop_momentum",
        lambda: gradflow.rmsprop(0.01, momentum=0.9),
        tb.run_rmsprop,
        dict(learning_rate=0.01, momentum=0.9),
    ),
    (
        "rmsprop_momentum_nesterov",
        lambda: gradflow.rmsprop(0.01, momentum=0.9, nesterov=True),
        tb.run_rmsprop,
        dict(learning_rate=0.01, momentum=0.9, nesterov=True),
    ),
    (
        "rmsprop_centered_momentum",
        lambda: gradflow.rmsprop(0.01, centered=True, momentum=0.5),
        tb.run_rmsprop,
        dict(learning_rate=0.01, centered=True, momentum=0.5),
    ),
    ("adadelta_no_learning_rate", lambda: gradflow.adadelta(), tb.run_adadelta, dict(learning_rate=1.0)),
    (
        "adadelta_learning_rate_weight_decay",
        lambda: gradflow.adadelta(5.0, rho=0.95, eps=1e-4, weight_decay=0.01),
        tb.run_adadelta,
        dict(learning_rate=5.0, rho=0.95, eps=1e-4, weight_decay=0.01),
    ),
    ("adam", lambda: gradflow.adam(0.05), tb.run_adam, dict(learning_rate=0.05)),
    (
        "adam_seed_form_eps_in_root",
        lambda: gradflow.adam(0.05, eps=0.0, eps_root=1e-8),
        tb.run_adam,
        dict(learning_rate=0.05, eps=0.0, eps_root=1e-8),
    ),
    (
        "adam_betas_both_eps",
        lambda: gradflow.adam(0.05, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
        tb.run_adam,
        dict(learning_rate=0.05, b1=0.8, b2=0.95, eps=1e-3, eps_root=1e-4),
    ),
    ("adamw", lambda: gradflow.adamw(0.05), tb.run_adamw, dict(learning_rate=0.05)),
    (
        "adamw_weight_decay",
        lambda: gradflow.adamw(0.05, weight_decay=0.1),
        tb.run_adamw,
        dict(learning_rate=0.05, weight_decay=0.1),
    ),
    ("nadam", lambda: gradflow.nadam(0.05), tb.run_nadam, dict(learning_rate=0.05)),
    (
        "nadam_betas_eps_root",
        lambda: gradflow.nadam(0.05, b1=0.8, b2=0.95, eps=0.0, eps_root=1e-8),
        tb.run_nadam,
        dict(learning_rate=0.05, b1=0.8, b2=0.95, eps=0.0, eps_root=1e-8),
    ),
    ("adamax", lambda: gradflow.adamax(0.05), tb.run_adamax, dict(learning_rate=0.05)),
    (
        "adamax_betas_eps",
        lambda: gradflow.adamax(0.05, b1=0.8, b2=0.9, eps=1e-3),
        tb.run_adamax,
        dict(learning_rate=0.05, b1=0.8, b2=0.9, eps=1e-3),
    ),
    ("amsgrad_optax_form", lambda: gradflow.amsgrad(0.05), tb.run_amsgrad, dict(learning_rate=0.05)),
    (
        "amsgrad_paper_form",
        lambda: gradflow.amsgrad(0.05, bias_correction_mu=False, bias_correction_nu=False),
        tb.run_amsgrad,
        dict(learning_rate=0.05, bias_correction_mu=False, bias_correction_nu=False),
    ),
    (
        "amsgrad_corrected_mu_raw_nu",
        lambda: gradflow.amsgrad(0.05, b2=0.9, bias_correction_nu=False, eps_root=1e-8),
        tb.run_amsgrad,
        dict(learning_rate=0.05, b2=0.9, bias_correction_nu=False, eps_root=1e-8),
    ),
    ("lion", lambda: gradflow.lion(0.01), tb.run_lion, dict(learning_rate=0.01)),
    (
        "lion_weight_decay",
        lambda: gradflow.lion(0.02, b1=0.8, b2=0.95, weight_decay=0.5),
        tb.run_lion,
        dict(learning_rate=0.02, b1=0.8, b2=0.95, weight_decay=0.5),
    ),
    ("sign_sgd", lambda: gradflow.sign_sgd(0.01), tb.run_sign_sgd, dict(learning_rate=0.01)),
    ("signum", lambda: gradflow.signum(0.01), tb.run_signum, dict(learning_rate=0.01)),
    ("signum_beta", lambda: gradflow.signum(0.02, beta=0.5), tb.run_signum, dict(learning_rate=0.02, beta=0.5)),
]


@pytest.mark.parametrize(("factory", "reference", "hyper"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_step_matches_textbook(factory, reference, hyper):
    with jax.enable_x64(True):
        got = run_gradflow(factory())
    want = reference(numpy_grad, THETA0_FLAT, STEPS, **hyper)
    assert len(got) == len(want) == STEPS + 1
    for t, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=0, err_msg=f"step {t}")
    # The run must actually move (a reference that leaves θ alone would match a broken optimizer).
    assert np.max(np.abs(want[-1] - want[0])) > 1e-3


def test_every_optimizer_is_covered():
    """Every optimizer of the seeds has a case here (the other families have their references beside their tests)."""
    covered = {c[0] for c in CASES}
    for name in optimizers.classic.__all__:
        assert any(case == name or case.startswith(name + "_") for case in covered), name


def test_numpy_gradient_matches_jax():
    """The reference's analytic gradient is the gradient of the loss that gradflow differentiates."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        for _ in range(5):
            theta = rng.normal(size=7)
            params = {"a": jnp.asarray(theta[:3]), "b": jnp.asarray(theta[3:].reshape(2, 2))}
            np.testing.assert_allclose(flatten(GRAD_FN(params)), numpy_grad(theta), rtol=1e-13, atol=1e-14)


def test_reference_forms_are_distinct():
    """Guards against vacuous comparisons: each variant pair the suite separates really differs here."""
    pairs = [
        (
            tb.run_momentum,
            dict(learning_rate=0.05, momentum=0.9),
            tb.run_nesterov,
            dict(learning_rate=0.05, momentum=0.9),
        ),
        (tb.run_nesterov, dict(learning_rate=0.05, momentum=0.9), tb.run_nag, dict(learning_rate=0.05, momentum=0.9)),
        (tb.run_adam, dict(learning_rate=0.05), tb.run_amsgrad, dict(learning_rate=0.05)),
        (
            tb.run_amsgrad,
            dict(learning_rate=0.05),
            tb.run_amsgrad,
            dict(learning_rate=0.05, bias_correction_mu=False, bias_correction_nu=False),
        ),
        (tb.run_adam, dict(learning_rate=0.05), tb.run_nadam, dict(learning_rate=0.05)),
        (tb.run_adam, dict(learning_rate=0.05), tb.run_adam, dict(learning_rate=0.05, eps=0.0, eps_root=1e-8)),
        (tb.run_rmsprop, dict(learning_rate=0.01), tb.run_rmsprop, dict(learning_rate=0.01, centered=True)),
        (
            tb.run_adagrad,
            dict(learning_rate=0.3),
            tb.run_adagrad,
            dict(learning_rate=0.3, initial_accumulator_value=0.1, eps=1e-7),
        ),
    ]
    for f1, h1, f2, h2 in pairs:
        a = f1(numpy_grad, THETA0_FLAT, STEPS, **h1)[-1]
        b = f2(numpy_grad, THETA0_FLAT, STEPS, **h2)[-1]
        assert not np.allclose(a, b, rtol=1e-8, atol=0), (f1.__name__, h1, f2.__name__, h2)
