"""Reading the signed link a reader followed: which subscriber it names, if it is genuine.

The token names an id; the subscriber's row holds the salt its signature covers (subscribers.tokens).
Every failure (malformed, forged, expired, another purpose or scope, an id nobody holds, an id now held by
someone else) is the same InvalidToken, so a forged link learns nothing. Unit of work: no writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.orm import Session

from subscribers.errors import InvalidToken
from subscribers.models import Subscriber
from subscribers.store import MAX_ID
from subscribers.tokens import token_subject, verify_token

__all__ = ["read_link"]


def read_link(
    session: Session,
    keys: str | Sequence[str],
    token: str,
    purpose: str,
    *,
    scope: str = "",
    max_age: float | None = None,
    now: datetime | None = None,
) -> Subscriber:
    subscriber_id = token_subject(token)
    subscriber = session.get(Subscriber, subscriber_id) if 0 < subscriber_id <= MAX_ID else None
    if subscriber is None:
        raise InvalidToken("this link is not valid")
    verify_token(keys, token, purpose, salt=subscriber.token_salt, scope=scope, max_age=max_age, now=now)
    return subscriber
