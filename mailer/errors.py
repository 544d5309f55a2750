"""One error tree for the project, and the one table that maps it (and subscribers' tree) to CLI exit codes
and HTTP statuses.

NewsletterError
 ├── InputError             bad input from a user: file, CSV row, CLI argument, HTTP body
 │    ├── IssueError        an issue file that cannot be parsed
 │    ├── TemplateError     a template that Jinja2 or MJML rejects
 │    └── VerificationError input that fails verification (a forged or unverifiable SNS message)
 ├── ConfigurationError     a setting that is malformed or refused; the message names the variable
 ├── NotFoundError          a subscriber, campaign or token that does not exist
 ├── ConflictError          an action that the current state forbids
 ├── SendingStopped         a send that did not finish (its process failed, or it ended paused)
 ├── RateLimitedError       too many requests for one address
 └── TransportError         a send that failed; ``code`` names the provider's cause (see transports.base)

``subscribers`` never imports mailer, so its own tree (subscribers.errors) is mapped here too: callers (the
CLI's main, the web app's exception handlers) ask ``error_kind(exc)`` and never read numbers off classes.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from subscribers import errors as subscriber_errors

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "ErrorKind",
    "InputError",
    "IssueError",
    "NewsletterError",
    "NotFoundError",
    "RateLimitedError",
    "SendingStopped",
    "TemplateError",
    "TransportError",
    "VerificationError",
    "database_outage_types",
    "error_kind",
    "is_database_outage",
]


class NewsletterError(Exception):
    """Base of every error this project raises on purpose; its message is one line for a human."""


class InputError(NewsletterError):
    pass


class IssueError(InputError):
    """An issue file is missing, unreadable or malformed. The message names the file."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class TemplateError(InputError):
    pass


class VerificationError(InputError):
    """Well-formed input that fails verification (signature, certificate, age, allow-list)."""


class ConfigurationError(NewsletterError):
    """A setting that is malformed, or that this use refuses (the default secret key for real mail)."""


class NotFoundError(NewsletterError):
    pass


class ConflictError(NewsletterError):
    pass


class SendingStopped(NewsletterError):
    """A send that did not finish: its process failed, or the campaign ended paused or cancelled. The
    message says what state the campaign is in and what continues it."""


class RateLimitedError(NewsletterError):
    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TransportError(NewsletterError):
    """A send that failed. ``code`` is the provider's name for the cause (an SES error code such as
    ``MessageRejected``, ``smtp-550``, ``file-ENOSPC``, ``network``), so failures can be grouped by it."""

    def __init__(self, message: str, code: str = "unknown") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class ErrorKind:
    name: str  # stable, for JSON error bodies and logs
    exit_code: int
    http_status: int


INPUT = ErrorKind("invalid_input", 2, 400)
UNVERIFIED = ErrorKind("unverified", 2, 403)
MISCONFIGURED = ErrorKind("misconfigured", 2, 500)  # the operator's to fix, not the web client's
NOT_FOUND = ErrorKind("not_found", 3, 404)
CONFLICT = ErrorKind("conflict", 4, 409)
RATE_LIMITED = ErrorKind("rate_limited", 5, 429)
TRANSPORT = ErrorKind("transport", 6, 502)
STOPPED = ErrorKind("sending_stopped", 7, 503)
OTHER = ErrorKind("error", 1, 500)

# First match wins: subclasses before their bases.
_TABLE: tuple[tuple[type[Exception], ErrorKind], ...] = (
    (VerificationError, UNVERIFIED),
    (InputError, INPUT),
    (subscriber_errors.InvalidInput, INPUT),  # InvalidEmail, InvalidToken
    (ConfigurationError, MISCONFIGURED),
    (NotFoundError, NOT_FOUND),
    (subscriber_errors.UnknownSubscriber, NOT_FOUND),
    (ConflictError, CONFLICT),
    (subscriber_errors.AlreadyExists, CONFLICT),
    (RateLimitedError, RATE_LIMITED),
    (subscriber_errors.RateLimited, RATE_LIMITED),
    (TransportError, TRANSPORT),
    (SendingStopped, STOPPED),
    (NewsletterError, OTHER),
    (subscriber_errors.SubscribersError, OTHER),
)


def error_kind(exc: BaseException) -> ErrorKind | None:
    """How to answer an error of either tree; None for anything else (a bug: let it surface)."""
    for cls, kind in _TABLE:
        if isinstance(exc, cls):
            return kind
    return None


def database_outage_types() -> tuple[type[Exception], ...]:
    """The errors of a database that cannot answer now (unreachable, restarting, locked, pool exhausted):
    a retry later may succeed, so the web side answers 503 and the CLI one line."""
    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    return (OperationalError, InterfaceError, PoolTimeout)


def is_database_outage(exc: BaseException) -> bool:
    """``database_outage_types`` without importing sqlalchemy: only looked up once it has raised."""
    if sys.modules.get("sqlalchemy.exc") is None:
        return False
    return isinstance(exc, database_outage_types())
