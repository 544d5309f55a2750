"""Reading the signed link a reader followed: which subscriber it names, if it is genuine.

The token names an id; the subscriber's row holds the salt its signature covers (subscribers.tokens).
Every failure (malformed, forged, expired, another purpose or scope, an id nobody holds, an id now held by
someone else) is the same InvalidToken, so a forged link learns nothing. Unit of work: no writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session

from subscribers.errors import InvalidToken
from subscribers.models import Subscriber, Topic, subscriber_topics
from subscribers.store import MAX_ID
from subscribers.tokens import token_subject, verify_token

__all__ = ["LinkedSubscriber", "read_link", "read_link_with_topics"]


@dataclass(frozen=True)
class LinkedSubscriber:
    """Who a genuine link names, as the row was when it was read (every link a reader follows reads one:
    a column select, not an ORM load)."""

    id: int
    email: str
    locale: str
    status: str
    token_salt: str


# Built once, on the tables (not the ORM entities), and run on the session's connection: a link is read
# on every page a reader opens, and building and keying a statement per call, or the ORM's execute path,
# cost more than running it.
_SUBSCRIBERS = cast(Table, Subscriber.__table__)
_TOPICS = cast(Table, Topic.__table__)
_COLUMNS = (
    _SUBSCRIBERS.c.id,
    _SUBSCRIBERS.c.email,
    _SUBSCRIBERS.c.locale,
    _SUBSCRIBERS.c.status,
    _SUBSCRIBERS.c.token_salt,
)
_BY_ID = select(*_COLUMNS).where(_SUBSCRIBERS.c.id == bindparam("id"))
# the same row once per followed topic (once with a NULL key when none): the preference centre in one query
_WITH_TOPICS = (
    select(*_COLUMNS, _TOPICS.c.key)
    .select_from(
        _SUBSCRIBERS.outerjoin(
            subscriber_topics, subscriber_topics.c.subscriber_id == _SUBSCRIBERS.c.id
        ).outerjoin(_TOPICS, _TOPICS.c.id == subscriber_topics.c.topic_id)
    )
    .where(_SUBSCRIBERS.c.id == bindparam("id"))
)


def _subject(token: str) -> int:
    subscriber_id = token_subject(token)
    if not 0 < subscriber_id <= MAX_ID:
        raise InvalidToken("this link is not valid")
    return subscriber_id


def _verified(
    row: Any,
    keys: str | Sequence[str],
    token: str,
    purpose: str,
    scope: str,
    max_age: float | None,
    now: datetime,
) -> LinkedSubscriber:
    if row is None:
        raise InvalidToken("this link is not valid")
    subscriber = LinkedSubscriber(*row[:5])
    verify_token(keys, token, purpose, salt=subscriber.token_salt, scope=scope, max_age=max_age, now=now)
    return subscriber


def read_link(
    session: Session,
    keys: str | Sequence[str],
    token: str,
    purpose: str,
    *,
    scope: str = "",
    max_age: float | None = None,
    now: datetime,
) -> LinkedSubscriber:
    subscriber_id = _subject(token)  # a malformed token takes no connection
    row = session.connection().execute(_BY_ID, {"id": subscriber_id}).first()
    return _verified(row, keys, token, purpose, scope, max_age, now)


def read_link_with_topics(
    session: Session,
    keys: str | Sequence[str],
    token: str,
    purpose: str,
    *,
    scope: str = "",
    max_age: float | None = None,
    now: datetime,
) -> tuple[LinkedSubscriber, frozenset[str]]:
    """``read_link`` and the keys of the topics the subscriber follows, in one query."""
    subscriber_id = _subject(token)
    rows = session.connection().execute(_WITH_TOPICS, {"id": subscriber_id}).all()
    subscriber = _verified(rows[0] if rows else None, keys, token, purpose, scope, max_age, now)
    return subscriber, frozenset(row[5] for row in rows if row[5] is not None)
