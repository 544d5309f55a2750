"""The schema: migrations build exactly the models' tables, the database itself refuses an unknown status,
and migration 0005 (a table rebuild on SQLite) keeps every row, including rows that refer to rebuilt ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, func, select, text
from sqlalchemy.exc import IntegrityError

from mailer.accounts import models as account_models  # noqa: F401  (registers its tables)
from mailer.feedback import models as feedback_models  # noqa: F401  (registers its table)
from mailer.sending import models as sending_models  # noqa: F401
from mailer.sending.states import Audience, CampaignStatus, DeliveryStatus
from subscribers.db import (
    MIGRATIONS_DIR,
    Base,
    create_database_engine,
    current_revision,
    head_revision,
    make_session_factory,
    open_database,
    upgrade,
    utcnow,
)
from subscribers.models import STATUSES, SUPPRESSION_REASONS

NOW = utcnow()


def _insert(connection: Connection, table: str, **values: Any) -> None:
    columns = ", ".join(values)
    marks = ", ".join(f":{name}" for name in values)
    connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), values)


def _subscriber(n: int, **overrides: Any) -> dict[str, Any]:
    email = f"s{n}@example.org"
    row = dict(email=email, email_key=email, locale="zh", status="active", created_at=NOW, changed_at=NOW,
               source="test", soft_bounces=0)  # fmt: skip
    return {**row, **overrides}


def _campaign(**overrides: Any) -> dict[str, Any]:
    row = dict(issue_source="i", issue_markdown="m", issue_hash="h", subject="s", audience="all",
               transport="file", status="draft", nonce="n", queued_all=False, total=0, sent=0, failed=0,
               skipped=0, unknown=0, consecutive_failures=0, created_at=NOW)  # fmt: skip
    return {**row, **overrides}


def test_migrations_build_exactly_the_models(db_engine):
    with db_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


BAD_ROWS = {
    "subscribers.status": ("subscribers", _subscriber(1, status="bogus")),
    "suppressions.reason": (
        "suppressions",
        dict(email_key="a@x.org", email="a@x.org", reason="bogus", created_at=NOW),
    ),
    "campaigns.status": ("campaigns", _campaign(status="bogus")),
    "campaigns.audience": ("campaigns", _campaign(audience="bogus")),
}


@pytest.mark.parametrize("column", list(BAD_ROWS))
def test_the_database_refuses_a_value_outside_the_state_machine(db_engine, column):
    table, row = BAD_ROWS[column]
    with db_engine.connect() as connection:
        with pytest.raises(IntegrityError, match=rf"(?i)ck_{column.replace('.', '_')}|check constraint"):
            _insert(connection, table, **row)
        connection.rollback()


def test_the_enums_and_the_checks_name_the_same_values():
    path = next((MIGRATIONS_DIR / "versions").glob("0005_*.py"))
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {
        "subscribers": {"status": tuple(STATUSES)},
        "suppressions": {"reason": tuple(SUPPRESSION_REASONS)},
        "campaigns": {"status": tuple(CampaignStatus), "audience": tuple(Audience)},
        "deliveries": {"status": tuple(DeliveryStatus)},
    } == module.CHECKS


def test_upgrading_a_filled_sqlite_database_keeps_every_row(tmp_path: Path):
    """On SQLite 0005 and 0006 rebuild tables that others refer to with ON DELETE CASCADE: nothing may
    cascade; every subscriber gets a salt of its own, and ids are never reused afterwards."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_database_engine(url)
    upgrade(engine, "0004")
    with engine.begin() as connection:
        _insert(connection, "topics", id=1, key="nova", name="Nova", created_at=NOW)
        _insert(connection, "campaigns", **_campaign(id=1, status="done", total=3, sent=3, queued_all=True))
        _insert(connection, "segment_renderings", id=1, campaign_id=1, segment_key="nova", subject="s",
                preheader="p", html="h", text="t", section_headings="[]", recipients=3)  # fmt: skip
        for n in range(1, 4):
            _insert(connection, "subscribers", id=n, **_subscriber(n))
            _insert(connection, "subscriber_topics", subscriber_id=n, topic_id=1)
            _insert(connection, "subscriber_events", subscriber_id=n, email_key=f"s{n}@example.org",
                    kind="subscribed", source="test", created_at=NOW)  # fmt: skip
            _insert(connection, "deliveries", campaign_id=1, subscriber_id=n, segment_id=1,
                    email=f"s{n}@example.org", status="sent", attempts=1, queued_at=NOW)  # fmt: skip
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    tables = ("subscribers", "subscriber_topics", "subscriber_events", "deliveries", "segment_renderings")
    with make_session_factory(engine)() as session:
        counts = {table: session.scalar(select(func.count()).select_from(text(table))) for table in tables}
        assert counts == {table: 1 if table == "segment_renderings" else 3 for table in tables}
        assert session.scalar(text("PRAGMA foreign_keys")) == 1, "foreign keys are on again"
        salts = list(session.scalars(text("SELECT token_salt FROM subscribers")))
        assert len(set(salts)) == 3 and all(len(salt) == 16 for salt in salts)
        session.execute(text("DELETE FROM subscribers WHERE id = 3"))
        _insert(session.connection(), "subscribers", **_subscriber(4))
        assert session.scalar(text("SELECT max(id) FROM subscribers")) == 4, "id 3 is not given again"
        session.commit()
    engine.dispose()
    open_database(url).dispose()  # an up-to-date database opens without migrating again


def test_migration_0007_rewrites_unicode_domains_to_ascii(database_url):
    """Rows stored before addresses were normalised to ASCII: the domain is rewritten unless that
    collides; a local part that is not ASCII stays (its sends fail with a reason)."""
    engine = create_database_engine(database_url) if database_url.startswith("sqlite") else None
    if engine is None:
        from sqlalchemy import create_engine

        engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM alembic_version"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('0006')"))
        _insert(connection, "subscribers", **_subscriber(1, email="ann@例え.jp", email_key="ann@例え.jp"))
        _insert(connection, "subscribers", **_subscriber(2, email="用户@例え.jp", email_key="用户@例え.jp"))
        _insert(
            connection,
            "subscribers",
            **_subscriber(3, email="bob@xn--r8jz45g.jp", email_key="bob@xn--r8jz45g.jp"),
        )
        _insert(connection, "subscribers", **_subscriber(4, email="Bob@例え.jp", email_key="bob@例え.jp"))
        _insert(
            connection,
            "suppressions",
            email="eve@例え.jp",
            email_key="eve@例え.jp",
            reason="manual",
            created_at=NOW,
        )
    upgrade(engine, "0007")
    with engine.begin() as connection:
        emails: dict[int, str] = {
            row.id: row.email for row in connection.execute(text("SELECT id, email FROM subscribers"))
        }
        suppressed = connection.execute(text("SELECT email_key FROM suppressions")).scalar()
        # the tables are those of the newest revision still: say so, for the tests after this one
        connection.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
    engine.dispose()
    assert emails == {1: "ann@xn--r8jz45g.jp", 2: "用户@例え.jp", 3: "bob@xn--r8jz45g.jp", 4: "Bob@例え.jp"}
    assert suppressed == "eve@xn--r8jz45g.jp"
