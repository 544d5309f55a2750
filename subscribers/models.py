"""The subscriber tables: subscribers, topics, who follows what, the suppression list and the event log."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from subscribers.db import Base, BigId, UtcDateTime, one_of, utcnow
from subscribers.states import SubscriberStatus, SuppressionReason

__all__ = [
    "EVENT_KINDS",
    "LOCALES",
    "STATUSES",
    "SUPPRESSION_REASONS",
    "Subscriber",
    "SubscriberEvent",
    "Suppression",
    "Topic",
    "subscriber_topics",
]

STATUSES = tuple(SubscriberStatus)
SUPPRESSION_REASONS = tuple(SuppressionReason)
LOCALES = ("zh", "en")
EVENT_KINDS = (
    "subscribed",  # created (signup, import, CLI add)
    "confirmation_sent",
    "confirmed",
    "topics_changed",
    "locale_changed",
    "updated",  # name or other details changed by an import
    "unsubscribed",
    "rejoined",  # an unsubscribe undone through the reader's own signed link
    "soft_bounce",
    "bounced",
    "complained",
    "suppressed",
    "unsuppressed",
    "removed",
)

subscriber_topics = Table(
    "subscriber_topics",
    Base.metadata,
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("topic_id", Integer, ForeignKey("topics.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_subscriber_topics_topic_id", "topic_id"),
    sqlite_with_rowid=False,
)


class Topic(Base):
    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_zh: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def new_salt() -> str:
    return secrets.token_hex(8)


class Subscriber(Base):
    __tablename__ = "subscribers"
    # sqlite_autoincrement: SQLite never gives a deleted row's id to a new one (PostgreSQL's sequences
    # never do): an id, like a link, names one person for good
    __table_args__ = (one_of("status", STATUSES), {"sqlite_autoincrement": True})
    # No index on status: the audience scan walks the primary key (id order) and most rows are active;
    # every extra index costs each imported row a B-tree insert.

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))  # as given (normalised domain)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)  # subscribers.normalise.email_key
    name: Mapped[str | None] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(8), default="zh")
    status: Mapped[str] = mapped_column(String(16), default=SubscriberStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(32), default="cli")
    soft_bounces: Mapped[int] = mapped_column(Integer, default=0)
    # When the last confirmation email went out: the per-address signup rate limit reads it.
    confirm_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # When the last "send me my preferences link" email went out (at most one per address per hour).
    link_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # A signup's choices for an address that already has a row: applied when its link is confirmed.
    requested_topics: Mapped[str | None] = mapped_column(Text)  # topic keys, comma-separated
    requested_locale: Mapped[str | None] = mapped_column(String(8))
    # Random per row, covered by every link's signature (subscribers.tokens): links name one person.
    token_salt: Mapped[str] = mapped_column(String(32), default=new_salt)

    topics: Mapped[list[Topic]] = relationship(secondary=subscriber_topics, order_by=Topic.key)

    @property
    def topic_keys(self) -> frozenset[str]:
        return frozenset(t.key for t in self.topics)


class Suppression(Base):
    """An address no send may ever reach, whether or not a subscriber row exists for it."""

    __tablename__ = "suppressions"
    __table_args__ = (one_of("reason", SUPPRESSION_REASONS),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    evidence: Mapped[str | None] = mapped_column(Text)  # e.g. the SES feedback id


class SubscriberEvent(Base):
    """Append-only audit log: one row per change of a subscriber (never updated, never deleted)."""

    __tablename__ = "subscriber_events"
    __table_args__ = (Index("ix_subscriber_events_subscriber_id_id", "subscriber_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("subscribers.id", ondelete="SET NULL")
    )
    email_key: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)  # JSON
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
