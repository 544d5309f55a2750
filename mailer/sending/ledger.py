"""Ledger operations of the send path: claim, record, release, finish, re-queue (the reaper's are in
``reaping.py``, the hot path's SQL text in ``ledger_sql.py``). Unit-of-work
functions: each takes a Session and never commits (the caller does: the send loop after every step, the
services once per operation).

Exactly-once rests on three conditional updates: a row is claimed only while ``queued`` (one UPDATE with
RETURNING: a second worker or a retried task gets nothing; on PostgreSQL a concurrent claimer blocks on the
row and then re-checks ``status``), recorded only by the claim that holds it, and a campaign changes status
only from the state the caller expects. Rows a killed worker left in ``sending`` are found once their
lease (``claimed_at``, renewed a few times per lease time) has expired and are resent or marked ``unknown``
(``reaping.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import and_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Executable

from mailer.sending import Enqueue
from mailer.sending.ledger_sql import Statements
from mailer.sending.ledger_sql import statements as _sql
from mailer.sending.models import Campaign, Delivery
from mailer.sending.states import CampaignAction, CampaignStatus, DeliveryStatus, campaign_sources
from subscribers.store import sendable

__all__ = [
    "Claimed",
    "Enqueue",
    "Outcome",
    "UPDATE_OPTS",
    "add_counts",
    "claim",
    "count_feedback",
    "enqueue_ids",
    "execute_count",
    "finish_if_done",
    "queued_ids",
    "record",
    "release",
    "requeue_outcomes",
    "set_status",
    "rowcount",
    "skip_queued",
]

UPDATE_OPTS = {"synchronize_session": False}


def execute_count(session: Session, statement: Executable) -> int:
    """Run an UPDATE; how many rows it changed."""
    return int(cast("CursorResult[Any]", session.execute(statement)).rowcount)


def count_feedback(session: Session, campaign_id: int, *, bounced: int = 0, complained: int = 0) -> Campaign:
    """Add applied bounces and complaints to a campaign's counters; the campaign as it is now."""
    execute_count(
        session,
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(bounced=Campaign.bounced + bounced, complained=Campaign.complained + complained)
        .execution_options(**UPDATE_OPTS),
    )
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    session.refresh(campaign)
    return campaign


def set_status(
    session: Session,
    campaign_id: int,
    action: CampaignAction,
    to: CampaignStatus,
    *,
    only_from: Iterable[str] | None = None,
    **values: object,
) -> bool:
    """Apply ``action`` (to ``to``) if the campaign is in a status the transition table allows it from
    (narrowed by ``only_from``); one conditional UPDATE, so of racing callers only one succeeds."""
    allowed = campaign_sources(action, to)
    if only_from is not None:
        allowed = tuple(status for status in allowed if status in set(only_from))
    changed = execute_count(
        session,
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(allowed))
        .values(status=to, **values)
        .execution_options(**UPDATE_OPTS),
    )
    return bool(changed)


@dataclass(frozen=True)
class Claimed:
    id: int
    subscriber_id: int
    segment_id: int
    email: str
    name: str | None
    salt: str = ""  # the subscriber's token salt, from the send-time re-check


def rowcount(session: Session, statement: Executable, params: dict[str, Any]) -> int:
    return int(cast("CursorResult[Any]", session.execute(statement, params)).rowcount)


def claim(
    session: Session, campaign_id: int, ids: Sequence[int], claim_id: str, *, now: datetime
) -> tuple[list[Claimed], int]:
    """Claim the still-queued rows among ``ids`` while the campaign is sending, re-check who may still get
    mail, skip the others. Returns (rows to send, rows skipped); the caller commits at once."""
    sql = _sql(session)
    rows = session.execute(
        sql.claim,
        {"ids": sql.pack(list(ids)), "campaign": campaign_id, "claim": claim_id, "now": now},
    ).all()
    claimed = [Claimed(*row) for row in rows]
    allowed = sendable(session, [c.subscriber_id for c in claimed]) if claimed else {}
    gone = [c.id for c in claimed if c.subscriber_id not in allowed]
    if gone:
        error = "not sendable at send time (unsubscribed or suppressed)"
        session.execute(sql.skip, {"ids": sql.pack(gone), "claim": claim_id, "error": error})
        add_counts(session, campaign_id, skipped=len(gone))
    kept = [replace(c, salt=allowed[c.subscriber_id]) for c in claimed if c.subscriber_id in allowed]
    return kept, len(gone)


def add_counts(
    session: Session,
    campaign_id: int,
    *,
    sent: int = 0,
    failed: int = 0,
    skipped: int = 0,
    unknown: int = 0,
    trailing_failures: int = 0,
    restart_streak: bool = False,
) -> tuple[str, int]:
    """Add to the campaign's counters and its run of failures; returns (status, failures in a row)."""
    status, streak = session.execute(
        _sql(session).counters,
        {
            "campaign": campaign_id,
            "sent": sent,
            "failed": failed,
            "skipped": skipped,
            "unknown": unknown,
            "trailing": trailing_failures,
            "restart": restart_streak,
        },
    ).one()
    return str(status), int(streak)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    sent: bool
    message_id: str | None = None
    error: str | None = None
    error_code: str | None = None  # the transport's cause (TransportError.code), for grouping failures


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
    now: datetime,
) -> str:
    """Write results of this claim, renew the lease of its other rows (``renew``, needs ``held``: the
    claimed ids), update counters; pause the campaign after too many failures in a row and (``final``: the
    claim's last record) finish it when nothing is left. Returns the campaign's status."""
    sql = _sql(session)
    sent = [o for o in outcomes if o.sent]
    n_sent, n_failed = _write_outcomes(session, sql, claim_id, sent, [o for o in outcomes if not o.sent], now)
    if renew and held:
        session.execute(sql.renew, {"ids": sql.pack(list(held)), "claim": claim_id, "now": now})
    trailing = next((n for n, o in enumerate(reversed(outcomes)) if o.sent), len(outcomes))
    status, streak_now = add_counts(
        session,
        campaign_id,
        sent=n_sent,
        failed=n_failed,
        trailing_failures=trailing,
        restart_streak=bool(sent),
    )
    if status == "sending" and streak_now >= max_consecutive_failures:
        last = outcomes[-1].error if outcomes else "-"
        reason = f"paused after {streak_now} failures in a row; last: {last}"
        paused = CampaignStatus.PAUSED
        if set_status(session, campaign_id, CampaignAction.PAUSE, paused, status_reason=reason):
            status = paused
    if final and status == CampaignStatus.SENDING and finish_if_done(session, campaign_id, now=now):
        status = CampaignStatus.DONE
    return status


def _write_outcomes(
    session: Session,
    sql: Statements,
    claim_id: str,
    sent: list[Outcome],
    failed: list[Outcome],
    now: datetime,
) -> tuple[int, int]:
    """The rows of this claim -> sent (with their message ids) and failed (with the error and its cause);
    how many of each were still this claim's."""
    n_sent = n_failed = 0
    if sent:
        n_sent = rowcount(
            session,
            sql.sent,
            {
                "ids": sql.pack([o.delivery_id for o in sent]),
                "vals": sql.pack([o.message_id or "" for o in sent]),
                "claim": claim_id,
                "now": now,
            },
        )
    if failed:
        n_failed = rowcount(
            session,
            sql.failed,
            {
                "ids": sql.pack([o.delivery_id for o in failed]),
                "vals": sql.pack([(o.error or "failed")[:2000] for o in failed]),
                "codes": sql.pack([(o.error_code or "unknown")[:64] for o in failed]),
                "claim": claim_id,
            },
        )
    return n_sent, n_failed


def release(
    session: Session,
    campaign_id: int,
    claim_id: str,
    *,
    held: Sequence[int] = (),
    now: datetime,
) -> int:
    """Give back this claim's unsent rows (among ``held``, or all of the claim's rows when not given):
    queued again, or skipped when the campaign was cancelled."""
    sql = _sql(session)
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    cancelled = status == "cancelled"
    params: dict[str, Any] = {
        "claim": claim_id,
        "now": now,
        "status": "skipped" if cancelled else "queued",
        "error": "campaign cancelled" if cancelled else None,
    }
    if held:
        changed = rowcount(session, sql.release, {**params, "ids": sql.pack(list(held))})
    else:
        changed = rowcount(session, sql.release_all, params)
    if cancelled and changed:
        add_counts(session, campaign_id, skipped=changed)
    return changed


def finish_if_done(session: Session, campaign_id: int, *, now: datetime) -> bool:
    """sending -> done once the whole audience is in the ledger and every row has an outcome."""
    outcomes = Campaign.sent + Campaign.failed + Campaign.skipped + Campaign.unknown
    changed = execute_count(
        session,
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status.in_(campaign_sources(CampaignAction.FINISH)),
            Campaign.queued_all.is_(True),
            outcomes >= Campaign.total,
        )
        .values(status=CampaignStatus.DONE, finished_at=now)
        .execution_options(**UPDATE_OPTS),
    )
    return bool(changed)


def queued_ids(session: Session, campaign_id: int, *, now: datetime) -> list[int]:
    """The campaign's queued rows, in id order, stamped as queued now (to be enqueued after commit)."""
    queued = and_(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.QUEUED)
    session.execute(update(Delivery).where(queued).values(queued_at=now).execution_options(**UPDATE_OPTS))
    return list(session.scalars(select(Delivery.id).where(queued).order_by(Delivery.id)))


def enqueue_ids(campaign_id: int, ids: Sequence[int], enqueue: Enqueue, batch_size: int) -> None:
    for start in range(0, len(ids), batch_size):
        enqueue(campaign_id, ids[start : start + batch_size])


def requeue_outcomes(
    session: Session,
    campaign_id: int,
    statuses: Sequence[DeliveryStatus],
    *,
    causes: Sequence[str] = (),
    now: datetime,
) -> tuple[list[int], dict[str, int]]:
    """Rows of the campaign in ``statuses`` (failed, unknown), failed ones narrowed to the failure
    ``causes`` when given, queued again and taken off the counters. Returns (row ids, rows by cause)."""
    ids: list[int] = []
    by_cause: dict[str, int] = {}
    taken = {DeliveryStatus.FAILED: 0, DeliveryStatus.UNKNOWN: 0}
    for status in statuses:
        chosen = and_(Delivery.campaign_id == campaign_id, Delivery.status == status)
        if causes and status == DeliveryStatus.FAILED:
            chosen = and_(chosen, Delivery.error_code.in_(list(causes)))
        rows = session.execute(
            update(Delivery)
            .where(chosen)
            .values(status=DeliveryStatus.QUEUED, claim=None, queued_at=now)
            .returning(Delivery.id, Delivery.error_code)
            .execution_options(**UPDATE_OPTS)
        ).all()
        taken[status] = len(rows)
        for row_id, code in rows:
            ids.append(int(row_id))
            cause = "in doubt (unknown)" if status == DeliveryStatus.UNKNOWN else code or "unknown"
            by_cause[cause] = by_cause.get(cause, 0) + 1
    if ids:
        failed, unknown = taken[DeliveryStatus.FAILED], taken[DeliveryStatus.UNKNOWN]
        add_counts(session, campaign_id, failed=-failed, unknown=-unknown, restart_streak=True)
    return sorted(ids), by_cause


def skip_queued(session: Session, campaign_id: int, reason: str) -> int:
    """The campaign's queued rows -> skipped, counted (a cancel, or rows a fill added after it)."""
    changed = execute_count(
        session,
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SKIPPED, last_error=reason)
        .execution_options(**UPDATE_OPTS),
    )
    if changed:
        add_counts(session, campaign_id, skipped=changed)
    return changed
