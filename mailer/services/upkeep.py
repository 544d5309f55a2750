"""What runs on a timer (celery beat, or cron in embedded mode): starting the scheduled campaigns whose
time has come, and the reaper, which resolves the sends of vanished workers, re-enqueues lost tasks and
continues ledger fills whose process died.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.errors import ConflictError, NewsletterError
from mailer.sending import ledger, queries, reaping
from mailer.sending.journal import make_journal
from mailer.sending.states import CampaignStatus
from mailer.services import lifecycle
from mailer.services.drafts import stored_draft
from mailer.services.env import AppEnv

__all__ = ["ReapReport", "reap_stepwise", "start_due_stepwise"]

log = logging.getLogger(__name__)


def start_due_stepwise(env: AppEnv) -> list[int]:
    """Start every scheduled campaign whose time has come, rendering from its stored Markdown now.
    Overlapping runs (two beats, cron) are safe: the scheduled -> sending UPDATE lets one of them claim
    each campaign. One that cannot start keeps its schedule and says why. Returns the ids started.

    The pre-send checklist is not run again here: ``lifecycle.schedule`` ran it (or logged its override)
    when the campaign was scheduled, and nobody is there to override it now."""
    with env.sessions() as session:
        due = queries.due_campaign_ids(session, env.now())
    started = []
    for campaign_id in due:
        try:
            lifecycle.start_scheduled_stepwise(env, campaign_id)
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
        unfinished = reaping.unfinished_campaigns(session)
    resent = unknown = requeued = recovered = 0
    for campaign_id, status in unfinished:
        with env.transaction() as session:
            reaped = reaping.reap_campaign(
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
                issue = stored_draft(env, campaign).issue
            except NewsletterError as exc:  # the stored issue no longer parses (a topic was removed)
                log.error("campaign %s: cannot resume its ledger fill: %s", campaign_id, exc)
                continue
        # the campaign's status is left alone: paused meanwhile, its new rows wait for `resume`
        log.warning("campaign %s: its ledger fill stalled; resuming it", campaign_id)
        lifecycle.requeue_stepwise(env, campaign_id)
        lifecycle.fill_stepwise(env, campaign_id, issue)
        resumed.append(campaign_id)
    return resumed
