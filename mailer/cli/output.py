"""How the commands show campaigns: segment tables, one-line summaries, a live progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.cli.app import console, err_console, say

if TYPE_CHECKING:
    from mailer.services.checklist import Plan
    from mailer.services.watch import Progress as CampaignProgress

__all__ = [
    "ProgressBar",
    "SegmentLike",
    "campaign_summary",
    "require_finished",
    "segments_table",
    "show_plan",
    "when",
]


class SegmentLike(Protocol):
    @property
    def label(self) -> str: ...
    @property
    def recipients(self) -> int: ...
    @property
    def html_bytes(self) -> int: ...
    @property
    def text_bytes(self) -> int: ...


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def segments_table(segments: Iterable[SegmentLike], title: str | None = None) -> None:
    table = Table("segment", "recipients", "HTML", "text", title=title)
    for s in segments:
        table.add_row(
            s.label, f"{s.recipients:,}", f"{s.html_bytes / 1024:.1f} KB", f"{s.text_bytes / 1024:.1f} KB"
        )
    console.print(table)


def show_plan(plan: Plan) -> None:
    """A dry run: the segments table, then each pre-send check."""
    segments_table(plan.segments)
    for check in plan.checks:
        mark = "ok  " if check.ok else "FAIL"
        say(f"  {mark} {check.name}" + (f": {check.detail}" if check.detail else ""))


def campaign_summary(state: CampaignProgress) -> None:
    line = (
        f"campaign {state.campaign_id} {state.status}: {state.sent:,} sent, {state.failed:,} failed, "
        f"{state.skipped:,} skipped, {state.unknown:,} unknown of {state.total:,}"
    )
    say(line + (f" ({state.reason})" if state.reason else ""))


def require_finished(state: CampaignProgress) -> None:
    """Print the summary; a campaign that ended paused or cancelled is a non-zero exit (scripts notice)."""
    from mailer.services.watch import check_finished

    campaign_summary(state)
    check_finished(state)


class ProgressBar:
    """A Rich progress bar on stderr (sent/failed/skipped, rate, ETA) for one campaign, shown from the first
    update on; call it with each Progress, close it at the end (or use it as a context manager)."""

    _COLUMNS = (
        TextColumn("[bold]campaign {task.fields[cid]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "sent {task.fields[sent]} · failed {task.fields[failed]} · skipped {task.fields[skipped]}"
        ),
        TextColumn("{task.fields[rate]:.0f}/s"),
        TimeRemainingColumn(),
    )

    def __init__(self) -> None:
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._first: tuple[float, int] = (0.0, 0)  # when this bar first saw the campaign, and its count

    def __call__(self, state: CampaignProgress) -> None:
        now = time.monotonic()
        if self._bar is None:
            self._bar = Progress(*self._COLUMNS, console=err_console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task("send", total=None, cid=0, sent=0, failed=0, skipped=0, rate=0.0)
            self._first = (now, state.done)
        assert self._task is not None
        since, done_then = self._first
        rate = (state.done - done_then) / (now - since) if now - since >= 0.5 else 0.0
        self._bar.update(
            self._task,
            total=state.total or None,
            completed=state.done,
            cid=state.campaign_id,
            sent=state.sent,
            failed=state.failed,
            skipped=state.skipped,
            rate=rate,
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
