"""gradflow: composable gradient transformations for JAX, whose optimizers are pytree data.

Every optimizer is a ``chain`` of small pure ``(init, update)`` transforms whose numeric
hyperparameters are pytree leaves: ``jax.jit`` compiles a step once for any learning rate,
``jax.vmap`` runs a batch of optimizers in one program and ``jax.grad`` reaches the hyperparameters.
Names and arguments follow optax, so switching is a rename of the import.
"""

from gradflow import testing, tree
from gradflow.core import (
    Chain,
    EmptyState,
    ForeignTransform,
    FunctionSchedule,
    Identity,
    Schedule,
    ScheduleState,
    Transform,
    apply_updates,
    chain,
    identity,
    pytree_dataclass,
    static_field,
)
from gradflow.gradcheck import Finding, GradCheckError, GradCheckReport, check_grads
from gradflow.hyperparams import (
    InjectHyperparams,
    InjectHyperparamsState,
    get_hyperparam,
    inject_hyperparams,
    set_hyperparam,
)
from gradflow.optimizers import (
    adadelta,
    adagrad,
    adam,
    adamax,
    adamw,
    amsgrad,
    lion,
    nadam,
    nag,
    rmsprop,
    sgd,
    sign_sgd,
    signum,
)
from gradflow.transforms.combine import Combine, difference, interpolate, product, ratio, total
from gradflow.transforms.elementwise import (
    absolute,
    clip,
    root,
    scale,
    scale_by_learning_rate,
    shift,
    sign,
    square,
)
from gradflow.transforms.moments import (
    accumulate,
    bias_correction,
    ewma,
    interpolated_momentum,
    running_max,
    scale_by_update_rms,
)
from gradflow.transforms.nesterov import lookahead_gradient
from gradflow.transforms.regularization import ClipState, add_decayed_weights, clip_by_global_norm
from gradflow.transforms.scaling import (
    scale_by_adadelta,
    scale_by_adam,
    scale_by_adamax,
    scale_by_amsgrad,
    scale_by_lion,
    scale_by_rms,
    scale_by_rss,
    scale_by_stddev,
)
from gradflow.tree import TreeMismatchError

__version__ = "0.1.0"

__all__ = [
    "Chain",
    "ClipState",
    "Combine",
    "EmptyState",
    "Finding",
    "ForeignTransform",
    "FunctionSchedule",
    "GradCheckError",
    "GradCheckReport",
    "Identity",
    "InjectHyperparams",
    "InjectHyperparamsState",
    "Schedule",
    "ScheduleState",
    "Transform",
    "TreeMismatchError",
    "absolute",
    "accumulate",
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "add_decayed_weights",
    "amsgrad",
    "apply_updates",
    "bias_correction",
    "chain",
    "check_grads",
    "clip",
    "clip_by_global_norm",
    "difference",
    "ewma",
    "get_hyperparam",
    "identity",
    "inject_hyperparams",
    "interpolate",
    "interpolated_momentum",
    "lion",
    "lookahead_gradient",
    "nadam",
    "nag",
    "product",
    "pytree_dataclass",
    "ratio",
    "rmsprop",
    "root",
    "running_max",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_amsgrad",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_rms",
    "scale_by_rss",
    "scale_by_stddev",
    "scale_by_update_rms",
    "set_hyperparam",
    "sgd",
    "shift",
    "sign",
    "sign_sgd",
    "signum",
    "square",
    "static_field",
    "testing",
    "total",
    "tree",
]
