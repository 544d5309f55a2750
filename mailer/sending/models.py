"""Campaign tables on the shared declarative Base: campaigns, their stored segment renderings, the ledger.

The ledger (``deliveries``) has one row per (campaign, subscriber), unique, and is the only record of what
was sent. Its statuses and a campaign's are the state machines of states.py; ``sending`` rows carry a
claim id and a lease time (``claimed_at``, renewed while the worker works) so a killed worker's rows can
be found and resolved (``unknown`` when the policy is not to resend). Schema: migrations 0002_campaigns,
0004_ledger_hot_updates and 0005_status_checks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailer.sending.states import Audience, CampaignStatus, DeliveryStatus
from subscribers.db import Base, BigId, UtcDateTime, one_of, utcnow

__all__ = [
    "CAMPAIGN_STATUSES",
    "DELIVERY_STATUSES",
    "Campaign",
    "Delivery",
    "SegmentRendering",
    "segment_key",
]

CAMPAIGN_STATUSES = tuple(CampaignStatus)
DELIVERY_STATUSES = tuple(DeliveryStatus)


def segment_key(segment: frozenset[str]) -> str:
    """The stored name of a segment: its topic keys sorted, comma-joined ('' is the general segment)."""
    return ",".join(sorted(segment))


class Campaign(Base):
    __tablename__ = "campaigns"
    # sqlite_autoincrement: a campaign id, which view links carry, is never given to another campaign
    __table_args__ = (
        one_of("status", CAMPAIGN_STATUSES),
        one_of("audience", tuple(Audience)),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_source: Mapped[str] = mapped_column(String(500))  # file name, for people
    issue_markdown: Mapped[str] = mapped_column(Text)
    issue_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the Markdown
    subject: Mapped[str] = mapped_column(String(500))
    audience: Mapped[str] = mapped_column(String(16), default=Audience.SUBSCRIBERS)
    transport: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT)
    status_reason: Mapped[str | None] = mapped_column(Text)  # why it paused or was cancelled
    nonce: Mapped[str] = mapped_column(String(16))  # part of every Message-ID of this campaign
    queued_all: Mapped[bool] = mapped_column(Boolean, default=False)  # the audience is fully in the ledger
    total: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    unknown: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # SES feedback applied to this campaign's messages: its bounce and complaint rates (campaign health)
    bounced: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    complained: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    scheduled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    fill_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # the ledger fill's last chunk


class SegmentRendering(Base):
    """A segment's email as rendered once when the campaign started (placeholders still in it)."""

    __tablename__ = "segment_renderings"
    __table_args__ = (UniqueConstraint("campaign_id", "segment_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    segment_key: Mapped[str] = mapped_column(String(1000))
    subject: Mapped[str] = mapped_column(String(500))
    preheader: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    section_headings: Mapped[str] = mapped_column(Text)  # JSON list
    recipients: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def segment(self) -> frozenset[str]:
        return frozenset(k for k in self.segment_key.split(",") if k)


class Delivery(Base):
    __tablename__ = "deliveries"
    # no index on status: claims and records then update rows in place (migration 0004, fillfactor)
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id"),
        one_of("status", DELIVERY_STATUSES),
        {"postgresql_with": {"fillfactor": 75}},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    # no foreign key: the ledger is history and outlives a deleted subscriber
    subscriber_id: Mapped[int] = mapped_column(BigId)
    segment_id: Mapped[int] = mapped_column(BigId, ForeignKey("segment_renderings.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.QUEUED)
    claim: Mapped[str | None] = mapped_column(String(32))  # which task execution holds a 'sending' row
    message_id: Mapped[str | None] = mapped_column(String(200), index=True)  # SES MessageId
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    error_code: Mapped[str | None] = mapped_column(String(64))  # the provider's cause of a failure
    queued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
