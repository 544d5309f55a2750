"""Watching a campaign: its progress counters (for a progress bar, ``campaigns show`` and the dashboard),
and running a start or a resume in the background while reporting progress until the campaign settles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mailer.errors import ConflictError, InputError, SendingStopped, is_database_outage
from mailer.sending import ledger, queries
from mailer.sending.states import CampaignAction, CampaignStatus, campaign_actions
from mailer.services.env import AppEnv

__all__ = ["FINAL_STATUSES", "Progress", "check_finished", "progress", "run_and_watch"]

FINAL_STATUSES = (CampaignStatus.DONE, CampaignStatus.PAUSED, CampaignStatus.CANCELLED)
WATCH_RETRIES = 20  # looks at a campaign that may fail on a lost connection once its work has ended


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
