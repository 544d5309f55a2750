"""The pre-send checklist: a dry run of a campaign (the segments a start would render, who falls in each,
their sizes) and the checks every start must pass: no parse warnings, every segment has content, every
HTML part under Gmail's clipping size, every link absolute, unsubscribe and preference links in every part,
a sender identity, a non-empty audience.

``require_ready`` is the rule every front end meets (through ``lifecycle.check_start`` and
``lifecycle.schedule``): a failing item refuses the start unless overridden, and an override is logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailer.errors import ConflictError
from mailer.rendering import placeholders
from mailer.rendering.issue import Issue
from mailer.rendering.render import Rendering, render_segments
from mailer.sending import queries
from mailer.services.drafts import Draft, audience_counts, segment_label, stored_draft
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.normalise import normalise_address

__all__ = [
    "GMAIL_CLIP_BYTES",
    "Check",
    "ChecklistFailed",
    "Plan",
    "SegmentInfo",
    "plan",
    "plan_campaign",
    "plan_in",
    "require_ready",
]

log = logging.getLogger(__name__)

GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides the rest of a larger HTML part behind "[Message clipped]"
_HREF_RE = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.I)


@dataclass(frozen=True)
class SegmentInfo:
    segment: frozenset[str]
    recipients: int
    subject: str
    sections: tuple[str, ...]
    html_bytes: int
    text_bytes: int

    @property
    def label(self) -> str:
        return segment_label(self.segment)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Plan:
    """A dry run: the segments a send would render, who falls in each, and the pre-send checks."""

    title: str
    source: str
    warnings: tuple[str, ...]
    segments: tuple[SegmentInfo, ...]
    checks: tuple[Check, ...]

    @property
    def recipients(self) -> int:
        return sum(s.recipients for s in self.segments)

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failing(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.ok)


class ChecklistFailed(ConflictError):
    """A start or a schedule refused because an item of the pre-send checklist fails (and no override was
    given). The message names each failing item and its detail, and no front end's way to override."""

    def __init__(self, failing: tuple[Check, ...]) -> None:
        items = "; ".join(f"{c.name} ({c.detail})" if c.detail else c.name for c in failing)
        super().__init__(f"the pre-send checklist fails: {items}")
        self.failing = failing


def require_ready(plan: Plan, *, override: bool, campaign_id: int, action: str) -> Plan:
    """The checklist's rule, the same for the CLI, the API and the dashboard: a plan with a failing item
    refuses ``action`` (ChecklistFailed) unless ``override``, which is logged with the items it overrode."""
    failing = plan.failing
    if failing and not override:
        raise ChecklistFailed(failing)
    if failing:
        names = [check.name for check in failing]
        log.warning(
            "campaign %d: the pre-send checklist fails (%s); %s anyway (override)",
            campaign_id, "; ".join(names), action,
            extra={"campaign_id": campaign_id, "override": True, "failing": names},
        )  # fmt: skip
    return plan


def plan(env: AppEnv, draft: Draft) -> Plan:
    """Render each segment the audience falls into once, count its readers, run the checks; send nothing."""
    with env.read_sessions() as session:
        counts = audience_counts(session, draft.issue, draft.audience)
    return _plan(env, draft, counts)


def plan_in(session: Session, env: AppEnv, draft: Draft) -> Plan:
    """``plan``, counting the audience in the caller's session (a start or a schedule checks in the
    transaction that changes the campaign)."""
    return _plan(env, draft, audience_counts(session, draft.issue, draft.audience))


def _plan(env: AppEnv, draft: Draft, counts: Mapping[frozenset[str], int]) -> Plan:
    wanted = list(counts) or [draft.issue.topics]
    renderings = render_segments(draft.issue, wanted, env.brand, registry=env.registry)
    segments = tuple(
        SegmentInfo(
            segment,
            counts.get(segment, 0),
            rendering.subject,
            rendering.section_headings,
            len(rendering.html.encode()),
            len(rendering.text.encode()),
        )
        for segment, rendering in sorted(renderings.items(), key=lambda kv: (len(kv[0]), sorted(kv[0])))
    )
    checks = _checks(env.settings, draft, segments, renderings)
    return Plan(draft.issue.title, draft.issue.source, draft.issue.warnings, segments, checks)


def plan_campaign(env: AppEnv, campaign_id: int) -> Plan:
    with env.read_sessions() as session:
        campaign = queries.get_campaign(session, campaign_id)
        draft = stored_draft(env, campaign)
    return plan(env, draft)


def _checks(
    settings: Settings,
    draft: Draft,
    segments: tuple[SegmentInfo, ...],
    renderings: Mapping[frozenset[str], Rendering],
) -> tuple[Check, ...]:
    warnings = draft.issue.warnings
    largest = max(segments, key=lambda s: s.html_bytes)
    empty = [s.label for s in segments if not s.sections and not _has_intro(draft.issue)]
    relative = sorted(
        {
            href
            for rendering in renderings.values()
            for href in _HREF_RE.findall(rendering.html)
            if not href.startswith(("http://", "https://", "mailto:", "#", "%%NL:"))
        }
    )
    needed = (placeholders.UNSUBSCRIBE_URL, placeholders.PREFERENCES_URL)
    missing = sorted(
        {
            f"{name} in {segment_label(segment)}"
            for segment, r in renderings.items()
            for name in needed
            if placeholders.marker(name) not in r.html or placeholders.marker(name) not in r.text
        }
    )
    sender_ok, sender_detail = _sender_check(settings)
    recipients = sum(s.recipients for s in segments)
    return (
        Check("the issue parses without warnings", not warnings, "; ".join(warnings)),
        Check("every segment has content", not empty, ", ".join(empty)),
        Check(
            "every segment's HTML is under 102 KB (Gmail clips larger ones)",
            largest.html_bytes <= GMAIL_CLIP_BYTES,
            f"largest: {largest.label}, {largest.html_bytes / 1024:.1f} KB",
        ),
        Check("every link is absolute http(s)", not relative, ", ".join(relative[:5])),
        Check("unsubscribe and preference links in every part", not missing, ", ".join(missing[:5])),
        Check("the sender identity is set", sender_ok, sender_detail),
        Check("the audience is not empty", recipients > 0, f"{recipients:,} recipients"),
    )


def _has_intro(issue: Issue) -> bool:
    return any(not s.is_empty for s in issue.sections if s.topic is None)


def _sender_check(settings: Settings) -> tuple[bool, str]:
    default = Settings.model_fields["sender_address"].default
    try:
        normalise_address(settings.sender_address)
    except ValueError as exc:
        return False, f"NEWSLETTER_SENDER_ADDRESS: {exc}"
    if settings.sender_address == default:
        return False, f"NEWSLETTER_SENDER_ADDRESS is still the default {default}"
    return True, settings.sender_address
