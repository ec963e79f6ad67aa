"""Run client programs in this process, as written (``optax`` mode) or with gradflow as their ``optax``.

Usage::

    python clients_launcher.py MODE OUT.pkl JOBS.json

``MODE`` is ``optax`` (nothing is changed) or ``gradflow``: an ``__import__`` hook makes every import
statement *in a client program* that names ``optax`` or ``optax.<sub>`` (``import optax``,
``import optax.tree_utils``, ``from optax import contrib``, also inside functions) import ``gradflow`` /
``gradflow.<sub>`` instead, which is exactly what ``import gradflow as optax`` in the program's source would
do. The program files are not read or rewritten. Every other module keeps the real optax: flax (a hard
dependency of flax, so it is installed wherever flax is) and gradflow itself, whose ``losses``,
``tree_utils`` ... namespaces re-export optax's own functions. A submodule that gradflow lacks fails as
``No module named 'gradflow.<sub>'``.

``JOBS.json`` is a list of ``{"name": ..., "program": "client_x", "args": [...]}``; each ``main(*args)`` runs
in turn and a failure in one job does not stop the others. ``OUT.pkl`` receives ``{name: record}`` with
``ok``, ``result`` (the ``main`` dict as numpy values / floats / strings), ``error`` (the exception's last
line), ``traceback``, ``seconds`` and ``optax``: ``{global name: module __name__}`` for the program's
module-level names bound to optax or gradflow modules (``{"optax": "gradflow", "otu": "gradflow.tree_utils"}``).
"""

from __future__ import annotations

import builtins
import importlib
import json
import pickle
import sys
import time
import traceback
import types
from pathlib import Path


def install_gradflow_as_optax(program_modules: set[str]) -> None:
    """Make ``optax[.sub]`` imports written in ``program_modules`` import ``gradflow[.sub]``."""
    original_import = builtins.__import__

    def import_(name, *args, **kwargs):
        # __import__(name, globals=None, locals=None, fromlist=(), level=0), positionally or by keyword
        importer_globals = args[0] if args else kwargs.get("globals")
        level = args[3] if len(args) > 3 else kwargs.get("level", 0)
        if (
            level == 0
            and (name == "optax" or name.startswith("optax."))
            and (importer_globals or {}).get("__name__") in program_modules
        ):
            name = "gradflow" + name[len("optax") :]
        return original_import(name, *args, **kwargs)

    builtins.__import__ = import_


def to_plain(value):
    """numpy arrays, Python scalars and strings, so the record unpickles without jax."""
    import numpy as np

    if isinstance(value, str | bool | int | float):
        return value
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"main() returned a non-numeric array: {value!r:.200}")
    return array


def run_job(job: dict) -> dict:
    start, bound = time.perf_counter(), None
    try:
        module = importlib.import_module(job["program"])
        bound = {  # the program's optax modules: {"optax": "gradflow", "otu": "gradflow.tree_utils"} ...
            name: value.__name__
            for name, value in vars(module).items()
            if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] in ("optax", "gradflow")
        }
        result = module.main(*job.get("args", []))
        record = {"ok": True, "result": {key: to_plain(value) for key, value in result.items()}, "optax": bound}
    except BaseException as error:  # report every failure, whatever it is
        record = {
            "ok": False,
            "result": None,
            "error": "".join(traceback.format_exception_only(error)).strip().splitlines()[-1],
            "traceback": "".join(traceback.format_exception(error)),
            "optax": bound,
        }
    record["seconds"] = time.perf_counter() - start
    return record


def main(mode: str, out: str, jobs_file: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    jobs = json.loads(Path(jobs_file).read_text())
    if mode == "gradflow":
        install_gradflow_as_optax({job["program"] for job in jobs})
    elif mode != "optax":
        raise ValueError(f"mode must be 'optax' or 'gradflow', not {mode!r}")
    records = {job["name"]: run_job(job) for job in jobs}
    Path(out).write_bytes(pickle.dumps(records))


if __name__ == "__main__":
    main(*sys.argv[1:])
