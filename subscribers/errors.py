"""The subscribers package's own small error tree (it never imports mailer; mailer maps these once).

SubscribersError (ValueError)
 ├── InvalidInput        bad input: an address, a CSV file, a topic, a locale       -> mailer InputError
 ├── InvalidToken        a signed link that is forged, expired or for another purpose -> mailer InputError
 ├── UnknownSubscriber   no subscriber with that id or address                      -> mailer NotFoundError
 ├── AlreadyExists       adding an address that is already a subscriber             -> mailer ConflictError
 └── RateLimited         too many confirmation emails for one address               -> mailer RateLimitedError

Each class carries the exit code and HTTP status of its mailer counterpart, so a caller that only catches
these can still answer correctly.
"""

from __future__ import annotations


class SubscribersError(ValueError):
    exit_code: int = 1
    http_status: int = 500


class InvalidInput(SubscribersError):
    exit_code = 2
    http_status = 400


class InvalidEmail(InvalidInput):
    pass


class InvalidToken(InvalidInput):
    pass


class UnknownSubscriber(SubscribersError):
    exit_code = 3
    http_status = 404


class AlreadyExists(SubscribersError):
    exit_code = 4
    http_status = 409


class RateLimited(SubscribersError):
    exit_code = 5
    http_status = 429

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
