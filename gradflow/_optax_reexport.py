"""Lazy re-exports: names that a gradflow namespace takes from another module on first access.

What is not a gradient transformation (losses, projections, tree utilities ...) is not rewritten:
gradflow's namespaces re-export optax's own functions under optax's paths. optax is an optional
dependency (the ``optax`` extra), so ``import gradflow`` must not import it: each namespace gets a
PEP 562 module ``__getattr__`` from :func:`lazy_reexport`, which imports the source module the first
time one of its names is read, caches the object in the namespace, and otherwise raises an
``ImportError`` that names the missing package and the extra that installs it.

The same mechanism forwards names between gradflow's own modules where an eager import would be
circular (``gradflow.transforms`` reads names that live in ``gradflow.wrappers``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_reexport"]

_EXTRA_HINT = "pip install 'gradflow[optax]'"


def lazy_reexport(
    namespace: str, sources: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``(__getattr__, __dir__)`` pair of a module that re-exports names lazily.

    Args:
      namespace: the ``__name__`` of the module that re-exports (e.g. ``"gradflow.losses"``).
      sources: for each source module (e.g. ``"optax.losses"``), the names taken from it.

    Returns:
      ``__getattr__(name)``, which imports the source of ``name`` on first access and caches the object
      in the namespace (later reads are plain attribute reads), and ``__dir__()``, which lists the
      namespace's own names together with the re-exported ones.

    Raises:
      ValueError: if a name is given by two sources.

    Example:
      >>> import sys, types
      >>> sys.modules["demo"] = types.ModuleType("demo")
      >>> sys.modules["demo"].__getattr__, _ = lazy_reexport("demo", {"math": ["tau"]})
      >>> import demo
      >>> round(demo.tau, 3), "tau" in vars(demo)  # imported on first access, then cached
      (6.283, True)
      >>> demo.pi
      Traceback (most recent call last):
      AttributeError: module 'demo' has no attribute 'pi'
      >>> del sys.modules["demo"]
    """
    origin: dict[str, str] = {}
    for source, names in sources.items():
        for name in names:
            if name in origin:
                raise ValueError(f"{namespace}: {name!r} is re-exported from both {origin[name]} and {source}")
            origin[name] = source

    def __getattr__(name: str) -> Any:
        source = origin.get(name)
        if source is None:
            raise AttributeError(f"module {namespace!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(source)
        except ImportError as error:
            missing = getattr(error, "name", None) or source
            package = missing.split(".")[0]
            if package == "gradflow":
                raise
            hint = f": {_EXTRA_HINT}" if package == "optax" else ""
            raise ImportError(
                f"{namespace}.{name} is {source}.{name} re-exported by gradflow, which needs the optional "
                f"dependency {package!r} (not importable here){hint}"
            ) from error
        try:
            value = getattr(module, name)
        except AttributeError:
            raise AttributeError(
                f"module {namespace!r} has no attribute {name!r} ({source} does not define it)"
            ) from None
        setattr(sys.modules[namespace], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[namespace])) | set(origin))

    return __getattr__, __dir__
