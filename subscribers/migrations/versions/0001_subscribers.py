"""Subscribers schema: subscribers, topics, subscriber_topics, suppressions, subscriber_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "topics",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_zh", sa.String(200), nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_topics"),
        sa.UniqueConstraint("key", name="uq_topics_key"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=True),
        sa.Column("locale", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("confirmed_at", Time, nullable=True),
        sa.Column("changed_at", Time, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("soft_bounces", sa.Integer, nullable=False),
        sa.Column("confirm_sent_at", Time, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_table(
        "subscriber_topics",
        sa.Column("subscriber_id", BigId, nullable=False),
        sa.Column("topic_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("subscriber_id", "topic_id", name="pk_subscriber_topics"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_subscriber_topics_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name="fk_subscriber_topics_topic_id_topics", ondelete="CASCADE"
        ),
        sqlite_with_rowid=False,  # the primary key is the table: one B-tree less to write per link
    )
    op.create_index("ix_subscriber_topics_topic_id", "subscriber_topics", ["topic_id"])
    op.create_table(
        "suppressions",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("evidence", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
        sa.UniqueConstraint("email_key", name="uq_suppressions_email_key"),
    )
    op.create_table(
        "subscriber_events",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("subscriber_id", BigId, nullable=True),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("created_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscriber_events"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_subscriber_events_subscriber_id_subscribers",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_subscriber_events_subscriber_id_id", "subscriber_events", ["subscriber_id", "id"])


def downgrade() -> None:
    op.drop_table("subscriber_events")
    op.drop_table("suppressions")
    op.drop_table("subscriber_topics")
    op.drop_table("subscribers")
    op.drop_table("topics")
