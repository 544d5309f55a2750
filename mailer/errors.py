"""One error tree for the whole project, mapped once to CLI exit codes and HTTP statuses.

NewsletterError
 ├── InputError            bad input from a user: file, CSV row, CLI argument, HTTP body (exit 2, 400)
 │    ├── IssueError       an issue file that cannot be parsed
 │    └── TemplateError    a template that Jinja2 or MJML rejects
 ├── NotFoundError         a subscriber, campaign or token that does not exist (exit 3, 404)
 ├── ConflictError         an action that the current state forbids (exit 4, 409)
 ├── RateLimitedError      too many requests for one address (exit 5, 429)
 └── TransportError        a send that failed (see mailer.sending.transports.base for its children)
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base of every error this project raises on purpose; its message is one line for a human."""

    exit_code: int = 1
    http_status: int = 500


class InputError(NewsletterError):
    exit_code = 2
    http_status = 400


class IssueError(InputError):
    """An issue file is missing, unreadable or malformed. The message names the file."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class TemplateError(InputError):
    pass


class NotFoundError(NewsletterError):
    exit_code = 3
    http_status = 404


class ConflictError(NewsletterError):
    exit_code = 4
    http_status = 409


class RateLimitedError(NewsletterError):
    exit_code = 5
    http_status = 429


class TransportError(NewsletterError):
    exit_code = 6
    http_status = 502
