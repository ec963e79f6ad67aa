"""Named optimizers, each a ``chain`` of primitives with optax's names and defaults.

``classic`` holds the optimizers of the seed documents (gradient descent to AMSGrad and Lion); each
further family has a module of its own (``polyak``, ``layerwise``, ``rprop``, ``adaptive``). Every name
is re-exported here and from ``gradflow``.
"""

from gradflow.optimizers.adaptive import (
    adabelief,
    adafactor,
    novograd,
    radam,
    schedule_free_adamw,
    schedule_free_sgd,
    yogi,
)
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
from gradflow.optimizers.layerwise import (
    lamb,
    lars,
)
from gradflow.optimizers.polyak import (
    clipped_polyak_sgd,
    polyak_sgd,
)
from gradflow.optimizers.rprop import (
    rprop,
)

__all__ = [
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "amsgrad",
    "clipped_polyak_sgd",
    "lamb",
    "lars",
    "lion",
    "nadam",
    "nag",
    "novograd",
    "polyak_sgd",
    "radam",
    "rmsprop",
    "rprop",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "sgd",
    "sign_sgd",
    "signum",
    "yogi",
]
