"""The primitives every gradflow optimizer is built from, one family per module.

The package namespace is also ``optax.transforms`` at gradflow's path (a re-export namespace): its
names are read lazily from where they live (the top-level ``gradflow`` namespace, whose modules import
this package's submodules, so an eager import here would be circular), and ``optax.transforms``'
utility functions that are not transforms come from optax itself.
"""

from gradflow._optax_reexport import lazy_reexport

_FROM_GRADFLOW = (
    "AddNoiseState",
    "ApplyIfFiniteState",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "EmaState",
    "MaskedNode",
    "MaskedState",
    "MonitorState",
    "MultiSteps",
    "MultiStepsState",
    "NonNegativeParamsState",
    "PartitionState",
    "SnapshotState",
    "TraceState",
    "ZeroNansState",
    "adaptive_grad_clip",
    "add_decayed_weights",
    "add_noise",
    "apply_if_finite",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "conditionally_mask",
    "conditionally_transform",
    "ema",
    "flatten",
    "freeze",
    "keep_params_nonnegative",
    "masked",
    "measure_with_ema",
    "monitor",
    "named_chain",
    "partition",
    "selective_transform",
    "snapshot",
    "trace",
    "unitwise_clip",
    "unitwise_norm",
    "zero_nans",
)
_FROM_PROTOCOL = (
    "ConditionFn",
    "ShouldSkipUpdateFunction",
)
_FROM_OPTAX = (
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "skip_large_updates",
    "skip_not_finite",
)

__all__ = sorted([*_FROM_GRADFLOW, *_FROM_PROTOCOL, *_FROM_OPTAX])
__getattr__, __dir__ = lazy_reexport(
    __name__,
    {"gradflow": _FROM_GRADFLOW, "gradflow.protocol": _FROM_PROTOCOL, "optax.transforms": _FROM_OPTAX},
)
