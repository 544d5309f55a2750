"""Statuses held by the database too: CHECK constraints on every status column (and on a suppression's
reason, a campaign's audience), the same lists as subscribers/states.py and mailer/sending/states.py;
and ``deliveries.error_code``, the provider's name for why a row failed (failures grouped by cause).

The value lists are written out here, not imported: a migration must mean the same thing forever.
On SQLite a CHECK can only be added by rebuilding the table (Alembic's batch mode); subscribers.db.upgrade
turns foreign keys off around migrations so that dropping the old table cascades to nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    "subscribers": {"status": ("pending", "active", "unsubscribed", "bounced", "complained")},
    "suppressions": {"reason": ("hard_bounce", "soft_bounce_limit", "complaint", "manual")},
    "campaigns": {
        "status": ("draft", "scheduled", "sending", "paused", "cancelled", "done"),
        "audience": ("subscribers", "all"),
    },
    "deliveries": {"status": ("queued", "sending", "sent", "failed", "skipped", "unknown")},
}


def _condition(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    for table, columns in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            if table == "deliveries":
                batch.add_column(sa.Column("error_code", sa.String(64), nullable=True))
            for column, values in columns.items():
                batch.create_check_constraint(column, _condition(column, values))


def downgrade() -> None:
    for table, columns in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_constraint(f"ck_{table}_{column}", type_="check")
            if table == "deliveries":
                batch.drop_column("error_code")
