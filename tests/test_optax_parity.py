"""Parity with optax: every gradflow optimizer and primitive that implements optax's rule gives optax's numbers.

Law 7 of DESIGN.md. Each case runs 50 float32 steps of both libraries side by side on the same small
pytree of parameters (a nested dict with leaves of different shapes) and a non-quadratic loss; each
library follows its own trajectory (its gradient is taken at its own parameters) and the parameters are
compared at every step with rtol=1e-5 (atol=1e-6 only matters for coordinates near zero).

"Identical hyperparameters" means the same float32 numbers: every float hyperparameter, defaults
included, is passed to both libraries as ``np.float32``. gradflow computes with its hyperparameters as
float32 array leaves (``1 - b2`` in float32, the same eagerly and under jit), while optax, given a Python
float, computes ``1 - b2`` in double at trace time and rounds afterwards. For b2 = 0.999 that is a
systematic 1.3e-5 relative difference in Adam's second moment (6.4e-6 per step) which over 50 steps
exceeds atol for coordinates that cross zero; ``test_python_float_hyperparameters_round_differently``
documents it exactly. Given float32 hyperparameters, optax computes ``1 - b2`` in float32 as gradflow does.
Since optax's defaults are passed explicitly, ``test_signature_matches_optax`` checks that gradflow's own
defaults (and argument names, order and kinds) are optax's.

The last tests document the intended differences from optax (DESIGN.md, law 7).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow

STEPS = 50
RTOL = 1e-5
ATOL = 1e-6  # matters only for coordinates near zero

_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(_rng.normal(size=(8, 4)), jnp.float32)
PARAMS = {
    "dense": {
        "w": jnp.asarray(_rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(_rng.normal(size=(4,)) * 0.1, jnp.float32),
    },
    "gain": jnp.asarray(1.3, jnp.float32),
    "extra": {"k": jnp.asarray(_rng.normal(size=(2, 2)), jnp.float32)},
}
MASK = {"dense": {"w": True, "b": False}, "gain": False, "extra": {"k": True}}

# The conditioning of the test problem matters more than the tolerance. Near a minimum, sign-like steps
# (RMSprop, Adam, Lion with a tiny eps) oscillate and amplify rounding differences exponentially: on a
# first version of this problem (a plain regression whose bias started near its optimum), optax's own
# float32 RMSprop trajectory was 10% away from its float64 trajectory by step 40, and the two libraries,
# whose results differ in the last bit here and there (XLA fuses their graphs differently), drifted
# apart as much. Centered RMSprop on a nearly constant gradient divides by E[g²] − E[g]², a cancellation
# that loses most digits. Hence: a fixed sequence of "minibatch" perturbations (uniform in ±1), the same
# for both libraries, is added to the gradients, so that the second moments never collapse to zero and
# the signs of the gradients vary (which makes Lion's and Signum's momentum matter); and every coordinate
# is pulled (log-cosh, slope 0.3) towards a target 3 away, further than any optimizer here travels in 50
# steps. With this, one ulp of difference per step moves a library's trajectory by less than half the
# tolerance (test_problem_is_well_conditioned), while a change of a hyperparameter by 2e-5 is detected
# (test_parity_detects_small_differences).
TARGETS = jax.tree.map(lambda p: p + 3.0 * _rng.choice([-1.0, 1.0], size=p.shape).astype(np.float32), PARAMS)
NOISE = [
    jax.tree.map(lambda p: jnp.asarray(_rng.uniform(-1.0, 1.0, size=p.shape), p.dtype), PARAMS) for _ in range(STEPS)
]


def matrices_only(params: Any) -> Any:
    """A callable mask: decay only the leaves of rank >= 2."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def loss(params: Any) -> jax.Array:
    """A smooth, non-quadratic loss: log-cosh pull to far targets, a tanh regression, sin and quartic terms."""
    w, b = params["dense"]["w"], params["dense"]["b"]
    pred = params["gain"] * jnp.tanh(X @ w + b)
    k = params["extra"]["k"]
    pull = sum(jnp.sum(jnp.log(jnp.cosh(p - t))) for p, t in zip(jax.tree.leaves(params), jax.tree.leaves(TARGETS)))
    return 0.3 * pull + jnp.mean(jnp.log(jnp.cosh(pred - Y))) + 1e-3 * jnp.sum(w**4) + 0.1 * jnp.sum(jnp.sin(k) * k.T)


@jax.jit
def noisy_grad(params: Any, noise: Any) -> Any:
    return jax.tree.map(jnp.add, jax.grad(loss)(params), noise)


class Trajectories(NamedTuple):
    gradflow: Any  # params after each step, every leaf with a leading axis of length STEPS
    optax: Any
    gradients: Any  # gradflow's gradient at each step (before the step is taken)


def run_pair(gf_tx: Any, ox_tx: Any, params: Any = PARAMS, steps: int = STEPS) -> Trajectories:
    """Run both optimizers side by side for ``steps`` steps; both are closed over as constants.

    Each library's gradient is taken at its own parameters (plus the common perturbation of that step).
    The gradient is one jitted function shared by all cases; the two updates are one jitted step per pair:
    compiling is what takes the time here (0.1–0.5 s per pair on CPU), 50 dispatches are nothing.
    """

    @jax.jit
    def step(g1, s1, p1, g2, s2, p2):
        u1, s1 = gf_tx.update(g1, s1, p1)
        u2, s2 = ox_tx.update(g2, s2, p2)
        return s1, gradflow.apply_updates(p1, u1), s2, optax.apply_updates(p2, u2)

    p1 = p2 = params
    s1, s2 = gf_tx.init(params), ox_tx.init(params)
    history = []
    for t in range(steps):
        g1, g2 = noisy_grad(p1, NOISE[t]), noisy_grad(p2, NOISE[t])
        s1, p1, s2, p2 = step(g1, s1, p1, g2, s2, p2)
        history.append((p1, p2, g1))
    return Trajectories(*jax.tree.map(lambda *xs: jnp.stack(xs), *history))


def assert_same_trajectory(actual: Any, expected: Any, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Compare the parameters at every step; report the first step and leaf that differ."""
    flat_a = jax.tree_util.tree_flatten_with_path(actual)[0]
    flat_e = jax.tree.leaves(expected)
    assert len(flat_a) == len(flat_e)
    for (path, a), e in zip(flat_a, flat_e):
        a, e = np.asarray(a), np.asarray(e)
        assert a.dtype == e.dtype == np.float32, (path, a.dtype, e.dtype)
        assert a.shape == e.shape
        close = np.isclose(a, e, rtol=rtol, atol=atol).reshape(a.shape[0], -1).all(axis=1)
        bad = np.flatnonzero(~close)
        if bad.size:
            step = int(bad[0])
            np.testing.assert_allclose(
                a[step],
                e[step],
                rtol=rtol,
                atol=atol,
                err_msg=f"params{jax.tree_util.keystr(path)} after step {step + 1} of {a.shape[0]} "
                f"(gradflow vs optax; {bad.size} steps differ)",
            )


def assert_moved(trajectory: Any, params: Any = PARAMS) -> None:
    """Guard against vacuous parity: every leaf has moved away from its initial value."""
    for final, initial in zip(jax.tree.leaves(trajectory), jax.tree.leaves(params)):
        assert np.max(np.abs(np.asarray(final[-1]) - np.asarray(initial))) > 1e-3


def f32(x: Any) -> Any:
    """A float hyperparameter as the float32 number that both libraries compute with."""
    return np.float32(x) if isinstance(x, float) else x


def same_hyperparameters(name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``gradflow.<name>`` and ``optax.<name>`` with the same arguments (optax's defaults filled in) as float32."""
    ox_fn, gf_fn = getattr(optax, name), getattr(gradflow, name)
    bound = inspect.signature(ox_fn).bind(*args, **kwargs)
    bound.apply_defaults()
    gf_params = inspect.signature(gf_fn).parameters
    given = {k: f32(v) for k, v in bound.arguments.items()}
    assert set(kwargs) <= set(gf_params), f"gradflow.{name} lacks {set(kwargs) - set(gf_params)}"
    return gf_fn(**{k: v for k, v in given.items() if k in gf_params}), ox_fn(**given)


def _lr(gf_prim: Any, ox_prim: Any, lr: float = 0.02) -> tuple[Any, Any]:
    """A primitive followed by its own library's ``scale_by_learning_rate``."""
    return (
        gradflow.chain(gf_prim, gradflow.scale_by_learning_rate(f32(lr))),
        optax.chain(ox_prim, optax.scale_by_learning_rate(f32(lr))),
    )


def _same(name: str, *args: Any, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    return lambda: same_hyperparameters(name, *args, **kwargs)


def _same_primitive(name: str, *args: Any, lr: float = 0.02, **kwargs: Any) -> Callable[[], tuple[Any, Any]]:
    """The primitive ``name`` of each library, followed by its library's learning rate."""
    return lambda: _lr(*same_hyperparameters(name, *args, **kwargs), lr)


CLIP = 0.8  # clips about a quarter of the coordinates (test_clip_clips_some_coordinates_only)

OPTIMIZER_CASES = [
    pytest.param(_same("sgd", 0.05), id="sgd"),
    pytest.param(_same("sgd", 0.02, momentum=0.9), id="sgd-momentum"),
    pytest.param(_same("sgd", 0.02, momentum=0.8, nesterov=True), id="sgd-nesterov"),
    pytest.param(_same("adagrad", 0.1), id="adagrad"),
    pytest.param(_same("adagrad", 0.05, initial_accumulator_value=0.0, eps=1e-10), id="adagrad-textbook"),
    pytest.param(_same("rmsprop", 0.01), id="rmsprop"),
    pytest.param(
        _same("rmsprop", 0.005, decay=0.95, eps=1e-6, centered=True, momentum=0.9), id="rmsprop-centered-momentum"
    ),
    pytest.param(
        _same("rmsprop", 0.005, decay=0.9, centered=True, momentum=0.5, nesterov=True), id="rmsprop-centered-nesterov"
    ),
    pytest.param(
        _same("rmsprop", 0.01, decay=0.8, eps=1e-4, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
        id="rmsprop-eps-outside-debiased-initial-scale",
    ),
    pytest.param(_same("adadelta", 1.0), id="adadelta-lr1"),
    pytest.param(_same("adadelta", 0.5, rho=0.95, eps=1e-5, weight_decay=0.05), id="adadelta-weight-decay"),
    pytest.param(_same("adadelta", 0.5, weight_decay=0.05, weight_decay_mask=MASK), id="adadelta-weight-decay-masked"),
    pytest.param(_same("adam", 1e-2), id="adam"),
    pytest.param(_same("adam", 5e-3, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8), id="adam-custom"),
    pytest.param(_same("adam", 1e-2, mu_dtype=jnp.bfloat16), id="adam-mu-bfloat16"),
    pytest.param(_same("adamw", 1e-2), id="adamw"),
    pytest.param(_same("adamw", 1e-2, b1=0.85, weight_decay=0.1, mask=MASK), id="adamw-mask-tree"),
    pytest.param(_same("adamw", 1e-2, weight_decay=0.1, mask=matrices_only), id="adamw-mask-callable"),
    pytest.param(_same("nadam", 1e-2), id="nadam"),
    pytest.param(_same("nadam", 5e-3, b1=0.85, b2=0.995, eps=1e-7, eps_root=1e-9), id="nadam-custom"),
    pytest.param(_same("adamax", 1e-2), id="adamax"),
    pytest.param(_same("adamax", 2e-2, b1=0.8, b2=0.99, eps=1e-6), id="adamax-custom"),
    pytest.param(_same("amsgrad", 1e-2), id="amsgrad"),
    pytest.param(_same("amsgrad", 1e-2, b1=0.85, b2=0.99, bias_correction_nu=False), id="amsgrad-raw-nu"),
    pytest.param(_same("lion", 1e-3), id="lion"),
    pytest.param(_same("lion", 3e-3, b1=0.95, b2=0.98, weight_decay=0.1, mask=matrices_only), id="lion-custom"),
    pytest.param(_same("sign_sgd", 1e-2), id="sign_sgd"),
    pytest.param(_same("signum", 1e-2), id="signum"),
    pytest.param(_same("signum", 1e-2, beta=0.5), id="signum-beta"),
]

PRIMITIVE_CASES = [
    pytest.param(_same_primitive("clip", CLIP), id="clip"),
    pytest.param(_same_primitive("add_decayed_weights", 0.1), id="add_decayed_weights"),
    pytest.param(_same_primitive("add_decayed_weights", 0.1, mask=MASK), id="add_decayed_weights-mask-tree"),
    pytest.param(
        _same_primitive("add_decayed_weights", 0.1, mask=matrices_only), id="add_decayed_weights-mask-callable"
    ),
    pytest.param(_same("scale", -0.05), id="scale"),
    pytest.param(_same("scale_by_learning_rate", 0.05), id="scale_by_learning_rate"),
    pytest.param(_same("scale_by_learning_rate", 1e-3, flip_sign=False), id="scale_by_learning_rate-ascent"),
    pytest.param(_same_primitive("scale_by_rms"), id="scale_by_rms"),
    pytest.param(
        _same_primitive("scale_by_rms", 0.8, 1e-4, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
        id="scale_by_rms-custom",
    ),
    pytest.param(_same_primitive("scale_by_stddev"), id="scale_by_stddev"),
    pytest.param(
        _same_primitive("scale_by_stddev", 0.8, 1e-4, initial_scale=0.1, eps_in_sqrt=False, bias_correction=True),
        id="scale_by_stddev-custom",
    ),
    pytest.param(_same_primitive("scale_by_adam"), id="scale_by_adam"),
    pytest.param(_same_primitive("scale_by_adam", 0.8, 0.99, 1e-6, 1e-8, nesterov=True), id="scale_by_adam-nesterov"),
    pytest.param(_same_primitive("scale_by_rss"), id="scale_by_rss"),
    pytest.param(_same_primitive("scale_by_rss", 0.5, 1e-5), id="scale_by_rss-custom"),
    pytest.param(_same_primitive("scale_by_adadelta", lr=1.0), id="scale_by_adadelta"),
    pytest.param(_same_primitive("scale_by_adadelta", 0.95, 1e-5, lr=1.0), id="scale_by_adadelta-custom"),
    pytest.param(_same_primitive("scale_by_amsgrad"), id="scale_by_amsgrad"),
    pytest.param(_same_primitive("scale_by_amsgrad", bias_correction_nu=False), id="scale_by_amsgrad-raw-nu"),
    pytest.param(_same_primitive("scale_by_adamax"), id="scale_by_adamax"),
    pytest.param(_same_primitive("scale_by_adamax", 0.8, 0.99, 1e-6), id="scale_by_adamax-custom"),
    pytest.param(_same_primitive("scale_by_lion", 0.95, 0.98), id="scale_by_lion"),
]


@pytest.mark.parametrize("make", OPTIMIZER_CASES)
def test_optimizer_matches_optax(make):
    gf_tx, ox_tx = make()
    out = run_pair(gf_tx, ox_tx)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


@pytest.mark.parametrize("make", PRIMITIVE_CASES)
def test_primitive_matches_optax(make):
    gf_tx, ox_tx = make()
    out = run_pair(gf_tx, ox_tx)
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def test_adamw_mask_callable_returning_array_booleans():
    """A callable mask may return NumPy/JAX booleans (0-d here), as optax allows."""

    def numpy_mask(params: Any) -> Any:
        return jax.tree.map(lambda p: np.bool_(np.ndim(p) >= 2), params)

    gf_tx, ox_tx = same_hyperparameters("adamw", 1e-2, weight_decay=0.1, mask=numpy_mask)
    out = run_pair(gf_tx, ox_tx)
    assert_same_trajectory(out.gradflow, out.optax)


SHARED_NAMES = [
    *"sgd adagrad rmsprop adadelta adam adamw nadam adamax amsgrad lion sign_sgd signum".split(),
    *"clip clip_by_global_norm add_decayed_weights scale scale_by_learning_rate scale_by_rms".split(),
    *"scale_by_stddev scale_by_adam scale_by_rss scale_by_adadelta scale_by_amsgrad scale_by_adamax".split(),
    "scale_by_lion",
]
GRADFLOW_ONLY_ARGS = {"nu_dtype"}  # the dtype of the second-moment buffer (test_adam_nu_dtype_*)


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_signature_matches_optax(name):
    """Switching from optax is a rename of the import: same argument names, order, kinds and defaults."""
    ours = inspect.signature(getattr(gradflow, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert set(ours) - set(theirs) <= GRADFLOW_ONLY_ARGS
    assert set(theirs) <= set(ours)
    shared = [k for k in theirs if k in ours]
    assert [k for k in ours if k in theirs] == shared
    for key in shared:
        assert ours[key].kind == theirs[key].kind, key
        assert ours[key].default == theirs[key].default, key


def test_clip_clips_some_coordinates_only():
    """The clip case is not vacuous: along the trajectory some coordinates are clipped and some are not."""
    out = run_pair(*_same_primitive("clip", CLIP)())
    g = np.concatenate([np.asarray(x).reshape(STEPS, -1) for x in jax.tree.leaves(out.gradients)], axis=1)
    clipped = np.abs(g) > CLIP
    assert 0.1 < clipped.mean() < 0.9, clipped.mean()
    assert clipped.any(axis=1).all() and (~clipped).any(axis=1).all()


@pytest.mark.parametrize("inside", [True, False], ids=["norm-inside", "norm-outside"])
def test_clip_by_global_norm_matches_optax(inside):
    max_norm = 100.0 if inside else 0.2
    gf_tx, ox_tx = _same_primitive("clip_by_global_norm", max_norm, lr=0.1)()
    out = run_pair(gf_tx, ox_tx)
    norms = np.asarray(jax.vmap(optax.tree.norm)(out.gradients))
    # every step is on the intended side of the threshold
    assert (norms < max_norm).all() if inside else (norms > max_norm).all(), norms
    assert_moved(out.optax)
    assert_same_trajectory(out.gradflow, out.optax)


def _stack(history: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *history)


def test_adam_parity_with_traced_hyperparameters():
    """gradflow's hyperparameters passed to jit as arguments (float32 leaves, law 3) give the numbers of optax
    given float32 hyperparameters, with one compilation for any values; closed over as Python floats (as
    optax programs have them), they give optax's numbers with Python floats."""
    ox_tx = same_hyperparameters("adam", 1e-2)[1]

    @jax.jit
    def step(tx, g1, s1, p1, g2, s2, p2):
        u1, s1 = tx.update(g1, s1, p1)
        u2, s2 = ox_tx.update(g2, s2, p2)
        return s1, gradflow.apply_updates(p1, u1), s2, optax.apply_updates(p2, u2)

    tx = gradflow.adam(1e-2)  # Python floats: traced, they are float32 leaves
    p1 = p2 = PARAMS
    s1, s2 = tx.init(PARAMS), ox_tx.init(PARAMS)
    history = []
    for t in range(STEPS):
        s1, p1, s2, p2 = step(tx, noisy_grad(p1, NOISE[t]), s1, p1, noisy_grad(p2, NOISE[t]), s2, p2)
        history.append((p1, p2))
    ours, theirs = _stack(history)
    assert_moved(theirs)
    assert_same_trajectory(ours, theirs)
    closed = run_pair(tx, optax.adam(1e-2))  # both closed over with Python floats: 1 − b2 folded in double
    assert_same_trajectory(closed.gradflow, closed.optax, rtol=1e-6, atol=1e-7)  # the same rounding
    step(gradflow.adam(3e-3, 0.5, 0.75), noisy_grad(p1, NOISE[0]), s1, p1, noisy_grad(p2, NOISE[0]), s2, p2)
    assert step._cache_size() == 1  # other hyperparameter values: no recompile


def test_traced_hyperparameters_round_one_minus_b2_in_float32():
    """The documented float32 difference of an optimizer passed to jit as an argument.

    Traced, b2 is a float32 leaf and 1 − b2 is computed in float32: 1 − float32(0.999) = 0.00099998713, the
    same number as the bias correction 1 − b2¹ (float32 in both libraries), so the first v̂ is exactly g².
    optax (and gradflow with the optimizer closed over, b2 a Python float) computes 1 − 0.999 in double at
    trace time and rounds it to float32(0.001) = 0.0010000000475, so its first v̂ is g²·1.0000129 and its
    first step is 6.4e-6 smaller (relative): optax's own ``inject_hyperparams`` (traced hyperparameters)
    has the traced form's numbers.
    """
    g = noisy_grad(PARAMS, NOISE[0])
    gf_tx, ox_tx = gradflow.adam(1e-2), optax.adam(1e-2)
    traced, _ = jax.jit(lambda tx, g, s: tx.update(g, s, PARAMS))(gf_tx, g, gf_tx.init(PARAMS))
    closed, _ = jax.jit(lambda g, s: gf_tx.update(g, s, PARAMS))(g, gf_tx.init(PARAMS))
    theirs, _ = jax.jit(lambda g, s: ox_tx.update(g, s, PARAMS))(g, ox_tx.init(PARAMS))
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2)
    theirs_traced, _ = jax.jit(lambda g, s: injected.update(g, s, PARAMS))(g, injected.init(PARAMS))

    bias = np.float32(1) - np.float32(0.999)  # 1 − b2¹, float32 in both libraries
    optax_ratio = np.float64(np.float32(1 - 0.999)) / np.float64(bias)  # optax's v̂ / g² at the first step
    assert abs(optax_ratio - 1.0000129) < 1e-7
    for leaf_g, traced_leaf, closed_leaf, theirs_leaf, injected_leaf in zip(
        *map(jax.tree.leaves, (g, traced, closed, theirs, theirs_traced))
    ):
        leaf_g = np.asarray(leaf_g, np.float64)
        np.testing.assert_allclose(traced_leaf, -1e-2 * leaf_g / (np.abs(leaf_g) + 1e-8), rtol=1e-6)  # v̂ = g²
        np.testing.assert_allclose(injected_leaf, traced_leaf, rtol=1e-6)  # optax traced: the same numbers
        np.testing.assert_allclose(closed_leaf, theirs_leaf, rtol=1e-6)  # closed over: optax's numbers
        ratio = np.asarray(theirs_leaf, np.float64) / np.asarray(traced_leaf, np.float64)
        np.testing.assert_allclose(ratio, 1 / np.sqrt(optax_ratio), rtol=5e-7)


_nudged_grad = jax.jit(lambda p, n: jax.tree.map(lambda g: jnp.nextafter(g, jnp.inf), noisy_grad(p, n)))


@pytest.mark.parametrize("name", ["amsgrad-raw-nu", "sgd-momentum", "rmsprop-centered-momentum", "adam"])
def test_problem_is_well_conditioned(name):
    """One ulp of difference per step (as between two correct implementations) moves optax's own
    trajectory by less than half the tolerance.

    If this fails after a change of the test problem, a parity failure says nothing about gradflow.
    (Heavy-ball SGD and centered RMSprop move by about 0.2 of the tolerance; the most sensitive case,
    ``scale_by_amsgrad`` without bias correction of ν, by 0.45.)
    """
    tx = {p.id: p.values[0] for p in OPTIMIZER_CASES}[name]()[1]
    update = jax.jit(lambda g, s, p: tx.update(g, s, p))

    def run(params, grad_fn):
        state, history = tx.init(params), []
        for t in range(STEPS):
            updates, state = update(grad_fn(params, NOISE[t]), state, params)
            params = optax.apply_updates(params, updates)
            history.append(params)
        return _stack(history)

    reference = run(PARAMS, noisy_grad)
    nudged = run(jax.tree.map(lambda p: jnp.nextafter(p, jnp.inf), PARAMS), _nudged_grad)
    assert_same_trajectory(nudged, reference, rtol=RTOL / 2, atol=ATOL / 2)


DIFFERENT_RULES = {
    "sgd-lr-2e-5": (lambda: gradflow.sgd(f32(0.05 * (1 + 2e-5))), lambda: optax.sgd(f32(0.05))),
    "lion-b2": (lambda: gradflow.lion(f32(3e-3), b2=f32(0.99)), lambda: optax.lion(f32(3e-3), b2=f32(0.98))),
    "signum-beta": (lambda: gradflow.signum(f32(1e-2), f32(0.9)), lambda: optax.signum(f32(1e-2), f32(0.5))),
    "amsgrad-nu": (
        lambda: gradflow.amsgrad(f32(1e-2), bias_correction_nu=False),
        lambda: same_hyperparameters("amsgrad", 1e-2)[1],
    ),
}


@pytest.mark.parametrize("name", sorted(DIFFERENT_RULES))
def test_parity_detects_small_differences(name):
    """The comparison is not vacuous: a slightly different rule or hyperparameter fails it."""
    gf_make, ox_make = DIFFERENT_RULES[name]
    out = run_pair(gf_make(), ox_make())
    with pytest.raises(AssertionError, match="gradflow vs optax"):
        assert_same_trajectory(out.gradflow, out.optax)


# --- intended differences -------------------------------------------------------------------------

_batched_loss = jax.jit(jax.vmap(loss))


def test_adadelta_without_learning_rate_descends_where_optax_ascends():
    """``optax.adadelta(learning_rate=None)`` skips the sign flip (its update is +g'): it ascends.

    ``gradflow.adadelta(None)`` means learning rate 1 with the sign flip (seed 002): it descends, and
    equals ``optax.adadelta(1.0)``.
    """
    out = run_pair(gradflow.adadelta(None), optax.adadelta(None))  # rho, eps: float32 the same in both
    with_start = lambda trajectory: jax.tree.map(lambda p, t: jnp.concatenate([p[None], t]), PARAMS, trajectory)
    gf_losses = np.asarray(_batched_loss(with_start(out.gradflow)))
    ox_losses = np.asarray(_batched_loss(with_start(out.optax)))
    initial = gf_losses[0]
    assert gf_losses[-1] < initial - 0.1 and ox_losses[-1] > initial + 0.1, (gf_losses, ox_losses)

    # the first steps (same params, same gradient) are exact opposites: same direction g', opposite sign
    for ours, theirs, p in zip(jax.tree.leaves(out.gradflow), jax.tree.leaves(out.optax), jax.tree.leaves(PARAMS)):
        np.testing.assert_allclose(ours[0] - p, -(theirs[0] - p), rtol=RTOL, atol=1e-9)

    # and gradflow's default is optax's rule with learning rate 1
    same = run_pair(gradflow.adadelta(None, f32(0.9), f32(1e-6)), optax.adadelta(1.0, f32(0.9), f32(1e-6)))
    assert_same_trajectory(same.gradflow, same.optax)


def _dtypes(tree: Any) -> set[np.dtype]:
    return {jnp.result_type(x) for x in jax.tree.leaves(tree)}


@pytest.mark.parametrize("mu_dtype", [None, jnp.bfloat16])
def test_adam_nu_dtype_sets_the_second_moment_buffer(mu_dtype):
    """``gradflow.adam`` has ``nu_dtype`` for the second-moment buffer; optax has only ``mu_dtype``."""
    with pytest.raises(TypeError, match="nu_dtype"):
        optax.adam(1e-2, nu_dtype=jnp.bfloat16)
    # optax keeps nu in the parameters' dtype whatever mu_dtype is
    (ox_state, _) = optax.adam(1e-2, mu_dtype=mu_dtype).init(PARAMS)
    assert _dtypes(ox_state.nu) == {jnp.dtype(jnp.float32)}
    assert _dtypes(ox_state.mu) == {jnp.dtype(mu_dtype or jnp.float32)}

    tx = gradflow.adam(1e-2, mu_dtype=mu_dtype, nu_dtype=jnp.bfloat16)
    update = jax.jit(lambda g, s: tx.update(g, s, PARAMS))
    state = tx.init(PARAMS)
    for t in range(4):  # after init and after each update (law 2)
        assert _dtypes(state[0].nu) == {jnp.dtype(jnp.bfloat16)}  # optax's layout: ScaleByAdamState(count, mu, nu)
        assert _dtypes(state[0].mu) == {jnp.dtype(mu_dtype or jnp.float32)}
        if t < 3:
            updates, state = update(noisy_grad(PARAMS, NOISE[t]), state)
            assert _dtypes(updates) == {jnp.dtype(jnp.float32)}


def test_adam_nu_dtype_float32_is_optax_adam():
    """``nu_dtype`` equal to the parameters' dtype changes nothing: optax's numbers."""
    out = run_pair(gradflow.adam(f32(1e-2), nu_dtype=jnp.float32), same_hyperparameters("adam", 1e-2)[1])
    assert_same_trajectory(out.gradflow, out.optax)
