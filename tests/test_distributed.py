"""gradflow.distributed across devices and processes, each configuration in its own subprocess.

JAX fixes its device count when it starts, so the 8-device tests (tests/multidevice) run in a child
pytest with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and the rest of the suite keeps one
device. The multi-process tests launch examples/distributed_training.py twice with
``jax.distributed.initialize`` over CPU collectives (gloo) on 127.0.0.1; every child has a hard
timeout and is killed when it passes it, so a hang fails the test instead of stalling CI.
"""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import subprocess_environment

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "distributed_training.py"
METHODS = ("data_parallel", "ZeRO1", "local_SGD", "EASGD")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("distributed")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def finish(processes: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    """Wait for every process until a shared deadline; kill them all if it passes."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for process in processes:
            output, _ = process.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            results.append((process.returncode, output))
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        pytest.fail(f"a process ran past the {timeout} s deadline and was killed")
    return results


def launch(tmp_path: Path, name: str, *arguments: str, devices: int | None = None) -> subprocess.Popen:
    save = str(tmp_path / f"{name}-{{process}}.npz")
    command = [sys.executable, str(SCRIPT), "--steps", "20", "--save", save, *arguments]
    env = subprocess_environment(devices)
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def two_processes(tmp_path: Path, name: str, *arguments: str) -> list[subprocess.Popen]:
    shared = ["--num-processes", "2", "--coordinator", f"127.0.0.1:{free_port()}", *arguments]
    return [launch(tmp_path, name, *shared, "--process-id", str(index)) for index in range(2)]


def test_eight_simulated_devices(tmp_path):
    """The mesh tests in tests/multidevice pass on 8 simulated CPU devices."""
    command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "multidevice"), "-n", "0", "-q",
               "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'basetemp'}"]  # fmt: skip
    env = subprocess_environment(8)
    (code, output), = finish([subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                               stderr=subprocess.STDOUT, text=True)], timeout=900)  # fmt: skip
    assert code == 0, output[-6000:]
    assert " passed" in output and "skipped" not in output, output[-2000:]


def test_two_processes_agree_with_one(tmp_path):
    """Two processes of this machine, one CPU device each, joined by jax.distributed: both end
    bit-identical to each other and to one process with two simulated devices, and data parallelism
    (replicated and ZeRO-1) is within 1e-6 of a single device."""
    runs = [*two_processes(tmp_path, "two_processes"), launch(tmp_path, "one_device", devices=1),
            launch(tmp_path, "two_devices", devices=2)]  # fmt: skip
    for code, output in finish(runs, timeout=300):
        assert code == 0, output[-4000:]
    first, second, one_device, two_devices = (np.load(tmp_path / f"{name}.npz") for name in (
        "two_processes-0", "two_processes-1", "one_device-0", "two_devices-0"))  # fmt: skip
    assert sorted(first.files) == sorted(one_device.files)
    assert {key.split("[")[0].split("/")[0] for key in first.files} == set(METHODS)
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
        np.testing.assert_allclose(first[key], two_devices[key], rtol=0, atol=1e-6, err_msg=key)
        if key.startswith(("data_parallel", "ZeRO1")):
            np.testing.assert_allclose(first[key], one_device[key], rtol=0, atol=1e-6, err_msg=key)
    assert first["data_parallel/loss"][-1] < 0.5 * first["data_parallel/loss"][0]


def test_dead_peer_aborts_the_survivor(tmp_path):
    """Killing one process in the middle of training makes the other one fail (its collective loses
    the peer, or the coordinator's heartbeat times out) instead of hanging."""
    survivor, victim = two_processes(tmp_path, "dead_peer", "--steps", "1000000", "--heartbeat-timeout", "5")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in victim.stdout], daemon=True).start()
    try:
        while "training: data parallel" not in lines.get(timeout=120):
            pass
    except queue.Empty:
        for process in (survivor, victim):
            process.kill()
        pytest.fail("the victim process did not start training within 120 s")
    time.sleep(1.0)  # some steps into training, inside the collectives
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    ((code, output),) = finish([survivor], timeout=120)
    assert code != 0, output[-3000:]
    assert "training: data parallel" in output, output[-3000:]
