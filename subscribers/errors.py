"""The subscribers package's own small error tree (it never imports mailer; mailer.errors maps these to exit
codes and HTTP statuses, in the same table as its own).

SubscribersError (ValueError)
 ├── InvalidInput        bad input: an address, a CSV file, a topic, a locale
 │    ├── InvalidEmail   an address email-validator refuses
 │    └── InvalidToken   a signed link that is forged, expired or for another purpose
 ├── UnknownSubscriber   no subscriber with that id or address
 ├── AlreadyExists       adding an address that is already a subscriber
 └── RateLimited         too many confirmation emails for one address
"""

from __future__ import annotations


class SubscribersError(ValueError):
    pass


class InvalidInput(SubscribersError):
    pass


class InvalidEmail(InvalidInput):
    pass


class InvalidToken(InvalidInput):
    pass


class UnknownSubscriber(SubscribersError):
    pass


class AlreadyExists(SubscribersError):
    pass


class RateLimited(SubscribersError):
    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
