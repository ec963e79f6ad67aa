"""Test functions on which to compare optimizers: each a :class:`Landscape` with its loss, a hand-written
gradient, its minimisers, a plotting window and start points. Curved and straight valleys (Rosenbrock, the
ravine of seeds 002/003, Booth), a flat-bottomed basin (Beale), four equal minima (Himmelblau), a lattice of
local minima (Rastrigin), saddles unbounded below (x² − y², the monkey saddle) and seed 004's
one-dimensional double well, whose local minimum at x = 3 traps gradient descent started at x = 4. Every
``fn`` maps a point of shape ``(dim,)`` to a scalar in the point's dtype and works under ``jit``, ``vmap``
and ``grad``; ``grad`` is the analytic gradient, tested against central differences and ``jax.grad``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradflow.validation import check_callable, check_integer

__all__ = [
    "LANDSCAPES",
    "Landscape",
    "beale",
    "booth",
    "double_well",
    "himmelblau",
    "monkey_saddle",
    "rastrigin",
    "ravine",
    "rosenbrock",
    "saddle",
    "start_point",
]

Point = tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Landscape:
    """A loss of a point of shape ``(dim,)`` with its analytic gradient, minima and plotting hints.

    Attributes:
      name: key in :data:`LANDSCAPES`.
      description: one line with the formula.
      fn: ``x -> scalar`` loss; traceable, keeps the dtype of ``x``.
      grad: the gradient of ``fn`` written by hand, same shape and dtype as ``x``.
      minima: every global minimiser; empty when the landscape is unbounded below.
      minimum_value: ``fn`` at the global minimisers, or ``None`` when unbounded below.
      window: one ``(lo, hi)`` per dimension, a plotting window that holds the minima and the starts.
      starts: start points, the first the default.
      log_scale: whether contour levels should be spaced logarithmically.
      local_minima: notable minimisers that are not global.
      escape_level: for a landscape unbounded below, the loss below which a run has escaped the
        saddle (the race's metric there is the step from which the loss stays below it); ``None``
        for a landscape with a minimum. Required exactly when ``minimum_value`` is ``None``.

    >>> from gradflow.experiments import LANDSCAPES
    >>> rosenbrock = LANDSCAPES["rosenbrock"]
    >>> rosenbrock.dim, rosenbrock.minima, float(rosenbrock.fn(jnp.array([1.0, 1.0])))
    (2, ((1.0, 1.0),), 0.0)
    """

    name: str
    description: str
    fn: Callable[[jax.Array], jax.Array]
    grad: Callable[[jax.Array], jax.Array]
    minima: tuple[Point, ...]
    minimum_value: float | None
    window: tuple[tuple[float, float], ...]
    starts: tuple[Point, ...]
    log_scale: bool
    local_minima: tuple[Point, ...] = ()
    escape_level: float | None = None

    def __post_init__(self):
        check_callable(f"Landscape {self.name!r}", "fn", self.fn)
        check_callable(f"Landscape {self.name!r}", "grad", self.grad)
        if not self.starts:
            raise ValueError(f"Landscape {self.name!r}: starts must hold at least one point")
        if (self.minimum_value is None) != (not self.minima):
            raise ValueError(f"Landscape {self.name!r}: minimum_value is None exactly when minima is empty")
        if (self.minimum_value is None) != (self.escape_level is not None):
            raise ValueError(f"Landscape {self.name!r}: an escape_level is declared exactly when the landscape is "
                             "unbounded below (minimum_value None)")  # fmt: skip
        if self.escape_level is not None and not math.isfinite(self.escape_level):
            raise ValueError(f"Landscape {self.name!r}: escape_level must be finite, got {self.escape_level}")
        for lo, hi in self.window:
            if not lo < hi:
                raise ValueError(f"Landscape {self.name!r}: window ({lo}, {hi}) must have lo < hi")
        for point in (*self.minima, *self.local_minima, *self.starts):
            if len(point) != self.dim:
                raise ValueError(f"Landscape {self.name!r}: point {point} does not have dim = {self.dim}")

    @property
    def dim(self) -> int:
        """Number of coordinates of a point."""
        return len(self.window)

    @property
    def start(self) -> Point:
        """The default start point, ``starts[0]``."""
        return self.starts[0]

    @property
    def minimum(self) -> Point | None:
        """The first global minimiser, or ``None`` when unbounded below."""
        return self.minima[0] if self.minima else None

    def grid(self, n: int = 200) -> tuple[np.ndarray, ...]:
        """``fn`` on an ``n``-point-per-axis grid over :attr:`window`, for contour (or line) plots.

        Evaluated by one jitted ``vmap`` in JAX's default float dtype.

        Returns:
          ``(X, Y, Z)`` of shape ``(n, n)`` for a 2-D landscape (``np.meshgrid`` order: ``Z[i, j]`` is
          ``fn`` at ``(X[i, j], Y[i, j])``, ready for ``plt.contour(X, Y, Z)``); ``(X, Z)`` of shape
          ``(n,)`` for a 1-D one.

        Example:
          >>> X, Y, Z = rosenbrock.grid(50)
          >>> Z.shape
          (50, 50)
        """
        check_integer("Landscape.grid", "n", n, low=2)
        if self.dim not in (1, 2):
            raise ValueError(f"Landscape.grid: only 1-D and 2-D landscapes are gridded, {self.name} has dim {self.dim}")
        axes = [np.linspace(lo, hi, n) for lo, hi in self.window]
        coords = np.meshgrid(*axes)
        points = np.stack([c.ravel() for c in coords], axis=-1)
        values = np.asarray(_batched(self.fn)(jnp.asarray(points))).reshape(coords[0].shape)
        return (*coords, values)


@functools.cache
def _batched(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    return jax.jit(jax.vmap(fn))


def _rosenbrock(p):
    x, y = p[0], p[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_grad(p):
    x, y = p[0], p[1]
    return jnp.stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


def _beale_terms(p):
    x, y = p[0], p[1]
    return x, y, 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3


def _beale(p):
    _, _, a, b, c = _beale_terms(p)
    return a**2 + b**2 + c**2


def _beale_grad(p):
    x, y, a, b, c = _beale_terms(p)
    dx = 2 * (a * (y - 1) + b * (y**2 - 1) + c * (y**3 - 1))
    dy = 2 * x * (a + 2 * b * y + 3 * c * y**2)
    return jnp.stack([dx, dy])


def _himmelblau(p):
    x, y = p[0], p[1]
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _himmelblau_grad(p):
    x, y = p[0], p[1]
    u, v = x**2 + y - 11, x + y**2 - 7
    return jnp.stack([4 * x * u + 2 * v, 2 * u + 4 * y * v])


def _booth(p):
    x, y = p[0], p[1]
    return (x + 2 * y - 7) ** 2 + (2 * x + y - 5) ** 2


def _booth_grad(p):
    x, y = p[0], p[1]
    u, v = x + 2 * y - 7, 2 * x + y - 5
    return jnp.stack([2 * u + 4 * v, 4 * u + 2 * v])


_RASTRIGIN_A = 10.0


def _rastrigin(p):
    return _RASTRIGIN_A * p.size + jnp.sum(p**2 - _RASTRIGIN_A * jnp.cos(2 * math.pi * p))


def _rastrigin_grad(p):
    return 2 * p + 2 * math.pi * _RASTRIGIN_A * jnp.sin(2 * math.pi * p)


def _saddle(p):
    x, y = p[0], p[1]
    return x**2 - y**2


def _saddle_grad(p):
    x, y = p[0], p[1]
    return jnp.stack([2 * x, -2 * y])


def _monkey_saddle(p):
    x, y = p[0], p[1]
    return x**3 - 3 * x * y**2


def _monkey_saddle_grad(p):
    x, y = p[0], p[1]
    return jnp.stack([3 * (x**2 - y**2), -6 * x * y])


def _ravine(p):
    x, y = p[0], p[1]
    return 0.05 * x**2 + 5.0 * y**2


def _ravine_grad(p):
    x, y = p[0], p[1]
    return jnp.stack([0.1 * x, 10.0 * y])


_DOUBLE_WELL_SHIFT = 1.62276  # seed 004's constant


def _double_well_polynomial(x):
    return x * (x - 1) * (x - 3) ** 2


def _double_well(p):
    return _double_well_polynomial(p[0]) + _DOUBLE_WELL_SHIFT


def _double_well_grad(p):
    x = p[0]
    return jnp.stack([4 * x**3 - 21 * x**2 + 30 * x - 9])


# f'(x) = 4x³ − 21x² + 30x − 9 = (x − 3)(4x² − 9x + 3): the critical points are x = 3 (local minimum) and
# (9 ∓ √33)/8, the global minimum 0.40692966918274… and a local maximum 1.84307… The test confirms the
# minimiser against scipy's root of f' and its minimum against scipy.optimize.minimize to 1e-12.
_DOUBLE_WELL_ARGMIN = (9 - math.sqrt(33)) / 8
# The ring of Rastrigin minima nearest the origin: the root of 2x + 2πA·sin(2πx) next to x = 1.
_RASTRIGIN_RING = 0.9949586376523348

rosenbrock = Landscape(
    name="rosenbrock",
    description="(1 − x)² + 100(y − x²)², a curved valley",
    fn=_rosenbrock,
    grad=_rosenbrock_grad,
    minima=((1.0, 1.0),),
    minimum_value=0.0,
    window=((-2.0, 2.0), (-1.0, 3.0)),
    starts=((-1.2, 1.0), (-0.5, 2.5), (1.5, -0.5)),
    log_scale=True,
)
"""Rosenbrock (1960): reaching the valley floor is easy, following its parabola to (1, 1) is slow."""

beale = Landscape(
    name="beale",
    description="(1.5 − x + xy)² + (2.25 − x + xy²)² + (2.625 − x + xy³)², a flat basin between steep walls",
    fn=_beale,
    grad=_beale_grad,
    minima=((3.0, 0.5),),
    minimum_value=0.0,
    window=((-4.5, 4.5), (-4.5, 4.5)),
    starts=((1.0, 1.5), (-1.0, -1.0), (4.0, 2.0)),
    log_scale=True,
)
"""Beale: values from 0 to 10⁵ in the window; f is the constant 14.2 on the lines x = 0 and y = 1."""

himmelblau = Landscape(
    name="himmelblau",
    description="(x² + y − 11)² + (x + y² − 7)², four equal minima",
    fn=_himmelblau,
    grad=_himmelblau_grad,
    # x is a root of x⁴ − 22x² + x + 114 = (x − 3)(x³ + 3x² − 13x − 38), and y = 11 − x².
    minima=(
        (3.0, 2.0),
        (-2.8051180869527443, 3.131312518250576),
        (-3.779310253377747, -3.283185991286169),
        (3.5844283403304917, -1.8481265269644034),
    ),
    minimum_value=0.0,
    window=((-5.0, 5.0), (-5.0, 5.0)),
    starts=((0.0, 0.0), (-0.5, 0.5), (0.5, -1.0)),
    log_scale=True,
)
"""Himmelblau: which of the four minima an optimizer reaches depends on the start and on the optimizer."""

booth = Landscape(
    name="booth",
    description="(x + 2y − 7)² + (2x + y − 5)², a convex quadratic, condition number 9",
    fn=_booth,
    grad=_booth_grad,
    minima=((1.0, 3.0),),
    minimum_value=0.0,
    window=((-10.0, 10.0), (-10.0, 10.0)),
    starts=((-8.0, -6.0), (8.0, -8.0), (-6.0, 8.0)),
    log_scale=False,
)
"""Booth: a tilted elliptic bowl (Hessian [[10, 8], [8, 10]]), the easy baseline."""

rastrigin = Landscape(
    name="rastrigin",
    description="20 + Σᵢ (xᵢ² − 10 cos 2πxᵢ), a bowl covered with a lattice of local minima",
    fn=_rastrigin,
    grad=_rastrigin_grad,
    minima=((0.0, 0.0),),
    minimum_value=0.0,
    window=((-5.12, 5.12), (-5.12, 5.12)),
    starts=((3.2, 2.8), (-2.3, 4.1), (0.4, -0.3)),
    log_scale=False,
    local_minima=(
        (_RASTRIGIN_RING, 0.0),
        (-_RASTRIGIN_RING, 0.0),
        (0.0, _RASTRIGIN_RING),
        (0.0, -_RASTRIGIN_RING),
    ),
)
"""Rastrigin (A = 10): a local minimum near every integer point; the four nearest the origin have f ≈ 0.995."""

saddle = Landscape(
    name="saddle",
    description="x² − y², a saddle at the origin, unbounded below",
    fn=_saddle,
    grad=_saddle_grad,
    minima=(),
    minimum_value=None,
    window=((-1.5, 1.5), (-1.5, 1.5)),
    starts=((1.0, 1e-3), (1.0, 1e-6), (-1.0, -1e-3)),
    log_scale=False,
    escape_level=-1.0,
)
"""Saddle: from just off the ridge y = 0, plain gradient descent lingers near the origin before escaping."""

monkey_saddle = Landscape(
    name="monkey_saddle",
    description="x³ − 3xy², a degenerate saddle with three descending valleys, unbounded below",
    fn=_monkey_saddle,
    grad=_monkey_saddle_grad,
    minima=(),
    minimum_value=None,
    window=((-1.5, 1.5), (-1.5, 1.5)),
    starts=((1.0, 1e-3), (1.0, 1e-6), (1.0, -1e-3)),
    log_scale=False,
    escape_level=-1.0,
)
"""Monkey saddle: gradient and Hessian both vanish at the origin, so no curvature points the way out."""

ravine = Landscape(
    name="ravine",
    description="0.05x² + 5y², condition number 100",
    fn=_ravine,
    grad=_ravine_grad,
    minima=((0.0, 0.0),),
    minimum_value=0.0,
    window=((-10.0, 10.0), (-2.0, 2.0)),
    starts=((-8.0, 1.0), (8.0, -1.5), (-9.0, 0.1)),
    log_scale=False,
)
"""Ravine: seeds 002/003's narrow valley, 100× more curved across than along; momentum crosses it faster."""

double_well = Landscape(
    name="double_well",
    description="x(x − 1)(x − 3)² + 1.62276, a global minimum near 0.41 and a local one at 3",
    fn=_double_well,
    grad=_double_well_grad,
    minima=((_DOUBLE_WELL_ARGMIN,),),
    minimum_value=float(_double_well_polynomial(_DOUBLE_WELL_ARGMIN) + _DOUBLE_WELL_SHIFT),
    window=((-0.5, 4.2),),
    starts=((4.0,), (1.0,), (-0.3,)),
    log_scale=False,
    local_minima=((3.0,),),
)
"""Double well, seed 004: gradient descent from x = 4 stops in the local minimum at x = 3 (f = 1.62276).

The global minimiser is (9 − √33)/8 = 0.40692966918274…, a root of f'(x) = (x − 3)(4x² − 9x + 3). The
constant 1.62276 is the polynomial's minimum −1.6227594466… rounded to five decimals and negated, so the
global minimum value, which the seed calls 0, is 5.53e-7: positive, but below 1e-6.
"""

LANDSCAPES: dict[str, Landscape] = {
    landscape.name: landscape
    for landscape in (rosenbrock, beale, himmelblau, booth, rastrigin, saddle, monkey_saddle, ravine, double_well)
}


def start_point(landscape: Landscape, dtype=jnp.float32) -> jax.Array:
    """The landscape's default start point as an array of shape ``(dim,)`` and floating-point ``dtype``."""
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"start_point: dtype must be a floating-point dtype, got {dtype!r}")
    return jnp.asarray(landscape.start, dtype)
