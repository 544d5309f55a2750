"""The process's database: one engine per URL, migrated on first use, with the topic registry synced in."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailer.settings import Settings
from mailer.topics import TopicRegistry, load_registry
from subscribers.db import make_session_factory, open_database
from subscribers.store import sync_topics

__all__ = ["engine", "reset", "session_factory", "sync_registry"]

_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}


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


def engine(settings: Settings) -> Engine:
    bind = session_factory(settings).kw["bind"]
    assert isinstance(bind, Engine)
    return bind


def reset() -> None:
    """Forget the cached engines (disposing their pools): for tests that point settings elsewhere."""
    with _lock:
        for factory in _factories.values():
            bind = factory.kw.get("bind")
            if isinstance(bind, Engine):
                bind.dispose()
        _factories.clear()
