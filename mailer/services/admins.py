"""Admin users and API tokens: create, authenticate, revoke. The CLI (``newsletter admin``) and the web
app's authentication dependencies call these; none of them sees a hash or SQL.

A token is ``nl_`` + 43 URL-safe characters (256 random bits), shown once when created; only its SHA-256 is
stored. A login compares with Argon2id and costs the same time for an unknown name as for a wrong password.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mailer.accounts import passwords, store
from mailer.accounts.models import AdminUser
from mailer.errors import ConflictError, InputError, NotFoundError

__all__ = [
    "Admin",
    "NewToken",
    "TokenUse",
    "TokenRow",
    "authenticate",
    "create_token",
    "create_user",
    "end_sessions",
    "find_token",
    "note_token_use",
    "login_fingerprint",
    "list_tokens",
    "list_users",
    "revoke_token",
    "session_admin",
    "set_password",
]

log = logging.getLogger(__name__)
TOKEN_PREFIX = "nl_"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_TOKEN_RE = re.compile(r"nl_[A-Za-z0-9_-]{43}")
TOUCH_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Admin:
    """Who is calling: an admin user, through a session cookie or an API token."""

    id: int
    name: str
    via: str  # "session" or "token"


@dataclass(frozen=True)
class NewToken:
    id: int
    user: str
    label: str
    secret: str  # shown once; never stored


@dataclass(frozen=True)
class TokenRow:
    id: int
    user: str
    label: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _check_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name):
        raise InputError(
            f"admin name {name[:70]!r} is not valid: 1 to 64 of a-z, 0-9, '.', '_', '-', starting with a "
            "letter or digit"
        )
    return name


def _check_password(password: str) -> None:
    problem = passwords.check_password_strength(password)
    if problem:
        raise InputError(problem)


def _hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(session: Session, name: str, password: str, *, now: datetime) -> Admin:
    _check_name(name)
    _check_password(password)
    if store.find_user(session, name) is not None:
        raise ConflictError(f"admin {name!r} already exists (set a new password with admin set-password)")
    user = store.insert_user(session, name, passwords.hash_password(password), now=now)
    log.info("admin user %s created", name)
    return Admin(user.id, user.name, "cli")


def set_password(session: Session, name: str, password: str, *, now: datetime) -> None:
    """A new password; every session cookie issued before it stops working."""
    _check_password(password)
    user = _user(session, name)
    store.set_password_hash(session, user, passwords.hash_password(password), now=now)
    log.info("admin user %s: password changed", name)


def _user(session: Session, name: str) -> AdminUser:
    user = store.find_user(session, name)
    if user is None:
        raise NotFoundError(f"no admin user {name!r}")
    return user


def list_users(session: Session) -> list[tuple[str, bool, datetime]]:
    return [(u.name, u.disabled, u.created_at) for u in store.list_users(session)]


def authenticate(session: Session, name: str, password: str) -> Admin | None:
    """The admin whose name and password these are, or None (same cost either way)."""
    user = store.find_user(session, name) if _NAME_RE.fullmatch(name) else None
    if user is None or user.disabled:
        passwords.verify_password(passwords.dummy_hash(), password)
        return None
    if not passwords.verify_password(user.password_hash, password):
        return None
    if passwords.needs_rehash(user.password_hash):
        store.set_password_hash(
            session, user, passwords.hash_password(password), now=user.password_changed_at
        )
    return Admin(user.id, user.name, "session")


def session_admin(session: Session, user_id: int, fingerprint: str) -> Admin | None:
    """The admin a session cookie names, unless disabled, logged out or the password changed since it was
    issued (the cookie carries a fingerprint of the password hash and the session epoch)."""
    user = store.get_user(session, user_id)
    if user is None or user.disabled:
        return None
    if not hmac.compare_digest(_fingerprint(user).encode(), fingerprint.encode()):
        return None
    return Admin(user.id, user.name, "session")


def _fingerprint(user: AdminUser) -> str:
    return hashlib.sha256(f"{user.password_hash}\0{user.session_epoch}".encode()).hexdigest()[:16]


def login_fingerprint(session: Session, admin: Admin) -> str:
    """What a session cookie carries: a new password, or a logout, ends every session issued before."""
    user = store.get_user(session, admin.id)
    assert user is not None
    return _fingerprint(user)


def end_sessions(session: Session, admin: Admin) -> None:
    """Log out: every session cookie of this admin stops working, on every browser."""
    store.next_session_epoch(session, admin.id)
    log.info("admin %s logged out (every session ended)", admin.name)


def create_token(session: Session, name: str, label: str, *, now: datetime) -> NewToken:
    label = " ".join(label.split())[:100] or "api"
    user = _user(session, name)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = store.insert_token(session, user, label, _hash_token(secret), secret[:10], now=now)
    log.info("API token %d (%s) created for %s", token.id, label, name)
    return NewToken(token.id, user.name, label, secret)


@dataclass(frozen=True)
class TokenUse:
    admin: Admin
    token_id: int
    note_due: bool  # its last use was noted long enough ago to note this one (note_token_use)


def find_token(session: Session, secret: str, *, now: datetime) -> TokenUse | None:
    """The admin an API token stands for (reads only), or None for a malformed, unknown or revoked one."""
    if not _TOKEN_RE.fullmatch(secret):
        return None
    found = store.find_token(session, _hash_token(secret))
    if found is None:
        return None
    token, user = found
    due = token.last_used_at is None or token.last_used_at < now - TOUCH_EVERY
    return TokenUse(Admin(user.id, user.name, "token"), token.id, due)


def note_token_use(session: Session, token_id: int, *, now: datetime) -> None:
    """When a token was last used (``admin tokens`` shows it), at most once per few minutes."""
    store.touch_token(session, token_id, now=now, older_than=now - TOUCH_EVERY)


def list_tokens(session: Session) -> list[TokenRow]:
    return [
        TokenRow(t.id, name, t.label, t.prefix, t.created_at, t.last_used_at, t.revoked_at)
        for t, name in store.list_tokens(session)
    ]


def revoke_token(session: Session, token_id: int, *, now: datetime) -> None:
    if not store.revoke_token(session, token_id, now=now):
        raise NotFoundError(f"no live API token {token_id}")
    log.info("API token %d revoked", token_id)
