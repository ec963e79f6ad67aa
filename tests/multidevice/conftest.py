"""Eight simulated CPU devices and float64 for the multi-device tests.

This directory needs ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` in the environment before jax is
imported; tests/test_distributed.py runs it that way in a subprocess, and tests/conftest.py leaves it out of
collection otherwise, so the rest of the suite keeps its single device.
"""

from __future__ import annotations

import jax

assert jax.device_count() == 8, (
    f"tests/multidevice needs 8 devices, found {jax.device_count()}: run it with "
    "XLA_FLAGS=--xla_force_host_platform_device_count=8 set before jax is imported (tests/test_distributed.py "
    "does so in a subprocess), e.g. XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest "
    "tests/multidevice -n 0"
)

# float64 NumPy references are compared at 1e-12; the float32 tests give float32 params explicitly.
jax.config.update("jax_enable_x64", True)
