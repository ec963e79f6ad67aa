"""A process that saves checkpoints until it is killed, for tests/test_checkpoint_crash.py.

Run as a script, it imports NumPy and :mod:`gradflow.checkpoint` once (JAX's backend stays
uninitialised), prints ``ready``, then serves one command per line of its standard input::

    single DIRECTORY FIRST DELAY LOG   # save(DIRECTORY, trees(k, 0), overwrite=True) for k = FIRST, FIRST + 1, ...
    steps ROOT FIRST DELAY LOG         # for k = FIRST, ...: save step k (max_to_keep=2), then overwrite it

For each command it forks a child that saves in a loop, appending ``saved STEP VERSION`` to LOG after
each save returns (``error ...`` if one raises), kills the child with SIGKILL after DELAY seconds, and
prints ``killed``. Forking saves starting a Python process (seconds) for each kill. The trees of
:func:`trees` depend only on ``(step, version)``, so the test rebuilds what each checkpoint must hold.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any

import numpy as np

from gradflow import checkpoint

MAX_TO_KEEP = 2


def trees(step: int, version: int) -> tuple[dict[str, Any], tuple[dict[str, Any]]]:
    """``(params, opt_state)`` whose every bit depends on ``(step, version)``."""
    base = np.float32(10 * step + version)
    params = {"w": np.arange(16384, dtype=np.float32) * np.float32(1e-3) + base, "b": np.full(3, base, np.float32)}
    opt_state = ({"count": np.asarray(step, np.int32), "mu": {"w": params["w"] * np.float32(0.5), "b": -params["b"]}},)
    return params, opt_state


def save_forever(mode: str, directory: str, first: int, log: int) -> None:
    """Save ``(step, version)`` after ``(step, version)``, logging each one once :func:`checkpoint.save` returns."""
    step = first
    while True:
        for version in (0,) if mode == "single" else (0, 1):  # steps: a new step (and a rotation), then its overwrite
            if mode == "single":
                checkpoint.save(directory, *trees(step, version), overwrite=True)
            else:
                checkpoint.save(directory, *trees(step, version), step=step, max_to_keep=MAX_TO_KEEP, overwrite=True)
            os.write(log, f"saved {step} {version}\n".encode())  # unbuffered: a kill loses nothing logged
        step += 1


def run_and_kill(mode: str, directory: str, first: str, delay: str, log_path: str) -> None:
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    child = os.fork()
    if child == 0:
        try:
            save_forever(mode, directory, int(first), log)
        except BaseException:
            os.write(log, ("error " + traceback.format_exc().replace("\n", " | ") + "\n").encode())
        os._exit(1)
    os.close(log)
    time.sleep(float(delay))
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)


def main() -> None:
    checkpoint._orbax()  # import orbax-checkpoint once, before forking
    print("ready", flush=True)
    for line in sys.stdin:
        run_and_kill(*line.split())
        print("killed", flush=True)


if __name__ == "__main__":
    main()
