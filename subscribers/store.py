"""Queries that sends and admins read: the audience of an issue in batches, segment counts, the send-time
re-check, topics, lookups and statistics. No writes except the topic table."""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    and_,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload

from subscribers.db import epoch_seconds, utcnow
from subscribers.errors import InvalidInput, UnknownSubscriber
from subscribers.models import (
    STATUSES,
    Subscriber,
    SubscriberEvent,
    Suppression,
    Topic,
    subscriber_topics,
)
from subscribers.normalise import TOPIC_KEY, email_key
from subscribers.states import SubscriberStatus

__all__ = [
    "count_created_before",
    "created_per_bucket",
    "AudienceMember",
    "add_topic",
    "engine_of",
    "events_of",
    "find_subscriber",
    "get_subscriber",
    "list_subscribers",
    "list_topics",
    "search_subscribers",
    "segment_counts",
    "sendable",
    "stats",
    "status_counts",
    "stream_audience",
    "suppression_count",
    "sync_topics",
    "topic_ids",
]

_ID_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class AudienceMember:
    subscriber_id: int
    email: str
    name: str | None
    locale: str
    segment: frozenset[str]  # the issue's topics this subscriber follows


def _not_suppressed():  # type: ignore[no-untyped-def]
    return ~exists().where(Suppression.email_key == Subscriber.email_key)


def engine_of(session: Session) -> Engine:
    """The engine behind a session, for a connection of one's own (streams that outlive commits)."""
    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


def topic_ids(session: Session, keys: Iterable[str]) -> dict[str, int]:
    """``{key: id}`` for the keys that exist in the topic table."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = session.execute(select(Topic.key, Topic.id).where(Topic.key.in_(wanted)))
    return {key: id_ for key, id_ in rows}


def stream_audience(
    session: Session, issue_topics: Collection[str], *, batch_size: int = 1000, after_id: int = 0
) -> Generator[list[AudienceMember], None, None]:
    """Active, non-suppressed subscribers with id > ``after_id``, in id order, ``batch_size`` at a time.

    Each member's segment is the set of ``issue_topics`` it follows. The rows come through a server-side
    cursor on PostgreSQL (a streaming cursor on SQLite) on a connection of its own, so the caller may
    write and commit through ``session`` between batches without disturbing the stream.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size must be at least 1")
    ids_by_key = topic_ids(session, issue_topics)
    key_by_id = {id_: key for key, id_ in ids_by_key.items()}
    members = (
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.locale)
        .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id > after_id, _not_suppressed())
        .order_by(Subscriber.id)
    )
    with engine_of(session).connect() as connection:
        result = connection.execution_options(stream_results=True, max_row_buffer=batch_size).execute(members)
        try:
            while rows := result.fetchmany(batch_size):
                followed: dict[int, set[str]] = {}
                if key_by_id:
                    topic_rows = connection.execute(
                        select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
                            subscriber_topics.c.subscriber_id.between(rows[0][0], rows[-1][0]),
                            subscriber_topics.c.topic_id.in_(list(key_by_id)),
                        )
                    )
                    for subscriber_id, topic_id in topic_rows:
                        followed.setdefault(subscriber_id, set()).add(key_by_id[topic_id])
                yield [
                    AudienceMember(id_, email, name, locale, frozenset(followed.get(id_, ())))
                    for id_, email, name, locale in rows
                ]
        finally:
            with suppress(DBAPIError):  # a lost connection cannot close its cursor; it is discarded anyway
                result.close()


def segment_counts(session: Session, issue_topics: Collection[str]) -> dict[frozenset[str], int]:
    """How many audience members fall into each segment (for the admin's preview before a send).

    Counted in the database: each member's followed issue topics become a bit mask (topic i -> 2**i),
    summed per subscriber, then members are counted per mask. Nothing per subscriber reaches Python.
    """
    ids = sorted(topic_ids(session, issue_topics).items())
    bit = {topic_id: 1 << index for index, (_, topic_id) in enumerate(ids)}
    audience = (
        select(Subscriber.id)
        .where(Subscriber.status == SubscriberStatus.ACTIVE, _not_suppressed())
        .subquery("audience")
    )
    if bit:
        mask_of = case(
            *((subscriber_topics.c.topic_id == topic_id, value) for topic_id, value in bit.items()), else_=0
        )
        masks = (
            select(audience.c.id, func.coalesce(func.sum(mask_of), 0).label("mask"))
            .select_from(audience)
            .outerjoin(
                subscriber_topics,
                and_(
                    subscriber_topics.c.subscriber_id == audience.c.id,
                    subscriber_topics.c.topic_id.in_(list(bit)),
                ),
            )
            .group_by(audience.c.id)
            .subquery("masks")
        )
        rows = session.execute(select(masks.c.mask, func.count()).group_by(masks.c.mask))
    else:
        rows = session.execute(select(literal(0), func.count()).select_from(audience))
    keys = [key for key, _ in ids]
    counts: dict[frozenset[str], int] = {}
    for mask, count in rows:
        if count:
            segment = frozenset(key for index, key in enumerate(keys) if int(mask) >> index & 1)
            counts[segment] = counts.get(segment, 0) + count
    return counts


def sendable(session: Session, subscriber_ids: Iterable[int]) -> dict[int, str]:
    """The ids that are still active and not suppressed (the re-check just before a message leaves),
    each with its token salt (the links of its message are signed with it)."""
    ids = sorted(set(subscriber_ids))
    if not ids:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        # one array parameter: the statement's text stays the same whatever the batch, so it is compiled
        # and prepared once (an IN list of 100 parameters cost ~1 ms of client CPU per batch)
        return {id_: salt for id_, salt in session.execute(_SENDABLE_PG, {"ids": ids})}
    found: dict[int, str] = {}
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        rows = session.execute(
            select(Subscriber.id, Subscriber.token_salt).where(
                Subscriber.id.in_(chunk), Subscriber.status == SubscriberStatus.ACTIVE, _not_suppressed()
            )
        )
        found.update({id_: salt for id_, salt in rows})
    return found


_SENDABLE_PG = select(Subscriber.id, Subscriber.token_salt).where(
    Subscriber.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))),
    Subscriber.status == SubscriberStatus.ACTIVE,
    _not_suppressed(),
)


MAX_ID = 2**63 - 1  # ids are 64-bit signed integers in both databases


def get_subscriber(session: Session, subscriber_id: int, *, lock: bool = False) -> Subscriber:
    """The subscriber; ``lock``: held (SELECT ... FOR UPDATE on PostgreSQL) until the transaction ends, so
    concurrent changes of one subscriber (two saves of a form at once) run one after the other."""
    if not 0 < subscriber_id <= MAX_ID:  # a database driver raises on larger numbers: none exists
        raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
    if lock and session.get_bind().dialect.name == "sqlite":
        # SQLite has no row locks, and pysqlite begins a transaction only at the first write: a no-op
        # write takes the database's write lock now, so what is read next stays current until the commit
        session.execute(
            update(Subscriber).where(Subscriber.id == subscriber_id).values(changed_at=Subscriber.changed_at)
        )
    subscriber = session.get(Subscriber, subscriber_id, with_for_update=lock or None, populate_existing=lock)
    if subscriber is None:
        raise UnknownSubscriber(f"no subscriber with id {subscriber_id}")
    return subscriber


def find_subscriber(session: Session, email_or_id: str | int) -> Subscriber:
    """A subscriber by id (an int or a string of digits) or by address (any case)."""
    if isinstance(email_or_id, int) or str(email_or_id).strip().isdigit():
        return get_subscriber(session, int(email_or_id))
    key = email_key(str(email_or_id))
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if subscriber is None:
        raise UnknownSubscriber(f"no subscriber with address {email_or_id!r}")
    return subscriber


def list_topics(session: Session) -> list[Topic]:
    return list(session.scalars(select(Topic).order_by(Topic.key)))


def add_topic(session: Session, key: str, name: str | None = None, name_zh: str | None = None) -> bool:
    """Create or rename a topic; True when the table changed. The caller commits."""
    return sync_topics(session, [(key, name or key, name_zh)], rename=True) > 0


def sync_topics(
    session: Session, topics: Iterable[tuple[str, str, str | None]], *, rename: bool = True
) -> int:
    """Make sure each ``(key, name, name_zh)`` exists (topics are never deleted: subscribers follow them).

    Returns how many rows were created or renamed. The caller commits.
    """
    existing = {topic.key: topic for topic in session.scalars(select(Topic))}
    changed = 0
    for key, name, name_zh in topics:
        key = key.strip().lower()
        if not TOPIC_KEY.fullmatch(key):
            raise InvalidInput(
                f"invalid topic key {key!r}: lower-case letters, digits, '-' and '_', at most 64"
            )
        topic = existing.get(key)
        if topic is None:
            topic = Topic(key=key, name=name, name_zh=name_zh, created_at=utcnow())
            session.add(topic)
            existing[key] = topic
            changed += 1
        elif rename and (topic.name, topic.name_zh) != (name, name_zh):
            topic.name, topic.name_zh = name, name_zh
            changed += 1
    session.flush()
    return changed


@dataclass(frozen=True)
class Stats:
    by_status: dict[str, int]
    by_topic: dict[str, int]  # active subscribers per topic
    suppressed: int
    total: int


def status_counts(session: Session) -> dict[str, int]:
    """Subscribers per status, every status named (one GROUP BY: a scan of the subscribers)."""
    by_status = {str(status): 0 for status in STATUSES}
    rows = session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status))
    by_status.update({status: count for status, count in rows})
    return by_status


def suppression_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Suppression)) or 0


def stats(session: Session) -> Stats:
    by_status = status_counts(session)
    by_topic = {key: 0 for key in session.scalars(select(Topic.key).order_by(Topic.key))}
    rows = session.execute(
        select(Topic.key, func.count())
        .select_from(subscriber_topics)
        .join(Topic, Topic.id == subscriber_topics.c.topic_id)
        .join(
            Subscriber,
            and_(
                Subscriber.id == subscriber_topics.c.subscriber_id,
                Subscriber.status == SubscriberStatus.ACTIVE,
            ),
        )
        .group_by(Topic.key)
    )
    by_topic.update({key: count for key, count in rows})
    suppressed = suppression_count(session)
    return Stats(by_status, by_topic, suppressed, sum(by_status.values()))


def list_subscribers(
    session: Session,
    *,
    status: str | None = None,
    topic_id: int | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> list[Subscriber]:
    """Subscribers in id order after ``after_id`` (keyset pagination: pass the last id of a page to get
    the next), optionally of one status and following one topic; their topics loaded with them."""
    query = (
        select(Subscriber)
        .where(Subscriber.id > after_id)
        .order_by(Subscriber.id)
        .limit(limit)
        .options(selectinload(Subscriber.topics))
    )
    if status is not None:
        query = query.where(Subscriber.status == status)
    if topic_id is not None:
        followers = select(subscriber_topics.c.subscriber_id).where(subscriber_topics.c.topic_id == topic_id)
        query = query.where(Subscriber.id.in_(followers))
    return list(session.scalars(query))


def search_subscribers(session: Session, text: str, *, limit: int = 20) -> list[Subscriber]:
    """Subscribers whose address or name contains ``text`` (case-insensitive), in id order."""
    needle = text.strip().lower()
    pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = (
        select(Subscriber)
        .where(
            or_(
                Subscriber.email_key.like(pattern, escape="\\"),
                func.lower(Subscriber.name).like(pattern, escape="\\"),
            )
        )
        .order_by(Subscriber.id)
        .limit(limit)
        .options(selectinload(Subscriber.topics))
    )
    return list(session.scalars(query))


def events_of(session: Session, subscriber_id: int, *, limit: int = 200) -> list[SubscriberEvent]:
    """A subscriber's event log, oldest first (the newest ``limit``)."""
    newest = (
        select(SubscriberEvent)
        .where(SubscriberEvent.subscriber_id == subscriber_id)
        .order_by(SubscriberEvent.id.desc())
        .limit(limit)
    )
    return sorted(session.scalars(newest), key=lambda event: event.id)


def created_per_bucket(session: Session, since: datetime, bucket_seconds: int) -> dict[int, int]:
    """Subscribers created since ``since`` per time bucket (unix time // bucket_seconds), whatever their
    status now; with the count before ``since``, the list's growth over time."""
    bucket = func.floor(epoch_seconds(session, Subscriber.created_at) / bucket_seconds)
    rows = session.execute(
        select(bucket, func.count()).where(Subscriber.created_at >= since).group_by(bucket)
    )
    return {int(b): int(n) for b, n in rows}


def count_created_before(session: Session, moment: datetime) -> int:
    return int(session.scalar(select(func.count()).where(Subscriber.created_at < moment)) or 0)
