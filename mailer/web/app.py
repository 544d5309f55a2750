"""The web application: ``create_app(settings)`` builds one FastAPI app with a router per concern.

Run it with ``newsletter serve`` or ``uvicorn --factory mailer.web.app:create_app`` (settings from the
environment). It refuses to start with the published default secret key unless it runs in the embedded
file-outbox mode: links signed with a published key could be forged by anyone.

Errors of both trees are answered through ``mailer.errors.error_kind``: a page in the reader's language for
page routes, JSON for the webhook; bad input is always a 4xx, a database that cannot be reached a 503
(SNS retries), and nothing else leaks detail.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from mailer.errors import ConfigurationError, NewsletterError, database_outage_types, error_kind
from mailer.observability.logs import configure_logging
from mailer.services import feedback
from mailer.services.env import AppEnv
from mailer.settings import Settings, get_settings
from mailer.urls import API_PREFIX, ROUTES
from mailer.web import archive, metrics, preferences, signup, unsubscribe, webhooks
from mailer.web.admin import api_campaigns, api_people, dashboard
from mailer.web.admin.auth import LOGIN_WINDOW_SECONDS, LoginRequired, bearer_admin
from mailer.web.admin.gate import ApiGate
from mailer.web.pages import Pages
from mailer.web.ratelimit import ClientLimiter
from mailer.web.security import BodyLimit, HeadAsGet, SecurityHeaders
from subscribers.errors import InvalidToken, SubscribersError

__all__ = ["create_app"]

log = logging.getLogger("mailer.web")


def _check(settings: Settings) -> None:
    if not settings.embedded:
        settings.require_own_secret("the web app")
    parts = urlsplit(settings.base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"NEWSLETTER_BASE_URL must be an absolute http(s) URL, not {settings.base_url!r}"
        )
    if not settings.webhook_path.startswith("/") or "{" in settings.webhook_path:
        raise ConfigurationError(
            f"NEWSLETTER_WEBHOOK_PATH must be a plain path starting with /, not {settings.webhook_path!r}"
        )


def create_app(settings: Settings | None = None, *, env: AppEnv | None = None) -> FastAPI:
    """The application for ``settings`` (default: the environment's), or around a ready ``env``."""
    if env is None:
        env = AppEnv.from_settings(settings or get_settings())
    settings = env.settings
    _check(settings)
    configure_logging(settings, "web")  # JSON lines when NEWSLETTER_LOG_FORMAT=json (uvicorn's too)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        env.sessions  # noqa: B018  (open and migrate the database before the first request)
        env.read_sessions  # noqa: B018  (and the read-only pool the GET routes take their sessions from)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        # what startup built lives as long as the process: out of the collector's way, so its full
        # collections (pauses of tens of milliseconds: the tail latency of every request) stay short
        gc.collect()
        gc.freeze()
        app.state.sns_webhook = feedback.SnsWebhook(env)
        yield
        app.state.sns_webhook.close()
        app.state.client_limiter.close()
        app.state.login_limiter.close()
        app.state.login_name_limiter.close()
        env.close()

    app = FastAPI(
        title=f"{settings.name}: web",
        summary="Preference centre, unsubscribe, signup, archive and the SES webhook",
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load scripts from a CDN: the CSP allows none
        redoc_url=None,
        # no automatic redirect between /path and /path/: Starlette builds its Location from the
        # request's Host header, and every link we emit comes from NEWSLETTER_BASE_URL
        redirect_slashes=False,
    )
    app.state.env = env
    app.state.pages = Pages(env)
    app.state.client_limiter = ClientLimiter(
        settings.signup_ip_limit, redis_url=settings.resolved_redis_url, prefix=settings.redis_prefix
    )
    # the last added runs first: HeadAsGet, BodyLimit, SecurityHeaders, then the API's gate
    app.add_middleware(ApiGate, verify=functools.partial(bearer_admin, env))
    app.add_middleware(SecurityHeaders, https=settings.base_url.startswith("https://"))
    app.state.login_limiter, app.state.login_name_limiter = (
        ClientLimiter(
            limit,
            redis_url=settings.resolved_redis_url,
            prefix=settings.redis_prefix,
            window=LOGIN_WINDOW_SECONDS,
        )
        for limit in (settings.admin_login_limit, 10 * settings.admin_login_limit)
    )
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        uploads=(ROUTES["api_campaigns"], ROUTES["api_subscribers_import"], ROUTES["admin_campaigns"]),
        upload_limit=settings.admin_upload_bytes,
    )
    app.add_middleware(HeadAsGet)

    app.include_router(webhooks.make_router(settings.webhook_path))
    app.include_router(unsubscribe.router)
    app.include_router(preferences.router)
    app.include_router(signup.router)
    app.include_router(archive.router)
    app.include_router(metrics.make_router(env))
    app.include_router(api_campaigns.router)
    app.include_router(api_people.router)
    app.include_router(dashboard.router)
    static = Path(settings.templates_dir) / "web" / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    @app.get("/issues", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse(env.urls.archive(), status_code=303)

    @app.get("/healthz", tags=["operations"], summary="Alive and the database answers")
    def healthz() -> dict[str, str]:
        from mailer.services.maintenance import ping

        ping(env)
        return {"status": "ok"}

    _install_error_handlers(app, settings.webhook_path)
    return app


def _wants_json(request: Request, webhook_path: str) -> bool:
    path = request.url.path
    return path == webhook_path or path.startswith(API_PREFIX) or path == ROUTES["healthz"]


def _install_error_handlers(app: FastAPI, webhook_path: str) -> None:
    def answer(
        request: Request,
        status: int,
        kind: str,
        detail: str,
        headers: dict[str, str] | None = None,
        *,
        bad_link: bool = False,
    ) -> Response:
        pages: Pages = request.app.state.pages
        lang = pages.lang_for(request)
        words = pages.words[lang]
        if bad_link:
            detail = words["bad_link_text"]
        if _wants_json(request, webhook_path):
            return JSONResponse({"error": kind, "detail": detail}, status_code=status, headers=headers)
        title = words["bad_link"] if bad_link else words.get(f"error_{status}", words["error_title"])
        text = (
            words.get(f"error_{status}_text", detail)
            if status >= 500 or status in (404, 413, 429)
            else detail
        )
        return pages.message(lang, title, text, status_code=status, headers=headers, bad_link=bad_link)

    @app.exception_handler(LoginRequired)
    async def login_first(request: Request, exc: LoginRequired) -> Response:
        env: AppEnv = request.app.state.env
        return RedirectResponse(env.urls.admin_login(exc.next_path), status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return answer(request, exc.status_code, "http", str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
        return answer(request, 400, "invalid_input", f"{where}: {first.get('msg', 'invalid')}")

    async def database_down(request: Request, exc: Exception) -> Response:
        log.error("database cannot answer: %s", " ".join(str(exc).split())[:300])
        return answer(request, 503, "unavailable", "try again in a minute", {"retry-after": "30"})

    for outage in database_outage_types():
        app.add_exception_handler(outage, database_down)

    async def project_error(request: Request, exc: Exception) -> Response:
        kind = error_kind(exc)
        if kind is None or kind.http_status >= 500:
            log.error("error answering %s %s: %s", request.method, request.url.path, exc)
            status = kind.http_status if kind else 500
            return answer(request, status, kind.name if kind else "error", "something went wrong on our side")
        if isinstance(exc, InvalidToken):  # forged, malformed, expired or foreign: one answer, no detail
            return answer(request, 400, "invalid_link", "", bad_link=True)
        headers = {}
        retry = getattr(exc, "retry_after", None)
        if retry:
            headers["retry-after"] = str(int(retry) + 1)
        return answer(request, kind.http_status, kind.name, str(exc), headers)

    app.add_exception_handler(NewsletterError, project_error)
    app.add_exception_handler(SubscribersError, project_error)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.exception("error answering %s %s", request.method, request.url.path)
        return answer(request, 500, "error", "something went wrong on our side")
