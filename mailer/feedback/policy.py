"""Feedback events -> actions on the lists. Pure; the one place that decides what a bounce means.

| event                                   | actions                                                    |
|-----------------------------------------|------------------------------------------------------------|
| bounce Permanent                        | Suppress(hard_bounce) per recipient, ledger "bounced"      |
| bounce Transient / Undetermined         | SoftBounce per recipient (suppressed at the limit)         |
| complaint (any feedback type but        | Unsubscribe + Suppress(complaint) per recipient,           |
|   ``not-spam``)                         |   ledger "complained"                                      |
| complaint ``not-spam``                  | nothing (the reader said the opposite of a complaint)      |
| SES subscription, unsubscribeAll        | Unsubscribe per recipient (an opt-out is always honoured)  |
| delivery                                | ResetSoftBounces, ledger "delivered"                       |
| send, reject, delay, open, click, ...   | nothing                                                    |
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from mailer.feedback.events import (
    BounceEvent,
    ComplaintEvent,
    DeliveryEvent,
    SesEvent,
    SubscriptionEvent,
)

__all__ = [
    "Action",
    "LedgerMark",
    "SoftBounce",
    "Suppress",
    "Unsubscribe",
    "actions_for",
    "actions_for_event",
]

UNSUBSCRIBE_SOURCE = "ses_feedback"


@dataclass(frozen=True)
class Suppress:
    email: str
    reason: Literal["hard_bounce", "complaint"]
    evidence: str  # one line: what SES said, with its feedback id


@dataclass(frozen=True)
class SoftBounce:
    email: str
    evidence: str


@dataclass(frozen=True)
class Unsubscribe:
    email: str
    source: str = UNSUBSCRIBE_SOURCE


@dataclass(frozen=True)
class ResetSoftBounces:
    """A delivery went through: soft bounces only count when they come in a row."""

    email: str


@dataclass(frozen=True)
class LedgerMark:
    """Mark the ledger row of the original message (deliveries.message_id) for this recipient."""

    message_id: str
    email: str
    outcome: Literal["bounced", "soft_bounced", "complained", "delivered"]  # bounced: a permanent bounce


Action = Suppress | SoftBounce | Unsubscribe | ResetSoftBounces | LedgerMark


def actions_for(events: Iterable[SesEvent]) -> list[Action]:
    """Every action the events call for, in order, without repeats."""
    seen: set[Action] = set()
    out: list[Action] = []
    for event in events:
        for action in actions_for_event(event):
            if action not in seen:
                seen.add(action)
                out.append(action)
    return out


def actions_for_event(event: SesEvent) -> list[Action]:
    if isinstance(event, BounceEvent):
        return _bounce(event)
    if isinstance(event, ComplaintEvent):
        return _complaint(event)
    if isinstance(event, SubscriptionEvent):
        return (
            [Unsubscribe(email, source="ses_subscription") for email in event.recipients]
            if (event.unsubscribe_all)
            else []
        )
    if isinstance(event, DeliveryEvent):
        return [
            action
            for email in event.recipients
            for action in (ResetSoftBounces(email), LedgerMark(event.message_id, email, "delivered"))
        ]
    return []


def _bounce(event: BounceEvent) -> list[Action]:
    actions: list[Action] = []
    for recipient in event.recipients:
        detail = (
            "; ".join(part for part in (recipient.status, recipient.diagnostic_code) if part)
            or "no diagnostic"
        )
        evidence = f"SES {event.bounce_type}/{event.sub_type} bounce {event.feedback_id}: {detail}"
        if event.bounce_type == "Permanent":
            actions.append(Suppress(recipient.email, "hard_bounce", evidence))
        else:  # Transient, and Undetermined: SES could not tell, so do not lose the address on one
            actions.append(SoftBounce(recipient.email, evidence))
        permanent = event.bounce_type == "Permanent"
        actions.append(
            LedgerMark(event.message_id, recipient.email, "bounced" if permanent else "soft_bounced")
        )
    return actions


def _complaint(event: ComplaintEvent) -> list[Action]:
    if event.feedback_type == "not-spam":
        return []
    actions: list[Action] = []
    kind = event.feedback_type or "no feedback report"
    for email in event.recipients:
        evidence = f"SES complaint {event.feedback_id}: {kind}"
        actions += [
            Unsubscribe(email),  # first: it only moves an active subscriber, the suppression then wins
            Suppress(email, "complaint", evidence),
            LedgerMark(event.message_id, email, "complained"),
        ]
    return actions
