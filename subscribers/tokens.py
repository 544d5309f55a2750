"""Signed, URL-safe tokens for links (unsubscribe, preferences, confirm, view). HMAC-SHA256.

A token is ``<id base36>.<issued unix time base36>.<signature>``. The signature covers:
- the purpose, so a token for one purpose never works for another;
- an optional ``scope`` the link carries elsewhere (the campaign of a view link), so it works for no
  other scope;
- the subscriber's ``token_salt``, random per subscriber row and stored with it, so a token names one
  person: should an id ever be held by someone else (a deleted row's id reused), the old links do not
  act on the new person; the salt is not in the token, reading one needs the row (``read_link`` in
  subscribers.links).
Keys rotate: tokens are signed with the first key and read with any of them (newest first).

It runs once per recipient of a send, so the keyed HMAC state is built once per (key, purpose) and copied.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from hashlib import sha256
from typing import Any

from subscribers.errors import InvalidToken

__all__ = ["PURPOSES", "make_token", "token_subject", "verify_token"]

PURPOSES = ("unsubscribe", "preferences", "confirm", "view")
_SIGNATURE_BYTES = 16  # 128 bits, 22 characters
_TOKEN_RE = re.compile(r"([0-9a-z]{1,13})\.([0-9a-z]{1,13})\.([A-Za-z0-9_-]{22})")
_MALFORMED = "this link is not valid (malformed token)"
_FORGED = "this link is not valid"


@lru_cache(maxsize=64)
def _keyed(key: str, purpose: str) -> Any:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    if not key:
        raise ValueError("an empty key cannot sign tokens")
    return hmac.new(key.encode(), purpose.encode() + b"\0", sha256)


def _signature(key: str, purpose: str, payload: str, scope: str, salt: str) -> str:
    mac = _keyed(key, purpose).copy()
    mac.update(f"{payload}\0{scope}\0{salt}".encode())
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
    key: str, subscriber_id: int, purpose: str, *, salt: str, scope: str = "", now: datetime
) -> str:
    """A token for ``subscriber_id`` (whose row holds ``salt``), signed with ``key``."""
    if subscriber_id < 0:
        raise ValueError("subscriber ids are not negative")
    if not salt:
        raise ValueError("a token needs the subscriber's salt")
    issued = int(now.timestamp())
    payload = f"{_b36(subscriber_id)}.{_b36(issued)}"
    return f"{payload}.{_signature(key, purpose, payload, scope, salt)}"


def _parts(token: object) -> tuple[str, str, str]:
    if not isinstance(token, str):
        raise InvalidToken(_MALFORMED)
    match = _TOKEN_RE.fullmatch(token.strip())
    if match is None:  # also anything non-ASCII, too long, or with a stray character
        raise InvalidToken(_MALFORMED)
    return match.group(1), match.group(2), match.group(3)


def token_subject(token: object) -> int:
    """The subscriber id a well-formed token names; NOT verified (``verify_token`` does that)."""
    return int(_parts(token)[0], 36)


def verify_token(
    keys: str | Sequence[str],
    token: str,
    purpose: str,
    *,
    salt: str,
    scope: str = "",
    max_age: float | None = None,
    now: datetime,
) -> int:
    """The subscriber id of a token signed by one of ``keys`` for this purpose, scope and salt;
    InvalidToken (saying nothing of why, beyond malformed or expired) otherwise."""
    id_text, issued_text, signature = _parts(token)
    payload = f"{id_text}.{issued_text}"
    for key in [keys] if isinstance(keys, str) else keys:
        if hmac.compare_digest(_signature(key, purpose, payload, scope, salt), signature):
            break
    else:
        raise InvalidToken(_FORGED)
    if max_age is not None and now.timestamp() - int(issued_text, 36) > max_age:
        raise InvalidToken("this link has expired")
    return int(id_text, 36)
