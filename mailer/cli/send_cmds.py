"""``newsletter send``, ``newsletter campaigns list|show|pause|resume|cancel|reap`` and ``newsletter demo``.

With a broker configured, ``send`` starts the campaign (segments rendered once, ledger filled, batches on
Redis) and follows the workers' progress; without one (embedded mode) the same tasks run in this process.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select

from mailer import samples, tasks
from mailer.cli.app import app, console, err_console, settings
from mailer.database import session_factory
from mailer.errors import InputError
from mailer.feedback.apply import SKIP_VERIFICATION, receive
from mailer.feedback.samples import bounce_notification, complaint_notification
from mailer.rendering.issue import Issue, load_issue
from mailer.rendering.render import Brand, render_segments
from mailer.sending import campaigns
from mailer.sending.models import Delivery, SegmentRendering
from mailer.sending.sender import send_test
from mailer.settings import Settings
from mailer.topics import TopicRegistry, load_registry
from subscribers.db import utcnow
from subscribers.importer import import_csv
from subscribers.store import segment_counts

_FINAL = ("done", "paused", "cancelled")


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _load(issue_file: Path, config: Settings) -> tuple[Issue, TopicRegistry, str]:
    registry = load_registry(config.registry_file)
    issue = load_issue(issue_file, registry, config.default_lang)
    for warning in issue.warnings:
        err_console.print(f"warning: {issue_file}: {warning}", markup=False, highlight=False, soft_wrap=True)
    return issue, registry, issue_file.read_text(encoding="utf-8-sig")


def _segment_label(segment: frozenset[str]) -> str:
    return ", ".join(sorted(segment)) or "(general only)"


def follow(
    config: Settings, campaign_id: int, *, worker: threading.Thread | None = None
) -> campaigns.Progress:
    """A Rich progress bar (sent/failed, rate, ETA) until the campaign is done, paused or cancelled."""
    factory = session_factory(config)
    columns = (
        TextColumn("[bold]campaign {task.fields[cid]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "sent {task.fields[sent]} · failed {task.fields[failed]} · skipped {task.fields[skipped]}"
        ),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        task = bar.add_task("send", total=None, cid=campaign_id, sent=0, failed=0, skipped=0, rate=0.0)
        while True:
            with factory() as session:
                state = campaigns.progress(session, campaign_id, exact=False)
            speed = bar.tasks[0].speed or 0.0
            bar.update(
                task,
                total=state.total or None,
                completed=state.done,
                sent=state.sent,
                failed=state.failed,
                skipped=state.skipped,
                rate=speed,
            )
            finished = worker is not None and not worker.is_alive()
            if state.status in _FINAL or (finished and state.status != "sending"):
                break
            if finished and state.status == "sending" and state.done >= state.total and state.total:
                break
            time.sleep(0.3)
    with factory() as session:
        return campaigns.progress(session, campaign_id)


def start_and_follow(
    config: Settings, issue: Issue, registry: TopicRegistry, markdown: str, *, audience: str, transport: str
) -> campaigns.Progress:
    tasks.use_settings(config)
    factory = session_factory(config)
    with factory() as session:
        campaign = campaigns.create_campaign(session, issue, markdown, audience=audience, transport=transport)
        session.commit()
        campaign_id = campaign.id
    _say(f"campaign {campaign_id}: {issue.title} (transport {transport}, audience {audience})")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            campaigns.start_campaign(
                factory,
                campaign_id,
                issue,
                Brand.from_settings(config),
                enqueue=tasks.enqueue,
                registry=registry,
                batch_size=config.batch_size,
            )
        except BaseException as exc:  # shown after the progress bar stops
            errors.append(exc)

    # Embedded mode sends inside start_campaign (eager tasks); with a broker it only fills the queue.
    worker = threading.Thread(target=run, name="send", daemon=True)
    worker.start()
    try:
        result = follow(config, campaign_id, worker=worker)
    except KeyboardInterrupt:
        if config.broker_url:
            err_console.print(
                f"stopped following; the workers go on (newsletter campaigns show {campaign_id})"
            )
        raise
    worker.join()
    if errors:
        raise errors[0]
    return result


@app.command("send")
def send_command(
    issue_file: Annotated[Path, typer.Argument(help="The issue: Markdown with YAML front matter")],
    topics_from_subscribers: Annotated[
        bool, typer.Option("--topics-from-subscribers", help="Each subscriber gets their topics (default)")
    ] = False,
    all_sections: Annotated[bool, typer.Option("--all", help="Everyone gets every section")] = False,
    transport: Annotated[str | None, typer.Option("--transport", help="ses, smtp or file [settings]")] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show segments and counts; send nothing")
    ] = False,
    test_to: Annotated[
        list[str] | None, typer.Option("--test-to", help="Send one message per segment to ADDR only")
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Schedule for this ISO time with offset, e.g. 2026-12-01T09:00+08:00"),
    ] = None,
) -> None:
    """Send an issue to the subscribers: render once per segment, then deliver through the workers."""
    if topics_from_subscribers and all_sections:
        raise InputError("use either --topics-from-subscribers or --all, not both")
    if at is not None and (dry_run or test_to is not None):
        raise InputError("--at schedules a campaign; it cannot be combined with --dry-run or --test-to")
    scheduled_at = parse_at(at, utcnow()) if at is not None else None
    config = settings()
    chosen = transport or config.transport
    if chosen not in ("ses", "smtp", "file"):
        raise InputError(f"--transport must be ses, smtp or file, not {chosen!r}")
    config = config.model_copy(update={"transport": chosen})
    audience = "all" if all_sections else "subscribers"
    issue, registry, markdown = _load(issue_file, config)
    if test_to is not None or dry_run:
        with session_factory(config)() as session:
            counts = segment_counts(session, issue.topics)
        if audience == "all":
            counts = {issue.topics: sum(counts.values())}
        segments = list(counts) or [issue.topics]
        if dry_run:
            renderings = render_segments(issue, segments, Brand.from_settings(config), registry=registry)
            _segments_table(
                [(_segment_label(s), counts.get(s, 0), len(renderings[s].html.encode())) for s in segments]
            )
            _say(f"dry run: {sum(counts.values())} recipients, {len(segments)} segments; nothing sent")
            return
        sent = send_test(
            config, issue, Brand.from_settings(config), test_to or [], segments, transport_name=chosen,
            registry=registry,
        )  # fmt: skip
        for segment, address in sent:
            _say(f"test message for segment {_segment_label(segment)} -> {address}")
        _say(f"{len(sent)} test messages through {chosen}; no campaign, no ledger rows")
        return
    if scheduled_at is not None:
        with session_factory(config)() as session:
            campaign = campaigns.create_campaign(
                session, issue, markdown, audience=audience, transport=chosen, scheduled_at=scheduled_at
            )
            session.commit()
        _say(
            f"campaign {campaign.id} scheduled for {scheduled_at:%Y-%m-%d %H:%M} UTC: {issue.title}; "
            "rendered and sent when due (celery beat, or `newsletter campaigns start-due` from cron)"
        )
        return
    result = start_and_follow(config, issue, registry, markdown, audience=audience, transport=chosen)
    _summary(result)


def parse_at(text: str, now: datetime) -> datetime:
    """``--at``: an ISO time with a UTC offset, in the future; returned in UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InputError(f"--at {text!r} is not an ISO time such as 2026-12-01T09:00+08:00") from None
    if moment.tzinfo is None:
        raise InputError(f"--at {text!r} has no UTC offset; add one, e.g. {text.strip()}+08:00")
    if moment <= now:
        raise InputError(f"--at {text} is in the past")
    return moment.astimezone(UTC)


def _segments_table(rows: list[tuple[str, int, int]]) -> None:
    table = Table("segment", "recipients", "HTML size")
    for label, count, size in rows:
        table.add_row(label, f"{count:,}", f"{size / 1024:.1f} KB")
    console.print(table)


def _summary(state: campaigns.Progress) -> None:
    line = (
        f"campaign {state.campaign_id} {state.status}: {state.sent:,} sent, {state.failed:,} failed, "
        f"{state.skipped:,} skipped, {state.unknown:,} unknown of {state.total:,}"
    )
    _say(line + (f" ({state.reason})" if state.reason else ""))


# --- newsletter demo ---------------------------------------------------------------------------------
_DEMO_ISSUE = samples.ISSUE
_DEMO_SUBSCRIBERS = samples.SUBSCRIBERS
_DEMO_ENV = samples.DEMO_ENV


@app.command("demo")
def demo_command(
    issue_file: Annotated[
        Path, typer.Option("--issue", help="Issue to send [a sample issue shipped with the package]")
    ] = _DEMO_ISSUE,
    subscribers_csv: Annotated[Path, typer.Option("--subscribers", help="CSV to import")] = _DEMO_SUBSCRIBERS,
) -> None:
    """The whole path on embedded defaults: import, render per segment, send to the outbox, feedback."""
    if not issue_file.is_file():
        raise InputError(f"{issue_file}: issue not found; pass --issue FILE.md")
    if not subscribers_csv.is_file():
        raise InputError(f"{subscribers_csv}: subscriber CSV not found; pass --subscribers FILE.csv")
    # embedded: SQLite and the file outbox under data_dir, tasks in this process, no Redis
    # the demo newsletter's identity from examples/demo.env; the user's .env and environment still win
    branded = Settings(_env_file=(_DEMO_ENV, ".env"))  # type: ignore[call-arg]
    config = branded.model_copy(
        update={
            "broker_url": None,
            "redis_url": None,
            "database_url": None,
            "transport": "file",
            "file_send_rate": None,
        }
    )
    factory = session_factory(config)
    issue, registry, markdown = _load(issue_file, config)
    _say(f"1. importing {subscribers_csv}")
    with subscribers_csv.open("rb") as stream, factory() as session:
        rejects: list[str] = []
        report = import_csv(
            session,
            stream,
            resolve_topic=registry.match,
            on_reject=lambda r: rejects.append(f"line {r.line}: {r.reason}"),
        )
    _say(f"   {report.rows} rows: added {report.added}, updated {report.updated}, rejected {report.rejected}")
    for line in rejects:
        _say(f"   rejected {line}")
    _say(f"2. sending {issue_file.name} ({issue.title}) through the file outbox")
    state = start_and_follow(config, issue, registry, markdown, audience="subscribers", transport="file")
    with factory() as session:
        segments = list(
            session.scalars(select(SegmentRendering).where(SegmentRendering.campaign_id == state.campaign_id))
        )
        deliveries = list(
            session.scalars(
                select(Delivery)
                .where(Delivery.campaign_id == state.campaign_id, Delivery.status == "sent")
                .order_by(Delivery.id)
                .limit(2)
            )
        )
    outbox = config.resolved_outbox_dir
    files = list(outbox.glob(f"{state.campaign_id}.*.eml"))
    table = Table(
        "segment", "recipients", "HTML", "text", title=f"campaign {state.campaign_id}: {issue.title}"
    )
    for segment in sorted(segments, key=lambda s: (len(s.segment), s.segment_key)):
        html_kb, text_kb = len(segment.html.encode()) / 1024, len(segment.text.encode()) / 1024
        table.add_row(
            _segment_label(segment.segment), str(segment.recipients), f"{html_kb:.1f} KB", f"{text_kb:.1f} KB"
        )
    console.print(table)
    _say(f"   sent {state.sent}, failed {state.failed}, skipped {state.skipped} ({state.status})")
    _say(f"   outbox: {outbox.resolve()} ({len(files)} .eml files of this campaign)")
    _say("3. SES feedback for two sent messages: one hard bounce, one complaint")
    if len(deliveries) < 2:
        _say("   fewer than two messages sent; no feedback to show")
        return
    now = utcnow()
    campaign_tag, sender = str(state.campaign_id), config.sender_address
    first, second = deliveries
    bounce = bounce_notification(
        first.email, message_id=first.message_id or "", at=now, campaign=campaign_tag, sender=sender
    )
    complaint = complaint_notification(
        second.email, message_id=second.message_id or "", at=now, campaign=campaign_tag, sender=sender
    )
    for notification in (bounce, complaint):
        result = receive(
            notification, sessions=factory, verifier=SKIP_VERIFICATION, now=now,
            soft_bounce_limit=config.soft_bounce_limit,
        )  # fmt: skip
        for line in result.lines():
            _say(f"   {line}")
