"""The admin API's request and response bodies (its OpenAPI schema), built from the services' records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from mailer.sending.states import DeliveryStatus
from mailer.services.campaign_desk import LiveProgress
from mailer.services.checklist import Plan
from mailer.services.listing import CampaignInfo
from mailer.services.subscribers import SubscriberRow, SuppressionRow


def _fields(model: type[BaseModel], record: object, *besides: str) -> dict[str, Any]:
    """The model's fields read off a service record of the same names (but ``besides``)."""
    return {name: getattr(record, name) for name in model.model_fields if name not in besides}


class Campaign(BaseModel):
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
    actions: list[str] = Field(description="What an admin may do with it now (start, pause, ...)")

    @classmethod
    def of(cls, c: CampaignInfo) -> Campaign:
        return cls(**_fields(cls, c, "actions"), actions=[str(a) for a in c.actions])


class Uploaded(BaseModel):
    campaign: Campaign
    warnings: list[str] = Field(description="The issue's parse warnings (a start needs them acknowledged)")


class CheckItem(BaseModel):
    name: str
    ok: bool
    detail: str


class Segment(BaseModel):
    segment: str = Field(description="Its topic keys, comma-joined; 'general' for the general sections only")
    topics: list[str]
    readers: int
    subject: str
    sections: list[str]
    html_bytes: int
    text_bytes: int


class Checklist(BaseModel):
    campaign_id: int
    ready: bool = Field(description="Every item passes: a start needs no override")
    warnings: list[str]
    items: list[CheckItem]
    segments: list[Segment]
    recipients: int

    @classmethod
    def of(cls, campaign_id: int, plan: Plan) -> Checklist:
        return cls(
            campaign_id=campaign_id,
            ready=plan.ready,
            warnings=list(plan.warnings),
            items=[CheckItem(name=c.name, ok=c.ok, detail=c.detail) for c in plan.checks],
            segments=[
                Segment(
                    segment=",".join(sorted(s.segment)) or "general",
                    topics=sorted(s.segment),
                    readers=s.recipients,
                    subject=s.subject,
                    sections=list(s.sections),
                    html_bytes=s.html_bytes,
                    text_bytes=s.text_bytes,
                )  # fmt: skip
                for s in plan.segments
            ],
            recipients=plan.recipients,
        )


class Request(BaseModel):
    """What a client sends: no field it does not know, booleans as booleans."""

    model_config = ConfigDict(extra="forbid")


class StartRequest(Request):
    override: StrictBool = Field(False, description="Start although an item of the checklist fails")


class ScheduleRequest(Request):
    at: datetime = Field(description="When to start, with a UTC offset (ISO 8601), at most a year ahead")
    override: StrictBool = Field(False, description="Schedule although an item of the checklist fails")


class TestSendRequest(Request):
    addresses: list[str] = Field(min_length=1, max_length=20)


class TestSent(BaseModel):
    sent: list[dict[str, str]] = Field(description="(segment, address) pairs sent")


class SegmentCounts(BaseModel):
    segment: str
    readers: int
    by_status: dict[str, int]


class ProgressOut(BaseModel):
    campaign_id: int
    status: str
    reason: str | None
    total: int
    by_status: dict[str, int] = Field(description="Ledger rows per status (queued counts what is left)")
    percent: float
    rate_per_second: float = Field(description="Messages sent per second over the last minute")
    eta_seconds: float | None
    bounce_rate: float
    complaint_rate: float
    bounced: int
    complained: int
    fill_complete: bool
    actions: list[str]
    segments: list[SegmentCounts]
    segments_as_of: datetime | None

    @classmethod
    def of(cls, live: LiveProgress) -> ProgressOut:
        p = live.progress
        by_status = {
            DeliveryStatus.QUEUED: max(0, p.total - p.done),
            DeliveryStatus.SENT: p.sent,
            DeliveryStatus.FAILED: p.failed,
            DeliveryStatus.SKIPPED: p.skipped,
            DeliveryStatus.UNKNOWN: p.unknown,
        }
        return cls(
            campaign_id=p.campaign_id, status=p.status, reason=p.reason, total=p.total,
            by_status={str(k): v for k, v in by_status.items()}, percent=round(live.percent, 2),
            rate_per_second=round(p.rate, 2),
            eta_seconds=None if p.eta_seconds is None else round(p.eta_seconds),
            bounce_rate=p.bounce_rate, complaint_rate=p.complaint_rate, bounced=p.bounced,
            complained=p.complained, fill_complete=p.fill_complete, actions=[str(a) for a in p.actions],
            segments=[
                SegmentCounts(segment=",".join(sorted(s.segment)) or "general", readers=s.recipients,
                              by_status=s.by_status)
                for s in live.segments
            ],
            segments_as_of=live.segments_as_of,
        )  # fmt: skip


class Subscriber(BaseModel):
    id: int
    email: str
    name: str | None
    status: str
    locale: str
    topics: list[str]
    source: str
    created_at: datetime

    @classmethod
    def of(cls, s: SubscriberRow) -> Subscriber:
        return cls(**_fields(cls, s, "topics"), topics=list(s.topics))


class SubscriberEdit(Request):
    topics: list[str] | None = Field(None, max_length=200, description="Exactly these topics (keys or names)")
    locale: str | None = Field(None, max_length=16)
    unsubscribe: StrictBool = Field(False, description="Unsubscribe from everything")


class ImportResult(BaseModel):
    added: int
    updated: int
    unchanged: int
    rejected: int
    rows: int
    rejects: list[dict[str, str | int]] = Field(description="Rejected rows: line and reason (at most 1,000)")


class Suppression(BaseModel):
    id: int
    email: str
    reason: str
    created_at: datetime
    evidence: str | None

    @classmethod
    def of(cls, s: SuppressionRow) -> Suppression:
        return cls(**_fields(cls, s))


class Unsuppress(BaseModel):
    reason: str = Field(min_length=3, max_length=500, description="Why the address may receive mail again")
