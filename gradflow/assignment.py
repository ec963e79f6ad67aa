"""Assignment problems (the Hungarian algorithm): optax's own ``optax.assignment``, re-exported.

An assignment solver is not a gradient transformation, so gradflow does not rewrite it.

The names are imported from optax on first access (optax is the optional ``optax`` extra:
``pip install 'gradflow[optax]'``), so ``import gradflow`` works without it.
"""

from gradflow._optax_reexport import lazy_reexport

_FROM_OPTAX = (
    "base_hungarian_algorithm",
    "hungarian_algorithm",
)

__all__ = list(_FROM_OPTAX)
__getattr__, __dir__ = lazy_reexport(__name__, {"optax.assignment": _FROM_OPTAX})
