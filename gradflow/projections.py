"""Projections onto convex sets: optax's own ``optax.projections``, re-exported at gradflow's path.

A projection is not a gradient transformation, so gradflow does not rewrite it: apply one to the
parameters after ``apply_updates`` (projected gradient descent).

The names are imported from optax on first access (optax is the optional ``optax`` extra:
``pip install 'gradflow[optax]'``), so ``import gradflow`` works without it.
"""

from gradflow._optax_reexport import lazy_reexport

_FROM_OPTAX = (
    "projection_box",
    "projection_halfspace",
    "projection_hypercube",
    "projection_hyperplane",
    "projection_l1_ball",
    "projection_l1_sphere",
    "projection_l2_ball",
    "projection_l2_sphere",
    "projection_linf_ball",
    "projection_non_negative",
    "projection_simplex",
    "projection_vector",
)

__all__ = list(_FROM_OPTAX)
__getattr__, __dir__ = lazy_reexport(__name__, {"optax.projections": _FROM_OPTAX})
