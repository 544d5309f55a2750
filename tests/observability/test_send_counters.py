"""The send path's counters in this process (embedded mode): messages by outcome, and the waits for the
transport's rate limiter when the rate is the limit."""

from __future__ import annotations

from prometheus_client import REGISTRY
from support.paths import REFERENCE_ISSUE

from mailer.services import drafts, lifecycle
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.preferences import add_subscriber

RATE = 5.0  # messages per second, a bucket of one: every message after the first waits (at most 1/RATE)


def _counts() -> dict[str, float]:
    def get(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, {**labels, "transport": "file"}) or 0.0

    return {
        "sent": get("newsletter_messages_total", status="sent"),
        "skipped": get("newsletter_messages_total", status="skipped"),
        "waits": get("newsletter_rate_limit_waits_total"),
        "waited": get("newsletter_rate_limit_wait_seconds_total"),
    }


def test_messages_and_rate_limiter_waits_are_counted(tmp_path):
    settings = Settings(data_dir=tmp_path, secret_key="counters-secret", file_send_rate=RATE, rate_burst=1)
    env = AppEnv.from_settings(settings)
    try:
        with env.transaction() as session:
            for i in range(6):
                add_subscriber(
                    session, f"reader{i}@example.org", topics=["nova"], source="test", now=utcnow()
                )
        draft = drafts.read_draft(env, REFERENCE_ISSUE)
        with env.transaction() as session:
            campaign_id = lifecycle.create(session, draft, now=env.now()).id
        before = _counts()
        lifecycle.start_stepwise(env, campaign_id)  # no broker: sent here, inline
        after = _counts()
    finally:
        env.close()
    assert after["sent"] - before["sent"] == 6
    assert after["skipped"] - before["skipped"] == 0
    assert after["waits"] - before["waits"] == 5  # the bucket holds one token: five messages waited
    # each wait is what the bucket lacks: 1/RATE less the time the message before it took
    assert 5 / RATE * 0.5 <= after["waited"] - before["waited"] <= 5 / RATE + 1e-6
