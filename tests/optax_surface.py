"""optax's public surface, read from the installed optax, and the check that gradflow presents it.

``import gradflow as optax`` must run optax programs unchanged, so every public name of every public
optax module must exist at gradflow's same path (``optax.contrib.muon`` -> ``gradflow.contrib.muon``)
and be called the same way. Public means: a name of the module (``dir``) that does not start with an
underscore and is not a module. The names are enumerated when the tests run, so a new optax version
shows up as new test cases.

What "compatible" means, by the kind of optax object:

- a name that is the same object (optax's own function re-exported): compatible.
- a type alias (``optax.Params``, ``optax.Schedule``: a ``typing`` construct): present is enough.
- a NamedTuple class (the states): the same ``_fields``, in the same order (code reads
  ``state.mu``; checkpoints store the fields in order).
- a ``typing.Protocol`` (``optax.TransformInitFn`` ...): each of its methods with a compatible
  signature.
- an Enum: the same member names.
- any other class or callable: a compatible signature (of the constructor, for a class): every
  optax parameter is present, of the same kind, with the same default; optax's positional parameters
  come first, in optax's order (keyword-only parameters are matched by name: their order cannot matter
  to any call); parameters that only gradflow has have defaults (so, if positional, they come after
  optax's); where optax takes ``*args`` or ``**kwargs`` gradflow does too (their names are not
  compared: no caller can pass them by name). So every call that optax accepts binds the same way.

Defaults are compared by value (``1 == 1.0``, but ``True`` is not ``1``), except defaults that are
functions or objects, which cannot be equal across two libraries: a function by its name without
leading underscores (optax's private ``_decay_rate_pow`` is gradflow's ``decay_rate_pow``), an optax
transform (an ``(init, update)`` NamedTuple) by the factory that built it (the first part of its update
function's qualified name) against a gradflow transform's class name in snake case
(``ScaleByZoomLinesearch`` -> ``scale_by_zoom_linesearch``), and any other object by its type name.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

MODULES = (
    "optax",
    "optax.contrib",
    "optax.transforms",
    "optax.schedules",
    "optax.tree",
    "optax.tree_utils",
    "optax.losses",
    "optax.projections",
    "optax.assignment",
    "optax.perturbations",
    "optax.microbatching",
    "optax.second_order",
    "optax.experimental",
)

_P = inspect.Parameter
_VARIADIC = (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)


def optax_names(module: str) -> list[str]:
    """The public names of the optax module ``module``: not ``_``-prefixed, not modules."""
    namespace = importlib.import_module(module)
    return sorted(
        name
        for name in dir(namespace)
        if not name.startswith("_") and not isinstance(getattr(namespace, name), types.ModuleType)
    )


def gradflow_path(module: str) -> str:
    """``optax.contrib`` -> ``gradflow.contrib``."""
    return "gradflow" + module.removeprefix("optax")


def surface() -> list[tuple[str, str]]:
    """Every ``(optax module, name)`` pair of optax's public surface."""
    return [(module, name) for module in MODULES for name in optax_names(module)]


def problems(module: str, name: str) -> list[str]:
    """Why ``gradflow``'s counterpart of ``module.name`` is missing or incompatible (empty: it is fine)."""
    theirs = getattr(importlib.import_module(module), name)
    path = gradflow_path(module)
    try:
        namespace = importlib.import_module(path)
    except ImportError as error:
        return [f"{path} cannot be imported: {error}"]
    try:
        ours = getattr(namespace, name)
    except AttributeError:
        return [f"{path}.{name} does not exist"]
    if ours is theirs:
        return []
    return _compare(ours, theirs)


def _compare(ours: Any, theirs: Any) -> list[str]:
    if typing.get_origin(theirs) is not None:
        return []  # a type alias: present is enough
    if inspect.isclass(theirs) and issubclass(theirs, tuple) and hasattr(theirs, "_fields"):
        fields = getattr(ours, "_fields", None)
        if fields is None:
            return [f"optax's is a NamedTuple with fields {theirs._fields}; gradflow's has no _fields"]
        if tuple(fields) != tuple(theirs._fields):
            return [f"fields {tuple(fields)} != optax's {theirs._fields}"]
        return []
    if inspect.isclass(theirs) and getattr(theirs, "_is_protocol", False):
        found = []
        for method in _protocol_methods(theirs):
            if not callable(getattr(ours, method, None)):
                found.append(f"protocol method {method} is missing")
            else:
                found += [f"{method}: {p}" for p in signature_problems(getattr(ours, method), getattr(theirs, method))]
        return found
    if inspect.isclass(theirs) and issubclass(theirs, enum.Enum):
        if not (inspect.isclass(ours) and issubclass(ours, enum.Enum)):
            return ["optax's is an Enum; gradflow's is not"]
        mine, optax_members = list(ours.__members__), list(theirs.__members__)
        return [] if mine == optax_members else [f"members {mine} != optax's {optax_members}"]
    if callable(theirs):
        if not callable(ours):
            return ["optax's is callable; gradflow's is not"]
        return signature_problems(ours, theirs)
    return []  # a constant: present is enough


def _protocol_methods(protocol: type) -> list[str]:
    return [
        name
        for name, value in vars(protocol).items()
        if callable(value) and (name == "__call__" or not name.startswith("_"))
    ]


def signature_problems(ours: Callable[..., Any], theirs: Callable[..., Any]) -> list[str]:
    """How the signature of ``ours`` fails to accept every call that ``theirs`` accepts, the same way."""
    try:
        mine = list(inspect.signature(ours).parameters.values())
    except (TypeError, ValueError):
        return ["gradflow's has no signature to compare"]
    try:
        optax_params = list(inspect.signature(theirs).parameters.values())
    except (TypeError, ValueError):
        return []  # optax's has none either: nothing to compare
    found = []
    for kind, spelling in ((_P.VAR_POSITIONAL, "*args"), (_P.VAR_KEYWORD, "**kwargs")):
        if any(p.kind is kind for p in optax_params) and not any(p.kind is kind for p in mine):
            found.append(f"optax's takes {spelling}, gradflow's does not")
    named = [p for p in mine if p.kind not in _VARIADIC]
    optax_named = [p for p in optax_params if p.kind not in _VARIADIC]
    names = [p.name for p in named]
    missing = [p.name for p in optax_named if p.name not in names]
    if missing:
        found.append(f"missing parameters {missing}")
    positional = [p.name for p in named if p.kind is not _P.KEYWORD_ONLY]
    optax_positional = [p.name for p in optax_named if p.kind is not _P.KEYWORD_ONLY]
    if not missing and positional[: len(optax_positional)] != optax_positional:
        found.append(f"positional parameters {positional} do not start with optax's {optax_positional}")
    extras = [p for p in named if p.name not in {q.name for q in optax_named}]
    found += [f"gradflow-only parameter {p.name!r} has no default" for p in extras if p.default is _P.empty]
    by_name = {p.name: p for p in named}
    for p in optax_named:
        q = by_name.get(p.name)
        if q is None:
            continue
        if q.kind is not p.kind:
            found.append(f"{p.name}: {q.kind.description} != optax's {p.kind.description}")
        if default_key(q.default) != default_key(p.default):
            found.append(f"{p.name}: default {_show(q.default)} != optax's {_show(p.default)}")
    return found


def _show(default: Any) -> str:
    return "(none)" if default is _P.empty else repr(default)


def default_key(value: Any) -> Any:
    """What is compared of a default value (see the module docstring)."""
    if value is _P.empty:
        return ("no default",)
    if value is None or isinstance(value, (str, bytes, enum.Enum, np.dtype)):
        return ("value", value)
    if isinstance(value, (bool, int, float, complex, np.number, np.bool_)):
        return ("number", isinstance(value, (bool, np.bool_)), value)
    if inspect.isclass(value):  # a dtype such as jnp.float32, or a class
        return ("value", value)
    if isinstance(value, tuple) and hasattr(value, "_fields") and set(value._fields) == {"init", "update"}:
        return ("transform", _factory_of(value))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(default_key(v) for v in value))
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((k, default_key(v)) for k, v in value.items())))
    if _is_gradflow_transform(value):
        return ("transform", _snake_case(type(value).__name__))
    name = getattr(value, "__name__", None)
    if callable(value) and isinstance(name, str):
        return ("function", name.lstrip("_"))
    return ("instance", type(value).__name__)


def _factory_of(transform: Any) -> str:
    qualname = getattr(transform.update, "__qualname__", "")
    return qualname.split(".")[0].lstrip("_")


def _is_gradflow_transform(value: Any) -> bool:
    import gradflow

    return isinstance(value, gradflow.Transform)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def coverage_rows(pending: Iterable[str], documented: Iterable[str]) -> list[tuple[str, int, int, int, int]]:
    """Per optax module: (module, optax names, compatible at gradflow's path, pending, documented differences).

    A name counts as compatible when :func:`problems` finds none; pending and documented names are
    counted in their own columns (the xfail cases check that they do fail).
    """
    pending, documented = set(pending), set(documented)
    rows = []
    for module in MODULES:
        names = [f"{module}.{name}" for name in optax_names(module)]
        is_pending = [n for n in names if n in pending]
        is_documented = [n for n in names if n in documented]
        compatible = [
            n
            for n in names
            if n not in pending and n not in documented and not problems(module, n.removeprefix(module + "."))
        ]
        rows.append((module, len(names), len(compatible), len(is_pending), len(is_documented)))
    return rows


def coverage_table(pending: Iterable[str], documented: Iterable[str]) -> str:
    """The Markdown table of :func:`coverage_rows`, with a total row (as in the README)."""
    rows = coverage_rows(pending, documented)
    lines = [
        "| module | optax names | present at gradflow's path with compatible signature "
        "| pending (contrib issue) | documented differences |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{m}` | {n} | {c} | {p} | {d} |" for m, n, c, p, d in rows]
    totals = [sum(row[i] for row in rows) for i in range(1, 5)]
    lines.append("| total | {} | {} | {} | {} |".format(*totals))
    return "\n".join(lines)
