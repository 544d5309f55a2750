"""The suppression list: addresses no send may ever reach. Service functions shared by the bounce webhook
and the admin; each is an idempotent conditional write that logs an event. The caller commits."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from subscribers.db import utcnow
from subscribers.errors import InvalidInput
from subscribers.events import event_row, record_event, record_events
from subscribers.models import SUPPRESSION_REASONS, Subscriber, Suppression
from subscribers.normalise import normalise_address
from subscribers.states import SUPPRESSION_STATUS, SuppressionReason, sources, target

__all__ = [
    "STATUS_FOR_REASON",
    "is_suppressed",
    "record_soft_bounce",
    "reset_soft_bounces",
    "suppress",
    "unsuppress",
]

SUPPRESSIONS = cast(Table, Suppression.__table__)
SUBSCRIBERS = cast(Table, Subscriber.__table__)

# The status a suppression gives a subscriber with that address (states.py says from which statuses).
STATUS_FOR_REASON: dict[str, str] = {r: target(a) for r, a in SUPPRESSION_STATUS.items()}


def _insert(session: Session):  # type: ignore[no-untyped-def]
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert


def suppress(
    session: Session, email: str, reason: str, *, evidence: str | None = None, now: datetime | None = None
) -> bool:
    """Put an address on the suppression list; True when it was not there yet.

    A matching subscriber's status follows (hard_bounce/soft_bounce_limit -> bounced, complaint ->
    complained, manual -> unsubscribed), and both changes are logged as events.
    """
    if reason not in SUPPRESSION_REASONS:
        raise InvalidInput(f"unknown suppression reason {reason!r}")
    address = normalise_address(email)
    now = now or utcnow()
    # statements on the tables, not the entities: the ORM's bulk paths cost more than the writes (the
    # webhook applies thousands a minute); no loaded Subscriber is changed behind the session's back,
    # since every caller reads statuses afresh
    inserted = session.execute(
        _insert(session)(SUPPRESSIONS)
        .values(email_key=address.key, email=address.email, reason=reason, created_at=now, evidence=evidence)
        .on_conflict_do_nothing(index_elements=["email_key"])
        .returning(SUPPRESSIONS.c.id)
    ).first()
    action = SUPPRESSION_STATUS[SuppressionReason(reason)]
    status = target(action)
    changed = session.execute(
        update(SUBSCRIBERS)
        .where(SUBSCRIBERS.c.email_key == address.key, SUBSCRIBERS.c.status.in_(sources(action)))
        .values(status=status, changed_at=now)
        .returning(SUBSCRIBERS.c.id)
    ).first()
    subscriber_id = (
        changed[0]
        if changed
        else session.scalar(select(Subscriber.id).where(Subscriber.email_key == address.key))
    )
    detail = {"reason": reason, "evidence": evidence}
    # the event kinds are named after the statuses they lead to
    kinds = (["suppressed"] if inserted else []) + ([str(status)] if changed else [])
    record_events(
        session,
        [
            event_row(subscriber_id, address.key, kind, source=reason, detail=detail, now=now)
            for kind in kinds
        ],
    )
    return inserted is not None


def is_suppressed(session: Session, email: str) -> bool:
    key = normalise_address(email).key
    return bool(session.scalar(select(exists().where(Suppression.email_key == key))))


def record_soft_bounce(
    session: Session, email: str, *, limit: int, evidence: str | None = None, now: datetime | None = None
) -> bool:
    """Count a soft bounce; True when this one reached ``limit`` and the address got suppressed."""
    address = normalise_address(email)
    now = now or utcnow()
    row = session.execute(
        update(Subscriber)
        .where(Subscriber.email_key == address.key)
        .values(soft_bounces=Subscriber.soft_bounces + 1)
        .returning(Subscriber.id, Subscriber.soft_bounces)
    ).first()
    if row is None:
        return False
    subscriber_id, count = row
    record_event(
        session,
        subscriber_id,
        address.key,
        "soft_bounce",
        source="feedback",
        detail={"count": count, "evidence": evidence},
        now=now,
    )
    if count >= limit:
        return suppress(session, address.email, "soft_bounce_limit", evidence=evidence, now=now)
    return False


def reset_soft_bounces(session: Session, subscriber_id: int) -> None:
    """A delivery went through: soft bounces only count when they come in a row."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id, Subscriber.soft_bounces != 0)
        .values(soft_bounces=0)
    )


def unsuppress(session: Session, email: str, *, source: str = "admin", now: datetime | None = None) -> bool:
    """Take an address off the list (an admin's decision, logged); its status is left as it is."""
    address = normalise_address(email)
    row = session.scalar(select(Suppression).where(Suppression.email_key == address.key))
    if row is None:
        return False
    session.delete(row)
    subscriber_id = session.scalar(select(Subscriber.id).where(Subscriber.email_key == address.key))
    record_event(
        session,
        subscriber_id,
        address.key,
        "unsuppressed",
        source=source,
        detail={"was": row.reason},
        now=now,
    )
    return True
