"""Waiting for a state instead of sleeping a fixed time: poll until a condition holds, with a deadline."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call ``probe`` until it returns something truthy and return that; AssertionError at the deadline
    naming ``what`` and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f} s (last: {value!r})")
        time.sleep(interval)


def holds_for(
    probe: Callable[[], object], seconds: float, *, interval: float = 0.1, what: str = "it"
) -> None:
    """Check ``probe`` stays truthy for ``seconds`` (nothing happens that should not: a paused campaign
    sends nothing); AssertionError as soon as it does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), f"{what} stopped holding"
        time.sleep(interval)


def wait_for_start(
    process: subprocess.Popen[Any], ready: Callable[[], object], *, what: str, log: Path, timeout: float = 300
) -> None:
    """Wait until a server process we started is ready (``ready()`` truthy): for as long as it takes while
    the process lives, since on a loaded machine its imports alone may take tens of seconds; at once, with
    the end of its log, when it exits; ``timeout`` only guards against a hang. The process is killed when it
    does not become ready."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            how = (
                f"exited with {process.returncode}"
                if process.poll() is not None
                else f"hung for {timeout:.0f} s"
            )
            process.kill()
            tail = log.read_bytes()[-3000:].decode(errors="replace") if log.exists() else "(no log)"
            raise RuntimeError(f"{what} did not start ({how}):\n{tail}")
        time.sleep(0.1)
