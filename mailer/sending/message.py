"""A stored rendering + one recipient -> the bytes of one MIME message, by substitution only.

Everything that does not vary per recipient is encoded once per segment (``SegmentMessage.compile``):
the constant headers (RFC 2047 From display name and Subject, Reply-To, List-Id, Feedback-ID, the campaign
header), the MIME skeleton, and the encoded literal text between the placeholders of each part. Building
one recipient's message (``SegmentMessage.build``) then joins pre-encoded bytes with the few encoded
values (address, links) and adds the per-recipient headers (To, Date, Message-ID, List-Unsubscribe).

How a part is pre-encoded (``_EncodedPart``): quoted-printable allows a soft line break (``=`` CRLF)
anywhere, so each literal chunk is encoded on its own, starting at column 0, and a soft break separates it
from the value that follows; the decoded text is exactly literal + value + literal.... Base64 cannot be
cut like that, but the bytes before the first placeholder can be encoded once up to a 57-byte boundary
(one full line); only the tail is encoded per recipient. Each part takes base64 when that is clearly
smaller (CJK-heavy text) and its tail is short, else quoted-printable. Content is CRLF-normalised
(canonical form of text/*), every line stays within 76 octets.
"""

from __future__ import annotations

import binascii
import email.policy
import hashlib
import html
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formataddr, formatdate
from functools import cached_property
from typing import Protocol

from mailer.rendering import placeholders
from mailer.urls import Urls

__all__ = [
    "RecipientLinks",
    "RenderingLike",
    "SegmentMessage",
    "SenderIdentity",
    "BuiltMessage",
    "link_values",
    "segment_label",
    "to_header_value",
]

CRLF = b"\r\n"
_B64_LINE = 57  # input bytes per 76-character base64 line
_B64_MAX_TAIL = 16_384  # longest per-recipient base64 tail worth its CPU
_B64_PREFERRED_RATIO = 1.15  # take base64 only when quoted-printable would be this much bigger


class RenderingLike(Protocol):
    """What message building reads from a rendering (mailer.rendering.render.Rendering or a stored copy)."""

    @property
    def segment(self) -> frozenset[str]: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class SenderIdentity:
    """The newsletter's sending identity, taken from settings once per campaign."""

    name: str  # newsletter name (List-Id phrase)
    sender_name: str
    sender_address: str
    reply_to: str | None
    list_id: str  # e.g. "newsletter.example.org"
    base_url: str

    @property
    def domain(self) -> str:
        return self.sender_address.rpartition("@")[2] or "localhost"

    @cached_property
    def urls(self) -> Urls:
        return Urls(self.base_url, self.domain)

    @classmethod
    def from_settings(cls, settings: object) -> SenderIdentity:
        address: str = settings.sender_address  # type: ignore[attr-defined]
        domain = address.rpartition("@")[2] or "localhost"
        local = address.partition("@")[0].replace(".", "-") or "newsletter"
        return cls(
            name=settings.name,  # type: ignore[attr-defined]
            sender_name=settings.sender_name,  # type: ignore[attr-defined]
            sender_address=address,
            reply_to=settings.reply_to,  # type: ignore[attr-defined]
            list_id=settings.list_id or f"{local}.{domain}",  # type: ignore[attr-defined]
            base_url=settings.base_url.rstrip("/"),  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class RecipientLinks:
    """One recipient's signed tokens (subscribers.tokens.make_token per purpose)."""

    unsubscribe: str
    preferences: str
    view: str


def link_values(
    identity: SenderIdentity, campaign_id: int, email: str, tokens: RecipientLinks
) -> dict[str, str]:
    """The placeholder values of one recipient, plus the mailto unsubscribe used in the header; every
    link comes from the URL contract (mailer/urls.py)."""
    urls = identity.urls
    return {
        placeholders.EMAIL: email,
        placeholders.UNSUBSCRIBE_URL: urls.unsubscribe(tokens.unsubscribe),
        placeholders.PREFERENCES_URL: urls.preferences(tokens.preferences),
        placeholders.VIEW_URL: urls.view(campaign_id, tokens.view),
        "mailto_unsubscribe": urls.mailto_unsubscribe(tokens.unsubscribe),
    }


def segment_label(segment: frozenset[str]) -> str:
    """A short stable name of a segment for headers: sorted topics, or 'all' for the general one."""
    return "+".join(sorted(segment)) or "all"


def _canonical(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _qp(data: bytes) -> bytes:
    """Quoted-printable with CRLF line breaks whose last line leaves room for a soft break ("=")."""
    encoded = binascii.b2a_qp(data, istext=True).replace(b"\r\n", b"\n").replace(b"\n", CRLF)
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start > 75:
        cut = len(encoded) - 1
        while encoded[cut - 2 : cut - 1] == b"=" or encoded[cut - 1 : cut] == b"=":
            cut -= 1  # never split an =XX escape
        encoded = encoded[:cut] + b"=\r\n" + encoded[cut:]
    return encoded


def _b64_lines(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return CRLF.join([encoded[i : i + 76] for i in range(0, len(encoded), 76)])


class _EncodedPart:
    """One text part (plain or HTML) pre-encoded around its placeholders."""

    __slots__ = ("cte", "escape", "pieces", "prefix", "tail")

    def __init__(self, template: str, *, escape_html: bool) -> None:
        split = placeholders.SplitTemplate.split(template, escape_html=escape_html)
        self.escape = escape_html
        literals = [_canonical(p) for p in split.parts[0::2]]
        names = list(split.parts[1::2])
        # quoted-printable: literal chunks encoded once; a value is a name looked up per recipient.
        qp: list[bytes | str] = []
        for index, literal in enumerate(literals):
            if literal:
                qp.append(_qp(literal))
            if index < len(names):
                if qp:
                    qp.append(b"=\r\n")
                qp.append(names[index])
                qp.append(b"=\r\n")
        qp_size = sum(len(p) for p in qp if isinstance(p, bytes))
        # base64: lines before the first placeholder once; the rest (tail) per recipient.
        aligned = len(literals[0]) // _B64_LINE * _B64_LINE
        tail: list[bytes | str] = [literals[0][aligned:]]
        for index, name in enumerate(names):
            tail.append(name)
            tail.append(literals[index + 1])
        tail_size = sum(len(p) for p in tail if isinstance(p, bytes))
        b64_size = (aligned + tail_size) * 4 // 3
        if tail_size <= _B64_MAX_TAIL and qp_size > b64_size * _B64_PREFERRED_RATIO:
            self.cte = "base64"
            self.prefix = _b64_lines(literals[0][:aligned]) + CRLF if aligned else b""
            self.tail = tuple(tail)
            self.pieces: tuple[bytes | str, ...] = ()
        else:
            self.cte = "quoted-printable"
            self.prefix = b""
            self.tail = ()
            self.pieces = tuple(qp)

    def encode(self, values: Mapping[str, bytes]) -> bytes:
        """The encoded body; ``values`` are already quoted-printable encoded for a QP part."""
        if self.cte == "quoted-printable":
            return b"".join([values[p] if isinstance(p, str) else p for p in self.pieces])
        tail = b"".join([values[p] if isinstance(p, str) else p for p in self.tail])
        return self.prefix + _b64_lines(tail)


@dataclass(frozen=True)
class BuiltMessage:
    raw: bytes
    message_id: str  # the Message-ID header value, with its angle brackets


class SegmentMessage:
    """A segment's rendering compiled for one campaign; ``build`` makes each recipient's message."""

    def __init__(
        self, rendering: RenderingLike, *, campaign_id: int, identity: SenderIdentity, nonce: str = "0"
    ) -> None:
        """``nonce`` (stored with the campaign) keeps Message-IDs unique across campaigns and test sends
        while a resend of the same row repeats its Message-ID, so receivers can drop the copy."""
        self.campaign_id = campaign_id
        self.nonce = nonce
        self.identity = identity
        self.segment = frozenset(rendering.segment)
        label = segment_label(self.segment)
        digest = hashlib.sha256(f"{campaign_id}|{label}|{nonce}|{rendering.subject}".encode()).hexdigest()
        # "=_" never occurs in quoted-printable or base64 output, so the boundary cannot collide.
        boundary = f"=_nl_{digest[:24]}"
        self._text = _EncodedPart(rendering.text, escape_html=False)
        self._html = _EncodedPart(rendering.html, escape_html=True)
        self._names = tuple(sorted(placeholders.find(rendering.text) | placeholders.find(rendering.html)))
        headers = [
            _fold("From", formataddr((identity.sender_name, identity.sender_address))),
            _fold("Reply-To", identity.reply_to or identity.sender_address),
            _fold("Subject", rendering.subject),
            _fold("List-Id", f"{identity.name} <{identity.list_id}>"),
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            f"Feedback-ID: {campaign_id}:{_feedback_label(label)}:newsletter:{identity.domain}",
            f"X-Newsletter-Campaign: {campaign_id}",
            "Precedence: bulk",
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ]
        self._head = ("\r\n".join(headers) + "\r\n").encode("ascii")
        delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
        self._text_open = (
            b"\r\n--" + boundary.encode("ascii") + b"\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + self._text.cte.encode("ascii") + b"\r\n\r\n"
        )
        self._html_open = (
            delimiter + b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: " + self._html.cte.encode("ascii") + b"\r\n\r\n"
        )
        self._close = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._date_second = -1
        self._date_header = b""

    @property
    def encodings(self) -> tuple[str, str]:
        """Content-Transfer-Encoding of the text and the HTML part (for reports and tests)."""
        return self._text.cte, self._html.cte

    def _date(self, now: float) -> bytes:
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date_header = f"Date: {formatdate(second, usegmt=True)}\r\n".encode("ascii")
        return self._date_header

    def build(
        self,
        *,
        subscriber_id: int,
        email: str,
        name: str | None,
        values: Mapping[str, str],
        now: float | None = None,
    ) -> BuiltMessage:
        """One recipient's message. ``values`` comes from ``link_values``; ``now`` is a Unix time."""
        text_values: dict[str, bytes] = {}
        html_values: dict[str, bytes] = {}
        text_qp = self._text.cte == "quoted-printable"
        html_qp = self._html.cte == "quoted-printable"
        for key in self._names:
            value = values[key]
            plain = value.encode("utf-8")
            escaped = html.escape(value).encode("utf-8")
            text_values[key] = _qp(plain) if text_qp else plain
            html_values[key] = _qp(escaped) if html_qp else escaped
        message_id = f"<{self.campaign_id}.{subscriber_id}.{self.nonce}@{self.identity.domain}>"
        to = to_header_value(name, email)
        head = (
            f"To: {to}\r\nMessage-ID: {message_id}\r\n"
            f"List-Unsubscribe: <{values[placeholders.UNSUBSCRIBE_URL]}>,\r\n"
            f" <{values['mailto_unsubscribe']}>\r\n"
        ).encode()
        raw = b"".join(
            (
                self._head,
                self._date(time.time() if now is None else now),
                head,
                self._text_open,
                self._text.encode(text_values),
                self._html_open,
                self._html.encode(html_values),
                self._close,
            )
        )
        return BuiltMessage(raw=raw, message_id=message_id)


_WORD_BYTES = 42  # UTF-8 bytes per encoded word: "=?utf-8?b?" + 56 base64 characters + "?=" is 68


def to_header_value(name: str | None, email: str) -> str:
    """The To header's value: the address, with the display name RFC 2047-encoded where needed. Lines stay
    within 78 characters ("To: " included) and encoded words within 75 (RFC 5322, RFC 2047): a long
    name, CJK above all, is split into several words on character boundaries, one per folded line."""
    if not name:
        return email
    short = formataddr((name, email), charset="utf-8")
    if len(short) <= 72 and "\r" not in short:
        return short
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in name:
        length = len(char.encode("utf-8"))
        if size + length > _WORD_BYTES:
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += length
    words.append("".join(chunk))
    encoded = [f"=?utf-8?b?{binascii.b2a_base64(w.encode(), newline=False).decode()}?=" for w in words]
    return "\r\n ".join(encoded) + f"\r\n <{email}>"


def _fold(name: str, value: str) -> str:
    """A header line RFC 2047-encoded and folded at 78 (done once per segment: it is slow)."""
    return email.policy.SMTP.fold(*email.policy.SMTP.header_store_parse(name, value)).rstrip("\r\n")


def _feedback_label(label: str) -> str:
    # Feedback-ID fields are colon-separated; keep a segment label short and colon-free.
    cleaned = label.replace(":", "-")
    return cleaned if len(cleaned) <= 40 else hashlib.sha1(cleaned.encode()).hexdigest()[:12]
