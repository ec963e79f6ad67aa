"""Wrappers around other transforms: parameter groups and masks, non-finite guards, gradient
accumulation, lookahead and parameter averaging.

Each wrapper is a transform whose wrapped transforms are data fields, so a wrapped optimizer is still
one pytree: jitted once for any hyperparameter values, vmapped over, differentiated through.
"""

from gradflow.wrappers.accumulation import MultiSteps, MultiStepsState, multi_steps
from gradflow.wrappers.averaging import AverageParams, AverageParamsState, average_params, averaged_params
from gradflow.wrappers.finite import (
    ApplyIfFinite,
    ApplyIfFiniteState,
    ZeroNans,
    ZeroNansState,
    apply_if_finite,
    zero_nans,
)
from gradflow.wrappers.lookahead import (
    Lookahead,
    LookaheadParams,
    LookaheadSlowState,
    LookaheadState,
    lookahead,
    slow_params,
)
from gradflow.wrappers.partition import (
    Masked,
    MaskedState,
    MultiTransformState,
    Partition,
    PartitionState,
    SetToZero,
    freeze,
    masked,
    multi_transform,
    partition,
    set_to_zero,
)

__all__ = [
    "ApplyIfFinite",
    "ApplyIfFiniteState",
    "AverageParams",
    "AverageParamsState",
    "Lookahead",
    "LookaheadParams",
    "LookaheadSlowState",
    "LookaheadState",
    "Masked",
    "MaskedState",
    "MultiSteps",
    "MultiStepsState",
    "MultiTransformState",
    "Partition",
    "PartitionState",
    "SetToZero",
    "ZeroNans",
    "ZeroNansState",
    "apply_if_finite",
    "average_params",
    "averaged_params",
    "freeze",
    "lookahead",
    "masked",
    "multi_steps",
    "multi_transform",
    "partition",
    "set_to_zero",
    "slow_params",
    "zero_nans",
]
