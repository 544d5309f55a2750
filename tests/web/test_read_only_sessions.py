"""How page requests use the database: every GET route, of every router (reader pages, the admin
dashboard, the API), reads on a pool that cannot write (``AppEnv.read_sessions``, through
``ReadSession`` or ``read_only(env)``); the preference and unsubscribe routes begin and end their
transaction in the one thread they run in, and routes on the session dependencies end theirs outside the
thread pool's limit. More concurrent requests than threads and pooled connections, on PostgreSQL, must all
be answered."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, get_args

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from plugins.db import create_pg_database, drop_pg_database
from plugins.web import start_web
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError
from support.routes import served_routes
from support.waiting import wait_until

from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.web.app import create_app
from mailer.web.deps import DbSession, ReadSession
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


def _dependency(annotated: Any) -> Any:
    """The function FastAPI calls for an ``Annotated[..., Depends(f)]``."""
    return get_args(annotated)[1].dependency


def test_no_get_route_of_any_router_takes_the_read_write_session(tmp_path):
    routes = served_routes(create_app(Settings(data_dir=tmp_path)))
    gets = [r for r in routes if "GET" in r.methods]
    for prefix in ("/admin/", "/api/", "/issues/", "/confirm/"):  # every router is walked
        assert any(r.path.startswith(prefix) and _dependency(ReadSession) in r.dependencies for r in gets)
    assert [str(r) for r in gets if _dependency(DbSession) in r.dependencies] == []


@contextmanager
def _serving(app: FastAPI) -> Iterator[str]:
    """``app`` under uvicorn in a thread of this process (its lifespan runs), at the URL yielded."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, what="uvicorn to serve the app")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_the_session_get_routes_take_refuses_writes(database_url, tmp_path):
    """``ReadSession`` is the enforced read-only session: a write is refused by the database (a session
    merely rolled back at the end would let a GET hold write locks, and write whatever it committed)."""
    env = AppEnv.from_settings(Settings(data_dir=tmp_path, database_url=database_url, secret_key="k"))
    try:
        with env.transaction() as session:
            add_subscriber(session, "reader@example.org", now=utcnow())
        app = create_app(env=env)

        @app.get("/write-probe")
        def write_probe(session: ReadSession) -> dict[str, str]:
            try:
                session.execute(update(Subscriber).values(status="unsubscribed"))
            except DBAPIError:
                return {"write": "refused"}
            return {"write": "accepted"}

        with _serving(app) as url:
            assert httpx.get(url + "/write-probe", timeout=30).json() == {"write": "refused"}
        with env.sessions() as session:
            assert session.scalar(select(Subscriber.status)) == "active"
    finally:
        env.close()


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
