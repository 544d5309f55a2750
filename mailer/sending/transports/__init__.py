"""How messages leave: ``create_transport(name, settings)`` picks one from the registry in base.py."""

from mailer.sending.transports.base import (
    AccountPausedError,
    OutgoingMessage,
    RejectedError,
    TemporaryError,
    ThrottledError,
    Transport,
    TransportResult,
    available,
    create_transport,
    register,
)

__all__ = [
    "AccountPausedError",
    "OutgoingMessage",
    "RejectedError",
    "TemporaryError",
    "ThrottledError",
    "Transport",
    "TransportResult",
    "available",
    "create_transport",
    "register",
]
