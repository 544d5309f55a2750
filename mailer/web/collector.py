"""Metrics read when Prometheus scrapes: the database's (subscribers by status, suppressions, each watched
campaign's messages, bounce and complaint rates) and the Celery queue's depth, through
``mailer.services.metrics``; and ``scrape_registry``, what the web app's ``GET /metrics`` answers.

A database or Redis that cannot answer does not fail the scrape: ``newsletter_database_up`` says 0 (the
process's own counters are still shown) and the queue depth is left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mailer.services import metrics as service
from mailer.services.env import AppEnv
from mailer.web.deps import read_only

__all__ = ["StoreCollector", "scrape_registry"]

log = logging.getLogger(__name__)

_CAMPAIGN_STATUSES = ("sent", "failed", "skipped", "unknown")


class StoreCollector(Collector):
    """The database's and the queue's metrics, read at each scrape."""

    def __init__(self, env: AppEnv) -> None:
        self.env = env

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("newsletter_database_up", "1 when the database answered this scrape")
        try:
            with read_only(self.env) as session:  # GET /metrics: a GET writes nothing
                snapshot = service.snapshot(session)
        except Exception as exc:  # the scrape still shows the process's counters
            log.warning("metrics: the database did not answer: %s", " ".join(str(exc).split())[:300])
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from _store_metrics(snapshot)
        depth = self._queue_depth()
        if depth is not None:
            queue = GaugeMetricFamily(
                "newsletter_queue_depth", "Batch tasks waiting on the broker for a worker", labels=["queue"]
            )
            queue.add_metric([self.env.celery().conf.task_default_queue], depth)
            yield queue

    def _queue_depth(self) -> int | None:
        try:
            return service.queue_depth(self.env)
        except Exception as exc:
            log.warning("metrics: the broker did not answer: %s", " ".join(str(exc).split())[:300])
            return None


def _store_metrics(snapshot: service.Snapshot) -> Iterator[Metric]:
    subscribers = GaugeMetricFamily("newsletter_subscribers", "Subscribers by status", labels=["status"])
    for status, count in sorted(snapshot.subscribers.items()):
        subscribers.add_metric([status], count)
    yield subscribers
    yield GaugeMetricFamily(
        "newsletter_suppressed_addresses",
        "Addresses on the suppression list (no send reaches them)",
        value=snapshot.suppressed,
    )
    campaign, transport = ["campaign"], ["campaign", "transport"]
    info = GaugeMetricFamily(
        "newsletter_campaign_info", "1 per watched campaign: its status", labels=[*transport, "status"]
    )
    recipients = GaugeMetricFamily(
        "newsletter_campaign_recipients", "Rows of the campaign's ledger (its audience)", labels=transport
    )
    messages = GaugeMetricFamily(
        "newsletter_campaign_messages",
        "The campaign's messages by outcome, from its ledger counters (all processes together)",
        labels=[*transport, "status"],
    )
    bounces = GaugeMetricFamily(
        "newsletter_campaign_bounces", "Permanent bounces of the campaign", labels=campaign
    )
    complaints = GaugeMetricFamily(
        "newsletter_campaign_complaints", "Complaints about the campaign", labels=campaign
    )
    bounce_rate = GaugeMetricFamily(
        "newsletter_campaign_bounce_rate",
        "Permanent bounces per message sent (SES reviews accounts near 0.05)",
        labels=campaign,
    )
    complaint_rate = GaugeMetricFamily(
        "newsletter_campaign_complaint_rate",
        "Complaints per message sent (SES reviews accounts near 0.001)",
        labels=campaign,
    )
    for row in snapshot.campaigns:
        key = [str(row.id)]
        info.add_metric([*key, row.transport, row.status], 1)
        recipients.add_metric([*key, row.transport], row.total)
        counts = {"sent": row.sent, "failed": row.failed, "skipped": row.skipped, "unknown": row.unknown}
        for status in _CAMPAIGN_STATUSES:
            messages.add_metric([*key, row.transport, status], counts[status])
        bounces.add_metric(key, row.bounced)
        complaints.add_metric(key, row.complained)
        bounce_rate.add_metric(key, row.bounced / row.sent if row.sent else 0.0)
        complaint_rate.add_metric(key, row.complained / row.sent if row.sent else 0.0)
    yield from (info, recipients, messages, bounces, complaints, bounce_rate, complaint_rate)


class _ThisProcess(Collector):
    """prometheus_client's default registry (this process's counters, process and GC metrics)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps its values in PROMETHEUS_MULTIPROC_DIR (it reads the variable at
    import): several web processes behind one port, their counters added up at each scrape."""
    return values.ValueClass is not values.MutexValue


def scrape_registry(env: AppEnv) -> CollectorRegistry:
    """What ``GET /metrics`` shows: this process's metrics (in multiprocess mode, every process's that
    writes to that folder) and the store's."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(StoreCollector(env))
    return registry
