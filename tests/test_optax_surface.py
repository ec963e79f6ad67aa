"""Conformance with optax's public surface: ``import gradflow as optax`` runs optax programs unchanged.

Every public name of every public optax module, enumerated from the installed optax when the tests
run, must resolve at gradflow's same path with a compatible signature; one case per name, with the
rules of ``tests/optax_surface.py``. Two lists hold the exceptions, each entry with its reason:

- ``PENDING``: names gradflow does not have yet, left to the contrib issue (``optax.contrib``'s
  optimizers, and the few top-level optimizer aliases built on them). Their cases are strict xfails, so
  an entry must leave the list the day the name arrives.
- ``DOCUMENTED_DIFFERENCES``: names where gradflow deliberately differs from optax; each one is also a
  row of the README's migration table. Strict xfails too.

The README's "Migrating from optax" section carries the per-module coverage table that
:func:`optax_surface.coverage_table` computes (``python tests/test_optax_surface.py`` prints it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from optax_surface import MODULES, coverage_table, default_key, problems, signature_problems, surface

ROOT = Path(__file__).resolve().parents[1]

_CONTRIB = "optax.contrib: not in gradflow yet (the contrib issue)"
_ALIAS = "an optimizer alias gradflow does not have yet (the contrib issue)"
_SCALE_BY = "the transform of an optimizer alias gradflow does not have yet (the contrib issue)"
_STATE = "the state of a transform gradflow does not have yet (the contrib issue)"

PENDING: dict[str, str] = {
    "optax.ScaleByAdanState": _STATE,
    "optax.ScaleBySM3State": _STATE,
    "optax.adamaxw": _ALIAS,
    "optax.adan": _ALIAS,
    "optax.fromage": _ALIAS,
    "optax.nadamw": _ALIAS,
    "optax.noisy_sgd": _ALIAS,
    "optax.optimistic_adam": _ALIAS,
    "optax.optimistic_adam_v2": _ALIAS,
    "optax.optimistic_gradient_descent": _ALIAS,
    "optax.scale_by_adan": _SCALE_BY,
    "optax.scale_by_distance_over_gradients": _SCALE_BY,
    "optax.scale_by_optimistic_gradient": _SCALE_BY,
    "optax.scale_by_param_block_norm": _SCALE_BY,
    "optax.scale_by_sm3": _SCALE_BY,
    "optax.sm3": _ALIAS,
    "optax.contrib.COCOBState": _CONTRIB,
    "optax.contrib.DAdaptAdamWState": _CONTRIB,
    "optax.contrib.DifferentiallyPrivateAggregateState": _CONTRIB,
    "optax.contrib.DoGState": _CONTRIB,
    "optax.contrib.DoWGState": _CONTRIB,
    "optax.contrib.GaLoreDimensionNumbers": _CONTRIB,
    "optax.contrib.GaLoreState": _CONTRIB,
    "optax.contrib.HutchinsonState": _CONTRIB,
    "optax.contrib.MadgradState": _CONTRIB,
    "optax.contrib.MechanicState": _CONTRIB,
    "optax.contrib.MomoAdamState": _CONTRIB,
    "optax.contrib.MomoState": _CONTRIB,
    "optax.contrib.MuonDimensionNumbers": _CONTRIB,
    "optax.contrib.MuonState": _CONTRIB,
    "optax.contrib.NormalizeState": _CONTRIB,
    "optax.contrib.ProdigyState": _CONTRIB,
    "optax.contrib.SAMState": _CONTRIB,
    "optax.contrib.ScaleByAdemamixState": _CONTRIB,
    "optax.contrib.ScaleBySimplifiedAdEMAMixState": _CONTRIB,
    "optax.contrib.SophiaState": _CONTRIB,
    "optax.contrib.SplitRealAndImaginaryState": _CONTRIB,
    "optax.contrib.acprop": _CONTRIB,
    "optax.contrib.ademamix": _CONTRIB,
    "optax.contrib.adopt": _CONTRIB,
    "optax.contrib.cocob": _CONTRIB,
    "optax.contrib.dadapt_adamw": _CONTRIB,
    "optax.contrib.differentially_private_aggregate": _CONTRIB,
    "optax.contrib.dog": _CONTRIB,
    "optax.contrib.dowg": _CONTRIB,
    "optax.contrib.dpsgd": _CONTRIB,
    "optax.contrib.galore": _CONTRIB,
    "optax.contrib.hutchinson_estimator_diag_hessian": _CONTRIB,
    "optax.contrib.madgrad": _CONTRIB,
    "optax.contrib.mechanize": _CONTRIB,
    "optax.contrib.momo": _CONTRIB,
    "optax.contrib.momo_adam": _CONTRIB,
    "optax.contrib.muon": _CONTRIB,
    "optax.contrib.normalize": _CONTRIB,
    "optax.contrib.prodigy": _CONTRIB,
    "optax.contrib.sam": _CONTRIB,
    "optax.contrib.scale_by_acprop": _CONTRIB,
    "optax.contrib.scale_by_ademamix": _CONTRIB,
    "optax.contrib.scale_by_adopt": _CONTRIB,
    "optax.contrib.scale_by_cocob": _CONTRIB,
    "optax.contrib.scale_by_galore": _CONTRIB,
    "optax.contrib.scale_by_madgrad": _CONTRIB,
    "optax.contrib.scale_by_muon": _CONTRIB,
    "optax.contrib.scale_by_simplified_ademamix": _CONTRIB,
    "optax.contrib.simplified_ademamix": _CONTRIB,
    "optax.contrib.sophia": _CONTRIB,
    "optax.contrib.split_real_and_imaginary": _CONTRIB,
}

DOCUMENTED_DIFFERENCES: dict[str, str] = {}


def _cases():
    for module, name in surface():
        path = f"{module}.{name}"
        marks = []
        if path in PENDING:
            marks = [pytest.mark.xfail(strict=True, reason=f"pending: {PENDING[path]}")]
        elif path in DOCUMENTED_DIFFERENCES:
            marks = [pytest.mark.xfail(strict=True, reason=f"documented difference: {DOCUMENTED_DIFFERENCES[path]}")]
        yield pytest.param(module, name, id=path, marks=marks)


@pytest.mark.parametrize(("module", "name"), list(_cases()))
def test_optax_name_resolves_at_gradflow_path(module, name):
    found = problems(module, name)
    assert not found, "; ".join(found)


def _theirs(a, b=1, *args, c=None, **kwargs): ...


def _private_helper(): ...


@pytest.mark.parametrize(
    ("ours", "compatible"),
    [
        (lambda a, b=1, *rest, c=None, d=2.0, **extra: None, True),  # variadic names are free; trailing extra
        (lambda a, b=1, *args, d=2.0, c=None, **kwargs: None, True),  # keyword-only order cannot matter
        (lambda a, b=1, e=0, *args, c=None, **kwargs: None, True),  # a positional extra after optax's, defaulted
        (lambda b, a=1, *args, c=None, **kwargs: None, False),  # positional order
        (lambda a, *args, c=None, **kwargs: None, False),  # missing b
        (lambda a, b=2, *args, c=None, **kwargs: None, False),  # another default
        (lambda a, b=True, *args, c=None, **kwargs: None, False),  # True is not 1
        (lambda a, b=1.0, *args, c=None, **kwargs: None, True),  # 1.0 == 1
        (lambda a, *args, b=1, c=None, **kwargs: None, False),  # b keyword-only
        (lambda a, b=1, *args, c=None: None, False),  # no **kwargs
        (lambda a, b=1, *args, c=None, d, **kwargs: None, False),  # an extra without a default
    ],
)
def test_signature_rules(ours, compatible):
    assert (not signature_problems(ours, _theirs)) is compatible


def test_default_rules():
    import optax

    import gradflow

    def private_helper(): ...

    assert default_key(_private_helper) == default_key(private_helper) != default_key(len)  # names sans underscores
    assert default_key(optax.scale_by_zoom_linesearch(15)) == default_key(gradflow.scale_by_zoom_linesearch(15))
    assert default_key(optax.scale_by_zoom_linesearch(15)) != default_key(gradflow.scale_by_backtracking_linesearch(15))


def test_exception_lists_name_optax_names():
    """Each entry of PENDING and DOCUMENTED_DIFFERENCES is a public optax name, in one list only."""
    public = {f"{module}.{name}" for module, name in surface()}
    assert not (set(PENDING) | set(DOCUMENTED_DIFFERENCES)) - public
    assert not set(PENDING) & set(DOCUMENTED_DIFFERENCES)


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_documented_differences_are_in_the_readme_migration_table():
    rows = [line for line in _readme_section("Migrating from optax").splitlines() if line.startswith("| ")]
    for path in DOCUMENTED_DIFFERENCES:
        name = path.rsplit(".", 1)[1]
        assert any(re.search(rf"\b{re.escape(name)}\b", row) for row in rows), f"{path} is not in the migration table"


def test_readme_coverage_table_is_current():
    """The README shows exactly the table computed from the installed optax and today's gradflow."""
    table = coverage_table(PENDING, DOCUMENTED_DIFFERENCES)
    assert table in _readme_section("Migrating from optax"), f"update the README's coverage table to:\n{table}"


def test_every_public_optax_module_is_covered():
    """MODULES lists every public optax module, so a new one shows up here (and needs a gradflow namespace)."""
    import pkgutil

    import optax

    public = {
        f"optax.{info.name}"
        for info in pkgutil.iter_modules(optax.__path__)
        if not info.name.startswith("_") and not info.name.endswith("_test")
    }
    assert public | {"optax"} == set(MODULES)


def test_import_gradflow_without_optax():
    """optax is optional: gradflow imports and trains without it, and a re-exported name says what is missing."""
    code = """
import sys
sys.modules["optax"] = None  # \"import optax\" now fails, as when it is not installed
import jax.numpy as jnp
import gradflow
from gradflow import (assignment, contrib, losses, microbatching, perturbations, projections, schedules,
                      second_order, transforms, tree, tree_utils)
tx = gradflow.chain(gradflow.clip_by_global_norm(1.0), gradflow.adam(1e-3), gradflow.debias(0.9))
params = {"w": jnp.ones(3)}
updates, state = tx.update(params, tx.init(params), params)
gradflow.apply_updates(params, updates)
assert transforms.chain is gradflow.chain and contrib.reduce_on_plateau is gradflow.reduce_on_plateau
for namespace, name in [(gradflow, "l2_loss"), (gradflow, "bias_correction"), (losses, "l2_loss"),
                        (tree, "sum"), (tree_utils, "tree_sum"), (second_order, "hvp"),
                        (transforms, "skip_not_finite")]:
    try:
        getattr(namespace, name)
    except ImportError as error:
        assert "gradflow[optax]" in str(error), error
    else:
        raise AssertionError(f"{namespace.__name__}.{name} resolved without optax")
assert not [m for m in sys.modules if m.startswith("optax.")]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-4000:]


if __name__ == "__main__":
    print(coverage_table(PENDING, DOCUMENTED_DIFFERENCES))
