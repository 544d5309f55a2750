"""What applying one feedback message did, in types and in lines for a human (the CLI, the demo, logs).

``Change`` is one policy action's effect ("a@x.org: suppressed (hard_bounce), status bounced");
``FeedbackResult`` is one message's answer: its key, whether it was verified, a duplicate, its events and
changes. ``UnusablePayload`` is the answer of a message stored but holding no SES notification we read.
Pure: no database."""

from __future__ import annotations

from dataclasses import dataclass, field

from mailer.errors import InputError
from mailer.feedback.events import BounceEvent, ComplaintEvent, IgnoredEvent, SesEvent
from mailer.feedback.policy import Action, LedgerMark

__all__ = ["Change", "FeedbackResult", "UnusablePayload"]


class UnusablePayload(InputError):
    """A message whose payload is no SES notification we read: stored once (its redeliveries store
    nothing) and answered with this error each time, never as applied; authentic if it was verified: a
    webhook acknowledges it, since a retry cannot make it readable."""


@dataclass(frozen=True)
class Change:
    action: Action
    changed: bool
    note: str  # one line for a human: "a@x.org: suppressed (hard_bounce), status bounced"


@dataclass(frozen=True)
class FeedbackResult:
    key: str  # the dedupe key: SNS MessageId, or local-<sha256> for a bare notification
    kind: str  # SNS Type, or "SES" for a bare notification
    verified: bool
    duplicate: bool
    events: tuple[SesEvent, ...] = ()
    changes: tuple[Change, ...] = ()
    subscribe_url: str | None = None  # a SubscriptionConfirmation: the web side confirms by GETting it
    topic_arn: str | None = None
    notes: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """What happened, for the CLI and the demo."""
        head = f"{self.kind} {self.key} ({'verified' if self.verified else 'UNVERIFIED, local'})"
        if self.duplicate:
            return [f"{head}: duplicate, already applied; nothing changed"]
        out = [head]
        out += [f"  event: {_describe(e)}" for e in self.events]
        out += [f"  {_label(c)}: {c.note}" for c in self.changes]
        out += [f"  {n}" for n in self.notes]
        if self.events and not self.changes:
            out.append("  no action for these events")
        return out


def _label(change: Change) -> str:
    if isinstance(change.action, LedgerMark):
        return "ledger"
    return "changed" if change.changed else "no change"


def _describe(event: SesEvent) -> str:
    if isinstance(event, IgnoredEvent):
        return f"ignored: {event.reason}"
    campaign = f", campaign {event.campaign}" if event.campaign else ""
    if isinstance(event, BounceEvent):
        who = ", ".join(r.email for r in event.recipients)
        return f"{event.bounce_type}/{event.sub_type} bounce of {who} (message {event.message_id}{campaign})"
    if isinstance(event, ComplaintEvent):
        who = ", ".join(event.recipients)
        kind = event.feedback_type or "no report"
        return f"complaint ({kind}) from {who} (message {event.message_id}{campaign})"
    return event.kind.replace("_", " ")
