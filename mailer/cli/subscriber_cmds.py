"""``newsletter subscribers ...``, ``newsletter topics ...`` and ``newsletter db upgrade``: thin clients of
mailer.services.subscribers and mailer.services.maintenance."""

from __future__ import annotations

import csv
import os
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

from mailer.cli.app import app, console, environment, err_console, say, settings
from mailer.errors import InputError
from mailer.services import subscribers as service
from subscribers.csvreader import Reject
from subscribers.models import STATUSES

subscribers_app = typer.Typer(help="Import, export, add, show, remove, list, search subscribers; statistics.")
topics_app = typer.Typer(help="The topics subscribers can follow.")
db_app = typer.Typer(help="The database schema.")
app.add_typer(subscribers_app, name="subscribers")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")


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
            try:
                self._file = self.path.open("w", encoding="utf-8", errors="surrogateescape", newline="")
            except OSError as exc:
                raise InputError(
                    f"{self.path}: cannot write the rejects file ({exc.strerror or exc})"
                ) from None
            self._writer = csv.writer(self._file)
            self._writer.writerow(("line", "reason", *self.header))
        self._writer.writerow((reject.line, reject.reason, *reject.fields))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _default_rejects_path(file: Path) -> Path:
    """FILE.rejects.csv beside the input, or in DATA_DIR/rejects when the input's folder is read-only
    (the sample list inside an installed package, say)."""
    beside = file.with_name(file.stem + ".rejects.csv")
    if os.access(beside.parent, os.W_OK):
        return beside
    folder = Path(settings().data_dir) / "rejects"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / beside.name


def _check_rejects_path(path: Path, *, chosen: bool) -> None:
    """Before anything is imported: the rejects file can be written, and a file the user named is never
    overwritten (the default FILE.rejects.csv is ours to replace)."""
    if path.is_dir():
        raise InputError(f"--rejects {path}: is a folder; name a file to write the rejected rows to")
    if chosen and path.exists():
        raise InputError(f"--rejects {path}: already exists; name a new file (it is not overwritten)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"--rejects {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{path}: cannot write the rejects file here (permission denied)")


@subscribers_app.command("import")
def import_command(
    file: Annotated[
        Path, typer.Argument(help="CSV with a header row: email, name, topics, locale[, status]")
    ],
    topics: Annotated[str | None, typer.Option(help="Topics added to every row, e.g. nova,neutron")] = None,
    status: Annotated[
        str, typer.Option(help=f"Status of new subscribers: {' or '.join(service.ImportStatus)}")
    ] = service.ImportStatus.ACTIVE,
    rejects: Annotated[
        Path | None, typer.Option(help="Where rejected rows go [FILE.rejects.csv beside the input]")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")] = False,
) -> None:
    """Import (or re-import: updates, never duplicates) subscribers from a CSV file (UTF-8 or GBK)."""
    service.import_status(status)  # the core's rule, before any file is touched
    reject_path = rejects or _default_rejects_path(file)
    _check_rejects_path(reject_path, chosen=rejects is not None)
    try:
        stream = file.open("rb")
    except OSError as exc:
        raise InputError(f"{file}: cannot open: {exc.strerror}") from None
    reject_file = _RejectsFile(reject_path)
    size = file.stat().st_size
    bar = Progress(
        TextColumn("importing"), BarColumn(), DownloadColumn(), _RowsPerSecond(), TimeElapsedColumn(),
        console=err_console, disable=quiet, transient=False,
    )  # fmt: skip
    started = time.perf_counter()
    with stream, bar:
        task = bar.add_task("import", total=size or None, rows=0)

        def on_header(header: tuple[str, ...]) -> None:
            reject_file.header = header

        def on_progress(rows: int, bytes_read: int) -> None:
            bar.update(task, completed=bytes_read, rows=rows)

        try:
            report = service.import_stepwise(
                environment(), stream, topics=topics, status=status,
                on_reject=reject_file, on_header=on_header, progress=on_progress,
            )  # fmt: skip
        finally:
            reject_file.close()
    seconds = time.perf_counter() - started
    say(
        f"{file}: {report.rows:,} rows ({report.encoding}) in {seconds:.1f} s: added {report.added:,}, "
        f"updated {report.updated:,}, unchanged {report.unchanged:,}, rejected {report.rejected:,}"
    )
    if report.rejected:
        say(f"rejected rows with line numbers and reasons: {reject_file.path}")


@subscribers_app.command("export")
def export_command(
    status: Annotated[
        list[str] | None, typer.Option(help=f"Only these statuses (repeatable): {', '.join(STATUSES)}")
    ] = None,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Cells as stored: no ' before a cell a spreadsheet takes for a formula"),
    ] = False,
) -> None:
    """Write subscribers as CSV to stdout, in the format `import` reads back. Cells starting with = + - @
    (formulas to a spreadsheet) get a leading ' unless --raw."""
    with environment().transaction() as session:
        count = service.export(session, sys.stdout, statuses=status, raw=raw)
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
    env = environment()
    with env.transaction() as session:
        row = service.add(session, env, email, name=name, topics=topics, locale=locale, status=status)
    say(f"added #{row.id} {row.email} ({row.status})")


@subscribers_app.command("show")
def show_command(who: Annotated[str, typer.Argument(help="Address or id")]) -> None:
    """A subscriber's details, topics and event log."""
    with environment().transaction() as session:
        found = service.show(session, who)
    row = found.row
    say(f"#{row.id} {row.email}")
    for label, value in (
        ("name", row.name or "-"),
        ("status", row.status),
        ("locale", row.locale),
        ("topics", ", ".join(row.topics) or "-"),
        ("source", row.source),
        ("created", row.created_at.isoformat(timespec="seconds")),
        ("confirmed", found.confirmed_at.isoformat(timespec="seconds") if found.confirmed_at else "-"),
        ("soft bounces", str(found.soft_bounces)),
    ):
        say(f"  {label:<13} {value}")
    say("  events:")
    for event in found.events:
        say(f"    {event.created_at.isoformat(timespec='seconds')}  {event.kind:<17} {event.source:<12} "
            f"{event.detail or ''}")  # fmt: skip


@subscribers_app.command("remove")
def remove_command(who: Annotated[str, typer.Argument(help="Address or id")]) -> None:
    """Delete a subscriber (its suppression, if any, stays)."""
    env = environment()
    with env.transaction() as session:
        removed = service.remove(session, who, now=env.now())
    say(f"removed #{removed.id} {removed.email}")


def _rows_table(rows: list[service.SubscriberRow] | tuple[service.SubscriberRow, ...]) -> None:
    table = Table("id", "email", "name", "status", "locale", "topics", box=None)
    for s in rows:
        table.add_row(str(s.id), s.email, s.name or "", s.status, s.locale, ",".join(s.topics))
    console.print(table)


@subscribers_app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option(help="Only this status")] = None,
    topic: Annotated[str | None, typer.Option(help="Only followers of this topic")] = None,
    after: Annotated[int, typer.Option(help="Start after this subscriber id (the next page)")] = 0,
    limit: Annotated[int, typer.Option(help="At most this many (1-1000)")] = 50,
) -> None:
    """Subscribers in id order, a page at a time (use `export` for all of them)."""
    env = environment()
    with env.transaction() as session:
        page = service.list_subscribers(session, env, status=status, topic=topic, after_id=after, limit=limit)
    _rows_table(page.rows)
    if page.next_after_id is not None:
        err_console.print(f"more: newsletter subscribers list --after {page.next_after_id}", highlight=False)


@subscribers_app.command("search")
def search_command(
    text: Annotated[str, typer.Argument(help="Part of an address or name")],
    limit: Annotated[int, typer.Option(help="At most this many (1-1000)")] = 20,
) -> None:
    """Subscribers whose address or name contains TEXT."""
    with environment().transaction() as session:
        rows = service.search(session, text, limit=limit)
    _rows_table(rows)


@subscribers_app.command("stats")
def stats_command() -> None:
    """Counts per status and active followers per topic."""
    with environment().transaction() as session:
        result = service.statistics(session)
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
    with environment().transaction() as session:
        rows = service.topics(session)
    table = Table("key", "name", "name (zh)", box=None)
    for topic in rows:
        table.add_row(topic.key, topic.name, topic.name_zh or "")
    console.print(table)


@topics_app.command("add")
def topics_add_command(
    key: Annotated[str, typer.Argument(help="Lower-case key, e.g. octavia")],
    name: Annotated[str | None, typer.Option(help="English name")] = None,
    name_zh: Annotated[str | None, typer.Option("--name-zh", help="Chinese name")] = None,
) -> None:
    """Add a topic to the database (or rename one). Topics are never deleted: subscribers follow them."""
    with environment().transaction() as session:
        changed = service.add_topic(session, environment(), key, name, name_zh)
    say(f"topic {key.strip().lower()}: {'saved' if changed else 'unchanged'}")


@db_app.command("upgrade")
def db_upgrade_command() -> None:
    """Bring the database schema to the newest revision (the app also does this on start)."""
    from mailer.services.maintenance import upgrade_database_stepwise

    done = upgrade_database_stepwise(settings())
    say(
        f"database at revision {done.after} (was {done.before or 'empty'}, newest {done.head}); "
        f"topics created or renamed: {done.topics_synced}"
    )
