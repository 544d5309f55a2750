"""Streaming CSV export in the import's own format, so an export imports back to the same subscribers."""

from __future__ import annotations

import csv
from collections.abc import Collection
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from subscribers.errors import InvalidInput
from subscribers.models import STATUSES, Subscriber, Topic, subscriber_topics
from subscribers.store import engine_of

__all__ = ["EXPORT_COLUMNS", "export_csv", "neutralise_formula", "restore_formula"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(cell: str) -> str:
    """``'=SUM(A1)`` for ``=SUM(A1)``: shown as text by spreadsheets, not evaluated (CSV injection)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def restore_formula(cell: str) -> str:
    """The inverse of ``neutralise_formula``, for cells read back by the importer."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS) else cell


EXPORT_COLUMNS = ("email", "name", "topics", "locale", "status", "created_at", "confirmed_at", "source")
_BATCH = 2000


def export_csv(
    session: Session, out: TextIO, *, statuses: Collection[str] | None = None, raw: bool = False
) -> int:
    """Write subscribers (all, or those with one of ``statuses``) in id order; returns how many.

    A cell a spreadsheet would take for a formula (starting ``= + - @``, a tab or a carriage return:
    a name like ``=HYPERLINK(...)`` typed into a signup form) gets a leading ``'`` unless ``raw``; the
    importer takes that quote off again, so an export still imports back to the same subscribers."""
    wanted = tuple(statuses or ())
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise InvalidInput(f"unknown status {unknown[0]!r} (one of {', '.join(STATUSES)})")
    keys = dict(session.execute(select(Topic.id, Topic.key)).all())
    query = select(
        Subscriber.id,
        Subscriber.email,
        Subscriber.name,
        Subscriber.locale,
        Subscriber.status,
        Subscriber.created_at,
        Subscriber.confirmed_at,
        Subscriber.source,
    ).order_by(Subscriber.id)
    if wanted:
        query = query.where(Subscriber.status.in_(wanted))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    with engine_of(session).connect() as connection:
        result = connection.execution_options(stream_results=True, max_row_buffer=_BATCH).execute(query)
        while rows := result.fetchmany(_BATCH):
            followed: dict[int, list[str]] = {}
            for sid, tid in connection.execute(
                select(subscriber_topics.c.subscriber_id, subscriber_topics.c.topic_id).where(
                    subscriber_topics.c.subscriber_id.between(rows[0][0], rows[-1][0])
                )
            ):
                followed.setdefault(sid, []).append(keys[tid])
            for sid, email, name, locale, status, created, confirmed, source in rows:
                topics = ";".join(sorted(followed.get(sid, ())))
                cells = (email, name or "", topics, locale, status, _time(created), _time(confirmed), source)
                writer.writerow(cells if raw else tuple(map(neutralise_formula, cells)))
            count += len(rows)
    return count


def _time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else ""
