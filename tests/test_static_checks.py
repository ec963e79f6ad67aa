"""The type checker and the linter are part of the test command: mypy (configured in pyproject.toml's
``[tool.mypy]``) finds no error in gradflow/, and ruff finds nothing to report anywhere in the project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def check(*command: str) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_package_is_typed():
    """PEP 561: the py.typed marker ships with the package, so users' type checkers read our annotations."""
    assert (ROOT / "gradflow" / "py.typed").is_file()


def test_mypy_is_clean():
    # mypy's incremental cache (.mypy_cache/, git-ignored): a fresh checkout, as in CI, checks everything
    # (~10-25 s, mostly the typed dependencies: jax, numpy, optax); a rerun re-checks only what changed
    # (under a second when nothing did). mypy invalidates each module's entry when it or a dependency changes.
    check(sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache"))


def test_ruff_is_clean():
    check(sys.executable, "-m", "ruff", "check", "--no-cache", ".")
    check(sys.executable, "-m", "ruff", "format", "--check", "--no-cache", ".")
