"""The declarative Base shared by every table, engines from a URL, and migrations on start.

SQLite (the default) gets WAL, foreign keys and a busy timeout on every connection; PostgreSQL is used
through psycopg 3 (``postgresql+psycopg://``). ``open_database(url, migrate=True)`` brings the schema to
the newest Alembic revision; concurrent starts serialise on a lock (``BEGIN IMMEDIATE`` on SQLite, an
advisory lock on PostgreSQL), so two processes starting together never both create the tables.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Integer,
    MetaData,
    TypeDecorator,
    create_engine,
    event,
    func,
    or_,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

__all__ = [
    "Base",
    "BigId",
    "UtcDateTime",
    "current_revision",
    "epoch_seconds",
    "head_revision",
    "make_session_factory",
    "not_within",
    "one_of",
    "open_database",
    "upgrade",
    "utcnow",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
_PG_MIGRATION_LOCK = 0x6E6C6D67  # any fixed 32-bit number: the advisory lock id of migrations

_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


# SQLite only aliases INTEGER PRIMARY KEY to the rowid; BIGINT there would lose autoincrement.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def one_of(column: str, values: Iterable[str]) -> CheckConstraint:
    """A CHECK that ``column`` holds one of ``values`` (named ``ck_<table>_<column>``)."""
    return CheckConstraint(f"{column} IN ({', '.join(repr(str(v)) for v in values)})", name=column)


class Base(DeclarativeBase):
    """The one declarative base: subscribers' tables and mailer's campaign tables share its metadata."""

    metadata = MetaData(naming_convention=_NAMING)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")  # safe with WAL: a crash loses no committed-and-synced data
    cursor.close()


def create_database_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; for SQLite the folder is created and the pragmas set on each connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(parsed, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkin", _stamp_idle)
        event.listen(engine, "checkout", _ping_if_idle)
    return engine


# A connection that sat in the pool for a while may have been closed by the server (a restart, an idle
# timeout): it is pinged before use. One that was in use a moment ago is not: under load (web requests,
# the send loop) a ping per checkout would be a round trip per transaction for nothing. Should the server
# go away within that moment, the next statement fails once, and the pool reconnects.
PING_AFTER_IDLE_SECONDS = 1.0


def _stamp_idle(_dbapi_connection: Any, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    since = record.info.get("idle_since")
    if since is not None and time.monotonic() - since < PING_AFTER_IDLE_SECONDS:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()  # the ping's transaction: leave the connection as the pool had it
    except Exception as exc:  # closed by the server: the pool drops it and connects anew
        raise DisconnectionError(str(exc)) from exc


def _alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), holding the migration lock meanwhile."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A migration that rebuilds a table (batch mode: copy, drop, rename) must not cascade the drop
            # to the rows that refer to it; SQLite's documented procedure: foreign keys off (only possible
            # outside a transaction), rebuild, check, on again.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            # pysqlite has no transaction open yet: take the write lock first, then read the version.
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        try:
            command.upgrade(_alembic_config(connection), revision)
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise RuntimeError(f"migration broke a foreign key: {tuple(broken)}")
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def open_database(url: str, *, migrate: bool = True, **engine_kwargs: Any) -> Engine:
    """An engine for ``url``; with ``migrate`` the schema is brought to the newest revision first."""
    engine = create_database_engine(url, **engine_kwargs)
    if migrate and current_revision(engine) != head_revision():
        upgrade(engine)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: objects stay readable after commit (CLI output, web responses).
    return sessionmaker(bind=engine, expire_on_commit=False)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; pass an aware one (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def not_within(column: Any, now: datetime, seconds: float) -> Any:
    """SQL: the timestamp ``column`` is unset or at least ``seconds`` before ``now`` (the condition of
    an "at most once per period" stamp: of racing updates that set it, one matches)."""
    return or_(column.is_(None), column <= now - timedelta(seconds=seconds))


def epoch_seconds(session: Session, column: Any) -> Any:
    """SQL for the seconds since 1970 of a timestamp column, on either database (time buckets of charts)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", column)
    return func.strftime("%s", column) + 0
