"""Streaming CSV import: rows are read, validated and applied in chunks of a few thousand with bulk
statements (no ORM objects), so memory stays flat for millions of rows.

Re-importing updates and never duplicates (the unique address key decides). Empty cells keep what is
stored. An existing subscriber's status only moves from pending to active (when the import says active);
unsubscribed, bounced and complained stay, and a suppressed address is never made active. Each chunk is
one transaction (subscribers, topics and events together) and is committed, so an import interrupted
half-way leaves whole chunks only, and running it again finishes the job.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import Connection, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from subscribers.csvreader import CsvRow, ReadState, Reject, read_rows
from subscribers.db import utcnow
from subscribers.errors import InvalidInput
from subscribers.events import event_row
from subscribers.models import Subscriber, SubscriberEvent, Suppression, Topic, subscriber_topics
from subscribers.normalise import DEFAULT_LOCALE
from subscribers.suppression import STATUS_FOR_REASON

__all__ = ["ImportReport", "import_csv"]

CHUNK_SIZE = 5000
TopicResolver = Callable[[str], str | None]


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rows: int = 0  # data rows read (blank rows not counted)
    encoding: str = "ascii"
    columns: tuple[str, ...] = ()
    by_status: dict[str, int] = field(default_factory=dict)  # status of the added subscribers


class _Topics:
    """Topic names -> ids, resolved once per distinct spelling."""

    def __init__(self, session: Session, resolve: TopicResolver | None) -> None:
        self._ids = {key: id_ for key, id_ in session.execute(select(Topic.key, Topic.id))}
        names: dict[str, str] = {}
        for key, name, name_zh in session.execute(select(Topic.key, Topic.name, Topic.name_zh)):
            for spelling in (key, name, name_zh):
                if spelling:
                    names.setdefault(spelling.strip().casefold(), key)
        self._names = names
        self._resolve = resolve
        self._cache: dict[str, int | None] = {}

    def id(self, name: str) -> int | None:
        if name not in self._cache:
            key = self._resolve(name) if self._resolve else None
            key = key or self._names.get(name.strip().casefold())
            self._cache[name] = self._ids.get(key) if key else None
        return self._cache[name]

    def ids(self, names: Iterable[str]) -> frozenset[int]:
        found = set()
        for name in names:
            topic_id = self.id(name)
            if topic_id is None:
                raise InvalidInput(f"unknown topic {name!r}")
            found.add(topic_id)
        return frozenset(found)

    def keys(self, ids: Iterable[int]) -> list[str]:
        by_id = {v: k for k, v in self._ids.items()}
        return sorted(by_id[i] for i in ids)


def _insert(connection: Connection):  # type: ignore[no-untyped-def]
    return (postgresql if connection.dialect.name == "postgresql" else sqlite).insert


def import_csv(
    session: Session,
    stream: BinaryIO,
    *,
    topics: Collection[str] = (),
    status: str = "active",
    default_locale: str = DEFAULT_LOCALE,
    resolve_topic: TopicResolver | None = None,
    on_reject: Callable[[Reject], None] | None = None,
    on_header: Callable[[tuple[str, ...]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
    source: str = "import",
    now: datetime | None = None,
) -> ImportReport:
    """Import a subscriber CSV (columns email, name, topics, locale, status; a header row is required).

    ``topics`` are added to every row's topics; ``status`` is given to new subscribers whose row has no
    status. ``resolve_topic`` maps a name written in the file to a topic key (None: unknown); topics are
    also found by key and name in the topic table. ``progress(rows, bytes_read)`` is called per chunk;
    ``on_reject`` gets each rejected row. Commits per chunk. InvalidInput for a file that cannot be
    imported at all (no header, no email column, UTF-16, unknown ``topics``).
    """
    if status not in ("active", "pending"):
        raise InvalidInput(f"--status must be active or pending, not {status!r}")
    topic_map = _Topics(session, resolve_topic)
    extra_topics = topic_map.ids(topics)
    report = ImportReport()
    state: list[ReadState] = []

    def reject(item: Reject) -> None:
        report.rejected += 1
        if on_reject:
            on_reject(item)

    chunk: dict[str, tuple[CsvRow, frozenset[int] | None]] = {}

    def flush() -> None:
        if chunk:
            _apply(session, list(chunk.values()), extra_topics, status, default_locale, source, now, report)
            session.commit()
            chunk.clear()
        if progress:
            progress(report.rows, state[0].lines.bytes_read if state else 0)

    for item in read_rows(stream, on_state=state.append):
        if not report.columns and state:
            report.columns = tuple(sorted(state[0].columns))
            if on_header:
                on_header(state[0].header)
        report.rows += 1
        if isinstance(item, Reject):
            reject(item)
            continue
        try:
            row_topics = topic_map.ids(item.topics) if item.topics is not None else None
        except InvalidInput as exc:
            reject(Reject(item.line, str(exc), item.fields))
            continue
        if item.key in chunk:  # the same address twice in a file: apply in order
            flush()
        chunk[item.key] = (item, row_topics)
        if len(chunk) >= chunk_size:
            flush()
    flush()
    if state:
        report.encoding = state[0].lines.encoding or "ascii"
    return report


def _apply(
    session: Session,
    rows: list[tuple[CsvRow, frozenset[int] | None]],
    extra_topics: frozenset[int],
    default_status: str,
    default_locale: str,
    source: str,
    now: datetime | None,
    report: ImportReport,
) -> None:
    connection = session.connection()
    now = now or utcnow()
    keys = [row.key for row, _ in rows]
    existing = {
        r.email_key: r
        for r in connection.execute(
            select(
                Subscriber.id,
                Subscriber.email_key,
                Subscriber.email,
                Subscriber.name,
                Subscriber.locale,
                Subscriber.status,
            ).where(Subscriber.email_key.in_(keys))
        )
    }
    suppressed = dict(
        connection.execute(
            select(Suppression.email_key, Suppression.reason).where(Suppression.email_key.in_(keys))
        ).all()
    )
    followed: dict[int, set[int]] = {}
    if existing:
        for sid, tid in connection.execute(
            select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
                subscriber_topics.c.subscriber_id.in_([r.id for r in existing.values()])
            )
        ):
            followed.setdefault(sid, set()).add(tid)

    new_rows: list[dict[str, Any]] = []
    new_topics: dict[str, frozenset[int]] = {}
    updates: list[dict[str, Any]] = []
    topic_adds: list[dict[str, int]] = []
    topic_removes: list[dict[str, int]] = []
    events: list[dict[str, Any]] = []
    for row, row_topics in rows:
        old = existing.get(row.key)
        if old is None:
            status = row.status or default_status
            if row.key in suppressed:
                status = STATUS_FOR_REASON[suppressed[row.key]]
            new_rows.append(
                {
                    "email": row.email,
                    "email_key": row.key,
                    "name": row.name,
                    "locale": row.locale or default_locale,
                    "status": status,
                    "created_at": now,
                    "confirmed_at": now if status == "active" else None,
                    "changed_at": now,
                    "source": source[:32],
                    "soft_bounces": 0,
                }
            )
            new_topics[row.key] = (row_topics or frozenset()) | extra_topics
            continue
        changes: dict[str, Any] = {}  # the address keeps the spelling it was first stored with
        if row.name is not None and row.name != old.name:
            changes["name"] = row.name
        if row.locale is not None and row.locale != old.locale:
            changes["locale"] = row.locale
        if (
            old.status == "pending"
            and (row.status or default_status) == "active"
            and row.key not in suppressed
        ):
            changes["status"] = "active"
        have = followed.get(old.id, set())
        want = (row_topics if row_topics is not None else frozenset(have)) | extra_topics
        added, removed = want - have, have - want
        if not changes and not added and not removed:
            report.unchanged += 1
            continue
        report.updated += 1
        topic_adds += [{"s": old.id, "t": t} for t in added]
        topic_removes += [{"s": old.id, "t": t} for t in removed]
        updates.append(
            {
                "b_id": old.id,
                "b_name": changes.get("name", old.name),
                "b_locale": changes.get("locale", old.locale),
                "b_status": changes.get("status", old.status),
                "b_confirmed": now if "status" in changes else None,
                "b_now": now,
            }
        )
        detail: dict[str, Any] = dict(changes)
        if added or removed:
            detail["topics_added"] = sorted(added)
            detail["topics_removed"] = sorted(removed)
        events.append(event_row(old.id, row.key, "updated", source=source, detail=detail, now=now))
        if "status" in changes:
            events.append(event_row(old.id, row.key, "confirmed", source=source, now=now))

    if new_rows:
        inserted = connection.execute(
            _insert(connection)(Subscriber)
            .on_conflict_do_nothing(index_elements=["email_key"])
            .returning(Subscriber.id, Subscriber.email_key, Subscriber.status),
            new_rows,
        ).all()
        report.added += len(inserted)
        report.unchanged += len(new_rows) - len(inserted)  # taken meanwhile by a concurrent signup
        for sid, key, status in inserted:
            report.by_status[status] = report.by_status.get(status, 0) + 1
            topic_adds += [{"s": sid, "t": t} for t in new_topics[key]]
            events.append(
                event_row(sid, key, "subscribed", source=source, detail={"status": status}, now=now)
            )
    if updates:
        connection.execute(
            update(Subscriber)
            .where(Subscriber.id == bindparam("b_id"))
            .values(
                name=bindparam("b_name"),
                locale=bindparam("b_locale"),
                status=bindparam("b_status"),
                changed_at=bindparam("b_now"),
            ),
            updates,
        )
        confirmed = [u for u in updates if u["b_confirmed"] is not None]
        if confirmed:
            connection.execute(
                update(Subscriber)
                .where(Subscriber.id == bindparam("b_id"))
                .values(confirmed_at=bindparam("b_confirmed")),
                [{"b_id": u["b_id"], "b_confirmed": u["b_confirmed"]} for u in confirmed],
            )
    if topic_removes:
        connection.execute(
            delete(subscriber_topics).where(
                subscriber_topics.c.subscriber_id == bindparam("s"),
                subscriber_topics.c.topic_id == bindparam("t"),
            ),
            topic_removes,
        )
    if topic_adds:
        connection.execute(
            insert(subscriber_topics).values(subscriber_id=bindparam("s"), topic_id=bindparam("t")),
            topic_adds,
        )
    if events:
        connection.execute(insert(SubscriberEvent), events)
