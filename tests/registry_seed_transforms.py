"""Registry entries (``name -> factory(learning_rate)``) of the seed transforms family, merged into registry.py."""

from __future__ import annotations

OPTIMIZERS: dict = {}  # add entries here, e.g. "adam_cosine": lambda lr: gf.adam(...)
