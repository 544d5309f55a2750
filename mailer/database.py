"""A process's view of its database: ``Database`` holds the engines of one URL (read-write sessions on a
schema migrated to the newest revision, with the topic registry synced in, on first use; and for work
that only reads, a second pool the database keeps from writing). Its owner (``AppEnv``, one per CLI
command, web process and worker process) disposes it when done."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailer.settings import Settings
from mailer.topics import TopicRegistry, load_registry
from subscribers.db import create_database_engine, make_session_factory, open_database
from subscribers.store import sync_topics

__all__ = ["Database", "sync_registry"]


def sync_registry(session: Session, registry: TopicRegistry) -> int:
    """Copy the registry's topics (key, English and Chinese names) into the topic table."""
    return sync_topics(
        session,
        [(t.key, t.display_name("en"), t.names.get("zh")) for t in registry.topics],
        rename=True,
    )


class Database:
    """The engines of one database URL, made on first use; ``dispose`` closes their pools."""

    def __init__(self, url: str, registry_file: Path) -> None:
        self.url = url
        self.registry_file = registry_file
        self._lock = threading.Lock()
        self._sessions: sessionmaker[Session] | None = None
        self._read_sessions: sessionmaker[Session] | None = None

    @classmethod
    def of(cls, settings: Settings) -> Database:
        return cls(settings.resolved_database_url, settings.registry_file)

    @property
    def sessions(self) -> sessionmaker[Session]:
        """Read-write sessions; the first use migrates the schema and syncs the topic registry."""
        factory = self._sessions  # every request asks: no lock once made
        if factory is None:
            with self._lock:
                factory = self._sessions
                if factory is None:
                    factory = make_session_factory(open_database(self.url, migrate=True))
                    with factory() as session:
                        if sync_registry(session, load_registry(self.registry_file)):
                            session.commit()
                    self._sessions = factory
        return factory

    @property
    def read_sessions(self) -> sessionmaker[Session]:
        """Sessions for work that only reads (the web's GET pages), on connections of their own that run
        in autocommit (no BEGIN and ROLLBACK round trips around a page's one query) and that the database
        keeps from writing: PostgreSQL's default_transaction_read_only, SQLite's query_only. An in-memory
        SQLite database is one per connection: there, the read-write sessions."""
        factory = self._read_sessions
        if factory is None:
            writer = self.sessions  # migrated and synced first
            with self._lock:
                factory = self._read_sessions
                if factory is None:
                    factory = self._make_read_sessions(writer)
                    self._read_sessions = factory
        return factory

    def _make_read_sessions(self, writer: sessionmaker[Session]) -> sessionmaker[Session]:
        parsed = make_url(self.url)
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite and parsed.database in (None, "", ":memory:"):
            return writer
        connect_args = {} if sqlite else {"options": "-c default_transaction_read_only=on"}
        bind = create_database_engine(
            self.url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, connect_args=connect_args
        )
        if sqlite:
            event.listen(bind, "connect", _query_only)
        return make_session_factory(bind)

    @property
    def engine(self) -> Engine:
        bind = self.sessions.kw["bind"]
        assert isinstance(bind, Engine)
        return bind

    def dispose(self) -> None:
        """Close the pools' connections; the next use opens new ones (after an outage, at the end)."""
        with self._lock:
            for factory in {id(f): f for f in (self._sessions, self._read_sessions) if f}.values():
                bind = factory.kw.get("bind")
                if isinstance(bind, Engine):
                    bind.dispose()


def _query_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()
