"""The URL contract (mailer/urls.py): every link on the newsletter's own site that a sent message, the
confirmation email, the preview or a page carries is built by it and names one of its routes; every route
the web app serves (admin and API included) is one of its entries, and every entry is served."""

from __future__ import annotations

import ast
import email
import email.policy
import re
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from support.paths import PROJECT_ROOT
from support.routes import served_routes

from mailer import samples
from mailer.database import sync_registry
from mailer.rendering.issue import load_issue
from mailer.rendering.preview import preview_pages
from mailer.rendering.render import Brand, render_segments
from mailer.rendering.transactional import confirmation_email, preferences_link_email
from mailer.sending.message import RecipientLinks, SegmentMessage, SenderIdentity, link_values
from mailer.settings import Settings
from mailer.urls import ROUTES, SAMPLE_TOKEN, Urls, route_of, view_scope
from mailer.web.app import create_app
from subscribers.db import utcnow
from subscribers.optin import signup
from subscribers.tokens import make_token

BASE = "https://news.example.org/weekly"  # a path prefix too: links must keep it
SETTINGS = Settings(base_url=BASE + "/", sender_address="news@example.org", secret_key="k")
URL_RE = re.compile(r"https?://[^\s\"'<>)\]]+")


def _own_links(text: str) -> set[str]:
    """Absolute links on the newsletter's own site (an issue's content may link anywhere else)."""
    return {url.rstrip(".,;") for url in URL_RE.findall(text) if url.startswith(BASE)}


def _assert_all_routed(links: set[str]) -> None:
    urls = Urls(BASE)
    assert links, "the message carries links to the site"
    unrouted = sorted(link for link in links if urls.route_of(link) is None)
    assert unrouted == [], "links that no route of mailer/urls.py serves"


def test_every_link_of_a_sent_message_is_a_route_of_the_contract(registry):
    issue = load_issue(samples.ISSUE, registry)
    identity = SenderIdentity.from_settings(SETTINGS)
    rendering = render_segments(issue, [issue.topics], Brand.from_settings(SETTINGS), registry=registry)[
        issue.topics
    ]
    tokens = RecipientLinks(
        make_token("k", 5, "unsubscribe", salt="s", now=utcnow()),
        make_token("k", 5, "preferences", salt="s", now=utcnow()),
        make_token("k", 5, "view", salt="s", scope=view_scope(3), now=utcnow()),
    )
    built = SegmentMessage(rendering, campaign_id=3, identity=identity).build(
        subscriber_id=5,
        email="ann@example.org",
        name="Ann",
        values=link_values(identity, 3, "a@x.org", tokens),
    )
    message = email.message_from_bytes(built.raw, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    header = str(message["List-Unsubscribe"])
    links = _own_links(html) | _own_links(text) | _own_links(header)
    _assert_all_routed(links)
    assert {Urls(BASE).route_of(link) for link in links} >= {"unsubscribe", "preferences", "view"}
    assert f"<{Urls(BASE).unsubscribe(tokens.unsubscribe)}>" in header
    assert Urls(BASE, "example.org").mailto_unsubscribe(tokens.unsubscribe) in header


def test_every_link_of_the_transactional_emails_is_a_route(db_session, registry):
    sync_registry(db_session, registry)
    result = signup(db_session, "ann@example.org", secret="k", topics=["nova"], now=datetime.now(UTC))
    mail = confirmation_email(result, Brand.from_settings(SETTINGS), registry)
    links = _own_links(mail.html) | _own_links(mail.text)
    _assert_all_routed(links)
    assert {Urls(BASE).route_of(link) for link in links} == {"confirm"}
    link_mail = preferences_link_email("ann@example.org", "en", "t.o.k", Brand.from_settings(SETTINGS))
    links = _own_links(link_mail.html) | _own_links(link_mail.text)
    _assert_all_routed(links)
    assert {Urls(BASE).route_of(link) for link in links} == {"preferences"}


def test_every_link_of_the_preview_is_a_route(registry):
    pages = preview_pages(load_issue(samples.ISSUE, registry), Brand.from_settings(SETTINGS), registry)
    links = set().union(*(_own_links(page) for page in pages.values()))
    _assert_all_routed(links)
    assert all(SAMPLE_TOKEN in link for link in links if "/issues" not in link)


@pytest.mark.parametrize(
    ("built", "route"),
    [
        (Urls(BASE).unsubscribe("t.o.k"), "unsubscribe"),
        (Urls(BASE).preferences("t.o.k", remove="nova"), "preferences"),
        (Urls(BASE).preferences_request(), "preferences_request"),
        (Urls(BASE).view(12, "t.o.k"), "view"),
        (Urls(BASE).confirm("t.o.k"), "confirm"),
        (Urls(BASE).subscribe(), "subscribe"),
        (Urls(BASE).archive(), "archive"),
        (Urls(BASE).archive_issue("2026-11-26-weekly"), "archive_issue"),
        (Urls(BASE).feed(topic="nova"), "feed"),
        (Urls(BASE).archive_issue("2-2026-11-26", topics=["nova", "cinder"]), "archive_issue"),
        (Urls(BASE).admin(), "admin"),
        (Urls(BASE).admin(before=40), "admin"),
        (Urls(BASE).admin_login("/admin/campaigns/3"), "admin_login"),
        (Urls(BASE).admin_logout(), "admin_logout"),
        (Urls(BASE).admin_campaigns(), "admin_campaigns"),
        (Urls(BASE).admin_campaign(3), "admin_campaign"),
        (Urls(BASE).admin_campaign_action(3, "start"), "admin_campaign_action"),
        (Urls(BASE).admin_subscribers(), "admin_subscribers"),
        (Urls(BASE).admin_suppressions(before=9), "admin_suppressions"),
        (Urls(BASE).admin_suppression_remove(), "admin_suppression_remove"),
        (Urls(BASE).api_campaign_preview(3, "nova,neutron"), "api_campaign_preview"),
        (Urls(BASE).api_campaign_progress(3), "api_campaign_progress"),
        (Urls(BASE).at("/admin/subscribers"), "admin_subscribers"),
    ],
)
def test_each_builder_leads_to_its_own_route(built, route):
    assert built.startswith(BASE + "/")
    assert Urls(BASE).route_of(built) == route


def test_the_contract_is_strict_about_paths():
    assert route_of("/unsubscribe/a/b") is None
    assert route_of("/preview/unsubscribe") is None
    assert Urls(BASE).route_of("https://evil.example/unsubscribe/x") is None
    assert Urls(BASE).route_of("https://news.example.org/unsubscribe/x") is None  # not under the base path
    assert Urls(BASE).unsubscribe("a/b?c") == BASE + "/unsubscribe/a%2Fb%3Fc"  # a token never makes a path
    assert Urls(BASE).admin_campaign_action(3, "x/y") == BASE + "/admin/campaigns/3/x%2Fy"
    assert Urls(BASE).admin_login("/admin/?a=b&c") == BASE + "/admin/login?next=%2Fadmin%2F%3Fa%3Db%26c"
    by_topics = Urls(BASE).archive_issue("2-x", topics=["nova", "cinder"])
    assert by_topics == BASE + "/issues/2-x?topics=nova,cinder"
    assert Urls(BASE).archive_issue("2-x", topics=[]) == BASE + "/issues/2-x"
    with pytest.raises(ValueError):
        Urls(BASE).at("//evil.example/admin/")
    assert len(set(ROUTES.values())) == len(ROUTES), "one name per path"


# --- every route the app serves is an entry of the contract, and every entry is served ----------------
def _routes_unknown_to_the_contract(app: FastAPI) -> list[str]:
    known = set(ROUTES.values())
    return sorted(
        str(route)
        for route in served_routes(app)
        # a mount serves the files below it: the contract names them with one parameter ("/static/{name}")
        if (route.path + "/{name}" if route.mount else route.path) not in known
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    settings = Settings(data_dir=tmp_path_factory.mktemp("app"))
    assert settings.webhook_path == ROUTES["webhook"], "the contract names the webhook's default path"
    return create_app(settings)


def test_every_route_the_app_serves_is_in_the_contract(app):
    routes = served_routes(app)
    assert {r.path for r in routes} >= {"/admin/", "/api/campaigns", "/issues/feed.xml", "/healthz"}
    assert _routes_unknown_to_the_contract(app) == [], "routes mailer/urls.py does not know: add them there"


def test_every_entry_of_the_contract_is_served(app):
    served = {r.path + "/{name}" if r.mount else r.path for r in served_routes(app)}
    assert sorted(set(ROUTES.values()) - served) == [], "contract entries no route serves"


def test_a_route_added_without_a_contract_entry_is_caught(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))

    @app.get("/admin/reports/{report_id}")
    def report(report_id: int) -> dict[str, int]:
        return {"id": report_id}

    assert _routes_unknown_to_the_contract(app) == ["GET /admin/reports/{report_id} (report)"]


# --- no link is built by hand: pages take theirs from `urls`, the app's code from env.urls -------------
TEMPLATES = PROJECT_ROOT / "templates" / "web"
LINK_ATTRIBUTE_RE = re.compile(r'\b(href|src|action|data-[\w-]*url)="([^"]*)"')
# the whole value is one expression: a builder of the contract, or a variable a route built with one
CONTRACT_LINK_RE = re.compile(r"\{\{ *(urls\.\w+\([^{}]*\)|[a-z_]+) *\}\}")


def test_page_templates_take_every_link_from_the_contract():
    offenders = []
    for path in sorted(p for p in TEMPLATES.rglob("*") if p.suffix in (".html", ".xml")):
        for attribute, value in LINK_ATTRIBUTE_RE.findall(path.read_text(encoding="utf-8")):
            if not CONTRACT_LINK_RE.fullmatch(value) or re.search(r"['\"][/?]", value):
                offenders.append(f"{path.relative_to(TEMPLATES)}: {attribute}={value!r}")
    assert offenders == [], "links in page templates come from urls.<builder>(...), not concatenated"


def _first_segments() -> set[str]:
    return {template.split("/")[1] for template in ROUTES.values() if template != "/"}


def _declarations(tree: ast.AST) -> set[int]:
    """ids of the nodes that declare a route (decorators, a router's prefix, a mount): the walk above
    holds those to the contract."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found |= {id(n) for d in node.decorator_list for n in ast.walk(d)}
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "APIRouter",
            "mount",
        ):
            found |= {id(n) for n in ast.walk(node)}
    return found


def test_the_web_code_builds_no_path_by_hand():
    """Redirects, login targets and path checks in mailer/web (admin and API included) take their paths
    from mailer/urls.py; only the route declarations name paths (and the walk above checks those)."""
    segments = _first_segments()
    offenders = []
    for path in sorted((PROJECT_ROOT / "mailer" / "web").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = _declarations(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in declared
                and re.match(r"/([\w.-]+)", node.value)
                and node.value[1:].split("/")[0].split("?")[0] in segments
            ):
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.value!r}")
    assert offenders == [], "paths built by hand: use mailer.urls (ROUTES, API_PREFIX, env.urls)"
