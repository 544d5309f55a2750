"""The dashboard's login and session through HTTP against the app under uvicorn: the cookie's flags, CSRF
on every form, cross-site posts refused, no open redirect after the login, guessing limited, a cookie that
only reads the API, and a password change that ends every session. The CLI creates users and tokens."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from plugins.web import start_web

from mailer.services import admins

PASSWORD = "the admin's long password"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    web = start_web(tmp_path_factory.mktemp("login"), NEWSLETTER_ADMIN_LOGIN_LIMIT="1000")
    with web.env.transaction() as session:
        admins.create_user(session, "root", PASSWORD, now=datetime.now(UTC))
    yield web
    web.stop()
    web.trap.close()


def _csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, html[:500]
    return match.group(1)


@dataclass(frozen=True)
class Login:
    """A login form's answer, and the client that sent it (holding the session cookie when it worked)."""

    response: httpx.Response
    client: httpx.Client

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    @property
    def text(self) -> str:
        return self.response.text


def _login(web, name="root", password=PASSWORD, next_path="/admin/", **headers) -> Login:
    client = httpx.Client(base_url=web.url, follow_redirects=False)
    token = _csrf(client.get("/admin/login").text)
    answer = client.post(
        "/admin/login",
        data={"name": name, "password": password, "csrf": token, "next": next_path},
        headers={"sec-fetch-site": "same-origin", **headers},
    )
    if answer.status_code == 303:
        # httpx keeps a Secure cookie for https only (browsers keep it for 127.0.0.1 too): sent by hand
        value = answer.headers["set-cookie"].split(";", 1)[0]
        client.headers["cookie"] = value
    return Login(answer, client)


def test_login_sets_a_strict_cookie_and_goes_where_it_was_asked(web):
    assert web.client.get("/admin/subscribers").headers["location"] == (
        web.url + "/admin/login?next=%2Fadmin%2Fsubscribers"
    )
    answer = _login(web, next_path="/admin/subscribers")
    assert answer.status_code == 303 and answer.headers["location"] == web.url + "/admin/subscribers"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("nl_admin=")
    assert {"Secure", "HttpOnly", "SameSite=strict"} <= {part.strip() for part in cookie.split(";")}
    page = answer.client.get("/admin/subscribers")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    for hostile in ("//evil.example/admin/", "https://evil.example/", "/admin/\\evil", "/elsewhere"):
        assert _login(web, next_path=hostile).headers["location"] == web.url + "/admin/"
    # only a dashboard page of the URL contract: not a form's target, not a path nothing serves
    for nowhere in ("/admin/logout", "/admin/suppressions/remove", "/admin/no/such/page"):
        assert _login(web, next_path=nowhere).headers["location"] == web.url + "/admin/"
    campaign = _login(web, next_path="/admin/campaigns/7/start").headers["location"]
    assert campaign == web.url + "/admin/campaigns/7/start"


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(web):
    wrong = _login(web, password="not it at all, no")
    unknown = _login(web, name="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert "set-cookie" not in wrong.headers
    strip = lambda html: CSRF_RE.sub("", html)  # noqa: E731
    assert strip(wrong.text) == strip(unknown.text)


def test_forms_need_their_token_and_our_site(web):
    client = _login(web).client
    home = client.get("/admin/")
    token = _csrf(home.text)
    assert client.post("/admin/campaigns/1/cancel", data={"csrf": "forged"}).status_code == 403
    cross = client.post("/admin/logout", data={"csrf": token}, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    other_session = _login(web).client
    assert other_session.post("/admin/logout", data={"csrf": token}).status_code == 403  # bound to a session
    bad_login = httpx.post(web.url + "/admin/login", data={"name": "root", "password": PASSWORD, "csrf": "x"})
    assert bad_login.status_code == 403
    out = client.post("/admin/logout", data={"csrf": token}, headers={"sec-fetch-site": "same-origin"})
    assert out.status_code == 303 and 'nl_admin=""' in out.headers["set-cookie"]


def test_the_cookie_reads_the_api_but_changes_nothing_there(web):
    client = _login(web).client
    assert client.get("/api/campaigns").status_code == 200
    assert client.post("/api/campaigns/1/pause").status_code == 401
    assert client.delete("/api/suppressions/x@example.org", params={"reason": "because"}).status_code == 401
    forged = client.headers["cookie"][:-2] + "xx"
    assert httpx.get(web.url + "/api/campaigns", headers={"cookie": forged}).status_code == 401


def test_a_new_password_ends_every_session(web):
    client = _login(web).client
    assert client.get("/admin/").status_code == 200
    with web.env.transaction() as session:
        admins.set_password(session, "root", PASSWORD + "!", now=datetime.now(UTC))
    assert client.get("/admin/").status_code == 303
    with web.env.transaction() as session:
        admins.set_password(session, "root", PASSWORD, now=datetime.now(UTC))


def test_guessing_is_limited_per_client(tmp_path):
    web = start_web(tmp_path, NEWSLETTER_ADMIN_LOGIN_LIMIT="6")
    try:
        with web.env.transaction() as session:
            admins.create_user(session, "root", PASSWORD, now=datetime.now(UTC))
        assert [_login(web).status_code for _ in range(8)] == [303] * 8  # logging in is no failure
        answers = [_login(web, name="guess", password=f"guess number {n}").status_code for n in range(8)]
        assert answers == [401] * 6 + [429] * 2
        assert _login(web).status_code == 429  # the right password too, from here, until the window ends
    finally:
        web.stop()
        web.trap.close()


def test_the_cli_creates_users_and_tokens(tmp_path):
    env = {"NEWSLETTER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cli = [str(Path(sys.executable).with_name("newsletter"))]

    def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60)

    short = run("admin", "create-user", "ann", stdin="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    bad_name = run("admin", "create-user", "Ann Smith", stdin=PASSWORD + "\n")
    assert bad_name.returncode == 2 and "not valid" in bad_name.stderr
    assert run("admin", "create-user", "ann", stdin=PASSWORD + "\n").returncode == 0
    assert run("admin", "create-user", "ann", stdin=PASSWORD + "\n").returncode == 4  # exists: a conflict
    made = run("admin", "create-token", "ann", "--label", "deploy script")
    assert made.returncode == 0
    secret = made.stdout.strip()
    assert re.fullmatch(r"nl_[A-Za-z0-9_-]{43}", secret)
    listed = run("admin", "tokens")
    assert "deploy script" in listed.stdout and secret not in listed.stdout
    assert run("admin", "create-token", "nobody").returncode == 3
    assert run("admin", "revoke-token", "1").returncode == 0
    assert run("admin", "revoke-token", "1").returncode == 3
