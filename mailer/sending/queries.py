"""Reading campaigns and their ledger for people: listings, progress counters, segments, failures by cause.
With ledger.py (the send path's writes) and fill.py (the ledger fill) this is all the SQL of the sending
side. Unit-of-work functions: a Session in, no commit.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import Session

from mailer.errors import NotFoundError
from mailer.sending.ledger import execute_count
from mailer.sending.models import Campaign, Delivery, SegmentRendering
from mailer.sending.states import CampaignStatus, DeliveryStatus
from subscribers.db import epoch_seconds

__all__ = [
    "ARCHIVED",
    "archived_campaigns",
    "CampaignCounters",
    "campaign_counters",
    "campaign_page",
    "SegmentHeader",
    "count_by_segment_status",
    "count_by_status",
    "count_outcomes",
    "due_campaign_ids",
    "failures_by_code",
    "get_campaign",
    "insert_campaign",
    "note_reason",
    "reader_segment",
    "recent_sends",
    "segment_headers",
    "segments_of",
    "sends_per_bucket",
    "sent_rows",
    "stalled_fill_ids",
    "take_over_fill",
]


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    if not 0 < campaign_id <= 2**63 - 1:  # a database driver raises on larger numbers: none exists
        raise NotFoundError(f"no campaign with id {campaign_id}")
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFoundError(f"no campaign with id {campaign_id}")
    return campaign


def insert_campaign(
    session: Session,
    *,
    source: str,
    markdown: str,
    subject: str,
    audience: str,
    transport: str,
    status: CampaignStatus,
    scheduled_at: datetime | None,
    now: datetime,
) -> Campaign:
    campaign = Campaign(
        issue_source=source[:500],
        issue_markdown=markdown,
        issue_hash=hashlib.sha256(markdown.encode()).hexdigest(),
        subject=subject[:500],
        audience=audience,
        transport=transport,
        status=status,
        scheduled_at=scheduled_at,
        nonce=secrets.token_hex(4),
        queued_all=False,
        total=0,
        sent=0,
        failed=0,
        skipped=0,
        unknown=0,
        consecutive_failures=0,
        created_at=now,
    )
    session.add(campaign)
    session.flush()
    return campaign


def campaign_page(
    session: Session, *, status: str | None = None, before_id: int | None = None, limit: int = 20
) -> list[Campaign]:
    """Newest first; the next page starts before the last id of this one (keyset pagination)."""
    query = select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Campaign.status == status)
    if before_id is not None:
        query = query.where(Campaign.id < before_id)
    return list(session.scalars(query))


def count_by_status(session: Session, campaign_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    return {str(status): int(count) for status, count in rows}


def recent_sends(session: Session, campaign_id: int, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id,
                Delivery.status == DeliveryStatus.SENT,
                Delivery.sent_at >= since,
            )
        )
        or 0
    )


def failures_by_code(session: Session, campaign_id: int) -> dict[str, int]:
    """Failed rows grouped by the transport's cause (``TransportError.code``), most frequent first."""
    rows = session.execute(
        select(Delivery.error_code, func.count())
        .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.FAILED)
        .group_by(Delivery.error_code)
    )
    counts: dict[str, int] = {}
    for code, n in rows:
        counts[code or "unknown"] = counts.get(code or "unknown", 0) + int(n)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def count_outcomes(
    session: Session, campaign_id: int, statuses: Sequence[str], *, causes: Sequence[str] = ()
) -> int:
    """Rows of the campaign in ``statuses``; failed ones only of the given ``causes``, when given."""
    chosen = and_(Delivery.campaign_id == campaign_id, Delivery.status.in_(list(statuses)))
    if causes:
        chosen = and_(
            chosen,
            or_(Delivery.status != DeliveryStatus.FAILED, Delivery.error_code.in_(list(causes))),
        )
    return int(session.scalar(select(func.count()).where(chosen)) or 0)


def segments_of(session: Session, campaign_id: int) -> list[SegmentRendering]:
    return list(
        session.scalars(
            select(SegmentRendering)
            .where(SegmentRendering.campaign_id == campaign_id)
            .order_by(SegmentRendering.id)
        )
    )


@dataclass(frozen=True)
class SegmentHeader:
    id: int
    segment: frozenset[str]
    recipients: int


def segment_headers(session: Session, campaign_id: int) -> list[SegmentHeader]:
    """The campaign's segments without their (large) renderings."""
    rows = session.execute(
        select(SegmentRendering.id, SegmentRendering.segment_key, SegmentRendering.recipients)
        .where(SegmentRendering.campaign_id == campaign_id)
        .order_by(SegmentRendering.id)
    )
    return [SegmentHeader(i, frozenset(k for k in key.split(",") if k), n) for i, key, n in rows]


def count_by_segment_status(session: Session, campaign_id: int) -> dict[int, dict[str, int]]:
    """Ledger rows per segment (rendering id) and status."""
    counts: dict[int, dict[str, int]] = {}
    rows = session.execute(
        select(Delivery.segment_id, Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.segment_id, Delivery.status)
    )
    for segment_id, status, count in rows:
        counts.setdefault(int(segment_id), {})[str(status)] = int(count)
    return counts


def sends_per_bucket(
    session: Session, since: datetime, bucket_seconds: int, campaign_id: int | None = None
) -> dict[int, int]:
    """Messages sent since ``since`` per time bucket (bucket number = unix time // bucket_seconds)."""
    bucket = epoch_seconds(session, Delivery.sent_at) / bucket_seconds
    query = (
        select(func.floor(bucket), func.count())
        .where(Delivery.status == DeliveryStatus.SENT, Delivery.sent_at >= since)
        .group_by(func.floor(bucket))
    )
    if campaign_id is not None:
        query = query.where(Delivery.campaign_id == campaign_id)
    return {int(b): int(n) for b, n in session.execute(query)}


def sent_rows(session: Session, campaign_id: int, limit: int) -> list[Delivery]:
    return list(
        session.scalars(
            select(Delivery)
            .where(Delivery.campaign_id == campaign_id, Delivery.status == DeliveryStatus.SENT)
            .order_by(Delivery.id)
            .limit(limit)
        )
    )


# campaigns whose issue has gone out (wholly or partly): the public archive lists them
ARCHIVED = (CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.DONE)


def archived_campaigns(session: Session, *, limit: int) -> list[Campaign]:
    """Campaigns that reached readers, newest first."""
    return list(
        session.scalars(
            select(Campaign)
            .where(Campaign.status.in_(ARCHIVED), Campaign.sent > 0)
            .order_by(Campaign.started_at.desc(), Campaign.id.desc())
            .limit(limit)
        )
    )


def reader_segment(session: Session, campaign_id: int, subscriber_id: int) -> SegmentRendering | None:
    """The segment rendering a subscriber's message of a campaign was built from; None if they got none."""
    return session.scalar(
        select(SegmentRendering)
        .join(Delivery, Delivery.segment_id == SegmentRendering.id)
        .where(Delivery.campaign_id == campaign_id, Delivery.subscriber_id == subscriber_id)
    )


def due_campaign_ids(session: Session, now: datetime) -> list[int]:
    return list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status == CampaignStatus.SCHEDULED, Campaign.scheduled_at <= now)
            .order_by(Campaign.scheduled_at, Campaign.id)
        )
    )


def _stalled(expired: datetime) -> tuple[ColumnElement[bool], ...]:
    last_seen = func.coalesce(Campaign.fill_seen_at, Campaign.started_at)
    return (Campaign.status == CampaignStatus.SENDING, Campaign.queued_all.is_(False), last_seen < expired)


def stalled_fill_ids(session: Session, *, lease_seconds: float, now: datetime) -> list[int]:
    """Sending campaigns whose audience is not all in the ledger and whose fill has shown no sign of life
    (``fill_seen_at``) for a whole lease: the process filling it died."""
    expired = now - timedelta(seconds=lease_seconds)
    return list(session.scalars(select(Campaign.id).where(*_stalled(expired)).order_by(Campaign.id)))


def take_over_fill(session: Session, campaign_id: int, *, lease_seconds: float, now: datetime) -> bool:
    """One conditional UPDATE: of two reapers, only one takes a stalled fill over."""
    expired = now - timedelta(seconds=lease_seconds)
    return bool(
        execute_count(
            session,
            update(Campaign)
            .where(Campaign.id == campaign_id, *_stalled(expired))
            .values(fill_seen_at=now)
            .execution_options(synchronize_session=False),
        )
    )


def note_reason(session: Session, campaign_id: int, reason: str, *, while_in: CampaignStatus) -> bool:
    """Say why a campaign is where it is (a scheduled one that cannot start), if it still is."""
    return bool(
        execute_count(
            session,
            update(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == while_in)
            .values(status_reason=reason)
            .execution_options(synchronize_session=False),
        )
    )


@dataclass(frozen=True)
class CampaignCounters:
    id: int
    status: str
    transport: str
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    bounced: int
    complained: int


def campaign_counters(session: Session, *, recent: int) -> list[CampaignCounters]:
    """The counters kept on the campaign rows (no ledger scan) of every campaign sending or paused and of
    the ``recent`` newest that started, by id (what the metrics show)."""
    newest = (
        select(Campaign.id)
        .where(Campaign.started_at.is_not(None))
        .order_by(Campaign.id.desc())
        .limit(recent)
        .scalar_subquery()
    )
    rows = session.execute(
        select(
            Campaign.id,
            Campaign.status,
            Campaign.transport,
            Campaign.total,
            Campaign.sent,
            Campaign.failed,
            Campaign.skipped,
            Campaign.unknown,
            Campaign.bounced,
            Campaign.complained,
        )
        .where(
            or_(Campaign.status.in_((CampaignStatus.SENDING, CampaignStatus.PAUSED)), Campaign.id.in_(newest))
        )
        .order_by(Campaign.id)
    )
    return [CampaignCounters(*tuple(row)) for row in rows]
