"""Training on many devices with JAX's own engine: data parallelism, ZeRO-1, local SGD and EASGD.

Seed 003's parallel SGD family, on ``jax.sharding`` and ``jax.shard_map`` rather than a home-made
parameter server:

- :class:`DataParallel`: synchronous data parallelism. The global batch is split along a mesh axis,
  every device differentiates the loss on its slice, and the compiler averages the gradients (the
  loss is a mean over the global batch, so XLA inserts the all-reduce). Params are replicated. With
  ``shard_optimizer_state=True`` it is ZeRO stage 1 (Rajbhandari et al., 2020): each device holds and
  updates 1/n of the optimizer state, and the new params are all-gathered.
- :class:`LocalSGD`: each worker (a device) trains its own copy of the params and optimizer state on
  its slice of the batch, and the copies are averaged every ``every`` steps (Stich, 2019; Lin et al.,
  2020). With ``every=1`` and SGD (or momentum) it is synchronous SGD.
- :class:`ElasticAveraging`: EASGD (Zhang, Choromanska & LeCun, 2015). Every ``every`` steps each
  worker is pulled towards a center variable x̃ by an elastic force and x̃ towards the workers.
- :func:`gradflow.stale_gradients` simulates the delayed gradients of Downpour SGD on one device.

The same code runs on one device, on the devices of one host, and on several processes, one per host
(call ``jax.distributed.initialize`` first): meshes are built from ``jax.devices()``, which lists the
devices of every process, and inputs are placed with ``jax.make_array_from_callback``, which reads only
the slices a process owns. Every process passes the same global batch; at scale, build each host's
slice with ``jax.make_array_from_process_local_data`` and pass the resulting global arrays instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gradflow import tree
from gradflow.core import ForeignTransform, Transform, apply_updates, pytree_dataclass, static_field
from gradflow.validation import (
    check_arity,
    check_callable,
    check_flag,
    check_integer,
    check_range,
    check_scalar_output,
)

__all__ = [
    "DataParallel",
    "ElasticAveraging",
    "LocalSGD",
    "WorkersState",
    "bytes_per_device",
    "data_mesh",
    "replicate",
    "shard_batch",
    "to_host",
    "zero_shardings",
]


def data_mesh(devices: Any = None, axis: str = "data") -> Mesh:
    """A one-axis mesh over ``devices`` (default: every device of every process) named ``axis``.

    >>> dict(data_mesh().shape)
    {'data': 1}
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh: devices must hold at least one device, got none")
    return Mesh(np.asarray(devices), (axis,))


def _axis_size(owner: str, mesh: Any, axis: str) -> int:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{owner}: mesh must be a jax.sharding.Mesh (see data_mesh), got {type(mesh).__name__}")
    if axis not in mesh.shape:
        raise ValueError(f"{owner}: axis {axis!r} is not an axis of the mesh, whose axes are {tuple(mesh.axis_names)}")
    return mesh.shape[axis]


def _place(tree_: Any, sharding: Any, name: str, check: Callable[[str, tuple[int, ...]], None] | None = None) -> Any:
    """Global arrays with ``sharding`` (a sharding, or a function of the leaf) from host values."""

    def place(path, leaf):
        target = sharding(leaf) if callable(sharding) else sharding
        if check is not None:
            check(f"{name}{jax.tree_util.keystr(path)}", np.shape(leaf))
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(target, leaf.ndim):
            return leaf
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

    return jax.tree_util.tree_map_with_path(place, tree_)


def shard_batch(batch: Any, mesh: Mesh, axis: str = "data") -> Any:
    """Split every leaf of ``batch`` along its leading axis over the devices of mesh axis ``axis``.

    Each process passes the same global batch and keeps only the rows of its own devices.

    >>> shard_batch({"x": np.ones((4, 3))}, data_mesh())["x"].sharding.spec == P("data")
    True
    """
    n = _axis_size("shard_batch", mesh, axis)

    def check(path, shape):
        if len(shape) == 0 or shape[0] % n:
            raise ValueError(f"{path}: the leading (batch) axis must split evenly over the {n} devices of mesh "
                             f"axis {axis!r}, got shape {shape}")  # fmt: skip

    return _place(batch, NamedSharding(mesh, P(axis)), "batch", check)


def replicate(tree_: Any, mesh: Mesh) -> Any:
    """The same values on every device of ``mesh`` (as global arrays).

    >>> replicate({"w": np.zeros(2)}, data_mesh())["w"].sharding.spec == P()
    True
    """
    return _place(tree_, NamedSharding(mesh, P()), "params")


def zero_shardings(tree_: Any, mesh: Mesh, axis: str = "data") -> Any:
    """ZeRO's layout for ``tree_`` (arrays or shape structs): each leaf split along its first dimension
    that ``axis``'s size divides, so a device holds 1/n of it; leaves with no such dimension (step
    counters, small vectors) are replicated.

    >>> zero_shardings({"m": jnp.zeros((4, 3)), "count": jnp.zeros([], jnp.int32)}, data_mesh())["m"].spec == P("data")
    True
    """
    n = _axis_size("zero_shardings", mesh, axis)

    def choose(leaf):
        shape = np.shape(leaf) if not hasattr(leaf, "shape") else leaf.shape
        for dim, size in enumerate(shape):
            if size >= n and size % n == 0:
                return NamedSharding(mesh, P(*([None] * dim), axis))
        return NamedSharding(mesh, P())

    return jax.tree.map(choose, tree_)


def bytes_per_device(tree_: Any) -> int:
    """The bytes one device holds of the global arrays in ``tree_`` (the largest share of any device).

    >>> bytes_per_device(shard_batch(np.zeros((4, 2), np.float32), data_mesh()))
    32
    """
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree_):
        if not isinstance(leaf, jax.Array):
            raise TypeError(f"bytes_per_device: tree_{jax.tree_util.keystr(path)} must be a jax.Array placed on "
                            f"devices (see shard_batch, replicate), got {type(leaf).__name__}")  # fmt: skip
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += math.prod(shard) * leaf.dtype.itemsize
    return total


def to_host(tree_: Any) -> Any:
    """NumPy copies of global arrays, gathered from every process when there are several.

    >>> to_host({"w": jnp.ones(2)})["w"]
    array([1., 1.], dtype=float32)
    """
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, jax.device_get(tree_))
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree_, tiled=True)


def _as_transform(owner: str, tx: Any) -> Transform:
    if isinstance(tx, Transform):
        return tx
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return ForeignTransform(tx)
    raise TypeError(f"{owner}: tx must be a gradient transformation with init and update, got {type(tx).__name__}")


def _check_trainer(trainer: Any) -> None:
    """Shared constructor checks; fills in the default mesh and wraps an optax ``tx``."""
    owner = type(trainer).__name__
    check_callable(owner, "loss_fn", trainer.loss_fn)
    check_arity(owner, "loss_fn", trainer.loss_fn, "loss_fn(params, batch)", 2)
    object.__setattr__(trainer, "tx", _as_transform(owner, trainer.tx))
    if not isinstance(trainer.axis, str):
        raise TypeError(f"{owner}: axis must be the name of a mesh axis (a str), got {trainer.axis!r}")
    if trainer.mesh is None:
        object.__setattr__(trainer, "mesh", data_mesh(axis=trainer.axis))
    _axis_size(owner, trainer.mesh, trainer.axis)


def _local_step(trainer, params, opt_state, batch):
    """Loss, updates and new optimizer state of one step on ``batch`` (extras bound to the batch)."""
    loss_fn, tx = trainer.loss_fn, trainer.tx

    def objective(p):
        return loss_fn(p, batch)

    check_scalar_output(type(trainer).__name__, "loss_fn", objective, params)
    value, grads = jax.value_and_grad(objective)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=value, value_fn=objective,
                                   grad_fn=jax.grad(objective))  # fmt: skip
    return value, updates, opt_state


@pytree_dataclass
class DataParallel:
    """Synchronous data-parallel training over a mesh axis, optionally with ZeRO-1 optimizer state.

    Per step, with the global batch B split into n equal slices B_k (one per device):
    g = (1/n) Σ_k ∇L(θ; B_k) = ∇L(θ; B) for a mean loss, then θ ← θ + tx(g). ``loss_fn(params, batch)``
    is written for the global batch; the compiler splits it and inserts the gradient all-reduce.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, a mean over the batch's leading axis.
      tx: the optimizer (gradflow or optax). It is an argument of the compiled step, so a new learning
        rate does not recompile.
      mesh: the device mesh (default: :func:`data_mesh` over every device, its axis named ``axis``).
      axis: the mesh axis the batch is split along.
      shard_optimizer_state: ZeRO-1: split the optimizer state along ``axis`` (see
        :func:`zero_shardings`) so each device holds and updates 1/n of it.

    >>> import gradflow as gf
    >>> trainer = DataParallel(lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2), gf.sgd(0.1))
    >>> params, state = trainer.init(jnp.zeros(2))
    >>> batch = {"x": np.eye(2), "y": np.array([1.0, 2.0])}
    >>> for _ in range(100):
    ...     params, state, loss = trainer.step(params, state, batch)
    >>> np.round(to_host(params), 3)
    array([1., 2.], dtype=float32)
    """

    loss_fn: Callable = static_field()
    tx: Any
    mesh: Any = static_field(default=None)
    axis: str = static_field(default="data")
    shard_optimizer_state: bool = static_field(default=False)

    def __post_init__(self):
        _check_trainer(self)
        flag = check_flag("DataParallel", "shard_optimizer_state", self.shard_optimizer_state)
        object.__setattr__(self, "shard_optimizer_state", flag)

    def state_shardings(self, opt_state: Any) -> Any:
        """Where each leaf of the optimizer state lives: split (ZeRO-1) or replicated."""
        if self.shard_optimizer_state:
            return zero_shardings(opt_state, self.mesh, self.axis)
        return jax.tree.map(lambda _: NamedSharding(self.mesh, P()), opt_state)

    def init(self, params: Any) -> tuple[Any, Any]:
        """Replicate ``params`` over the mesh and build the optimizer state in its layout."""
        tree.check_float_leaves(params)
        params = replicate(params, self.mesh)
        shardings = self.state_shardings(jax.eval_shape(self.tx.init, params))
        opt_state = jax.jit(_init_state, out_shardings=shardings)(self.tx, params)
        return params, opt_state

    def step(self, params: Any, opt_state: Any, batch: Any) -> tuple[Any, Any, jax.Array]:
        """One synchronous step on the global ``batch``: returns ``(params, opt_state, loss)``."""
        return _data_parallel_step(self, params, opt_state, shard_batch(batch, self.mesh, self.axis))

    def compile_step(self, params: Any, opt_state: Any, batch: Any) -> Any:
        """The compiled step for these arguments, to inspect (``memory_analysis()``, ``as_text()``)."""
        return _data_parallel_step.lower(self, params, opt_state, shard_batch(batch, self.mesh, self.axis)).compile()


def _init_state(tx, params):
    return tx.init(params)


def _lay_out(tree_: Any, shardings: Any, mesh: Mesh, axis: str) -> Any:
    """Inside ``jit``: put ``tree_`` in the layout ``shardings``. On a mesh axis of type Explicit (the
    default of ``jax.make_mesh``) that is ``reshard``; on an Auto axis, a sharding constraint."""
    if mesh.axis_types[mesh.axis_names.index(axis)] == AxisType.Explicit:
        return jax.sharding.reshard(tree_, shardings)
    return jax.lax.with_sharding_constraint(tree_, shardings)


@jax.jit
def _data_parallel_step(trainer, params, opt_state, batch):
    value, updates, opt_state = _local_step(trainer, params, opt_state, batch)
    mesh, axis = trainer.mesh, trainer.axis
    params = _lay_out(apply_updates(params, updates), NamedSharding(mesh, P()), mesh, axis)
    opt_state = _lay_out(opt_state, trainer.state_shardings(opt_state), mesh, axis)
    return params, opt_state, value


class WorkersState(NamedTuple):
    """The state of :class:`LocalSGD` and :class:`ElasticAveraging`.

    ``params`` and ``opt_state``: every worker's own copy, each leaf with a leading axis of workers,
    split so that worker k's copy lives on device k. ``center``: replicated; the average of the last
    synchronisation (local SGD) or the center variable x̃ (EASGD). ``step``: int32 steps done.

    >>> import gradflow as gf
    >>> state = LocalSGD(lambda w, b: jnp.mean((b @ w) ** 2), gf.sgd(0.1)).init(jnp.ones(3))
    >>> state.params.shape, state.center.shape, int(state.step)
    ((1, 3), (3,), 0)
    """

    params: Any
    opt_state: Any
    center: Any
    step: jax.Array


class _Workers:
    """What local SGD and EASGD share: per-worker copies stepped inside ``shard_map``."""

    loss_fn: Callable
    tx: Any
    mesh: Mesh
    axis: str
    every: int

    def _check_every(self):
        object.__setattr__(self, "every", check_integer(type(self).__name__, "every", self.every, low=1))

    @property
    def workers(self) -> int:
        return self.mesh.shape[self.axis]

    def init(self, params: Any) -> WorkersState:
        """Every worker starts from ``params``, with its own optimizer state; the center is ``params``."""
        tree.check_float_leaves(params)
        center = replicate(params, self.mesh)
        split = NamedSharding(self.mesh, P(self.axis))
        workers, opt_state = jax.jit(_init_workers, static_argnums=2, out_shardings=split)(self.tx, center,
                                                                                          self.workers)  # fmt: skip
        return WorkersState(workers, opt_state, center, jnp.zeros([], jnp.int32))

    def step(self, state: WorkersState, batch: Any) -> tuple[WorkersState, jax.Array]:
        """Each worker takes one step on its slice of the global ``batch``, then the workers
        synchronise if the step count calls for it. Returns the new state and each worker's loss."""
        if not isinstance(state, WorkersState):
            raise TypeError(f"{type(self).__name__}.step: state must be the WorkersState that init returned, "
                            f"got {type(state).__name__}")  # fmt: skip
        return _workers_step(self, state, shard_batch(batch, self.mesh, self.axis))


def _init_workers(tx, center, workers):
    copies = jax.tree.map(lambda p: jnp.broadcast_to(p, (workers, *jnp.shape(p))), center)
    return copies, jax.vmap(tx.init)(copies)


@jax.jit
def _workers_step(trainer, state, batch):
    axis = trainer.axis

    def per_device(trainer, params, opt_state, center, step, batch):
        params, opt_state = jax.tree.map(lambda x: x[0], (params, opt_state))
        value, updates, opt_state = _local_step(trainer, params, opt_state, batch)
        params, center = trainer._combine(params, updates, center, step)
        params, opt_state = jax.tree.map(lambda x: x[None], (params, opt_state))
        return params, opt_state, center, value[None]

    split, same = P(axis), P()
    params, opt_state, center, losses = jax.shard_map(
        per_device,
        mesh=trainer.mesh,
        in_specs=(same, split, split, same, same, split),
        out_specs=(split, split, same, split),
    )(trainer, state.params, state.opt_state, state.center, state.step, batch)
    return WorkersState(params, opt_state, center, state.step + 1), losses


def _varying(tree_: Any, axis: str) -> Any:
    """Mark replicated values as per-worker (``shard_map`` tracks which values differ by device)."""
    return jax.tree.map(lambda x: jax.lax.pcast(x, (axis,), to="varying"), tree_)


@pytree_dataclass
class LocalSGD(_Workers):
    """Local SGD: workers step independently and average their params every ``every`` steps.

    Worker k: θ_k ← θ_k + tx_k(∇L(θ_k; B_k)); after steps t with (t + 1) mod every = 0,
    θ_k ← (1/n) Σ_j θ_j for every k (the optimizer states stay local). Stich (2019), "Local SGD
    converges fast and communicates little"; Lin et al. (2020). With ``every=1`` and SGD this is
    synchronous SGD: the average of θ − η g_k is θ − η ḡ.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` for one worker's slice of the batch.
      tx: the optimizer each worker runs (its own state per worker).
      mesh: the device mesh (default: :func:`data_mesh`, its axis named ``axis``); one worker per device of
        ``axis``.
      axis: the mesh axis of the workers.
      every: steps between two averagings (τ).

    >>> import gradflow as gf
    >>> trainer = LocalSGD(lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2), gf.sgd(0.5), every=4)
    >>> state = trainer.init(jnp.zeros(2))
    >>> for _ in range(48):
    ...     state, losses = trainer.step(state, {"x": np.eye(2), "y": np.array([1.0, 2.0])})
    >>> np.round(to_host(state.center), 2)
    array([1., 2.], dtype=float32)
    """

    loss_fn: Callable = static_field()
    tx: Any
    mesh: Any = static_field(default=None)
    axis: str = static_field(default="data")
    every: int = static_field(default=1)

    def __post_init__(self):
        _check_trainer(self)
        self._check_every()

    def _combine(self, params, updates, center, step):
        params = apply_updates(params, updates)

        def average(params, center):
            mean = jax.lax.pmean(params, self.axis)
            return _varying(mean, self.axis), mean

        return jax.lax.cond((step + 1) % self.every == 0, average, lambda p, c: (p, c), params, center)


@pytree_dataclass
class ElasticAveraging(_Workers):
    """Elastic averaging SGD (EASGD): workers and a center variable x̃ pulled towards each other.

    Synchronous EASGD with communication period τ = ``every`` (Zhang, Choromanska & LeCun, 2015,
    "Deep learning with elastic averaging SGD", eqs. 5-6 and Algorithm 1), with moving rate α = η·ρ:
    at steps t with t mod τ = 0, from the workers' current x_k,
      x_k ← x_k + tx(∇L(x_k; B_k)) − α (x_k − x̃),    x̃ ← x̃ + α Σ_k (x_k − x̃);
    at other steps only the gradient step. The paper's β = n·α, with β = 0.9 its recommended value.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` for one worker's slice of the batch.
      tx: the optimizer each worker runs.
      mesh: the device mesh (default: :func:`data_mesh`, its axis named ``axis``); one worker per device of
        ``axis``.
      axis: the mesh axis of the workers.
      every: the communication period τ.
      alpha: the moving rate α, with 0 < α < 2 / (n + 1); default 0.9 / n (β = 0.9).

    Stability. One elastic step maps the gap between the workers' mean and the center, d = x̄ − x̃, to
    (1 − (n + 1)·α)·d, and each worker's deviation from the mean to (1 − α) times itself. Both shrink
    only when 0 < α < 2 / (n + 1) (in the paper's terms β = n·α < 2n / (n + 1)); a concrete α outside
    that interval is an error naming α, n and the bound. With (n + 1)·α ≤ 1 the gap shrinks without
    changing sign; the default (β = 0.9) is stable for every n but oscillates for n ≤ 8.

    >>> import gradflow as gf
    >>> trainer = ElasticAveraging(lambda w, b: jnp.mean((b["x"] @ w - b["y"]) ** 2), gf.sgd(0.1))
    >>> state = trainer.init(jnp.zeros(2))
    >>> for _ in range(200):
    ...     state, losses = trainer.step(state, {"x": np.eye(2), "y": np.array([1.0, 2.0])})
    >>> np.round(to_host(state.center), 2)
    array([1., 2.], dtype=float32)
    """

    loss_fn: Callable = static_field()
    tx: Any
    mesh: Any = static_field(default=None)
    axis: str = static_field(default="data")
    every: int = static_field(default=1)
    alpha: Any = None

    def __post_init__(self):
        _check_trainer(self)
        self._check_every()
        if self.alpha is None:
            object.__setattr__(self, "alpha", 0.9 / self.workers)
        n = self.workers
        check_range("ElasticAveraging", f"alpha (with n = {n} workers, stable for 0 < alpha < 2 / (n + 1))",
                    self.alpha, 0.0, 2.0 / (n + 1), low_open=True)  # fmt: skip

    def _combine(self, params, updates, center, step):
        def pull(x, force):  # x + α·force in x's dtype (α is a float64 leaf when x64 is on)
            return x + jnp.asarray(self.alpha).astype(x.dtype) * force

        def elastic(params, center):
            difference = jax.tree.map(jnp.subtract, params, _varying(center, self.axis))
            pulled = jax.tree.map(lambda p, d: pull(p, -d), params, difference)
            total = jax.lax.psum(difference, self.axis)
            return pulled, jax.tree.map(pull, center, total)

        params, center = jax.lax.cond(step % self.every == 0, elastic, lambda p, c: (p, c), params, center)
        return apply_updates(params, updates), center
