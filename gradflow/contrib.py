"""``optax.contrib``'s names that gradflow implements, at optax's path (a re-export namespace).

The transforms live in their concept modules (:mod:`gradflow.transforms.plateau`,
:mod:`gradflow.transforms.schedule_free`, :mod:`gradflow.optimizers.adaptive`). The rest of
``optax.contrib`` is not in gradflow yet; ``tests/test_optax_surface.py`` lists those names as pending.
"""

from gradflow.optimizers.adaptive import schedule_free_adamw, schedule_free_sgd
from gradflow.transforms.plateau import ReduceOnPlateauState, reduce_on_plateau
from gradflow.transforms.schedule_free import ScheduleFreeState, schedule_free, schedule_free_eval_params

#: optax's name for the state of :func:`reduce_on_plateau`.
ReduceLROnPlateauState = ReduceOnPlateauState

__all__ = [
    "ReduceLROnPlateauState",
    "ScheduleFreeState",
    "reduce_on_plateau",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
]
