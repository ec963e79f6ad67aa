"""Polyak's step size (seed 004): ``polyak_sgd`` / ``scale_by_polyak`` and the seed's clipped form.

- NumPy float64 references, written from the formulas, step by step on an anisotropic quadratic over a
  pytree and on the seed's double well f(x) = x(x−1)(x−3)² + 1.62276; every configuration is checked to
  exercise the branches it is meant to (cap binding and not, negative gap, ...).
- optax in float32: ``scaling=1`` gives optax's numbers with the same arguments; otherwise
  ``gradflow.polyak_sgd(M, c, f, e)`` is ``optax.polyak_sgd(c²M, 1/c, f, e/c²)`` (optax's ``scaling``
  acts inversely on the uncapped step, see polyak_sgd's docstring).
- The seed's claim: from x₀ = 4, the clipped Polyak flow (h = 0.01, M = 1000, 2500 steps) leaves the
  local minimum x = 3 and settles at x ≈ 0.41, while gradient descent stays at 3.
- The missing ``value`` is an error that names it. The laws run over the registry entries
  ``polyak_sgd``, ``polyak_sgd_plus_capped`` and ``clipped_polyak_sgd``.
"""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradflow as gf
from gradflow.optimizers.polyak import clipped_polyak_sgd, polyak_sgd
from gradflow.transforms.polyak import scale_by_clipped_polyak, scale_by_polyak

# --- NumPy float64 references (no JAX, no gradflow) ---------------------------------------------------------


def numpy_polyak_step(value, g, max_learning_rate=1.0, scaling=1.0, f_min=0.0, eps=0.0, variant="sps"):
    """θ_{t+1} − θ_t = −scaling · min((value − f_min)/(‖g‖² + eps), max_learning_rate) · g; returns (step, branch)."""
    gap = value - f_min
    if variant == "sps+":
        gap = max(gap, 0.0)
    denominator = float(np.sum(g * g)) + eps
    if denominator == 0:
        return np.zeros_like(g), "zero"
    ratio = gap / denominator
    branch = "capped" if ratio > max_learning_rate else ("negative" if gap < 0 else "zero gap" if gap == 0 else "free")
    return -scaling * min(ratio, max_learning_rate) * g, branch


def numpy_clipped_polyak_step(value, g, learning_rate, max_inverse_norm, f_min=0.0):
    """Seed 004, eq. (me-gd-3), one Euler step: −h · (value − f_min) · min(1/‖g‖, M) · g/‖g‖."""
    norm = math.sqrt(float(np.sum(g * g)))
    if norm == 0:
        return np.zeros_like(g), "zero"
    branch = "capped" if 1 / norm > max_inverse_norm else "free"
    return -learning_rate * (value - f_min) * min(1 / norm, max_inverse_norm) * g / norm, branch


def seed_f(x):
    """The seed's double well: global minimum ≈ 0 at x ≈ 0.407, local minimum 1.62276 at x = 3."""
    return x * (x - 1) * (x - 3) * (x - 3) + 1.62276


def seed_g(x):
    return -9 + 30 * x - 21 * x**2 + 4 * x**3


def seed_trajectory(x0=4.0, h=0.01, M=1000.0, steps=2500):
    """The seed's own NumPy loop, verbatim in its arithmetic."""
    xs = [x0]
    for _ in range(steps):
        x = xs[-1]
        delta = -np.sign(seed_g(x)) * min(abs(seed_g(x)) / seed_g(x) ** 2, M) * seed_f(x)
        xs.append(x + delta * h)
    return np.array(xs)


GLOBAL_MINIMUM = float(min(r.real for r in np.roots([4, -21, 30, -9]) if abs(r.imag) < 1e-12 and 0 < r.real < 1))

# --- the quadratic over a pytree -------------------------------------------------------------------------------

# Curvatures: the loss is ½ Σ d θ² + offset. Each step multiplies θ_i by 1 − γ·d_i; with γ ≤ 0.5 no factor
# exceeds 1 in magnitude, so rounding errors are not amplified from step to step (with the default cap γ ≤ 1,
# the d = 4 coordinate is multiplied by up to −3 and the float64 trajectories part at 1e-9).
D = np.array([0.5, 1.0, 2.0, 4.0, 0.2, 3.0, 1.5, 0.7, 2.2])


def make_params(dtype):
    """The starting point (float32-representable values, so every dtype starts from the same numbers)."""
    rng = np.random.default_rng(0)
    values = {"b": rng.normal(size=2), "s": rng.normal(), "w": rng.normal(size=(3, 2))}
    return {k: jnp.asarray(np.asarray(v, np.float32), dtype) for k, v in values.items()}


def flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def quadratic(params, offset=0.3):
    x = jnp.concatenate([jnp.ravel(p) for p in jax.tree.leaves(params)])
    return 0.5 * jnp.sum(jnp.asarray(D, x.dtype) * x**2) + offset


def numpy_quadratic_run(numpy_step, offset, steps=25):
    """The reference trajectory [θ_0, …, θ_steps] and the branch taken at each step."""
    theta = flat(make_params(jnp.float32))
    thetas, branches = [theta], []
    for t in range(steps):
        value, g = 0.5 * np.sum(D * theta**2) + offset, D * theta
        delta, branch = numpy_step(value, g, t)
        theta = theta + delta
        thetas.append(theta)
        branches.append(branch)
    return thetas, set(branches)


@jax.jit
def step(tx, params, state, offset):
    value, grads = jax.value_and_grad(quadratic)(params, offset)
    updates, state = tx.update(grads, state, params, value=value)
    return gf.apply_updates(params, updates), state


QUADRATIC_CASES = {
    # name: (offset of the loss, gradflow optimizer, NumPy step (value, g, t), the branches the run must visit).
    # Where f_min is the exact minimum the loss has offset 0: with offset 0.3 and f_min = 0.3, value − f_min
    # would cancel to a few digits near the minimum (a property of the problem, not of either implementation).
    "exact_minimum": (0.0, lambda: polyak_sgd(max_learning_rate=0.5), lambda v, g, t: numpy_polyak_step(v, g, 0.5),
                      {"capped", "free"}),
    "underestimated_minimum_scaled_eps": (
        0.3, lambda: polyak_sgd(max_learning_rate=0.8, scaling=0.5, f_min=0.0, eps=0.1),
        lambda v, g, t: numpy_polyak_step(v, g, 0.8, 0.5, 0.0, 0.1), {"capped", "free"}),
    "sps_below_f_min_ascends": (  # value − f_min < 0: sps steps uphill, to the level set value = f_min
        0.3, lambda: polyak_sgd(max_learning_rate=0.5, f_min=3.5),
        lambda v, g, t: numpy_polyak_step(v, g, 0.5, f_min=3.5), {"negative", "free"}),
    "sps_plus_below_f_min_stops": (  # sps+ uses max(value − f_min, 0) = 0: no step
        0.3, lambda: polyak_sgd(max_learning_rate=0.5, f_min=3.5, variant="sps+"),
        lambda v, g, t: numpy_polyak_step(v, g, 0.5, f_min=3.5, variant="sps+"), {"zero gap"}),
    "scaling_schedule": (
        0.0, lambda: polyak_sgd(max_learning_rate=0.3, scaling=lambda count: 1.0 / (1.0 + count)),
        lambda v, g, t: numpy_polyak_step(v, g, 0.3, scaling=1.0 / (1.0 + t)), {"capped", "free"}),
    "clipped_seed_form": (
        0.3, lambda: clipped_polyak_sgd(0.3, max_inverse_norm=2.0, f_min=0.1),
        lambda v, g, t: numpy_clipped_polyak_step(v, g, 0.3, 2.0, 0.1), {"capped", "free"}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(QUADRATIC_CASES))
def test_quadratic_trajectory_matches_numpy_float64(case):
    """25 steps, every iterate within rtol 1e-10 of the NumPy reference, and the branches the case is meant
    to exercise are all visited."""
    offset, make, numpy_step, branches = QUADRATIC_CASES[case]
    thetas, visited = numpy_quadratic_run(numpy_step, offset)
    assert branches <= visited, (case, visited)
    with jax.enable_x64(True):
        tx = make()
        params = make_params(jnp.float64)
        state = tx.init(params)
        np.testing.assert_array_equal(flat(params), thetas[0])
        for theta in thetas[1:]:
            params, state = step(tx, params, state, jnp.float64(offset))
            np.testing.assert_allclose(flat(params), theta, rtol=1e-10, atol=1e-13)
            assert all(x.dtype == jnp.float64 for x in jax.tree.leaves(params))
    if case == "sps_plus_below_f_min_stops":
        np.testing.assert_array_equal(thetas[-1], thetas[0])


def test_exact_polyak_step_on_a_one_dimensional_quadratic_quarters_the_loss():
    """On L = a·x²/2 with f_min = 0 the Polyak step is x/2 whatever a: the loss is divided by 4 each step."""
    with jax.enable_x64(True):
        for a in (0.1, 1.0, 7.0):
            loss = lambda x, a=a: 0.5 * a * x**2
            tx = polyak_sgd(max_learning_rate=math.inf)
            x, state = jnp.float64(3.0), tx.init(jnp.float64(3.0))
            for k in range(1, 6):
                value, g = jax.value_and_grad(loss)(x)
                updates, state = tx.update(g, state, x, value=value)
                x = gf.apply_updates(x, updates)
                np.testing.assert_allclose(float(x), 3.0 / 2**k, rtol=1e-14)


# --- the seed's double well ------------------------------------------------------------------------------------


@jax.jit
def double_well_steps(tx, xs):
    """One step of ``tx`` from each point of ``xs`` (all Polyak transforms here are stateless)."""

    def one(x):
        value, g = jax.value_and_grad(seed_f)(x)
        updates, _ = tx.update(g, tx.init(x), x, value=value)
        return gf.apply_updates(x, updates)

    return jax.vmap(one)(xs)


def test_clipped_step_matches_the_seed_code_at_every_iterate_float64():
    """From each of the 2501 points of the seed's own trajectory, gradflow's step lands where the seed's does."""
    xs = seed_trajectory()
    with jax.enable_x64(True):
        ours = np.asarray(double_well_steps(clipped_polyak_sgd(0.01, max_inverse_norm=1000.0), jnp.asarray(xs[:-1])))
    np.testing.assert_allclose(ours, xs[1:], rtol=1e-10, atol=0)
    capped = [1 / abs(seed_g(x)) > 1000.0 for x in xs[:-1]]
    assert not any(capped)  # along this trajectory |g| stays above 1/M: the check below covers the cap
    with jax.enable_x64(True):
        near_three = np.array([3.0 + 1e-5, 3.0 - 2e-5, 2.9999999])  # |g| < 1e-3: 1/|g| is capped at M
        ours = np.asarray(double_well_steps(clipped_polyak_sgd(0.01, max_inverse_norm=1000.0), jnp.asarray(near_three)))
    expected = [x + numpy_clipped_polyak_step(seed_f(x), np.array([seed_g(x)]), 0.01, 1000.0)[0][0] for x in near_three]
    assert all(1 / abs(seed_g(x)) > 1000.0 for x in near_three)
    np.testing.assert_allclose(ours, expected, rtol=1e-10)
    np.testing.assert_allclose(ours, near_three - np.sign(seed_g(near_three)) * 0.01 * 1000 * seed_f(near_three),
                               rtol=1e-9)  # fmt: skip


def run_double_well(tx, x0, steps):
    def body(carry, _):
        x, state = carry
        value, g = jax.value_and_grad(seed_f)(x)
        updates, state = tx.update(g, state, x, value=value)
        x = gf.apply_updates(x, updates)
        return (x, state), x

    _, xs = jax.lax.scan(body, (x0, tx.init(x0)), length=steps)
    return jnp.concatenate([x0[None], xs])


run_double_well_jit = jax.jit(run_double_well, static_argnames="steps")


def test_clipped_trajectory_follows_the_seed_until_chaos_float64():
    """The whole trajectory equals the seed's for its first 200 steps (rtol 1e-10).

    Later the iterates hover around x = 3, where the map stretches differences: a difference in the last
    bit (autodiff's f′ against the seed's expanded polynomial) grows to O(1) within 100 more steps. From
    there the per-step test above and the claim below take over.
    """
    xs = seed_trajectory()
    with jax.enable_x64(True):
        ours = np.asarray(run_double_well_jit(clipped_polyak_sgd(0.01, 1000.0), jnp.float64(4.0), steps=2500))
    np.testing.assert_allclose(ours[:201], xs[:201], rtol=1e-10, atol=0)


def test_seed_claim_clipped_polyak_escapes_the_local_minimum_and_gradient_descent_does_not():
    """Seed 004: x₀ = 4, h = 0.01, M = 1000, 2500 steps. The clipped Polyak flow first goes to the local
    minimum x = 3, oscillates there, then jumps out and converges to the global minimum x ≈ 0.41;
    gradient descent with the same step converges to 3."""
    assert abs(GLOBAL_MINIMUM - 0.4069) < 1e-4
    seed = seed_trajectory()
    assert abs(seed[-1] - GLOBAL_MINIMUM) < 0.01  # the seed's own loop (NumPy) makes the claim
    with jax.enable_x64(True):
        x0 = jnp.float64(4.0)
        polyak = np.asarray(run_double_well_jit(clipped_polyak_sgd(0.01, max_inverse_norm=1000.0), x0, steps=2500))
        descent = np.asarray(run_double_well_jit(gf.sgd(0.01), x0, steps=2500))
    escape = int(np.argmax(polyak < 2.0))
    assert escape > 0, "never left the basin of x = 3"
    assert np.min(np.abs(polyak[:escape] - 3.0)) < 0.05  # it did reach the local minimum first
    assert abs(polyak[-1] - GLOBAL_MINIMUM) < 0.01 and seed_f(polyak[-1]) < 1e-4
    assert np.all(np.abs(polyak[-500:] - GLOBAL_MINIMUM) < 0.01)  # and stays there
    assert abs(descent[-1] - 3.0) < 1e-6 and abs(seed_f(descent[-1]) - 1.62276) < 1e-9


def test_polyak_sgd_on_the_double_well_matches_numpy_per_step_float64():
    """The capped Polyak step along a 300-step reference trajectory (the cap binds near x = 3)."""
    max_lr = 0.05
    xs, branches = [4.0], set()
    for _ in range(300):
        x = xs[-1]
        delta, branch = numpy_polyak_step(seed_f(x), np.array([seed_g(x)]), max_learning_rate=max_lr)
        branches.add(branch)
        xs.append(x + delta[0])
    assert {"capped", "free"} <= branches
    with jax.enable_x64(True):
        ours = np.asarray(double_well_steps(polyak_sgd(max_learning_rate=max_lr), jnp.asarray(xs[:-1])))
    np.testing.assert_allclose(ours, xs[1:], rtol=1e-10, atol=0)


# --- optax -----------------------------------------------------------------------------------------------------


def run_pair(ours, theirs, steps=30, offset=0.3):
    """Both libraries from the same float32 start, each on its own trajectory; params at every step."""

    @jax.jit
    def both(p1, s1, p2, s2):
        v1, g1 = jax.value_and_grad(quadratic)(p1, offset)
        v2, g2 = jax.value_and_grad(quadratic)(p2, offset)
        u1, s1 = ours.update(g1, s1, p1, value=v1)
        u2, s2 = theirs.update(g2, s2, p2, value=v2)
        return gf.apply_updates(p1, u1), s1, optax.apply_updates(p2, u2), s2

    p1 = p2 = make_params(jnp.float32)
    s1, s2 = ours.init(p1), theirs.init(p2)
    out = []
    for _ in range(steps):
        p1, s1, p2, s2 = both(p1, s1, p2, s2)
        out.append((flat(p1), flat(p2)))
    return out


def assert_same_trajectory(pairs):
    for a, b in pairs:
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def visited_branches(**args):
    """The branches the float64 reference takes over the 30 steps of :func:`run_pair` (offset 0.3)."""
    args = {k: float(v) if k != "variant" else v for k, v in args.items()}
    return numpy_quadratic_run(lambda v, g, t: numpy_polyak_step(v, g, **args), 0.3, steps=30)[1]


f32 = np.float32


@pytest.mark.parametrize(
    ("args", "branches"),
    [
        (dict(), {"capped", "free"}),
        (dict(max_learning_rate=f32(0.4), f_min=f32(0.1), eps=f32(0.01)), {"capped", "free"}),
        (dict(max_learning_rate=f32(0.5), f_min=f32(3.5), variant="sps"), {"negative", "free"}),
        (dict(max_learning_rate=f32(0.5), f_min=f32(3.5), variant="sps+"), {"zero gap"}),
        (dict(max_learning_rate=f32(0.5), f_min=f32(0.45), variant="sps+"), {"free"}),
    ],
)
def test_polyak_sgd_with_unit_scaling_matches_optax(args, branches):
    assert branches <= visited_branches(**args)
    assert_same_trajectory(run_pair(polyak_sgd(**args), optax.polyak_sgd(**args)))


@pytest.mark.parametrize(
    "args",
    [dict(), dict(f_min=f32(0.1), max_learning_rate=f32(0.4), eps=f32(0.01), variant="sps+")],
)
def test_scale_by_polyak_matches_optax(args):
    assert {"capped", "free"} <= visited_branches(scaling=0.7, **args)
    ours = gf.chain(scale_by_polyak(**args), gf.scale_by_learning_rate(f32(0.7)))
    theirs = optax.chain(optax.scale_by_polyak(**args), optax.scale_by_learning_rate(f32(0.7)))
    assert_same_trajectory(run_pair(ours, theirs))


@pytest.mark.parametrize(("c", "max_lr", "eps"), [(f32(0.5), f32(0.8), f32(0.1)), (f32(2.0), f32(0.3), f32(0.0))])
def test_scaling_mapping_to_optax_with_cap_and_eps(c, max_lr, eps):
    """gradflow.polyak_sgd(M, c, f, e) == optax.polyak_sgd(c²·M, 1/c, f, e/c²), with the cap binding on some
    steps and not on others."""
    f_min = f32(0.1)
    assert {"capped", "free"} <= visited_branches(max_learning_rate=max_lr, scaling=c, f_min=f_min, eps=eps)
    ours = polyak_sgd(max_lr, c, f_min, eps)
    theirs = optax.polyak_sgd(f32(c * c * max_lr), f32(1 / c), f_min, f32(eps / (c * c)))
    assert_same_trajectory(run_pair(ours, theirs))


@pytest.mark.parametrize("s", [f32(0.5), f32(4.0)])
def test_optax_scaling_acts_inversely_without_cap(s):
    """Uncapped and with eps = 0, optax's scaling=s is gradflow's scaling=1/s; gradflow's scaling=s is
    optax's step times s² (s = 0.5: optax doubles the Polyak step, gradflow halves it).

    The loss has offset 0 = f_min here: an uncapped Polyak step with f_min below the minimum grows
    without bound as the gradient vanishes, and the float32 trajectories would part.
    """
    inf = f32(np.inf)
    assert_same_trajectory(run_pair(polyak_sgd(inf, f32(1 / s)), optax.polyak_sgd(inf, s), offset=0.0))
    params = make_params(jnp.float32)
    value, grads = jax.value_and_grad(quadratic)(params)
    ours = polyak_sgd(inf, s)
    theirs = optax.polyak_sgd(inf, s)
    u_ours = flat(ours.update(grads, ours.init(params), params, value=value)[0])
    u_theirs = flat(theirs.update(grads, theirs.init(params), params, value=value)[0])
    np.testing.assert_allclose(u_ours, s * s * u_theirs, rtol=1e-5)
    assert not np.allclose(u_ours, u_theirs)


def test_signatures_and_defaults_match_optax():
    for ours, theirs in ((polyak_sgd, optax.polyak_sgd), (scale_by_polyak, optax.scale_by_polyak)):
        a = [(k, p.default, p.kind) for k, p in inspect.signature(ours).parameters.items()]
        b = [(k, p.default, p.kind) for k, p in inspect.signature(theirs).parameters.items()]
        assert a == b


# --- edge cases, dtypes and errors --------------------------------------------------------------------------------

OPTIMIZERS = {
    "polyak_sgd": lambda: polyak_sgd(),
    "scale_by_polyak": lambda: scale_by_polyak(),
    "clipped_polyak_sgd": lambda: clipped_polyak_sgd(0.1),
    "scale_by_clipped_polyak": lambda: scale_by_clipped_polyak(),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_missing_value_is_an_error_that_names_it(name):
    tx = OPTIMIZERS[name]()
    params = make_params(jnp.float32)
    grads = jax.grad(quadratic)(params)
    owner = "scale_by_clipped_polyak" if "clipped" in name else "scale_by_polyak"
    with pytest.raises(ValueError, match=rf"{owner} needs the loss at params: .*value=loss\(params\).*`value`"):
        tx.update(grads, tx.init(params), params)
    with pytest.raises(ValueError, match=r"value must be a scalar \(the loss at params\), got shape \(2,\)"):
        tx.update(grads, tx.init(params), params, value=jnp.ones(2))
    chained = gf.chain(gf.clip(1.0), tx)  # the error surfaces through chain as well, under jit too
    with pytest.raises(ValueError, match=r"`value`"):
        jax.jit(lambda g: chained.update(g, chained.init(params), params))(grads)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_zero_gradient_gives_zero_update_and_finite_derivatives(name):
    tx = OPTIMIZERS[name]()
    zero = {"a": jnp.zeros(3), "b": jnp.zeros(())}
    updates, _ = tx.update(zero, tx.init(zero), zero, value=jnp.float32(2.0))
    for u in jax.tree.leaves(updates):
        np.testing.assert_array_equal(u, 0.0)
    # jitted: one compilation rather than the Jacobian's batched operations compiled one by one
    jacobian = jax.jit(jax.jacobian(lambda g: tx.update(g, tx.init(g), g, value=jnp.float32(2.0))[0]))(zero)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(jacobian))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_bfloat16_gradients_give_bfloat16_updates(name):
    """The step factor is computed in float32 and each leaf rounded once: within one bf16 rounding of NumPy."""
    tx = OPTIMIZERS[name]()
    g = {"a": jnp.asarray([0.3, -1.2, 2.5], jnp.bfloat16), "b": jnp.asarray(0.75, jnp.bfloat16)}
    value = jnp.asarray(1.7, jnp.bfloat16)
    updates, _ = tx.update(g, tx.init(g), g, value=value)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
    g64, v64 = flat(g), float(value)  # the bf16 inputs, exactly
    if "clipped" in name:
        expected, _ = numpy_clipped_polyak_step(v64, g64, -1.0, 1000.0)  # the transform's output
    else:
        expected, _ = numpy_polyak_step(v64, g64, scaling=-1.0)
    if name == "clipped_polyak_sgd":
        # Every transform of a chain returns bf16: the Polyak direction is rounded, then multiplied by the
        # learning rate in bf16 (as for every gradflow optimizer), i.e. by bf16(0.1) = 0.10009765625.
        rounded = np.asarray(expected, jnp.bfloat16).astype(np.float64)
        expected = -float(np.asarray(0.1, jnp.bfloat16)) * rounded
    elif name == "polyak_sgd":  # scaling 1: an exact sign flip
        expected = -expected
    np.testing.assert_allclose(flat(updates), expected, rtol=2.0**-8, atol=0)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: polyak_sgd(max_learning_rate=-1.0), r"scale_by_polyak: max_learning_rate must be in \[0.0, inf\]"),
        (lambda: polyak_sgd(scaling=-0.5), r"polyak_sgd: scaling must be in \[0.0, inf\)"),
        (lambda: polyak_sgd(eps=-1e-3), r"scale_by_polyak: eps must be in \[0.0, inf\)"),
        (lambda: polyak_sgd(f_min=float("nan")), r"scale_by_polyak: f_min must not be NaN"),
        (lambda: polyak_sgd(variant="sps++"), r"scale_by_polyak: variant must be one of 'sps', 'sps\+', got 'sps\+\+'"),
        (lambda: scale_by_polyak(variant="SPS"), r"variant must be one of 'sps', 'sps\+'"),
        (lambda: clipped_polyak_sgd(-0.01), r"clipped_polyak_sgd: learning_rate"),
        (lambda: clipped_polyak_sgd(0.01, max_inverse_norm=0.0), r"max_inverse_norm must be in \(0.0, inf\]"),
        (lambda: scale_by_clipped_polyak(f_min=float("nan")), r"scale_by_clipped_polyak: f_min must not be NaN"),
    ],
)
def test_bad_arguments_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_without_caps_both_forms_are_the_polyak_flow():
    """max_learning_rate = inf and max_inverse_norm = inf are accepted, and then both forms take the same
    step −(value − f_min)·g/‖g‖² (seed 004, eq. me-gd), also for a gradient far below 1/M = 1e-3."""
    with jax.enable_x64(True):
        for scale in (1e-6, 1.0, 40.0):
            g = {"a": jnp.asarray([0.3, -1.2]) * scale, "b": jnp.asarray(0.4) * scale}
            expected, _ = numpy_polyak_step(2.5, flat(g), max_learning_rate=math.inf, f_min=0.5)
            for tx in (polyak_sgd(max_learning_rate=math.inf, f_min=0.5),
                       clipped_polyak_sgd(1.0, max_inverse_norm=math.inf, f_min=0.5)):  # fmt: skip
                updates, _ = tx.update(g, tx.init(g), g, value=jnp.float64(2.5))
                np.testing.assert_allclose(flat(updates), expected, rtol=1e-12)
