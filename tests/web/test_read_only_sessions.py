"""How page requests use the database: GET pages read on a pool that cannot write (mailer.database.
read_session_factory), the preference and unsubscribe routes begin and end their transaction in the one
thread they run in, and routes on the session dependencies end theirs outside the thread pool's limit.
More concurrent requests than threads and pooled connections, on PostgreSQL, must all be answered."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from plugins.db import create_pg_database, drop_pg_database
from plugins.web import start_web
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.models import Subscriber, SubscriberEvent
from subscribers.optin import signup
from subscribers.preferences import add_subscriber
from subscribers.tokens import make_token


def test_a_read_only_session_reads_and_cannot_write(database_url, tmp_path):
    with AppEnv.from_settings(Settings(data_dir=tmp_path, database_url=database_url)) as env:
        with env.sessions() as session:
            add_subscriber(session, "reader@example.org", now=utcnow())
            session.commit()
        with env.read_sessions() as session:
            assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
            with pytest.raises(DBAPIError):
                session.execute(update(Subscriber).values(status="unsubscribed"))
        with env.read_sessions() as session:  # the pool's connection works on
            assert session.scalar(select(Subscriber.status)) == "active"


@pytest.fixture
def pg_web(tmp_path):
    name = f"nlpages_{uuid.uuid4().hex[:8]}"
    web = start_web(tmp_path, database_url=create_pg_database(name))
    try:
        yield web
    finally:
        web.stop()
        web.trap.close()
        web.env.close()
        drop_pg_database(name)


def test_a_crowd_of_page_views_one_clicks_and_confirmations_on_postgresql(pg_web):
    web = pg_web
    key = web.settings.signing_key
    with web.env.transaction() as session:
        readers = [
            add_subscriber(session, f"crowd{i}@example.org", topics=["nova"], now=utcnow()) for i in range(40)
        ]
        pending = [
            signup(session, f"new{i}@example.org", secret=key, topics=["nova"], now=utcnow())
            for i in range(60)
        ]
    pages = [
        f"/preferences/{make_token(key, r.id, 'preferences', salt=r.token_salt, now=utcnow())}"
        for r in readers[:20]
    ]
    leaving = [
        f"/unsubscribe/{make_token(key, r.id, 'unsubscribe', salt=r.token_salt, now=utcnow())}"
        for r in readers[20:]
    ]
    confirms = [f"/confirm/{p.confirm_token}" for p in pending]  # a route on the ReadSession dependency

    def call(request: tuple[str, str]) -> int:
        method, path = request
        with httpx.Client(base_url=web.url, timeout=30) as client:
            if method == "POST":  # RFC 8058, as a mail client sends it
                return client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code
            return client.get(path).status_code

    work = [("GET", p) for p in pages + confirms] + [("POST", p) for p in leaving]
    with ThreadPoolExecutor(60) as pool:  # more than the app's threads and its pooled connections
        codes = list(pool.map(call, work * 2))  # every one-click twice: the second changes nothing
    assert codes == [200] * len(codes)
    with web.env.sessions() as session:
        left = session.scalars(select(Subscriber.email).where(Subscriber.status == "unsubscribed"))
        assert sorted(left) == sorted(r.email for r in readers[20:])
        events = session.scalar(
            select(func.count()).select_from(SubscriberEvent).where(SubscriberEvent.kind == "unsubscribed")
        )
        assert events == 20  # one each
        still = session.scalar(select(func.count()).where(Subscriber.status == "pending"))
        assert still == 60  # a GET of a confirmation link confirms nothing
