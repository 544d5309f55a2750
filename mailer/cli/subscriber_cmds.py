"""``newsletter subscribers ...``, ``newsletter topics ...`` and ``newsletter db upgrade``."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from mailer.cli.app import app, console, err_console, settings
from mailer.database import session_factory, sync_registry
from mailer.errors import InputError
from mailer.topics import load_registry
from subscribers.csvreader import Reject
from subscribers.db import current_revision, head_revision, open_database
from subscribers.exporter import export_csv
from subscribers.importer import import_csv
from subscribers.models import STATUSES, Subscriber, SubscriberEvent, Topic, subscriber_topics
from subscribers.preferences import add_subscriber, get_preferences, remove_subscriber
from subscribers.store import add_topic, find_subscriber, list_topics, stats

subscribers_app = typer.Typer(help="Import, export, add, show, remove, list subscribers; statistics.")
topics_app = typer.Typer(help="The topics subscribers can follow.")
db_app = typer.Typer(help="The database schema.")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _resolver():  # type: ignore[no-untyped-def]
    return load_registry(settings().registry_file).match


def _topic_names(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").replace(";", ",").replace("|", ",").split(",") if p.strip()]


def _topic_keys(text: str | None) -> list[str]:
    """Keys for names given on the command line: registry names/aliases, or keys of the topic table."""
    resolve = _resolver()
    return [resolve(name) or name.strip().lower() for name in _topic_names(text)]


class _RowsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0
        rows = task.fields.get("rows", 0)
        rate = rows / elapsed if elapsed > 0 else 0
        return Text(f"{rows:,} rows  {rate:,.0f} rows/s", style="progress.data.speed")


class _RejectsFile:
    """The rejects CSV, opened on the first reject: line, reason, then the original row's fields."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.header: tuple[str, ...] = ()
        self._file: Any = None
        self._writer: Any = None

    def __call__(self, reject: Reject) -> None:
        if self._writer is None:
            # surrogateescape writes undecodable bytes of the input back exactly as they were
            self._file = self.path.open("w", encoding="utf-8", errors="surrogateescape", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(("line", "reason", *self.header))
        self._writer.writerow((reject.line, reject.reason, *reject.fields))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@subscribers_app.command("import")
def import_command(
    file: Annotated[
        Path, typer.Argument(help="CSV with a header row: email, name, topics, locale[, status]")
    ],
    topics: Annotated[str | None, typer.Option(help="Topics added to every row, e.g. nova,neutron")] = None,
    status: Annotated[str, typer.Option(help="Status of new subscribers: active or pending")] = "active",
    rejects: Annotated[
        Path | None, typer.Option(help="Where rejected rows go [FILE.rejects.csv beside the input]")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Import (or re-import: updates, never duplicates) subscribers from a CSV file (UTF-8 or GBK)."""
    if status not in ("active", "pending"):
        raise InputError(f"--status must be active or pending, not {status!r}")
    try:
        stream = file.open("rb")
    except OSError as exc:
        raise InputError(f"{file}: cannot open: {exc.strerror}") from None
    reject_file = _RejectsFile(rejects or file.with_name(file.stem + ".rejects.csv"))
    size = file.stat().st_size
    progress = Progress(
        TextColumn("importing"),
        BarColumn(),
        DownloadColumn(),
        _RowsPerSecond(),
        TimeElapsedColumn(),
        console=err_console,
        disable=quiet,
        transient=False,
    )
    started = time.perf_counter()
    with stream, progress, session_factory(settings())() as session:
        task = progress.add_task("import", total=size or None, rows=0)

        def on_header(header: tuple[str, ...]) -> None:
            reject_file.header = header

        def on_progress(rows: int, bytes_read: int) -> None:
            progress.update(task, completed=bytes_read, rows=rows)

        try:
            report = import_csv(
                session,
                stream,
                topics=_topic_keys(topics),
                status=status,
                resolve_topic=_resolver(),
                on_reject=reject_file,
                on_header=on_header,
                progress=on_progress,
            )
        finally:
            reject_file.close()
    seconds = time.perf_counter() - started
    _say(
        f"{file}: {report.rows:,} rows ({report.encoding}) in {seconds:.1f} s: added {report.added:,}, "
        f"updated {report.updated:,}, unchanged {report.unchanged:,}, rejected {report.rejected:,}"
    )
    if report.rejected:
        _say(f"rejected rows with line numbers and reasons: {reject_file.path}")


@subscribers_app.command("export")
def export_command(
    status: Annotated[
        list[str] | None, typer.Option(help=f"Only these statuses (repeatable): {', '.join(STATUSES)}")
    ] = None,
) -> None:
    """Write subscribers as CSV to stdout, in the format `import` reads back."""
    with session_factory(settings())() as session:
        count = export_csv(session, sys.stdout, statuses=status)
    sys.stdout.flush()
    err_console.print(f"exported {count:,} subscribers", highlight=False)


@subscribers_app.command("add")
def add_command(
    email: Annotated[str, typer.Argument(help="The address")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    topics: Annotated[str | None, typer.Option(help="Topics, e.g. nova,neutron")] = None,
    locale: Annotated[str | None, typer.Option(help="zh or en")] = None,
    status: Annotated[str, typer.Option(help=f"One of {', '.join(STATUSES)}")] = "active",
) -> None:
    """Add one subscriber (no confirmation email: the admin vouches for it)."""
    with session_factory(settings())() as session:
        subscriber = add_subscriber(
            session, email, name=name, topics=_topic_keys(topics), locale=locale, status=status, source="cli"
        )
        session.commit()
        _say(f"added #{subscriber.id} {subscriber.email} ({subscriber.status})")


@subscribers_app.command("show")
def show_command(who: Annotated[str, typer.Argument(help="Address or id")]) -> None:
    """A subscriber's details, topics and event log."""
    with session_factory(settings())() as session:
        subscriber = find_subscriber(session, who)
        prefs = get_preferences(session, subscriber.id)
        _say(f"#{prefs.subscriber_id} {prefs.email}")
        for label, value in (
            ("name", prefs.name or "-"),
            ("status", prefs.status),
            ("locale", prefs.locale),
            ("topics", ", ".join(sorted(prefs.topics)) or "-"),
            ("source", subscriber.source),
            ("created", subscriber.created_at.isoformat(timespec="seconds")),
            (
                "confirmed",
                subscriber.confirmed_at.isoformat(timespec="seconds") if subscriber.confirmed_at else "-",
            ),
            ("soft bounces", str(subscriber.soft_bounces)),
        ):
            _say(f"  {label:<13} {value}")
        events = session.scalars(
            select(SubscriberEvent)
            .where(SubscriberEvent.subscriber_id == subscriber.id)
            .order_by(SubscriberEvent.id)
        )
        _say("  events:")
        for event in events:
            when = event.created_at.isoformat(timespec="seconds")
            _say(f"    {when}  {event.kind:<17} {event.source:<12} {event.detail or ''}")


@subscribers_app.command("remove")
def remove_command(who: Annotated[str, typer.Argument(help="Address or id")]) -> None:
    """Delete a subscriber (its suppression, if any, stays)."""
    with session_factory(settings())() as session:
        removed = remove_subscriber(session, who, source="cli")
        session.commit()
        _say(f"removed #{removed.id} {removed.email}")


@subscribers_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    topic: Annotated[str | None, typer.Option(help="Only followers of this topic")] = None,
    limit: Annotated[int, typer.Option(help="At most this many")] = 50,
) -> None:
    """Subscribers in id order (use `export` for all of them)."""
    query = select(Subscriber).order_by(Subscriber.id).limit(limit)
    if status:
        if status not in STATUSES:
            raise InputError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        query = query.where(Subscriber.status == status)
    with session_factory(settings())() as session:
        if topic:
            key = _topic_keys(topic)[0]
            topic_id = session.scalar(select(Topic.id).where(Topic.key == key))
            if topic_id is None:
                raise InputError(f"unknown topic {topic!r}")
            followers = select(subscriber_topics.c.subscriber_id).where(
                subscriber_topics.c.topic_id == topic_id
            )
            query = query.where(Subscriber.id.in_(followers))
        table = Table("id", "email", "name", "status", "locale", "topics", box=None)
        for s in session.scalars(query):
            table.add_row(
                str(s.id), s.email, s.name or "", s.status, s.locale, ",".join(sorted(s.topic_keys))
            )
        console.print(table)


@subscribers_app.command("stats")
def stats_command() -> None:
    """Counts per status and active followers per topic."""
    with session_factory(settings())() as session:
        result = stats(session)
    table = Table("status", "subscribers", box=None)
    for status, count in result.by_status.items():
        table.add_row(status, f"{count:,}")
    table.add_row("total", f"{result.total:,}")
    table.add_row("suppressed addresses", f"{result.suppressed:,}")
    console.print(table)
    topics = Table("topic", "active followers", box=None)
    for key, count in result.by_topic.items():
        topics.add_row(key, f"{count:,}")
    console.print(topics)


@topics_app.command("list")
def topics_list_command() -> None:
    """Topics in the database (the registry file's topics are synced in on start)."""
    with session_factory(settings())() as session:
        table = Table("key", "name", "name (zh)", box=None)
        for topic in list_topics(session):
            table.add_row(topic.key, topic.name, topic.name_zh or "")
        console.print(table)


@topics_app.command("add")
def topics_add_command(
    key: Annotated[str, typer.Argument(help="Lower-case key, e.g. octavia")],
    name: Annotated[str | None, typer.Option(help="English name")] = None,
    name_zh: Annotated[str | None, typer.Option("--name-zh", help="Chinese name")] = None,
) -> None:
    """Add a topic to the database (or rename one). Topics are never deleted: subscribers follow them."""
    with session_factory(settings())() as session:
        changed = add_topic(session, key, name, name_zh)
        session.commit()
    _say(f"topic {key.strip().lower()}: {'saved' if changed else 'unchanged'}")


@db_app.command("upgrade")
def db_upgrade_command() -> None:
    """Bring the database schema to the newest revision (the app also does this on start)."""
    url = settings().resolved_database_url
    engine = open_database(url, migrate=False)
    before = current_revision(engine)
    engine.dispose()
    factory = session_factory(settings())  # migrates and syncs the registry's topics
    with factory() as session:
        synced = sync_registry(session, load_registry(settings().registry_file))
        session.commit()
        after = current_revision(session.get_bind())  # type: ignore[arg-type]
    _say(
        f"database at revision {after} (was {before or 'empty'}, newest {head_revision()}); "
        f"topics created or renamed: {synced}"
    )
