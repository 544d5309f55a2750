"""Ledger operations of the send path: claim, record, release, finish, re-enqueue, reap.

Exactly-once rests on three conditional updates: a row is claimed only while ``queued`` (one UPDATE with
RETURNING: a second worker or a retried task gets nothing; on PostgreSQL a concurrent claimer blocks on the
row and then re-checks ``status``), recorded only by the claim that holds it, and a campaign changes status
only from the state the caller expects. Rows a killed worker left in ``sending`` are found once their
lease (``claimed_at``, renewed at every record) has expired and are resent or marked ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, case, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from mailer.models import Campaign, Delivery
from subscribers.db import utcnow
from subscribers.store import sendable

__all__ = [
    "Claimed",
    "Enqueue",
    "Outcome",
    "ReapReport",
    "claim",
    "enqueue_ids",
    "enqueue_queued",
    "execute_count",
    "finish_if_done",
    "reap",
    "record",
    "release",
    "set_status",
]

Enqueue = Callable[[int, Sequence[int]], None]  # (campaign id, ledger ids) -> one batch task
_UPDATE_OPTS = {"synchronize_session": False}


def execute_count(session: Session, statement: Executable) -> int:
    """Run an UPDATE; how many rows it changed."""
    return int(cast("CursorResult[Any]", session.execute(statement)).rowcount)


def set_status(
    session: Session, campaign_id: int, new: str, *, only_from: Iterable[str], **values: object
) -> bool:
    changed = execute_count(
        session,
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(list(only_from)))
        .values(status=new, **values)
        .execution_options(**_UPDATE_OPTS),
    )
    return bool(changed)


@dataclass(frozen=True)
class Claimed:
    id: int
    subscriber_id: int
    segment_id: int
    email: str
    name: str | None


def claim(
    session: Session, campaign_id: int, ids: Sequence[int], claim_id: str, *, now: datetime | None = None
) -> tuple[list[Claimed], int]:
    """Claim the still-queued rows among ``ids`` while the campaign is sending, re-check who may still get
    mail, skip the others. Commits. Returns (rows to send, rows skipped)."""
    now = now or utcnow()
    sending = select(Campaign.status).where(Campaign.id == campaign_id).scalar_subquery() == "sending"
    rows = session.execute(
        update(Delivery)
        .where(
            Delivery.id.in_(list(ids)),
            Delivery.campaign_id == campaign_id,
            Delivery.status == "queued",
            sending,
        )
        .values(status="sending", claim=claim_id, claimed_at=now, attempts=Delivery.attempts + 1)
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.segment_id, Delivery.email, Delivery.name)
        .execution_options(**_UPDATE_OPTS)
    ).all()
    claimed = [Claimed(*row) for row in rows]
    allowed = sendable(session, [c.subscriber_id for c in claimed]) if claimed else set()
    gone = [c.id for c in claimed if c.subscriber_id not in allowed]
    if gone:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(gone), Delivery.claim == claim_id)
            .values(
                status="skipped",
                claim=None,
                last_error="not sendable at send time (unsubscribed or suppressed)",
            )
            .execution_options(**_UPDATE_OPTS)
        )
        session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(skipped=Campaign.skipped + len(gone))
        )
    session.commit()
    return [c for c in claimed if c.subscriber_id in allowed], len(gone)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    sent: bool
    message_id: str | None = None
    error: str | None = None


def record(
    session: Session,
    campaign_id: int,
    claim_id: str,
    outcomes: Sequence[Outcome],
    *,
    max_consecutive_failures: int,
    held: Sequence[int] = (),
    final: bool = True,
    renew: bool = True,
    now: datetime | None = None,
) -> str:
    """Write results of this claim, renew the lease of its other rows (``renew``), update counters; pause
    the campaign after too many failures in a row and (``final``: the claim's last record) finish it when
    nothing is left. Commits. Returns the campaign's status."""
    now = now or utcnow()
    sent = {o.delivery_id: o.message_id or "" for o in outcomes if o.sent}
    failed = {o.delivery_id: (o.error or "failed")[:2000] for o in outcomes if not o.sent}
    mine = _held(claim_id, held)
    n_sent = n_failed = 0
    if sent:
        n_sent = len(
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(list(sent)), mine)
                .values(status="sent", message_id=case(sent, value=Delivery.id), sent_at=now, last_error=None)
                .returning(Delivery.id)
                .execution_options(**_UPDATE_OPTS)
            ).all()
        )
    if failed:
        n_failed = len(
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(list(failed)), mine)
                .values(status="failed", last_error=case(failed, value=Delivery.id))
                .returning(Delivery.id)
                .execution_options(**_UPDATE_OPTS)
            ).all()
        )
    if renew:
        session.execute(update(Delivery).where(mine).values(claimed_at=now).execution_options(**_UPDATE_OPTS))
    trailing = 0
    for outcome in reversed(outcomes):
        if outcome.sent:
            break
        trailing += 1
    streak = trailing if sent else Campaign.consecutive_failures + trailing
    status, streak_now = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(sent=Campaign.sent + n_sent, failed=Campaign.failed + n_failed, consecutive_failures=streak)
        .returning(Campaign.status, Campaign.consecutive_failures)
    ).one()
    if status == "sending" and streak_now >= max_consecutive_failures:
        last = outcomes[-1].error if outcomes else "-"
        reason = f"paused after {streak_now} failures in a row; last: {last}"
        if set_status(session, campaign_id, "paused", only_from=("sending",), status_reason=reason):
            status = "paused"
    if final and status == "sending" and finish_if_done(session, campaign_id, now=now):
        status = "done"
    session.commit()
    return status


def _held(claim_id: str, held: Sequence[int]) -> ColumnElement[bool]:
    """Rows of this claim still in 'sending'; ``held`` (the claimed ids) lets the database use the
    primary key instead of scanning the ledger for the claim id."""
    condition = and_(Delivery.claim == claim_id, Delivery.status == "sending")
    return and_(Delivery.id.in_(list(held)), condition) if held else condition


def release(
    session: Session,
    campaign_id: int,
    claim_id: str,
    *,
    held: Sequence[int] = (),
    now: datetime | None = None,
) -> int:
    """Give back this claim's unsent rows: queued again, or skipped when the campaign was cancelled."""
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    cancelled = status == "cancelled"
    changed = execute_count(
        session,
        update(Delivery)
        .where(_held(claim_id, held))
        .values(
            status="skipped" if cancelled else "queued",
            claim=None,
            queued_at=now or utcnow(),
            last_error="campaign cancelled" if cancelled else None,
        )
        .execution_options(**_UPDATE_OPTS),
    )
    if cancelled and changed:
        session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(skipped=Campaign.skipped + changed)
        )
    session.commit()
    return int(changed)


def finish_if_done(session: Session, campaign_id: int, *, now: datetime | None = None) -> bool:
    """sending -> done once the whole audience is in the ledger and every row has an outcome."""
    outcomes = Campaign.sent + Campaign.failed + Campaign.skipped + Campaign.unknown
    changed = execute_count(
        session,
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status == "sending",
            Campaign.queued_all.is_(True),
            outcomes >= Campaign.total,
        )
        .values(status="done", finished_at=now or utcnow())
        .execution_options(**_UPDATE_OPTS),
    )
    return bool(changed)


def enqueue_queued(session: Session, campaign_id: int, enqueue: Enqueue, batch_size: int) -> int:
    queued = and_(Delivery.campaign_id == campaign_id, Delivery.status == "queued")
    session.execute(
        update(Delivery).where(queued).values(queued_at=utcnow()).execution_options(**_UPDATE_OPTS)
    )
    ids = list(session.scalars(select(Delivery.id).where(queued).order_by(Delivery.id)))
    session.commit()
    enqueue_ids(campaign_id, ids, enqueue, batch_size)
    return len(ids)


def enqueue_ids(campaign_id: int, ids: Sequence[int], enqueue: Enqueue, batch_size: int) -> None:
    for start in range(0, len(ids), batch_size):
        enqueue(campaign_id, ids[start : start + batch_size])


@dataclass(frozen=True)
class ReapReport:
    resent: int
    unknown: int
    requeued: int  # queued rows whose task was lost, put back on the queue


def reap(
    session: Session,
    *,
    lease_seconds: float,
    policy: str,
    enqueue: Enqueue,
    batch_size: int = 100,
    now: datetime | None = None,
) -> ReapReport:
    """Resolve rows whose worker vanished: ``sending`` past the lease -> resent or ``unknown``; and when a
    sending campaign has claimed nothing for a whole lease, its queued rows' tasks are lost: enqueue again."""
    now = now or utcnow()
    expired = now - timedelta(seconds=lease_seconds)
    lost = session.execute(
        select(Delivery.id, Delivery.campaign_id).where(
            Delivery.status == "sending", Delivery.claimed_at < expired
        )
    ).all()
    resent = unknown = 0
    by_campaign: dict[int, list[int]] = {}
    for delivery_id, campaign_id in lost:
        by_campaign.setdefault(campaign_id, []).append(delivery_id)
    for campaign_id, ids in by_campaign.items():
        stale = and_(Delivery.id.in_(ids), Delivery.status == "sending", Delivery.claimed_at < expired)
        if policy == "resend":
            back = list(
                session.scalars(
                    update(Delivery)
                    .where(stale)
                    .values(
                        status="queued",
                        claim=None,
                        queued_at=now,
                        last_error="lease expired (worker lost); resent",
                    )
                    .returning(Delivery.id)
                    .execution_options(**_UPDATE_OPTS)
                )
            )
            session.commit()
            status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
            if status == "sending":  # a paused campaign's rows go out when it resumes
                enqueue_ids(campaign_id, back, enqueue, batch_size)
            resent += len(back)
        else:
            count = execute_count(
                session,
                update(Delivery)
                .where(stale)
                .values(
                    status="unknown", claim=None, last_error="lease expired (worker lost); may have been sent"
                )
                .execution_options(**_UPDATE_OPTS),
            )
            session.execute(
                update(Campaign).where(Campaign.id == campaign_id).values(unknown=Campaign.unknown + count)
            )
            unknown += count
    session.commit()
    requeued = 0
    for campaign_id in session.scalars(select(Campaign.id).where(Campaign.status == "sending")):
        last_claim = session.scalar(
            select(func.max(Delivery.claimed_at)).where(Delivery.campaign_id == campaign_id)
        )
        started = session.scalar(select(Campaign.started_at).where(Campaign.id == campaign_id))
        idle_since = last_claim or started or now
        if idle_since < expired:  # nothing claimed for a whole lease: its tasks were lost
            requeued += enqueue_queued(session, campaign_id, enqueue, batch_size)
        finish_if_done(session, campaign_id, now=now)
        session.commit()
    return ReapReport(resent=resent, unknown=unknown, requeued=requeued)
