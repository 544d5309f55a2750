"""Readers' pages in headless Chromium against the app under uvicorn: the preference centre, the "stop
receiving Nova" link of a real sent message, the unsubscribe button, and signup from the form to the
confirm button through the confirmation email in the file outbox. The CSP is enforced by the browser:
any violation it reports fails the test. Screenshots go to test-artifacts/."""

from __future__ import annotations

import email
import email.policy
import re
from html import unescape

import pytest
from sqlalchemy import select
from support.waiting import wait_until

from mailer import samples
from mailer.services import drafts, lifecycle
from subscribers.db import utcnow
from subscribers.models import Subscriber
from subscribers.preferences import add_subscriber, get_preferences
from subscribers.tokens import make_token

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HREF_RE = re.compile(r'href="([^"]+)"')


@pytest.fixture
def page(browser, live_web):
    context = browser.new_context(viewport={"width": 390, "height": 900}, locale="en-US")
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    tab.problems = problems
    yield tab
    context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems


def _subscriber(web, address: str, topics=("nova",)) -> Subscriber:
    with web.env.transaction() as session:
        found = add_subscriber(session, address, topics=topics, locale="en", source="test", now=utcnow())
        session.expunge(found)
    return found


def _state(web, address: str) -> tuple[str, frozenset[str]]:
    with web.env.sessions() as session:
        row = session.scalar(select(Subscriber).where(Subscriber.email_key == address))
        return row.status, get_preferences(session, row.id).topics


def _messages_to(web, address: str) -> list[email.message.EmailMessage]:
    out = []
    for path in sorted(web.settings.resolved_outbox_dir.rglob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if address in str(message["To"]):
            out.append(message)
    return out


def test_the_preference_page_adds_one_topic_and_removes_another(live_web, page, artifacts_dir):
    web = live_web
    ann = _subscriber(web, "browser-ann@example.org", topics=("nova", "cinder"))
    token = make_token(web.settings.signing_key, ann.id, "preferences", salt=ann.token_salt, now=utcnow())
    page.goto(f"{web.url}/preferences/{token}")
    assert page.is_checked("#topic-nova") and page.is_checked("#topic-cinder")
    assert not page.is_checked("#topic-heat")
    page.check("#topic-heat")
    page.uncheck("#topic-cinder")
    page.click("#save")
    page.wait_for_selector("#changes")
    page.screenshot(path=str(artifacts_dir / "web-preferences-saved.png"), full_page=True)
    assert "Heat" in page.inner_text("#added") and "Cinder" in page.inner_text("#removed")
    assert _state(web, "browser-ann@example.org") == ("active", {"nova", "heat"})
    # the stylesheet applied (the CSP allows it from our own origin): the honeypot-free page is styled
    assert page.evaluate("getComputedStyle(document.querySelector('button#save')).borderRadius") != "0px"


@pytest.fixture(scope="module")
def sent_to_nova_reader(live_web):
    _subscriber(live_web, "browser-nova@example.org", topics=("nova", "neutron"))
    _subscriber(live_web, "browser-leaver@example.org", topics=())
    env = live_web.env
    draft = drafts.read_draft(env, samples.ISSUE)
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id
    lifecycle.start_stepwise(env, campaign_id)
    return campaign_id


def test_the_stop_receiving_nova_link_of_a_sent_message_removes_nova_after_the_confirm(
    live_web, page, sent_to_nova_reader, artifacts_dir
):
    web = live_web
    message = _messages_to(web, "browser-nova@example.org")[-1]
    html = message.get_body(("html",)).get_content()
    link = unescape(next(h for h in HREF_RE.findall(html) if h.endswith("?remove=nova")))
    page.goto(link)
    page.wait_for_selector("#proposal")
    assert not page.is_checked("#topic-nova") and page.is_checked("#topic-neutron")
    assert _state(web, "browser-nova@example.org") == (
        "active",
        {"nova", "neutron"},
    )  # the GET changed nothing
    page.screenshot(path=str(artifacts_dir / "web-stop-receiving-nova.png"), full_page=True)
    page.click("#save")
    page.wait_for_selector("#changes")
    assert _state(web, "browser-nova@example.org") == ("active", {"neutron"})


def test_the_unsubscribe_button_works_and_the_page_alone_changes_nothing(
    live_web, page, sent_to_nova_reader, artifacts_dir
):
    web = live_web
    message = _messages_to(web, "browser-leaver@example.org")[-1]
    html = message.get_body(("html",)).get_content()
    link = unescape(next(h for h in HREF_RE.findall(html) if "/unsubscribe/" in h))
    page.goto(link)
    page.goto(link)  # twice, as a link scanner might
    assert _state(web, "browser-leaver@example.org")[0] == "active"
    page.screenshot(path=str(artifacts_dir / "web-unsubscribe.png"), full_page=True)
    page.click("#unsubscribe")
    page.wait_for_selector("#done")
    assert _state(web, "browser-leaver@example.org")[0] == "unsubscribed"


def test_signup_from_the_form_to_the_confirm_button(live_web, page, artifacts_dir):
    web = live_web
    page.goto(f"{web.url}/subscribe")
    page.fill("#email", "browser-new@example.org")
    page.check("#topic-nova")
    page.check("#topic-swift")
    box = page.locator("#website").bounding_box()
    assert box is None or box["x"] + box["width"] <= 0  # the honeypot is out of sight
    page.screenshot(path=str(artifacts_dir / "web-subscribe.png"), full_page=True)
    page.click("#subscribe")
    page.wait_for_selector("#check-inbox")
    assert _state(web, "browser-new@example.org") == ("pending", {"nova", "swift"})
    mail = wait_until(lambda: _messages_to(web, "browser-new@example.org"), what="the confirmation email")[-1]
    link = re.search(
        rf"{re.escape(web.url)}/confirm/[^\s\"<]+", mail.get_body(("plain",)).get_content()
    ).group(0)
    page.goto(link)
    assert _state(web, "browser-new@example.org")[0] == "pending"
    page.click("#confirm")
    page.wait_for_selector("#confirmed")
    page.screenshot(path=str(artifacts_dir / "web-confirmed.png"), full_page=True)
    assert _state(web, "browser-new@example.org") == ("active", {"nova", "swift"})
