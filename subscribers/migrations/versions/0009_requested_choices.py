"""A signup for an address that already has a row (pending, or unsubscribed) no longer changes that row:
the form's choices wait in ``requested_topics`` and ``requested_locale`` until the emailed link is
confirmed, so nobody but the address's owner can change its status, topics or language.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("requested_topics", sa.Text, nullable=True))
    op.add_column("subscribers", sa.Column("requested_locale", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("requested_locale")
        batch.drop_column("requested_topics")
