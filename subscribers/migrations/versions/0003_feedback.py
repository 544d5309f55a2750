"""Feedback: the raw SNS/SES feedback messages, stored once (mailer.feedback.models.FeedbackMessage).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feedback_messages",
        sa.Column("id", BigId, primary_key=True),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("feedback_id", sa.String(200), nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("topic_arn", sa.String(256), nullable=True),
        sa.Column("verified", sa.Boolean, nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_feedback_messages"),
        sa.UniqueConstraint("message_id", name="uq_feedback_messages_message_id"),
        sa.UniqueConstraint("feedback_id", name="uq_feedback_messages_feedback_id"),
    )


def downgrade() -> None:
    op.drop_table("feedback_messages")
