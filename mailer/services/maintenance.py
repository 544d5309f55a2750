"""Keeping the database in shape: ``newsletter db upgrade`` (and the migrate service of docker-compose)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from mailer.database import Database, sync_registry
from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.topics import load_registry
from subscribers.db import current_revision, head_revision, open_database

__all__ = ["Upgrade", "ping", "upgrade_database_stepwise"]


@dataclass(frozen=True)
class Upgrade:
    before: str | None  # None: an empty database
    after: str | None
    head: str | None
    topics_synced: int  # topics of the registry created or renamed in the topic table


def upgrade_database_stepwise(settings: Settings) -> Upgrade:
    """Bring the schema to the newest revision and copy the registry's topics into the topic table."""
    engine = open_database(settings.resolved_database_url, migrate=False)
    try:
        before = current_revision(engine)
    finally:
        engine.dispose()
    database = Database.of(settings)
    try:
        with database.sessions() as session:  # migrated on first use
            synced = sync_registry(session, load_registry(settings.registry_file))
            session.commit()
        after = current_revision(database.engine)
    finally:
        database.dispose()
    return Upgrade(before, after, head_revision(), synced)


def ping(env: AppEnv) -> None:
    """Raise unless the database answers a trivial query."""
    with env.sessions() as session:
        session.execute(text("SELECT 1"))
