"""Admin tables on the shared declarative Base (schema: migration 0010_admin_accounts).

A password is stored as an Argon2id hash (passwords.py); an API token only as the SHA-256 of its secret: a
token is 256 random bits, so a fast hash cannot be searched, and a lookup by hash is one indexed read.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from subscribers.db import Base, BigId, UtcDateTime, utcnow

__all__ = ["AdminUser", "ApiToken"]


class AdminUser(Base):
    __tablename__ = "admin_users"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # when the password last changed (a new one ends every session: the cookie's fingerprint covers
    # the hash)
    password_changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # part of every session cookie's fingerprint: logging out raises it, ending the user's sessions
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)


class ApiToken(Base):
    __tablename__ = "api_tokens"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("admin_users.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to recognise it by
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
