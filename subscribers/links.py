"""Reading the signed link a reader followed: which subscriber it names, if it is genuine.

The token names an id; the subscriber's row holds the salt its signature covers (subscribers.tokens).
Every failure (malformed, forged, expired, another purpose or scope, an id nobody holds, an id now held by
someone else) is the same InvalidToken, so a forged link learns nothing. Unit of work: no writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from subscribers.errors import InvalidToken
from subscribers.models import Subscriber
from subscribers.store import MAX_ID
from subscribers.tokens import token_subject, verify_token

__all__ = ["LinkedSubscriber", "read_link"]


@dataclass(frozen=True)
class LinkedSubscriber:
    """Who a genuine link names, as the row was when it was read (every link a reader follows reads one:
    a column select, not an ORM load)."""

    id: int
    email: str
    locale: str
    status: str
    token_salt: str


_COLUMNS = select(
    Subscriber.id, Subscriber.email, Subscriber.locale, Subscriber.status, Subscriber.token_salt
)


def read_link(
    session: Session,
    keys: str | Sequence[str],
    token: str,
    purpose: str,
    *,
    scope: str = "",
    max_age: float | None = None,
    now: datetime | None = None,
) -> LinkedSubscriber:
    subscriber_id = token_subject(token)
    row = (
        session.execute(_COLUMNS.where(Subscriber.id == subscriber_id)).first()
        if 0 < subscriber_id <= MAX_ID
        else None
    )
    if row is None:
        raise InvalidToken("this link is not valid")
    subscriber = LinkedSubscriber(*row)
    verify_token(keys, token, purpose, salt=subscriber.token_salt, scope=scope, max_age=max_age, now=now)
    return subscriber
