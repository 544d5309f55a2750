"""``GET /metrics`` of the web app under a real uvicorn process (tests/plugins/web.py), read with
prometheus_client's own parser, after a small campaign sent into the app's database (embedded mode, in
this process) and signed SNS notifications POSTed to the app: the counts are exact. The endpoint refuses
what it should; the app's log is JSON lines carrying the campaign and message ids."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from support.paths import REFERENCE_ISSUE

from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.sending.models import Delivery
from mailer.services import drafts, lifecycle
from mailer.settings import Settings
from mailer.web.metrics import access
from subscribers.db import utcnow
from subscribers.preferences import add_subscriber

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
READERS = [f"reader{i}@example.org" for i in range(6)]


def scrape(url: str, **headers: str) -> Samples:
    response = httpx.get(url + "/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def by_labels(samples: Samples, name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """The samples of one metric, by the values of its labels ``keys``."""
    found = {}
    for (sample_name, label_set), count in samples.items():
        if sample_name == name:
            labels = dict(label_set)
            found[tuple(labels[key] for key in keys)] = count
    return found


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def _sent_here() -> float:
    labels = {"status": "sent", "transport": "file"}
    return REGISTRY.get_sample_value("newsletter_messages_total", labels) or 0


def test_metrics_count_a_campaign_and_its_notifications(tmp_path):
    from plugins.web import start_web

    web = start_web(tmp_path / "web", NEWSLETTER_LOG_FORMAT="json")
    env = web.env  # the app's database, file outbox and no broker: this process sends, inline
    try:
        with env.transaction() as session:
            for address in READERS:
                add_subscriber(session, address, topics=["nova"], source="test", now=utcnow())
            add_subscriber(session, "waiting@example.org", status="pending", source="test", now=utcnow())
            add_subscriber(session, "gone@example.org", status="unsubscribed", source="test", now=utcnow())
        sent_before = _sent_here()
        draft = drafts.read_draft(env, REFERENCE_ISSUE)
        with env.transaction() as session:
            campaign_id = lifecycle.create(session, draft, now=env.now()).id
        lifecycle.start_stepwise(env, campaign_id)
        assert _sent_here() - sent_before == len(READERS)  # the send path's counter, in this process

        with env.sessions() as session:
            sent = select(Delivery.email, Delivery.message_id).where(Delivery.campaign_id == campaign_id)
            ids = {email: str(message_id) for email, message_id in session.execute(sent)}
        now = dt.datetime.now(dt.UTC)
        bounce = web.signer.envelope(
            bounce_notification(READERS[0], message_id=ids[READERS[0]], at=now, campaign=str(campaign_id))
        )
        complaint = web.signer.envelope(
            complaint_notification(READERS[1], message_id=ids[READERS[1]], at=now, campaign=str(campaign_id))
        )
        forged = json.loads(
            web.signer.envelope(complaint_notification(READERS[2], message_id=ids[READERS[2]], at=now))
        )
        forged["Message"] = forged["Message"].replace(READERS[2], READERS[3])  # signed for someone else
        answers = [
            web.post_sns(bounce),
            web.post_sns(complaint),
            web.post_sns(bounce),  # SNS delivers again
            web.post_sns(json.dumps(forged)),
            web.post_sns(b"not json"),
        ]
        assert [(r.status_code, r.json().get("status")) for r in answers] == [
            (200, "applied"),
            (200, "applied"),
            (200, "duplicate"),
            (403, None),
            (400, None),
        ]

        samples = scrape(web.url)
        key = str(campaign_id)
        assert value(samples, "newsletter_database_up") == 1
        # the webhook's counters (the web process's own)
        assert by_labels(samples, "newsletter_webhook_messages_total", "type", "outcome") == {
            ("Notification", "verified"): 3,  # the bounce, the complaint, the bounce again
            ("Notification", "refused"): 1,  # the forged one
            ("Notification", "malformed"): 1,
        }
        assert by_labels(samples, "newsletter_feedback_events_total", "kind", "result") == {
            ("bounce", "applied"): 1,
            ("complaint", "applied"): 1,
            ("bounce", "duplicate"): 1,
        }
        # read from the database at the scrape
        subscribers = {
            status: value(samples, "newsletter_subscribers", status=status)
            for status in ("active", "pending", "unsubscribed", "bounced", "complained")
        }
        assert subscribers == {"active": 4, "pending": 1, "unsubscribed": 1, "bounced": 1, "complained": 1}
        assert value(samples, "newsletter_suppressed_addresses") == 2
        file_campaign = {"campaign": key, "transport": "file"}
        messages = {
            status: value(samples, "newsletter_campaign_messages", **file_campaign, status=status)
            for status in ("sent", "failed", "skipped", "unknown")
        }
        assert messages == {"sent": 6, "failed": 0, "skipped": 0, "unknown": 0}
        assert value(samples, "newsletter_campaign_recipients", **file_campaign) == 6
        assert value(samples, "newsletter_campaign_info", **file_campaign, status="done") == 1
        assert value(samples, "newsletter_campaign_bounces", campaign=key) == 1
        assert value(samples, "newsletter_campaign_complaints", campaign=key) == 1
        assert value(samples, "newsletter_campaign_bounce_rate", campaign=key) == pytest.approx(1 / 6)
        assert value(samples, "newsletter_campaign_complaint_rate", campaign=key) == pytest.approx(1 / 6)
        assert "newsletter_queue_depth" not in names(samples)  # embedded mode: no queue
        assert "process_cpu_seconds_total" in names(samples)  # the process collectors come along

        # through a proxy, a loopback client is no longer taken for a local one
        assert httpx.get(web.url + "/metrics", headers={"x-forwarded-for": "203.0.113.9"}).status_code == 403
        assert httpx.get(web.url + "/metrics", headers={"forwarded": "for=203.0.113.9"}).status_code == 403

        # the log: JSON lines, the applied notification's carrying its campaign and SES message id
        lines = [json.loads(line) for line in web.log_text().splitlines() if line.strip()]
        assert lines and all(line["process"] == "web" for line in lines)
        assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's own lines too
        applied = [
            line
            for line in lines
            if line["logger"] == "mailer.web.webhooks" and line.get("message_id") == ids[READERS[0]]
        ]
        assert applied and all(line["campaign_id"] == campaign_id for line in applied), applied
        assert any(line["level"] == "WARNING" and "refused" in line["message"] for line in lines)
    finally:
        web.stop()
        web.trap.close()


def test_the_endpoint_takes_a_bearer_token_when_one_is_set(tmp_path):
    from plugins.web import start_web

    web = start_web(tmp_path / "web", NEWSLETTER_METRICS_TOKEN="metrics-secret")
    try:
        basic = {"authorization": "Basic bWV0cmljcy1zZWNyZXQ="}  # the right secret, the wrong scheme
        for headers in ({}, {"authorization": "Bearer wrong"}, basic):
            refused = httpx.get(web.url + "/metrics", headers=headers)  # loopback, but no good token
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert "newsletter_" not in refused.text
        samples = scrape(web.url, authorization="Bearer metrics-secret")
        assert value(samples, "newsletter_database_up") == 1
        through_proxy = {"authorization": "Bearer metrics-secret", "x-forwarded-for": "203.0.113.9"}
        assert httpx.get(web.url + "/metrics", headers=through_proxy).status_code == 200
    finally:
        web.stop()
        web.trap.close()


@pytest.mark.parametrize(
    ("settings", "client", "headers", "verdict"),
    [
        ({}, "127.0.0.1", {}, "ok"),
        ({}, "::1", {}, "ok"),
        ({}, "192.0.2.7", {}, "forbidden"),  # the default lets loopback in, nobody else
        ({}, "127.0.0.1", {"x-real-ip": "192.0.2.7"}, "forbidden"),
        ({}, None, {}, "forbidden"),
        ({}, "not-an-address", {}, "forbidden"),
        ({"metrics_networks": "10.0.0.0/8"}, "10.1.2.3", {}, "ok"),
        ({"metrics_networks": "10.0.0.0/8"}, "127.0.0.1", {}, "forbidden"),
        ({"metrics_networks": ""}, "127.0.0.1", {}, "forbidden"),  # empty: nobody without a token
        ({"metrics_token": "t"}, "127.0.0.1", {}, "unauthorized"),  # a token: asked of everyone
        ({"metrics_token": "t"}, "192.0.2.7", {"authorization": "Bearer t"}, "ok"),
        ({"metrics_token": "t"}, "192.0.2.7", {"authorization": "bearer  t "}, "ok"),
        ({"metrics_token": "t"}, "127.0.0.1", {"authorization": "Bearer tt"}, "unauthorized"),
    ],
)
def test_who_may_read_the_metrics(settings, client, headers, verdict, monkeypatch):
    for name, setting in settings.items():
        monkeypatch.setenv(f"NEWSLETTER_{name.upper()}", setting)
    assert access(Settings(), client, headers) == verdict
