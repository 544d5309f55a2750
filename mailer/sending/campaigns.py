"""Campaign lifecycle: create, start (render segments once, fill the ledger, enqueue), pause, resume,
cancel, progress. With ledger.py (claim, record, release, reap; re-exported here) this is all the
SQL of the sending side; tasks and the CLI call these functions.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from mailer.errors import ConflictError, NewsletterError, NotFoundError
from mailer.rendering.issue import Issue
from mailer.rendering.render import Brand
from mailer.sending.fill import campaign_issue, fill_ledger, store_renderings
from mailer.sending.ledger import (
    Claimed,
    Enqueue,
    Outcome,
    ReapReport,
    claim,
    enqueue_queued,
    execute_count,
    reap,
    record,
    release,
    set_status,
    skip_queued,
)
from mailer.sending.models import Campaign, Delivery
from mailer.topics import TopicRegistry
from subscribers.db import utcnow
from subscribers.store import segment_counts

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
    "resume_stalled_fills",
    "start_campaign",
    "start_due",
]

log = logging.getLogger(__name__)

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
    scheduled_at: datetime | None = None,
) -> Campaign:
    """A draft campaign holding the issue's Markdown, or a scheduled one when ``scheduled_at`` is given
    (rendered only when it starts: the audience may change until then); the caller commits."""
    campaign = Campaign(
        issue_source=issue.source,
        issue_markdown=markdown,
        issue_hash=hashlib.sha256(markdown.encode()).hexdigest(),
        subject=subject or issue.title,
        audience=audience,
        transport=transport,
        status="draft" if scheduled_at is None else "scheduled",
        scheduled_at=scheduled_at,
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
    only_from: tuple[str, ...] = ("draft", "scheduled"),
) -> int:
    """Claim the campaign (``only_from`` -> sending: one conditional UPDATE, so two starters never both
    start it), render each segment once, stream the audience into the ledger, enqueue batches. Returns the
    rows inserted."""
    with factory() as session:
        started = {"started_at": utcnow(), "status_reason": None}
        if not set_status(session, campaign_id, "sending", only_from=only_from, **started):
            status = get_campaign(session, campaign_id).status
            allowed = " or ".join(only_from)
            raise ConflictError(f"campaign {campaign_id} is {status}; only a {allowed} campaign can start")
        audience = get_campaign(session, campaign_id).audience
        counts = segment_counts(session, issue.topics)
        if audience == "all":
            counts = {issue.topics: sum(counts.values())} if counts else {}
        store_renderings(session, campaign_id, issue, brand, registry, counts)
        session.commit()
    with factory() as session:
        return fill_ledger(
            session,
            campaign_id,
            issue,
            brand,
            enqueue=enqueue,
            registry=registry,
            batch_size=batch_size,
            insert_chunk=insert_chunk,
        )


def start_due(
    factory: sessionmaker[Session],
    brand: Brand,
    registry: TopicRegistry,
    *,
    enqueue: Enqueue,
    default_lang: str = "zh",
    batch_size: int = 100,
    insert_chunk: int = 1000,
    now: datetime | None = None,
) -> list[int]:
    """Start every scheduled campaign whose time has come, rendering from its stored Markdown now.
    Overlapping runs (two beats, cron) are safe: the scheduled -> sending UPDATE lets one of them claim
    each campaign. A campaign that cannot start keeps its schedule and says why (``status_reason``).
    Returns the ids this run started."""
    now = now or utcnow()
    with factory() as session:
        due = list(
            session.scalars(
                select(Campaign.id)
                .where(Campaign.status == "scheduled", Campaign.scheduled_at <= now)
                .order_by(Campaign.scheduled_at, Campaign.id)
            )
        )
    started = []
    for campaign_id in due:
        try:
            with factory() as session:
                issue = campaign_issue(get_campaign(session, campaign_id), registry, default_lang)
            start_campaign(
                factory,
                campaign_id,
                issue,
                brand,
                enqueue=enqueue,
                registry=registry,
                batch_size=batch_size,
                insert_chunk=insert_chunk,
                only_from=("scheduled",),
            )
        except ConflictError:
            continue  # another run claimed it first, or it was cancelled meanwhile
        except NewsletterError as exc:
            log.error("scheduled campaign %s cannot start: %s", campaign_id, exc)
            with factory() as session:
                set_status(
                    session,
                    campaign_id,
                    "scheduled",
                    only_from=("scheduled",),
                    status_reason=f"cannot start: {exc}",
                )
                session.commit()
            continue
        started.append(campaign_id)
    return started


def resume_stalled_fills(
    factory: sessionmaker[Session],
    brand: Brand,
    registry: TopicRegistry,
    *,
    enqueue: Enqueue,
    lease_seconds: float,
    default_lang: str = "zh",
    batch_size: int = 100,
    insert_chunk: int = 1000,
    now: datetime | None = None,
) -> list[int]:
    """Finish the ledger fills whose process died: a sending campaign whose audience is not all in the
    ledger and whose fill has shown no sign of life (``fill_seen_at``) for a whole lease. One conditional
    UPDATE takes each stalled fill over, so two reapers never both continue it. Returns the campaign ids."""
    now = now or utcnow()
    expired = now - timedelta(seconds=lease_seconds)
    last_seen = func.coalesce(Campaign.fill_seen_at, Campaign.started_at)
    stalled = (Campaign.status == "sending", Campaign.queued_all.is_(False), last_seen < expired)
    with factory() as session:
        candidates = list(session.scalars(select(Campaign.id).where(*stalled).order_by(Campaign.id)))
    resumed = []
    for campaign_id in candidates:
        with factory() as session:
            taken = execute_count(
                session,
                update(Campaign)
                .where(Campaign.id == campaign_id, *stalled)
                .values(fill_seen_at=now)
                .execution_options(**_UPDATE_OPTS),
            )
            session.commit()
            if not taken:
                continue
            try:
                issue = campaign_issue(get_campaign(session, campaign_id), registry, default_lang)
            except NewsletterError as exc:  # the stored issue no longer parses (a topic was removed)
                log.error("campaign %s: cannot resume its ledger fill: %s", campaign_id, exc)
                continue
            # the campaign's status is left alone: paused meanwhile, its new rows wait for `resume`
            log.warning("campaign %s: its ledger fill stalled; resuming it", campaign_id)
            _continue_fill(session, campaign_id, issue, brand, enqueue, registry, batch_size, insert_chunk)
        resumed.append(campaign_id)
    return resumed


def pause(session: Session, campaign_id: int, reason: str = "paused by an operator") -> None:
    get_campaign(session, campaign_id)
    if not set_status(
        session, campaign_id, "paused", only_from=("sending", "scheduled"), status_reason=reason
    ):
        raise ConflictError(f"campaign {campaign_id} is not sending; only a sending campaign can pause")
    session.commit()


def resume(
    session: Session,
    campaign_id: int,
    *,
    enqueue: Enqueue,
    batch_size: int = 100,
    brand: Brand | None = None,
    registry: TopicRegistry | None = None,
    default_lang: str = "zh",
    insert_chunk: int = 1000,
) -> int:
    """Paused -> sending; every row still queued goes back on the queue. A campaign whose ledger fill
    never finished (the starting process crashed; status sending or paused) also gets the rest of its
    audience: the fill continues after the highest subscriber id in the ledger, rendering from the stored
    Markdown (``brand`` and ``registry`` needed). Returns how many rows were queued."""
    campaign = get_campaign(session, campaign_id)
    if campaign.status == "paused" and campaign.started_at is None and campaign.scheduled_at is not None:
        # paused before its time: it waits for its schedule again (start_due starts it, at once if past)
        if not set_status(session, campaign_id, "scheduled", only_from=("paused",), status_reason=None):
            raise ConflictError(f"campaign {campaign_id} is not paused")
        session.commit()
        return 0
    unfinished = not campaign.queued_all and campaign.status in ("sending", "paused")
    issue = None
    if unfinished:
        if brand is None or registry is None:
            raise TypeError("resuming an unfinished ledger fill needs brand and registry")
        issue = campaign_issue(campaign, registry, default_lang)  # a bad issue fails before any change
    allowed = ("paused", "sending") if unfinished else ("paused",)
    if not set_status(
        session, campaign_id, "sending", only_from=allowed, status_reason=None, consecutive_failures=0
    ):
        raise ConflictError(f"campaign {campaign_id} is not paused")
    session.commit()
    if issue is None or brand is None:
        return enqueue_queued(session, campaign_id, enqueue, batch_size)
    return _continue_fill(session, campaign_id, issue, brand, enqueue, registry, batch_size, insert_chunk)


def _continue_fill(
    session: Session,
    campaign_id: int,
    issue: Issue,
    brand: Brand,
    enqueue: Enqueue,
    registry: TopicRegistry | None,
    batch_size: int,
    insert_chunk: int,
) -> int:
    """Re-queue the rows already in the ledger and fill in the rest of the audience; rows queued."""
    count = enqueue_queued(session, campaign_id, enqueue, batch_size)
    return count + fill_ledger(
        session,
        campaign_id,
        issue,
        brand,
        enqueue=enqueue,
        registry=registry,
        batch_size=batch_size,
        insert_chunk=insert_chunk,
    )


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
    session.commit()
    return skip_queued(session, campaign_id, "campaign cancelled")


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
