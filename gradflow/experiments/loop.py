"""Whole training runs as one compiled program: :func:`run`, and :func:`sweep` over a batch of optimizers.

A run is a ``lax.scan`` over steps inside ``jax.jit``: no Python between steps, so a 2-D problem
costs nanoseconds per step instead of the microseconds of a Python loop around a jitted step. The
optimizer is an *argument* of the compiled program (it is pytree data), so a new learning rate reuses
the program, and :func:`sweep` maps the run over a batch of optimizers with ``jax.vmap``: 256
learning rates train side by side in one program.

Per step, the loss and its gradient come from one ``jax.value_and_grad``; the optimizer's ``update``
also receives ``grad_fn``, ``value`` and ``value_fn`` (for NAG's look-ahead, Polyak steps, line
searches), bound to the step's batch when the run has data.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradflow import tree
from gradflow.core import ForeignTransform, Transform, apply_updates, checked_on_host, pytree_dataclass, static_field
from gradflow.experiments.data import Batches, is_given
from gradflow.experiments.history import History
from gradflow.validation import (
    check_arity,
    check_callable,
    check_choice,
    check_flag,
    check_hyperparameters_before_tracing,
    check_integer,
    check_nonnegative,
    check_scalar_output,
)

__all__ = ["EarlyStopping", "run", "sweep"]

RECORDABLE = ("loss", "grad_norm", "params", "full_loss")
MAX_STEPS = 2**31 - 1  # step numbers are int32 inside the compiled loop


@pytree_dataclass
class EarlyStopping:
    """Stop when the validation loss stops improving (seed 003), inside the compiled loop.

    ``validation_fn(params)`` is evaluated at every record (every ``every`` steps of the run). When
    ``patience`` evaluations in a row have not improved on the best one by more than ``min_delta``,
    the parameters freeze: later steps leave them and the optimizer state unchanged, and
    :attr:`History.stopped_at` says when. :attr:`History.best_params` holds the parameters of the best
    validation loss. Every run of a :func:`sweep` uses the same ``EarlyStopping``.

    ``patience`` is an integer >= 1 and ``min_delta`` a number >= 0, Python numbers and concrete arrays
    alike (``patience=jnp.array(0)`` is an error); ``validation_fn`` must return a real floating-point scalar.

    >>> import gradflow as gf
    >>> stop = EarlyStopping(lambda w: jnp.sum((w - 1.0) ** 2), patience=2)
    >>> history = run(lambda w: jnp.sum(w**2), jnp.ones(1), gf.sgd(0.1), steps=50, early_stopping=stop)
    >>> int(history.stopped_at) < 50, history.best_val_loss.item()
    (True, 0.0)
    """

    validation_fn: Callable = static_field()
    patience: Any = 10
    min_delta: Any = 0.0

    def __post_init__(self):
        """Python numbers and concrete arrays are checked; tracers (inside ``jit``) are taken as they are."""
        check_callable("EarlyStopping", "validation_fn", self.validation_fn)
        if is_given(self.patience):
            check_integer("EarlyStopping", "patience", self.patience, low=1, high=MAX_STEPS)
        if is_given(self.min_delta):
            check_nonnegative("EarlyStopping", "min_delta", self.min_delta)


def run(
    loss_fn: Callable,
    params: Any,
    tx: Any,
    *,
    steps: int,
    data: Batches | Any = None,
    record: tuple[str, ...] = ("loss",),
    every: int = 1,
    early_stopping: EarlyStopping | None = None,
    progress: bool = False,
) -> History:
    """Train ``params`` with ``tx`` for ``steps`` steps in one compiled program.

    Everything is checked before anything is traced, with errors that name the argument: the
    optimizer's concrete hyperparameters against their ranges, ``steps`` (at most 2³¹ − 1, the int32
    step counter) and ``every``, ``record``, and ``loss_fn``'s signature and output (a real
    floating-point scalar, checked once with ``jax.eval_shape``). A run whose loss turns NaN or infinite
    is reported by :attr:`History.diverged`; so is a hyperparameter that is out of range but only known
    inside ``jit`` (it makes the optimizer's updates NaN).

    Args:
      loss_fn: ``loss_fn(params)``, or ``loss_fn(params, batch)`` when ``data`` is given; a scalar.
        Keep the same function object between calls to reuse the compiled program.
      params: the start point (any pytree of float arrays).
      tx: a gradflow transform (an optax ``GradientTransformation`` also works, but then each new
        hyperparameter value compiles anew).
      steps: number of optimizer steps.
      data: a :class:`Batches`, or a pytree of arrays with a leading example axis (batch gradient
        descent on all of it).
      record: what to record besides the loss: ``"grad_norm"``, ``"params"`` (the trajectory) and,
        for runs with data, ``"full_loss"`` (the loss on the whole dataset, not just the step's batch).
      every: record every ``every`` steps; ``steps`` must be a multiple of it.
      early_stopping: an :class:`EarlyStopping`, checked at every record.
      progress: show a progress bar (needs tqdm) advanced from inside the compiled loop, when stderr is
        a terminal (a redirected log gets no progress frames).

    Returns:
      a :class:`History`.

    >>> import gradflow as gf
    >>> history = run(lambda p: jnp.sum((p - 3.0) ** 2), jnp.zeros(2), gf.sgd(0.1), steps=50)
    >>> history.loss.shape, round(float(history.final_loss), 6)
    ((50,), 0.0)
    """
    tx, batches, record, checked = _check_arguments("run", loss_fn, params, tx, steps, data, record, every,
                                                    early_stopping, progress)  # fmt: skip
    if checked:
        tx = _once_per_optimizer(jax.device_put, tx)
    with _progress_bar(steps if progress else 0) as advance:
        return _run_jit(loss_fn, params, tx, batches, early_stopping, steps=steps, record=record, every=every,
                        advance=advance, checked=checked)  # fmt: skip


def sweep(
    loss_fn: Callable,
    params: Any,
    txs: Any,
    *,
    steps: int,
    data: Batches | Any = None,
    record: tuple[str, ...] = ("loss",),
    every: int = 1,
    early_stopping: EarlyStopping | None = None,
    progress: bool = False,
) -> History:
    """:func:`run` for a batch of optimizers at once: ``jax.vmap`` over ``txs`` in one compiled program.

    ``txs`` is one optimizer whose hyperparameter leaves have a leading batch axis, as
    ``jax.vmap(gradflow.adam)(learning_rates)`` or :func:`~gradflow.experiments.optimizer_grid` build.
    Every run starts from the same ``params`` and sees the same batches. The returned
    :class:`History` has that batch axis in front of every array; ``history[i]`` is run ``i``.

    The batch's concrete hyperparameters are checked against their ranges before anything is traced
    (``jax.vmap(gf.sgd)(jnp.array([0.1, -0.1]))`` is an error naming ``learning_rate``); a run that
    diverges is flagged in :attr:`History.diverged`, the place to look before picking a best run.

    >>> import gradflow as gf
    >>> txs = jax.vmap(gf.sgd)(jnp.array([0.01, 0.1, 1.1]))
    >>> sweep(lambda p: jnp.sum(p**2), jnp.ones(2), txs, steps=20).final_loss.shape
    (3,)
    """
    txs, batches, record, checked = _check_arguments("sweep", loss_fn, params, txs, steps, data, record, every,
                                                     early_stopping, progress)  # fmt: skip
    if not isinstance(txs, Transform) or isinstance(txs, ForeignTransform):
        raise TypeError("sweep: txs must be a gradflow transform whose leaves carry a batch axis, "
                        f"got {type(txs).__name__}")  # fmt: skip
    sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in jax.tree.leaves(txs)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"sweep: every hyperparameter leaf of txs needs the same leading batch axis, got sizes "
                         f"{sizes}; build the batch with jax.vmap(factory)(values) or optimizer_grid")  # fmt: skip
    txs, varying = _once_per_optimizer(_drop_constant_batch_axes, txs)
    with _progress_bar(steps if progress else 0) as advance:
        return _sweep_jit(loss_fn, params, txs, batches, early_stopping, steps=steps, record=record, every=every,
                          advance=advance, checked=checked, varying=varying)  # fmt: skip


def _check_arguments(owner, loss_fn, params, tx, steps, data, record, every, early_stopping, progress):
    """Check what :func:`run` or :func:`sweep` (``owner``) is given, before anything is traced; return the
    transform, the batches, what to record besides the loss, and whether every hyperparameter was checked
    here (none is a tracer: ``run`` called under a transformation of ``tx``)."""
    check_callable(owner, "loss_fn", loss_fn)
    if not isinstance(tx, Transform):
        if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
            raise TypeError(f"{owner}: tx must be a gradient transformation with init and update, "
                            f"got {type(tx).__name__}")  # fmt: skip
        tx = ForeignTransform(tx)
    # concrete values (a batch of them in a sweep) against their ranges
    checked = check_hyperparameters_before_tracing(tx, owner)
    steps = check_integer(owner, "steps", steps, low=1, high=MAX_STEPS)
    every = check_integer(owner, "every", every, low=1, high=steps)
    if steps % every:
        raise ValueError(f"{owner}: steps ({steps}) must be a multiple of every ({every})")
    record = (record,) if isinstance(record, str) else tuple(record)
    for name in record:
        check_choice(owner, "record", name, RECORDABLE)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"{owner}: early_stopping must be an EarlyStopping, got {type(early_stopping).__name__}")
    check_flag(owner, "progress", progress)
    tree.check_float_leaves(params)
    if not jax.tree.leaves(params):
        raise ValueError(f"{owner}: params has no arrays to train, got {params!r}")
    batches = data if data is None or isinstance(data, Batches) else Batches(data)
    call = "loss_fn(params)" if batches is None else "loss_fn(params, batch)"
    check_arity(owner, "loss_fn", loss_fn, call, 1 if batches is None else 2)
    return tx, batches, tuple(sorted(set(record) - {"loss"})), checked


_PER_OPTIMIZER: dict[tuple[int, Callable, Any], tuple[weakref.ref, Any]] = {}
"""``(id(tx), prepare, dtype of a Python float) -> (weak reference to tx, prepare(tx))``: see
:func:`_once_per_optimizer`."""


def _once_per_optimizer(prepare: Callable[[Any], Any], tx: Any) -> Any:
    """``prepare(tx)``, computed once per optimizer object whose leaves cannot change.

    Those are Python numbers and jax arrays (a NumPy leaf could be written in place, so such an optimizer is
    prepared at every call). A result lives as long as its optimizer, and is kept apart under x64, where a
    Python float is float64. :func:`run` keeps its optimizer's hyperparameters on the device so (``jit``
    converts every Python-number argument that its program reads at every call: about 1.7 µs each on a CPU,
    7 for Adam), and :func:`sweep` the batch axes it drops.

    >>> import gradflow as gf
    >>> tx = gf.sgd(0.1)
    >>> leaf = jax.tree.leaves(_once_per_optimizer(jax.device_put, tx))[0]
    >>> type(leaf).__name__ == "ArrayImpl", leaf.weak_type  # the dtype and weak type of a Python float's
    (True, True)
    >>> _once_per_optimizer(jax.device_put, tx) is _once_per_optimizer(jax.device_put, tx)
    True
    """
    key = (id(tx), prepare, jax.dtypes.canonicalize_dtype(np.float64))
    cached = _PER_OPTIMIZER.get(key)
    if cached is not None and cached[0]() is tx:
        return cached[1]
    prepared = prepare(tx)
    if all(_immutable(leaf) for leaf in jax.tree.leaves(tx)):
        with contextlib.suppress(TypeError):  # an object without weak references is prepared at every call
            _PER_OPTIMIZER[key] = (weakref.ref(tx, lambda _: _PER_OPTIMIZER.pop(key, None)), prepared)
    return prepared


def _immutable(leaf: Any) -> bool:
    """Whether ``leaf`` is a Python number or a concrete jax array: a value nothing can write in place."""
    return type(leaf) in (float, int) or (isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer))


def _check_scalar_loss(loss_fn, params, batches):
    """Runs while tracing, so a compiled run pays nothing for it."""
    example = () if batches is None else (batches.batch(0, batches.epoch_order(0)),)
    check_scalar_output("run", "loss_fn", loss_fn, params, *example)


def _run(loss_fn, params, tx, batches, stopping, *, checked, **options):
    """:func:`run`'s program; traced once per structure of its arguments. With ``checked`` (``tx``'s
    hyperparameters were checked on the host), the loop does not check their ranges again at every step
    (:func:`gradflow.core.checked_on_host`)."""
    with checked_on_host(tx, checked):
        return _run_body(loss_fn, params, tx, batches, stopping, **options)


def _run_body(loss_fn, params, tx, batches, stopping, *, steps, record, every, advance):
    _check_scalar_loss(loss_fn, params, batches)

    def objective_and_batch(t, order):
        if batches is None:
            return loss_fn, order
        position = t % batches.steps_per_epoch
        order = jax.lax.cond(position == 0, lambda: batches.epoch_order(t // batches.steps_per_epoch), lambda: order)
        batch = batches.batch(position, order)
        return (lambda p: loss_fn(p, batch)), order

    def train_step(carry, t):
        params, state, order, frozen = carry
        objective, order = objective_and_batch(t, order)
        value, grads = jax.value_and_grad(objective)(params)

        def step():
            updates, new_state = tx.update(grads, state, params, grad_fn=jax.grad(objective), value=value,
                                           value_fn=objective)  # fmt: skip
            return apply_updates(params, updates), new_state

        params, state = step() if stopping is None else jax.lax.cond(frozen, lambda: (params, state), step)
        return (params, state, order, frozen), (value, tree.global_norm(grads) if "grad_norm" in record else None)

    def record_step(carry, first):
        params, state, order, best = carry
        records = {"params": params} if "params" in record else {}
        if "full_loss" in record:
            records["full_loss"] = full_loss_at(params)
        if stopping is not None:
            best, records["val_loss"] = _watch_validation(stopping, best, params, first)
        inner = (params, state, order, best["frozen"] if stopping is not None else None)
        if every == 1:  # no inner loop: XLA runs one while loop, not two nested ones
            (params, state, order, _), (records["loss"], norm) = train_step(inner, first)
        else:
            (params, state, order, _), (values, norms) = jax.lax.scan(train_step, inner, first + jnp.arange(every))
            records["loss"], norm = values[0], None if norms is None else norms[0]
        if "grad_norm" in record:
            records["grad_norm"] = norm
        if advance is not None:
            jax.debug.callback(advance, every)
        return (params, state, order, best), records

    def full_loss_at(params):
        return loss_fn(params) if batches is None else loss_fn(params, batches.data)

    order = jnp.zeros((0,), jnp.int32) if batches is None else batches.epoch_order(0)
    best = None if stopping is None else _initial_watch(stopping, params, steps)
    firsts = jnp.arange(0, steps, every, dtype=jnp.int32)
    (params, state, _, best), records = jax.lax.scan(record_step, (params, tx.init(params), order, best), firsts)
    return History(
        steps=firsts,
        loss=records["loss"],
        full_loss=records.get("full_loss"),
        grad_norm=records.get("grad_norm"),
        params=records.get("params"),
        val_loss=records.get("val_loss"),
        final_params=params,
        final_state=state,
        final_loss=full_loss_at(params),
        best_params=None if best is None else best["params"],
        best_val_loss=None if best is None else best["value"],
        stopped_at=jnp.asarray(steps, jnp.int32) if best is None else best["stopped_at"],
    )


def _initial_watch(stopping, params, steps):
    value = check_scalar_output("EarlyStopping", "validation_fn", stopping.validation_fn, params)
    return {"value": jnp.full((), jnp.inf, value.dtype), "params": params, "waited": jnp.zeros((), jnp.int32),
            "frozen": jnp.zeros((), bool), "stopped_at": jnp.asarray(steps, jnp.int32)}  # fmt: skip


def _watch_validation(stopping, best, params, step):
    """Evaluate the validation loss and decide whether to freeze; frozen runs keep their verdict."""
    value = stopping.validation_fn(params)
    improved = ~best["frozen"] & (value < best["value"] - stopping.min_delta)
    waited = jnp.where(improved, 0, best["waited"] + 1)
    stop_now = ~best["frozen"] & (waited >= stopping.patience)
    return {
        "value": jnp.where(improved, value, best["value"]),
        "params": jax.tree.map(lambda new, old: jnp.where(improved, new, old), params, best["params"]),
        "waited": waited,
        "frozen": best["frozen"] | stop_now,
        "stopped_at": jnp.where(stop_now, step, best["stopped_at"]),
    }, value


def _drop_constant_batch_axes(txs):
    """Hyperparameters equal across the batch (``b2`` in a learning-rate sweep) lose their batch axis.

    ``jax.vmap(factory)(lrs)`` batches every leaf; computing with one scalar instead of a batch of
    equal ones makes a sweep of Adam on a 2-D problem about 2.5× faster on CPU.
    """
    leaves, treedef = jax.tree.flatten(txs)
    varying = [bool(np.any(values != values[:1])) for values in jax.device_get(leaves)]  # one transfer
    varying[0] = varying[0] or not any(varying)  # a batch of identical optimizers keeps its size
    firsts = iter(_first_entries([leaf for leaf, v in zip(leaves, varying) if not v]))
    return treedef.unflatten([leaf if v else next(firsts) for leaf, v in zip(leaves, varying)]), tuple(varying)


@jax.jit
def _first_entries(leaves):
    """``[leaf[0] for leaf in leaves]`` in one dispatch (indexing each array eagerly costs one each)."""
    return [leaf[0] for leaf in leaves]


_STATIC = ("loss_fn", "steps", "record", "every", "advance", "checked")
_run_jit = jax.jit(_run, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "varying"))
def _sweep_jit(loss_fn, params, txs, batches, stopping, *, steps, record, every, advance, checked, varying):
    one_run = functools.partial(_run, loss_fn, steps=steps, record=record, every=every, advance=advance,
                                checked=checked)  # fmt: skip
    tx_axes = jax.tree.structure(txs).unflatten([0 if v else None for v in varying])
    return jax.vmap(one_run, in_axes=(None, tx_axes, None, None))(params, txs, batches, stopping)


class _BarAdvance:
    """The callback that moves the active progress bar; one static object, so programs are reused."""

    bar: Any = None

    def __call__(self, steps):
        if self.bar is not None:
            self.bar.update(int(steps))


_ADVANCE = _BarAdvance()


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is a terminal: progress bars draw frames only there, never into a redirected log."""
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (OSError, ValueError):  # a closed or detached stream
        return False


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[Any]:
    """A tqdm bar advanced from inside the compiled loop; nothing (no frames, no callback) off a terminal."""
    if not total or not stderr_is_terminal():
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError as error:
        raise ImportError("progress=True needs tqdm: pip install 'gradflow[experiments]'") from error
    _ADVANCE.bar = tqdm(total=total, unit="step")
    try:
        yield _ADVANCE
        jax.effects_barrier()
    finally:
        _ADVANCE.bar.close()
        _ADVANCE.bar = None
