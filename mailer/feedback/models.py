"""The raw feedback log: every SNS message (or local notification) stored once, keyed by its MessageId.

The unique ``message_id`` is what makes a duplicate delivery a no-op: the insert is the first statement of
the transaction that applies the message, so a second copy fails on the constraint and changes nothing.
``feedback_id`` (SES's id of one bounce or complaint, also unique) catches the same bounce arriving twice
under two SNS messages, e.g. through an identity notification and a configuration-set event.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from subscribers.db import Base, UtcDateTime, utcnow

__all__ = ["FeedbackMessage"]

BigId = BigInteger().with_variant(Integer(), "sqlite")


class FeedbackMessage(Base):
    __tablename__ = "feedback_messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), unique=True)  # SNS MessageId, or "local-<sha256>"
    feedback_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40))  # Notification, SubscriptionConfirmation, ..., or "SES"
    topic_arn: Mapped[str | None] = mapped_column(String(256))
    verified: Mapped[bool] = mapped_column(Boolean)  # False only for explicitly unverified local input
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    body: Mapped[str] = mapped_column(Text)  # exactly as received
    outcome: Mapped[str | None] = mapped_column(Text)  # JSON: the changes made, or the error
