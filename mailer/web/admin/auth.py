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
import threading
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from mailer.services import admins
from mailer.services.admins import Admin
from mailer.services.env import AppEnv
from mailer.settings import DEFAULT_SECRET_KEY
from mailer.urls import ROUTES, route_of
from mailer.web.deps import Env, read_only
from mailer.web.security import check_form_token, form_token

__all__ = [
    "COOKIE",
    "UNAUTHORIZED",
    "ApiAdmin",
    "PageAdmin",
    "PageSession",
    "LoginRequired",
    "admin_keys",
    "BEARER",
    "api_admin",
    "bearer_admin",
    "csrf_ok",
    "end_session",
    "start_session",
]

COOKIE = "nl_admin"
HOME = ROUTES["admin"]
# the dashboard pages a login may go on to (the contract's names of its GET pages)
NEXT_PAGES = frozenset(
    {"admin", "admin_campaign", "admin_campaign_action", "admin_subscribers", "admin_suppressions"}
)
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


def admin_keys(env: AppEnv) -> list[str]:
    """The keys of the dashboard's cookies and CSRF tokens: the secret keys, except while the published
    default key is in use (the embedded mode allows it): then a random key of this process, so nobody
    can mint a session with a key printed in the README (sessions then end when the process does)."""

    keys = env.caches.admin_keys
    if keys is None:
        if env.settings.secret_key == [DEFAULT_SECRET_KEY]:
            keys = [secrets.token_urlsafe(32)]
        else:
            keys = list(env.settings.secret_key)
        with _KEYS_LOCK:  # the first one made is everyone's: two random keys would void each other's cookies
            keys = env.caches.admin_keys = env.caches.admin_keys or keys
    return keys


def _serializer(env: AppEnv) -> URLSafeTimedSerializer:
    # itsdangerous signs with the last key and reads with all; our list is newest first
    return URLSafeTimedSerializer(list(reversed(admin_keys(env))), salt="admin-session")


def _payload(value: object) -> tuple[int, str, str] | None:
    """(user id, nonce, fingerprint) of a cookie's payload, or None for any other shape."""
    if not (isinstance(value, list) and len(value) == 3):
        return None
    user_id, nonce, fingerprint = value
    if type(user_id) is not int or not 0 < user_id <= 2**63 - 1:
        return None
    if not (isinstance(nonce, str) and 0 < len(nonce) <= 32 and nonce.isascii()):
        return None
    if not (isinstance(fingerprint, str) and len(fingerprint) == 16 and fingerprint.isascii()):
        return None
    return user_id, nonce, fingerprint


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
    checked = _payload(payload)
    if checked is None:
        return None
    user_id, nonce, fingerprint = checked
    with read_only(env) as session:
        admin = admins.session_admin(session, user_id, fingerprint)
    return (admin, nonce) if admin else None


def _unauthorized(detail: str = "admin credentials required: Authorization: Bearer TOKEN") -> HTTPException:
    return HTTPException(401, detail, headers={"www-authenticate": 'Bearer realm="newsletter admin"'})


def bearer_admin(env: AppEnv, header: str) -> Admin | None:
    """The admin an ``Authorization: Bearer TOKEN`` header stands for, or None. Read on a read-only
    connection; the token's use is noted (every few minutes at most) in a short transaction of its own,
    never the request's: that write must not hold a lock (SQLite) while the route works."""
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    with read_only(env) as session:
        use = admins.find_token(session, secret.strip(), now=env.now())
    if use is None:
        return None
    if use.note_due:
        with env.transaction() as session:
            admins.note_token_use(session, use.token_id, now=env.now())
    return use.admin


_KEYS_LOCK = threading.Lock()
_bearer_scheme = HTTPBearer(auto_error=False, description="An API token: newsletter admin create-token NAME")


def api_admin(request: Request, env: AppEnv) -> Admin:
    """The caller of an admin API route, or 401: a Bearer token, or (for reading only) the dashboard's
    session cookie. A plain function: a route that must answer fast calls it in its own thread."""
    checked = getattr(request.state, "admin", None)  # a write: the gate (gate.py) checked it already
    if isinstance(checked, Admin):
        return checked
    header = request.headers.get("authorization")
    if header is not None:
        admin = bearer_admin(env, header)
        if admin is None:
            raise _unauthorized("this API token is not valid (unknown, revoked or malformed)")
        return admin
    if request.method in ("GET", "HEAD"):
        found = _from_cookie(request, env)
        if found is not None:
            return found[0]
    raise _unauthorized()


def _api_admin(
    request: Request, env: Env, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]
) -> Admin:
    return api_admin(request, env)


# For a route that calls api_admin itself: the OpenAPI schema still says it takes a Bearer token
BEARER = Depends(_bearer_scheme)

ApiAdmin = Annotated[Admin, Depends(_api_admin)]


def _page_admin(request: Request, env: Env) -> PageSession:
    found = _from_cookie(request, env)
    if found is None:  # back to this page after the login; a form's target has no page to go back to
        raise LoginRequired(request.url.path if request.method == "GET" else HOME)
    admin, nonce = found
    return PageSession(admin, nonce, form_token(admin_keys(env), "admin", nonce))


PageAdmin = Annotated[PageSession, Depends(_page_admin)]


def csrf_ok(env: AppEnv, page: PageSession, given: str | None) -> None:
    if not check_form_token(admin_keys(env), "admin", page.nonce, given):
        raise HTTPException(403, "this form has expired or is not ours; open the page again")


def safe_next(path: str | None) -> str:
    """Where to go after the login: the path of a dashboard page of the URL contract, never another site
    (no open redirect); else the dashboard's home."""
    if (
        path
        and len(path) <= 500
        and "\\" not in path
        and path.isascii()
        and path.isprintable()
        and route_of(path) in NEXT_PAGES
    ):
        return path
    return HOME
