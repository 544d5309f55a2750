"""Addresses at internationalised domains are kept in their ASCII form (IDNA), the form SMTP envelopes and
mail headers carry (Amazon SES takes 7-bit addresses only): existing subscribers and suppressions whose
domain was stored in Unicode are rewritten, when that collides with no other row. An address whose part
before the @ is not ASCII is left alone: no message can reach it, and a send fails its row with the reason.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import idna
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _ascii(email: str) -> str | None:
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return None


NOT_ASCII = {"sqlite": "email GLOB '*[^ -~]*'", "postgresql": "email ~ '[^\\x01-\\x7f]'"}


def upgrade() -> None:
    bind = op.get_bind()
    for table in ("subscribers", "suppressions"):
        rows = bind.execute(sa.text(f"SELECT id, email FROM {table} WHERE {NOT_ASCII[bind.dialect.name]}"))
        for row_id, email in rows.all():
            ascii_email = _ascii(email)
            if ascii_email is None:
                continue
            clash = bind.execute(
                sa.text(f"SELECT 1 FROM {table} WHERE email_key = :key"), {"key": ascii_email.lower()}
            ).first()
            if clash is None:
                bind.execute(
                    sa.text(f"UPDATE {table} SET email = :email, email_key = :key WHERE id = :id"),
                    {"email": ascii_email, "key": ascii_email.lower(), "id": row_id},
                )


def downgrade() -> None:
    pass  # the ASCII form is the same address
