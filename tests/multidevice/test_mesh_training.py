"""gradflow.distributed on 8 simulated devices: data parallelism, ZeRO-1, local SGD and EASGD.

The float64 tests compare with NumPy loops written here at 1e-12; the float32 MLP tests compare with the
same optimizer run on one device, without a mesh, at 1e-6. Runs and compiled programs are shared through
module-level fixtures, since compiling dominates the run time.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import gradflow as gf
from gradflow import distributed as gd

N = 8  # devices, and workers of local SGD and EASGD
B = 64  # rows of the global batch
M = B // N  # rows per device
D = 8  # least-squares dimension: divisible by 8 and by 4, so ZeRO splits w on both meshes below
T = 12  # steps of the float64 runs
LR = 0.05
TOL = 1e-12  # float64
TOL32 = 1e-6  # float32, against the single-device run

_rng = np.random.default_rng(20240611)
W_TRUE = _rng.normal(size=D)
XS = _rng.normal(size=(T, B, D))
YS = XS @ W_TRUE + 0.3 * _rng.normal(size=(T, B))
W0 = _rng.normal(size=D)
LSQ_BATCHES = [{"x": XS[t], "y": YS[t]} for t in range(T)]


def lsq_loss(w, batch):
    return jnp.mean((batch["x"] @ w - batch["y"]) ** 2)


def np_loss(w, x, y):
    return np.mean((x @ w - y) ** 2)


def np_grad(w, x, y):
    return 2.0 * x.T @ (x @ w - y) / len(y)


def worker_rows(t, k):
    return XS[t, k * M : (k + 1) * M], YS[t, k * M : (k + 1) * M]


# ----------------------------------------------------------------------------------------------------------------
# NumPy float64 references


class NpSGD:
    """θ ← θ − η·g, or with momentum γ: m ← γ·m + g, θ ← θ − η·m."""

    def __init__(self, lr, momentum=None):
        self.lr, self.momentum = lr, momentum

    def init(self, w):
        return np.zeros_like(w)

    def update(self, g, m):
        if self.momentum is None:
            return -self.lr * g, m
        m = self.momentum * m + g
        return -self.lr * m, m


class NpAdam:
    """Kingma & Ba: bias-corrected moments, θ ← θ − η·m̂/(√v̂ + ε)."""

    def __init__(self, lr, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

    def init(self, w):
        return 0, np.zeros_like(w), np.zeros_like(w)

    def update(self, g, state):
        t, m, v = state
        t, m, v = t + 1, self.b1 * m + (1 - self.b1) * g, self.b2 * v + (1 - self.b2) * g * g
        m_hat, v_hat = m / (1 - self.b1**t), v / (1 - self.b2**t)
        return -self.lr * m_hat / (np.sqrt(v_hat) + self.eps), (t, m, v)


def np_sync(opt, steps=T):
    """Full-batch training: the params after each step and the loss before it."""
    w, state, params, losses = W0.copy(), opt.init(W0), [], []
    for t in range(steps):
        losses.append(np_loss(w, XS[t], YS[t]))
        delta, state = opt.update(np_grad(w, XS[t], YS[t]), state)
        w = w + delta
        params.append(w.copy())
    return np.array(params), np.array(losses)


def np_local_sgd(opt, every, steps=T):
    """Local SGD: worker k steps on rows k·M:(k+1)·M with its own optimizer state; after steps t with
    (t + 1) % every == 0 every worker (and the center) becomes the workers' mean."""
    ws, states, center = [W0.copy() for _ in range(N)], [opt.init(W0) for _ in range(N)], W0.copy()
    workers, centers, losses = [], [], []
    for t in range(steps):
        step_losses = []
        for k in range(N):
            x, y = worker_rows(t, k)
            step_losses.append(np_loss(ws[k], x, y))
            delta, states[k] = opt.update(np_grad(ws[k], x, y), states[k])
            ws[k] = ws[k] + delta
        if (t + 1) % every == 0:
            center = np.mean(ws, axis=0)
            ws = [center.copy() for _ in range(N)]
        workers.append(np.array(ws))
        centers.append(center.copy())
        losses.append(step_losses)
    return np.array(workers), np.array(centers), np.array(losses)


def np_easgd(alpha, every, steps=T):
    """Synchronous EASGD with SGD: at steps t with t % every == 0, from the current x_k,
    x_k ← x_k − η·g_k(x_k) − α(x_k − x̃) and x̃ ← x̃ + α·Σ_k (x_k − x̃); otherwise x_k ← x_k − η·g_k(x_k)."""
    ws, center = [W0.copy() for _ in range(N)], W0.copy()
    workers, centers, losses = [], [], []
    for t in range(steps):
        rows = [worker_rows(t, k) for k in range(N)]
        losses.append([np_loss(ws[k], *rows[k]) for k in range(N)])
        grads = [np_grad(ws[k], *rows[k]) for k in range(N)]
        if t % every == 0:
            new = [ws[k] - LR * grads[k] - alpha * (ws[k] - center) for k in range(N)]
            center = center + alpha * sum(ws[k] - center for k in range(N))
            ws = new
        else:
            ws = [ws[k] - LR * grads[k] for k in range(N)]
        workers.append(np.array(ws))
        centers.append(center.copy())
    return np.array(workers), np.array(centers), np.array(losses)


# ----------------------------------------------------------------------------------------------------------------
# gradflow runs


def run_data_parallel(trainer, params0, batches):
    """Params (on the host) after each step, the loss of each step, and the final device values."""
    params, state = trainer.init(params0)
    history, losses = [], []
    for batch in batches:
        params, state, loss = trainer.step(params, state, batch)
        history.append(gd.to_host(params))
        losses.append(float(loss))
    return {"params": history, "losses": np.array(losses), "final": (params, state)}


def run_workers(trainer, params0=W0, batches=LSQ_BATCHES):
    """Per-worker params, center and per-worker losses (on the host) after each step."""
    state = trainer.init(params0)
    workers, centers, losses = [], [], []
    for batch in batches:
        state, step_losses = trainer.step(state, batch)
        workers.append(gd.to_host(state.params))
        centers.append(gd.to_host(state.center))
        losses.append(gd.to_host(step_losses))
    return {"workers": np.array(workers), "centers": np.array(centers), "losses": np.array(losses), "state": state}


def max_abs(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.fixture(scope="module")
def dp_sgd():
    return run_data_parallel(gd.DataParallel(lsq_loss, gf.sgd(LR)), W0, LSQ_BATCHES)


@pytest.fixture(scope="module")
def dp_momentum():
    return run_data_parallel(gd.DataParallel(lsq_loss, gf.sgd(LR, momentum=0.9)), W0, LSQ_BATCHES)


@pytest.fixture(scope="module")
def dp_adam():
    return run_data_parallel(gd.DataParallel(lsq_loss, gf.adam(LR)), W0, LSQ_BATCHES)


@pytest.fixture(scope="module")
def local_every1_sgd():
    return run_workers(gd.LocalSGD(lsq_loss, gf.sgd(LR), every=1))


# ----------------------------------------------------------------------------------------------------------------
# shard_batch


def test_shard_batch_puts_one_eighth_of_the_rows_on_each_device_in_mesh_order():
    """Row block k of every leaf lives on the k-th device of the mesh (default and permuted device order)."""
    permuted = [jax.devices()[i] for i in np.random.default_rng(3).permutation(N)]
    host = {"x": np.arange(B * 3, dtype=np.float64).reshape(B, 3), "y": {"z": np.arange(B, dtype=np.int32)}}
    for mesh in (gd.data_mesh(), gd.data_mesh(permuted)):
        placed = gd.shard_batch(host, mesh)
        for got, want in ((placed["x"], host["x"]), (placed["y"]["z"], host["y"]["z"])):
            assert got.shape == want.shape and got.dtype == want.dtype
            assert got.sharding.spec == P("data")
            shards = {shard.device: shard for shard in got.addressable_shards}
            assert len(shards) == N
            for k, device in enumerate(mesh.devices.flat):
                data = np.asarray(shards[device].data)
                assert data.shape == (M, *want.shape[1:])
                np.testing.assert_array_equal(data, want[k * M : (k + 1) * M])
    # the permuted mesh really is a different order, so the loop above checked more than device ids
    assert [d.id for d in gd.data_mesh(permuted).devices.flat] != [d.id for d in jax.devices()]


def test_shard_batch_rejects_rows_that_do_not_split_evenly():
    """12 rows over 8 devices: ValueError naming the leaf's path."""
    with pytest.raises(ValueError, match=r"batch\['x'\]"):
        gd.shard_batch({"x": np.zeros((12, 3)), "y": np.zeros(16)}, gd.data_mesh())


# ----------------------------------------------------------------------------------------------------------------
# DataParallel, float64


def test_data_parallel_sgd_equals_full_batch_gradient_descent(dp_sgd):
    """Sharded batch + averaged gradients = NumPy full-batch GD on the 64 rows, step by step, at 1e-12."""
    want_params, want_losses = np_sync(NpSGD(LR))
    for t in range(T):
        assert max_abs(dp_sgd["params"][t], want_params[t]) <= TOL, t
    assert max_abs(dp_sgd["losses"], want_losses) <= TOL
    params, _ = dp_sgd["final"]
    assert params.dtype == jnp.float64
    assert params.sharding.spec == P() and params.sharding.is_fully_replicated
    # the run went somewhere: the loss fell well below its start
    assert want_losses[-1] < 0.5 * want_losses[0]


def test_data_parallel_momentum_and_adam_equal_numpy(dp_momentum, dp_adam):
    """Heavy-ball momentum and Adam in DataParallel = the NumPy full-batch loops at 1e-12."""
    for run, opt in ((dp_momentum, NpSGD(LR, momentum=0.9)), (dp_adam, NpAdam(LR))):
        want_params, want_losses = np_sync(opt)
        assert max_abs(np.array(run["params"]), want_params) <= TOL
        assert max_abs(run["losses"], want_losses) <= TOL


def test_two_axis_mesh_data_axis_equals_one_axis_run(dp_sgd, dp_adam):
    """On jax.make_mesh((4, 2), ("data", "model")), DataParallel(axis="data") with SGD and with Adam gives the
    1-axis run and the NumPy loop at 1e-12, with replicated params."""
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    for tx, one_axis, opt in ((gf.sgd(LR), dp_sgd, NpSGD(LR)), (gf.adam(LR), dp_adam, NpAdam(LR))):
        run = run_data_parallel(gd.DataParallel(lsq_loss, tx, mesh=mesh, axis="data"), W0, LSQ_BATCHES)
        want_params, want_losses = np_sync(opt)
        assert max_abs(np.array(run["params"]), np.array(one_axis["params"])) <= TOL
        assert max_abs(np.array(run["params"]), want_params) <= TOL
        assert max_abs(run["losses"], want_losses) <= TOL
        params, _ = run["final"]
        assert params.sharding.is_fully_replicated


AUTO = jax.sharding.AxisType.Auto


def test_zero_on_a_two_axis_mesh_splits_along_data_only(dp_adam):
    """ZeRO-1 Adam on a (4, 2) ("data", "model") mesh (Auto axes) equals NumPy Adam at 1e-12; each moment is
    split 4 ways along "data" and replicated over "model"; params stay replicated."""
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AUTO, AUTO))
    trainer = gd.DataParallel(lsq_loss, gf.adam(LR), mesh=mesh, axis="data", shard_optimizer_state=True)
    run = run_data_parallel(trainer, W0, LSQ_BATCHES)
    want_params, want_losses = np_sync(NpAdam(LR))
    assert max_abs(np.array(run["params"]), want_params) <= TOL
    assert max_abs(np.array(run["params"]), np.array(dp_adam["params"])) <= TOL
    assert max_abs(run["losses"], want_losses) <= TOL
    params, state = run["final"]
    assert params.sharding.spec == P() and params.sharding.is_fully_replicated
    moments = [leaf for leaf in jax.tree.leaves(state) if leaf.shape == (D,)]
    assert len(moments) == 2
    for leaf in moments:
        assert leaf.sharding.spec == P("data")
        assert len(leaf.addressable_shards) == N
        # device (i, j) of the mesh holds quarter i, whatever j
        for i, row in enumerate(mesh.devices):
            for device in row:
                (shard,) = [s for s in leaf.addressable_shards if s.device == device]
                assert shard.data.shape == (D // 4,)
                assert shard.index == (slice(i * D // 4, (i + 1) * D // 4),)
    assert gd.bytes_per_device(state) == 2 * (D // 4) * 8 + 4  # one int32 count (optax's layout)


def test_zero_on_a_default_make_mesh():
    """ZeRO-1 on jax.make_mesh's default (Explicit-axis) mesh takes steps like the Auto-axis mesh does, with
    the moments still split along "data" (reshard instead of a sharding constraint)."""
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    trainer = gd.DataParallel(lsq_loss, gf.adam(LR), mesh=mesh, axis="data", shard_optimizer_state=True)
    run = run_data_parallel(trainer, W0, LSQ_BATCHES[:2])
    assert max_abs(np.array(run["params"]), np_sync(NpAdam(LR), steps=2)[0]) <= TOL
    assert gd.bytes_per_device(run["final"][1]) == 2 * (D // 4) * 8 + 4


# ----------------------------------------------------------------------------------------------------------------
# DataParallel on a float32 MLP: replicated, ZeRO-1 and optax, against the single-device run

MLP_STEPS = 20
_mrng = np.random.default_rng(99)
MLP_BATCHES = [
    {"x": _mrng.normal(size=(B, 12)).astype(np.float32), "y": _mrng.normal(size=(B, 8)).astype(np.float32)}
    for _ in range(MLP_STEPS)
]
# w1's first dimension (12) is not divisible by 8, so ZeRO splits its second (32); s is a scalar.
MLP_PARAMS = {
    "w1": np.asarray(_mrng.normal(size=(12, 32)) / np.sqrt(12), np.float32),
    "b1": np.asarray(0.1 * _mrng.normal(size=32), np.float32),
    "w2": np.asarray(_mrng.normal(size=(32, 8)) / np.sqrt(32), np.float32),
    "b2": np.asarray(0.1 * _mrng.normal(size=8), np.float32),
    "s": np.asarray(1.5, np.float32),
}
ZERO_SHARD_SHAPES = {"w1": (12, 4), "b1": (4,), "w2": (4, 8), "b2": (1,), "s": ()}
MLP_LR = 1e-2
# Adam's ε bounds how much a float32 gradient difference can move a step: ∂/∂g [g/(|g| + ε)] ≤ 1/ε. The
# sharded program sums the gradient in another order than the single-device one (differences ~1e-8), so with
# the default ε = 1e-8 a coordinate whose gradient happens to be ~1e-8 (this data has one, in b1) steps by
# up to ±η differently. With ε = 1e-3 the bound is η·1e-8/ε = 1e-7, inside the 1e-6 the spec asks for.
MLP_EPS = 1e-3


def mlp_adam(lr=MLP_LR):
    return gf.adam(lr, eps=MLP_EPS)


def mlp_loss(p, batch):
    hidden = jnp.tanh(batch["x"] @ p["w1"] + p["b1"])
    return jnp.mean((p["s"] * (hidden @ p["w2"]) + p["b2"] - batch["y"]) ** 2)


def single_device_run(tx, steps=MLP_STEPS):
    """The plain loop on the default device: tx.init, tx.update and apply_updates, no mesh."""

    @jax.jit
    def step(params, state, batch):
        loss, grads = jax.value_and_grad(mlp_loss)(params, batch)
        updates, state = tx.update(grads, state, params)
        return gf.apply_updates(params, updates), state, loss

    device = jax.devices()[0]
    params = jax.device_put({k: jnp.asarray(v) for k, v in MLP_PARAMS.items()}, device)
    state = tx.init(params)
    losses = []
    for batch in MLP_BATCHES[:steps]:
        params, state, loss = step(params, state, jax.device_put(batch, device))
        losses.append(float(loss))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    return gd.to_host(params), np.array(losses)


def mlp_params32():
    return {k: jnp.asarray(v, jnp.float32) for k, v in MLP_PARAMS.items()}


@pytest.fixture(scope="module")
def mlp_reference():
    return single_device_run(mlp_adam())


@pytest.fixture(scope="module")
def mlp_runs():
    out = {}
    for zero in (False, True):
        trainer = gd.DataParallel(mlp_loss, mlp_adam(), shard_optimizer_state=zero)
        params0, state0 = trainer.init(mlp_params32())
        run = run_data_parallel(trainer, mlp_params32(), MLP_BATCHES)
        compiled = trainer.compile_step(params0, state0, MLP_BATCHES[0])
        out[zero] = {"trainer": trainer, "init": (params0, state0), "compiled": compiled, **run}
    return out


def test_adam_mlp_replicated_and_zero_equal_single_device_run(mlp_runs, mlp_reference):
    """float32 Adam on a 12→32→8 MLP, new mini-batch each step: the replicated and the ZeRO-1 step both
    equal the single-device run within 1e-6 after 20 steps, losses included, and stay float32."""
    want_params, want_losses = mlp_reference
    for zero in (False, True):
        run = mlp_runs[zero]
        got = run["params"][-1]
        for name in MLP_PARAMS:
            assert got[name].dtype == np.float32, name
            assert max_abs(got[name], want_params[name]) <= TOL32, (zero, name)
        assert max_abs(run["losses"], want_losses) <= TOL32, zero
    # Adam moved the params far more than the tolerance, so the comparison is not vacuous
    assert max(max_abs(want_params[k], MLP_PARAMS[k]) for k in MLP_PARAMS) > 0.05


def test_zero_layout_shards_moments_and_replicates_counters(mlp_runs):
    """ZeRO-1: each moment leaf is split along its first dimension divisible by 8 (shard shape 1/8 there),
    the scalar leaves (counters, the moments of s) are replicated, before and after steps; the replicated
    trainer keeps everything whole; the ZeRO step's output params are replicated."""
    for state in (mlp_runs[True]["init"][1], mlp_runs[True]["final"][1]):
        leaves = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, dict))
        moments = [leaf for leaf in leaves if isinstance(leaf, dict)]
        assert len(moments) == 2  # Adam's mu and nu
        for moment in moments:
            for name, leaf in moment.items():
                assert leaf.shape == MLP_PARAMS[name].shape
                assert leaf.addressable_shards[0].data.shape == ZERO_SHARD_SHAPES[name], name
                assert leaf.sharding.is_fully_replicated == (name == "s"), name
        counters = [leaf for leaf in jax.tree.leaves(state) if leaf.dtype == jnp.int32]
        assert counters and all(c.shape == () and c.sharding.is_fully_replicated for c in counters)
    for leaf in jax.tree.leaves(mlp_runs[False]["final"][1]):
        assert leaf.sharding.is_fully_replicated
    params, _ = mlp_runs[True]["final"]
    for name, leaf in params.items():
        assert leaf.sharding.spec == P() and leaf.sharding.is_fully_replicated
        assert {shard.data.shape for shard in leaf.addressable_shards} == {MLP_PARAMS[name].shape}


def _moment_bytes():
    """Bytes of one Adam moment (a float32 copy of the params): total, and the part ZeRO can split."""
    total = sum(4 * v.size for v in MLP_PARAMS.values())
    splittable = sum(4 * v.size for k, v in MLP_PARAMS.items() if ZERO_SHARD_SHAPES[k] != v.shape)
    return total, splittable


def test_bytes_per_device_matches_the_layout(mlp_runs):
    """bytes_per_device: whole state on every device when replicated; with ZeRO, 1/8 of the split leaves
    plus the replicated ones (counted by hand from the parameter shapes)."""
    total, splittable = _moment_bytes()
    counters = 4  # one int32 step count in Adam's state (optax's layout)
    assert gd.bytes_per_device(mlp_runs[False]["init"][1]) == 2 * total + counters
    expected = 2 * (splittable // N + (total - splittable)) + counters
    assert gd.bytes_per_device(mlp_runs[True]["init"][1]) == expected
    assert gd.bytes_per_device(mlp_runs[True]["final"][1]) == expected
    # params stay whole on each device
    assert gd.bytes_per_device(mlp_runs[True]["final"][0]) == total


def test_compiled_zero_step_holds_one_eighth_of_the_moments(mlp_runs):
    """The compiled ZeRO program takes 7/8 of the moment bytes fewer arguments per device than the
    replicated one, and all-gathers the new params; the replicated one all-reduces the gradients."""
    total, splittable = _moment_bytes()
    replicated, zero = mlp_runs[False]["compiled"], mlp_runs[True]["compiled"]
    saving = replicated.memory_analysis().argument_size_in_bytes - zero.memory_analysis().argument_size_in_bytes
    # Slack: the moments of the scalar s cannot be split (4 bytes each); nothing else differs between the
    # two programs' arguments (params, batch, counters, hyperparameters), so ZeRO cannot save more than 7/8.
    slack = 2 * (total - splittable) * 7 // 8
    assert 2 * total * 7 // 8 - slack <= saving <= 2 * total * 7 // 8
    zero_text, replicated_text = zero.as_text(), replicated.as_text()
    assert "all-gather" in zero_text
    assert "all-reduce" in replicated_text
    assert "all-gather" not in replicated_text


def test_new_learning_rate_does_not_recompile(mlp_runs):
    """A new DataParallel with gf.adam(lr2) and the same structure reuses the compiled step, and the new
    rate takes effect (it equals the single-device run with lr2, not the lr run)."""
    lr2 = 3e-3
    before = gd._data_parallel_step._cache_size()
    assert before >= 1
    run = run_data_parallel(gd.DataParallel(mlp_loss, mlp_adam(lr2)), mlp_params32(), MLP_BATCHES[:5])
    assert gd._data_parallel_step._cache_size() == before
    want, _ = single_device_run(mlp_adam(lr2), steps=5)
    other = mlp_runs[False]["params"][4]
    for name in MLP_PARAMS:
        assert max_abs(run["params"][-1][name], want[name]) <= TOL32, name
    assert max(max_abs(run["params"][-1][k], other[k]) for k in MLP_PARAMS) > 1e-2


def test_optax_adam_in_data_parallel_equals_single_device_optax():
    """An optax GradientTransformation as tx: DataParallel equals the single-device optax loop within 1e-6."""
    run = run_data_parallel(gd.DataParallel(mlp_loss, optax.adam(MLP_LR, eps=MLP_EPS)), mlp_params32(), MLP_BATCHES)
    want_params, want_losses = single_device_run(optax.adam(MLP_LR, eps=MLP_EPS))
    for name in MLP_PARAMS:
        assert run["params"][-1][name].dtype == np.float32
        assert max_abs(run["params"][-1][name], want_params[name]) <= TOL32, name
    assert max_abs(run["losses"], want_losses) <= TOL32
    assert max(max_abs(want_params[k], MLP_PARAMS[k]) for k in MLP_PARAMS) > 0.05


# ----------------------------------------------------------------------------------------------------------------
# LocalSGD


def _assert_workers_equal(workers):
    for k in range(1, N):
        np.testing.assert_array_equal(workers[..., k, :], workers[..., 0, :])


def test_local_sgd_every_1_with_sgd_is_synchronous_sgd(local_every1_sgd, dp_sgd):
    """τ=1 with SGD: the mean of θ − η·g_k is θ − η·ḡ, so every worker and the center follow DataParallel
    and NumPy full-batch GD at 1e-12, and the 8 copies are identical."""
    want_params, _ = np_sync(NpSGD(LR))
    run = local_every1_sgd
    _assert_workers_equal(run["workers"])
    assert max_abs(run["centers"], want_params) <= TOL
    assert max_abs(run["centers"], np.array(dp_sgd["params"])) <= TOL
    assert max_abs(run["workers"][:, 0], want_params) <= TOL
    assert int(run["state"].step) == T


def test_local_sgd_every_1_with_momentum_is_synchronous_momentum(dp_momentum):
    """τ=1 with heavy-ball momentum: the local buffers are linear in the gradients, so their mean follows the
    synchronous buffer; the averaged params equal DataParallel(momentum) and NumPy at 1e-12."""
    run = run_workers(gd.LocalSGD(lsq_loss, gf.sgd(LR, momentum=0.9), every=1))
    want_params, _ = np_sync(NpSGD(LR, momentum=0.9))
    _assert_workers_equal(run["workers"])
    assert max_abs(run["centers"], want_params) <= TOL
    assert max_abs(run["centers"], np.array(dp_momentum["params"])) <= TOL


def test_local_adam_every_1_is_not_synchronous_adam(dp_adam):
    """τ=1 with Adam is not sync Adam: the states stay local, and the mean of the workers' m_k/(√v_k + ε)
    (each about η·sign(g_k) on the first step) is not m̄/(√v̄ + ε). It equals a NumPy local-Adam loop at
    1e-12 and is more than 1e-3 away from sync Adam (which DataParallel reproduces)."""
    run = run_workers(gd.LocalSGD(lsq_loss, gf.adam(LR), every=1))
    want_workers, want_centers, want_losses = np_local_sgd(NpAdam(LR), every=1)
    sync_params, _ = np_sync(NpAdam(LR))
    assert max_abs(run["workers"], want_workers) <= TOL
    assert max_abs(run["centers"], want_centers) <= TOL
    assert max_abs(run["losses"], want_losses) <= TOL
    assert max_abs(np.array(dp_adam["params"]), sync_params) <= TOL
    assert max_abs(run["centers"][-1], sync_params[-1]) > 1e-3


def test_local_sgd_every_4_equals_numpy_local_sgd():
    """τ=4: per-worker params, center and per-worker losses equal the NumPy simulation at 1e-12; the workers
    differ between synchronisations, are identical right after one, and the center is then their mean."""
    run = run_workers(gd.LocalSGD(lsq_loss, gf.sgd(LR), every=4))
    want_workers, want_centers, want_losses = np_local_sgd(NpSGD(LR), every=4)
    assert max_abs(run["workers"], want_workers) <= TOL
    assert max_abs(run["centers"], want_centers) <= TOL
    assert max_abs(run["losses"], want_losses) <= TOL
    for t in range(T):
        workers = run["workers"][t]
        if (t + 1) % 4 == 0:
            _assert_workers_equal(workers)
            assert max_abs(run["centers"][t], workers.mean(axis=0)) <= TOL
        else:
            assert max_abs(workers, workers[0]) > 1e-3, t
            # the center is still the last average (W0 before the first synchronisation)
            last_sync = want_centers[t - (t + 1) % 4] if t >= 4 else W0
            assert max_abs(run["centers"][t], last_sync) <= TOL, t


# ----------------------------------------------------------------------------------------------------------------
# ElasticAveraging


@pytest.mark.parametrize(("every", "alpha"), [(1, None), (3, 0.2)])
def test_easgd_equals_numpy_easgd(every, alpha):
    """EASGD with SGD = the NumPy synchronous EASGD loop at 1e-12 (workers, center, per-worker losses);
    alpha=None means 0.9/n."""
    run = run_workers(gd.ElasticAveraging(lsq_loss, gf.sgd(LR), every=every, alpha=alpha))
    want_workers, want_centers, want_losses = np_easgd(0.9 / N if alpha is None else alpha, every)
    assert max_abs(run["workers"], want_workers) <= TOL
    assert max_abs(run["centers"], want_centers) <= TOL
    assert max_abs(run["losses"], want_losses) <= TOL
    # the elastic force acted: the center moved, and the workers are not all alike
    assert max_abs(want_centers[-1], W0) > 0.1
    assert max_abs(want_workers[-1], want_workers[-1][0]) > 1e-3


def test_easgd_stability_boundary_on_a_quadratic():
    """Same loss ½λw² on every worker, SGD rate η, every=1: (x, x̃) ← A(x, x̃) with A = [[1−α−ηλ, α], [nα, 1−nα]].
    With η* the largest rate of spectral radius < 1 (bisection in NumPy), gradflow follows Aᵗ, converges at
    0.9·η* and diverges at 1.1·η*."""
    lam, alpha, steps = 2.0, 0.1, 60

    def matrix(eta):
        return np.array([[1 - alpha - eta * lam, alpha], [N * alpha, 1 - N * alpha]])

    def radius(eta):
        return max(abs(np.linalg.eigvals(matrix(eta))))

    low, high = 0.05 / lam, 4.0 / lam
    assert radius(low) < 1 < radius(high)
    for _ in range(80):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if radius(mid) < 1 else (low, mid)
    eta_star = low

    def quadratic(w, batch):
        return 0.5 * lam * jnp.sum(w**2)

    batch = {"x": np.zeros((N, 1))}
    x0 = np.array([1.0, -0.5])
    for factor, converges in ((0.9, True), (1.1, False)):
        eta = factor * eta_star
        trainer = gd.ElasticAveraging(quadratic, gf.sgd(eta), every=1, alpha=alpha)
        state = trainer.init(jnp.asarray(x0))
        pair = np.stack([x0, x0])  # (worker, center), each coordinate evolves independently
        for _ in range(steps):
            state, _ = trainer.step(state, batch)
            pair = matrix(eta) @ pair
        workers, center = gd.to_host(state.params), gd.to_host(state.center)
        scale = np.max(np.abs(pair))
        assert max_abs(workers, np.broadcast_to(pair[0], workers.shape)) <= TOL * scale
        assert max_abs(center, pair[1]) <= TOL * scale
        if converges:
            assert np.max(np.abs(workers)) < 1e-4 and np.max(np.abs(center)) < 1e-4
        else:
            assert np.max(np.abs(workers)) > 1e3 and np.max(np.abs(center)) > 1e3


# ----------------------------------------------------------------------------------------------------------------
# errors


def test_local_sgd_rejects_every_0():
    """every must be a whole number >= 1."""
    with pytest.raises(ValueError, match="every"):
        gd.LocalSGD(lsq_loss, gf.sgd(LR), every=0)


@pytest.mark.parametrize("alpha", [0.0, 2 / 9, 0.5, 1.5])
def test_easgd_rejects_alpha_outside_its_stability_bound(alpha):
    """With n = 8 workers alpha must be in (0, 2/9): the elastic step scales the workers' mean minus the center
    by 1 − 9·alpha."""
    with pytest.raises(ValueError, match=r"alpha \(with n = 8 workers, stable for 0 < alpha < 2 / \(n \+ 1\)\) must "
                                         r"be in \(0.0, 0.2222"):  # fmt: skip
        gd.ElasticAveraging(lsq_loss, gf.sgd(LR), alpha=alpha)


def test_easgd_elastic_step_contracts_inside_the_bound_and_not_beyond():
    """No gradient (learning rate 0): the gap between the workers' mean and the center shrinks by |1 − 9·alpha|
    per synchronisation, so alpha = 0.2 (factor 0.8) converges; alpha = 2/9 exactly would oscillate forever."""

    def loss(w, batch):
        return jnp.mean(batch["x"]) * jnp.sum(w)

    trainer = gd.ElasticAveraging(loss, gf.sgd(0.0), alpha=0.2)
    workers = np.arange(N, dtype=np.float32).reshape(N, 1)  # worker k at k, the center at 0
    state = trainer.init(jnp.zeros(1, jnp.float32))._replace(params=gd.shard_batch(workers, trainer.mesh))
    gaps = []
    for _ in range(3):
        state, _ = trainer.step(state, {"x": np.zeros((N, 1), np.float32)})
        gaps.append(float(np.mean(gd.to_host(state.params)) - gd.to_host(state.center)[0]))
    np.testing.assert_allclose(np.array(gaps[1:]) / np.array(gaps[:-1]), [1 - 9 * 0.2] * 2, rtol=1e-5)


def test_trainers_reject_an_axis_missing_from_the_mesh():
    """axis="model" on a one-axis "data" mesh: ValueError naming the axis, for each trainer and shard_batch."""
    mesh = gd.data_mesh()
    for cls in (gd.DataParallel, gd.LocalSGD, gd.ElasticAveraging):
        with pytest.raises(ValueError, match="'model'"):
            cls(lsq_loss, gf.sgd(LR), mesh=mesh, axis="model")
    with pytest.raises(ValueError, match="'model'"):
        gd.shard_batch(LSQ_BATCHES[0], mesh, axis="model")


def test_workers_step_rejects_a_state_that_is_not_workers_state(local_every1_sgd):
    """LocalSGD.step with a plain tuple instead of the WorkersState: TypeError naming state."""
    trainer = gd.LocalSGD(lsq_loss, gf.sgd(LR), every=1)
    with pytest.raises(TypeError, match="state"):
        trainer.step(tuple(local_every1_sgd["state"]), LSQ_BATCHES[0])


def test_loss_fn_must_be_callable():
    """A loss_fn that is not callable: TypeError naming loss_fn, for each trainer."""
    for cls in (gd.DataParallel, gd.LocalSGD, gd.ElasticAveraging):
        with pytest.raises(TypeError, match="loss_fn"):
            cls("not a function", gf.sgd(LR))


def test_default_mesh_and_shardings():
    """The default mesh is all 8 devices on "data"; replicate gives P(); zero_shardings splits the first
    dimension divisible by 8 and replicates the rest."""
    mesh = gd.data_mesh()
    assert dict(mesh.shape) == {"data": N}
    assert gd.replicate({"w": np.zeros(3)}, mesh)["w"].sharding.spec == P()
    shardings = gd.zero_shardings({"a": np.zeros((3, 16)), "b": np.zeros(4), "c": np.zeros([])}, mesh)
    assert shardings["a"] == NamedSharding(mesh, P(None, "data"))
    assert shardings["b"] == NamedSharding(mesh, P())
    assert shardings["c"] == NamedSharding(mesh, P())
