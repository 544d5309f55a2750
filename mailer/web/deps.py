"""What routes use: the environment, the request's database session, the page renderer, the client's
address and the form checks.

One session per intent, each in two forms (a dependency, or a block the route opens itself):
- a route that changes something takes ``DbSession`` or opens ``request_transaction(env)``: read-write,
  committed once when the route returns and before the answer leaves, rolled back on an error;
- a route that only reads (every GET: mail scanners follow links) takes ``ReadSession`` or opens
  ``read_only(env)``: both from ``env.read_sessions``, connections the database refuses writes on, run
  without BEGIN and ROLLBACK. tests/architecture/test_conventions.py and tests/web/test_read_only_sessions.py
  hold every GET route of every router to it.

The busiest pages (preferences, unsubscribe, one-click, the progress bars) open theirs inside the route,
so the route, its SQL and the return of the connection run in the one thread the route runs in: one
hand-off to the thread pool per request, and a connection is only ever held by a thread that is running.
The dependencies cost a second hand-off (the session's end, after the route returned) and FastAPI's
dependency resolution per request."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Form, HTTPException, Request
from sqlalchemy.orm import Session

from mailer.services.env import AppEnv
from mailer.web.pages import Pages
from mailer.web.ratelimit import ClientLimiter
from mailer.web.security import check_form_token, origin_of

T = TypeVar("T")

__all__ = [
    "DbSession",
    "ReadSession",
    "Env",
    "FormToken",
    "PageRenderer",
    "app_env",
    "app_pages",
    "client_ip",
    "form_schema",
    "in_thread",
    "read_form",
    "read_only",
    "request_transaction",
    "same_site",
    "under_limit",
]


def app_env(request: Request) -> AppEnv:
    """The app's environment, read without dependency injection (which costs more than the read)."""
    env: AppEnv = request.app.state.env
    return env


def app_pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


@contextmanager
def request_transaction(env: AppEnv) -> Iterator[Session]:
    """A request's session, begun and ended in the calling thread: committed at the end of the block,
    rolled back on an error, closed (its connection back in the pool) either way."""
    session = env.sessions()
    try:
        yield session
    except BaseException:
        env.end_transaction(session, commit=False)
        raise
    env.end_transaction(session, commit=True)


@contextmanager
def read_only(env: AppEnv) -> Iterator[Session]:
    """A GET's session, begun and ended in the calling thread, on a connection that cannot write (a GET
    changes nothing: mail scanners follow every link) and runs without BEGIN and ROLLBACK."""
    session = env.read_sessions()
    try:
        yield session
    finally:
        env.end_transaction(session, commit=False)


# A form read by the route itself: FastAPI's per-field form parameters cost more per request than
# reading the form (measured on one-click unsubscribes, which come in bursts). ``form_schema`` documents
# the fields in the OpenAPI schema as the parameters would (the fuzz tests generate requests from it).
FormFields = Mapping[str, tuple[int, str]]  # name: (max length, description)


def form_schema(fields: FormFields) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads ``fields`` with ``read_form``."""
    schema = {
        "type": "object",
        "properties": {
            name: {"type": "string", "maxLength": limit, "description": text}
            for name, (limit, text) in fields.items()
        },
    }
    content = {
        kind: {"schema": schema} for kind in ("application/x-www-form-urlencoded", "multipart/form-data")
    }
    return {"requestBody": {"required": False, "content": content}}


async def read_form(request: Request, fields: FormFields) -> dict[str, str | None]:
    """The request's form fields named in ``fields`` (None when absent); 400 for a field that is too long
    or a file, and for a form that cannot be parsed."""
    found: dict[str, str | None] = {}
    async with request.form(max_files=0, max_fields=100) as form:
        for name, (limit, _) in fields.items():
            value = form.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                raise HTTPException(400, f"{name}: a text of at most {limit} characters")
            found[name] = value
    return found


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run blocking work (a transaction, begun and ended in it) in the request threads' pool."""
    return await anyio.to_thread.run_sync(functools.partial(function, *args))


# Dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency in the thread
# pool, a hop that costs more than the work (routes stay ``def``: the database layer is synchronous).
async def _env(request: Request) -> AppEnv:
    env: AppEnv = request.app.state.env
    return env


Env = Annotated[AppEnv, Depends(_env)]


async def _session(env: Env) -> AsyncIterator[Session]:
    # async: making a Session does no I/O (it connects on first use, in the route's thread), so only
    # the end, which commits or rolls back, takes a hop to the thread pool
    session = env.sessions()
    try:
        yield session
    except BaseException:
        await _end(env, session, commit=False)
        raise
    await _end(env, session, commit=True)


async def _end(env: AppEnv, session: Session, *, commit: bool) -> None:
    """End a request's transaction in a thread of its own, outside the pool's limit (as FastAPI does for
    a dependency's exit): waiting for a pool thread while holding a database connection deadlocks once
    every pool thread waits for a connection held that way."""
    await anyio.to_thread.run_sync(
        functools.partial(env.end_transaction, session, commit=commit), limiter=anyio.CapacityLimiter(1)
    )


DbSession = Annotated[Session, Depends(_session, scope="function")]


async def _read_session(env: Env) -> AsyncIterator[Session]:
    session = env.read_sessions()  # as read_only(): a write is refused by the database, not rolled back
    try:
        yield session
    finally:
        await _end(env, session, commit=False)


# What GET routes take: a GET never changes anything (mail scanners follow links), and it costs no COMMIT
ReadSession = Annotated[Session, Depends(_read_session, scope="function")]


async def _pages(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


PageRenderer = Annotated[Pages, Depends(_pages)]
FormToken = Annotated[str, Form(max_length=64, description="the form's signed token (hidden field)")]


def client_ip(request: Request) -> str:
    """The client's address (behind a proxy, uvicorn's --proxy-headers puts the forwarded one here)."""
    return request.client.host if request.client else "unknown"


def same_site(request: Request, env: Env) -> None:
    """Refuse a form posted from another site (403). Browsers say where a form came from: Sec-Fetch-Site
    (every current browser), else Origin ("null" from privacy settings says nothing; the signed form
    token still has to match)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site not in ("same-origin", "none"):
            raise HTTPException(403, "a form of another site cannot post here")
        return
    origin = request.headers.get("origin")
    if origin not in (None, "null") and origin.lower() != origin_of(env.settings.base_url):
        raise HTTPException(403, "a form of another site cannot post here")


def require_form_token(env: AppEnv, purpose: str, bound: str, given: str | None) -> None:
    if not check_form_token(env.settings.secret_key, purpose, bound, given):
        raise HTTPException(403, "this form has expired or is not ours; open the page again")


def under_limit(request: Request, action: str) -> None:
    """429 once this client made too many requests of ``action`` this hour."""
    limiter: ClientLimiter = request.app.state.client_limiter
    if not limiter.allow(client_ip(request), action):
        raise HTTPException(
            429, "too many requests from your address; try again in an hour", headers={"retry-after": "3600"}
        )
