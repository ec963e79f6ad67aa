"""The shape of a bad-input probe, shared by the battery's modules (tests/test_bad_inputs*.py).

A probe is a ``pytest.param`` of a function with a distinct id. An *error* probe asserts that each of its
cases raises the given exception with a message naming the culprit (the argument, the pytree path or the
CLI flag) and what is allowed; a *safe* probe asserts the documented outcome with numbers. Each battery
module keeps its probes in ``ERRORS`` and ``SAFE``; tests/test_bad_inputs.py counts them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def error_probe(probe_id: str, exception: type[Exception], *cases: tuple[Callable[[], Any], str]) -> Any:
    """A probe: every ``build`` of ``cases`` raises ``exception`` with a message matching its pattern."""

    def probe():
        for build, pattern in cases:
            with pytest.raises(exception, match=pattern):
                build()

    return pytest.param(probe, id=probe_id)


def safe_probe(probe: Callable[[], None], probe_id: str) -> Any:
    """A probe whose function asserts a documented safe behaviour (with numbers)."""
    return pytest.param(probe, id=probe_id)
