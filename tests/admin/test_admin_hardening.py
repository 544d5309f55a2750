"""What an attack review of the admin side found, each held by a test against the app under uvicorn: writes
to the API authenticated before their body is read, logout ending the session everywhere, cookies of any
other shape or key refused without a 5xx, the published key never signing a dashboard session, strict
request bodies, one start per campaign, the reject report bounded, control characters kept out of names,
and the login redirect of a form posted after the session ended."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from plugins.web import SECRET, start_web
from support.paths import REFERENCE_ISSUE

from mailer.services import admins
from mailer.settings import DEFAULT_SECRET_KEY
from subscribers.db import utcnow
from subscribers.preferences import add_subscriber

PASSWORD = "hardening test password"


@pytest.fixture(scope="module")
def token(live_web) -> str:
    with live_web.env.transaction() as session:
        admins.create_user(session, "hard", PASSWORD, now=datetime.now(UTC))
        for n in range(3):
            add_subscriber(session, f"h{n}@example.org", topics=["nova"], source="test", now=utcnow())
        return admins.create_token(session, "hard", "tests", now=datetime.now(UTC)).secret


def _upload(web, token: str, filename: str = "issue.md", **params: str) -> httpx.Response:
    return web.client.post(
        "/api/campaigns",
        params={"filename": filename, **params},
        content=REFERENCE_ISSUE.read_bytes(),
        headers={"authorization": f"Bearer {token}", "content-type": "text/markdown"},
    )


def _login(web) -> httpx.Client:
    client = httpx.Client(base_url=web.url, follow_redirects=False)
    page = client.get("/admin/login").text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = client.post(
        "/admin/login", data={"name": "hard", "password": PASSWORD, "csrf": csrf},
        headers={"sec-fetch-site": "same-origin"},
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    client.headers["cookie"] = answer.headers["set-cookie"].split(";", 1)[0]
    return client


def test_api_writes_are_authenticated_before_their_body_is_read(live_web, token):
    for headers in ({}, {"authorization": "Bearer nl_" + "x" * 43}):
        answer = live_web.client.post(
            "/api/campaigns/1/start", content=b"{bad", headers={**headers, "content-type": "application/json"}
        )
        assert answer.status_code == 401, answer.text  # not 400: the body was never parsed
        assert answer.headers["connection"] == "close"
    # a body that keeps coming is not read: the answer comes, and the connection is closed
    with socket.create_connection(("127.0.0.1", int(live_web.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(
            b"POST /api/campaigns HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 65536
        )
        head = sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 401")
    assert _upload(live_web, token).status_code == 201  # the gate lets a valid token through


def test_strict_request_bodies(live_web, token):
    auth = {"authorization": f"Bearer {token}"}
    campaign = _upload(live_web, token).json()["campaign"]["id"]
    loose = live_web.client.post(f"/api/campaigns/{campaign}/start", json={"override": "yes"}, headers=auth)
    assert loose.status_code == 400
    unknown = live_web.client.patch("/api/subscribers/1", json={"email": "hijack@example.org"}, headers=auth)
    assert unknown.status_code == 400


def test_one_start_wins_the_others_are_told(live_web, token):
    campaign = _upload(live_web, token).json()["campaign"]["id"]
    answers: list[int] = []

    def start() -> None:
        with httpx.Client(base_url=live_web.url, timeout=30) as client:
            reply = client.post(
                f"/api/campaigns/{campaign}/start", headers={"authorization": f"Bearer {token}"}
            )
            answers.append(reply.status_code)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [202, 409, 409], answers


def test_the_reject_report_is_bounded_and_names_are_printable(live_web, token):
    auth = {"authorization": f"Bearer {token}", "content-type": "text/csv"}
    body = "email,name\n" + "not-an-address,x\n" * 1500
    report = live_web.client.post("/api/subscribers/import", content=body.encode(), headers=auth).json()
    assert report["rejected"] == 1500 and len(report["rejects"]) == 1000
    named = _upload(live_web, token, filename="evil\r\nWARNING: forged\x00.md").json()
    assert named["campaign"]["source"] == "evilWARNING: forged.md"


def test_logout_ends_the_session_everywhere(live_web, token):
    first, second = _login(live_web), _login(live_web)
    home = first.get("/admin/")
    assert home.status_code == 200 and second.get("/admin/").status_code == 200
    csrf = home.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert first.post("/admin/logout", data={"csrf": csrf}).status_code == 303
    assert first.get("/admin/").status_code == 303  # a copy of the cookie kept anywhere is void too
    assert second.get("/admin/").status_code == 303
    # a form posted after the session ended leads to the login, and from there to the dashboard
    expired = second.post("/admin/campaigns/1/cancel", data={"csrf": csrf})
    assert expired.status_code == 303 and expired.headers["location"].endswith("next=%2Fadmin%2F")
    assert live_web.client.get("/admin").headers["location"] == live_web.url + "/admin/"


@pytest.mark.parametrize(
    "payload",
    [
        [2**63, "nonce", "0123456789abcdef"],
        [1, "nonce", "é" * 16],
        [True, "n", "0123456789abcdef"],
        [1, ["x"], "0123456789abcdef"],
        {"a": 1},
        [1, "n"],
    ],  # fmt: skip
)
def test_cookies_of_another_shape_are_refused_without_a_server_error(live_web, token, payload):
    forged = URLSafeTimedSerializer([SECRET], salt="admin-session").dumps(payload)
    answer = httpx.get(live_web.url + "/admin/", headers={"cookie": f"nl_admin={forged}"})
    assert answer.status_code == 303


def test_the_published_key_signs_no_session(tmp_path):
    web = start_web(tmp_path, NEWSLETTER_SECRET_KEY=DEFAULT_SECRET_KEY)  # the embedded mode allows it
    try:
        with web.env.transaction() as session:
            admin = admins.create_user(session, "hard", PASSWORD, now=datetime.now(UTC))
            fingerprint = admins.login_fingerprint(session, admin)
            token = admins.create_token(session, "hard", "t", now=datetime.now(UTC)).secret
        minted = URLSafeTimedSerializer([DEFAULT_SECRET_KEY], salt="admin-session").dumps(
            [admin.id, "nonce", fingerprint]
        )
        assert httpx.get(web.url + "/admin/", headers={"cookie": f"nl_admin={minted}"}).status_code == 303
        assert _login(web).get("/admin/").status_code == 200  # a real login still works
        refused = _upload(web, token, transport="ses")  # SES with the published key: the caller's 400
        assert refused.status_code == 400 and "NEWSLETTER_SECRET_KEY" in refused.json()["detail"]
    finally:
        web.stop()
        web.trap.close()
