"""Second-order methods: Hessian-vector products, Newton, the curvature step size (and L-BFGS, line searches).

The package namespace is also ``optax.second_order`` at gradflow's path: ``hvp``, ``hessian_diag`` and
``fisher_diag`` here are optax's own functions (with optax's signatures, e.g.
``hvp(loss, v, params, inputs, targets)``), re-exported lazily since they need optax. gradflow's own
Hessian-vector product ``hvp(fun, params, v)`` is :func:`gradflow.hvp`
(:func:`gradflow.second_order.curvature.hvp`).
"""

from gradflow._optax_reexport import lazy_reexport
from gradflow.second_order.curvature import (  # noqa: F401 - re-exports
    CurvatureStepState,
    ScaleByCurvatureStep,
    curvature_step,
    gnvp,
    hessian,
    hessian_from_grad,
    hvp_from_grad,
    scale_by_curvature_step,
)
from gradflow.second_order.lbfgs import (  # noqa: F401 - re-exports
    ScaleByLBFGS,
    ScaleByLBFGSState,
    lbfgs,
    scale_by_lbfgs,
)
from gradflow.second_order.linesearch import (  # noqa: F401 - re-exports
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearch,
    ScaleByBacktrackingLinesearchState,
    ScaleByZoomLinesearch,
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from gradflow.second_order.minimize import (  # noqa: F401 - re-exports
    MinimizeResult,
    minimize,
)
from gradflow.second_order.newton import (  # noqa: F401 - re-exports
    CGResult,
    NewtonState,
    ScaleByNewton,
    conjugate_gradient,
    newton,
    scale_by_newton,
)

__getattr__, __dir__ = lazy_reexport(__name__, {"optax.second_order": ("fisher_diag", "hessian_diag", "hvp")})
