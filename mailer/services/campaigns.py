"""Campaign services: plan (dry run and checks), create, schedule, start, pause, resume, cancel, test sends,
progress and listings; the reaper and the scheduler. The CLI, the Celery tasks and the web app call these
and nothing below them.

Unit-of-work services take a ``Session`` (the caller commits: ``env.transaction()`` or the web request);
``*_stepwise`` services take the ``AppEnv`` and commit as they go. Status changes consult the transition
table (mailer/sending/states.py); a start always renders from the campaign's stored Markdown.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from mailer.errors import ConflictError, InputError, NewsletterError, SendingStopped, is_database_outage
from mailer.rendering import placeholders
from mailer.rendering.issue import Issue, load_issue, parse_issue
from mailer.rendering.render import Rendering, check_content, render_segments
from mailer.sending import ledger, queries
from mailer.sending.fill import fill_ledger_stepwise, store_renderings
from mailer.sending.journal import make_journal
from mailer.sending.models import Campaign
from mailer.sending.sender import BatchReport
from mailer.sending.sender import send_batch_stepwise as send_claimed_batch_stepwise
from mailer.sending.sender import send_test as send_test_messages
from mailer.sending.states import (
    Audience,
    CampaignAction,
    CampaignStatus,
    DeliveryStatus,
    campaign_actions,
    campaign_sources,
    campaign_targets,
)
from mailer.sending.transports import available as available_transports
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.normalise import normalise_address
from subscribers.store import segment_counts

__all__ = [
    "FINAL_STATUSES",
    "CampaignDetail",
    "CampaignInfo",
    "Check",
    "Draft",
    "Plan",
    "Progress",
    "ReapReport",
    "Retry",
    "SegmentInfo",
    "cancel",
    "check_finished",
    "create",
    "detail",
    "list_campaigns",
    "parse_draft",
    "pause",
    "plan",
    "plan_campaign",
    "progress",
    "read_draft",
    "reap_stepwise",
    "retry_failed",
    "continue_retry_stepwise",
    "Resumption",
    "continue_stepwise",
    "resume",
    "resume_stepwise",
    "run_and_watch",
    "schedule",
    "segment_label",
    "send_test",
    "sent_sample",
    "start_due_stepwise",
    "start_stepwise",
]

log = logging.getLogger(__name__)

FINAL_STATUSES = (CampaignStatus.DONE, CampaignStatus.PAUSED, CampaignStatus.CANCELLED)
GMAIL_CLIP_BYTES = 102 * 1024  # Gmail hides the rest of a larger HTML part behind "[Message clipped]"
MAX_PAGE = 1000
WATCH_RETRIES = 20  # looks at a campaign that may fail on a lost connection once its work has ended
_HREF_RE = re.compile(r"""href\s*=\s*["']([^"']*)["']""", re.I)


def segment_label(segment: Collection[str]) -> str:
    return ", ".join(sorted(segment)) or "(general only)"


# --- drafts and plans ------------------------------------------------------------------------------
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


def _audience_counts(session: Session, issue: Issue, audience: str) -> dict[frozenset[str], int]:
    counts = segment_counts(session, issue.topics)
    if audience == Audience.ALL:
        return {issue.topics: sum(counts.values())} if counts else {}
    return counts


def plan(env: AppEnv, draft: Draft) -> Plan:
    """Render each segment the audience falls into once, count its readers, run the checks; send nothing."""
    with env.sessions() as session:
        counts = _audience_counts(session, draft.issue, draft.audience)
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


def plan_campaign(env: AppEnv, campaign_id: int) -> Plan:
    with env.sessions() as session:
        campaign = queries.get_campaign(session, campaign_id)
        draft = _stored_draft(env, campaign)
    return plan(env, draft)


def _stored_draft(env: AppEnv, campaign: Campaign) -> Draft:
    """The campaign's issue parsed again from its stored Markdown (a start, resume or scheduled start
    never uses an issue object handed beside the id)."""
    return parse_draft(
        env,
        campaign.issue_markdown,
        campaign.issue_source,
        audience=campaign.audience,
        transport=campaign.transport,
    )


# --- a campaign's life -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CampaignInfo:
    id: int
    status: str
    reason: str | None
    subject: str
    source: str
    audience: str
    transport: str
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    fill_complete: bool
    issue_hash: str

    @property
    def actions(self) -> tuple[CampaignAction, ...]:
        """What an operator may do with it now (the dashboard's buttons)."""
        return campaign_actions(self.status)

    @classmethod
    def of(cls, c: Campaign) -> CampaignInfo:
        return cls(
            c.id, c.status, c.status_reason, c.subject, c.issue_source, c.audience, c.transport,
            c.created_at, c.scheduled_at, c.started_at, c.finished_at,
            c.total, c.sent, c.failed, c.skipped, c.unknown, c.queued_all, c.issue_hash,
        )  # fmt: skip


def _conflict(campaign_id: int, status: str, action: CampaignAction) -> ConflictError:
    allowed = " or ".join(campaign_sources(action))
    return ConflictError(f"campaign {campaign_id} is {status}; only a {allowed} campaign can {action}")


def _transition(
    session: Session, campaign_id: int, action: CampaignAction, to: CampaignStatus, **values: Any
) -> CampaignInfo:
    """One operator action the transition table allows from the campaign's status, or ConflictError."""
    campaign = queries.get_campaign(session, campaign_id)
    if not ledger.set_status(session, campaign_id, action, to, **values):
        raise _conflict(campaign_id, campaign.status, action)
    session.refresh(campaign)
    return CampaignInfo.of(campaign)


def create(
    session: Session, draft: Draft, *, now: datetime, scheduled_at: datetime | None = None
) -> CampaignInfo:
    """A draft campaign holding the issue's Markdown; scheduled at once when ``scheduled_at`` is given
    (segments are rendered when it starts: the audience may change until then)."""
    campaign = queries.insert_campaign(
        session,
        source=draft.issue.source,
        markdown=draft.markdown,
        subject=draft.issue.title,
        audience=draft.audience,
        transport=draft.transport,
        status=CampaignStatus.DRAFT,
        scheduled_at=None,
        now=now,
    )
    if scheduled_at is not None:
        return schedule(session, campaign.id, scheduled_at, now=now)
    return CampaignInfo.of(campaign)


def schedule(session: Session, campaign_id: int, at: datetime, *, now: datetime) -> CampaignInfo:
    if at.tzinfo is None:
        raise InputError("a schedule time needs a UTC offset")
    if at <= now:
        raise InputError(f"{at.isoformat()} is in the past")
    return _transition(
        session, campaign_id, CampaignAction.SCHEDULE, CampaignStatus.SCHEDULED, scheduled_at=at
    )


def start_stepwise(env: AppEnv, campaign_id: int) -> int:
    """Start a draft or scheduled campaign: claim it (one conditional UPDATE: two starters never both
    start it), render each segment once from the stored Markdown, stream the audience into the ledger a
    committed chunk at a time and enqueue the batches (embedded mode: send them here). Returns the rows
    queued."""
    return _start_stepwise(env, campaign_id, only_from=None)


def _start_stepwise(env: AppEnv, campaign_id: int, *, only_from: tuple[str, ...] | None) -> int:
    with env.sessions() as session:
        campaign = queries.get_campaign(session, campaign_id)
        draft = _stored_draft(env, campaign)  # a stored issue that no longer parses fails before any change
        started = {"started_at": env.now(), "status_reason": None}
        action = CampaignAction.START
        if not ledger.set_status(
            session, campaign_id, action, CampaignStatus.SENDING, only_from=only_from, **started
        ):
            session.refresh(campaign)
            raise _conflict(campaign_id, campaign.status, action)
        counts = _audience_counts(session, draft.issue, draft.audience)
        store_renderings(session, campaign_id, draft.issue, env.brand, env.registry, counts)
        session.commit()
    return _fill_stepwise(env, campaign_id, draft.issue)


def _fill_stepwise(env: AppEnv, campaign_id: int, issue: Issue) -> int:
    return fill_ledger_stepwise(
        env.sessions,
        campaign_id,
        issue,
        env.brand,
        enqueue=env.enqueue,
        clock=env.clock,
        registry=env.registry,
        batch_size=env.settings.batch_size,
        insert_chunk=env.settings.fill_chunk,
    )


def _requeue_stepwise(env: AppEnv, campaign_id: int) -> int:
    """Enqueue every row still queued (after committing their new queued time)."""
    with env.transaction() as session:
        ids = ledger.queued_ids(session, campaign_id, now=env.now())
    ledger.enqueue_ids(campaign_id, ids, env.enqueue, env.settings.batch_size)
    return len(ids)


def send_batch_stepwise(env: AppEnv, campaign_id: int, delivery_ids: Sequence[int]) -> BatchReport:
    """Send one batch of ledger rows: a worker's task, or (embedded mode) ``AppEnv.enqueue`` itself."""
    return send_claimed_batch_stepwise(env.send_context(), campaign_id, delivery_ids)


def pause(session: Session, campaign_id: int, reason: str = "paused by an operator") -> CampaignInfo:
    """Stop sending: workers give their unsent rows back; resume continues where it stopped."""
    return _transition(
        session, campaign_id, CampaignAction.PAUSE, CampaignStatus.PAUSED, status_reason=reason
    )


@dataclass(frozen=True)
class Resumption:
    """What resuming a campaign still has to do once its status has changed (``continue_stepwise``)."""

    campaign_id: int
    send: bool  # False: paused before its time, it waits for its schedule again
    rest_of_audience: Issue | None  # its ledger fill never finished: fill the rest from this issue


def resume(session: Session, env: AppEnv, campaign_id: int) -> Resumption:
    """The status change of a resume (paused -> sending, or -> scheduled for one paused before its
    time), or ConflictError; a campaign whose ledger fill stopped while sending needs no change. The
    stored issue is parsed first, so a bad one changes nothing. The caller commits, then
    ``continue_stepwise`` re-queues and fills."""
    campaign = queries.get_campaign(session, campaign_id)
    status = campaign.status
    unfinished = not campaign.queued_all and status in (CampaignStatus.SENDING, CampaignStatus.PAUSED)
    issue = _stored_draft(env, campaign).issue if unfinished else None
    action = CampaignAction.RESUME
    if status == CampaignStatus.PAUSED and campaign.started_at is None and campaign.scheduled_at:
        # paused before its time: start_due starts it (at once if its time has passed meanwhile)
        ledger.set_status(session, campaign_id, action, CampaignStatus.SCHEDULED, status_reason=None)
        return Resumption(campaign_id, False, None)
    if status == CampaignStatus.PAUSED:
        if not ledger.set_status(
            session, campaign_id, action, CampaignStatus.SENDING, status_reason=None, consecutive_failures=0
        ):
            raise _conflict(campaign_id, status, action)
    elif not (unfinished and status == CampaignStatus.SENDING):
        raise ConflictError(
            f"campaign {campaign_id} is {status}; only a paused campaign, or one whose ledger fill "
            "stopped, can resume"
        )
    return Resumption(campaign_id, True, issue)


def continue_stepwise(env: AppEnv, resumption: Resumption) -> int:
    """Every row still queued back on the queue, then the rest of the audience (after the highest
    subscriber id in the ledger) when the fill never finished. Returns how many rows were queued."""
    if not resumption.send:
        return 0
    queued = _requeue_stepwise(env, resumption.campaign_id)
    if resumption.rest_of_audience is not None:
        queued += _fill_stepwise(env, resumption.campaign_id, resumption.rest_of_audience)
    return queued


def resume_stepwise(env: AppEnv, campaign_id: int) -> int:
    """``resume`` committed, then ``continue_stepwise``: returns how many rows were queued."""
    with env.transaction() as session:
        resumption = resume(session, env, campaign_id)
    return continue_stepwise(env, resumption)


@dataclass(frozen=True)
class Retry:
    campaign_id: int
    row_ids: tuple[int, ...]  # rows queued again
    by_cause: dict[str, int]  # of those, how many per failure cause
    send: bool  # the campaign sends now (it was done or sending); a paused one sends them at its resume


def retry_failed(
    session: Session,
    campaign_id: int,
    *,
    causes: Sequence[str] = (),
    include_unknown: bool = False,
    now: datetime,
) -> Retry:
    """Queue a campaign's failed rows again (those of the given failure ``causes`` only, when given; the
    ``unknown`` ones too with ``include_unknown``: they may reach their reader twice). A done campaign
    sends again; a paused one keeps them for its resume. The caller commits, then
    ``continue_retry_stepwise``. Readers unsubscribed or suppressed since are skipped at send time."""
    campaign = queries.get_campaign(session, campaign_id)
    action = CampaignAction.RETRY
    if not campaign_targets(action, campaign.status):
        raise _conflict(campaign_id, campaign.status, action)
    statuses = [DeliveryStatus.FAILED] + ([DeliveryStatus.UNKNOWN] if include_unknown else [])
    if not queries.count_outcomes(session, campaign_id, statuses, causes=causes):
        return Retry(campaign_id, (), {}, False)
    (to,) = campaign_targets(action, campaign.status)
    # the status first: the conditional update locks the campaign, so a worker cannot finish it between
    # the check above and the rows going back
    values: dict[str, Any] = {"consecutive_failures": 0}
    if to == CampaignStatus.SENDING:
        values |= {"finished_at": None, "status_reason": None}
    if not ledger.set_status(session, campaign_id, action, to, only_from=(campaign.status,), **values):
        raise _conflict(campaign_id, queries.get_campaign(session, campaign_id).status, action)
    ids, by_cause = ledger.requeue_outcomes(session, campaign_id, statuses, causes=causes, now=now)
    return Retry(campaign_id, tuple(ids), by_cause, to == CampaignStatus.SENDING)


def continue_retry_stepwise(env: AppEnv, retry: Retry) -> int:
    """Hand the retried rows to the senders (embedded: send them here). Returns how many."""
    if not retry.send:
        return 0
    ledger.enqueue_ids(retry.campaign_id, list(retry.row_ids), env.enqueue, env.settings.batch_size)
    return len(retry.row_ids)


def cancel(session: Session, campaign_id: int, reason: str = "cancelled by an operator") -> int:
    """Stop for good: queued rows become skipped (workers skip the rows they hold). Returns how many."""
    campaign = queries.get_campaign(session, campaign_id)
    action = CampaignAction.CANCEL
    if not ledger.set_status(session, campaign_id, action, CampaignStatus.CANCELLED, status_reason=reason):
        raise _conflict(campaign_id, campaign.status, action)
    return ledger.skip_queued(session, campaign_id, "campaign cancelled")


def start_due_stepwise(env: AppEnv) -> list[int]:
    """Start every scheduled campaign whose time has come, rendering from its stored Markdown now.
    Overlapping runs (two beats, cron) are safe: the scheduled -> sending UPDATE lets one of them claim
    each campaign. One that cannot start keeps its schedule and says why. Returns the ids started."""
    with env.sessions() as session:
        due = queries.due_campaign_ids(session, env.now())
    started = []
    for campaign_id in due:
        try:
            _start_stepwise(env, campaign_id, only_from=(CampaignStatus.SCHEDULED,))
        except ConflictError:
            continue  # another run claimed it first, or it was cancelled meanwhile
        except NewsletterError as exc:
            log.error("scheduled campaign %s cannot start: %s", campaign_id, exc)
            with env.transaction() as session:
                queries.note_reason(
                    session, campaign_id, f"cannot start: {exc}", while_in=CampaignStatus.SCHEDULED
                )
            continue
        started.append(campaign_id)
    return started


@dataclass(frozen=True)
class ReapReport:
    resent: int  # rows of vanished workers queued again (never attempted, or in doubt under resend)
    unknown: int  # rows of vanished workers marked unknown (in doubt)
    requeued: int  # queued rows whose task was lost, put back on the queue
    fills_resumed: tuple[int, ...]  # campaigns whose dead ledger fill was taken over
    recovered: int = 0  # rows of vanished workers their send journal shows sent: recorded sent


def reap_stepwise(env: AppEnv) -> ReapReport:
    """Resolve the rows of vanished workers by their send journals (sent, never attempted, in doubt: by
    ``on_lost_send``), re-enqueue lost tasks, and continue ledger fills whose process died: what beat
    runs every half lease, ``campaigns reap`` by hand."""
    settings = env.settings
    now = env.now()
    expired = now - timedelta(seconds=settings.lease_seconds)
    journal = make_journal(settings)
    with env.sessions() as session:
        unfinished = ledger.unfinished_campaigns(session)
    resent = unknown = requeued = recovered = 0
    for campaign_id, status in unfinished:
        with env.transaction() as session:
            reaped = ledger.reap_campaign(
                session, campaign_id, status, expired=expired, policy=settings.on_lost_send, now=now,
                progress_of=journal.read,
            )  # fmt: skip
            again: list[int] = []
            if status == CampaignStatus.SENDING:  # a paused campaign's rows go out when it resumes
                again = ledger.queued_ids(session, campaign_id, now=now) if reaped.idle else reaped.resent
        journal.forget(reaped.claims)  # applied and committed
        ledger.enqueue_ids(campaign_id, again, env.enqueue, settings.batch_size)
        resent += len(reaped.resent)
        unknown += reaped.unknown
        recovered += reaped.recovered
        requeued += len(again) if reaped.idle else 0
    fills = tuple(_resume_stalled_fills_stepwise(env, now))
    return ReapReport(resent, unknown, requeued, fills, recovered)


def _resume_stalled_fills_stepwise(env: AppEnv, now: datetime) -> list[int]:
    lease = env.settings.lease_seconds
    with env.sessions() as session:
        candidates = queries.stalled_fill_ids(session, lease_seconds=lease, now=now)
    resumed = []
    for campaign_id in candidates:
        with env.transaction() as session:
            if not queries.take_over_fill(session, campaign_id, lease_seconds=lease, now=now):
                continue  # another reaper took it
            campaign = queries.get_campaign(session, campaign_id)
            try:
                issue = _stored_draft(env, campaign).issue
            except NewsletterError as exc:  # the stored issue no longer parses (a topic was removed)
                log.error("campaign %s: cannot resume its ledger fill: %s", campaign_id, exc)
                continue
        # the campaign's status is left alone: paused meanwhile, its new rows wait for `resume`
        log.warning("campaign %s: its ledger fill stalled; resuming it", campaign_id)
        _requeue_stepwise(env, campaign_id)
        _fill_stepwise(env, campaign_id, issue)
        resumed.append(campaign_id)
    return resumed


# --- watching --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Progress:
    campaign_id: int
    status: str
    reason: str | None
    total: int
    sent: int
    failed: int
    skipped: int
    unknown: int
    fill_complete: bool
    by_status: dict[str, int]  # ledger rows per status (exact progress only)
    rate: float  # messages per second over the last minute (exact progress only)
    eta_seconds: float | None
    bounced: int = 0  # permanent bounces applied from SES feedback (campaign health)
    complained: int = 0

    @property
    def bounce_rate(self) -> float:
        return self.bounced / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complained / self.sent if self.sent else 0.0

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.skipped + self.unknown

    @property
    def actions(self) -> tuple[CampaignAction, ...]:
        return campaign_actions(self.status)


def progress(session: Session, campaign_id: int, *, now: datetime, exact: bool = True) -> Progress:
    """Counters for a progress bar (``exact=False``: the campaign row only, cheap) or for
    ``campaigns show`` and the dashboard (ledger counts by status, rate over the last minute, ETA)."""
    campaign = queries.get_campaign(session, campaign_id)
    session.refresh(campaign)
    by_status: dict[str, int] = {}
    rate = 0.0
    if exact:
        by_status = queries.count_by_status(session, campaign_id)
        window = 60.0
        if campaign.started_at is not None:
            window = max(1.0, min(60.0, (now - campaign.started_at).total_seconds()))
        rate = queries.recent_sends(session, campaign_id, now - timedelta(seconds=window)) / window
    c = campaign
    remaining = c.total - (c.sent + c.failed + c.skipped + c.unknown)
    eta = remaining / rate if rate > 0 and c.status == CampaignStatus.SENDING else None
    return Progress(
        c.id, c.status, c.status_reason, c.total, c.sent, c.failed, c.skipped, c.unknown, c.queued_all,
        by_status, rate, eta, c.bounced, c.complained,
    )  # fmt: skip


def run_and_watch(
    env: AppEnv,
    campaign_id: int,
    work: Callable[[], object],
    on_progress: Callable[[Progress], None],
    *,
    poll: float = 0.3,
) -> Progress:
    """Run ``work`` (a start, a resume) in a background thread and report the campaign's progress until
    it settles. Embedded mode sends inside ``work``: watching ends with it. With workers, ``work`` only
    fills the queue: watching goes on until the campaign is done, paused or cancelled.

    When ``work`` fails (a lost database, a full disk, a bug), watching stops at once: in embedded mode
    nothing else would send, so a campaign still sending is paused with the cause as its reason
    (``campaigns show`` says it, ``campaigns resume`` continues), and SendingStopped says so here. A
    refusal before anything changed (ConflictError, an input error) is raised as it is."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the watching thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"campaign-{campaign_id}", daemon=True)
    thread.start()
    lost = 0
    while True:
        try:
            with env.sessions() as session:
                state = progress(session, campaign_id, now=env.now(), exact=False)
        except Exception as exc:
            # a connection the server dropped fails one look (the pool replaces it); the work decides
            # whether the send goes on, so watching waits for it rather than ending on a lost poll
            lost += 1
            if not is_database_outage(exc):
                raise
            if not thread.is_alive():
                if errors:  # the work failed too: say so, as when the look succeeds
                    raise _stopped_stepwise(env, campaign_id, errors[0]) from errors[0]
                if lost > WATCH_RETRIES:
                    raise
            time.sleep(poll)
            continue
        lost = 0
        on_progress(state)
        if not thread.is_alive():
            if errors:
                raise _stopped_stepwise(env, campaign_id, errors[0]) from errors[0]
            if not env.distributed or state.status != CampaignStatus.SENDING:
                break
        time.sleep(poll)
    with env.sessions() as session:
        return progress(session, campaign_id, now=env.now())


def _stopped_stepwise(env: AppEnv, campaign_id: int, cause: BaseException) -> BaseException:
    """What to raise when the sending work failed; pauses an embedded campaign left sending."""
    if isinstance(cause, (ConflictError, InputError, KeyboardInterrupt)):
        return cause  # refused before any change, or interrupted by the user
    what = " ".join(f"{type(cause).__name__}: {cause}".split())[:500]
    if env.distributed:
        return SendingStopped(
            f"campaign {campaign_id}: filling its ledger stopped ({what}); the workers go on with what is "
            f"queued, and the reaper continues the fill after a lease (or: newsletter campaigns resume "
            f"{campaign_id})"
        )
    try:
        with env.transaction() as session:
            paused = ledger.set_status(
                session, campaign_id, CampaignAction.PAUSE, CampaignStatus.PAUSED,
                only_from=(CampaignStatus.SENDING,),
                status_reason=f"the sending process stopped: {what}",
            )  # fmt: skip
            status = progress(session, campaign_id, now=env.now(), exact=False).status
        state = "it is paused" if paused else f"it is {status}"
    except Exception as exc:  # the database itself may be what failed
        state = f"it could not even be marked paused ({' '.join(str(exc).split())[:200]})"
    return SendingStopped(
        f"campaign {campaign_id}: sending stopped ({what}); {state}: newsletter campaigns resume "
        f"{campaign_id} continues"
    )


def check_finished(state: Progress) -> None:
    """SendingStopped when a campaign that was being followed ended paused or cancelled, not done."""
    if state.status not in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED):
        return
    why = f": {state.reason}" if state.reason else ""
    then = f"; newsletter campaigns resume {state.campaign_id} continues" if state.status == "paused" else ""
    raise SendingStopped(f"campaign {state.campaign_id} ended {state.status}{why}{then}")


# --- reading ---------------------------------------------------------------------------------------
def list_campaigns(
    session: Session, *, status: str | None = None, before_id: int | None = None, limit: int = 20
) -> list[CampaignInfo]:
    """Newest first; pass the last id of a page as ``before_id`` for the next one."""
    if not 1 <= limit <= MAX_PAGE:
        raise InputError(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    if status is not None and status not in tuple(CampaignStatus):
        raise InputError(f"unknown status {status!r} (one of {', '.join(CampaignStatus)})")
    if before_id is not None and not 0 < before_id <= 2**63 - 1:
        raise InputError(f"before must be a campaign id, not {before_id}")
    rows = queries.campaign_page(session, status=status, before_id=before_id, limit=limit)
    return [CampaignInfo.of(c) for c in rows]


@dataclass(frozen=True)
class CampaignDetail:
    info: CampaignInfo
    progress: Progress
    segments: tuple[SegmentInfo, ...]
    failures_by_code: dict[str, int]


def detail(session: Session, campaign_id: int, *, now: datetime) -> CampaignDetail:
    """Everything ``campaigns show`` and a campaign page show."""
    campaign = queries.get_campaign(session, campaign_id)
    state = progress(session, campaign_id, now=now)
    segments = tuple(
        SegmentInfo(
            s.segment,
            s.recipients,
            s.subject,
            tuple(_json_list(s.section_headings)),
            len(s.html.encode()),
            len(s.text.encode()),
        )
        for s in queries.segments_of(session, campaign_id)
    )
    return CampaignDetail(
        CampaignInfo.of(campaign), state, segments, queries.failures_by_code(session, campaign_id)
    )


def _json_list(text: str) -> list[str]:
    import json

    value = json.loads(text or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True)
class SentRow:
    delivery_id: int
    email: str
    message_id: str


def sent_sample(session: Session, campaign_id: int, limit: int = 2) -> list[SentRow]:
    """The first ``limit`` sent rows (the demo feeds feedback for them)."""
    return [
        SentRow(d.id, d.email, d.message_id or "") for d in queries.sent_rows(session, campaign_id, limit)
    ]


# --- test sends ------------------------------------------------------------------------------------
def send_test(env: AppEnv, draft: Draft, addresses: Collection[str]) -> list[tuple[frozenset[str], str]]:
    """One message per segment of the current audience to each given address, through the draft's
    transport and its rate limiter; no campaign, no ledger rows. Returns (segment, address) sent."""
    if not addresses:
        raise InputError("give at least one address to send the test to")
    checked = [normalise_address(address).email for address in addresses]
    with env.sessions() as session:
        counts = _audience_counts(session, draft.issue, draft.audience)
    segments = list(counts) or [draft.issue.topics]
    renderings = render_segments(draft.issue, segments, env.brand, registry=env.registry)
    return send_test_messages(env.send_context(), renderings, checked, transport_name=draft.transport)
