"""What the web side needs: ``subscribers.link_sent_at`` (when the last "send me my preferences link"
email went out: at most one per address per hour), and each campaign's ``bounced`` and ``complained``
counts (from the SES feedback applied to its messages), from which it pauses itself when its rates pass
the settings.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("link_sent_at", Time, nullable=True))
    op.add_column("campaigns", sa.Column("bounced", sa.Integer, nullable=False, server_default="0"))
    op.add_column("campaigns", sa.Column("complained", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("complained")
        batch.drop_column("bounced")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("link_sent_at")
