"""The suppression list: addresses no send may ever reach. Service functions shared by the bounce webhook
and the admin; each is an idempotent conditional write that logs an event. The caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, exists, func, select, update
from sqlalchemy.orm import Session

from subscribers.bulk import insert_rows
from subscribers.db import epoch_seconds
from subscribers.errors import InvalidInput
from subscribers.events import event_row, record_event, record_events
from subscribers.models import SUPPRESSION_REASONS, Subscriber, Suppression
from subscribers.normalise import normalise_address
from subscribers.states import SUPPRESSION_STATUS, SuppressionReason, sources, target

__all__ = [
    "STATUS_FOR_REASON",
    "is_suppressed",
    "list_suppressions",
    "record_soft_bounce",
    "reset_soft_bounces",
    "Suppressed",
    "suppress",
    "suppress_many",
    "suppressions_per_bucket",
    "unsuppress",
]

SUPPRESSIONS = cast(Table, Suppression.__table__)
SUBSCRIBERS = cast(Table, Subscriber.__table__)

# The status a suppression gives a subscriber with that address (states.py says from which statuses).
STATUS_FOR_REASON: dict[str, str] = {r: target(a) for r, a in SUPPRESSION_STATUS.items()}


@dataclass(frozen=True)
class Suppressed:
    """What suppressing one address did."""

    email_key: str
    new: bool  # it was not on the list yet
    changed: bool  # a subscriber's status changed
    status: str | None  # the subscriber's status now; None: nobody subscribes with this address


def suppress(
    session: Session, email: str, reason: str, *, evidence: str | None = None, now: datetime
) -> bool:
    """Put an address on the suppression list; True when it was not there yet.

    A matching subscriber's status follows (hard_bounce/soft_bounce_limit -> bounced, complaint ->
    complained, manual -> unsubscribed), and both changes are logged as events.
    """
    return suppress_many(session, [(email, reason, evidence)], now=now)[0].new


def suppress_many(
    session: Session, items: Sequence[tuple[str, str, str | None]], *, now: datetime
) -> list[Suppressed]:
    """``suppress`` for many ``(email, reason, evidence)`` at once, in a few statements whatever their
    number (the webhook applies notifications in batches); one answer per item, in order. An address
    named twice is suppressed by its first item."""
    wanted: dict[str, tuple[str, str, str | None]] = {}  # key -> (email, reason, evidence), first wins
    keys = []
    for email, reason, evidence in items:
        if reason not in SUPPRESSION_REASONS:
            raise InvalidInput(f"unknown suppression reason {reason!r}")
        address = normalise_address(email)
        keys.append(address.key)
        wanted.setdefault(address.key, (address.email, reason, evidence))
    if not wanted:
        return []
    # statements on the tables, not the entities: the ORM's bulk paths cost more than the writes; no
    # loaded Subscriber is changed behind the session's back, since every caller reads statuses afresh
    ordered = sorted(wanted)  # one lock order for every batch
    entries = [
        {
            "email_key": k,
            "email": wanted[k][0],
            "reason": wanted[k][1],
            "created_at": now,
            "evidence": wanted[k][2],
        }
        for k in ordered
    ]
    inserted = set(insert_rows(session, SUPPRESSIONS, entries, skip_conflicts=True, returning="email_key"))
    changed = _follow_statuses(session, wanted, ordered, now)
    current = _statuses_now(session, changed, ordered)
    events = []
    for key in ordered:
        _, reason, evidence = wanted[key]
        subscriber_id = current[key][0] if key in current else None
        detail = {"reason": reason, "evidence": evidence}
        # the event kinds are named after the statuses they lead to
        kinds = (["suppressed"] if key in inserted else []) + ([changed[key][1]] if key in changed else [])
        events += [
            event_row(subscriber_id, key, kind, source=reason, detail=detail, now=now) for kind in kinds
        ]
    record_events(session, events)
    answers = []
    seen: set[str] = set()
    for key in keys:
        first = key not in seen
        status = current[key][1] if key in current else None
        answers.append(
            Suppressed(key, new=first and key in inserted, changed=first and key in changed, status=status)
        )
        seen.add(key)
    return answers


def _follow_statuses(
    session: Session, wanted: dict[str, tuple[str, str, str | None]], ordered: list[str], now: datetime
) -> dict[str, tuple[int, str]]:
    """The subscribers of the suppressed addresses take the status their reason leads to, where the
    state table allows it; key -> (subscriber id, new status) of those that changed."""
    changed: dict[str, tuple[int, str]] = {}
    for reason in sorted({r for _, r, _ in wanted.values()}):
        action = SUPPRESSION_STATUS[SuppressionReason(reason)]
        group = [k for k in ordered if wanted[k][1] == reason]
        rows = session.execute(
            update(SUBSCRIBERS)
            .where(SUBSCRIBERS.c.email_key.in_(group), SUBSCRIBERS.c.status.in_(sources(action)))
            .values(status=target(action), changed_at=now)
            .returning(SUBSCRIBERS.c.id, SUBSCRIBERS.c.email_key, SUBSCRIBERS.c.status)
        )
        changed.update({key: (subscriber_id, status) for subscriber_id, key, status in rows})
    return changed


def _statuses_now(
    session: Session, changed: dict[str, tuple[int, str]], ordered: list[str]
) -> dict[str, tuple[int, str]]:
    """key -> (subscriber id, status) of every address that has a subscriber."""
    current = dict(changed)
    unchanged = [k for k in ordered if k not in changed]
    if unchanged:
        rows = session.execute(
            select(SUBSCRIBERS.c.id, SUBSCRIBERS.c.email_key, SUBSCRIBERS.c.status).where(
                SUBSCRIBERS.c.email_key.in_(unchanged)
            )
        )
        current.update({key: (subscriber_id, status) for subscriber_id, key, status in rows})
    return current


def is_suppressed(session: Session, email: str) -> bool:
    key = normalise_address(email).key
    return bool(session.scalar(select(exists().where(Suppression.email_key == key))))


def record_soft_bounce(
    session: Session, email: str, *, limit: int, evidence: str | None = None, now: datetime
) -> bool:
    """Count a soft bounce; True when this one reached ``limit`` and the address got suppressed."""
    address = normalise_address(email)
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


def unsuppress(
    session: Session,
    email: str,
    *,
    source: str = "admin",
    now: datetime,
    note: str | None = None,
) -> bool:
    """Take an address off the list (an admin's decision, logged with ``note``, the admin's reason); its
    status is left as it is."""
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
        detail={"was": row.reason, **({"note": note} if note else {})},
        now=now,
    )
    return True


def list_suppressions(
    session: Session, *, before_id: int | None = None, limit: int = 50
) -> list[Suppression]:
    """Newest first; pass the last id of a page as ``before_id`` for the next one."""
    query = select(Suppression).order_by(Suppression.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Suppression.id < before_id)
    return list(session.scalars(query))


def suppressions_per_bucket(
    session: Session, since: datetime, bucket_seconds: int
) -> dict[tuple[str, int], int]:
    """Suppressions made since ``since`` per (reason, time bucket: unix time // bucket_seconds)."""
    bucket = func.floor(epoch_seconds(session, Suppression.created_at) / bucket_seconds)
    rows = session.execute(
        select(Suppression.reason, bucket, func.count())
        .where(Suppression.created_at >= since)
        .group_by(Suppression.reason, bucket)
    )
    return {(str(reason), int(b)): int(n) for reason, b, n in rows}
