"""The admin tables' queries (the only SQL about admin users and tokens)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailer.accounts.models import AdminUser, ApiToken

__all__ = [
    "find_token",
    "find_user",
    "get_user",
    "insert_token",
    "insert_user",
    "list_tokens",
    "list_users",
    "next_session_epoch",
    "revoke_token",
    "set_password_hash",
    "touch_token",
]


def find_user(session: Session, name: str) -> AdminUser | None:
    return session.scalar(select(AdminUser).where(AdminUser.name == name))


def get_user(session: Session, user_id: int) -> AdminUser | None:
    return session.get(AdminUser, user_id)


def insert_user(session: Session, name: str, password_hash: str, *, now: datetime) -> AdminUser:
    user = AdminUser(
        name=name, password_hash=password_hash, created_at=now, password_changed_at=now, session_epoch=0
    )
    session.add(user)
    session.flush()
    return user


def set_password_hash(session: Session, user: AdminUser, password_hash: str, *, now: datetime) -> None:
    user.password_hash = password_hash
    user.password_changed_at = now
    session.flush()


def next_session_epoch(session: Session, user_id: int) -> None:
    session.execute(
        update(AdminUser).where(AdminUser.id == user_id).values(session_epoch=AdminUser.session_epoch + 1)
    )


def list_users(session: Session) -> list[AdminUser]:
    return list(session.scalars(select(AdminUser).order_by(AdminUser.name)))


def insert_token(
    session: Session, user: AdminUser, label: str, token_hash: str, prefix: str, *, now: datetime
) -> ApiToken:
    token = ApiToken(user_id=user.id, label=label, token_hash=token_hash, prefix=prefix, created_at=now)
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, token_hash: str) -> tuple[ApiToken, AdminUser] | None:
    """The live token with this hash and its enabled user, or None."""
    row = session.execute(
        select(ApiToken, AdminUser)
        .join(AdminUser, AdminUser.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None), AdminUser.disabled.is_(False)
        )
    ).first()
    return (row[0], row[1]) if row else None


def touch_token(session: Session, token_id: int, *, now: datetime, older_than: datetime) -> None:
    """Note the token's use, at most once per interval (a poll every second writes nothing)."""
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .where((ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < older_than))
        .values(last_used_at=now)
    )


def list_tokens(session: Session) -> list[tuple[ApiToken, str]]:
    rows = session.execute(
        select(ApiToken, AdminUser.name)
        .join(AdminUser, AdminUser.id == ApiToken.user_id)
        .order_by(ApiToken.id)
    )
    return [(token, name) for token, name in rows]


def revoke_token(session: Session, token_id: int, *, now: datetime) -> bool:
    done = session.execute(
        update(ApiToken).where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None)).values(revoked_at=now)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]
