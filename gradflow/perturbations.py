"""Perturbed optimizers (smoothing by random noise): optax's own ``optax.perturbations``, re-exported.

These build differentiable functions, not gradient transformations, so gradflow does not rewrite them.

The names are imported from optax on first access (optax is the optional ``optax`` extra:
``pip install 'gradflow[optax]'``), so ``import gradflow`` works without it.
"""

from gradflow._optax_reexport import lazy_reexport

_FROM_OPTAX = (
    "Gumbel",
    "Normal",
    "make_perturbed_fun",
)

__all__ = list(_FROM_OPTAX)
__getattr__, __dir__ = lazy_reexport(__name__, {"optax.perturbations": _FROM_OPTAX})
