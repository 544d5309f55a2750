"""A static preview of an issue: an index page with a link per segment, each page showing the email in a
600 px and a 375 px frame. ``preview_pages`` is pure (file name -> content); ``write_preview`` writes them.

Segments previewed: all the issue's topics, each single topic, and general only (no topic). The
per-recipient placeholders are filled with sample values, as a recipient's copy would be.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path

from mailer.rendering import placeholders
from mailer.rendering.issue import Issue
from mailer.rendering.render import Brand, Rendering, render_segments
from mailer.topics import TopicRegistry
from mailer.urls import SAMPLE_TOKEN, Urls

__all__ = ["preview_pages", "preview_segments", "sample_values", "write_preview"]

FRAME_WIDTHS = (600, 375)


def sample_values(brand: Brand) -> dict[str, str]:
    """Placeholder values of a preview: real paths of the URL contract with a token that is not valid, so
    the links look like a reader's and lead to the "not a valid link" page instead of acting on anyone."""
    urls = Urls(brand.base_url)
    return {
        placeholders.EMAIL: "reader@example.org",
        placeholders.VIEW_URL: urls.view(0, SAMPLE_TOKEN),
        placeholders.PREFERENCES_URL: urls.preferences(SAMPLE_TOKEN),
        placeholders.UNSUBSCRIBE_URL: urls.unsubscribe(SAMPLE_TOKEN),
    }


def preview_segments(issue: Issue) -> dict[str, frozenset[str]]:
    """Slug -> segment: "all", "topic-<key>" for each topic of the issue, "general"."""
    segments = {"all": issue.topics}
    for key in sorted(issue.topics):
        segments[f"topic-{key}"] = frozenset({key})
    segments["general"] = frozenset()
    return segments


def preview_pages(issue: Issue, brand: Brand, registry: TopicRegistry | None = None) -> dict[str, str]:
    """Every file of the preview, by relative name."""
    segments = preview_segments(issue)
    renderings = render_segments(issue, segments.values(), brand, registry=registry)
    values = sample_values(brand)
    pages: dict[str, str] = {}
    labels: dict[str, str] = {}
    for slug, segment in segments.items():
        rendering = renderings[issue.segment_for(segment)]
        pages[f"email-{slug}.html"] = placeholders.SplitTemplate.split(rendering.html, escape_html=True).fill(
            values
        )
        pages[f"email-{slug}.txt"] = placeholders.SplitTemplate.split(rendering.text, escape_html=False).fill(
            values
        )
        labels[slug] = _label(slug, segment, registry, issue.lang)
        pages[f"{slug}.html"] = _frames_page(issue, slug, labels[slug], rendering)
    pages["index.html"] = _index_page(
        issue, labels, {slug: renderings[issue.segment_for(s)] for slug, s in segments.items()}
    )
    return pages


def write_preview(pages: Mapping[str, str], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, content in pages.items():
        (out_dir / name).write_text(content, encoding="utf-8")
    return out_dir / "index.html"


def _label(slug: str, segment: frozenset[str], registry: TopicRegistry | None, lang: str) -> str:
    if slug == "all":
        return "All topics"
    if slug == "general":
        return "General only (no topic)"
    (key,) = segment
    if registry is None:
        return f"Topic: {key}"
    topic = {t.key: t for t in registry.topics}.get(key)
    return f"Topic: {topic.display_name(lang.split('-')[0]) if topic else key}"


_STYLE = (
    "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:24px;background:#f6f7f9;color:#1f2933}"
    "a{color:#1d5fa8}.frames{display:flex;gap:24px;align-items:flex-start;flex-wrap:wrap}"
    "figure{margin:0}figcaption{font-size:13px;color:#4b5563;margin-bottom:6px}"
    "iframe{border:1px solid #cbd2d9;background:#fff;height:1400px}li{margin:4px 0}"
    ".muted{color:#6b7280;font-size:13px}"
)


def _frames_page(issue: Issue, slug: str, label: str, rendering: Rendering) -> str:
    frames = "".join(
        f'<figure><figcaption>{width} px</figcaption><iframe src="email-{slug}.html" width="{width}" '
        f'title="{width} px"></iframe></figure>'
        for width in FRAME_WIDTHS
    )
    return (
        f'<!doctype html><html lang="{escape(issue.lang)}"><head><meta charset="utf-8">'
        f"<title>{escape(label)} · {escape(issue.title)}</title><style>{_STYLE}</style></head><body>"
        f'<p><a href="index.html">← all segments</a> · <a href="email-{slug}.txt">text part</a></p>'
        f"<h1>{escape(label)}</h1><p>Subject: {escape(rendering.subject)}</p>"
        f'<p class="muted">Sections: {escape(" · ".join(rendering.section_headings))}</p>'
        f'<div class="frames">{frames}</div></body></html>\n'
    )


def _index_page(issue: Issue, labels: Mapping[str, str], renderings: Mapping[str, Rendering]) -> str:
    items = "".join(
        f'<li><a href="{slug}.html">{escape(labels[slug])}</a> '
        f'<span class="muted">— {escape(" · ".join(renderings[slug].section_headings))} '
        f"({len(renderings[slug].html.encode()) // 1024} KB)</span></li>"
        for slug in labels
    )
    warnings = "".join(f"<li>{escape(w)}</li>" for w in issue.warnings)
    warning_block = f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""
    return (
        f'<!doctype html><html lang="{escape(issue.lang)}"><head><meta charset="utf-8">'
        f"<title>Preview · {escape(issue.title)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{escape(issue.title)}</h1><p class="muted">{escape(issue.source)}</p>'
        f"<h2>Segments</h2><ul>{items}</ul>{warning_block}</body></html>\n"
    )
