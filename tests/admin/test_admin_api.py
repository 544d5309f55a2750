"""The admin API through HTTP against the app under uvicorn: every /api/ route refuses anonymous callers and
wrong or revoked tokens with 401; with a token, each route does its job (upload with parse warnings,
segments and checklist, previews, test sends, schedule/start/pause/resume/cancel, live progress,
subscriber search/edit/import/export, the suppression list and its logged removal)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from plugins.web import outbox_messages
from sqlalchemy import select
from support.paths import REFERENCE_ISSUE, TYPO_ISSUE
from support.waiting import wait_until

from mailer.services import admins
from subscribers import suppression
from subscribers.db import utcnow
from subscribers.models import Subscriber, SubscriberEvent
from subscribers.preferences import add_subscriber

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def token(live_web) -> str:
    with live_web.env.transaction() as session:
        admins.create_user(session, "alice", PASSWORD, now=datetime.now(UTC))
        return admins.create_token(session, "alice", "tests", now=datetime.now(UTC)).secret


@pytest.fixture(scope="module")
def api(live_web, token):
    client = live_web.client
    client.headers["authorization"] = f"Bearer {token}"
    yield client
    client.headers.pop("authorization", None)


@pytest.fixture(scope="module")
def readers(live_web) -> dict[str, int]:
    """Six readers: two follow nova, two nova and neutron, one cinder, one nothing."""
    plan = {
        "n1@example.org": ["nova"], "n2@example.org": ["nova"],
        "nn1@example.org": ["nova", "neutron"], "nn2@example.org": ["nova", "neutron"],
        "c1@example.org": ["cinder"], "g1@example.org": [],
    }  # fmt: skip
    ids = {}
    with live_web.env.transaction() as session:
        for address, topics in plan.items():
            ids[address] = add_subscriber(
                session, address, topics=topics, locale="zh", source="test", now=utcnow()
            ).id
    return ids


def _upload(api, path=REFERENCE_ISSUE, **params) -> dict:
    answer = api.post(
        "/api/campaigns",
        params={"filename": path.name, **params},
        content=path.read_bytes(),
        headers={"content-type": "text/markdown"},
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def _admin_routes(live_web) -> list[tuple[str, str]]:
    schema = live_web.client.get("/openapi.json").json()
    routes = []
    for path, operations in schema["paths"].items():
        if path.startswith("/api/"):
            concrete = re.sub(r"\{(\w*id)\}", "1", path).replace("{email}", "x@example.org")
            routes += [(method.upper(), concrete) for method in operations]
    return routes


def test_every_admin_route_refuses_without_valid_credentials(live_web, token):
    routes = _admin_routes(live_web)
    assert len(routes) >= 16, routes  # the schema documents them all
    with live_web.env.transaction() as session:
        revoked = admins.create_token(session, "alice", "to revoke", now=datetime.now(UTC))
        admins.revoke_token(session, revoked.id, now=datetime.now(UTC))
    wrong = [
        None,
        "Bearer nl_" + "x" * 43,  # well-formed, unknown
        f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}",  # one character changed
        f"Bearer {revoked.secret}",
        f"Basic {token}",
        "Bearer",
    ]
    for method, path in routes:
        for header in wrong:
            headers = {"authorization": header} if header else {}
            answer = live_web.client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, header, answer.status_code, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.json()["error"] == "http"


def test_upload_gives_a_draft_with_its_parse_warnings(api):
    clean = _upload(api)
    assert clean["campaign"]["status"] == "draft"
    assert "start" in clean["campaign"]["actions"]
    typo = _upload(api, TYPO_ISSUE)
    assert typo["warnings"], "the typo issue has a heading that is no known topic"
    assert (
        api.get(f"/api/campaigns/{typo['campaign']['id']}").json()["subject"] == typo["campaign"]["subject"]
    )
    listed = [c["id"] for c in api.get("/api/campaigns").json()]
    assert listed[:2] == [typo["campaign"]["id"], clean["campaign"]["id"]]  # newest first
    bad = api.post("/api/campaigns", content=b"\xff\xfe\x00", headers={"content-type": "text/markdown"})
    assert bad.status_code == 400 and "UTF-8" in bad.json()["detail"]


def test_segments_checklist_and_previews(api, readers):
    campaign = _upload(api)["campaign"]["id"]
    checklist = api.get(f"/api/campaigns/{campaign}/checklist").json()
    segments = {s["segment"]: s["readers"] for s in checklist["segments"]}
    # the reference issue has no Cinder section: its reader gets the general segment
    assert segments == {"nova": 2, "neutron,nova": 2, "general": 2}
    assert checklist["recipients"] == 6
    assert checklist["ready"] is True, checklist["items"]
    assert {item["name"] for item in checklist["items"]} >= {
        "the audience is not empty", "the sender identity is set", "every link is absolute http(s)",
    }  # fmt: skip
    nova = api.get(f"/api/campaigns/{campaign}/preview", params={"segment": "nova"})
    assert nova.status_code == 200 and nova.headers["content-type"].startswith("text/html")
    both = api.get(f"/api/campaigns/{campaign}/preview", params={"segment": "neutron,nova"}).text
    sections = {s["segment"]: s["sections"] for s in checklist["segments"]}
    assert "Neutron" in sections["neutron,nova"] and "Neutron" not in sections["nova"]
    # each topic section ends with its own "stop receiving" link: the preview has exactly its segment's
    assert "remove=neutron" in both and "remove=nova" in both
    assert "remove=neutron" not in nova.text and "remove=nova" in nova.text
    assert "/unsubscribe/sample" in nova.text  # a sample link: it acts on nobody
    text = api.get(f"/api/campaigns/{campaign}/preview", params={"segment": "general", "format": "text"})
    assert text.headers["content-type"].startswith("text/plain")
    assert "remove=nova" not in text.text and "add=nova" in text.text  # no Nova section: an "add" link
    assert api.get(f"/api/campaigns/{campaign}/preview", params={"segment": "nope"}).status_code == 404
    assert api.get(f"/api/campaigns/{campaign}/preview", params={"segment": "<x>"}).status_code == 400


def test_start_runs_the_checklist_and_progress_follows_it(live_web, api, readers):
    campaign = _upload(api)["campaign"]["id"]
    started = api.post(f"/api/campaigns/{campaign}/start")
    assert started.status_code == 202, started.text
    assert started.json()["ready"] is True

    def finished() -> dict[str, Any] | None:
        state = api.get(f"/api/campaigns/{campaign}/progress").json()
        return state if state["status"] == "done" else None

    state = wait_until(finished, timeout=60)
    assert state["by_status"] == {"queued": 0, "sent": 6, "failed": 0, "skipped": 0, "unknown": 0}
    assert state["percent"] == 100.0 and state["total"] == 6
    per_segment = {s["segment"]: s for s in state["segments"]}
    assert {k: v["readers"] for k, v in per_segment.items()} == {"nova": 2, "neutron,nova": 2, "general": 2}
    assert {k: v["by_status"] for k, v in per_segment.items()} == {
        "nova": {"sent": 2}, "neutron,nova": {"sent": 2}, "general": {"sent": 2},
    }  # fmt: skip
    again = api.post(f"/api/campaigns/{campaign}/start")
    assert again.status_code == 409


def test_a_failing_checklist_needs_an_override(api):
    # the typo issue has a parse warning: the checklist fails until someone overrides it
    campaign = _upload(api, TYPO_ISSUE)["campaign"]["id"]
    refused = api.post(f"/api/campaigns/{campaign}/start")
    assert refused.status_code == 409
    assert "checklist" in refused.json()["detail"]
    assert api.get(f"/api/campaigns/{campaign}").json()["status"] == "draft"
    forced = api.post(f"/api/campaigns/{campaign}/start", json={"override": True})
    assert forced.status_code == 202
    assert forced.json()["ready"] is False
    # a schedule meets the same rule, and the same override
    later = _upload(api, TYPO_ISSUE)["campaign"]["id"]
    at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    refused = api.post(f"/api/campaigns/{later}/schedule", json={"at": at})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith(
        "the pre-send checklist fails: the issue parses without warnings"
    )
    assert api.get(f"/api/campaigns/{later}").json()["status"] == "draft"
    scheduled = api.post(f"/api/campaigns/{later}/schedule", json={"at": at, "override": True})
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled", scheduled.text


def test_schedule_pause_resume_and_cancel(api, readers):
    campaign = _upload(api)["campaign"]["id"]
    far = (datetime.now(UTC) + timedelta(days=5 * 365)).isoformat()
    refused = api.post(f"/api/campaigns/{campaign}/schedule", json={"at": far})
    assert refused.status_code == 400 and "more than a year ahead" in refused.json()["detail"], refused.text
    at = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    assert api.post(f"/api/campaigns/{campaign}/schedule", json={"at": at}).json()["status"] == "scheduled"
    assert api.post(f"/api/campaigns/{campaign}/pause").json()["status"] == "paused"
    assert api.post(f"/api/campaigns/{campaign}/resume").status_code == 202
    assert api.get(f"/api/campaigns/{campaign}").json()["status"] == "scheduled"  # paused before its time
    cancelled = api.post(f"/api/campaigns/{campaign}/cancel").json()
    assert cancelled["status"] == "cancelled" and cancelled["reason"] == "cancelled by alice"
    assert api.post(f"/api/campaigns/{campaign}/pause").status_code == 409
    past = api.post(f"/api/campaigns/{campaign}/schedule", json={"at": "2001-01-01T00:00:00+00:00"})
    assert past.status_code in (400, 409)
    assert api.post("/api/campaigns/999999/pause").status_code == 404


def test_test_send_goes_to_the_given_addresses(live_web, api, readers):
    campaign = _upload(api)["campaign"]["id"]
    before = len(outbox_messages(live_web))
    sent = api.post(f"/api/campaigns/{campaign}/test", json={"addresses": ["editor@example.org"]})
    assert sent.status_code == 200, sent.text
    pairs = sent.json()["sent"]
    assert {p["address"] for p in pairs} == {"editor@example.org"} and len(pairs) == 3  # one per segment
    messages = outbox_messages(live_web)[before:]
    assert len(messages) == 3 and all(m["To"] == "editor@example.org" for m in messages)
    bad = api.post(f"/api/campaigns/{campaign}/test", json={"addresses": ["a@b\r\nBcc: x@y.org"]})
    assert bad.status_code == 400


def test_subscribers_search_edit_import_and_export(live_web, api, readers):
    found = api.get("/api/subscribers", params={"q": "nn1@"}).json()
    assert [s["email"] for s in found] == ["nn1@example.org"]
    sid = found[0]["id"]
    edited = api.patch(f"/api/subscribers/{sid}", json={"topics": ["cinder"], "locale": "en"}).json()
    assert edited["topics"] == ["cinder"] and edited["locale"] == "en"
    assert api.get(f"/api/subscribers/{sid}").json()["topics"] == ["cinder"]
    assert api.patch(f"/api/subscribers/{sid}", json={"topics": ["no-such-topic"]}).status_code == 400
    gone = api.patch(f"/api/subscribers/{sid}", json={"unsubscribe": True}).json()
    assert gone["status"] == "unsubscribed"
    with live_web.env.sessions() as session:
        kinds = session.scalars(
            select(SubscriberEvent.kind, SubscriberEvent.source).where(SubscriberEvent.subscriber_id == sid)
        ).all()
    assert {"topics_changed", "locale_changed", "unsubscribed"} <= set(kinds)

    upload = "email,name,topics\nnew1@example.org,New One,nova\nnot-an-address,Bad,nova\nnew2@example.org,,\n"
    report = api.post(
        "/api/subscribers/import", content=upload.encode(), headers={"content-type": "text/csv"},
        params={"topics": "cinder"},
    ).json()  # fmt: skip
    assert (report["added"], report["rejected"], report["rows"]) == (2, 1, 3)
    assert report["rejects"][0]["line"] == 3 and report["rejects"][0]["reason"]
    refused = api.post(
        "/api/subscribers/import", content=upload.encode(), headers={"content-type": "text/csv"},
        params={"status": "bounced"},
    )  # fmt: skip
    assert refused.status_code == 400, refused.text
    assert (
        refused.json()["detail"]
        == "an import gives new subscribers the status active or pending, not 'bounced'"
    )  # the CLI's words too
    exported = api.get("/api/subscribers/export")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(exported.text))}
    assert "new1@example.org" in rows and rows["new2@example.org"]["topics"] == "cinder"
    page = api.get("/api/subscribers", params={"limit": 2}).json()
    following = api.get("/api/subscribers", params={"limit": 2, "after": page[-1]["id"]}).json()
    assert following and following[0]["id"] > page[-1]["id"]


def test_suppression_list_and_removal_with_a_reason(live_web, api):
    with live_web.env.transaction() as session:
        add_subscriber(session, "bounced@example.org", topics=["nova"], source="test", now=utcnow())
        suppression.suppress(
            session, "bounced@example.org", "hard_bounce", evidence="feedback-1", now=utcnow()
        )
    listed = api.get("/api/suppressions").json()
    assert listed[0]["email"] == "bounced@example.org" and listed[0]["reason"] == "hard_bounce"
    no_reason = api.delete("/api/suppressions/bounced@example.org")
    assert no_reason.status_code == 400
    removed = api.delete(
        "/api/suppressions/bounced@example.org", params={"reason": "mailbox fixed, asked by phone"}
    )
    assert removed.status_code == 204
    assert all(s["email"] != "bounced@example.org" for s in api.get("/api/suppressions").json())
    with live_web.env.sessions() as session:
        event = session.scalars(
            select(SubscriberEvent).where(SubscriberEvent.email_key == "bounced@example.org",
                                          SubscriberEvent.kind == "unsuppressed")
        ).one()  # fmt: skip
    assert json.loads(event.detail)["note"] == "alice: mailbox fixed, asked by phone"
    assert event.source == "admin"
    again = api.delete("/api/suppressions/bounced@example.org", params={"reason": "twice"})
    assert again.status_code == 404
    with live_web.env.sessions() as session:
        assert session.scalar(select(Subscriber.status).where(Subscriber.email_key == "bounced@example.org"))
