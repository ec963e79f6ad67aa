"""Every public name has a docstring with a runnable example (the examples themselves run as doctests:
``--doctest-modules`` over gradflow/ is in the test command's addopts).

Two kinds of public names are exempt: optax's own objects that gradflow re-exports at optax's paths
(losses, projections, tree utilities ...: their docstrings are optax's, so optax documents them; they are
recognised by a ``__module__`` under ``optax``), and type aliases (``gradflow.Params`` ...), which are
annotations, documented by a comment beside their definition."""

from __future__ import annotations

import inspect
import types
import typing

import pytest

import gradflow

NAMESPACES = ["gradflow", "gradflow.checkpoint", "gradflow.contrib", "gradflow.distributed", "gradflow.experiments",
              "gradflow.protocol", "gradflow.schedules", "gradflow.tree", "gradflow.wrappers"]  # fmt: skip


def public_names():
    for namespace in NAMESPACES:
        module = gradflow if namespace == "gradflow" else getattr(gradflow, namespace.split(".")[1])
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or not (inspect.isclass(obj) or callable(obj)):
                continue  # modules have their own docstrings; constants (LANDSCAPES ...) are data
            if typing.get_origin(obj) is not None:
                continue  # a type alias (gradflow.Params ...): an annotation, not an object with a docstring
            if (getattr(obj, "__module__", None) or "").split(".")[0] == "optax":
                continue  # optax's own function, re-exported: its docstring (and example) is optax's
            yield pytest.param(obj, id=f"{namespace}.{name}")


@pytest.mark.parametrize("obj", list(public_names()))
def test_public_name_has_a_runnable_example(obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), "no docstring"
    assert ">>>" in doc, "the docstring has no runnable example"
