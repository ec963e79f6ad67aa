"""Assertions for pytest users."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gradflow.gradcheck import GradCheckReport, check_grads

__all__ = ["assert_grads_close"]


def assert_grads_close(fun: Callable[[Any], Any], params: Any, **kwargs: Any) -> GradCheckReport:
    """Assert that ``grad_fn`` (default ``jax.grad(fun)``) matches central differences of ``fun``.

    Takes the keyword arguments of :func:`gradflow.check_grads`; on failure raises
    :class:`gradflow.gradcheck.GradCheckError` (an ``AssertionError``) whose message is the report table.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradflow.testing import assert_grads_close
      >>> _ = assert_grads_close(lambda p: jnp.sum(jnp.sin(p["w"])), {"w": jnp.array([0.1, 0.2])})
    """
    return check_grads(fun, params, **kwargs).raise_if_failed()
