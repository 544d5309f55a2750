"""``newsletter render`` and ``newsletter preview``: an issue file -> email files or a static preview."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailer.cli.app import app, console, err_console, settings
from mailer.errors import InputError

if TYPE_CHECKING:  # the renderer (MJML, premailer) is imported when a command runs: `--help` stays fast
    from mailer.rendering.issue import Issue
    from mailer.topics import TopicRegistry


def _load(issue_file: Path, strict: bool) -> tuple[Issue, TopicRegistry]:
    from mailer.rendering.issue import load_issue
    from mailer.topics import load_registry

    config = settings()
    registry = load_registry(config.registry_file)
    issue = load_issue(issue_file, registry, config.default_lang)
    for warning in issue.warnings:
        err_console.print(f"warning: {issue_file}: {warning}", markup=False, highlight=False, soft_wrap=True)
    if strict and issue.warnings:
        count = len(issue.warnings)
        raise InputError(
            f"{issue_file}: {count} warning(s) and --strict makes them errors: {issue.warnings[0]}"
        )
    return issue, registry


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


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
    from mailer.rendering.render import Brand, render

    if topics is not None and all_topics:
        raise InputError("use either --topics or --all, not both")
    issue, registry = _load(issue_file, strict)
    if topics is None:
        wanted = issue.topics
    else:
        wanted = registry.parse_keys(topics)
        for key in sorted(wanted - issue.topics):
            err_console.print(
                f"warning: {issue_file}: the issue has no section for topic {key!r}", markup=False
            )
    rendering = render(issue, wanted, Brand.from_settings(settings()), registry=registry)
    folder = out or Path(settings().data_dir) / "render" / issue_file.stem
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "email.html").write_text(rendering.html, encoding="utf-8")
    (folder / "email.txt").write_text(rendering.text, encoding="utf-8")
    segment = ", ".join(sorted(rendering.segment)) or "general only (no topic)"
    _say(f"Subject:  {rendering.subject}")
    _say(f"Segment:  {segment}")
    _say(f"Sections: {' · '.join(rendering.section_headings)}")
    size = len(rendering.html.encode()) / 1024
    _say(f"Wrote {folder / 'email.html'} ({size:.1f} KB) and {folder / 'email.txt'}")
    if issue.warnings:
        _say(f"Warnings: {len(issue.warnings)} (see above)")


@app.command("preview")
def preview_command(
    issue_file: Annotated[Path, typer.Argument(help="The issue: Markdown with YAML front matter")],
    out: Annotated[Path | None, typer.Option("--out", help="Output folder [DATA_DIR/preview/ISSUE]")] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Treat warnings (heading typos) as errors")
    ] = False,
) -> None:
    """Write a static preview: an index page, a page per segment with the email at 600 px and 375 px."""
    from mailer.rendering.preview import preview_pages, write_preview
    from mailer.rendering.render import Brand

    issue, registry = _load(issue_file, strict)
    pages = preview_pages(issue, Brand.from_settings(settings()), registry)
    folder = out or Path(settings().data_dir) / "preview" / issue_file.stem
    index = write_preview(pages, folder)
    _say(f"Subject: {issue.title}")
    _say(f"Segments: {sum(1 for name in pages if name.startswith('email-') and name.endswith('.html'))}")
    _say(f"Open {index}")
