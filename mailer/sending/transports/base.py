"""The one interface every transport satisfies, its error classes, and the registry by name.

Transports know nothing of campaigns: they get bytes and envelope addresses, send, and either return the
provider's message id or raise one of the errors below, which tell the sending loop what to do:

TransportError (mailer.errors)
 ├── ThrottledError        too fast: back off, retry the same row later (it stays queued)
 ├── AccountPausedError    daily quota, sending paused, account suspended: pause the campaign, say why
 ├── RejectedError         this message or address is refused: fail this row only
 └── TemporaryError        network trouble, 5xx: retry with backoff, then fail the row
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mailer.errors import InputError, TransportError
from mailer.settings import Settings

__all__ = [
    "AccountPausedError",
    "OutgoingMessage",
    "RejectedError",
    "TemporaryError",
    "ThrottledError",
    "Transport",
    "TransportError",
    "TransportResult",
    "available",
    "create_transport",
    "register",
]


@dataclass(frozen=True)
class OutgoingMessage:
    sender: str  # envelope sender (MAIL FROM / SES FromEmailAddress)
    recipients: tuple[str, ...]
    raw: bytes  # the complete MIME message
    message_id: str  # its Message-ID header, angle brackets included
    campaign_id: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)  # SES message tags


@dataclass(frozen=True)
class TransportResult:
    message_id: str  # the provider's id (SES MessageId); stored in the ledger


@runtime_checkable
class Transport(Protocol):
    name: str

    def send(self, message: OutgoingMessage) -> TransportResult: ...

    def max_rate(self) -> float | None:
        """Messages per second this transport takes from all senders together (the shared rate limiter
        of this transport uses it); None: no limit."""
        ...

    def close(self) -> None: ...


class ThrottledError(TransportError):
    """The provider wants us slower; nothing was sent."""


class AccountPausedError(TransportError):
    """Sending cannot go on for anyone (quota, paused, suspended): the campaign pauses with this reason."""


class RejectedError(TransportError):
    """This message or recipient is refused for good; other rows are unaffected."""


class TemporaryError(TransportError):
    """Network or server trouble; the same message may succeed on a later try."""


TransportFactory = Callable[[Settings], Transport]
_FACTORIES: dict[str, TransportFactory] = {}
# Built-in transports are imported on first use, so the file transport never imports boto3.
_BUILTIN_MODULES = {
    "ses": "mailer.sending.transports.ses",
    "smtp": "mailer.sending.transports.smtp",
    "file": "mailer.sending.transports.file",
}


def register(name: str) -> Callable[[TransportFactory], TransportFactory]:
    """Class or function decorator: ``@register("ses")`` makes ``create_transport("ses", ...)`` build it."""

    def decorate(factory: TransportFactory) -> TransportFactory:
        _FACTORIES[name] = factory
        return factory

    return decorate


def available() -> tuple[str, ...]:
    return tuple(sorted(set(_FACTORIES) | set(_BUILTIN_MODULES)))


def create_transport(name: str, settings: Settings) -> Transport:
    if name not in _FACTORIES and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise InputError(f"unknown transport {name!r}; choose one of {', '.join(available())}") from None
    if name != "file":  # real mail carries links: they must not be signed with the published key
        settings.require_own_secret(f"sending through the {name} transport")
    return factory(settings)
