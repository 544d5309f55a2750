"""``newsletter render`` and ``newsletter preview``: an issue file -> email files or a static preview."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.app import app, environment, say, warn
from mailer.errors import InputError


@app.command("render")
def render_command(
    issue_file: Annotated[Path, typer.Argument(help="The issue: Markdown with YAML front matter")],
    topics: Annotated[str | None, typer.Option("--topics", help="These topics, e.g. nova,neutron")] = None,
    all_topics: Annotated[bool, typer.Option("--all", help="Every topic (the default)")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder [DATA_DIR/render/ISSUE]")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat warnings (heading typos) as errors")
    ] = False,
) -> None:
    """Render an issue for one segment: writes OUT/email.html and OUT/email.txt (placeholders unfilled)."""
    from mailer.services.previews import render_issue  # the renderer loads when a command runs

    if topics is not None and all_topics:
        raise InputError("use either --topics or --all, not both")
    result = render_issue(environment(), issue_file, topics=topics, out=out, strict=strict)
    for warning in result.issue.warnings:
        warn(f"{issue_file}: {warning}")
    for key in result.absent_topics:
        warn(f"{issue_file}: the issue has no section for topic {key!r}")
    rendering = result.rendering
    say(f"Subject:  {rendering.subject}")
    say(f"Segment:  {', '.join(sorted(rendering.segment)) or 'general only (no topic)'}")
    say(f"Sections: {' · '.join(rendering.section_headings)}")
    size = len(rendering.html.encode()) / 1024
    say(f"Wrote {result.html_file} ({size:.1f} KB) and {result.text_file}")
    if result.issue.warnings:
        say(f"Warnings: {len(result.issue.warnings)} (see above)")


@app.command("preview")
def preview_command(
    issue_file: Annotated[Path, typer.Argument(help="The issue: Markdown with YAML front matter")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder [DATA_DIR/preview/ISSUE]")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat warnings (heading typos) as errors")
    ] = False,
) -> None:
    """Write a static preview: an index page, a page per segment with the email at 600 px and 375 px."""
    from mailer.services.previews import preview_issue

    result = preview_issue(environment(), issue_file, out=out, strict=strict)
    for warning in result.issue.warnings:
        warn(f"{issue_file}: {warning}")
    say(f"Subject: {result.issue.title}")
    say(f"Segments: {result.segments}")
    say(f"Open {result.index}")
