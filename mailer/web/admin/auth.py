"""Who is calling the admin side, and the login that says so.

- The API (/api/) takes ``Authorization: Bearer TOKEN`` (``newsletter admin create-token``). A dashboard's
  session cookie is also accepted there, for reading only (GET): a cookie rides along with any request a
  browser makes, so a state change by cookie alone would be open to cross-site requests; the dashboard's
  own forms carry a CSRF token instead. Anything else gets 401.
- The dashboard (/admin/) takes the session cookie, set by the login form: signed (itsdangerous, the
  secret keys newest first), ``Secure``, ``HttpOnly``, ``SameSite=Strict``, valid for
  ``NEWSLETTER_ADMIN_SESSION_HOURS`` and until the user's password changes. Without one, the login page.
- Logins are limited per client IP and per admin name (``NEWSLETTER_ADMIN_LOGIN_LIMIT`` per 15 minutes).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from mailer.services import admins
from mailer.services.admins import Admin
from mailer.services.env import AppEnv
from mailer.web.deps import Env
from mailer.web.security import check_form_token, form_token

__all__ = [
    "COOKIE",
    "UNAUTHORIZED",
    "ApiAdmin",
    "PageAdmin",
    "PageSession",
    "LoginRequired",
    "csrf_ok",
    "end_session",
    "start_session",
]

COOKIE = "nl_admin"
# every admin API route answers this without valid credentials (their OpenAPI entries say so)
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "No valid admin credentials"}}
LOGIN_WINDOW_SECONDS = 900


class LoginRequired(Exception):
    """A dashboard page asked for without a valid session: the app answers with the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


@dataclass(frozen=True)
class PageSession:
    admin: Admin
    nonce: str  # per login: the dashboard's CSRF tokens are bound to it
    csrf: str


def _serializer(env: AppEnv) -> URLSafeTimedSerializer:
    def make() -> URLSafeTimedSerializer:
        # itsdangerous signs with the last key and reads with all; our list is newest first
        return URLSafeTimedSerializer(list(reversed(env.settings.secret_key)), salt="admin-session")

    return env.shared("admin.cookie-serializer", make)


def start_session(env: AppEnv, response: Response, admin: Admin, fingerprint: str) -> None:
    value = _serializer(env).dumps([admin.id, secrets.token_urlsafe(12), fingerprint])
    response.set_cookie(
        COOKIE,
        str(value),
        max_age=int(env.settings.admin_session_hours * 3600),
        path="/",
        secure=True,  # browsers keep Secure cookies on http://127.0.0.1 and localhost too
        httponly=True,
        samesite="strict",
    )


def end_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def _from_cookie(request: Request, env: AppEnv) -> tuple[Admin, str] | None:
    value = request.cookies.get(COOKIE)
    if not value or len(value) > 400:
        return None
    try:
        payload = _serializer(env).loads(value, max_age=int(env.settings.admin_session_hours * 3600))
    except BadSignature:
        return None
    if not (isinstance(payload, list) and len(payload) == 3 and isinstance(payload[0], int)):
        return None
    with env.sessions() as session:
        admin = admins.session_admin(session, payload[0], str(payload[2]))
    return (admin, str(payload[1])) if admin else None


def _unauthorized(detail: str = "admin credentials required: Authorization: Bearer TOKEN") -> HTTPException:
    return HTTPException(401, detail, headers={"www-authenticate": 'Bearer realm="newsletter admin"'})


def _api_admin(request: Request, env: Env) -> Admin:
    # its own short transactions, not the request's: noting a token's use must not hold a write lock
    # (SQLite) while the route works
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise _unauthorized()
        with env.transaction() as session:
            admin = admins.token_admin(session, secret.strip(), now=env.now())
        if admin is None:
            raise _unauthorized("this API token is not valid (unknown, revoked or malformed)")
        return admin
    if request.method in ("GET", "HEAD"):
        found = _from_cookie(request, env)
        if found is not None:
            return found[0]
    raise _unauthorized()


ApiAdmin = Annotated[Admin, Depends(_api_admin)]


def _page_admin(request: Request, env: Env) -> PageSession:
    found = _from_cookie(request, env)
    if found is None:
        raise LoginRequired(request.url.path)
    admin, nonce = found
    return PageSession(admin, nonce, form_token(env.settings.secret_key, "admin", nonce))


PageAdmin = Annotated[PageSession, Depends(_page_admin)]


def csrf_ok(env: AppEnv, page: PageSession, given: str | None) -> None:
    if not check_form_token(env.settings.secret_key, "admin", page.nonce, given):
        raise HTTPException(403, "this form has expired or is not ours; open the page again")


def safe_next(path: str | None) -> str:
    """Where to go after the login: a dashboard path of ours, never another site (no open redirect)."""
    if (
        path
        and path.startswith("/admin/")
        and not path.startswith("//")
        and "\\" not in path
        and path.isascii()
    ):
        return path
    return "/admin/"
