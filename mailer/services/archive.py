"""The public archive: the issues that went out, their web versions (all topics, one reader's segment, or
a ``?topics=`` choice), a reader's own copy (the "view in browser" link) and Atom feeds per topic.

A web version is the email itself: rendered from the campaign's stored Markdown for the asked segment
(MJML costs tens of milliseconds, so renderings are kept per issue, segment and brand), with the
per-recipient placeholders filled by public links: "manage topics" and "unsubscribe" lead to the page
where a reader asks for their own link. A reader's own copy is their segment's stored rendering filled
with their links, exactly what their message held.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy.orm import Session

from mailer.errors import NotFoundError
from mailer.rendering import placeholders
from mailer.rendering.issue import Issue, parse_issue
from mailer.rendering.render import render
from mailer.sending import queries
from mailer.sending.message import RecipientLinks, link_values
from mailer.sending.models import Campaign
from mailer.services.env import AppEnv
from mailer.services.readers import link_token, open_link
from subscribers.preferences import get_preferences

__all__ = ["ArchiveEntry", "campaign_id_of", "entries", "issue_html", "latest", "reader_copy", "slug_of"]

MAX_ENTRIES = 200
_SLUG_RE = re.compile(r"([1-9][0-9]{0,17})(?:-[0-9a-z-]{0,80})?")


@dataclass(frozen=True)
class ArchiveEntry:
    campaign_id: int
    slug: str
    title: str
    description: str
    date: date
    updated: datetime
    lang: str
    topics: frozenset[str]
    sections: tuple[str, ...]  # headings, in order: all of them (sections_for narrows them per topic)
    issue: Issue


def slug_of(campaign: Campaign, issue: Issue) -> str:
    """``<id>-<date>``: the id finds the campaign, the date reads well in a link."""
    day = issue.date or (campaign.started_at or campaign.created_at).date()
    return f"{campaign.id}-{day.isoformat()}"


def campaign_id_of(slug: str) -> int:
    match = _SLUG_RE.fullmatch(slug)
    if match is None:
        raise NotFoundError(f"no issue {slug!r}")
    return int(match.group(1))


def _issue(env: AppEnv, campaign: Campaign) -> Issue:
    return env.caches.issues.get(
        ("issue", campaign.issue_hash, campaign.issue_source),
        lambda: parse_issue(
            campaign.issue_markdown, campaign.issue_source, env.registry, env.settings.default_lang
        ),
    )


def _rendered_html(env: AppEnv, campaign: Campaign, issue: Issue, segment: frozenset[str]) -> str:
    return env.caches.issues.get(
        ("html", campaign.issue_hash, campaign.issue_source, segment),
        lambda: render(issue, segment, env.brand, registry=env.registry).html,
    )


def _entry(env: AppEnv, campaign: Campaign) -> ArchiveEntry:
    issue = _issue(env, campaign)
    day = issue.date or (campaign.started_at or campaign.created_at).date()
    return ArchiveEntry(
        campaign_id=campaign.id,
        slug=slug_of(campaign, issue),
        title=issue.title or campaign.subject,
        description=issue.description,
        date=day,
        updated=campaign.finished_at or campaign.started_at or campaign.created_at,
        lang=issue.lang,
        topics=issue.topics,
        sections=tuple(s.heading for s in issue.sections if s.heading and not s.is_empty),
        issue=issue,
    )


def entries(session: Session, env: AppEnv, *, topic: str | None = None) -> list[ArchiveEntry]:
    """The issues that went out, newest first; with ``topic``, those that have a section for it."""
    if topic is not None and topic not in env.registry.keys:
        raise NotFoundError(f"no topic {topic!r}")
    found = [_entry(env, c) for c in queries.archived_campaigns(session, limit=MAX_ENTRIES)]
    return [e for e in found if topic is None or topic in e.topics]


LATEST_SECONDS = 30  # the preference centre asks on every view; a new issue shows up within this


def latest(session: Session, env: AppEnv) -> ArchiveEntry | None:
    """The newest issue that went out (the preference centre shows it with the reader's topics)."""

    def newest() -> ArchiveEntry | None:
        found = queries.archived_campaigns(session, limit=1)
        return _entry(env, found[0]) if found else None

    return env.caches.issues.get(("latest", int(time.monotonic() // LATEST_SECONDS)), newest)


def _archived(session: Session, campaign_id: int) -> Campaign:
    campaign = queries.get_campaign(session, campaign_id)
    if campaign.status not in queries.ARCHIVED or campaign.sent <= 0:
        raise NotFoundError(f"no issue {campaign_id}")  # drafts and cancelled campaigns are not public
    return campaign


def issue_html(
    session: Session, env: AppEnv, slug: str, topics: Collection[str] | None
) -> tuple[ArchiveEntry, str]:
    """The web version of an issue: every topic, or the sections for ``topics`` (unknown keys ignored)."""
    campaign = _archived(session, campaign_id_of(slug))
    entry = _entry(env, campaign)
    segment = entry.topics if topics is None else entry.issue.segment_for(topics)
    html = _rendered_html(env, campaign, entry.issue, segment)
    public = {
        placeholders.EMAIL: "",
        placeholders.VIEW_URL: env.urls.archive_issue(entry.slug),
        placeholders.PREFERENCES_URL: env.urls.preferences_request(),
        placeholders.UNSUBSCRIBE_URL: env.urls.preferences_request(),
    }
    return entry, placeholders.SplitTemplate.split(html, escape_html=True).fill(public)


def reader_copy(session: Session, env: AppEnv, campaign_id: int, token: str) -> str:
    """A reader's own message of a campaign in a browser (the "view in browser" link)."""
    campaign = _archived(session, campaign_id)
    subscriber = open_link(session, env, token, "view", campaign_id=campaign.id)
    stored = queries.reader_segment(session, campaign.id, subscriber.id)
    if stored is not None:
        html = stored.html
    else:  # added to the list after the send: their segment as it would be today
        issue = _issue(env, campaign)
        followed = get_preferences(session, subscriber.id).topics
        html = _rendered_html(env, campaign, issue, issue.segment_for(followed))
    tokens = RecipientLinks(
        link_token(env, subscriber, "unsubscribe"), link_token(env, subscriber, "preferences"), token
    )
    values = link_values(env.identity, campaign.id, subscriber.email, tokens)
    return placeholders.SplitTemplate.split(html, escape_html=True).fill(values)
