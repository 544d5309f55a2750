"""The URL contract: every public path a message or a page emits, built in one place from
``NEWSLETTER_BASE_URL`` (never from a request's Host header).

``ROUTES`` names each path template; the message builder, the confirmation email, the preview and the web
app's routers all take their paths from here, and tests hold every emitted link to one of these routes.
Links in sent messages live for years: a path here is changed only with a redirect from the old one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, urlencode, urlsplit

__all__ = ["ROUTES", "SAMPLE_TOKEN", "Urls", "route_of", "view_scope"]

ROUTES: Mapping[str, str] = MappingProxyType(
    {
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
        # the pages' stylesheet (and any other file of templates/web/static)
        "static": "/static/{name}",
        # the admin dashboard (its login page when no session); never in a message, printed by the CLI
        "admin": "/admin/",
    }
)

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

    def archive_issue(self, slug: str) -> str:
        return self._url("archive_issue", slug=slug)

    def feed(self, topic: str | None = None) -> str:
        return self._url("feed") + (f"?{urlencode({'topic': topic})}" if topic else "")

    def static(self, name: str) -> str:
        return self._url("static", name=name)

    def admin(self) -> str:
        return self._url("admin")

    def route_of(self, url: str) -> str | None:
        """The route an absolute URL on this base leads to; None for anything else."""
        if not url.startswith(self.base_url + "/"):
            return None
        return route_of(urlsplit(url[len(self.base_url) :]).path)
