"""A database that cannot answer: the webhook says 503 (SNS delivers again) and loses nothing; once the
database is back, the same delivery is stored and applied, once. PostgreSQL refusing new connections
and dropping the app's current ones stands for an outage."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from plugins.db import PG_ADMIN_URL, create_pg_database, drop_pg_database
from sqlalchemy import select

from mailer.feedback.samples import bounce_notification
from subscribers.db import utcnow
from subscribers.models import Subscriber
from subscribers.preferences import add_subscriber

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True)


def test_an_outage_answers_503_and_the_redelivery_is_applied_once(tmp_path):
    from plugins.web import start_web

    name = f"nloutage_{uuid.uuid4().hex[:8]}"
    web = start_web(tmp_path, database_url=create_pg_database(name))
    try:
        with web.env.transaction() as session:
            add_subscriber(session, "down@example.org", source="test", now=utcnow())
        web.env.close()
        body = web.signer.envelope(
            bounce_notification("down@example.org", message_id="x", at=dt.datetime.now(dt.UTC))
        )
        with _admin() as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
        try:
            for _ in range(2):  # SNS retries: each attempt is told to come back
                response = web.post_sns(body)
                assert response.status_code == 503, response.text
                assert response.headers.get("retry-after")
        finally:
            with _admin() as admin:
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        response = web.post_sns(body)
        assert response.status_code == 200 and response.json()["status"] == "applied", response.text
        assert web.post_sns(body).json()["status"] == "duplicate"
        web.env.database.dispose()  # this process's pooled connections were dropped by the outage too
        with web.env.sessions() as session:
            status = session.scalar(
                select(Subscriber.status).where(Subscriber.email_key == "down@example.org")
            )
        assert status == "bounced"
    finally:
        web.stop()
        web.trap.close()
        drop_pg_database(name)
