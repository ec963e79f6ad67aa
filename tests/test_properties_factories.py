"""Property test: every public factory of gradflow, fed a malformed argument, builds or names the argument.

For each public function of ``gradflow.__all__`` that builds a transform or a schedule (``FACTORIES``:
the rest is listed in ``NOT_FACTORIES`` with the reason), hypothesis replaces one argument of a valid call
(``VALID``: the required arguments) by a malformed value: a wrong type, a string (also a truthy one for a
flag), ``None``, NaN or ±Inf, an out-of-range number, a float for an integer, an array of an odd shape or
dtype. The factory must either build (a :class:`gradflow.Transform` or schedule: an array hyperparameter
is allowed; a flag takes only ``True`` or ``False``) or raise ``TypeError``/``ValueError`` whose message
names the argument. Factory calls only:
nothing is compiled except a schedule's values, which the learning-rate checks evaluate.

Settings: ``conftest.property_settings``, shared with tests/test_properties.py: 12 derandomized examples per
factory by default, ``GRADFLOW_PROPERTIES=thorough`` draws 200 fresh ones and shrinks failures.
"""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import property_settings
from hypothesis import given
from hypothesis import strategies as st

import gradflow as gf

SETTINGS = property_settings(12, 200)

# Public functions that are not factories of a transform or schedule.
NOT_FACTORIES = {
    "get_hyperparam": "reads a hyperparameter (tests/test_bad_inputs_hyperparams.py)",
    "set_hyperparam": "changes a hyperparameter (tests/test_bad_inputs_hyperparams.py)",
    "pytree_dataclass": "a class decorator",
    "static_field": "a dataclass field specifier",
    "schedule_free_eval_params": "reads a state",
    "slow_params": "reads a state",
    "unitwise_clip": "array arithmetic (owned by the update-time battery)",
    "unitwise_norm": "array arithmetic (owned by the update-time battery)",
    "value_and_grad_from_state": "wraps a loss function",
    "stateless": "wraps a user function (any arguments)",
    "stateless_with_tree_map": "wraps a user function (any arguments)",
    "with_extra_args_support": "wraps a transform as it is",
    "check_grads": "a gradient check, not a factory (tests/test_gradcheck.py)",
    "minimize": "runs an optimization (tests/test_minimize.py)",
    "conjugate_gradient": "a linear solve (tests/test_newton.py)",
    "apply_updates": "array arithmetic (owned by the update-time battery)",
    "factored_dims": "a shape helper",
    "decay_rate_pow": "array arithmetic",
    "averaged_params": "reads a state",
    "init_empty_state": "optax's init of a stateless transform",
    "central_differences": "a numerical derivative of a user function",
    "gnvp": "a curvature product of a user function",
    "hessian": "a curvature product of a user function",
    "hessian_from_grad": "a curvature product of a user function",
    "hvp": "a curvature product of a user function",
    "hvp_from_grad": "a curvature product of a user function",
    "composite": "the layout helper behind the factories (state types and paths, not user arguments)",
    "add_noise": "owned by the update-time battery (PRNG keys, noise.py)",
}

_SGD = gf.sgd(0.1)

# The valid value of each required argument, by name (a factory's own entry wins).
VALID_BY_NAME: dict[str, Any] = {
    "learning_rate": 0.1,
    "decay": 0.9,
    "step_size": 0.5,
    "offset": 0.1,
    "max_delta": 1.0,
    "max_norm": 1.0,
    "threshold": 1.0,
    "clipping": 0.1,
    "weight_decay": 0.1,
    "delay": 1,
    "k": 2,
    "inner": _SGD,
    "opt": _SGD,
    "optimizer": _SGD,
    "fast_optimizer": _SGD,
    "base_optimizer": _SGD,
    "tx": _SGD,
    "first": gf.identity(),
    "second": gf.sign(),
    "numerator": gf.identity(),
    "denominator": gf.identity(),
    "weight": 0.5,
    "init_value": 1.0,
    "end_value": 0.1,
    "peak_value": 1.0,
    "power": 1.0,
    "value": 0.5,
    "transition_steps": 10,
    "decay_steps": 10,
    "warmup_steps": 5,
    "decay_rate": 0.5,
    "interpolate_type": "linear",
    "every_k_schedule": 2,
    "max_backtracking_steps": 10,
    "max_linesearch_steps": 10,
    "step_size_fn": gf.constant_schedule(0.1),
    "measure_name": "norm",
    "measure": lambda updates, state, params: jnp.zeros([]),
    "mask": {"w": True},
    "freeze_mask": {"w": True},
    "param_labels": {"w": "a"},
    "transforms": {"a": _SGD},
    "inner_factory": gf.sgd,
    "should_transform_fn": lambda step: step > 0,
    "schedules": [gf.constant_schedule(1.0), gf.constant_schedule(0.5)],
    "boundaries": [5],
    "cosine_kwargs": [{"init_value": 0.0, "peak_value": 1.0, "warmup_steps": 2, "decay_steps": 10}],
    "trainable_params": {"w": True},
    "max_consecutive_errors": 3,
    "sync_period": 2,
    "slow_step_size": 0.5,
    "momentum": 0.9,
    "measures": {"norm": lambda updates, state, params: jnp.zeros([])},
}
VALID_BY_FACTORY: dict[str, dict[str, Any]] = {
    "join_schedules": {"schedules": [gf.constant_schedule(1.0), gf.constant_schedule(0.5)], "boundaries": [5]},
    "named_chain": {},
}

# Malformed values. Each is tried in place of one argument.
BAD: list[Any] = [
    "no",
    "",
    "0.5",
    None,
    math.nan,
    math.inf,
    -math.inf,
    -1.0,
    -3,
    1.5,
    2.5,
    0,
    10**12,
    True,
    False,
    [0.1],
    {"a": 1},
    object(),
    np.array([0.1, 2.0]),
    np.full((2, 3), 0.5),
    np.array([], np.float32),
    np.array(["a"]),
    np.array([1 + 1j]),
    np.array(0.5, np.float16),
    jnp.array(3, jnp.int8),
    jnp.array([True]),
    np.float64(0.5),
    np.int64(4),
    jnp.array(math.nan),
]


def _public_factories() -> dict[str, Any]:
    out = {}
    for name in sorted(gf.__all__):
        function = getattr(gf, name)
        if inspect.isfunction(function) and name[0].islower() and function.__module__.startswith("gradflow"):
            out[name] = function
    return out


def _valid_call(name: str, function: Any) -> dict[str, Any]:
    arguments = dict(VALID_BY_FACTORY.get(name, {}))
    for parameter in inspect.signature(function).parameters.values():
        required = parameter.default is inspect.Parameter.empty
        if required and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            arguments.setdefault(parameter.name, VALID_BY_NAME[parameter.name])
    return arguments


def _is_built(result: Any) -> bool:
    return isinstance(result, (gf.Transform, gf.Schedule, optax.GradientTransformation)) or callable(result)


FACTORIES = {name: f for name, f in _public_factories().items() if name not in NOT_FACTORIES}


def test_every_public_function_is_covered_or_excluded():
    """A new public function joins the property test, or NOT_FACTORIES with a reason."""
    for name, function in FACTORIES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            assert _is_built(function(**_valid_call(name, function))), name
    assert set(NOT_FACTORIES) <= set(_public_factories()), set(NOT_FACTORIES) - set(_public_factories())


def _parameters(function: Any) -> list[str]:
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


@pytest.mark.parametrize("name", sorted(FACTORIES))
@SETTINGS
@given(data=st.data())
def test_malformed_argument_builds_or_is_named(name, data):
    function = FACTORIES[name]
    parameters = _parameters(function)
    if not parameters:
        return
    argument = data.draw(st.sampled_from(parameters), label="argument")
    bad = data.draw(st.sampled_from(BAD), label="value")
    call = {**_valid_call(name, function), argument: bad}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = function(**call)
        except (TypeError, ValueError) as error:
            assert argument in str(error), f"{name}({argument}={bad!r}): {type(error).__name__}: {error}"
            return
    assert _is_built(result), f"{name}({argument}={bad!r}) returned {type(result).__name__}"
    assert not _is_flag(function, argument) or isinstance(bad, bool), f"{name} took {argument}={bad!r} as a flag"


def _is_flag(function: Any, argument: str) -> bool:
    """A static flag: its default is a bool (a mask defaulting to ``True`` is a tree of booleans, not a flag)."""
    default = inspect.signature(function).parameters[argument].default
    return isinstance(default, bool) and "mask" not in argument
