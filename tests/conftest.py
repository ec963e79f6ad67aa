"""Shared fixtures: a small pytree problem that every law and numeric test reuses."""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

# tests/multidevice needs 8 simulated devices, which must be set before jax starts; test_distributed.py
# runs it in a subprocess with XLA_FLAGS set, so the rest of the suite keeps one device.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    collect_ignore = ["multidevice"]


#: XLA:CPU's loop emitters: the suite's programs compile in about half the time (see _use_loop_emitters).
LOOP_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _use_loop_emitters() -> None:
    """Compile the suite's programs with XLA:CPU's loop emitters instead of its (default) fusion emitters.

    The suite is hundreds of small programs, and XLA's compile time is most of its time: the loop emitters
    compile them in about half the time (the laws' program of Adam: 1.0 s against 0.45 s). They generate
    code for the same optimized HLO, so the tests check the same gradflow programs; only XLA's code
    generator differs (the benchmarks keep XLA's defaults: they measure what users run).

    Set in the xdist controller (or a run without xdist) before jax starts, so the workers, the notebooks'
    kernels and the subprocess tests inherit it (:func:`subprocess_environment`). Left alone when XLA_FLAGS
    already chooses the emitters; skipped, with a warning, by an XLA that does not know the flag (XLA aborts
    the process at an unknown flag, so it is tried in a subprocess first).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" in flags or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    with_flag = f"{flags} {LOOP_EMITTERS}".strip()
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    known = subprocess.run(
        [sys.executable, "-c", probe], env=os.environ | {"XLA_FLAGS": with_flag}, capture_output=True
    )
    if known.returncode == 0:
        os.environ["XLA_FLAGS"] = with_flag
    else:
        print(f"conftest: this XLA refused {LOOP_EMITTERS}; the suite compiles with XLA's defaults", file=sys.stderr)


def subprocess_environment(devices: int | None = None) -> dict[str, str]:
    """This process's environment for a test's Python subprocess: XLA_FLAGS keeps this run's emitter choice
    and, with ``devices``, asks for that many simulated CPU devices instead of any count set here."""
    kept = [
        flag for flag in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in flag
    ]
    if devices is not None:
        kept.append(f"--xla_force_host_platform_device_count={devices}")
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    return env | {"XLA_FLAGS": " ".join(kept)} if kept else env


_use_loop_emitters()


def _share_compiled_programs() -> None:
    """A persistent compilation cache for the test run (one directory per xdist worker).

    JAX compiles many identical XLA programs in a run: an eager ``lax.cond`` / ``lax.scan`` / ``while_loop``
    over closures built at each call (line searches, L-BFGS, Newton-CG, ``apply_if_finite`` ...) is traced
    and compiled again at every update, and so is the same program built by two jit objects.
    The cache is keyed by the program itself (HLO, compile options, JAX / XLA version), so a hit returns
    the executable that compiling would have produced: the tests run the same code either way.

    By default the cache lives in a fresh temporary directory, removed when the run ends (so every run, in
    CI as here, starts cold); ``GRADFLOW_TEST_COMPILATION_CACHE=<dir>`` keeps it in ``<dir>`` across runs
    (faster local reruns), ``GRADFLOW_TEST_COMPILATION_CACHE=off`` turns it off. A ``JAX_COMPILATION_CACHE_DIR``
    set by the user is left alone.
    """
    path = os.environ.get("GRADFLOW_TEST_COMPILATION_CACHE")
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or path == "off":
        return
    if not path:  # the xdist controller (or a run without xdist): the workers inherit the variable
        path = tempfile.mkdtemp(prefix="gradflow-test-jax-cache-")
        os.environ["GRADFLOW_TEST_COMPILATION_CACHE"] = path
        atexit.register(shutil.rmtree, path, ignore_errors=True)
    # One directory per xdist worker: JAX writes cache entries without a lock, so a worker could read an
    # entry that another one is still writing.
    path = os.path.join(path, os.environ.get("PYTEST_XDIST_WORKER", "main"))
    # Before anything compiles: JAX decides whether to use the cache at the first compilation.
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


_share_compiled_programs()


#: Node ids of the tests marked ``xdist_group`` that this xdist worker collected without their group (filled
#: by :func:`pytest_collection_finish`, checked by ``tests/test_suite_grouping.py``).
UNGROUPED: list[str] = []


def pytest_collection_finish(session):
    """Under ``--dist loadgroup``, record the tests marked ``xdist_group`` whose node id lacks the group.

    The tests of one optimizer share compiled programs and module data only when they run on one worker;
    pytest-xdist groups them by an ``@group`` suffix it writes on each node id. A pytest that ignores that
    write (pytest 9 with pytest-xdist 3.8) spreads the groups over the workers, and the suite silently
    compiles everything twice; ``test_xdist_groups_are_honoured`` fails instead.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") and session.config.getoption("loadgroup", False):
        marked = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group")]
        UNGROUPED.extend(nodeid for nodeid in marked if "@" not in nodeid)


# --- hypothesis settings shared by the property tests --------------------------------------------------

#: ``GRADFLOW_PROPERTIES=thorough``: the property tests (tests/test_properties*.py) draw many fresh random
#: examples and shrink failures; by default they run a few derandomized examples, the same in every run.
THOROUGH = os.environ.get("GRADFLOW_PROPERTIES", "") == "thorough"


def property_settings(default_examples: int, thorough_examples: int, **overrides):
    """The hypothesis settings of a property test: ``default_examples`` derandomized examples (reproducible
    in CI, no shrinking: a failure is reported as drawn, since shrinking JAX programs takes minutes), or
    with ``GRADFLOW_PROPERTIES=thorough`` ``thorough_examples`` fresh ones and every phase (shrinking
    included). ``overrides`` are further hypothesis settings (``phases=`` applies to the default only)."""
    from hypothesis import HealthCheck, Phase, settings

    phases = overrides.pop("phases", [Phase.explicit, Phase.generate])
    suppressed = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
    suppressed.append(HealthCheck.function_scoped_fixture)
    return settings(
        max_examples=thorough_examples if THOROUGH else default_examples,
        deadline=None,
        derandomize=not THOROUGH,
        database=None,
        print_blob=True,
        phases=list(Phase) if THOROUGH else phases,
        suppress_health_check=suppressed,
        **overrides,
    )


def make_params(dtype=jnp.float32, seed: int = 0):
    """A nested pytree with leaves of different shapes (and a tuple node)."""
    rng = np.random.default_rng(seed)
    return {
        "dense": {"w": jnp.asarray(rng.normal(size=(3, 2)), dtype), "b": jnp.asarray(rng.normal(size=(2,)), dtype)},
        "scale": (jnp.asarray(rng.normal(size=()), dtype),),
    }


def loss(params):
    """A smooth non-quadratic loss over the tree of :func:`make_params`."""
    w, b = params["dense"]["w"], params["dense"]["b"]
    (s,) = params["scale"]
    x = jnp.arange(1.0, 4.0, dtype=w.dtype)
    y = jnp.tanh(x @ w + b)
    return jnp.sum((y - 0.5) ** 2) + 0.5 * s**2 + 0.1 * jnp.sum(w**4)


grad = jax.grad(loss)


@pytest.fixture
def params():
    return make_params()


def assert_signature_matches(ours, theirs, gradflow_only=frozenset()):
    """Same argument names, order, kinds and defaults as the optax function ``theirs``, so switching from
    optax is a rename of the import; gradflow's own additions (``gradflow_only``) must be keyword-only."""
    import inspect

    a, b = inspect.signature(ours).parameters, inspect.signature(theirs).parameters
    extra = set(a) - set(b)
    assert extra == set(gradflow_only)
    assert all(a[k].kind is inspect.Parameter.KEYWORD_ONLY for k in extra)
    assert [k for k in a if k in b] == list(b)
    for key in b:
        assert a[key].kind == b[key].kind, key
        assert a[key].default == b[key].default, key


def numeric_leaves(tree):
    """The leaves of ``tree`` that are not ``None``, each typed PRNG key (``AddNoiseState.rng_key``, as in
    optax) as its uint32 key data: NumPy cannot hold keys, the comparisons need their bits."""
    leaves = [x for x in jax.tree.leaves(tree) if x is not None]
    return [jax.random.key_data(x) if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key) else x
            for x in leaves]  # fmt: skip


def describe(tree):
    """The layout of a state as plain data, to compare with optax's: type names, field names and keys in
    leaf order, and each leaf's shape and dtype."""
    if tree is None:
        return None
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree).__name__, tuple((field, describe(getattr(tree, field))) for field in tree._fields)
    if isinstance(tree, collections.OrderedDict):
        return "OrderedDict", tuple((key, describe(value)) for key, value in tree.items())
    if isinstance(tree, dict):
        return "dict", tuple((key, describe(tree[key])) for key in sorted(tree))
    if isinstance(tree, (tuple, list)):
        return type(tree).__name__, tuple(describe(value) for value in tree)
    return "leaf", tuple(jnp.shape(tree)), str(jnp.result_type(tree))
