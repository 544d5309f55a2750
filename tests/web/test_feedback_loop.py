"""The whole loop with real parts: campaigns sent by real Celery workers through moto's SES server; SES
bounces and complaints for their messages, signed as SNS notifications with a key and certificate made
here, POSTed to the app under uvicorn on the same PostgreSQL database; the next campaign skips the
suppressed readers, and a campaign whose complaint rate passes the limit pauses itself."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import func, select
from support.paths import REFERENCE_ISSUE
from support.services import REDIS_URL
from support.waiting import wait_until

from mailer.feedback.models import FeedbackMessage
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.sending.models import Campaign, Delivery
from mailer.services import drafts, lifecycle
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.models import Subscriber, Suppression
from subscribers.preferences import add_subscriber

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.postgres]

SECRET = "web-test-secret-key"  # the live app's (plugins/web.py): links the workers sign must read there
READERS = [f"reader{i:02d}@example.org" for i in range(30)]
BOUNCER, COMPLAINER = "bouncer@example.org", "complainer@example.org"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_bounces_and_complaints_close_the_loop(tmp_path, database_url, redis_prefix, start_workers, moto_ses):
    from plugins.web import start_web

    web = start_web(tmp_path / "web", database_url=database_url, NEWSLETTER_HEALTH_MIN_SENT="10")
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        broker_url=REDIS_URL,
        redis_prefix=redis_prefix,
        secret_key=SECRET,
        base_url=web.url,
        sender_address="news@example.org",
        transport="ses",
        ses_endpoint_url=moto_ses.endpoint_url,
        ses_send_rate=200.0,
    )
    env = AppEnv.from_settings(settings)
    try:
        with env.transaction() as session:
            for address in [*READERS, BOUNCER, COMPLAINER]:
                add_subscriber(session, address, topics=["nova"], source="test", now=utcnow())
        worker_settings = {
            "database_url": database_url,
            "secret_key": SECRET,
            "base_url": web.url,
            "sender_address": "news@example.org",
            "transport": "ses",
            "ses_endpoint_url": moto_ses.endpoint_url,
            "ses_send_rate": 200.0,
        }
        workers = start_workers(1, **worker_settings)

        def send() -> int:
            draft = drafts.read_draft(env, REFERENCE_ISSUE)
            with env.transaction() as session:
                campaign_id = lifecycle.create(session, draft, now=env.now()).id
            lifecycle.start_stepwise(env, campaign_id)
            return campaign_id

        def status(campaign_id: int) -> Campaign:
            with env.sessions() as session:
                found = session.get(Campaign, campaign_id)
                assert found is not None
                session.expunge(found)
                return found

        def message_id(campaign_id: int, address: str) -> str:
            with env.sessions() as session:
                return session.scalar(
                    select(Delivery.message_id).where(
                        Delivery.campaign_id == campaign_id, Delivery.email == address
                    )
                )

        first = send()
        wait_until(lambda: status(first).status == "done", timeout=60, what="the first campaign")
        assert len(moto_ses.sent_messages()) == len(READERS) + 2

        bounce = web.signer.envelope(
            bounce_notification(
                BOUNCER, message_id=message_id(first, BOUNCER), at=env.now(), campaign=str(first)
            )
        )
        complaint = web.signer.envelope(
            complaint_notification(
                COMPLAINER, message_id=message_id(first, COMPLAINER), at=env.now(), campaign=str(first)
            )
        )
        for body in (bounce, complaint):
            response = web.post_sns(body)
            assert response.status_code == 200 and response.json()["status"] == "applied", response.text
        with env.sessions() as session:
            suppressed = {s.email_key: s for s in session.scalars(select(Suppression))}
            statuses = dict(session.execute(select(Subscriber.email_key, Subscriber.status)).all())
            stored = session.scalar(select(func.count()).select_from(FeedbackMessage))
        assert suppressed[BOUNCER].reason == "hard_bounce" and "550" in (suppressed[BOUNCER].evidence or "")
        assert suppressed[COMPLAINER].reason == "complaint" and suppressed[COMPLAINER].evidence
        assert statuses[BOUNCER] == "bounced" and statuses[COMPLAINER] == "complained"
        counted = status(first)
        assert (counted.bounced, counted.complained) == (1, 1)

        for body in (bounce, complaint):  # SNS delivers again: nothing changes
            response = web.post_sns(body)
            assert response.json()["status"] == "duplicate"
        with env.sessions() as session:
            assert session.scalar(select(func.count()).select_from(FeedbackMessage)) == stored
        assert (status(first).bounced, status(first).complained) == (1, 1)

        second = send()
        wait_until(lambda: status(second).status == "done", timeout=60, what="the second campaign")
        with env.sessions() as session:
            rows = dict(
                session.execute(
                    select(Delivery.email, Delivery.status).where(Delivery.campaign_id == second)
                ).all()
            )
        assert BOUNCER not in rows and COMPLAINER not in rows  # not even queued
        recipients = [
            email.message_from_string(m.raw_data, policy=email.policy.default)["To"].addresses[0].addr_spec
            for m in moto_ses.sent_messages()
        ]
        assert recipients.count(BOUNCER) == recipients.count(COMPLAINER) == 1
        assert len(recipients) == 2 * len(READERS) + 2

        # a campaign whose complaints pass 0.1 % of its sent (after 10 sent) pauses itself: sent slowly by
        # a worker limited to 2 messages a second, so the complaint arrives while it is sending
        workers.stop()
        third = send()
        start_workers(1, **{**worker_settings, "ses_send_rate": 2.0, "rate_burst": 1})
        wait_until(lambda: status(third).sent >= 10, timeout=60, what="10 messages of the third campaign")
        victim = READERS[0]
        complaint3 = web.signer.envelope(
            complaint_notification(
                victim, message_id=message_id(third, victim), at=env.now(), campaign=str(third)
            )
        )
        response = web.post_sns(complaint3)
        assert response.status_code == 200 and response.json()["changes"] >= 2  # the suppression, the pause
        paused = status(third)
        assert paused.status == "paused", paused.status
        assert "complaint rate" in (paused.status_reason or "") and "NEWSLETTER_PAUSE_COMPLAINT_RATE" in (
            paused.status_reason or ""
        )
        wait_until(
            lambda: _sending(env, third) == 0,
            timeout=30,
            what="the worker giving its rows back",
        )
        assert status(third).sent < len(READERS)  # it stopped: the rest wait for a resume
    finally:
        env.close()
        web.stop()
        web.trap.close()


def _sending(env: AppEnv, campaign_id: int) -> int:
    with env.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).where(Delivery.campaign_id == campaign_id, Delivery.status == "sending")
            )
            or 0
        )
