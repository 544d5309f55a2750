"""Links name one person for good: ``subscribers.token_salt`` (random per row, covered by every link's
signature) and, on SQLite, AUTOINCREMENT for subscribers and campaigns, so a deleted row's id is never
given to a new one (PostgreSQL's sequences never reuse ids).

Existing subscribers get a random salt each; new rows get one from the database's default too, so bulk
inserts that name no salt (the CSV import) are covered. Links signed before this migration are no longer
valid (they carried no salt).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# 16 hex digits of randomness per row, made by the database itself
RANDOM_SALT = {
    "sqlite": "(lower(hex(randomblob(8))))",
    "postgresql": "substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    salt = sa.text(RANDOM_SALT[dialect])
    if dialect == "sqlite":
        # AUTOINCREMENT exists only in a table's definition: both tables are rebuilt (foreign keys are
        # off around migrations, see subscribers.db.upgrade)
        with op.batch_alter_table(
            "subscribers", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.add_column(sa.Column("token_salt", sa.String(32), nullable=False, server_default=salt))
        with op.batch_alter_table(
            "campaigns", recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            pass
        return
    op.add_column("subscribers", sa.Column("token_salt", sa.String(32), nullable=True))
    op.execute(f"UPDATE subscribers SET token_salt = {RANDOM_SALT[dialect]}")
    op.alter_column("subscribers", "token_salt", nullable=False, server_default=salt)


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("token_salt")
