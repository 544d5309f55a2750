"""Addresses, locales and topic lists as a CSV row or a form gives them -> the values we store. Pure.

Every address is validated with email-validator's syntax rules (never DNS). Validation is the hot loop of an
import, so the common case takes a fast path with exactly email-validator's semantics: a plain ASCII
dot-atom local part is checked with email-validator's own pattern, and the domain goes through
email-validator's own domain validation, cached per domain (a list of a million addresses has a few
thousand domains). Anything else (quotes, Unicode local parts, RFC 2142 mailbox names, long addresses)
takes the full ``validate_email`` call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import NamedTuple

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import DOT_ATOM_TEXT, EMAIL_MAX_LENGTH, LOCAL_PART_MAX_LENGTH
from email_validator.syntax import validate_email_domain_name

from subscribers.errors import InvalidEmail, InvalidInput

try:  # the RFC 2142 names (postmaster, abuse, ...) that email-validator lower-cases
    from email_validator.validate_email import CASE_INSENSITIVE_MAILBOX_NAMES
except ImportError:  # pragma: no cover - older email-validator
    CASE_INSENSITIVE_MAILBOX_NAMES = frozenset()  # type: ignore[assignment]

__all__ = [
    "DEFAULT_LOCALE",
    "TOPIC_SEPARATORS",
    "Address",
    "email_key",
    "normalise_address",
    "normalise_locale",
    "normalise_name",
    "split_topics",
]

DEFAULT_LOCALE = "zh"
TOPIC_SEPARATORS = re.compile(r"[;|,，；、]")
TOPIC_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # what a topic key may be: no separator, no space
NAME_MAX_LENGTH = 200

_LOCALE_ALIASES = {
    "zh": "zh",
    "cn": "zh",
    "chinese": "zh",
    "中文": "zh",
    "简体中文": "zh",
    "en": "en",
    "english": "en",
    "英文": "en",
    "英语": "en",
}


class Address(NamedTuple):
    email: str  # email-validator's normalised form (domain lower-cased and IDNA-normalised)
    key: str  # the case-insensitive unique key


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str | None:
    """The normalised ASCII domain; None when email-validator rejects it (the full path then says why)
    or when it is internationalised, bracketed or holds an @ (the full path handles those)."""
    if not domain or domain[0] == "[" or "@" in domain or not domain.isascii():
        return None
    try:
        normal = validate_email_domain_name(domain, test_environment=False, globally_deliverable=True)
    except EmailNotValidError:
        return None
    return normal["domain"] if normal["domain"].isascii() else None


def _fast(address: str) -> Address | None:
    local, at, domain = address.partition("@")
    if (
        not at
        or len(local) > LOCAL_PART_MAX_LENGTH
        or not local.isascii()
        or DOT_ATOM_TEXT.match(local) is None
    ):
        return None
    normal_domain = _domain(domain)
    if normal_domain is None:
        return None
    email = local + "@" + normal_domain
    key = email.lower()
    if len(email) > EMAIL_MAX_LENGTH or key[: len(local)] in CASE_INSENSITIVE_MAILBOX_NAMES:
        return None
    return Address(email, key)


def normalise_address(text: str) -> Address:
    """The stored form and the unique key of an address; InvalidEmail (one line) when it is not valid."""
    address = text.strip()
    if not address:
        raise InvalidEmail("empty email address")
    fast = _fast(address)
    if fast is not None:
        return fast
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"invalid email address {address!r}: {exc}") from None
    if result.ascii_email is None:  # the part before the @ is not ASCII
        raise InvalidEmail(
            f"invalid email address {address!r}: the part before the @ is not ASCII, which needs SMTPUTF8 "
            "(Amazon SES does not send to such addresses)"
        )
    # an internationalised domain is kept in its ASCII form (IDNA: 例え.jp -> xn--r8jz45g.jp), the form
    # every mail header and SMTP envelope carries
    email = result.ascii_email
    return Address(email=email, key=email.lower())


def email_key(address: str) -> str:
    """The case-insensitive unique key of an address (``Jane@Example.COM`` -> ``jane@example.com``)."""
    return normalise_address(address).key


@lru_cache(maxsize=256)
def normalise_locale(text: str | None, default: str = DEFAULT_LOCALE) -> str:
    """``zh``/``en`` from what a spreadsheet holds (``zh-CN``, ``en_US``, ``English``, ``中文``, empty)."""
    value = (text or "").strip().lower().replace("_", "-")
    if not value:
        return default
    found = _LOCALE_ALIASES.get(value) or _LOCALE_ALIASES.get(value.split("-", 1)[0])
    if found is None:
        raise InvalidInput(f"unknown locale {text!r} (use zh or en)")
    return found


def normalise_name(text: str | None) -> str | None:
    """A display name with control characters and runs of whitespace collapsed; None when empty."""
    if text is None:
        return None
    if not text.isprintable():  # tabs, newlines, control characters become spaces
        text = "".join(c if c.isprintable() else " " for c in text)
    name = " ".join(text.split())
    if len(name) > NAME_MAX_LENGTH:
        raise InvalidInput(f"name longer than {NAME_MAX_LENGTH} characters")
    return name or None


def split_topics(text: str | None) -> list[str]:
    """The non-empty parts of ``nova;neutron`` / ``nova|neutron`` / ``nova, neutron``, trimmed."""
    if not text:
        return []
    return [part.strip() for part in TOPIC_SEPARATORS.split(text) if part.strip()]


def resolve_topics(parts: Iterable[str], resolve: Callable[[str], str | None]) -> frozenset[str]:
    """Topic keys for names given by a user; InvalidInput naming the first unknown topic."""
    keys = set()
    for part in parts:
        key = resolve(part)
        if key is None:
            raise InvalidInput(f"unknown topic {part!r}")
        keys.add(key)
    return frozenset(keys)
