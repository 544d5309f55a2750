"""Alembic environment: runs on the connection that subscribers.db.upgrade hands in (never reads a URL)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only subscribers.db.upgrade runs migrations
    raise RuntimeError("run migrations through subscribers.db.upgrade(engine) or `newsletter db upgrade`")

context.configure(
    connection=connection,
    target_metadata=None,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
