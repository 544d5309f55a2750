"""``newsletter send`` and ``newsletter demo``: thin clients of the campaign services
(mailer.services.drafts, .checklist, .lifecycle, .watch) and .demo.

With a broker configured, ``send`` starts the campaign (segments rendered once, ledger filled, batches on
Redis) and follows the workers' progress; without one (embedded mode) this process sends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table

from mailer import samples
from mailer.cli.app import app, console, environment, err_console, say, warn
from mailer.cli.output import ProgressBar, require_finished, segments_table, show_plan
from mailer.errors import ConflictError, InputError
from mailer.services import checklist, drafts, lifecycle, listing, watch
from mailer.services.demo import (
    DEMO_CERT_NAME,
    DemoStep,
    FedBack,
    Imported,
    Sent,
    Summary,
    demo_settings,
    run_demo_stepwise,
)
from mailer.services.env import AppEnv
from mailer.testing.sns_signer import SnsSigner


def _draft(env: AppEnv, issue_file: Path, *, audience: str, transport: str | None) -> drafts.Draft:
    draft = drafts.read_draft(env, issue_file, audience=audience, transport=transport)
    for warning in draft.issue.warnings:
        warn(f"{issue_file}: {warning}")
    return draft


def start_watched(env: AppEnv, campaign_id: int) -> watch.Progress:
    """Start a created campaign and show a progress bar until it settles (embedded: until sent)."""
    try:
        with ProgressBar() as bar:
            return watch.run_and_watch(
                env, campaign_id, lambda: lifecycle.start_stepwise(env, campaign_id), bar
            )
    except KeyboardInterrupt:
        if env.distributed:
            err_console.print(
                f"stopped following; the workers go on (newsletter campaigns show {campaign_id})"
            )
        raise


@app.command("send")
def send_command(
    issue_file: Annotated[Path, typer.Argument(help="The issue: Markdown with YAML front matter")],
    topics_from_subscribers: Annotated[
        bool, typer.Option("--topics-from-subscribers", help="Each subscriber gets their topics (default)")
    ] = False,
    all_sections: Annotated[bool, typer.Option("--all", help="Everyone gets every section")] = False,
    transport: Annotated[str | None, typer.Option("--transport", help="ses, smtp or file [settings]")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show segments, counts and checks; send nothing")
    ] = False,
    test_to: Annotated[
        list[str] | None, typer.Option("--test-to", help="Send one message per segment to ADDR only")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Schedule for this ISO time with offset, e.g. 2026-12-01T09:00+08:00"),
    ] = None,
    override: Annotated[
        bool,
        typer.Option("--override", help="Send (or schedule) although a pre-send check fails; logged"),
    ] = False,
) -> None:
    """Send an issue to the subscribers: render once per segment, then deliver through the workers."""
    if topics_from_subscribers and all_sections:
        raise InputError("use either --topics-from-subscribers or --all, not both")
    if (at is not None or override) and (dry_run or test_to is not None):
        raise InputError("--at and --override are for a campaign; neither goes with --dry-run or --test-to")
    env = environment()
    # the one rule of schedule times, asked before the issue is read
    scheduled_at = lifecycle.schedule_time(at, now=env.now()) if at is not None else None
    draft = _draft(env, issue_file, audience="all" if all_sections else "subscribers", transport=transport)
    if dry_run:
        plan = checklist.plan(env, draft)
        show_plan(plan)
        say(f"dry run: {plan.recipients} recipients, {len(plan.segments)} segments; nothing sent")
        if not plan.ready:
            say("a check fails: send refuses this issue unless given --override")
        return
    if test_to is not None:
        sent = drafts.send_test(env, draft, test_to)
        for segment, address in sent:
            say(f"test message for segment {drafts.segment_label(segment)} -> {address}")
        say(f"{len(sent)} test messages through {draft.transport}; no campaign, no ledger rows")
        return
    campaign = _store_checked(env, draft, scheduled_at, override=override)
    if scheduled_at is not None:
        say(
            f"campaign {campaign.id} scheduled for {scheduled_at:%Y-%m-%d %H:%M} UTC: {draft.issue.title}; "
            "rendered and sent when due (celery beat, or `newsletter campaigns start-due` from cron)"
        )
        return
    how = f"transport {draft.transport}, audience {draft.audience}"
    say(f"campaign {campaign.id}: {draft.issue.title} ({how})")
    require_finished(start_watched(env, campaign.id))


def _store_checked(
    env: AppEnv, draft: drafts.Draft, scheduled_at: datetime | None, *, override: bool
) -> listing.CampaignInfo:
    """The campaign, stored once the rules of a start (or a schedule) allow it, as the API's would be; a
    refusal stores nothing."""
    try:
        with env.transaction() as session:
            campaign = lifecycle.create(session, draft, now=env.now())
            if scheduled_at is None:
                lifecycle.check_start(session, env, campaign.id, override=override)
                return campaign
            return lifecycle.schedule(session, env, campaign.id, scheduled_at, override=override)
    except checklist.ChecklistFailed as refused:
        raise ConflictError(f"{refused}; nothing sent (--override sends it anyway)") from None


@app.command("demo")
def demo_command(
    issue_file: Annotated[
        Path, typer.Option("--issue", help="Issue to send [a sample issue shipped with the package]")
    ] = samples.ISSUE,
    subscribers_csv: Annotated[
        Path, typer.Option("--subscribers", help="CSV to import [sample subscribers]")
    ] = samples.SUBSCRIBERS,
) -> None:
    """The whole path on embedded defaults: import, render per segment, send to the outbox, signed SES
    feedback through the webhook's path, and a summary of what is in the database and the outbox."""
    env = AppEnv.from_settings(demo_settings())
    bar = ProgressBar()

    def done(step: DemoStep) -> None:
        bar.close()  # the step's report goes below its finished progress bar
        _show_step(step)

    with env, bar:
        run_demo_stepwise(
            env, make_signer=lambda: demo_signer(env), issue=issue_file, subscribers_csv=subscribers_csv,
            on_step=say, on_done=done, on_progress=bar,
        )  # fmt: skip


def demo_signer(env: AppEnv) -> SnsSigner:
    """SNS as the demo plays it signs with a 2048-bit key and a certificate for sns.amazonaws.com made for
    this run, valid from a day before now for two days; a test tool, which only this front end imports."""
    return SnsSigner(cert_name=DEMO_CERT_NAME, valid_from=env.now() - timedelta(days=1), valid_days=2)


def _show_step(done: DemoStep) -> None:
    if isinstance(done, Imported):
        report = done.report
        counts = f"added {report.added}, updated {report.updated}, rejected {report.rejected}"
        say(f"   {report.rows} rows: {counts}")
        for line in done.rejects:
            say(f"   rejected {line}")
    elif isinstance(done, Sent):
        info, state = done.detail.info, done.detail.progress
        segments = sorted(done.detail.segments, key=lambda s: (len(s.segment), s.label))
        segments_table(segments, title=f"campaign {info.id}: {done.draft.issue.title}")
        say(f"   sent {state.sent}, failed {state.failed}, skipped {state.skipped} ({state.status})")
        say(f"   outbox: {done.outbox} ({done.outbox_files} .eml files of this campaign)")
    elif isinstance(done, FedBack):
        if not done.fed:
            say("   fewer than two messages sent; no feedback to show")
        else:
            say(f"   topic {done.topic_arn}, certificate {done.cert_url}")
        for fed in done.fed:
            for line in fed.result.lines():
                say(f"   {line}")
    else:
        _show_summary(done)


def _show_summary(summary: Summary) -> None:
    """The demo's last word: one table of what the database and the outbox hold, and where to look."""
    table = Table(title="demo summary", show_header=False, show_lines=True)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row(
        "subscribers",
        f"{summary.imported} imported, {summary.rejected} rejected, {summary.active} active now",
    )
    readers = sum(count for _, count in summary.segments)
    each = ", ".join(f"{'+'.join(topics) or 'general only'} {count}" for topics, count in summary.segments)
    table.add_row("segments", f"{len(summary.segments)} segments, {readers} readers\n{each}")
    table.add_row(
        "outbox",
        f"{summary.outbox_messages} messages of campaign {summary.campaign_id} "
        f"({summary.sent} sent in its ledger)",
    )
    for fed in summary.fed:
        check = "signature verified" if fed.result.verified else "UNVERIFIED"
        notes = [c.note.removeprefix(f"{fed.email}: ") for c in fed.result.changes if c.changed]
        table.add_row(
            f"{fed.kind}\n(signed SNS,\nwebhook path)",
            f"{fed.email}\nSNS notification {fed.result.key}, {check}\n{'; '.join(notes) or 'no change'}",
        )
    if not summary.fed:
        table.add_row("feedback", "fewer than two messages sent; none fed back")
    listed = Table(box=None, pad_edge=False)
    listed.add_column("address", overflow="fold")
    listed.add_column("reason", no_wrap=True)
    listed.add_column("evidence", overflow="fold")
    for entry in summary.suppressed:
        listed.add_row(entry.email, entry.reason, entry.evidence)
    more = summary.suppressions - len(summary.suppressed)
    if more > 0:
        listed.add_row(f"... and {more} more", "", "")
    table.add_row("suppression list", Group(f"{summary.suppressions} addresses", listed))
    places = Table.grid(padding=(0, 1))
    places.add_column(no_wrap=True)
    places.add_column(overflow="fold")
    places.add_row("outbox", str(summary.outbox))
    places.add_row("preview", str(summary.preview))
    places.add_row(
        "dashboard",
        f"{summary.dashboard_command}, then open {summary.dashboard_url} "
        "(sign in as a user made with newsletter admin create-user NAME)",
    )
    table.add_row("where to look", places)
    console.print(table)
