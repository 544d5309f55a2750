"""A campaign's life: create, schedule, start, pause, resume, retry its failed rows, cancel. Every status
change consults the transition table (mailer/sending/states.py); a start always renders from the
campaign's stored Markdown.

Unit-of-work services take a ``Session`` (the caller commits: ``env.transaction()`` or the web request);
``*_stepwise`` services take the ``AppEnv`` and commit as they go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from mailer.errors import ConflictError, InputError
from mailer.rendering.issue import Issue
from mailer.sending import ledger, queries
from mailer.sending.fill import fill_ledger_stepwise, store_renderings
from mailer.sending.sender import BatchReport
from mailer.sending.sender import send_batch_stepwise as send_claimed_batch_stepwise
from mailer.sending.states import (
    CampaignAction,
    CampaignStatus,
    DeliveryStatus,
    campaign_sources,
    campaign_targets,
)
from mailer.services import checklist
from mailer.services.checklist import Plan
from mailer.services.drafts import Draft, audience_counts, stored_draft
from mailer.services.env import AppEnv
from mailer.services.listing import CampaignInfo

__all__ = [
    "Resumption",
    "Retry",
    "cancel",
    "check_start",
    "continue_retry_stepwise",
    "continue_stepwise",
    "create",
    "fill_stepwise",
    "pause",
    "requeue_stepwise",
    "resume",
    "resume_stepwise",
    "retry_failed",
    "schedule",
    "schedule_time",
    "send_batch_stepwise",
    "start_scheduled_stepwise",
    "start_stepwise",
]

MAX_SCHEDULE_AHEAD = timedelta(days=366)
EXAMPLE_TIME = "2026-12-01T09:00+08:00"


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


def create(session: Session, draft: Draft, *, now: datetime) -> CampaignInfo:
    """A draft campaign holding the issue's Markdown (``schedule`` or ``check_start`` then ``start_stepwise``
    send it; segments are rendered when it starts: the audience may change until then)."""
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
    return CampaignInfo.of(campaign)


def schedule_time(at: datetime | str, *, now: datetime) -> datetime:
    """When a campaign may be scheduled, whoever asks (``send --at``, the API, a service): a time with a
    UTC offset (text is read as ISO 8601), after ``now`` and at most a year ahead. Returns it in UTC, or
    raises InputError saying which bound it breaks."""
    shown = at.strip() if isinstance(at, str) else at.isoformat()
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(shown)
        except ValueError:
            raise InputError(
                f"the schedule time {shown!r} is not an ISO time such as {EXAMPLE_TIME}"
            ) from None
    if at.tzinfo is None:
        raise InputError(f"the schedule time {shown} has no UTC offset; add one, e.g. {shown}+08:00")
    if at <= now:
        raise InputError(f"the schedule time {shown} is in the past")
    try:
        utc = at.astimezone(UTC)
    except OverflowError:  # the year 9999 with an eastern offset, say
        raise InputError(f"the schedule time {shown} is beyond the calendar") from None
    if utc - now > MAX_SCHEDULE_AHEAD:
        raise InputError(f"the schedule time {shown} is more than a year ahead; schedule it nearer the time")
    return utc


def schedule(
    session: Session, env: AppEnv, campaign_id: int, at: datetime | str, *, override: bool = False
) -> CampaignInfo:
    """A draft campaign scheduled to start at ``at`` (``schedule_time``'s bounds; stored in UTC), once its
    pre-send checklist passes or is overridden: it is checked now, while someone can override it, and not
    again when it falls due (``upkeep.start_due_stepwise``)."""
    when = schedule_time(at, now=env.now())
    _approve(session, env, campaign_id, CampaignAction.SCHEDULE, override=override)
    return _transition(
        session, campaign_id, CampaignAction.SCHEDULE, CampaignStatus.SCHEDULED, scheduled_at=when
    )


def check_start(session: Session, env: AppEnv, campaign_id: int, *, override: bool = False) -> Plan:
    """Whether a campaign may start now, the same for every front end: its status must allow a start
    (ConflictError) and its pre-send checklist must pass, or be overridden, which is logged
    (``checklist.require_ready``). Returns the checklist; ``start_stepwise`` (or a task) then starts it."""
    return _approve(session, env, campaign_id, CampaignAction.START, override=override)


def _approve(
    session: Session, env: AppEnv, campaign_id: int, action: CampaignAction, *, override: bool
) -> Plan:
    campaign = queries.get_campaign(session, campaign_id)
    if not campaign_targets(action, campaign.status):
        raise _conflict(campaign_id, campaign.status, action)
    found = checklist.plan_in(session, env, stored_draft(env, campaign))
    return checklist.require_ready(found, override=override, campaign_id=campaign_id, action=action)


def start_stepwise(env: AppEnv, campaign_id: int) -> int:
    """Start a draft or scheduled campaign: claim it (one conditional UPDATE: two starters never both
    start it), render each segment once from the stored Markdown, stream the audience into the ledger a
    committed chunk at a time and enqueue the batches (embedded mode: send them here). Returns the rows
    queued. The front ends ask ``check_start`` first; the start itself does not judge the content."""
    return _start_stepwise(env, campaign_id, only_from=None)


def start_scheduled_stepwise(env: AppEnv, campaign_id: int) -> int:
    """``start_stepwise`` of a campaign that is still scheduled (ConflictError once it is not: another
    run of start_due claimed it, or it was paused or cancelled meanwhile)."""
    return _start_stepwise(env, campaign_id, only_from=(CampaignStatus.SCHEDULED,))


def _start_stepwise(env: AppEnv, campaign_id: int, *, only_from: tuple[str, ...] | None) -> int:
    with env.sessions() as session:
        campaign = queries.get_campaign(session, campaign_id)
        draft = stored_draft(env, campaign)  # a stored issue that no longer parses fails before any change
        started = {"started_at": env.now(), "status_reason": None}
        action = CampaignAction.START
        if not ledger.set_status(
            session, campaign_id, action, CampaignStatus.SENDING, only_from=only_from, **started
        ):
            session.refresh(campaign)
            raise _conflict(campaign_id, campaign.status, action)
        counts = audience_counts(session, draft.issue, draft.audience)
        store_renderings(session, campaign_id, draft.issue, env.brand, env.registry, counts)
        session.commit()
    return fill_stepwise(env, campaign_id, draft.issue)


def fill_stepwise(env: AppEnv, campaign_id: int, issue: Issue) -> int:
    """Stream the audience (after the highest subscriber id already in the ledger) into the ledger."""
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


def requeue_stepwise(env: AppEnv, campaign_id: int) -> int:
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
    issue = stored_draft(env, campaign).issue if unfinished else None
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
    queued = requeue_stepwise(env, resumption.campaign_id)
    if resumption.rest_of_audience is not None:
        queued += fill_stepwise(env, resumption.campaign_id, resumption.rest_of_audience)
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
