"""Signed, URL-safe tokens for links (unsubscribe, preferences, confirm, view). HMAC-SHA256; no database.

A token is ``<id base36>.<issued unix time base36>.<signature>``; the signature covers the purpose, so a
token for one purpose never works for another, and an optional ``scope`` the link carries elsewhere (the
campaign of a view link), so a token never works for another scope. It runs once per recipient of a send,
so the keyed HMAC state is built once per (secret, purpose) and copied.
"""

from __future__ import annotations

import base64
import hmac
from datetime import datetime
from functools import lru_cache
from hashlib import sha256
from typing import Any

from subscribers.db import utcnow
from subscribers.errors import InvalidToken

__all__ = ["PURPOSES", "make_token", "read_token"]

PURPOSES = ("unsubscribe", "preferences", "confirm", "view")
_SIGNATURE_BYTES = 16  # 128 bits, 22 characters


@lru_cache(maxsize=64)
def _keyed(secret: str, purpose: str) -> Any:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if not secret:
        raise ValueError("an empty secret cannot sign tokens")
    return hmac.new(secret.encode(), purpose.encode() + b"\0", sha256)


def _signature(secret: str, purpose: str, payload: str, scope: str) -> str:
    mac = _keyed(secret, purpose).copy()
    mac.update(f"{payload}\0{scope}".encode() if scope else payload.encode())
    return base64.urlsafe_b64encode(mac.digest()[:_SIGNATURE_BYTES]).rstrip(b"=").decode()


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def make_token(
    secret: str, subscriber_id: int, purpose: str, *, scope: str = "", now: datetime | None = None
) -> str:
    if subscriber_id < 0:
        raise ValueError("subscriber ids are not negative")
    issued = int((now or utcnow()).timestamp())
    payload = f"{_b36(subscriber_id)}.{_b36(issued)}"
    return f"{payload}.{_signature(secret, purpose, payload, scope)}"


def read_token(
    secret: str,
    token: str,
    purpose: str,
    *,
    scope: str = "",
    max_age: float | None = None,
    now: datetime | None = None,
) -> int:
    """The subscriber id a token was made for (with this purpose and scope); InvalidToken when it is
    forged, mangled, for another scope or too old."""
    parts = token.strip().split(".") if isinstance(token, str) else []
    if len(parts) != 3 or len(token) > 100:
        raise InvalidToken("this link is not valid (malformed token)")
    id_text, issued_text, signature = parts
    expected = _signature(secret, purpose, f"{id_text}.{issued_text}", scope)
    if not hmac.compare_digest(expected, signature):
        raise InvalidToken("this link is not valid (bad signature)")
    try:
        subscriber_id, issued = int(id_text, 36), int(issued_text, 36)
    except ValueError:
        raise InvalidToken("this link is not valid (malformed token)") from None
    if max_age is not None and (now or utcnow()).timestamp() - issued > max_age:
        raise InvalidToken("this link has expired")
    return subscriber_id
