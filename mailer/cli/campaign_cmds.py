"""``newsletter campaigns list|show|plan|pause|resume|cancel|reap|start-due``: steer stored campaigns, as a
thin client of the campaign services
(mailer.services.lifecycle, .listing, .checklist, .watch, .upkeep)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from mailer.cli.app import app, console, environment, err_console, say
from mailer.cli.output import (
    ProgressBar,
    campaign_summary,
    require_finished,
    segments_table,
    show_plan,
    when,
)
from mailer.services import checklist, lifecycle, listing, upkeep, watch

campaigns_app = typer.Typer(help="List and steer campaigns.", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")

CampaignId = Annotated[int, typer.Argument(help="Campaign id", min=1, max=2**63 - 1)]


@campaigns_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="Newest N campaigns (1-1000)")] = 20,
    status: Annotated[str | None, typer.Option(help="Only campaigns in this status")] = None,
    before: Annotated[int | None, typer.Option(help="Older than this id (the next page)")] = None,
) -> None:
    """The newest campaigns with their status and counters."""
    with environment().transaction() as session:
        rows = listing.list_campaigns(session, status=status, before_id=before, limit=limit)
    table = Table("id", "status", "subject", "created", "scheduled", "total", "sent", "failed", "skipped")
    for c in rows:
        counts = (f"{n:,}" for n in (c.total, c.sent, c.failed, c.skipped))
        table.add_row(str(c.id), c.status, c.subject, when(c.created_at), when(c.scheduled_at), *counts)
    console.print(table)


@campaigns_app.command("show")
def show_command(campaign_id: CampaignId) -> None:
    """Counts by status, failures by cause, segments, rate and ETA of one campaign."""
    env = environment()
    with env.transaction() as session:
        found = listing.detail(session, campaign_id, now=env.now())
    info, state = found.info, found.progress
    say(f"campaign {info.id}: {info.subject}")
    say(f"issue {info.source} (sha256 {info.issue_hash[:12]}), transport {info.transport}")
    say(f"status {state.status}" + (f": {state.reason}" if state.reason else ""))
    if info.scheduled_at is not None:
        say(f"scheduled for {when(info.scheduled_at)}")
    if not info.fill_complete and state.status in ("sending", "paused"):
        say(
            f"audience not fully in the ledger yet ({state.total:,} rows); if the send that started it "
            f"crashed: newsletter campaigns resume {campaign_id}"
        )
    table = Table("status", "rows")
    for status in ("queued", "sending", "sent", "failed", "skipped", "unknown"):
        table.add_row(status, f"{state.by_status.get(status, 0):,}")
    console.print(table)
    if found.failures_by_code:
        causes = ", ".join(f"{code} {count:,}" for code, count in found.failures_by_code.items())
        say(f"failures by cause: {causes} (newsletter campaigns retry-failed {campaign_id} [--cause CAUSE])")
    eta = f"{state.eta_seconds:.0f} s" if state.eta_seconds is not None else "-"
    say(f"rate {state.rate:.1f}/s over the last minute, ETA {eta}")
    say(
        f"feedback: {state.bounced:,} bounces ({state.bounce_rate:.2%}), {state.complained:,} complaints "
        f"({state.complaint_rate:.2%}) of {state.sent:,} sent"
    )
    if state.actions:
        say(f"actions: {', '.join(state.actions)}")
    segments_table(found.segments)


@campaigns_app.command("plan")
def plan_command(campaign_id: CampaignId) -> None:
    """The dry run of a stored campaign: segments it would render now, readers in each, the checks."""
    plan = checklist.plan_campaign(environment(), campaign_id)
    show_plan(plan)
    say(
        f"{plan.recipients:,} recipients in {len(plan.segments)} segments; "
        + ("ready" if plan.ready else "NOT ready")
    )


@campaigns_app.command("pause")
def pause_command(campaign_id: CampaignId) -> None:
    """Stop sending; workers give their unsent rows back. Resume continues where it stopped."""
    with environment().transaction() as session:
        lifecycle.pause(session, campaign_id)
    say(f"campaign {campaign_id} paused")


@campaigns_app.command("resume")
def resume_command(campaign_id: CampaignId) -> None:
    """Continue a paused campaign (every row still queued goes back on the queue), or one whose send
    crashed while filling the ledger (the rest of the audience is added, then sent)."""
    env = environment()
    with env.transaction() as session:  # a campaign that cannot resume says so before any progress bar
        resumption = lifecycle.resume(session, env, campaign_id)
    if not resumption.send:
        say(f"campaign {campaign_id} waits for its scheduled time again")
        return
    queued: list[int] = []
    with ProgressBar() as bar:
        state = watch.run_and_watch(
            env, campaign_id, lambda: queued.append(lifecycle.continue_stepwise(env, resumption)), bar
        )
    say(f"campaign {campaign_id} resumed: {sum(queued):,} rows queued")
    require_finished(state)


@campaigns_app.command("retry-failed")
def retry_failed_command(
    campaign_id: CampaignId,
    cause: Annotated[
        list[str] | None,
        typer.Option(
            help="Only rows that failed with this cause (as `campaigns show` lists them); repeatable"
        ),
    ] = None,
    include_unknown: Annotated[
        bool,
        typer.Option(help="Also the rows in doubt (`unknown`): their readers may get the issue twice"),
    ] = False,
) -> None:
    """Send a campaign's failed rows again (after an SES outage, a network failure); readers who have
    unsubscribed or been suppressed since are skipped."""
    env = environment()
    with env.transaction() as session:
        retry = lifecycle.retry_failed(
            session, campaign_id, causes=cause or (), include_unknown=include_unknown, now=env.now()
        )
    if not retry.row_ids:
        what = "failed" + (" or unknown" if include_unknown else "")
        say(
            f"campaign {campaign_id} has no {what} rows"
            + (f" with cause {', '.join(cause)}" if cause else "")
        )
        return
    causes = ", ".join(f"{name} {count:,}" for name, count in sorted(retry.by_cause.items()))
    say(f"campaign {campaign_id}: {len(retry.row_ids):,} rows queued again ({causes})")
    if not retry.send:
        say(
            f"campaign {campaign_id} is paused: they go out when it resumes "
            f"(newsletter campaigns resume {campaign_id})"
        )
        return
    with ProgressBar() as bar:
        state = watch.run_and_watch(
            env, campaign_id, lambda: lifecycle.continue_retry_stepwise(env, retry), bar
        )
    require_finished(state)


@campaigns_app.command("cancel")
def cancel_command(campaign_id: CampaignId) -> None:
    """Stop for good; rows not sent yet are marked skipped."""
    with environment().transaction() as session:
        count = lifecycle.cancel(session, campaign_id)
    say(f"campaign {campaign_id} cancelled; {count:,} queued rows skipped")


@campaigns_app.command("reap")
def reap_command() -> None:
    """Resolve rows a killed worker left in 'sending' past the lease by its send journal (sent; never
    attempted: queued again; in doubt: settings.on_lost_send), re-queue lost tasks, and continue ledger
    fills whose process died (what beat does every half lease)."""
    report = upkeep.reap_stepwise(environment())
    say(
        f"lost rows: {report.recovered} sent (from the send journal), {report.resent} queued again, "
        f"{report.unknown} marked unknown; {report.requeued} queued rows of lost tasks re-queued"
    )
    for campaign_id in report.fills_resumed:
        say(f"campaign {campaign_id}: resumed its stalled ledger fill")


@campaigns_app.command("start-due")
def start_due_command() -> None:
    """Start every scheduled campaign whose time has come (for cron in embedded mode; beat does this
    with workers). Overlapping runs start each campaign once."""
    env = environment()
    started = upkeep.start_due_stepwise(env)
    if not started:
        say("no scheduled campaign is due")
    for campaign_id in started:
        say(f"started scheduled campaign {campaign_id}")
        if not env.distributed:
            with env.transaction() as session:
                campaign_summary(watch.progress(session, campaign_id, now=env.now()))
    if started and env.distributed:
        err_console.print("the workers send them: newsletter campaigns show ID", highlight=False)
