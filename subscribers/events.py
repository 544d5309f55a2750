"""Writing the append-only event log. Every change of a subscriber goes through ``record_event``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from subscribers.bulk import insert_rows
from subscribers.models import SubscriberEvent

__all__ = ["event_row", "record_event", "record_events"]

EVENTS = cast(Table, SubscriberEvent.__table__)
_INSERT = insert(EVENTS)


def event_row(
    subscriber_id: int | None,
    email_key: str,
    kind: str,
    *,
    source: str,
    detail: Mapping[str, Any] | None = None,
    now: datetime,
) -> dict[str, Any]:
    return {
        "subscriber_id": subscriber_id,
        "email_key": email_key,
        "kind": kind,
        "source": source[:32],
        "detail": json.dumps(detail, ensure_ascii=False, sort_keys=True, default=str) if detail else None,
        "created_at": now,
    }


def record_event(
    session: Session,
    subscriber_id: int | None,
    email_key: str,
    kind: str,
    *,
    source: str,
    detail: Mapping[str, Any] | None = None,
    now: datetime,
) -> None:
    # on the table, not the entity (the ORM's bulk-insert path costs more than the insert itself), and
    # one statement built once: ``.values(row)`` per call cost as much again
    session.execute(_INSERT, event_row(subscriber_id, email_key, kind, source=source, detail=detail, now=now))


def record_events(session: Session, rows: list[dict[str, Any]]) -> None:
    """Many rows from ``event_row`` in one statement."""
    insert_rows(session, EVENTS, rows)
