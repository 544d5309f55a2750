"""``newsletter campaigns list|show|pause|resume|cancel|reap|start-due``: steer stored campaigns."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from mailer import tasks
from mailer.cli.app import app, console, settings
from mailer.cli.send_cmds import _say, _segment_label, _segments_table, _summary, follow
from mailer.database import session_factory
from mailer.rendering.render import Brand
from mailer.sending import campaigns
from mailer.sending.models import Campaign, SegmentRendering
from mailer.topics import load_registry

campaigns_app = typer.Typer(help="List and steer campaigns.", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@campaigns_app.command("list")
def list_command(limit: Annotated[int, typer.Option(help="Newest N campaigns")] = 20) -> None:
    """The newest campaigns with their status and counters."""
    with session_factory(settings())() as session:
        rows = list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))
    table = Table("id", "status", "subject", "created", "scheduled", "total", "sent", "failed", "skipped")
    for c in rows:
        table.add_row(
            str(c.id),
            c.status,
            c.subject,
            when(c.created_at),
            when(c.scheduled_at),
            *(f"{n:,}" for n in (c.total, c.sent, c.failed, c.skipped)),
        )
    console.print(table)


@campaigns_app.command("show")
def show_command(campaign_id: Annotated[int, typer.Argument(help="Campaign id")]) -> None:
    """Counts by status, segments, rate and ETA of one campaign."""
    with session_factory(settings())() as session:
        campaign = campaigns.get_campaign(session, campaign_id)
        state = campaigns.progress(session, campaign_id)
        segments = list(
            session.scalars(select(SegmentRendering).where(SegmentRendering.campaign_id == campaign_id))
        )
    _say(f"campaign {campaign.id}: {campaign.subject}")
    _say(f"issue {campaign.issue_source} (sha256 {campaign.issue_hash[:12]}), transport {campaign.transport}")
    _say(f"status {state.status}" + (f": {state.reason}" if state.reason else ""))
    if campaign.scheduled_at is not None:
        _say(f"scheduled for {when(campaign.scheduled_at)}")
    if not campaign.queued_all and state.status in ("sending", "paused"):
        _say(
            f"audience not fully in the ledger yet ({state.total:,} rows); if the send that started it "
            f"crashed: newsletter campaigns resume {campaign_id}"
        )
    table = Table("status", "rows")
    for status in ("queued", "sending", "sent", "failed", "skipped", "unknown"):
        table.add_row(status, f"{state.by_status.get(status, 0):,}")
    console.print(table)
    eta = f"{state.eta_seconds:.0f} s" if state.eta_seconds is not None else "-"
    _say(f"rate {state.rate:.1f}/s over the last minute, ETA {eta}")
    _segments_table([(_segment_label(s.segment), s.recipients, len(s.html.encode())) for s in segments])


@campaigns_app.command("pause")
def pause_command(campaign_id: Annotated[int, typer.Argument(help="Campaign id")]) -> None:
    """Stop sending; workers give their unsent rows back. Resume continues where it stopped."""
    with session_factory(settings())() as session:
        campaigns.pause(session, campaign_id)
    _say(f"campaign {campaign_id} paused")


@campaigns_app.command("resume")
def resume_command(campaign_id: Annotated[int, typer.Argument(help="Campaign id")]) -> None:
    """Continue a paused campaign (every row still queued goes back on the queue), or one whose send
    crashed while filling the ledger (the rest of the audience is added, then sent)."""
    config = settings()
    tasks.use_settings(config)
    with session_factory(config)() as session:
        count = campaigns.resume(
            session,
            campaign_id,
            enqueue=tasks.enqueue,
            batch_size=config.batch_size,
            brand=Brand.from_settings(config),
            registry=load_registry(config.registry_file),
            default_lang=config.default_lang,
        )
    _say(f"campaign {campaign_id} resumed: {count:,} rows queued")
    if config.broker_url:
        _summary(follow(config, campaign_id))
    else:
        with session_factory(config)() as session:
            _summary(campaigns.progress(session, campaign_id))


@campaigns_app.command("cancel")
def cancel_command(campaign_id: Annotated[int, typer.Argument(help="Campaign id")]) -> None:
    """Stop for good; rows not sent yet are marked skipped."""
    with session_factory(settings())() as session:
        count = campaigns.cancel(session, campaign_id)
    _say(f"campaign {campaign_id} cancelled; {count:,} queued rows skipped")


@campaigns_app.command("reap")
def reap_command() -> None:
    """Resolve rows a killed worker left in 'sending' past the lease (settings.on_lost_send), re-queue
    lost tasks, and continue ledger fills whose process died (what beat does every half lease)."""
    config = settings()
    tasks.use_settings(config)
    report, fills = tasks.run_reaper(config)
    _say(f"resent {report.resent}, marked unknown {report.unknown}, re-queued {report.requeued}")
    for campaign_id in fills:
        _say(f"campaign {campaign_id}: resumed its stalled ledger fill")


@campaigns_app.command("start-due")
def start_due_command() -> None:
    """Start every scheduled campaign whose time has come (for cron in embedded mode; beat does this
    with workers). Overlapping runs start each campaign once."""
    config = settings()
    tasks.use_settings(config)
    started = campaigns.start_due(
        session_factory(config),
        Brand.from_settings(config),
        load_registry(config.registry_file),
        enqueue=tasks.enqueue,
        default_lang=config.default_lang,
        batch_size=config.batch_size,
    )
    if not started:
        _say("no scheduled campaign is due")
    for campaign_id in started:
        _say(f"started scheduled campaign {campaign_id}")
        if not config.broker_url:
            with session_factory(config)() as session:
                _summary(campaigns.progress(session, campaign_id))
