"""Pytree utilities under their ``tree_*`` names: optax's own ``optax.tree_utils``, re-exported.

gradflow's own pytree arithmetic lives in :mod:`gradflow.tree`, which also re-exports ``optax.tree``'s
functions under their short names.

The names are imported from optax on first access (optax is the optional ``optax`` extra:
``pip install 'gradflow[optax]'``), so ``import gradflow`` works without it.
"""

from gradflow._optax_reexport import lazy_reexport

_FROM_OPTAX = (
    "NamedTupleKey",
    "tree_add",
    "tree_add_scale",
    "tree_allclose",
    "tree_batch_shape",
    "tree_bias_correction",
    "tree_cast",
    "tree_cast_like",
    "tree_clip",
    "tree_conj",
    "tree_div",
    "tree_dtype",
    "tree_full_like",
    "tree_get",
    "tree_get_all_with_path",
    "tree_map_params",
    "tree_max",
    "tree_min",
    "tree_mul",
    "tree_norm",
    "tree_ones_like",
    "tree_random_like",
    "tree_real",
    "tree_scale",
    "tree_set",
    "tree_size",
    "tree_split_key_like",
    "tree_sub",
    "tree_sum",
    "tree_unwrap_random_key_data",
    "tree_update_infinity_moment",
    "tree_update_moment",
    "tree_update_moment_per_elem_norm",
    "tree_vdot",
    "tree_where",
    "tree_zeros_like",
)

__all__ = list(_FROM_OPTAX)
__getattr__, __dir__ = lazy_reexport(__name__, {"optax.tree_utils": _FROM_OPTAX})
