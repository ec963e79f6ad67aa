"""Every public name has a docstring with a runnable example (the examples themselves run as doctests:
``--doctest-modules`` over gradflow/ is in the test command's addopts)."""

from __future__ import annotations

import inspect
import types

import pytest

import gradflow

NAMESPACES = ["gradflow", "gradflow.checkpoint", "gradflow.distributed", "gradflow.experiments",
              "gradflow.schedules", "gradflow.tree", "gradflow.wrappers"]  # fmt: skip


def public_names():
    for namespace in NAMESPACES:
        module = gradflow if namespace == "gradflow" else getattr(gradflow, namespace.split(".")[1])
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or not (inspect.isclass(obj) or callable(obj)):
                continue  # modules have their own docstrings; constants (LANDSCAPES ...) are data
            yield pytest.param(obj, id=f"{namespace}.{name}")


@pytest.mark.parametrize("obj", list(public_names()))
def test_public_name_has_a_runnable_example(obj):
    doc = inspect.getdoc(obj) or ""
    assert doc.strip(), "no docstring"
    assert ">>>" in doc, "the docstring has no runnable example"
