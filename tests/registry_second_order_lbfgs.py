"""Registry entries (``name -> factory(learning_rate)``) of L-BFGS and the line searches, merged into registry.py.

``OPTIMIZERS`` holds the entries that run on the law suite's extra arguments (``grad_fn``, ``value``):
L-BFGS with a fixed step (``linesearch=None``), with and without the scaled initial inverse Hessian, with
a memory of 2 pairs (so that the ring buffer wraps within the 5 steps of the scan laws) and with a
scheduled learning rate.

The entries with a line search also need ``value_fn``, which the law suite passes to every update.

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
    # with a line search: these read the value_fn extra argument
    "lbfgs": lambda lr: lbfgs(lr),
    "lbfgs_backtracking_unscaled": lambda lr: lbfgs(
        lr, scale_init_precond=False, linesearch=scale_by_backtracking_linesearch(15, store_grad=True)
    ),
    "sgd_backtracking": lambda lr: gf.chain(gf.sgd(lr), scale_by_backtracking_linesearch(15)),
    "sgd_zoom": lambda lr: gf.chain(gf.sgd(lr), scale_by_zoom_linesearch(10)),
}
