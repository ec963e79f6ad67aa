"""Named optimizers, each a ``chain`` of primitives with optax's names and defaults.

``classic`` holds the optimizers of the seed documents (gradient descent to AMSGrad and Lion); each
further family has a module of its own. Every name is re-exported here and from ``gradflow``.
"""

from gradflow.optimizers.classic import (
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

__all__ = [
    "adadelta",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "amsgrad",
    "lion",
    "nadam",
    "nag",
    "rmsprop",
    "sgd",
    "sign_sgd",
    "signum",
]
