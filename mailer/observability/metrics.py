"""The process's own metrics: counters the send path and the webhook increment as they work.

They live in prometheus_client's default registry, so whatever serves this process's metrics (the web
app's ``GET /metrics``, a worker's port) shows them with the process collectors. What the database holds
(subscribers, campaign counters and rates) and the Celery queue are read at scrape time instead
(``mailer.web.collector``); a rate is PromQL's work: ``rate(newsletter_messages_total{status="sent"}[1m])``.

The send loop counts once per recorded group of results (every 50 messages or 0.5 s), with the label
children of its transport looked up once (``send_counters``): no label lookup per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from prometheus_client import Counter, disable_created_metrics

__all__ = [
    "FEEDBACK_EVENTS",
    "MESSAGES",
    "PROVIDER_THROTTLES",
    "RATE_LIMIT_WAITS",
    "RATE_LIMIT_WAIT_SECONDS",
    "WEBHOOK_MESSAGES",
    "SendCounters",
    "count_feedback",
    "count_webhook_message",
    "send_counters",
]

disable_created_metrics()  # no *_created series beside every counter: they double the series for nothing

MESSAGES = Counter(
    "newsletter_messages",
    "Campaign messages this process finished, by outcome (sent, failed, skipped at send time) and transport",
    ["status", "transport"],
)
RATE_LIMIT_WAITS = Counter(
    "newsletter_rate_limit_waits",
    "Times a sender waited for its transport's shared rate limiter (the send rate is at its limit)",
    ["transport"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "newsletter_rate_limit_wait_seconds",
    "Seconds senders spent waiting for their transport's rate limiter",
    ["transport"],
)
PROVIDER_THROTTLES = Counter(
    "newsletter_provider_throttles",
    "Throttling answers of the provider (SES 'Maximum sending rate exceeded', ...), each retried",
    ["transport"],
)
WEBHOOK_MESSAGES = Counter(
    "newsletter_webhook_messages",
    "SNS messages the webhook received, by SNS type and verification outcome (verified, refused: "
    "signature, certificate, topic or age; malformed)",
    ["type", "outcome"],
)
FEEDBACK_EVENTS = Counter(
    "newsletter_feedback_events",
    "SES events of verified notifications, by kind (bounce, complaint, delivery, ...) and result "
    "(applied, duplicate: a redelivery that changed nothing)",
    ["kind", "result"],
)

# SNS's message types; anything else a client claims is counted as "other" (bounded label values)
_SNS_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})


@dataclass(frozen=True, slots=True)
class SendCounters:
    """The counters of one transport, their label children resolved once."""

    sent: Counter
    failed: Counter
    skipped: Counter
    waits: Counter
    wait_seconds: Counter
    throttles: Counter

    def record(self, sent: int, failed: int) -> None:
        """A recorded group of results (a handful of additions, whatever the group's size)."""
        if sent:
            self.sent.inc(sent)
        if failed:
            self.failed.inc(failed)

    def waited(self, seconds: float) -> None:
        self.waits.inc()
        self.wait_seconds.inc(seconds)


@cache
def send_counters(transport: str) -> SendCounters:
    """The counters of ``transport`` (one object per transport name and process)."""
    return SendCounters(
        sent=MESSAGES.labels("sent", transport),
        failed=MESSAGES.labels("failed", transport),
        skipped=MESSAGES.labels("skipped", transport),
        waits=RATE_LIMIT_WAITS.labels(transport),
        wait_seconds=RATE_LIMIT_WAIT_SECONDS.labels(transport),
        throttles=PROVIDER_THROTTLES.labels(transport),
    )


def count_webhook_message(sns_type: str | None, outcome: str) -> None:
    """One message at the webhook: its SNS type (as claimed, when it could not be verified) and outcome."""
    WEBHOOK_MESSAGES.labels(sns_type if sns_type in _SNS_TYPES else "other", outcome).inc()


class _Event(Protocol):
    @property
    def kind(self) -> str: ...


def count_feedback(events: Iterable[_Event], *, duplicate: bool) -> None:
    """The SES events of one stored (or, ``duplicate``, already stored) notification."""
    result = "duplicate" if duplicate else "applied"
    for event in events:
        FEEDBACK_EVENTS.labels(event.kind, result).inc()
