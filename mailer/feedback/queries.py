"""The SQL feedback runs, in one place: its own table of raw messages (what is stored already, a group's
rows inserted skipping any whose MessageId or feedback id is taken), the facts about a subscriber a
change's note tells (id, status, soft-bounce count, by address), and the ledger rows feedback is about
(by SES message id). Changes to subscribers go through subscribers' own functions, not through here.
Unit-of-work functions: they take a Session and never commit."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Row, Table, or_, select
from sqlalchemy.orm import Session

from mailer.feedback.models import FeedbackMessage
from mailer.sending.models import Delivery
from subscribers.bulk import insert_rows
from subscribers.models import Subscriber
from subscribers.normalise import email_key

__all__ = [
    "Stored",
    "deliveries_by_message",
    "insert_messages",
    "message_row",
    "soft_bounces",
    "stored_messages",
    "subscriber_id",
    "subscriber_status",
]

# statements on the table, not the entity: the ORM's bulk paths cost more than the writes themselves
MESSAGES = cast(Table, FeedbackMessage.__table__)


def message_row(
    *,
    key: str,
    kind: str,
    topic_arn: str | None,
    verified: bool,
    raw: str,
    feedback_id: str | None,
    now: dt.datetime,
    outcome: object = None,
) -> dict[str, Any]:
    """A raw message's row (``outcome``, what it did, as JSON), its strings cut to their columns."""
    return {
        "message_id": key[:200],
        "feedback_id": feedback_id[:200] if feedback_id else None,
        "kind": kind[:40],
        "topic_arn": topic_arn[:256] if topic_arn else None,
        "verified": verified,
        "received_at": now,
        "body": raw,
        "outcome": json.dumps(outcome, ensure_ascii=False) if outcome is not None else None,
    }


def insert_messages(session: Session, rows: Sequence[dict[str, Any]]) -> int:
    """Insert raw messages; a row whose MessageId or feedback id is stored already is skipped. How many
    were inserted."""
    return len(insert_rows(session, MESSAGES, rows, skip_conflicts=True, returning="id"))


@dataclass(frozen=True)
class Stored:
    """Which of some messages are stored already: by MessageId, by SES feedback id."""

    message_ids: set[str] = field(default_factory=set)
    feedback_ids: set[str] = field(default_factory=set)


def stored_messages(session: Session, message_ids: Collection[str], feedback_ids: Collection[str]) -> Stored:
    """The messages stored under any of these MessageIds or feedback ids."""
    found = Stored()
    rows = session.execute(
        select(MESSAGES.c.message_id, MESSAGES.c.feedback_id).where(
            or_(MESSAGES.c.message_id.in_(set(message_ids)), MESSAGES.c.feedback_id.in_(set(feedback_ids)))
        )
    )
    for message_id, feedback_id in rows:
        found.message_ids.add(message_id)
        if feedback_id:
            found.feedback_ids.add(feedback_id)
    return found


def subscriber_id(session: Session, email: str) -> int | None:
    return session.scalar(select(Subscriber.id).where(Subscriber.email_key == email_key(email)))


def subscriber_status(session: Session, email: str) -> str | None:
    return session.scalar(select(Subscriber.status).where(Subscriber.email_key == email_key(email)))


def soft_bounces(session: Session, subscriber: int) -> int:
    return session.scalar(select(Subscriber.soft_bounces).where(Subscriber.id == subscriber)) or 0


DeliveryRow = Row[int, int, str, str, str | None]  # id, campaign_id, email, status, message_id


def deliveries_by_message(session: Session, message_ids: Collection[str]) -> dict[str, list[DeliveryRow]]:
    """The ledger rows sent as these SES messages (id, campaign_id, email, status, message_id), by id."""
    found: dict[str, list[DeliveryRow]] = {}
    for delivery in session.execute(
        select(Delivery.id, Delivery.campaign_id, Delivery.email, Delivery.status, Delivery.message_id).where(
            Delivery.message_id.in_(sorted(set(message_ids)))
        )
    ):
        found.setdefault(delivery.message_id, []).append(delivery)
    return found
