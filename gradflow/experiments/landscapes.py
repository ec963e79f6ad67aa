"""Two-dimensional test functions on which the seeds compare optimizers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["LANDSCAPES", "Landscape", "ravine", "rosenbrock"]


@dataclasses.dataclass(frozen=True)
class Landscape:
    """A loss ``fn(xy)`` of a 2-vector, its minimum value and a start point."""

    name: str
    fn: Callable[[jax.Array], jax.Array]
    minimum: tuple[float, float]
    minimum_value: float
    start: tuple[float, float]
    description: str


def _rosenbrock(xy):
    x, y = xy[0], xy[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _ravine(xy):
    # The narrow valley of seeds 002/003: curvature 100× larger across the valley than along it.
    x, y = xy[0], xy[1]
    return 0.05 * x**2 + 5.0 * y**2


rosenbrock = Landscape(
    "rosenbrock", _rosenbrock, (1.0, 1.0), 0.0, (-1.2, 1.0), "(1 − x)² + 100(y − x²)², a curved valley"
)
ravine = Landscape("ravine", _ravine, (0.0, 0.0), 0.0, (-8.0, 1.0), "0.05x² + 5y², condition number 100")

LANDSCAPES = {landscape.name: landscape for landscape in (rosenbrock, ravine)}


def start_point(landscape: Landscape, dtype=jnp.float32) -> jax.Array:
    """The landscape's start point as an array."""
    return jnp.asarray(landscape.start, dtype)
