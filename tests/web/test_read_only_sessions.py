"""The sessions of GET pages (mailer.database.read_session_factory): they read, in autocommit, and the
database itself refuses their writes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError

from mailer import database
from mailer.settings import Settings
from subscribers.models import Subscriber
from subscribers.preferences import add_subscriber


def test_a_read_only_session_reads_and_cannot_write(database_url, tmp_path):
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    try:
        with database.session_factory(settings)() as session:
            add_subscriber(session, "reader@example.org")
            session.commit()
        with database.read_session_factory(settings)() as session:
            assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
            with pytest.raises(DBAPIError):
                session.execute(update(Subscriber).values(status="unsubscribed"))
        with database.read_session_factory(settings)() as session:  # the pool's connection works on
            assert session.scalar(select(Subscriber.status)) == "active"
    finally:
        database.reset()
