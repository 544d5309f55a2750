"""Campaign lifecycle and every ledger query: create, start, claim, record, release, pause/resume/cancel,
reap, progress. Tasks and the CLI call these; no SQL lives anywhere else on the sending side.

Exactly-once rests on three conditional updates: a row is claimed only while ``queued`` (one UPDATE with
RETURNING: a second worker or a retried task gets nothing), recorded only by the claim that holds it, and
a campaign changes status only from the state the caller expects. Rows a killed worker left in
``sending`` are found once their lease (``claimed_at``, renewed at every record) has expired and are
resent or marked ``unknown`` (``settings.on_lost_send``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import ConflictError, NotFoundError
from mailer.issue import Issue
from mailer.models import Campaign, Delivery, SegmentRendering, segment_key
from mailer.render import Brand, render_segments
from mailer.topics import TopicRegistry
from subscribers.db import utcnow
from subscribers.store import segment_counts, sendable, stream_audience

__all__ = [
    "Claimed",
    "Enqueue",
    "Outcome",
    "Progress",
    "cancel",
    "claim",
    "create_campaign",
    "get_campaign",
    "pause",
    "progress",
    "reap",
    "record",
    "release",
    "resume",
    "start_campaign",
]

Enqueue = Callable[[int, Sequence[int]], None]  # (campaign id, ledger ids) -> one batch task
_UPDATE_OPTS = {"synchronize_session": False}


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign with id {campaign_id}")
    return campaign


def create_campaign(
    session: Session,
    issue: Issue,
    markdown: str,
    *,
    audience: str,
    transport: str,
    subject: str | None = None,
) -> Campaign:
    """A draft campaign holding the issue's Markdown; the caller commits."""
    campaign = Campaign(
        issue_source=issue.source,
        issue_markdown=markdown,
        issue_hash=hashlib.sha256(markdown.encode()).hexdigest(),
        subject=subject or issue.title,
        audience=audience,
        transport=transport,
        status="draft",
        nonce=secrets.token_hex(4),
        queued_all=False,
        total=0,
        sent=0,
        failed=0,
        skipped=0,
        unknown=0,
        consecutive_failures=0,
        created_at=utcnow(),
    )
    session.add(campaign)
    session.flush()
    return campaign


def _set_status(
    session: Session, campaign_id: int, new: str, *, only_from: Iterable[str], **values: object
) -> bool:
    result = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.in_(list(only_from)))
        .values(status=new, **values)
        .execution_options(**_UPDATE_OPTS)
    )
    return bool(result.rowcount)


def start_campaign(
    factory: sessionmaker[Session],
    campaign_id: int,
    issue: Issue,
    brand: Brand,
    *,
    enqueue: Enqueue,
    registry: TopicRegistry | None = None,
    batch_size: int = 100,
    insert_chunk: int = 1000,
) -> int:
    """Render each segment once, stream the audience into the ledger, enqueue batches. Returns the total."""
    with factory() as session:
        if not _set_status(
            session, campaign_id, "sending", only_from=("draft", "scheduled"), started_at=utcnow()
        ):
            raise ConflictError(f"campaign {campaign_id} is not a draft; resume it instead")
        audience = get_campaign(session, campaign_id).audience
        counts = segment_counts(session, issue.topics)
        if audience == "all":
            counts = {issue.topics: sum(counts.values())} if counts else {}
        segment_ids = _store_renderings(session, campaign_id, issue, brand, registry, counts)
        session.commit()
    total = 0
    with factory() as session:
        for members in stream_audience(session, issue.topics, batch_size=insert_chunk):
            rows = []
            for member in members:
                segment = issue.topics if audience == "all" else member.segment
                if segment not in segment_ids:  # topics changed since counting: render that one now
                    segment_ids.update(
                        _store_renderings(session, campaign_id, issue, brand, registry, {segment: 0})
                    )
                rows.append(
                    {
                        "campaign_id": campaign_id,
                        "subscriber_id": member.subscriber_id,
                        "segment_id": segment_ids[segment],
                        "email": member.email,
                        "name": member.name,
                        "status": "queued",
                        "attempts": 0,
                        "queued_at": utcnow(),
                    }
                )
            ids = list(session.scalars(Delivery.__table__.insert().returning(Delivery.__table__.c.id), rows))
            session.execute(
                update(Campaign).where(Campaign.id == campaign_id).values(total=Campaign.total + len(ids))
            )
            session.commit()
            total += len(ids)
            for start in range(0, len(ids), batch_size):
                enqueue(campaign_id, ids[start : start + batch_size])
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(queued_all=True))
        _finish_if_done(session, campaign_id)
        session.commit()
    return total


def _store_renderings(
    session: Session,
    campaign_id: int,
    issue: Issue,
    brand: Brand,
    registry: TopicRegistry | None,
    counts: dict[frozenset[str], int],
) -> dict[frozenset[str], int]:
    renderings = render_segments(issue, list(counts), brand, registry=registry)
    ids: dict[frozenset[str], int] = {}
    for segment, count in counts.items():
        rendering = renderings[issue.segment_for(segment)]
        row = SegmentRendering(
            campaign_id=campaign_id,
            segment_key=segment_key(segment),
            subject=rendering.subject,
            preheader=rendering.preheader,
            html=rendering.html,
            text=rendering.text,
            section_headings=json.dumps(list(rendering.section_headings), ensure_ascii=False),
            recipients=count,
        )
        session.add(row)
        session.flush()
        ids[segment] = row.id
    return ids


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
    now: datetime | None = None,
) -> str:
    """Write results of this claim, renew the lease of its other rows, update counters; pause the campaign
    after too many failures in a row and finish it when nothing is left. Commits. Returns its status."""
    now = now or utcnow()
    sent = {o.delivery_id: o.message_id or "" for o in outcomes if o.sent}
    failed = {o.delivery_id: (o.error or "failed")[:2000] for o in outcomes if not o.sent}
    mine = and_(Delivery.claim == claim_id, Delivery.status == "sending")
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
        reason = f"paused after {streak_now} failures in a row; last: {outcomes[-1].error}"
        if _set_status(session, campaign_id, "paused", only_from=("sending",), status_reason=reason):
            status = "paused"
    if status == "sending" and _finish_if_done(session, campaign_id, now=now):
        status = "done"
    session.commit()
    return status


def release(session: Session, campaign_id: int, claim_id: str, *, now: datetime | None = None) -> int:
    """Give back this claim's unsent rows: queued again, or skipped when the campaign was cancelled."""
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    cancelled = status == "cancelled"
    result = session.execute(
        update(Delivery)
        .where(Delivery.claim == claim_id, Delivery.status == "sending")
        .values(
            status="skipped" if cancelled else "queued",
            claim=None,
            queued_at=now or utcnow(),
            last_error="campaign cancelled" if cancelled else None,
        )
        .execution_options(**_UPDATE_OPTS)
    )
    if cancelled and result.rowcount:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(skipped=Campaign.skipped + result.rowcount)
        )
    session.commit()
    return int(result.rowcount)


def _finish_if_done(session: Session, campaign_id: int, *, now: datetime | None = None) -> bool:
    return (
        _set_status(
            session,
            campaign_id,
            "done",
            only_from=("sending",),
            finished_at=now or utcnow(),
        )
        if session.scalar(
            select(func.count())
            .select_from(Campaign)
            .where(
                Campaign.id == campaign_id,
                Campaign.queued_all.is_(True),
                Campaign.sent + Campaign.failed + Campaign.skipped + Campaign.unknown >= Campaign.total,
            )
        )
        else False
    )


def pause(session: Session, campaign_id: int, reason: str = "paused by an operator") -> None:
    get_campaign(session, campaign_id)
    if not _set_status(
        session, campaign_id, "paused", only_from=("sending", "scheduled"), status_reason=reason
    ):
        raise ConflictError(f"campaign {campaign_id} is not sending; only a sending campaign can pause")
    session.commit()


def resume(session: Session, campaign_id: int, *, enqueue: Enqueue, batch_size: int = 100) -> int:
    """Paused -> sending; every row still queued goes back on the queue. Returns how many."""
    get_campaign(session, campaign_id)
    if not _set_status(
        session, campaign_id, "sending", only_from=("paused",), status_reason=None, consecutive_failures=0
    ):
        raise ConflictError(f"campaign {campaign_id} is not paused")
    session.commit()
    return _enqueue_queued(session, campaign_id, enqueue, batch_size)


def cancel(session: Session, campaign_id: int, reason: str = "cancelled by an operator") -> int:
    """Stop for good: queued rows become skipped (workers skip the rows they hold). Returns how many."""
    get_campaign(session, campaign_id)
    if not _set_status(
        session,
        campaign_id,
        "cancelled",
        only_from=("draft", "scheduled", "sending", "paused"),
        status_reason=reason,
    ):
        raise ConflictError(f"campaign {campaign_id} is already finished")
    result = session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == "queued")
        .values(status="skipped", last_error="campaign cancelled")
        .execution_options(**_UPDATE_OPTS)
    )
    session.execute(
        update(Campaign).where(Campaign.id == campaign_id).values(skipped=Campaign.skipped + result.rowcount)
    )
    session.commit()
    return int(result.rowcount)


def _enqueue_queued(session: Session, campaign_id: int, enqueue: Enqueue, batch_size: int) -> int:
    ids = list(
        session.scalars(
            select(Delivery.id)
            .where(Delivery.campaign_id == campaign_id, Delivery.status == "queued")
            .order_by(Delivery.id)
        )
    )
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids))
        .values(queued_at=utcnow())
        .execution_options(**_UPDATE_OPTS)
    ) if ids else None
    session.commit()
    for start in range(0, len(ids), batch_size):
        enqueue(campaign_id, ids[start : start + batch_size])
    return len(ids)


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
            count = session.execute(
                update(Delivery)
                .where(stale)
                .values(
                    status="queued",
                    claim=None,
                    queued_at=now,
                    last_error="lease expired (worker lost); resent",
                )
                .execution_options(**_UPDATE_OPTS)
            ).rowcount
            resent += count
        else:
            count = session.execute(
                update(Delivery)
                .where(stale)
                .values(
                    status="unknown", claim=None, last_error="lease expired (worker lost); may have been sent"
                )
                .execution_options(**_UPDATE_OPTS)
            ).rowcount
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
        if idle_since < expired or campaign_id in by_campaign:
            requeued += _enqueue_queued(session, campaign_id, enqueue, batch_size)
        _finish_if_done(session, campaign_id, now=now)
        session.commit()
    return ReapReport(resent=resent, unknown=unknown, requeued=requeued)


@dataclass(frozen=True)
class Progress:
    campaign_id: int
    status: str
    reason: str | None
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    by_status: dict[str, int]
    rate: float  # messages per second over the last minute
    eta_seconds: float | None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown


def progress(
    session: Session, campaign_id: int, *, exact: bool = True, now: datetime | None = None
) -> Progress:
    """Counters for the progress bar (``exact=False``: the campaign row only) or ``campaigns show``."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id)
    session.refresh(campaign)
    by_status: dict[str, int] = {}
    rate = 0.0
    if exact:
        by_status = dict(
            session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.campaign_id == campaign_id)
                .group_by(Delivery.status)
            ).all()
        )
        recent = session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == "sent",
                Delivery.sent_at >= now - timedelta(minutes=1),
            )
        )
        window = 60.0
        if campaign.started_at is not None:
            window = max(1.0, min(60.0, (now - campaign.started_at).total_seconds()))
        rate = (recent or 0) / window
    remaining = campaign.total - (campaign.sent + campaign.failed + campaign.skipped + campaign.unknown)
    eta = remaining / rate if rate > 0 and campaign.status == "sending" else None
    return Progress(
        campaign.id,
        campaign.status,
        campaign.status_reason,
        campaign.total,
        campaign.sent,
        campaign.failed,
        campaign.skipped,
        campaign.unknown,
        by_status,
        rate,
        eta,
    )
