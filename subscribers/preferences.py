"""Reading and changing one subscriber: topics, locale, unsubscribing, adding and removing.

Service functions for the preference page, the CLI and the bounce webhook. Each change is a conditional
write (a repeated call changes nothing and returns False) and logs an event. The caller commits.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, literal, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from subscribers.db import not_within
from subscribers.errors import AlreadyExists, InvalidInput
from subscribers.events import EVENTS, record_event
from subscribers.models import STATUSES, Subscriber, Suppression, Topic, subscriber_topics
from subscribers.normalise import normalise_address, normalise_locale, normalise_name
from subscribers.states import SubscriberAction, SubscriberStatus, sources, target
from subscribers.store import find_subscriber, get_subscriber, topic_ids
from subscribers.suppression import STATUS_FOR_REASON, SUBSCRIBERS

__all__ = [
    "Preferences",
    "add_subscriber",
    "claim_link_email",
    "followed_topics",
    "get_preferences",
    "rejoin",
    "remove_subscriber",
    "require_topics",
    "set_locale",
    "set_topics",
    "TopicChange",
    "unsubscribe_all",
    "unsubscribe_topic",
]


@dataclass(frozen=True)
class Preferences:
    subscriber_id: int
    email: str
    name: str | None
    locale: str
    status: str
    topics: frozenset[str]


def require_topics(session: Session, keys: Collection[str]) -> dict[str, int]:
    """``{key: id}`` for ``keys``; InvalidInput naming the first key the topic table does not have."""
    found = topic_ids(session, keys)
    missing = sorted(set(keys) - set(found))
    if missing:
        raise InvalidInput(f"unknown topic {missing[0]!r}")
    return found


def followed_topics(session: Session, subscriber_id: int) -> frozenset[str]:
    """The keys of the topics a subscriber follows (one query; no check that the subscriber exists)."""
    rows = session.scalars(
        select(Topic.key)
        .join(subscriber_topics, subscriber_topics.c.topic_id == Topic.id)
        .where(subscriber_topics.c.subscriber_id == subscriber_id)
    )
    return frozenset(rows)


def get_preferences(session: Session, subscriber_id: int) -> Preferences:
    s = get_subscriber(session, subscriber_id)
    return Preferences(s.id, s.email, s.name, s.locale, s.status, followed_topics(session, s.id))


def _replace_topics(session: Session, subscriber_id: int, wanted: dict[str, int]) -> None:
    session.execute(
        delete(subscriber_topics).where(
            subscriber_topics.c.subscriber_id == subscriber_id,
            subscriber_topics.c.topic_id.not_in(list(wanted.values()) or [-1]),
        )
    )
    have = set(
        session.scalars(
            select(subscriber_topics.c.topic_id).where(subscriber_topics.c.subscriber_id == subscriber_id)
        )
    )
    new = [{"subscriber_id": subscriber_id, "topic_id": i} for i in wanted.values() if i not in have]
    if new:  # a row another transaction added meanwhile is not an error
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(subscriber_topics).values(new).on_conflict_do_nothing())


@dataclass(frozen=True)
class TopicChange:
    """What ``set_topics`` changed, read under the subscriber's row lock (so two saves of one form never
    both report the same change); true when it changed anything."""

    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def set_topics(
    session: Session,
    subscriber_id: int,
    topics: Collection[str],
    *,
    source: str,
    now: datetime,
) -> TopicChange:
    """Make the subscriber follow exactly ``topics`` (keys); what that added and removed."""
    ids = require_topics(session, topics)
    wanted = frozenset(ids)
    subscriber = get_subscriber(session, subscriber_id, lock=True)
    before = followed_topics(session, subscriber_id)
    change = TopicChange(wanted - before, before - wanted)
    if not change:
        return change
    _replace_topics(session, subscriber_id, ids)
    subscriber.changed_at = now
    record_event(
        session,
        subscriber_id,
        subscriber.email_key,
        "topics_changed",
        source=source,
        detail={"added": sorted(change.added), "removed": sorted(change.removed)},
        now=now,
    )
    session.flush()
    return change


def unsubscribe_topic(
    session: Session, subscriber_id: int, topic: str, *, source: str, now: datetime
) -> bool:
    """Stop following one topic (the subscriber stays subscribed to the rest); True when it changed."""
    require_topics(session, [topic])
    followed = followed_topics(session, subscriber_id)
    if topic not in followed:
        get_subscriber(session, subscriber_id)  # an unknown id is an error, not a silent no-op
        return False
    return bool(set_topics(session, subscriber_id, followed - {topic}, source=source, now=now))


def set_locale(session: Session, subscriber_id: int, locale: str, *, source: str, now: datetime) -> bool:
    value = normalise_locale(locale)
    subscriber = get_subscriber(session, subscriber_id)
    if subscriber.locale == value:
        return False
    detail = {"from": subscriber.locale, "to": value}
    subscriber.locale, subscriber.changed_at = value, now
    record_event(
        session, subscriber_id, subscriber.email_key, "locale_changed", source=source, detail=detail, now=now
    )
    session.flush()
    return True


# Built once, on the table (not the entity): one-click unsubscribes come in bursts. On PostgreSQL the
# change and its event are one statement (a data-modifying WITH): one round trip instead of two.
_UNSUBSCRIBE_ALL = (
    update(SUBSCRIBERS)
    .where(
        SUBSCRIBERS.c.id == bindparam("subscriber_id"),
        or_(*(SUBSCRIBERS.c.status == status for status in sources(SubscriberAction.UNSUBSCRIBE))),
    )
    .values(status=target(SubscriberAction.UNSUBSCRIBE), changed_at=bindparam("now"))
    .returning(SUBSCRIBERS.c.id, SUBSCRIBERS.c.email_key)
)
_CHANGED = _UNSUBSCRIBE_ALL.cte("changed")
_UNSUBSCRIBE_ALL_LOGGED = (
    insert(EVENTS)
    .from_select(
        ["subscriber_id", "email_key", "kind", "source", "detail", "created_at"],
        select(
            _CHANGED.c.id,
            _CHANGED.c.email_key,
            literal("unsubscribed", EVENTS.c.kind.type),
            bindparam("event_source", type_=EVENTS.c.source.type),
            null(),
            bindparam("now", type_=EVENTS.c.created_at.type),
        ),
    )
    .returning(EVENTS.c.email_key)
)


def unsubscribe_all(session: Session, subscriber_id: int, *, source: str, now: datetime) -> bool:
    """Unsubscribe from everything; True when the subscriber was pending or active until now."""
    params = {"subscriber_id": subscriber_id, "now": now}
    if session.get_bind().dialect.name == "postgresql":
        row = session.execute(_UNSUBSCRIBE_ALL_LOGGED, {**params, "event_source": source[:32]}).first()
    else:
        row = session.execute(_UNSUBSCRIBE_ALL, params).first()
        if row is not None:
            record_event(session, subscriber_id, row[1], "unsubscribed", source=source, now=now)
    loaded = session.identity_map.get(session.identity_key(Subscriber, subscriber_id))
    if row is not None and loaded is not None:  # a row this session holds reads its new status afresh
        session.expire(loaded, ["status", "changed_at"])
    if row is None:
        get_subscriber(session, subscriber_id)
        return False
    return True


def rejoin(session: Session, subscriber_id: int, *, source: str, now: datetime) -> bool:
    """Undo an unsubscribe (the reader followed a signed link of their own mail, which proves the
    address); True when the subscriber was unsubscribed until now. Suppressed addresses stay suppressed."""
    suppressed = select(Suppression.id).where(Suppression.email_key == Subscriber.email_key).exists()
    row = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.status.in_(sources(SubscriberAction.REJOIN)),
            ~suppressed,
        )
        .values(status=target(SubscriberAction.REJOIN), changed_at=now)
        .returning(Subscriber.email_key)
        .execution_options(synchronize_session="fetch")
    ).first()
    if row is None:
        get_subscriber(session, subscriber_id)
        return False
    record_event(session, subscriber_id, row[0], "rejoined", source=source, now=now)
    return True


def claim_link_email(session: Session, email: str, *, now: datetime, rate_limit_seconds: float) -> int | None:
    """The id of the subscriber at ``email`` when a "send me my preferences link" email may go to them
    now (stamping ``link_sent_at``, so racing requests get one email); None when there is no such
    subscriber, the address is suppressed or bounced, or one went out less than ``rate_limit_seconds`` ago.
    Callers answer the same in every case: the form must not tell who subscribes."""
    address = normalise_address(email)
    suppressed = select(Suppression.id).where(Suppression.email_key == Subscriber.email_key).exists()
    row = session.execute(
        update(Subscriber)
        .where(
            Subscriber.email_key == address.key,
            Subscriber.status.in_(
                (SubscriberStatus.PENDING, SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED)
            ),
            ~suppressed,
            not_within(Subscriber.link_sent_at, now, rate_limit_seconds),
        )
        .values(link_sent_at=now)
        .returning(Subscriber.id)
        .execution_options(synchronize_session="fetch")
    ).first()
    return None if row is None else int(row[0])


def add_subscriber(
    session: Session,
    email: str,
    *,
    name: str | None = None,
    topics: Collection[str] = (),
    locale: str | None = None,
    status: str = SubscriberStatus.ACTIVE,
    source: str = "cli",
    now: datetime,
) -> Subscriber:
    """Create one subscriber (AlreadyExists if the address is taken). A suppressed address is created
    with the status its suppression implies, never active."""
    if status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    address = normalise_address(email)
    wanted = require_topics(session, topics)
    if session.scalar(select(Subscriber.id).where(Subscriber.email_key == address.key)) is not None:
        raise AlreadyExists(f"{address.email} is already a subscriber")
    reason = session.scalar(select(Suppression.reason).where(Suppression.email_key == address.key))
    if reason is not None:
        status = STATUS_FOR_REASON[reason]
    subscriber = Subscriber(
        email=address.email,
        email_key=address.key,
        name=normalise_name(name),
        locale=normalise_locale(locale),
        status=status,
        created_at=now,
        changed_at=now,
        confirmed_at=now if status == SubscriberStatus.ACTIVE else None,
        source=source[:32],
        soft_bounces=0,
    )
    session.add(subscriber)
    session.flush()
    _replace_topics(session, subscriber.id, wanted)
    record_event(
        session,
        subscriber.id,
        address.key,
        "subscribed",
        source=source,
        detail={"status": status, "topics": sorted(wanted)},
        now=now,
    )
    session.flush()
    return subscriber


def remove_subscriber(
    session: Session, email_or_id: str | int, *, source: str = "cli", now: datetime
) -> Subscriber:
    """Delete a subscriber and what it follows; the event log keeps the address key of the removal.
    A suppression of the address stays (it protects the address, not the row)."""
    subscriber = find_subscriber(session, email_or_id)
    session.delete(subscriber)
    session.flush()
    record_event(
        session, None, subscriber.email_key, "removed", source=source, detail={"id": subscriber.id}, now=now
    )
    return subscriber
