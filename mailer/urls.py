"""The URL contract: every path the web app serves and every link it or a message emits, built in one
place from ``NEWSLETTER_BASE_URL`` (never from a request's Host header).

``ROUTES`` names each path template the app serves: the reader links of messages and pages, the admin
dashboard and API, the operations endpoints. The message builder, the confirmation email, the preview,
the pages (``urls`` in every template) and the app's redirects build their links with ``Urls``; tests
hold every emitted link to one of these routes and every route of the app to an entry here
(tests/architecture/test_urls.py). Links in sent messages live for years: a reader path is changed only
with a redirect from the old one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["API_PREFIX", "ROUTES", "SAMPLE_TOKEN", "STATIC_PREFIX", "Urls", "route_of", "view_scope"]

ROUTES: Mapping[str, str] = MappingProxyType(
    {
        # --- reader links: in messages and on the public pages --------------------------------------
        # GET: a page with a confirm button (changes nothing: mail scanners follow links);
        # POST: the unsubscribe itself, also RFC 8058 one-click (body List-Unsubscribe=One-Click)
        "unsubscribe": "/unsubscribe/{token}",
        # the preference centre; ?add=KEY / ?remove=KEY pre-select one topic (the per-topic links)
        "preferences": "/preferences/{token}",
        # ask for a new preferences link by email (for a reader who lost every message)
        "preferences_request": "/preferences",
        # the reader's own copy of a campaign in a browser; the token binds subscriber and campaign
        "view": "/view/{campaign_id}/{token}",
        # double opt-in: GET shows a button, POST activates
        "confirm": "/confirm/{token}",
        "subscribe": "/subscribe",
        "archive": "/issues/",
        "archive_issue": "/issues/{slug}",
        "feed": "/issues/feed.xml",
        # the site's root and the archive without its slash: both redirect to the archive
        "home": "/",
        "archive_bare": "/issues",
        # the pages' stylesheet (and any other file of templates/web/static)
        "static": "/static/{name}",
        # --- the admin dashboard: never in a message (the CLI prints its address) ---------------------
        "admin": "/admin/",
        "admin_bare": "/admin",  # redirects to admin
        "admin_login": "/admin/login",
        "admin_logout": "/admin/logout",
        "admin_campaigns": "/admin/campaigns",  # POST: upload an issue as a draft
        "admin_campaign": "/admin/campaigns/{campaign_id}",
        # GET: the confirmation page of an action (start, pause, resume, cancel); POST: the action
        "admin_campaign_action": "/admin/campaigns/{campaign_id}/{action}",
        "admin_subscribers": "/admin/subscribers",
        "admin_suppressions": "/admin/suppressions",
        "admin_suppression_remove": "/admin/suppressions/remove",
        # --- the admin API (JSON; scripts, and the dashboard's previews and progress bars) ------------
        "api_campaigns": "/api/campaigns",
        "api_campaign": "/api/campaigns/{campaign_id}",
        "api_campaign_checklist": "/api/campaigns/{campaign_id}/checklist",
        "api_campaign_preview": "/api/campaigns/{campaign_id}/preview",
        "api_campaign_test": "/api/campaigns/{campaign_id}/test",
        "api_campaign_schedule": "/api/campaigns/{campaign_id}/schedule",
        "api_campaign_start": "/api/campaigns/{campaign_id}/start",
        "api_campaign_pause": "/api/campaigns/{campaign_id}/pause",
        "api_campaign_resume": "/api/campaigns/{campaign_id}/resume",
        "api_campaign_cancel": "/api/campaigns/{campaign_id}/cancel",
        "api_campaign_progress": "/api/campaigns/{campaign_id}/progress",
        "api_subscribers": "/api/subscribers",
        "api_subscribers_export": "/api/subscribers/export",
        "api_subscribers_import": "/api/subscribers/import",
        "api_subscriber": "/api/subscribers/{subscriber_id}",
        "api_suppressions": "/api/suppressions",
        "api_suppression": "/api/suppressions/{email}",
        # --- operations ------------------------------------------------------------------------------
        # SES feedback through SNS: NEWSLETTER_WEBHOOK_PATH, which defaults to this path
        "webhook": "/webhooks/ses",
        "healthz": "/healthz",
        "metrics": "/metrics",
        "openapi": "/openapi.json",
    }
)
API_PREFIX = "/api/"  # every route of the admin API: JSON answers, and the gate for its writes
STATIC_PREFIX = ROUTES["static"].removesuffix("{name}")

# The token in links of previews and test sends: not a valid token, so its links lead to the
# "this link is not valid" page instead of acting on anyone.
SAMPLE_TOKEN = "sample"
TOPIC_ACTIONS = ("add", "remove")

_PARAM_RE = re.compile(r"\{(\w+)\}")
_URL_SAFE_RE = re.compile(r"[A-Za-z0-9._~-]+")  # what a path segment holds as is (signed tokens do)


def _segment(value: str) -> str:
    """``value`` as one path segment: as is when it is URL-safe (every token we sign), else quoted, so no
    value ever makes another path."""
    return value if _URL_SAFE_RE.fullmatch(value) else quote(value, safe="")


def view_scope(campaign_id: int) -> str:
    """What a view link's token binds besides the subscriber: its campaign (subscribers.tokens ``scope``),
    so a reader's view token of one campaign opens no other campaign's copy."""
    return f"campaign:{campaign_id}"


def _pattern(template: str) -> re.Pattern[str]:
    parts = _PARAM_RE.split(template)
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/?#]+)" for i, part in enumerate(parts))
    return re.compile(f"^{regex}$")


# static paths first: /issues/feed.xml is the feed, not an issue slugged "feed.xml" (routers register
# them in the same order)
_PATTERNS = {
    name: _pattern(template) for name, template in sorted(ROUTES.items(), key=lambda item: "{" in item[1])
}


def route_of(path: str) -> str | None:
    """The name of the route a path (no query) belongs to, or None."""
    return next((name for name, pattern in _PATTERNS.items() if pattern.match(path)), None)


@dataclass(frozen=True)
class Urls:
    """Absolute links on ``base_url``; ``mail_domain`` is the sender's domain (the mailto unsubscribe)."""

    base_url: str
    mail_domain: str = ""
    _unsubscribe: str = field(init=False, repr=False, compare=False)
    _preferences: str = field(init=False, repr=False, compare=False)
    _view: str = field(init=False, repr=False, compare=False)
    _mailto: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = self.base_url.rstrip("/")
        object.__setattr__(self, "base_url", base)
        # the per-recipient links are built for every message sent: their fixed parts once, here
        object.__setattr__(self, "_unsubscribe", base + "/unsubscribe/")
        object.__setattr__(self, "_preferences", base + "/preferences/")
        object.__setattr__(self, "_view", base + "/view/")
        object.__setattr__(self, "_mailto", f"mailto:unsubscribe@{self.mail_domain}?subject=unsubscribe%20")
        assert (
            ROUTES["unsubscribe"] == "/unsubscribe/{token}"
            and ROUTES["preferences"] == "/preferences/{token}"
        )
        assert ROUTES["view"] == "/view/{campaign_id}/{token}"

    def _url(self, route: str, **params: object) -> str:
        path = ROUTES[route].format(**{k: _segment(str(v)) for k, v in params.items()})
        return self.base_url + path

    def unsubscribe(self, token: str) -> str:
        """The unsubscribe page and, by POST, the RFC 8058 one-click target (List-Unsubscribe)."""
        return self._unsubscribe + _segment(token)

    def mailto_unsubscribe(self, token: str) -> str:
        """The mailto: of List-Unsubscribe, for clients without one-click (an inbound route reads it)."""
        if not self.mail_domain:
            raise ValueError("a mailto link needs the mail domain")
        return self._mailto + _segment(token)

    def preferences(self, token: str, *, add: str | None = None, remove: str | None = None) -> str:
        suffix = self.topic_suffix(add=add, remove=remove) if add or remove else ""
        return self._preferences + _segment(token) + suffix

    @staticmethod
    def topic_suffix(*, add: str | None = None, remove: str | None = None) -> str:
        """``?add=nova`` / ``?remove=nova``: appended to a reader's preferences link, it pre-selects one
        topic. Fixed per segment, so a rendering can carry it after the preferences placeholder."""
        query = {k: v for k, v in (("add", add), ("remove", remove)) if v}
        return "?" + urlencode(query) if query else ""

    def preferences_request(self) -> str:
        return self._url("preferences_request")

    def view(self, campaign_id: int, token: str) -> str:
        return f"{self._view}{int(campaign_id)}/{_segment(token)}"

    def confirm(self, token: str) -> str:
        return self._url("confirm", token=token)

    def subscribe(self) -> str:
        return self._url("subscribe")

    def archive(self) -> str:
        return self._url("archive")

    def archive_issue(self, slug: str, *, topics: Iterable[str] | None = None) -> str:
        """An issue's web version; with ``topics``, the sections for those topics (``?topics=a,b``)."""
        return self._url("archive_issue", slug=slug) + _query(topics=",".join(topics or ()))

    def feed(self, topic: str | None = None) -> str:
        return self._url("feed") + _query(topic=topic)

    def static(self, name: str) -> str:
        return self._url("static", name=name)

    # --- the admin dashboard and the API it reads --------------------------------------------------
    def admin(self, *, before: int | None = None) -> str:
        """The dashboard's campaign list; ``before``: the page after the one ending at that id."""
        return self._url("admin") + _query(before=before)

    def admin_login(self, next_path: str | None = None) -> str:
        """The login page; ``next_path``: the dashboard page to go to once logged in."""
        return self._url("admin_login") + _query(next=next_path)

    def admin_logout(self) -> str:
        return self._url("admin_logout")

    def admin_campaigns(self) -> str:
        return self._url("admin_campaigns")

    def admin_campaign(self, campaign_id: int) -> str:
        return self._url("admin_campaign", campaign_id=int(campaign_id))

    def admin_campaign_action(self, campaign_id: int, action: str) -> str:
        return self._url("admin_campaign_action", campaign_id=int(campaign_id), action=action)

    def admin_subscribers(self) -> str:
        return self._url("admin_subscribers")

    def admin_suppressions(self, *, before: int | None = None) -> str:
        return self._url("admin_suppressions") + _query(before=before)

    def admin_suppression_remove(self) -> str:
        return self._url("admin_suppression_remove")

    def api_campaign_preview(self, campaign_id: int, segment: str) -> str:
        return self._url("api_campaign_preview", campaign_id=int(campaign_id)) + _query(segment=segment)

    def api_campaign_progress(self, campaign_id: int) -> str:
        return self._url("api_campaign_progress", campaign_id=int(campaign_id))

    def at(self, path: str) -> str:
        """The absolute link of a path the app serves (a login's next page); ValueError for any other."""
        if route_of(path) is None:
            raise ValueError(f"no route of the URL contract serves {path[:100]!r}")
        return self.base_url + path

    def route_of(self, url: str) -> str | None:
        """The route an absolute URL on this base leads to; None for anything else."""
        if not url.startswith(self.base_url + "/"):
            return None
        return route_of(urlsplit(url[len(self.base_url) :]).path)


def _query(**params: object) -> str:
    """``?name=value&...`` of the parameters given (None and "" left out; commas kept as they are)."""
    given = {name: str(value) for name, value in params.items() if value is not None and value != ""}
    return "?" + urlencode(given, safe=",") if given else ""
