"""Issue + segment + brand -> Rendering (subject, preheader, HTML, text). Pure but for reading templates.

Pipeline: each section's Markdown is parsed once per issue (``rendering.markdown_html``); per segment the
kept sections go through the Jinja2 template ``email/newsletter.mjml.j2`` -> mjml-python -> premailer
(no network, media queries kept) for the HTML, and ``email/newsletter.txt.j2`` with the text written
from the same tokens (``mailer.rendering.text_part``). Per-recipient values stay placeholders
(``mailer.rendering.placeholders.marker``), filled later by substitution without rendering again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from markdown_it.token import Token
from markupsafe import Markup
from mjml import mjml2html
from premailer import Premailer

from mailer.errors import IssueError, TemplateError
from mailer.rendering import placeholders
from mailer.rendering.issue import Issue, Section
from mailer.rendering.markdown_html import (
    collect_references,
    parse,
    parse_inline,
    render_html,
    render_inline_html,
)
from mailer.rendering.text_part import LinkRefs, inline_to_text, tokens_to_text, underline
from mailer.settings import TEMPLATES_DIR, Settings
from mailer.topics import TopicRegistry, normalise_heading
from mailer.urls import Urls

__all__ = [
    "CJK_FONT_STACK",
    "Brand",
    "Rendering",
    "check_content",
    "compile_mjml",
    "render",
    "render_segments",
]

# System fonts only (no web font may load); CJK families first so Chinese never falls back to a
# Latin font's fallback glyphs, then common Latin ones.
CJK_FONT_STACK = (
    "'PingFang SC','Hiragino Sans GB','Microsoft YaHei','Noto Sans CJK SC','Noto Sans SC',"
    "'Source Han Sans SC','WenQuanYi Micro Hei',Helvetica,Arial,sans-serif"
)
HTML_TEMPLATE = "newsletter.mjml.j2"
TEXT_TEMPLATE = "newsletter.txt.j2"
STYLES_TEMPLATE = "_styles.j2"
_DOCTYPE = "<!doctype html>\n"
_PREHEADER_MAX = 140
_REF_RE = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Brand:
    """What the email says about the newsletter itself; built from settings at the edge."""

    name: str
    sender_name: str
    postal_address: str
    base_url: str
    default_lang: str = "zh"
    templates_dir: Path = TEMPLATES_DIR  # holds email/newsletter.mjml.j2 and email/newsletter.txt.j2
    font_stack: str = CJK_FONT_STACK

    @classmethod
    def from_settings(cls, settings: Settings) -> Brand:
        return cls(
            name=settings.name,
            sender_name=settings.sender_name,
            postal_address=settings.postal_address,
            base_url=settings.base_url,
            default_lang=settings.default_lang,
            templates_dir=Path(settings.templates_dir),
        )

    @property
    def email_templates_dir(self) -> Path:
        return self.templates_dir / "email"


@dataclass(frozen=True)
class Rendering:
    segment: frozenset[str]
    subject: str
    preheader: str
    html: str
    text: str
    section_headings: tuple[str, ...]


def render(
    issue: Issue, segment: Collection[str], brand: Brand, *, registry: TopicRegistry | None = None
) -> Rendering:
    """The email for one segment (topic keys; those the issue lacks are ignored)."""
    return _Renderer(issue, brand, registry).render(issue.segment_for(segment))


def render_segments(
    issue: Issue,
    segments: Iterable[Collection[str]],
    brand: Brand,
    *,
    registry: TopicRegistry | None = None,
) -> dict[frozenset[str], Rendering]:
    """Each distinct segment (intersected with ``issue.topics``) rendered once; Markdown parsed once."""
    renderer = _Renderer(issue, brand, registry)
    renderings: dict[frozenset[str], Rendering] = {}
    for segment in segments:
        key = issue.segment_for(segment)
        if key not in renderings:
            renderings[key] = renderer.render(key, fast=True)
    return renderings


def check_content(issue: Issue, brand: Brand, *, registry: TopicRegistry | None = None) -> None:
    """Parse every section's Markdown as a rendering would (milliseconds, no MJML): an IssueError now
    for content that cannot go out, before a campaign holding it is stored."""
    renderer = _Renderer(issue, brand, registry)
    for section in issue.sections:
        renderer.part(section)


def compile_mjml(mjml_source: str, source_name: str) -> str:
    """MJML -> standalone HTML with CSS inlined (premailer, no network, media queries kept)."""
    try:
        html = mjml2html(mjml_source, fonts={})  # fonts={}: MJML adds no Google Fonts <link>
    except Exception as exc:  # mjml-python raises a bare ValueError for anything its parser rejects
        raise TemplateError(f"{source_name}: MJML rejected the template: {_one_line(exc)}") from None
    try:
        html = Premailer(
            html,
            allow_network=False,
            allow_loading_external_files=False,
            remove_classes=False,  # the media queries select by class
            strip_important=False,  # media queries need !important to beat the inlined styles
            disable_validation=True,
            cssutils_logging_level=logging.CRITICAL,
        ).transform()
    except Exception as exc:  # lxml or cssutils choking on what the template produced
        raise TemplateError(f"{source_name}: CSS inlining failed: {_one_line(exc)}") from None
    # premailer serialises the lxml tree without the doctype; without it browsers use quirks mode.
    return html if html.lstrip()[:9].lower() == "<!doctype" else _DOCTYPE + html


@dataclass(frozen=True)
class _Part:
    tokens: list[Token]
    html: Markup
    heading_tokens: list[Token]  # the heading's inline Markdown
    heading_html: Markup


# The template brackets each part that differs between segments (a section, a TOC entry) with these.
_UNIT_RE = re.compile(r"<!--nl:begin:([a-z0-9-]+)-->.*?<!--nl:end:\1-->", re.S)
_UNIT_MARK_RE = re.compile(r"<!--nl:(?:begin|end):[a-z0-9-]+-->")


class _Renderer:
    """Renders segments of one issue: Markdown parsed once per section, MJML + premailer once per issue.

    ``render(segment, fast=False)`` runs the whole pipeline on the segment's sections. With ``fast``,
    the HTML is cut out of one document holding every section, compiled once (premailer is the costly
    step); cutting whole units between the template's marker comments yields the same bytes as the
    whole pipeline (tests/test_render_equivalence.py holds it to that), and whenever a segment's
    document would differ in shape (no TOC at all), it falls back to the whole pipeline.
    """

    def __init__(self, issue: Issue, brand: Brand, registry: TopicRegistry | None) -> None:
        self.issue = issue
        self.brand = brand
        self.env = _environment(brand.email_templates_dir)
        self.styles = _content_styles(self.env)
        self.references = collect_references(s.markdown for s in issue.sections)
        self.lang = issue.lang or brand.default_lang
        self.lang_key = self.lang.replace("_", "-").split("-")[0].lower()
        self.topic_names = _topic_names(issue, registry, self.lang_key)
        self.topic_labels = _topic_labels(issue, registry, self.lang_key)
        self.topic_order = list(dict.fromkeys(s.topic for s in issue.sections if s.topic and not s.is_empty))
        self.subject = _subject(issue)
        self._parts: dict[int, _Part] = {}
        self._skeleton: tuple[str, frozenset[str], bool] | None = None  # html, unit ids, has a TOC
        self.preheader = _preheader(issue, self)

    def part(self, section: Section) -> _Part:
        part = self._parts.get(section.index)
        if part is None:
            tokens = parse(section.markdown, self.brand.base_url, self.references)
            html = render_html(tokens, self.styles)
            heading_source = section.heading_markdown or section.heading
            heading_tokens = parse_inline(heading_source, self.brand.base_url, self.references)
            heading_html = render_inline_html(heading_tokens, self.styles)
            # Markdown can make the placeholder syntax out of text that did not hold it (escapes,
            # entities): content that reads like a placeholder is refused here too, not substituted.
            marker = (
                placeholders.first_marker(html)
                or placeholders.first_marker(heading_html)
                or placeholders.first_marker(tokens_to_text(tokens, LinkRefs()))
            )
            if marker is not None:
                where = f"section {section.heading!r}" if section.heading else "the introduction"
                raise IssueError(
                    self.issue.source,
                    f"{where} renders to {marker}, the syntax of the per-recipient placeholders",
                )
            part = self._parts[section.index] = _Part(
                tokens, Markup(html), heading_tokens, Markup(heading_html)
            )
        return part

    def render(self, segment: frozenset[str], *, fast: bool = False) -> Rendering:
        sections = self.issue.sections_for(segment)
        html = self._html_from_skeleton(sections) if fast else None
        if html is None:
            html = self._html(sections)
        return Rendering(
            segment=segment,
            subject=self.subject,
            preheader=self.preheader,
            html=html,
            text=self._text(sections),
            section_headings=tuple(s.heading for s in sections if s.level),
        )

    def _context(self, sections: tuple[Section, ...]) -> dict[str, Any]:
        return {
            "brand": self.brand,
            "issue": self.issue,
            "lang": self.lang,
            "lang_key": self.lang_key,
            "subject": self.subject,
            "preheader": self.preheader,
            "font_stack": self.brand.font_stack,
            "toc": [{"index": s.index, "level": s.level, "heading": s.heading} for s in sections if s.level],
            "m": {name: placeholders.marker(name) for name in placeholders.NAMES},
        }

    def _compiled(self, sections: tuple[Section, ...], addable: Sequence[str]) -> str:
        """The HTML document of these sections, marker comments still in; ``addable``: the topics its
        footer offers to add (each its own unit, so a segment keeps those it lacks)."""
        context = self._context(sections)
        context["sections"] = [
            {
                "level": s.level,
                "heading": s.heading,
                "heading_html": self.part(s).heading_html,
                "anchor": s.anchor,
                "topic_name": self.topic_names.get(s.index),
                "html": self.part(s).html,
                **self._topic_links(s),
            }
            for s in sections
        ]
        context["add_topics"] = self._add_links(addable)
        source = _render_template(self.env, HTML_TEMPLATE, context)
        return compile_mjml(source, str(self.brand.email_templates_dir / HTML_TEMPLATE))

    def _topic_links(self, section: Section) -> dict[str, str]:
        """A topic section's "stop receiving" link: the reader's preferences link plus a suffix fixed per
        topic (no per-recipient rendering: the placeholder is filled as every other one)."""
        if not section.topic or not section.level:
            return {"topic_label": "", "remove_suffix": ""}
        return {
            "topic_label": self.topic_labels.get(section.topic, section.heading),
            "remove_suffix": Urls.topic_suffix(remove=section.topic),
        }

    def _add_links(self, keys: Sequence[str]) -> list[dict[str, str]]:
        return [
            {"key": key, "name": self.topic_labels.get(key, key), "add_suffix": Urls.topic_suffix(add=key)}
            for key in keys
        ]

    def _addable(self, sections: tuple[Section, ...]) -> list[str]:
        """The issue's topics these sections leave out, in issue order: the footer offers to add them."""
        present = {s.topic for s in sections if s.topic}
        return [key for key in self.topic_order if key not in present]

    def _html(self, sections: tuple[Section, ...]) -> str:
        return _UNIT_MARK_RE.sub("", self._compiled(sections, self._addable(sections)))

    def _html_from_skeleton(self, sections: tuple[Section, ...]) -> str | None:
        if self._skeleton is None:
            every = tuple(s for s in self.issue.sections if s.level or not s.is_empty)
            html = self._compiled(every, self.topic_order)
            self._skeleton = (html, frozenset(_UNIT_RE.findall(html)), any(s.level for s in every))
        html, units, has_toc = self._skeleton
        wanted = {s.anchor for s in sections} | {f"toc-{s.index}" for s in sections if s.level}
        addable = self._addable(sections)
        wanted |= {f"add-{key}" for key in addable} | ({"add-open"} if addable else set())
        if not wanted <= units or has_toc != any(s.level for s in sections):
            return None
        kept = _UNIT_RE.sub(lambda m: m.group(0) if m.group(1) in wanted else "", html)
        return _UNIT_MARK_RE.sub("", kept)

    def _text(self, sections: tuple[Section, ...]) -> str:
        refs = LinkRefs()
        context = self._context(sections)
        context["sections"] = []
        for s in sections:
            heading = inline_to_text(self.part(s).heading_tokens, refs)  # its links numbered first
            context["sections"].append(
                {
                    "level": s.level,
                    "heading": heading,
                    "text": tokens_to_text(self.part(s).tokens, refs),
                    "underline": underline(heading, "=" if s.level == 2 else "-"),
                    **self._topic_links(s),
                }
            )
        context["links"] = refs.lines()
        context["add_topics"] = self._add_links(self._addable(sections))
        return _render_template(self.env, TEXT_TEMPLATE, context)


@lru_cache(maxsize=8)
def _environment(email_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(email_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("mjml.j2", "html.j2"), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # templates are read once per process; rendering stays free of file I/O
    )


@lru_cache(maxsize=8)
def _content_styles(env: jinja2.Environment) -> dict[str, str]:
    """Inline styles by tag from the template folder's ``_styles.j2`` (optional)."""
    try:
        module = env.get_template(STYLES_TEMPLATE).module
    except jinja2.TemplateNotFound:
        return {}
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{STYLES_TEMPLATE}: {_one_line(exc)}") from None
    styles = getattr(module, "styles", {})
    return {str(k): str(v) for k, v in styles.items()} if isinstance(styles, Mapping) else {}


def _render_template(env: jinja2.Environment, name: str, context: Mapping[str, Any]) -> str:
    loader = env.loader
    folder = Path(loader.searchpath[0]) if isinstance(loader, jinja2.FileSystemLoader) else Path()
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"{folder / str(exc.name)}: template not found") from None
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or str(folder / name)
        raise TemplateError(f"{where}:{exc.lineno}: {_one_line(exc.message or exc)}") from None
    except jinja2.TemplateError as exc:
        raise TemplateError(f"{folder / name}: {_one_line(exc)}") from None


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__


def _subject(issue: Issue) -> str:
    return " ".join(str(issue.front_matter.get("subject") or issue.title).split())


def _preheader(issue: Issue, renderer: _Renderer) -> str:
    """The front matter's ``preheader``, else its description, else the start of the first general text.

    The same for every segment, so that one compiled document serves them all.
    """
    text = str(issue.front_matter.get("preheader") or issue.description or "")
    if not text:
        first = next((s for s in issue.sections if s.topic is None and not s.is_empty), None)
        if first is not None:
            text = _REF_RE.sub("", tokens_to_text(renderer.part(first).tokens, LinkRefs()))
    text = " ".join(text.split())
    return text if len(text) <= _PREHEADER_MAX else text[: _PREHEADER_MAX - 1] + "…"


def _topic_labels(issue: Issue, registry: TopicRegistry | None, lang_key: str) -> dict[str, str]:
    """The name of each of the issue's topics in its language (the heading when the registry lacks it)."""
    labels = {s.topic: s.heading for s in issue.sections if s.topic}
    if registry is not None:
        for topic in registry.topics:
            if topic.key in labels:
                labels[topic.key] = topic.display_name(lang_key)
    return labels


def _topic_names(issue: Issue, registry: TopicRegistry | None, lang_key: str) -> dict[int, str]:
    """Per topic section, the topic's name in the issue's language when it says more than the heading."""
    if registry is None:
        return {}
    topics = {topic.key: topic for topic in registry.topics}
    names: dict[int, str] = {}
    for section in issue.sections:
        topic = topics.get(section.topic or "")
        if topic is None or not section.level:
            continue
        name = topic.display_name(lang_key)
        if normalise_heading(name) != normalise_heading(section.heading):
            names[section.index] = name
    return names
