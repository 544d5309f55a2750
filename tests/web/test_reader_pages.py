"""Readers' pages through HTTP against the app under uvicorn: the preference centre, unsubscribe (the page
and RFC 8058 one-click, from a real sent message's List-Unsubscribe header), the per-topic links of a
sent issue, signup with double opt-in through the file outbox, a new preferences link, the archive,
feeds and the reader's own copy. Bad, forged and foreign links all get the same 400 page."""

from __future__ import annotations

import email
import email.policy
import re
import xml.etree.ElementTree as ET
from html import unescape

import pytest
from sqlalchemy import select
from support.waiting import holds_for, wait_until

from mailer import samples
from mailer.services import drafts, lifecycle
from subscribers.db import utcnow
from subscribers.models import Subscriber, SubscriberEvent
from subscribers.preferences import add_subscriber, get_preferences
from subscribers.tokens import make_token

HREF_RE = re.compile(r'href="([^"]+)"')
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def _subscriber(web, address: str, topics=("nova",), locale: str = "en") -> Subscriber:
    with web.env.transaction() as session:
        subscriber = add_subscriber(
            session, address, topics=topics, locale=locale, source="test", now=utcnow()
        )
        session.expunge(subscriber)
    return subscriber


def _token(web, subscriber: Subscriber, purpose: str) -> str:
    return make_token(
        web.settings.signing_key, subscriber.id, purpose, salt=subscriber.token_salt, now=utcnow()
    )


def _state(web, address: str) -> tuple[str, frozenset[str], str]:
    with web.env.sessions() as session:
        row = session.scalar(select(Subscriber).where(Subscriber.email_key == address.lower()))
        prefs = get_preferences(session, row.id)
        return row.status, prefs.topics, row.locale


def _events(web, address: str) -> list[str]:
    with web.env.sessions() as session:
        return list(
            session.scalars(
                select(SubscriberEvent.kind)
                .where(SubscriberEvent.email_key == address.lower())
                .order_by(SubscriberEvent.id)
            )
        )


def _csrf(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "the page carries a form token"
    return match.group(1)


def _same_site(web) -> dict[str, str]:
    return {"origin": web.url, "sec-fetch-site": "same-origin"}


def _sent_messages(web, to: str) -> list[email.message.EmailMessage]:
    folder = web.settings.resolved_outbox_dir
    found = []
    for path in sorted(folder.rglob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if to.lower() in str(message["To"]).lower():
            found.append(message)
    return found


@pytest.fixture(scope="module")
def sent_issue(live_web):
    """The sample issue sent (in this process, embedded: the file outbox the app's own mail goes to) to
    three readers; returns {address: parsed message}."""
    readers = {
        "nova-reader@example.org": ("nova", "neutron"),
        "oneclick@example.org": ("cinder",),
        "general@example.org": (),
    }
    for address, topics in readers.items():
        _subscriber(live_web, address, topics)
    env = live_web.env
    draft = drafts.read_draft(env, samples.ISSUE)
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id
    lifecycle.start_stepwise(env, campaign_id)
    return campaign_id, {address: _sent_messages(live_web, address)[-1] for address in readers}


# --- tokens ----------------------------------------------------------------------------------------
def test_bad_forged_and_foreign_links_get_the_same_400_page(live_web):
    web = live_web
    ann = _subscriber(web, "ann-links@example.org")
    good = _token(web, ann, "preferences")
    forged = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    other_purpose = _token(web, ann, "unsubscribe")
    other_key = make_token("another-key", ann.id, "preferences", salt=ann.token_salt, now=utcnow())
    bodies = set()
    for token in ["x", "1.2.3", forged, other_purpose, other_key, "%E4%B8%AD", "a" * 99, "0.0." + "A" * 22]:
        response = web.client.get(f"/preferences/{token}")
        assert response.status_code == 400, (token, response.status_code)
        bodies.add(re.sub(r"\s+", " ", response.text))
    assert len(bodies) == 1, "the page says nothing about why a link is bad"
    assert "preferences" in bodies.pop()  # it offers to ask for a new link
    assert web.client.get("/preferences/" + "a" * 101).status_code == 400
    for path in ("/unsubscribe/x", "/confirm/x", "/view/1/x"):
        assert web.client.get(path).status_code in (400, 404)


def test_every_page_names_an_icon_that_is_served(live_web):
    """Browsers ask for an icon with every page: the pages name one under /static, served as SVG (it
    was a 404 in every browser's log)."""
    web = live_web
    for path in ("/subscribe", "/issues/", "/admin/login"):
        page = web.client.get(path)
        icon = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)"', page.text)
        assert page.status_code == 200 and icon, path
        served = web.client.get(icon.group(1))
        assert served.status_code == 200 and served.headers["content-type"].startswith("image/svg+xml")
        assert served.content.startswith(b"<svg")


# --- preference centre -----------------------------------------------------------------------------
def test_the_preference_page_shows_every_topic_by_group_and_saves_with_a_form_token(live_web):
    web = live_web
    ann = _subscriber(web, "ann-prefs@example.org", topics=("nova", "cinder"))
    token = _token(web, ann, "preferences")
    page = web.client.get(f"/preferences/{token}")
    assert page.status_code == 200
    html = page.text
    assert 'id="topic-nova" checked' in html and 'id="topic-cinder" checked' in html
    assert 'id="topic-heat"' in html and 'id="topic-heat" checked' not in html  # readers can add topics
    assert "Compute and networking" in html and "Storage" in html  # grouped from the registry, in English
    assert _state(web, "ann-prefs@example.org")[1] == {"nova", "cinder"}
    csrf = _csrf(html)
    form = {"csrf": csrf, "action": "save", "topics": ["nova", "heat"], "locale": "zh"}
    # without the token, or from another site, nothing changes
    assert (
        web.client.post(
            f"/preferences/{token}", data={**form, "csrf": "x"}, headers=_same_site(web)
        ).status_code
        == 403
    )
    for cross in (
        {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        {"origin": "null", "sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},  # a browser without Sec-Fetch-Site
    ):
        assert web.client.post(f"/preferences/{token}", data=form, headers=cross).status_code == 403
    assert _state(web, "ann-prefs@example.org") == ("active", {"nova", "cinder"}, "en")
    saved = web.client.post(f"/preferences/{token}", data=form, headers=_same_site(web))
    assert saved.status_code == 200
    assert _state(web, "ann-prefs@example.org") == ("active", {"nova", "heat"}, "zh")
    assert "Heat 编排" in saved.text and "Cinder 块存储" in saved.text  # what changed, in her new language
    assert 'lang="zh-CN"' in saved.text


def test_an_unknown_topic_or_language_is_a_400_that_changes_nothing(live_web):
    web = live_web
    bob = _subscriber(web, "bob-prefs@example.org", topics=("nova",))
    token = _token(web, bob, "preferences")
    csrf = _csrf(web.client.get(f"/preferences/{token}").text)
    for form in (
        {"csrf": csrf, "topics": ["nova", "no-such-topic"]},
        {"csrf": csrf, "topics": ["nova"], "locale": "xx"},
        {"csrf": csrf, "action": "explode"},
    ):
        response = web.client.post(f"/preferences/{token}", data=form, headers=_same_site(web))
        assert response.status_code == 400, form
    assert _state(web, "bob-prefs@example.org") == ("active", {"nova"}, "en")


def test_leave_and_rejoin_from_the_preference_page(live_web):
    web = live_web
    cat = _subscriber(web, "cat-prefs@example.org")
    token = _token(web, cat, "preferences")
    csrf = _csrf(web.client.get(f"/preferences/{token}").text)
    left = web.client.post(
        f"/preferences/{token}", data={"csrf": csrf, "action": "leave"}, headers=_same_site(web)
    )
    assert left.status_code == 200 and 'id="rejoin"' in left.text
    assert _state(web, "cat-prefs@example.org")[0] == "unsubscribed"
    back = web.client.post(
        f"/preferences/{token}", data={"csrf": csrf, "action": "rejoin"}, headers=_same_site(web)
    )
    assert back.status_code == 200
    assert _state(web, "cat-prefs@example.org")[0] == "active"
    assert _events(web, "cat-prefs@example.org")[-2:] == ["unsubscribed", "rejoined"]


# --- the links of a sent issue ----------------------------------------------------------------------
def test_one_click_unsubscribe_from_the_list_unsubscribe_header(live_web, sent_issue):
    web = live_web
    _, messages = sent_issue
    message = messages["oneclick@example.org"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"])).group(1)
    assert url.startswith(web.url + "/unsubscribe/")
    # what a mail provider sends: a POST with that body, no cookie, no form token, no Origin
    response = web.client.post(url, data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert _state(web, "oneclick@example.org")[0] == "unsubscribed"
    again = web.client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 200  # idempotent
    assert _events(web, "oneclick@example.org").count("unsubscribed") == 1
    assert web.client.post(url, data={"List-Unsubscribe": "Two-Clicks"}).status_code == 400


def test_the_unsubscribe_page_changes_nothing_until_its_button_is_pressed(live_web, sent_issue):
    web = live_web
    _, messages = sent_issue
    html = messages["general@example.org"].get_body(("html",)).get_content()
    url = unescape(next(h for h in HREF_RE.findall(html) if "/unsubscribe/" in h))
    page = web.client.get(url)
    assert page.status_code == 200 and 'id="unsubscribe"' in page.text and 'id="only-topics"' in page.text
    web.client.get(url)  # a mail scanner following the link twice
    assert _state(web, "general@example.org")[0] == "active"
    assert web.client.post(url, data={}, headers=_same_site(web)).status_code == 403  # no form token
    done = web.client.post(url, data={"csrf": _csrf(page.text)}, headers=_same_site(web))
    assert done.status_code == 200 and 'id="done"' in done.text
    assert _state(web, "general@example.org")[0] == "unsubscribed"


def test_a_stop_receiving_link_proposes_and_the_confirm_removes_the_topic(live_web, sent_issue):
    web = live_web
    _, messages = sent_issue
    message = messages["nova-reader@example.org"]
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    links = [unescape(h) for h in HREF_RE.findall(html)]
    stop_nova = next(h for h in links if h.endswith("?remove=nova"))
    assert stop_nova in text  # the text part carries the same link
    assert any(h.endswith("?add=cinder") for h in links)  # topics of the issue the reader lacks
    assert not any(h.endswith("?add=nova") or h.endswith("?remove=cinder") for h in links)
    page = web.client.get(stop_nova)
    assert page.status_code == 200 and 'id="proposal"' in page.text
    assert 'id="topic-nova" checked' not in page.text and 'id="topic-neutron" checked' in page.text
    assert _state(web, "nova-reader@example.org")[1] == {"nova", "neutron"}  # a GET changed nothing
    form = {"csrf": _csrf(page.text), "action": "save", "topics": ["neutron"], "locale": "en"}
    saved = web.client.post(stop_nova, data=form, headers=_same_site(web))
    assert saved.status_code == 200
    assert _state(web, "nova-reader@example.org")[1] == {"neutron"}


def test_the_view_link_shows_the_readers_own_copy_and_no_other(live_web, sent_issue):
    web = live_web
    campaign_id, messages = sent_issue
    html = messages["nova-reader@example.org"].get_body(("html",)).get_content()
    view = unescape(next(h for h in HREF_RE.findall(html) if "/view/" in h))
    page = web.client.get(view)
    assert page.status_code == 200
    assert "nova-reader@example.org" in page.text and "Nova" in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    token = view.rsplit("/", 1)[1]
    assert web.client.get(f"/view/{campaign_id + 1}/{token}").status_code in (400, 404)


# --- archive and feeds -------------------------------------------------------------------------------
def test_the_archive_lists_the_issue_and_filters_by_topic(live_web, sent_issue):
    web = live_web
    campaign_id, _ = sent_issue
    listing = web.client.get("/issues/")
    assert listing.status_code == 200
    slug = re.search(rf'/issues/({campaign_id}-[0-9-]+)"', listing.text).group(1)
    everything = web.client.get(f"/issues/{slug}")
    only_nova = web.client.get(f"/issues/{slug}?topics=nova")
    general = web.client.get(f"/issues/{slug}?topics=")
    assert everything.status_code == only_nova.status_code == general.status_code == 200
    assert "Cinder" in everything.text and "Nova" in everything.text
    assert ">Nova" in only_nova.text and "?remove=cinder" not in only_nova.text
    assert len(general.text) < len(only_nova.text) < len(everything.text)
    assert "%%NL:" not in everything.text  # every placeholder filled with public links
    assert web.client.get("/issues/999999-2020-01-01").status_code == 404
    assert web.client.get("/issues/not-a-slug").status_code == 404


def test_atom_feeds_all_issues_and_per_topic(live_web, sent_issue):
    web = live_web
    ns = {"a": "http://www.w3.org/2005/Atom"}
    whole = ET.fromstring(web.client.get("/issues/feed.xml").content)
    nova = ET.fromstring(web.client.get("/issues/feed.xml?topic=nova").content)
    assert whole.find("a:entry/a:title", ns).text
    whole_summary = whole.find("a:entry/a:summary", ns).text or ""
    nova_summary = nova.find("a:entry/a:summary", ns).text or ""
    assert "Cinder" in whole_summary and "Cinder" not in nova_summary and "Nova" in nova_summary
    assert web.client.get("/issues/feed.xml?topic=nope").status_code == 404
    assert web.client.get("/issues/feed.xml?topic=<script>").status_code == 400


# --- signup ----------------------------------------------------------------------------------------
def test_signup_confirms_through_the_emailed_link_and_answers_alike_for_known_addresses(live_web):
    web = live_web
    form_page = web.client.get("/subscribe")
    csrf = _csrf(form_page.text)
    form = {"csrf": csrf, "email": "newbie@example.org", "topics": ["nova", "cinder"], "locale": "en"}
    answer = web.client.post("/subscribe", data=form, headers=_same_site(web))
    assert answer.status_code == 200 and 'id="check-inbox"' in answer.text
    assert _state(web, "newbie@example.org")[0] == "pending"
    # the email leaves after the answer (the answer takes as long whether or not one does)
    mail = wait_until(lambda: _sent_messages(web, "newbie@example.org"), what="the confirmation email")[-1]
    assert "List-Id" not in mail and "Precedence" not in mail  # transactional, not bulk
    link = re.search(
        rf"{re.escape(web.url)}/confirm/[^\s\"<]+", mail.get_body(("plain",)).get_content()
    ).group(0)
    page = web.client.get(link)
    assert page.status_code == 200 and 'id="confirm"' in page.text
    assert _state(web, "newbie@example.org")[0] == "pending"  # a scanner's GET confirms nothing
    confirmed = web.client.post(link, data={"csrf": _csrf(page.text)}, headers=_same_site(web))
    assert confirmed.status_code == 200 and 'id="confirmed"' in confirmed.text
    assert _state(web, "newbie@example.org") == ("active", {"nova", "cinder"}, "en")
    # an active address and an unknown one get the same page
    known = web.client.post("/subscribe", data=form, headers=_same_site(web))
    unknown = web.client.post(
        "/subscribe", data={**form, "email": "stranger@example.org"}, headers=_same_site(web)
    )
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text


def test_signup_refuses_bad_input_with_400_and_bots_get_nothing(live_web):
    web = live_web
    csrf = _csrf(web.client.get("/subscribe").text)
    bad = web.client.post(
        "/subscribe", data={"csrf": csrf, "email": "not an address"}, headers=_same_site(web)
    )
    assert bad.status_code == 400 and 'id="error"' in bad.text
    unknown_topic = {"csrf": csrf, "email": "topic@example.org", "topics": ["zzz"]}
    assert web.client.post("/subscribe", data=unknown_topic, headers=_same_site(web)).status_code == 400
    header_injection = {"csrf": csrf, "email": "x@example.org\r\nBcc: y@evil.example"}
    assert web.client.post("/subscribe", data=header_injection, headers=_same_site(web)).status_code == 400
    bot = {"csrf": csrf, "email": "bot@example.org", "website": "http://spam.example"}
    answer = web.client.post("/subscribe", data=bot, headers=_same_site(web))
    assert answer.status_code == 200 and 'id="check-inbox"' in answer.text
    with web.env.sessions() as session:
        assert session.scalar(select(Subscriber).where(Subscriber.email_key == "bot@example.org")) is None
    assert (
        web.client.post("/subscribe", data={"email": "x@example.org"}, headers=_same_site(web)).status_code
        == 400
    )


def test_a_new_preferences_link_goes_out_once_an_hour_and_the_answer_never_tells(live_web):
    web = live_web
    _subscriber(web, "lost@example.org")
    csrf = _csrf(web.client.get("/preferences").text)
    answers = [
        web.client.post("/preferences", data={"csrf": csrf, "email": address}, headers=_same_site(web))
        for address in ("lost@example.org", "lost@example.org", "nobody-here@example.org")
    ]
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    mails = wait_until(lambda: _sent_messages(web, "lost@example.org"), what="the link email")
    holds_for(lambda: len(_sent_messages(web, "lost@example.org")) == 1, 0.5, what="a single email")
    link = re.search(
        rf"{re.escape(web.url)}/preferences/[^\s\"<]+", mails[0].get_body(("plain",)).get_content()
    )
    assert web.client.get(link.group(0)).status_code == 200


# --- security basics ---------------------------------------------------------------------------------
def test_pages_carry_security_headers_and_ignore_the_host_header(live_web):
    web = live_web
    response = web.client.get("/subscribe", headers={"host": "evil.example"})
    assert response.status_code == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "evil.example" not in response.text
    assert all(url.startswith(web.url) for url in HREF_RE.findall(response.text))
    assert "<script" not in response.text.lower() and " style=" not in response.text
    css = web.client.get("/static/site.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_form_bodies_over_the_limit_are_413(live_web):
    web = live_web
    big = {"csrf": "x", "email": "a@example.org", "website": "x" * (web.settings.max_body_bytes + 10)}
    assert web.client.post("/subscribe", data=big, headers=_same_site(web)).status_code == 413


def test_signups_from_one_client_are_limited_per_hour(tmp_path):
    from plugins.web import start_web

    web = start_web(tmp_path, NEWSLETTER_SIGNUP_IP_LIMIT="2")
    try:
        csrf = _csrf(web.client.get("/subscribe").text)
        codes = [
            web.client.post(
                "/subscribe", data={"csrf": csrf, "email": f"r{i}@example.org"}, headers=_same_site(web)
            ).status_code
            for i in range(3)
        ]
        assert codes == [200, 200, 429]
        again = web.client.post(
            "/subscribe", data={"csrf": csrf, "email": "r9@example.org"}, headers=_same_site(web)
        )
        assert again.status_code == 429 and again.headers["retry-after"] == "3600"
    finally:
        web.stop()
        web.trap.close()


def test_many_readers_at_once_never_exhaust_the_database_pool(live_web):
    """More concurrent requests than the database pool has connections: each request ends its
    transaction outside the thread pool's limit, so none waits for a thread while holding a connection
    (which deadlocked until the pool's timeout)."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    web = live_web
    readers = [_subscriber(web, f"crowd{i}@example.org") for i in range(60)]
    urls = [f"{web.url}/preferences/{_token(web, r, 'preferences')}" for r in readers]

    def get(url: str) -> int:
        with httpx.Client(timeout=20) as client:
            return client.get(url).status_code

    with ThreadPoolExecutor(60) as pool:
        codes = list(pool.map(get, urls * 2))
    assert codes == [200] * 120


def test_every_link_a_sent_message_carries_leads_to_a_page(live_web, sent_issue):
    """Every link on the site in every part and in the List-Unsubscribe header of the sent messages
    answers 200 (a GET changes nothing, so following them all is safe)."""
    web = live_web
    _, messages = sent_issue
    checked = 0
    for message in messages.values():
        text = message.get_body(("html",)).get_content() + message.get_body(("plain",)).get_content()
        text += str(message["List-Unsubscribe"])
        links = {unescape(link) for link in re.findall(rf"{re.escape(web.url)}[^\s\"<>]*", text)}
        for link in sorted(links):
            response = web.client.get(link)
            assert response.status_code == 200, (link, response.status_code)
            checked += 1
    assert checked >= 20


def test_no_redirect_is_built_from_the_host_header(live_web):
    web = live_web
    evil = {"host": "evil.example"}
    moved = web.client.get("/issues", headers=evil)
    assert moved.status_code == 303 and moved.headers["location"] == web.url + "/issues/"
    for path in ("/subscribe/", "/preferences/", "/webhooks/ses/"):
        response = web.client.get(path, headers=evil)
        assert response.status_code in (404, 405) and "location" not in response.headers, path
    archive = web.client.get("/issues/")
    assert archive.headers["vary"] == "Accept-Language"  # a shared cache keeps one copy per language
    assert web.client.get("/static/site.css").headers["cache-control"] == "public, max-age=3600"
    head = web.client.head("/issues/")  # link checkers send HEAD: answered as GET, without the body
    assert (
        head.status_code == 200
        and head.content == b""
        and head.headers["content-type"].startswith("text/html")
    )


def test_a_signup_with_someone_elses_address_changes_nothing_until_they_confirm(live_web):
    web = live_web
    owner = _subscriber(web, "owner@example.org", topics=("nova",), locale="en")
    with web.env.transaction() as session:
        from subscribers.preferences import unsubscribe_all

        unsubscribe_all(session, owner.id, source="test", now=utcnow())
    csrf = _csrf(web.client.get("/subscribe").text)
    form = {"csrf": csrf, "email": "owner@example.org", "topics": ["heat"], "locale": "zh"}
    assert web.client.post("/subscribe", data=form, headers=_same_site(web)).status_code == 200
    assert _state(web, "owner@example.org") == ("unsubscribed", {"nova"}, "en")
    mail = wait_until(lambda: _sent_messages(web, "owner@example.org"), what="the confirmation email")[-1]
    link = re.search(
        rf"{re.escape(web.url)}/confirm/[^\s\"<]+", mail.get_body(("plain",)).get_content()
    ).group(0)
    page = web.client.get(link)
    assert 'id="confirm"' in page.text
    web.client.post(link, data={"csrf": _csrf(page.text)}, headers=_same_site(web))
    assert _state(web, "owner@example.org") == ("active", {"heat"}, "zh")
