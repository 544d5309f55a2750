"""Sending: campaigns' ledger, message building, rate limiting and transports."""

from collections.abc import Callable, Sequence

Enqueue = Callable[[int, Sequence[int]], None]
"""(campaign id, ledger ids) -> one batch handed to a sender (a Celery task, or this thread)."""
