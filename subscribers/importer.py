"""Streaming CSV import: rows are read, validated and applied in chunks of a few thousand with bulk
statements (no ORM objects), so memory stays flat for millions of rows.

Re-importing updates and never duplicates (the unique address key decides). Empty cells keep what is
stored. An existing subscriber's status only moves from pending to active (when the import says active);
unsubscribed, bounced and complained stay, and a suppressed address is never made active. Each chunk is
one transaction (subscribers, topics and events together) and is committed, so an import interrupted
half-way leaves whole chunks only, and running it again finishes the job.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import Connection, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from subscribers.csvreader import CsvRow, ReadState, Reject, read_rows
from subscribers.errors import InvalidInput
from subscribers.models import STATUSES, Subscriber, Topic
from subscribers.normalise import DEFAULT_LOCALE
from subscribers.states import ImportStatus, import_status
from subscribers.suppression import STATUS_FOR_REASON

__all__ = ["ImportReport", "import_csv_stepwise"]

CHUNK_SIZE = 10_000  # rows per transaction: bigger cost memory, smaller cost statements and commits
IMPORT_CACHE_KB = 16 * 1024  # SQLite page cache of the importing connection, while it imports
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
        self._sets: dict[tuple[str, ...], frozenset[int]] = {}

    def id(self, name: str) -> int | None:
        if name not in self._cache:
            key = self._resolve(name) if self._resolve else None
            key = key or self._names.get(name.strip().casefold())
            self._cache[name] = self._ids.get(key) if key else None
        return self._cache[name]

    def ids(self, names: tuple[str, ...]) -> frozenset[int]:
        """The ids of a row's topic names (cached per distinct tuple: a list has few combinations)."""
        found = self._sets.get(names)
        if found is None:
            found = self._sets[names] = self._ids_of(names)
        return found

    def _ids_of(self, names: Iterable[str]) -> frozenset[int]:
        found = set()
        for name in names:
            topic_id = self.id(name)
            if topic_id is None:
                raise InvalidInput(f"unknown topic {name!r}")
            found.add(topic_id)
        return frozenset(found)


def import_csv_stepwise(
    sessions: sessionmaker[Session],
    stream: BinaryIO,
    *,
    topics: Collection[str] = (),
    status: str = ImportStatus.ACTIVE,
    default_locale: str = DEFAULT_LOCALE,
    resolve_topic: TopicResolver | None = None,
    on_reject: Callable[[Reject], None] | None = None,
    on_header: Callable[[tuple[str, ...]], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = CHUNK_SIZE,
    source: str = "import",
    now: datetime,
) -> ImportReport:
    """Import a subscriber CSV (columns email, name, topics, locale, status; a header row is required).

    ``topics`` are added to every row's topics; ``status`` is given to new subscribers whose row has no
    status. ``resolve_topic`` maps a name written in the file to a topic key (None: unknown); topics are
    also found by key and name in the topic table. ``progress(rows, bytes_read)`` is called per chunk;
    ``on_reject`` gets each rejected row. Commits per chunk (``chunk_size`` rows), so an interrupted
    import keeps the chunks before. InvalidInput for a file that cannot be imported at all (no header, no
    email column, UTF-16, unknown ``topics``, a ``status`` that is no ImportStatus).
    """
    default_status = import_status(status).value  # a plain str for the bulk statements
    with sessions() as session:
        topic_map = _Topics(session, resolve_topic)
        extra_topics = topic_map.ids(tuple(topics))
        report = ImportReport()
        state: list[ReadState] = []

        def reject(item: Reject) -> None:
            report.rejected += 1
            if on_reject:
                on_reject(item)

        chunk: dict[str, tuple[CsvRow, frozenset[int] | None]] = {}

        def flush() -> None:
            if chunk:
                _apply(
                    session, list(chunk.values()), extra_topics, default_status, default_locale, source, now,
                    report,
                )  # fmt: skip
                session.commit()
                chunk.clear()
            if progress:
                progress(report.rows, state[0].lines.bytes_read if state else 0)

        # The loop allocates millions of short-lived, acyclic objects: collecting them in generation 0
        # every 700 allocations cost a fifth of the import time.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
        sqlite = session.get_bind().dialect.name == "sqlite"
        if sqlite:  # the unique-address index is probed for every row: keep it in memory, not in 2 MB
            previous_cache = session.connection().exec_driver_sql("PRAGMA cache_size").scalar()
            session.connection().exec_driver_sql(f"PRAGMA cache_size = -{IMPORT_CACHE_KB}")
        try:
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
        finally:
            gc.set_threshold(*thresholds)
            if (
                sqlite
            ):  # after a failed chunk the session may refuse statements: the pool's setting then stays
                with contextlib.suppress(SQLAlchemyError):
                    session.connection().exec_driver_sql(
                        f"PRAGMA cache_size = {int(previous_cache or -2000)}"
                    )
        if state:
            report.encoding = state[0].lines.encoding or "ascii"
        return report


class _Sql:
    """Plain SQL through the DB-API for the bulk statements: with thousands of rows per statement,
    SQLAlchemy's per-row parameter processing cost more than the database did. Values are prepared
    once per chunk: the timestamp goes through the column type's own bind processor."""

    def __init__(self, connection: Connection, now: datetime) -> None:
        self.connection = connection
        self.mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        column_type = Subscriber.__table__.c.created_at.type
        process = column_type.dialect_impl(connection.dialect).bind_processor(connection.dialect)
        self.now = process(now) if process else now

    def marks(self, count: int) -> str:
        return ", ".join([self.mark] * count)

    def run(self, sql: str, *parameters: Any) -> list[Any]:
        result = self.connection.exec_driver_sql(sql.replace("?", self.mark), parameters)
        return list(result.all()) if result.returns_rows else []

    def load(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Bulk-load rows into a table: COPY on PostgreSQL (one round trip), executemany elsewhere."""
        if self.connection.dialect.name == "postgresql":
            cursor = self.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            # a temporary table has no statistics: without them the joins below scan all subscribers
            cursor.execute(f"ANALYZE {table}")
            return
        self.many(f"INSERT INTO {table} VALUES ({self.marks(len(rows[0]))})", rows)

    def many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.connection.exec_driver_sql(sql.replace("?", self.mark), rows)

    def where_in(self, sql: str, values: list[Any], *before: Any) -> list[Any]:
        """``sql`` with its ``IN (?)`` expanded to one marker per value; ``before``: earlier parameters."""
        if not values:
            return []
        if self.connection.dialect.name == "postgresql":  # one array parameter: planned in no time
            text = sql.replace("IN (?)", "= ANY(@)").replace("?", self.mark).replace("@", self.mark)
            return list(self.connection.exec_driver_sql(text, (*before, list(values))))
        text = sql.replace("IN (?)", "IN (@)").replace("?", self.mark).replace("@", self.marks(len(values)))
        return list(self.connection.exec_driver_sql(text, (*before, *values)))


_DETAIL = {status: json.dumps({"status": status}) for status in STATUSES}


def _apply(
    session: Session,
    rows: list[tuple[CsvRow, frozenset[int] | None]],
    extra_topics: frozenset[int],
    default_status: str,
    default_locale: str,
    source: str,
    now: datetime,
    report: ImportReport,
) -> None:
    sql = _Sql(session.connection(), now)
    known = _Known.read(sql, [row.key for row, _ in rows])
    chunk = _Chunk(sql, known, extra_topics, default_status, default_locale, source[:32])
    for row, row_topics in rows:
        old = known.existing.get(row.key)
        if old is None:
            chunk.add(row, row_topics)
        elif chunk.update(row, row_topics, old):
            report.updated += 1
        else:
            report.unchanged += 1
    chunk.write(report)


@dataclass
class _Known:
    """What the database holds of a chunk's addresses: their rows, suppressions and followed topics."""

    existing: dict[str, tuple[Any, ...]]  # email_key -> (id, email_key, email, name, locale, status)
    suppressed: dict[str, str]  # email_key -> reason
    followed: dict[int, set[int]]  # subscriber id -> topic ids

    @classmethod
    def read(cls, sql: _Sql, keys: list[str]) -> _Known:
        existing = {
            r[1]: tuple(r)
            for r in sql.where_in(
                "SELECT id, email_key, email, name, locale, status FROM subscribers WHERE email_key IN (?)",
                keys,
            )
        }
        suppressed = dict(
            sql.where_in("SELECT email_key, reason FROM suppressions WHERE email_key IN (?)", keys)
        )
        followed: dict[int, set[int]] = {}
        for sid, tid in sql.where_in(
            "SELECT subscriber_id, topic_id FROM subscriber_topics WHERE subscriber_id IN (?)",
            [r[0] for r in existing.values()],
        ):
            followed.setdefault(sid, set()).add(tid)
        return cls(existing, suppressed, followed)


@dataclass
class _Chunk:
    """The writes a chunk of rows asks for, gathered per statement and written together."""

    sql: _Sql
    known: _Known
    extra_topics: frozenset[int]
    default_status: str
    default_locale: str
    source: str
    new_rows: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    confirmed: list[tuple[Any, ...]] = field(default_factory=list)
    topic_adds: list[tuple[int, int]] = field(default_factory=list)
    topic_removes: list[tuple[int, int]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    arrays: dict[frozenset[int], str] = field(default_factory=dict)  # topic ids -> their JSON, made once

    def add(self, row: CsvRow, row_topics: frozenset[int] | None) -> None:
        """A new subscriber (a suppressed address gets the status its suppression says)."""
        status = row.status or self.default_status
        if row.key in self.known.suppressed:
            status = STATUS_FOR_REASON[self.known.suppressed[row.key]]
        ids = (row_topics or frozenset()) | self.extra_topics
        if (array := self.arrays.get(ids)) is None:
            array = self.arrays[ids] = str(sorted(ids))  # "[1, 5]": JSON for json_each / jsonb
        self.new_rows.append((row.email, row.key, row.name, row.locale or self.default_locale, status, array))

    def update(self, row: CsvRow, row_topics: frozenset[int] | None, old: tuple[Any, ...]) -> bool:
        """A known subscriber: what the row changes (empty cells keep what is stored; only pending may
        become active); False when it changes nothing."""
        old_id, _, _, old_name, old_locale, old_status = old
        changes: dict[str, Any] = {}  # the address keeps the spelling it was first stored with
        if row.name is not None and row.name != old_name:
            changes["name"] = row.name
        if row.locale is not None and row.locale != old_locale:
            changes["locale"] = row.locale
        activate = (row.status or self.default_status) == "active" and row.key not in self.known.suppressed
        if old_status == "pending" and activate:
            changes["status"] = "active"
        have = self.known.followed.get(old_id, set())
        want = (row_topics if row_topics is not None else frozenset(have)) | self.extra_topics
        added, removed = want - have, have - want
        if not changes and not added and not removed:
            return False
        now = self.sql.now
        self.topic_adds += [(old_id, t) for t in added]
        self.topic_removes += [(old_id, t) for t in removed]
        self.updates.append(
            (
                changes.get("name", old_name),
                changes.get("locale", old_locale),
                changes.get("status", old_status),
                now,
                old_id,
            )
        )
        detail: dict[str, Any] = dict(changes)
        if added or removed:
            detail["topics_added"] = sorted(added)
            detail["topics_removed"] = sorted(removed)
        self.events.append(
            (old_id, row.key, "updated", self.source, json.dumps(detail, ensure_ascii=False), now)
        )
        if "status" in changes:
            self.confirmed.append((now, old_id))
            self.events.append((old_id, row.key, "confirmed", self.source, None, now))
        return True

    def write(self, report: ImportReport) -> None:
        sql = self.sql
        if self.new_rows:
            _insert_new(sql, self.new_rows, self.source, report)
        sql.many(
            "UPDATE subscribers SET name = ?, locale = ?, status = ?, changed_at = ? WHERE id = ?",
            self.updates,
        )
        sql.many("UPDATE subscribers SET confirmed_at = ? WHERE id = ?", self.confirmed)
        sql.many("DELETE FROM subscriber_topics WHERE subscriber_id = ? AND topic_id = ?", self.topic_removes)
        sql.many("INSERT INTO subscriber_topics (subscriber_id, topic_id) VALUES (?, ?)", self.topic_adds)
        sql.many(
            "INSERT INTO subscriber_events (subscriber_id, email_key, kind, source, detail, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            self.events,
        )


def _insert_new(sql: _Sql, rows: list[tuple[Any, ...]], source: str, report: ImportReport) -> None:
    """New subscribers, their topics and their "subscribed" events: the rows go into a temporary table
    in one executemany, and three set-based statements fan them out, so Python binds each row once."""
    sql.run(
        "CREATE TEMPORARY TABLE IF NOT EXISTS import_rows (email VARCHAR(320), email_key VARCHAR(320),"
        " name VARCHAR(200), locale VARCHAR(8), status VARCHAR(16), topics TEXT)"
    )
    sql.run("DELETE FROM import_rows")
    sql.load("import_rows", rows)
    # WHERE true: SQLite's parser needs it between INSERT ... SELECT and ON CONFLICT
    sql.run(
        "INSERT INTO subscribers (email, email_key, name, locale, status, created_at, confirmed_at,"
        " changed_at, source, soft_bounces) SELECT email, email_key, name, locale, status, ?,"
        " CASE WHEN status = 'active' THEN ? END, ?, ?, 0 FROM import_rows WHERE true"
        " ON CONFLICT (email_key) DO NOTHING",
        sql.now,
        sql.now,
        sql.now,
        source,
    )
    # ours: inserted just now (an address a concurrent signup took meanwhile has another created_at)
    ours = "FROM import_rows r JOIN subscribers s ON s.email_key = r.email_key AND s.created_at = ?"
    if sql.connection.dialect.name == "postgresql":
        topics = f"{ours} CROSS JOIN LATERAL jsonb_array_elements_text(r.topics::jsonb) AS j(value)"
        topic_id = "j.value::int"
    else:
        topics, topic_id = f"{ours} JOIN json_each(r.topics) j", "j.value"
    sql.run(
        f"INSERT INTO subscriber_topics (subscriber_id, topic_id) SELECT s.id, {topic_id} {topics}", sql.now
    )
    sql.run(
        "INSERT INTO subscriber_events (subscriber_id, email_key, kind, source, detail, created_at)"
        f" SELECT s.id, s.email_key, 'subscribed', ?, '{{\"status\": \"' || s.status || '\"}}', ? {ours}",
        source,
        sql.now,
        sql.now,
    )
    added = 0
    for status, count in sql.run(f"SELECT s.status, count(*) {ours} GROUP BY s.status", sql.now):
        report.by_status[status] = report.by_status.get(status, 0) + count
        added += count
    report.added += added
    report.unchanged += len(rows) - added  # taken meanwhile by a concurrent signup: left as it is
