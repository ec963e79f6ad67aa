"""Registry entries (``name -> factory(learning_rate)``) of the second-order family, merged into registry.py.

Newton's method on Hessian-vector products (conjugate gradient) and by a dense solve, and gradient
descent with seed 001's curvature step size gᵀg/gᵀHg. All of them need the ``grad_fn`` extra argument.

The law suite's loss (tests/conftest.py) is not convex: its Hessian has eigenvalues down to about −2.1
along the first steps. Newton's entries therefore damp with λ = 3, which keeps H + λ·I positive definite
and well conditioned (eigenvalues in about [0.9, 6.3]); with λ = 1 the system is nearly singular and a
float32 solve amplifies rounding beyond the laws' tolerances.
"""

from __future__ import annotations

import gradflow as gf
from gradflow.second_order import curvature_step, newton

OPTIMIZERS: dict = {
    "newton_cg": lambda lr: newton(lr, damping=3.0, max_cg_iterations=6, tolerance=1e-6),
    "newton_dense": lambda lr: newton(lr, damping=3.0, solver="dense"),
    "newton_cg_damping_schedule": lambda lr: newton(
        lr, damping=gf.linear_schedule(6.0, 3.0, transition_steps=4), max_cg_iterations=9, tolerance=0.0
    ),
    "curvature_step": lambda lr: curvature_step(scaling=lr, max_learning_rate=10.0),
    "clipped_curvature_step": lambda lr: gf.chain(gf.clip(0.5), curvature_step(scaling=lr, max_learning_rate=2.0)),
}

# Optimizers whose update needs the ``grad_fn`` extra argument.
NEEDS_GRAD_FN = {"newton_cg", "newton_dense", "newton_cg_damping_schedule", "curvature_step", "clipped_curvature_step"}
