"""The typed, frozen events SES feedback becomes (``ses_events.classify`` builds them): a bounce, a
complaint, a delivery, and the event-publishing kinds we read but do not act on (send, reject, delivery
delay, open, click, rendering failure, subscription), or an ``IgnoredEvent`` saying why. Data only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "BOUNCE_TYPES",
    "CAMPAIGN_HEADER",
    "BounceEvent",
    "BounceType",
    "BouncedRecipient",
    "ClickEvent",
    "ComplaintEvent",
    "DeliveryDelayEvent",
    "DeliveryEvent",
    "IgnoredEvent",
    "OpenEvent",
    "RejectEvent",
    "RenderingFailureEvent",
    "SendEvent",
    "SesEvent",
    "SubscriptionEvent",
]

CAMPAIGN_HEADER = "X-Newsletter-Campaign"
BounceType = Literal["Permanent", "Transient", "Undetermined"]
BOUNCE_TYPES: tuple[BounceType, ...] = ("Permanent", "Transient", "Undetermined")


@dataclass(frozen=True)
class BouncedRecipient:
    email: str
    action: str | None = None  # "failed", ...
    status: str | None = None  # SMTP enhanced status, "5.1.1"
    diagnostic_code: str | None = None  # "smtp; 550 5.1.1 user unknown"


@dataclass(frozen=True)
class BounceEvent:
    bounce_type: BounceType
    sub_type: str  # General, NoEmail, Suppressed, OnAccountSuppressionList, MailboxFull, ...
    recipients: tuple[BouncedRecipient, ...]
    feedback_id: str
    timestamp: dt.datetime
    message_id: str
    campaign: str | None = None
    reporting_mta: str | None = None
    kind: Literal["bounce"] = "bounce"


@dataclass(frozen=True)
class ComplaintEvent:
    recipients: tuple[str, ...]
    feedback_type: (
        str | None
    )  # abuse, auth-failure, fraud, not-spam, other, virus (RFC 5965); None: no report
    feedback_id: str
    timestamp: dt.datetime
    message_id: str
    campaign: str | None = None
    sub_type: str | None = None  # None, or OnAccountSuppressionList
    user_agent: str | None = None
    arrival_date: dt.datetime | None = None
    kind: Literal["complaint"] = "complaint"


@dataclass(frozen=True)
class DeliveryEvent:
    recipients: tuple[str, ...]
    timestamp: dt.datetime
    message_id: str
    campaign: str | None = None
    smtp_response: str | None = None
    processing_time_ms: int | None = None
    kind: Literal["delivery"] = "delivery"


@dataclass(frozen=True)
class SendEvent:
    recipients: tuple[str, ...]  # the mail's destination
    timestamp: dt.datetime | None
    message_id: str
    campaign: str | None = None
    kind: Literal["send"] = "send"


@dataclass(frozen=True)
class RejectEvent:
    reason: str  # SES refused to send, e.g. "Bad content" (a virus): not about a recipient
    recipients: tuple[str, ...]
    message_id: str
    campaign: str | None = None
    kind: Literal["reject"] = "reject"


@dataclass(frozen=True)
class DeliveryDelayEvent:
    delay_type: str
    recipients: tuple[BouncedRecipient, ...]
    timestamp: dt.datetime | None
    expiration_time: dt.datetime | None
    message_id: str
    campaign: str | None = None
    kind: Literal["delivery_delay"] = "delivery_delay"


@dataclass(frozen=True)
class OpenEvent:
    recipients: tuple[str, ...]
    timestamp: dt.datetime | None
    message_id: str
    campaign: str | None = None
    user_agent: str | None = None
    kind: Literal["open"] = "open"


@dataclass(frozen=True)
class ClickEvent:
    link: str
    recipients: tuple[str, ...]
    timestamp: dt.datetime | None
    message_id: str
    campaign: str | None = None
    kind: Literal["click"] = "click"


@dataclass(frozen=True)
class RenderingFailureEvent:
    error_message: str
    template_name: str | None
    message_id: str
    campaign: str | None = None
    kind: Literal["rendering_failure"] = "rendering_failure"


@dataclass(frozen=True)
class SubscriptionEvent:
    """An SES-managed contact list changed (someone used SES's own List-Unsubscribe)."""

    recipients: tuple[str, ...]
    contact_list: str | None
    unsubscribe_all: bool  # the new preferences opt out of every topic of that list
    source: str | None
    timestamp: dt.datetime | None
    message_id: str
    campaign: str | None = None
    kind: Literal["subscription"] = "subscription"


@dataclass(frozen=True)
class IgnoredEvent:
    reason: str
    type: str  # the notificationType/eventType as received
    message_id: str | None = None
    kind: Literal["ignored"] = "ignored"


SesEvent = (
    BounceEvent
    | ComplaintEvent
    | DeliveryEvent
    | SendEvent
    | RejectEvent
    | DeliveryDelayEvent
    | OpenEvent
    | ClickEvent
    | RenderingFailureEvent
    | SubscriptionEvent
    | IgnoredEvent
)
