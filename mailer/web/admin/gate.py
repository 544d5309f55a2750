"""The admin API's gate: a write (POST, PATCH, DELETE...) to /api/ is authenticated before its body is
read. FastAPI parses a route's JSON body before its dependencies run, so without the gate an anonymous
caller would get a 400 for a malformed body (learning the route's shape) and make the server parse it;
with it, the answer is 401 and the connection closes without reading the body."""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from mailer.services.admins import Admin
from mailer.urls import API_PREFIX

__all__ = ["ApiGate", "UNAUTHORIZED_BODY"]

READS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED_BODY = json.dumps(
    {"error": "http", "detail": "admin credentials required: Authorization: Bearer TOKEN"}
).encode()


class ApiGate:
    def __init__(self, app: ASGIApp, *, verify: Callable[[str], Admin | None]) -> None:
        self.app = app
        self.verify = verify  # an Authorization header -> its admin, or None (runs in a thread)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READS or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        admin = await anyio.to_thread.run_sync(self.verify, header) if header else None
        if admin is None:
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
                        (b"www-authenticate", b'Bearer realm="newsletter admin"'),
                        (b"connection", b"close"),  # the body is never read: no reason to keep it coming
                    ],
                }
            )
            await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
            return
        scope.setdefault("state", {})["admin"] = admin
        await self.app(scope, receive, send)
