"""Drafts: an issue about to become a campaign (its parsed form, its Markdown, who gets what, how it leaves),
read from a file, an upload or a stored campaign; the audience it falls into; test sends of it.

A start, a resume or a scheduled start never uses an issue object handed beside a campaign id: it parses
the campaign's stored Markdown again (``stored_draft``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from mailer.errors import InputError
from mailer.rendering.issue import Issue, load_issue, parse_issue
from mailer.rendering.render import check_content, render_segments
from mailer.sending import queries
from mailer.sending.models import Campaign
from mailer.sending.sender import send_test as send_test_messages
from mailer.sending.states import Audience
from mailer.sending.transports import available as available_transports
from mailer.services.env import AppEnv
from subscribers.normalise import normalise_address
from subscribers.store import segment_counts

__all__ = [
    "Draft",
    "audience_counts",
    "campaign_draft",
    "parse_draft",
    "read_draft",
    "segment_label",
    "send_test",
    "stored_draft",
]


def segment_label(segment: Collection[str]) -> str:
    return ", ".join(sorted(segment)) or "(general only)"


@dataclass(frozen=True)
class Draft:
    """An issue about to become a campaign: its parsed form, its Markdown, who gets what, how it leaves."""

    issue: Issue
    markdown: str
    audience: Audience
    transport: str


def _how(env: AppEnv, audience: str, transport: str | None) -> tuple[Audience, str]:
    chosen = transport or env.settings.transport
    if chosen not in available_transports():
        raise InputError(f"unknown transport {chosen!r}; choose one of {', '.join(available_transports())}")
    if chosen != "file":  # refused before anything is stored, not when the first batch goes out
        env.settings.require_own_secret(f"sending through the {chosen} transport")
    if audience not in tuple(Audience):
        raise InputError(f"unknown audience {audience!r}; choose one of {', '.join(Audience)}")
    return Audience(audience), chosen


def parse_draft(
    env: AppEnv,
    markdown: str,
    source: str,
    *,
    audience: str = Audience.SUBSCRIBERS,
    transport: str | None = None,
) -> Draft:
    """A draft from Markdown (an upload, a stored campaign); IssueError or InputError when it is bad."""
    how = _how(env, audience, transport)
    issue = parse_issue(markdown, source, env.registry, env.settings.default_lang)
    check_content(issue, env.brand, registry=env.registry)
    return Draft(issue, markdown, *how)


def read_draft(
    env: AppEnv, path: Path, *, audience: str = Audience.SUBSCRIBERS, transport: str | None = None
) -> Draft:
    """A draft from an issue file (a one-line IssueError for a missing, binary or malformed file)."""
    how = _how(env, audience, transport)
    issue = load_issue(path, env.registry, env.settings.default_lang)
    check_content(issue, env.brand, registry=env.registry)
    return Draft(issue, path.read_text(encoding="utf-8-sig"), *how)


def stored_draft(env: AppEnv, campaign: Campaign) -> Draft:
    """The campaign's issue parsed again from its stored Markdown, with its audience and transport."""
    return parse_draft(
        env,
        campaign.issue_markdown,
        campaign.issue_source,
        audience=campaign.audience,
        transport=campaign.transport,
    )


def campaign_draft(env: AppEnv, campaign_id: int) -> Draft:
    """``stored_draft`` of a campaign by id (NotFoundError when there is none)."""
    with env.read_sessions() as session:
        return stored_draft(env, queries.get_campaign(session, campaign_id))


def audience_counts(session: Session, issue: Issue, audience: str) -> dict[frozenset[str], int]:
    """Readers per segment the issue's audience falls into now (``all``: one segment, every topic)."""
    counts = segment_counts(session, issue.topics)
    if audience == Audience.ALL:
        return {issue.topics: sum(counts.values())} if counts else {}
    return counts


def send_test(env: AppEnv, draft: Draft, addresses: Collection[str]) -> list[tuple[frozenset[str], str]]:
    """One message per segment of the current audience to each given address, through the draft's
    transport and its rate limiter; no campaign, no ledger rows. Returns (segment, address) sent."""
    if not addresses:
        raise InputError("give at least one address to send the test to")
    checked = [normalise_address(address).email for address in addresses]
    with env.read_sessions() as session:
        counts = audience_counts(session, draft.issue, draft.audience)
    segments = list(counts) or [draft.issue.topics]
    renderings = render_segments(draft.issue, segments, env.brand, registry=env.registry)
    return send_test_messages(env.send_context(), renderings, checked, transport_name=draft.transport)
