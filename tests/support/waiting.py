"""Waiting for a state instead of sleeping a fixed time: poll until a condition holds, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = "the condition"
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
