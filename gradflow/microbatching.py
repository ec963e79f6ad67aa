"""Microbatching of a function over its batch (``microbatch``, ``micro_grad``): optax's own
``optax.microbatching``, re-exported.

These transform functions, not gradients, so gradflow does not rewrite them.

The names are imported from optax on first access (optax is the optional ``optax`` extra:
``pip install 'gradflow[optax]'``), so ``import gradflow`` works without it.
"""

from gradflow._optax_reexport import lazy_reexport

_FROM_OPTAX = (
    "AccumulationType",
    "Accumulator",
    "micro_grad",
    "micro_vmap",
    "microbatch",
    "reshape_batch_axis",
)

__all__ = list(_FROM_OPTAX)
__getattr__, __dir__ = lazy_reexport(__name__, {"optax.microbatching": _FROM_OPTAX})
