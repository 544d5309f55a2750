"""The dashboard in headless Chromium against the app under uvicorn with a real Redis broker and a Celery
worker process: log in, upload the reference issue, look at a segment's preview, pass the checklist, start
the campaign and watch its progress bar (kept up by static/admin.js) reach 100 %. The browser enforces the
dashboard's CSP: any violation it reports fails the test. Screenshots go to test-artifacts/."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from plugins.web import outbox_messages, start_web
from support.paths import REFERENCE_ISSUE
from support.services import REDIS_URL

from mailer.services import admins
from subscribers.db import utcnow
from subscribers.preferences import add_subscriber

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.slow]

PASSWORD = "a long enough dashboard password"
TOPICS: tuple[list[str], ...] = (["nova"], ["neutron"], ["nova", "neutron"], [], ["cinder"])


@pytest.fixture
def web_with_workers(tmp_path, redis_prefix, start_workers):
    database_url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    web = start_web(
        tmp_path / "web",
        database_url=database_url,
        NEWSLETTER_BROKER_URL=REDIS_URL,
        NEWSLETTER_REDIS_PREFIX=redis_prefix,
    )
    start_workers(
        1,
        database_url=database_url,
        secret_key=web.settings.secret_key[0],
        base_url=web.url,
        sender_address="news@example.org",
        transport="file",
        outbox_dir=str(web.settings.resolved_outbox_dir),
        file_send_rate=8,
    )
    try:
        yield web
    finally:
        web.stop()
        web.trap.close()


def test_log_in_upload_preview_check_start_and_watch(browser, web_with_workers, artifacts_dir):
    web = web_with_workers
    with web.env.transaction() as session:
        admins.create_user(session, "editor", PASSWORD, now=datetime.now(UTC))
        for n in range(40):
            add_subscriber(
                session, f"reader{n}@example.org", topics=TOPICS[n % len(TOPICS)], source="test", now=utcnow()
            )

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="en-US")
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)

    page.goto(web.url + "/admin/")
    assert page.url.startswith(web.url + "/admin/login")
    page.fill("input[name=name]", "editor")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert page.locator(".error").is_visible()
    page.fill("input[name=name]", "editor")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(web.url + "/admin/")
    cookie = next(c for c in context.cookies() if c["name"] == "nl_admin")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    page.set_input_files("input[name=issue]", str(REFERENCE_ISSUE))
    page.click("form.upload button[type=submit]")
    page.wait_for_url(f"{web.url}/admin/campaigns/*")
    campaign_url = page.url
    checklist = page.locator("ul.checklist li")
    assert checklist.count() == 7
    assert page.locator("ul.checklist li.fails").count() == 0, page.locator("ul.checklist").inner_text()
    segments = page.locator("section.segment")
    assert segments.count() == 4  # nova, neutron, both, general (cinder's readers get the general one)
    readers = sorted(int(n) for n in page.locator("section.segment .readers").all_inner_texts())
    assert sum(readers) == 40
    frame = page.frame_locator("section.segment iframe.w375").first
    assert frame.locator("body").inner_text(timeout=10_000).strip()
    page.screenshot(path=str(artifacts_dir / "dashboard-campaign-draft.png"), full_page=True)

    # one segment's preview on its own, as the frames show it
    preview = context.new_page()
    preview.goto(page.locator("section.segment iframe.w600").first.get_attribute("src"))
    assert "/unsubscribe/sample" in preview.content()
    preview.set_viewport_size({"width": 600, "height": 1000})
    preview.screenshot(path=str(artifacts_dir / "dashboard-segment-preview.png"), full_page=True)
    preview.close()

    page.click("p.actions a:has-text('Start sending')")
    page.wait_for_url(campaign_url + "/start")
    assert page.locator("ul.checklist li.ok").count() == 7
    assert page.locator("input[name=override]").count() == 0  # nothing to override
    page.screenshot(path=str(artifacts_dir / "dashboard-confirm-start.png"), full_page=True)
    page.click("main form button[type=submit]")
    page.wait_for_url(campaign_url)

    # the page is not reloaded: static/admin.js polls the progress API and moves the bar
    seen = set()
    deadline = time.monotonic() + 90
    while (percent := page.locator(".progress .percent").inner_text()) != "100.0%":
        seen.add(percent)
        assert time.monotonic() < deadline, f"the bar stopped at {percent}"
        page.wait_for_timeout(200)
    assert len(seen) >= 2, f"the bar moved by steps: {sorted(seen)}"  # 40 messages at 8/s
    assert page.locator(".progress .sent").inner_text() == "40"
    page.wait_for_load_state()
    assert page.locator("p.actions a").count() == 0  # a done campaign offers no action any more
    assert page.locator(".progress").get_attribute("data-status") == "done"
    page.screenshot(path=str(artifacts_dir / "dashboard-campaign-done.png"), full_page=True)
    assert len([m for m in outbox_messages(web) if "reader" in str(m["To"])]) == 40

    page.goto(web.url + "/admin/subscribers")
    assert page.locator("svg.chart").count() == 2
    page.screenshot(path=str(artifacts_dir / "dashboard-subscribers.png"), full_page=True)
    context.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
