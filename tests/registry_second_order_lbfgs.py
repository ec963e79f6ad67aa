"""Registry entries (``name -> factory(learning_rate)``) of L-BFGS and the line searches, merged into registry.py.

``OPTIMIZERS`` holds the entries that run on the law suite's extra arguments (``grad_fn``, ``value``):
L-BFGS with a fixed step (``linesearch=None``), with and without the scaled initial inverse Hessian, with
a memory of 2 pairs (so that the ring buffer wraps within the 5 steps of the scan laws) and with a
scheduled learning rate.

``NEEDS_VALUE_FN`` holds the entries with a line search, whose ``update`` also needs ``value_fn``. They
join the laws once the suite's ``step``/``update`` pass ``value_fn=loss`` as well (see the report of
issue 6); until then they are not merged into ``OPTIMIZERS``.

The law suite's loss is not convex (tests/conftest.py): along the first steps some pairs have ⟨s, y⟩ ≤ 0
and ``scale_by_lbfgs`` skips them, which the fixed-step entries exercise.
"""

from __future__ import annotations

import gradflow as gf
from gradflow.second_order.lbfgs import lbfgs
from gradflow.second_order.linesearch import scale_by_backtracking_linesearch, scale_by_zoom_linesearch

OPTIMIZERS: dict = {
    "lbfgs_fixed_step_unscaled": lambda lr: lbfgs(lr, scale_init_precond=False, linesearch=None),
    "lbfgs_fixed_step_memory_2_unscaled": lambda lr: lbfgs(
        lr, memory_size=2, scale_init_precond=False, linesearch=None
    ),
    "lbfgs_fixed_step_schedule": lambda lr: lbfgs(
        gf.linear_schedule(lr, 0.5 * lr, transition_steps=4), memory_size=3, linesearch=None
    ),
}

# Entries whose update needs the ``value_fn`` extra argument (a line search).
NEEDS_VALUE_FN_OPTIMIZERS: dict = {
    "lbfgs": lambda lr: lbfgs(lr),
    "lbfgs_backtracking_unscaled": lambda lr: lbfgs(
        lr, scale_init_precond=False, linesearch=scale_by_backtracking_linesearch(15, store_grad=True)
    ),
    "sgd_backtracking": lambda lr: gf.chain(gf.sgd(lr), scale_by_backtracking_linesearch(15)),
    "sgd_zoom": lambda lr: gf.chain(gf.sgd(lr), scale_by_zoom_linesearch(10)),
}
NEEDS_VALUE_FN = set(NEEDS_VALUE_FN_OPTIMIZERS)
