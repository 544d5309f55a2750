"""Campaign lifecycle: create, start (render segments once, fill the ledger, enqueue), pause, resume,
cancel, progress. With mailer/ledger.py (claim, record, release, reap; re-exported here) this is all the
SQL of the sending side; tasks and the CLI call these functions.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import ConflictError, NotFoundError
from mailer.issue import Issue
from mailer.ledger import (
    Claimed,
    Enqueue,
    Outcome,
    ReapReport,
    claim,
    enqueue_queued,
    execute_count,
    finish_if_done,
    reap,
    record,
    release,
    set_status,
)
from mailer.models import Campaign, Delivery, SegmentRendering, segment_key
from mailer.render import Brand, render_segments
from mailer.topics import TopicRegistry
from subscribers.db import utcnow
from subscribers.store import segment_counts, stream_audience

__all__ = [
    "Claimed",
    "Enqueue",
    "Outcome",
    "Progress",
    "ReapReport",
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
        if not set_status(
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
            if not rows:
                continue
            # plain executemany (one prepared statement; RETURNING would make psycopg re-parse a huge
            # multi-VALUES query), then the new ids by the chunk's subscriber range: unique per campaign
            session.execute(insert(Delivery), rows)
            ids = list(
                session.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.campaign_id == campaign_id,
                        Delivery.subscriber_id.between(rows[0]["subscriber_id"], rows[-1]["subscriber_id"]),
                    )
                    .order_by(Delivery.id)
                )
            )
            session.execute(
                update(Campaign).where(Campaign.id == campaign_id).values(total=Campaign.total + len(ids))
            )
            session.commit()
            total += len(ids)
            for start in range(0, len(ids), batch_size):
                enqueue(campaign_id, ids[start : start + batch_size])
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(queued_all=True))
        finish_if_done(session, campaign_id)
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


def pause(session: Session, campaign_id: int, reason: str = "paused by an operator") -> None:
    get_campaign(session, campaign_id)
    if not set_status(
        session, campaign_id, "paused", only_from=("sending", "scheduled"), status_reason=reason
    ):
        raise ConflictError(f"campaign {campaign_id} is not sending; only a sending campaign can pause")
    session.commit()


def resume(session: Session, campaign_id: int, *, enqueue: Enqueue, batch_size: int = 100) -> int:
    """Paused -> sending; every row still queued goes back on the queue. Returns how many."""
    get_campaign(session, campaign_id)
    if not set_status(
        session, campaign_id, "sending", only_from=("paused",), status_reason=None, consecutive_failures=0
    ):
        raise ConflictError(f"campaign {campaign_id} is not paused")
    session.commit()
    return enqueue_queued(session, campaign_id, enqueue, batch_size)


def cancel(session: Session, campaign_id: int, reason: str = "cancelled by an operator") -> int:
    """Stop for good: queued rows become skipped (workers skip the rows they hold). Returns how many."""
    get_campaign(session, campaign_id)
    if not set_status(
        session,
        campaign_id,
        "cancelled",
        only_from=("draft", "scheduled", "sending", "paused"),
        status_reason=reason,
    ):
        raise ConflictError(f"campaign {campaign_id} is already finished")
    changed = execute_count(
        session,
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == "queued")
        .values(status="skipped", last_error="campaign cancelled")
        .execution_options(**_UPDATE_OPTS),
    )
    session.execute(
        update(Campaign).where(Campaign.id == campaign_id).values(skipped=Campaign.skipped + changed)
    )
    session.commit()
    return int(changed)


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
