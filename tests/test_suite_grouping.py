"""The test command's own set-up: under ``pytest -n 2`` (``--dist loadgroup``) the tests of one group run on
one worker, so that they share compiled programs and module fixtures (see ``tests/conftest.py``)."""

from __future__ import annotations

from conftest import UNGROUPED


def test_xdist_groups_are_honoured():
    """Every test marked ``xdist_group`` carries its group in its node id on this worker (vacuous without
    xdist, where every test runs in one process). It fails where pytest ignores pytest-xdist's group
    suffix (pytest 9 with pytest-xdist 3.8): every group would be spread over the workers and compiled on
    each, silently doubling the suite's time."""
    assert not UNGROUPED, (
        f"{len(UNGROUPED)} tests marked xdist_group have no '@group' in their node id (first: {UNGROUPED[0]}): "
        "this pytest / pytest-xdist pair does not group tests; pin pytest as pyproject.toml's dev extra does"
    )
