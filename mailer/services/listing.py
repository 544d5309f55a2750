"""Reading campaigns: the listing (newest first, a page at a time), one campaign's details for
``campaigns show`` and a campaign page, and a sample of its sent rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from mailer.errors import InputError
from mailer.sending import queries
from mailer.sending.models import Campaign
from mailer.sending.states import CampaignAction, CampaignStatus, campaign_actions
from mailer.services.checklist import SegmentInfo
from mailer.services.watch import Progress, progress

__all__ = ["CampaignDetail", "CampaignInfo", "SentRow", "detail", "list_campaigns", "sent_sample"]

MAX_PAGE = 1000


@dataclass(frozen=True)
class CampaignInfo:
    id: int
    status: str
    reason: str | None
    subject: str
    source: str
    audience: str
    transport: str
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    fill_complete: bool
    issue_hash: str

    @property
    def actions(self) -> tuple[CampaignAction, ...]:
        """What an operator may do with it now (the dashboard's buttons)."""
        return campaign_actions(self.status)

    @classmethod
    def of(cls, c: Campaign) -> CampaignInfo:
        return cls(
            c.id, c.status, c.status_reason, c.subject, c.issue_source, c.audience, c.transport,
            c.created_at, c.scheduled_at, c.started_at, c.finished_at,
            c.total, c.sent, c.failed, c.skipped, c.unknown, c.queued_all, c.issue_hash,
        )  # fmt: skip


def list_campaigns(
    session: Session, *, status: str | None = None, before_id: int | None = None, limit: int = 20
) -> list[CampaignInfo]:
    """Newest first; pass the last id of a page as ``before_id`` for the next one."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if status is not None and status not in tuple(CampaignStatus):
        raise InputError(f"unknown status {status!r} (one of {', '.join(CampaignStatus)})")
    if before_id is not None and not 0 < before_id <= 2**63 - 1:
        raise InputError(f"before must be a campaign id, not {before_id}")
    rows = queries.campaign_page(session, status=status, before_id=before_id, limit=limit)
    return [CampaignInfo.of(c) for c in rows]


@dataclass(frozen=True)
class CampaignDetail:
    info: CampaignInfo
    progress: Progress
    segments: tuple[SegmentInfo, ...]
    failures_by_code: dict[str, int]


def detail(session: Session, campaign_id: int, *, now: datetime) -> CampaignDetail:
    """Everything ``campaigns show`` and a campaign page show."""
    campaign = queries.get_campaign(session, campaign_id)
    state = progress(session, campaign_id, now=now)
    segments = tuple(
        SegmentInfo(
            s.segment,
            s.recipients,
            s.subject,
            tuple(_json_list(s.section_headings)),
            len(s.html.encode()),
            len(s.text.encode()),
        )
        for s in queries.segments_of(session, campaign_id)
    )
    return CampaignDetail(
        CampaignInfo.of(campaign), state, segments, queries.failures_by_code(session, campaign_id)
    )


def _json_list(text: str) -> list[str]:
    value = json.loads(text or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class SentRow:
    delivery_id: int
    email: str
    message_id: str


def sent_sample(session: Session, campaign_id: int, limit: int = 2) -> list[SentRow]:
    """The first ``limit`` sent rows (the demo feeds feedback for them)."""
    return [
        SentRow(d.id, d.email, d.message_id or "") for d in queries.sent_rows(session, campaign_id, limit)
    ]
