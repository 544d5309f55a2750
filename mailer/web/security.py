"""What every response and request of the web app goes through: security headers (a CSP that allows no
script at all), a request body limit, and the form checks (a signed form token, and a refusal of
cross-site form posts). Pure ASGI middleware: they run for every request, webhook included."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Sequence
from hashlib import sha256
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailer.urls import STATIC_PREFIX

__all__ = [
    "EMAIL_PAGE_CSP",
    "BodyLimit",
    "HeadAsGet",
    "SecurityHeaders",
    "check_form_token",
    "form_token",
    "origin_of",
]

# Pages of the app: no script of any kind, styles from our own stylesheet only, forms post to us only.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# An issue's web version is the email's HTML: its styles are inline (as in every email) and its images
# may live anywhere; still no script, no frames, no forms.
EMAIL_PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; form-action 'none'; "
    "frame-ancestors 'self'; base-uri 'none'"
)


class SecurityHeaders:
    """Adds the security headers to every response that does not set its own."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        headers = [
            (b"content-security-policy", PAGE_CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            # links carry tokens in their paths: no page hands its URL to another site
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cache-control", b"no-store"),
        ]
        if https:
            headers.append((b"strict-transport-security", b"max-age=31536000"))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope["path"].startswith(STATIC_PREFIX)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                if static:  # the stylesheet: the same for everyone, cached for an hour
                    present.add(b"cache-control")
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"cache-control", b"public, max-age=3600"),
                    ]
                extra = [(n, v) for n, v in self.headers if n not in present]
                if b"content-security-policy" in present:  # a page with its own policy frames itself
                    extra = [(n, v) for n, v in extra if n != b"x-frame-options"]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class HeadAsGet:
    """Answers HEAD like GET without the body (link checkers and mail scanners send HEAD; the routes
    declare GET only). A GET changes nothing, so neither does a HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


class BodyLimit:
    """Refuses request bodies larger than ``limit`` bytes with 413: by Content-Length before reading, and
    by counting when the body arrives in chunks."""

    def __init__(
        self, app: ASGIApp, *, limit: int, uploads: tuple[str, ...] = (), upload_limit: int = 0
    ) -> None:
        self.app = app
        self.limit = limit
        # these paths (the admin's CSV and issue uploads) may send up to upload_limit; their routes
        # read the body only after authentication
        self.uploads = frozenset(uploads)
        self.upload_limit = max(limit, upload_limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"] in self.uploads else self.limit
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            status = 413 if length.isdigit() else 400
            await _plain(
                send, status, b"request body too large\n" if status == 413 else b"bad Content-Length\n"
            )
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, counted, send)


async def _plain(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- forms -------------------------------------------------------------------------------------------
def _mac(key: str, purpose: str, bound: str) -> str:
    digest = hmac.new(key.encode(), f"form\0{purpose}\0{bound}".encode(), sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def form_token(keys: Sequence[str], purpose: str, bound: str = "") -> str:
    """The hidden field a form of ``purpose`` carries; ``bound`` ties it to the page's link token."""
    return _mac(keys[0], purpose, bound)


def check_form_token(keys: Sequence[str], purpose: str, bound: str, given: str | None) -> bool:
    if not given or len(given) > 64 or not given.isascii():  # compare_digest takes ASCII strings only
        return False
    return any(hmac.compare_digest(_mac(key, purpose, bound), given) for key in keys)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
