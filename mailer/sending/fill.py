"""Filling a campaign's ledger: store segment renderings, stream the audience into ``deliveries``, enqueue.

One fill serves a start and a resume (a fill that crashed half way continues from the highest subscriber
id already in the ledger). ``fill_ledger_stepwise`` commits a chunk at a time (it takes a session factory,
never a caller's session); ``store_renderings`` is a unit of work. Two fills may race (a resume while the
original start is still alive): rows and renderings go in with ``ON CONFLICT DO NOTHING`` and the
campaign's total grows by what was really inserted, so neither duplicates rows nor double-counts;
enqueueing a row twice is harmless (claims are conditional). Each chunk stamps ``fill_seen_at``, so a fill
whose process died is noticed (``services.upkeep.reap_stepwise``); a fill that finds its campaign
cancelled skips what it added and stops.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from mailer.rendering.issue import Issue
from mailer.rendering.render import Brand, render_segments
from mailer.sending.ledger import Enqueue, enqueue_ids, finish_if_done, skip_queued
from mailer.sending.models import Campaign, Delivery, SegmentRendering, segment_key
from mailer.sending.states import Audience, CampaignStatus, DeliveryStatus
from mailer.topics import TopicRegistry
from subscribers.store import stream_audience

__all__ = ["fill_ledger_stepwise", "store_renderings"]


def _insert_ignoring_conflicts(session: Session, model: Any, *keys: str) -> Any:
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # on the Table, not the mapped class: Core executemany reports its rowcount (the ORM bulk path does not)
    statement = dialect.insert(model.__table__).on_conflict_do_nothing(index_elements=list(keys))
    return statement.execution_options(preserve_rowcount=True)  # else INSERT's rowcount may be -1


def store_renderings(
    session: Session,
    campaign_id: int,
    issue: Issue,
    brand: Brand,
    registry: TopicRegistry | None,
    counts: dict[frozenset[str], int],
) -> dict[frozenset[str], int]:
    """Render and store each segment of ``counts`` (a segment another fill stored first is kept); returns
    the rendering ids by segment."""
    renderings = render_segments(issue, list(counts), brand, registry=registry)
    rows = []
    for segment, count in counts.items():
        rendering = renderings[issue.segment_for(segment)]
        rows.append(
            {
                "campaign_id": campaign_id,
                "segment_key": segment_key(segment),
                "subject": rendering.subject,
                "preheader": rendering.preheader,
                "html": rendering.html,
                "text": rendering.text,
                "section_headings": json.dumps(list(rendering.section_headings), ensure_ascii=False),
                "recipients": count,
            }
        )
    if rows:
        session.execute(
            _insert_ignoring_conflicts(session, SegmentRendering, "campaign_id", "segment_key"), rows
        )
    stored = _stored_renderings(session, campaign_id)
    return {segment: stored[segment] for segment in counts}


def _stored_renderings(session: Session, campaign_id: int) -> dict[frozenset[str], int]:
    rows = session.execute(
        select(SegmentRendering.segment_key, SegmentRendering.id).where(
            SegmentRendering.campaign_id == campaign_id
        )
    )
    return {frozenset(k for k in key.split(",") if k): id_ for key, id_ in rows}


def fill_ledger_stepwise(
    sessions: sessionmaker[Session],
    campaign_id: int,
    issue: Issue,
    brand: Brand,
    *,
    enqueue: Enqueue,
    clock: Callable[[], datetime],
    registry: TopicRegistry | None = None,
    batch_size: int = 100,
    insert_chunk: int = 1000,
) -> int:
    """Stream the audience after the highest subscriber id already in the ledger into it, a committed
    chunk at a time, enqueue each chunk's rows, render segments not stored yet, then mark the ledger
    complete (``queued_all``). Returns how many rows this call inserted. ``clock`` stamps each chunk (the
    reaper compares ``fill_seen_at`` with the same clock)."""
    with sessions() as session:
        audience = session.scalar(select(Campaign.audience).where(Campaign.id == campaign_id))
        segment_ids = _stored_renderings(session, campaign_id)
        after_id = session.scalar(
            select(func.max(Delivery.subscriber_id)).where(Delivery.campaign_id == campaign_id)
        )
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(fill_seen_at=clock()))
        session.commit()
        statement = _insert_ignoring_conflicts(session, Delivery, "campaign_id", "subscriber_id")
        inserted = 0
        audience_chunks = stream_audience(
            session, issue.topics, batch_size=insert_chunk, after_id=after_id or 0
        )
        with closing(audience_chunks) as chunks:  # closed at once if a chunk fails, not by the collector
            for members in chunks:
                now = clock()
                rows = []
                for member in members:
                    segment = issue.topics if audience == Audience.ALL else member.segment
                    # topics changed since counting, or a resume: render the segment now
                    if segment not in segment_ids:
                        segment_ids.update(
                            store_renderings(session, campaign_id, issue, brand, registry, {segment: 0})
                        )
                    rows.append(
                        {
                            "campaign_id": campaign_id,
                            "subscriber_id": member.subscriber_id,
                            "segment_id": segment_ids[segment],
                            "email": member.email,
                            "name": member.name,
                            "status": DeliveryStatus.QUEUED,
                            "attempts": 0,
                            "queued_at": now,
                        }
                    )
                if not rows:
                    continue
                # plain executemany (one prepared statement; RETURNING would make psycopg re-parse a huge
                # multi-VALUES query): its rowcount is what this fill really inserted, conflicts excluded
                count = int(cast("CursorResult[Any]", session.execute(statement, rows)).rowcount)
                ids = list(
                    session.scalars(
                        select(Delivery.id)
                        .where(
                            Delivery.campaign_id == campaign_id,
                            Delivery.subscriber_id.between(
                                rows[0]["subscriber_id"], rows[-1]["subscriber_id"]
                            ),
                        )
                        .order_by(Delivery.id)
                    )
                )
                status = session.scalar(
                    update(Campaign)
                    .where(Campaign.id == campaign_id)
                    .values(total=Campaign.total + count, fill_seen_at=now)
                    .returning(Campaign.status)
                )
                session.commit()
                inserted += count
                if status == CampaignStatus.CANCELLED:  # cancelled while filling: what it added is skipped
                    skip_queued(session, campaign_id, "campaign cancelled")
                    session.commit()
                    return inserted
                enqueue_ids(campaign_id, ids, enqueue, batch_size)
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(queued_all=True))
        finish_if_done(session, campaign_id, now=clock())
        session.commit()
        return inserted
