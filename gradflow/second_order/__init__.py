"""Second-order methods: Hessian-vector products, Newton, the curvature step size (and L-BFGS, line searches)."""

from gradflow.second_order.curvature import (  # noqa: F401 - re-exports
    CurvatureStepState,
    ScaleByCurvatureStep,
    curvature_step,
    gnvp,
    hessian,
    hessian_from_grad,
    hvp,
    hvp_from_grad,
    scale_by_curvature_step,
)
from gradflow.second_order.newton import (  # noqa: F401 - re-exports
    CGResult,
    NewtonState,
    ScaleByNewton,
    conjugate_gradient,
    newton,
    scale_by_newton,
)
