"""Schema, migrations, SQLite pragmas, and the store's audience queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from subscribers import models  # noqa: F401  (tables registered on Base.metadata)
from subscribers.db import current_revision, head_revision, make_session_factory, open_database
from subscribers.models import Subscriber, Topic
from subscribers.store import segment_counts, sendable, stream_audience, sync_topics
from subscribers.suppression import is_suppressed, record_soft_bounce, suppress

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _add(session, email: str, topics: list[str], status: str = "active") -> Subscriber:
    by_key = {t.key: t for t in session.scalars(select(Topic))}
    subscriber = Subscriber(
        email=email,
        email_key=email.lower(),
        name=None,
        locale="zh",
        status=status,
        created_at=NOW,
        changed_at=NOW,
        source="test",
        soft_bounces=0,
        topics=[by_key[k] for k in topics],
    )
    session.add(subscriber)
    session.flush()
    return subscriber


def test_fresh_sqlite_file_is_created_migrated_and_tuned(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'folder' / 'n.db'}"
    engine = open_database(url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    # opening again is a no-op, not a second migration
    open_database(url).dispose()
    engine.dispose()


def test_audience_streams_active_unsuppressed_in_id_order_with_segments(db_session):
    sync_topics(db_session, [("nova", "Nova", None), ("neutron", "Neutron", None), ("heat", "Heat", None)])
    a = _add(db_session, "a@example.com", ["nova", "heat"])
    _add(db_session, "b@example.com", ["nova"], status="pending")
    c = _add(db_session, "c@example.com", [])
    d = _add(db_session, "d@example.com", ["neutron"])
    e = _add(db_session, "e@example.com", ["nova"])
    suppress(db_session, "E@example.com", "manual", now=NOW)
    db_session.commit()

    batches = list(stream_audience(db_session, {"nova", "neutron"}, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    members = [m for batch in batches for m in batch]
    assert [m.subscriber_id for m in members] == [a.id, c.id, d.id]
    assert [m.segment for m in members] == [frozenset({"nova"}), frozenset(), frozenset({"neutron"})]
    assert [m.subscriber_id for b in stream_audience(db_session, {"nova"}, after_id=a.id) for m in b] == [
        c.id,
        d.id,
    ]
    assert segment_counts(db_session, {"nova", "neutron"}) == {
        frozenset({"nova"}): 1,
        frozenset(): 1,
        frozenset({"neutron"}): 1,
    }
    assert sendable(db_session, [a.id, c.id, e.id, 999]) == {a.id: a.token_salt, c.id: c.token_salt}


def test_suppression_sets_status_and_soft_bounces_count_to_the_limit(db_session):
    s = _add(db_session, "x@example.com", [])
    assert record_soft_bounce(db_session, "X@Example.com", limit=2, now=NOW) is False
    assert not is_suppressed(db_session, "x@example.com")
    assert record_soft_bounce(db_session, "x@example.com", limit=2, now=NOW) is True
    assert is_suppressed(db_session, "x@EXAMPLE.com")
    db_session.refresh(s)
    assert s.status == "bounced"
    # a complaint after a bounce: the address is already suppressed (False) but the status says complained
    assert suppress(db_session, "x@example.com", "complaint", now=NOW) is False
    db_session.refresh(s)
    assert s.status == "complained"


def test_session_factory_keeps_objects_readable_after_commit(db_engine):
    factory = make_session_factory(db_engine)
    with factory() as session:
        topic = Topic(key="k", name="K", created_at=NOW)
        session.add(topic)
        session.commit()
        assert topic.key == "k" and topic.created_at == NOW


def test_segment_counts_agree_with_the_stream(db_session):
    """The SQL bit-mask count equals counting the streamed members, for several issue topic sets."""
    import random

    keys = ["nova", "neutron", "heat", "swift", "glance"]
    sync_topics(db_session, [(k, k.title(), None) for k in keys])
    rng = random.Random(3)
    for i in range(300):
        status = rng.choice(["active", "active", "active", "pending", "unsubscribed"])
        _add(db_session, f"u{i}@example.com", rng.sample(keys, rng.randint(0, 4)), status=status)
    for i in range(0, 300, 17):
        suppress(db_session, f"u{i}@example.com", "hard_bounce", now=NOW)
    db_session.commit()
    for issue_topics in ([], ["nova"], ["nova", "heat", "swift"], keys, ["nova", "unknown-topic"]):
        streamed: dict[frozenset[str], int] = {}
        for batch in stream_audience(db_session, issue_topics, batch_size=64):
            for member in batch:
                streamed[member.segment] = streamed.get(member.segment, 0) + 1
        assert segment_counts(db_session, issue_topics) == streamed
        assert sum(streamed.values()) == len(sendable(db_session, range(1, 400)))


@pytest.mark.postgres
def test_a_pooled_connection_the_server_closed_is_replaced_before_use(pg_server_url):
    """PostgreSQL: a connection that sat in the pool longer than PING_AFTER_IDLE_SECONDS is pinged on
    checkout; one the server closed meanwhile (a restart, an idle timeout) is replaced without an error.
    A connection back from use a moment ago is not pinged (no round trip per transaction)."""
    import psycopg
    from plugins.db import PG_ADMIN_URL

    from subscribers.db import PING_AFTER_IDLE_SECONDS, create_database_engine

    engine = create_database_engine(pg_server_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            first = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        time.sleep(PING_AFTER_IDLE_SECONDS + 0.2)
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        with engine.connect() as connection:  # no error: the ping found it closed
            second = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        assert second != first
        # back from use a moment ago: used as is, without a ping; were the server to close it within that
        # moment, the next statement fails once (the web answers 503) and the pool connects anew
        with psycopg.connect(PG_ADMIN_URL.replace("+psycopg", ""), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (second,))
        with pytest.raises(OperationalError), engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() not in (first, second)
    finally:
        engine.dispose()
