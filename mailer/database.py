"""The process's database: one engine per URL, migrated on first use, with the topic registry synced in;
and for requests that only read, a second pool on the same database that cannot write."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailer.settings import Settings
from mailer.topics import TopicRegistry, load_registry
from subscribers.db import create_database_engine, make_session_factory, open_database
from subscribers.store import sync_topics

__all__ = ["engine", "read_session_factory", "reset", "session_factory", "sync_registry"]

_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}
_read_factories: dict[str, sessionmaker[Session]] = {}


def sync_registry(session: Session, registry: TopicRegistry) -> int:
    """Copy the registry's topics (key, English and Chinese names) into the topic table."""
    return sync_topics(
        session,
        [(t.key, t.display_name("en"), t.names.get("zh")) for t in registry.topics],
        rename=True,
    )


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """Sessions on ``settings.resolved_database_url``; the first call per URL migrates and syncs topics."""
    url = settings.resolved_database_url
    with _lock:
        factory = _factories.get(url)
        if factory is None:
            factory = make_session_factory(open_database(url, migrate=True))
            with factory() as session:
                if sync_registry(session, load_registry(settings.registry_file)):
                    session.commit()
            _factories[url] = factory
    return factory


def read_session_factory(settings: Settings) -> sessionmaker[Session]:
    """Sessions for work that only reads (the web's GET pages), on connections of their own that run in
    autocommit (no BEGIN and ROLLBACK round trips around a page's one query) and that the database keeps
    from writing: PostgreSQL's default_transaction_read_only, SQLite's query_only. An in-memory SQLite
    database is one per connection: there, the ordinary sessions."""
    url = settings.resolved_database_url
    factory = _read_factories.get(url)  # every GET asks: no lock, no URL parsing once made
    if factory is not None:
        return factory
    writer = session_factory(settings)  # migrated and synced first
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    with _lock:
        factory = _read_factories.get(url)
        if factory is None:
            if sqlite and parsed.database in (None, "", ":memory:"):
                factory = writer
            else:
                connect_args = {} if sqlite else {"options": "-c default_transaction_read_only=on"}
                bind = create_database_engine(
                    url,
                    isolation_level="AUTOCOMMIT",
                    skip_autocommit_rollback=True,
                    connect_args=connect_args,
                )
                if sqlite:
                    event.listen(bind, "connect", _query_only)
                factory = make_session_factory(bind)
            _read_factories[url] = factory
    return factory


def _query_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def engine(settings: Settings) -> Engine:
    bind = session_factory(settings).kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def reset() -> None:
    """Forget the cached engines (disposing their pools): for tests that point settings elsewhere."""
    with _lock:
        for factory in [*_factories.values(), *_read_factories.values()]:
            bind = factory.kw.get("bind")
            if isinstance(bind, Engine):
                bind.dispose()
        _factories.clear()
        _read_factories.clear()
