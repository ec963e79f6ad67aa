"""Run time without compilation: call a jitted computation twice, report the second call and the difference.

``jax.jit`` caches the compiled program, so the first call of a computation traces, compiles and runs,
and a second identical call only runs. :func:`timed` makes both calls and reports the second one's time
as the run time and the first one's extra time as the compilation time; ``gradflow race`` and
``gradflow sweep`` print both, so that a per-step time never includes compilation.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax

from gradflow.validation import check_callable

__all__ = ["Timed", "timed"]


@dataclasses.dataclass(frozen=True)
class Timed:
    """What :func:`timed` measured.

    Attributes:
      result: the second call's result (the same as the first's: the computation is deterministic).
      seconds: the second call's wall time, results ready: the run alone, compilation excluded.
      compile_seconds: the first call's extra time over the second (tracing and compilation), >= 0; about
        0 when the program was already compiled before the first call.

    >>> import jax.numpy as jnp
    >>> measured = timed(lambda: jax.jit(jnp.cumsum)(jnp.arange(4)))
    >>> measured.result.tolist(), measured.seconds >= 0, measured.compile_seconds >= 0
    ([0, 1, 3, 6], True, True)
    """

    result: Any
    seconds: float
    compile_seconds: float


def timed(call: Callable[[], Any]) -> Timed:
    """Call ``call()`` twice, each time until its results are ready (``jax.block_until_ready``).

    The first call compiles (unless the program is cached already) and runs; the second one only runs.
    Its time is :attr:`Timed.seconds`, and ``first − second`` (floored at 0) is
    :attr:`Timed.compile_seconds`. ``call`` must be a computation whose jitted program is reused by a
    second identical call (the same function objects, shapes and static arguments), such as
    :func:`~gradflow.experiments.sweep` on the same arguments.

    Args:
      call: a function of no arguments that runs the computation and returns its (JAX) results.

    Returns:
      A :class:`Timed` with the second call's result.

    >>> import jax.numpy as jnp
    >>> measured = timed(lambda: jax.jit(lambda x: x @ x)(jnp.eye(3)))
    >>> float(measured.result.sum()), measured.seconds <= measured.seconds + measured.compile_seconds
    (3.0, True)
    """
    check_callable("timed", "call", call)
    durations = []
    result = None
    for _ in range(2):  # the first call compiles (unless cached), the second one runs the compiled program
        began = time.perf_counter()
        result = jax.block_until_ready(call())
        durations.append(time.perf_counter() - began)
    first, second = durations
    return Timed(result=result, seconds=second, compile_seconds=max(first - second, 0.0))
