"""optax's type vocabulary: ``GradientTransformation`` and the names around it, on gradflow's protocol.

Programs written against optax name these types to build their own transforms
(``optax.GradientTransformation(init_fn, update_fn)``), to annotate (``optax.Params``), or to test
(``isinstance(tx, optax.GradientTransformationExtraArgs)``). Here they describe gradflow's protocol:

- :class:`GradientTransformation` and :class:`GradientTransformationExtraArgs` are abstract classes of
  which every gradflow :class:`~gradflow.core.Transform` is an instance (every gradflow transform
  takes extra keyword arguments and ignores those it does not use, so it is both). Calling either
  with two functions builds a :class:`FunctionTransform`, which composes with everything in gradflow.
- :func:`stateless`, :func:`stateless_with_tree_map`, :func:`with_extra_args_support` and
  :func:`init_empty_state` follow optax's semantics.
- The type aliases (``Params``, ``Updates``, ``OptState``, ``ScalarOrSchedule``, ``MaskOrFn``) and the
  protocols of callables (``TransformInitFn`` ...) are for annotations.

This module does not import optax.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NamedTuple, Protocol

import jax

from gradflow.core import EmptyState, ForeignTransform, Schedule, Transform, pytree_dataclass, static_field

__all__ = [
    "AdaptiveGradClipState",
    "AddDecayedWeightsState",
    "ArrayTree",
    "ClipByGlobalNormState",
    "ConditionFn",
    "FunctionTransform",
    "GradientTransformation",
    "GradientTransformationExtraArgs",
    "MaskOrFn",
    "OptState",
    "Params",
    "ScalarOrSchedule",
    "ScaleByTrustRatioState",
    "ScaleState",
    "ShouldSkipUpdateFunction",
    "Stateless",
    "TransformInitFn",
    "TransformUpdateExtraArgsFn",
    "TransformUpdateFn",
    "Updates",
    "init_empty_state",
    "stateless",
    "stateless_with_tree_map",
    "with_extra_args_support",
]

# --------------------------------------------------------------------------------------------------
# Type aliases (for annotations; the same shapes as optax's)
# --------------------------------------------------------------------------------------------------

#: A pytree of arrays (or numbers).
ArrayTree = jax.typing.ArrayLike | Iterable["ArrayTree"] | Mapping[Any, "ArrayTree"]
#: The parameters being optimized: a pytree of floating-point arrays.
Params = ArrayTree
#: Gradients and updates: pytrees shaped like the parameters.
Updates = ArrayTree
#: The state of a transform: a pytree of arrays.
OptState = ArrayTree
#: A hyperparameter that is a number, an array, a :class:`~gradflow.core.Schedule` or a plain function
#: of the step count.
ScalarOrSchedule = float | jax.Array | Schedule | Callable[[jax.Array], jax.typing.ArrayLike]
# optax's names for the state of its stateless transforms: each is EmptyState itself, as in optax.
AdaptiveGradClipState = EmptyState
AddDecayedWeightsState = EmptyState
ClipByGlobalNormState = EmptyState
ScaleByTrustRatioState = EmptyState
ScaleState = EmptyState
#: A mask (a pytree of booleans shaped like the parameters, or a prefix of it) or a function that
#: builds one from the parameters.
MaskOrFn = Any | Callable[[Params], Any] | None


# --------------------------------------------------------------------------------------------------
# Protocols of the functions a transform is made of
# --------------------------------------------------------------------------------------------------


class TransformInitFn(Protocol):
    """The type of a transform's ``init``: ``init(params) -> state``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> init: TransformInitFn = gradflow.sign().init
      >>> init(jnp.zeros(2))
      EmptyState()
    """

    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    """The type of a transform's ``update``: ``update(updates, state, params=None) -> (updates, state)``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> update: TransformUpdateFn = gradflow.sign().update
      >>> update(jnp.array([-3.0, 2.0]), gradflow.EmptyState())[0]
      Array([-1.,  1.], dtype=float32)
    """

    def __call__(self, updates: Updates, state: OptState, params: Params | None = None) -> tuple[Updates, OptState]: ...


class TransformUpdateExtraArgsFn(Protocol):
    """The type of an ``update`` that also takes extra keyword arguments (``value``, ``grad_fn`` ...).

    Every gradflow transform's ``update`` is one: it ignores the extra arguments it does not use.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> update: TransformUpdateExtraArgsFn = gradflow.sign().update
      >>> update(jnp.array([-3.0]), gradflow.EmptyState(), None, value=jnp.float32(1.0))[0]
      Array([-1.], dtype=float32)
    """

    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class ShouldSkipUpdateFunction(Protocol):
    """A test that a multi-step accumulation should skip an update: ``(skip, info)``.

    ``skip`` is a boolean scalar; ``info`` is a pytree of diagnostics kept in the state.

    Example:
      >>> import jax.numpy as jnp
      >>> def skip_huge(updates, gradient_step, params):
      ...     return jnp.abs(updates).max() > 1e3, {}
      >>> should_skip: ShouldSkipUpdateFunction = skip_huge
      >>> should_skip(jnp.array([1e4]), jnp.int32(0), None)
      (Array(True, dtype=bool), {})
    """

    def __call__(
        self, updates: Updates, gradient_step: jax.typing.ArrayLike, params: Params | None
    ) -> tuple[jax.typing.ArrayLike, ArrayTree]: ...


class ConditionFn(Protocol):
    """A condition on the step count (and extra arguments) that says whether a transform runs.

    Example:
      >>> import jax.numpy as jnp
      >>> every_other: ConditionFn = lambda step, **extra_args: step % 2 == 0
      >>> every_other(jnp.int32(4))
      Array(True, dtype=bool)
    """

    def __call__(self, step: jax.typing.ArrayLike, **extra_args: Any) -> jax.typing.ArrayLike: ...


# --------------------------------------------------------------------------------------------------
# GradientTransformation: optax's name for a transform
# --------------------------------------------------------------------------------------------------


class _Functions(NamedTuple):
    """The two functions of a :class:`FunctionTransform` (a static, hashable pair)."""

    init: Any
    update: Any


class GradientTransformation(abc.ABC):
    """An ``(init, update)`` pair: optax's name for a transform.

    Every gradflow transform is an instance (``isinstance(gradflow.adam(1e-3), GradientTransformation)``).
    Calling the class with two functions, as optax programs do, builds a :class:`FunctionTransform`:
    a gradflow transform that calls them, composes with :func:`~gradflow.chain` and the wrappers, and
    unpacks as ``init, update = tx``.

    Attributes:
      init: ``init(params) -> state`` (see :class:`TransformInitFn`).
      update: ``update(updates, state, params=None) -> (updates, state)`` (see
        :class:`TransformUpdateFn`).

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> def update_fn(updates, state, params=None):
      ...     return jax.tree.map(lambda g: -g, updates), state
      >>> negate = GradientTransformation(init_empty_state, update_fn)
      >>> tx = gradflow.chain(gradflow.scale(0.5), negate)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
      Array([-1.], dtype=float32)
      >>> isinstance(gradflow.adam(1e-3), GradientTransformation), isinstance(negate, GradientTransformation)
      (True, True)
    """

    _fields: ClassVar[tuple[str, ...]] = ("init", "update")
    init: TransformInitFn
    update: TransformUpdateFn

    def __new__(cls, init: TransformInitFn, update: TransformUpdateFn) -> Any:
        # The instance is a FunctionTransform (a pytree transform), which is registered as a subclass.
        return FunctionTransform(_Functions(init, update), extra_args=issubclass(cls, GradientTransformationExtraArgs))


class GradientTransformationExtraArgs(GradientTransformation):
    """A :class:`GradientTransformation` whose ``update`` takes extra keyword arguments.

    Every gradflow transform is one (each ``update`` ignores the extra arguments it does not use), so,
    unlike optax, so is what ``GradientTransformation(init, update)`` builds: its ``update`` takes extra
    arguments and drops them before calling the plain function. Calling this class with two functions
    builds a :class:`FunctionTransform` that passes every extra argument to ``update``, as optax does.

    Attributes:
      init: ``init(params) -> state``.
      update: ``update(updates, state, params=None, **extra_args) -> (updates, state)`` (see
        :class:`TransformUpdateExtraArgsFn`).

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> def update_fn(updates, state, params=None, *, value, **extra_args):
      ...     return jax.tree.map(lambda g: g * value, updates), state
      >>> by_loss = GradientTransformationExtraArgs(init_empty_state, update_fn)
      >>> tx = gradflow.chain(by_loss, gradflow.scale(-1.0))
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)), value=jnp.float32(3.0))[0]
      Array([-6.], dtype=float32)
    """

    update: TransformUpdateExtraArgsFn


GradientTransformation.register(Transform)
GradientTransformationExtraArgs.register(Transform)


@pytree_dataclass
class FunctionTransform(ForeignTransform):
    """A transform given by two functions: what ``GradientTransformation(init, update)`` builds.

    The functions are a static field (``inner``), as for any :class:`~gradflow.core.ForeignTransform`.
    Extra keyword arguments reach ``update`` when it declares ``**kwargs``, and always when the
    transform was built as a :class:`GradientTransformationExtraArgs` (``extra_args=True``). Like
    optax's NamedTuple, it has ``_fields`` and ``_replace``.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = GradientTransformation(init=init_empty_state, update=lambda u, s, p=None: (2 * u, s))
      >>> type(tx).__name__, tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))[0]
      ('FunctionTransform', Array([2.], dtype=float32))
      >>> init, update = tx._replace(update=lambda u, s, p=None: (3 * u, s))
      >>> update(jnp.array([1.0]), init(jnp.zeros(1)))[0]
      Array([3.], dtype=float32)
    """

    extra_args: bool = static_field(default=False)

    _fields: ClassVar[tuple[str, ...]] = ("init", "update")

    def update(self, updates, state, params=None, **extra):
        if self.extra_args:
            return self.inner.update(updates, state, params, **extra)
        return super().update(updates, state, params, **extra)

    def _replace(self, **changes: Any) -> FunctionTransform:
        """A copy with ``init`` and/or ``update`` replaced (as ``NamedTuple._replace``)."""
        return FunctionTransform(self.inner._replace(**changes), extra_args=self.extra_args)


# --------------------------------------------------------------------------------------------------
# Helpers to build transforms from functions (optax's semantics)
# --------------------------------------------------------------------------------------------------


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a transform without state: ignores ``params`` and returns ``EmptyState()``.

    Args:
      params: the parameters (unused).

    Returns:
      ``EmptyState()``.

    Example:
      >>> import jax.numpy as jnp
      >>> init_empty_state({"w": jnp.zeros(3)})
      EmptyState()
    """
    del params
    return EmptyState()


@pytree_dataclass
class Stateless(Transform):
    """A transform without state that applies a function to the updates (built by :func:`stateless`).

    Example:
      >>> import jax.numpy as jnp
      >>> tx = Stateless(lambda u, p: 2 * u)
      >>> tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))[0]
      Array([2.], dtype=float32)
    """

    function: Any = static_field()
    per_leaf: bool = static_field(default=False)

    def init(self, params):
        return EmptyState()

    def update(self, updates, state, params=None, **extra):
        if not self.per_leaf:
            return self.function(updates, params), EmptyState()
        if params is None:
            return jax.tree.map(lambda u: self.function(u, None), updates), EmptyState()
        return jax.tree.map(self.function, updates, params), EmptyState()


def stateless(f: Callable[[Updates, Params | None], Updates]) -> Stateless:
    """A transform without state from a function of the whole trees: ``u ← f(u, params)``.

    Args:
      f: takes the updates and the parameters (``None`` when ``update`` gets none) and returns the
        new updates.

    Returns:
      A :class:`Stateless` transform whose state is ``EmptyState()``.

    Example:
      >>> import jax, jax.numpy as jnp, gradflow
      >>> decay = stateless(lambda u, p: jax.tree.map(lambda g, w: g + 0.1 * w, u, p))
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> decay.update({"w": jnp.zeros(2)}, decay.init(params), params)[0]
      {'w': Array([0.1, 0.2], dtype=float32)}
    """
    return Stateless(f)


def stateless_with_tree_map(f: Callable[[jax.typing.ArrayLike, jax.typing.ArrayLike | None], Any]) -> Stateless:
    """A transform without state from a function of one leaf: ``u_i ← f(u_i, params_i)`` for each leaf.

    Args:
      f: takes an update leaf and the matching parameter leaf (``None`` when ``update`` gets no
        parameters) and returns the new update leaf.

    Returns:
      A :class:`Stateless` transform whose state is ``EmptyState()``.

    Example:
      >>> import jax.numpy as jnp
      >>> clip = stateless_with_tree_map(lambda g, p: jnp.clip(g, -1.0, 1.0))
      >>> clip.update({"w": jnp.array([-3.0, 0.5])}, clip.init(None))[0]
      {'w': Array([-1. ,  0.5], dtype=float32)}
    """
    return Stateless(f, per_leaf=True)


def with_extra_args_support(tx: Any) -> Transform:
    """``tx`` as a transform whose ``update`` takes (and ignores, unless it uses them) extra arguments.

    Every gradflow transform already does, so it is returned as it is; another object with ``init``
    and ``update`` (an optax transform) is wrapped in a :class:`~gradflow.core.ForeignTransform`, which
    passes the extra arguments on only when its ``update`` declares ``**kwargs``.

    Args:
      tx: a transform.

    Returns:
      A gradflow transform.

    Example:
      >>> import jax.numpy as jnp, gradflow
      >>> tx = with_extra_args_support(GradientTransformation(init_empty_state, lambda u, s, p=None: (u, s)))
      >>> tx.update(jnp.array([1.0]), tx.init(None), None, value=jnp.float32(0.0))[0]
      Array([1.], dtype=float32)
    """
    if isinstance(tx, Transform):
        return tx
    return ForeignTransform(tx)
