"""Looking at an issue before it goes out: one segment rendered to files (``newsletter render``), or a
static preview of every segment at 600 px and 375 px (``newsletter preview``). Nothing here touches the
database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mailer.errors import InputError
from mailer.rendering.issue import Issue, load_issue
from mailer.rendering.preview import preview_pages, write_preview
from mailer.rendering.render import Rendering, render
from mailer.services.env import AppEnv

__all__ = ["Preview", "Rendered", "load_checked", "preview_issue", "render_issue"]


def load_checked(env: AppEnv, path: Path, *, strict: bool = False) -> Issue:
    """The issue of a file; with ``strict`` its warnings (heading typos) are an InputError."""
    issue = load_issue(path, env.registry, env.settings.default_lang)
    if strict and issue.warnings:
        count = len(issue.warnings)
        raise InputError(f"{path}: {count} warning(s) and --strict makes them errors: {issue.warnings[0]}")
    return issue


@dataclass(frozen=True)
class Rendered:
    issue: Issue
    rendering: Rendering
    html_file: Path
    text_file: Path
    absent_topics: tuple[str, ...]  # asked for, but the issue has no section for them


def render_issue(
    env: AppEnv, path: Path, *, topics: str | None = None, out: Path | None = None, strict: bool = False
) -> Rendered:
    """Render one segment (``topics``; all the issue's topics when None) into OUT/email.html and
    OUT/email.txt, placeholders unfilled."""
    issue = load_checked(env, path, strict=strict)
    wanted = issue.topics if topics is None else env.registry.parse_keys(topics)
    rendering = render(issue, wanted, env.brand, registry=env.registry)
    folder = out or Path(env.settings.data_dir) / "render" / path.stem
    html_file, text_file = folder / "email.html", folder / "email.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        html_file.write_text(rendering.html, encoding="utf-8")
        text_file.write_text(rendering.text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{folder}: cannot write the rendering ({exc.strerror or exc})") from None
    return Rendered(issue, rendering, html_file, text_file, tuple(sorted(wanted - issue.topics)))


@dataclass(frozen=True)
class Preview:
    issue: Issue
    index: Path
    segments: int


def preview_issue(env: AppEnv, path: Path, *, out: Path | None = None, strict: bool = False) -> Preview:
    """Write the static preview (an index, a page per segment) and return where its index is."""
    issue = load_checked(env, path, strict=strict)
    pages = preview_pages(issue, env.brand, env.registry)
    folder = out or Path(env.settings.data_dir) / "preview" / path.stem
    try:
        index = write_preview(pages, folder)
    except OSError as exc:
        raise InputError(f"{folder}: cannot write the preview ({exc.strerror or exc})") from None
    segments = sum(1 for name in pages if name.startswith("email-") and name.endswith(".html"))
    return Preview(issue, index, segments)
