"""``GET /metrics``: Prometheus's text format (mailer.observability: this process's counters, the
database's and the queue's figures read at the scrape).

Not for the world, and closed unless configured otherwise:
- with ``NEWSLETTER_METRICS_TOKEN`` set, every client must send ``Authorization: Bearer <token>``
  (Prometheus: ``authorization: {credentials_file: ...}``), else 401;
- without it, only clients in ``NEWSLETTER_METRICS_NETWORKS`` (default: loopback) that reach the app
  directly may read it, else 403. A request carrying a proxy's headers (Forwarded, X-Forwarded-For,
  X-Real-IP) is never taken for a local one: a reverse proxy on the same machine forwards the world's
  requests from 127.0.0.1.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.web.collector import scrape_registry

__all__ = ["access", "make_router"]

_PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def access(
    settings: Settings, client: str | None, headers: Mapping[str, str]
) -> Literal["ok", "unauthorized", "forbidden"]:
    """Whether a request may read the metrics (see the module's doc); pure."""
    token = settings.metrics_token
    if token:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        good = scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
        return "ok" if good else "unauthorized"
    if client is None or any(name in headers for name in _PROXY_HEADERS):
        return "forbidden"
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return "forbidden"
    networks = (ipaddress.ip_network(net) for net in settings.metrics_networks)
    return "ok" if any(address in net for net in networks) else "forbidden"


def make_router(env: AppEnv) -> APIRouter:
    router = APIRouter(tags=["operations"])
    registry = scrape_registry(env)

    @router.get(
        "/metrics",
        summary="Prometheus metrics (a bearer token, or a local client; see NEWSLETTER_METRICS_TOKEN)",
        response_class=PlainTextResponse,
        responses={401: {"description": "no or a wrong token"}, 403: {"description": "not a local client"}},
    )
    def metrics(request: Request) -> Response:
        # a plain def: the scrape reads the database, in the thread pool
        verdict = access(env.settings, request.client.host if request.client else None, request.headers)
        if verdict == "unauthorized":
            return PlainTextResponse("a bearer token is required\n", 401, {"www-authenticate": "Bearer"})
        if verdict == "forbidden":
            return PlainTextResponse("metrics are for local clients or a bearer token\n", 403)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return router
