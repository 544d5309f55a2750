"""An issue file (Markdown with YAML front matter) -> Issue with its sections. Pure but for ``load_issue``.

Sections start at ``##`` and ``###`` headings. A heading that names a known topic starts that topic's
section; a ``###`` section under a ``##`` topic section belongs to that topic too; every other section is
general and goes to everyone. Text before the first heading is the intro, also for everyone.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mailer.errors import IssueError
from mailer.rendering import markdown_html, placeholders
from mailer.rendering.markdown_html import inline_plain
from mailer.topics import TopicRegistry

MAX_FRONT_MATTER = 16 * 1024  # characters: a title, a date, a description
TEXT_KEYS = ("title", "subject", "description", "preheader", "category", "lang")
_FILE_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})-")
_HEADING_RE = re.compile(r"^(#{2,3})[ \t]+(.*?)[ \t]*#*[ \t]*$")
_FENCE_RE = re.compile(r"^(```|~~~)")


@dataclass(frozen=True)
class Section:
    index: int  # position in the issue, 0 for the intro; also its anchor (sec-N)
    level: int  # 0 for the intro, 2 or 3 for a heading
    heading: str  # the heading's plain text (its Markdown rendered to text): tables of contents, matching
    topic: str | None  # None: general, for everyone
    markdown: str  # the body below the heading, LF line endings, without the heading
    heading_markdown: str = ""  # the heading as written (links, emphasis, code), for the rendered heading

    @property
    def anchor(self) -> str:
        return f"sec-{self.index}"

    @property
    def is_empty(self) -> bool:
        return not self.markdown.strip()


@dataclass(frozen=True)
class Issue:
    source: str  # file name, for messages
    title: str
    description: str
    category: str
    date: dt.date | None
    lang: str
    sections: tuple[Section, ...]
    warnings: tuple[str, ...] = ()
    front_matter: Mapping[str, Any] = field(default_factory=dict)

    @property
    def topics(self) -> frozenset[str]:
        """Topics that have a non-empty section in this issue."""
        return frozenset(s.topic for s in self.sections if s.topic and not s.is_empty)

    def segment_for(self, followed: Collection[str]) -> frozenset[str]:
        """A subscriber's segment: the topics they follow that this issue has."""
        return self.topics.intersection(followed)

    def sections_for(self, segment: Collection[str]) -> tuple[Section, ...]:
        """The sections a segment receives, in issue order.

        General sections always; topic sections of the segment's topics. A heading-only general section
        (such as ``## 社区跟踪``) is kept only when a deeper section under it is kept.
        """
        wanted = [s for s in self.sections if s.topic is None or s.topic in segment]
        kept: list[Section] = []
        for position, section in enumerate(wanted):
            if section.is_empty and section.topic is None and section.level > 0:
                following = wanted[position + 1] if position + 1 < len(wanted) else None
                if following is None or following.level <= section.level:
                    continue
            if section.level == 0 and section.is_empty:
                continue
            kept.append(section)
        return tuple(kept)


def parse_issue(text: str, source: str, registry: TopicRegistry, default_lang: str = "zh") -> Issue:
    """Parse the text of an issue file. ``source`` names the file in errors and supplies a date prefix."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    _refuse_placeholders(text, source)
    front, body = _split_front_matter(text, source)
    title = str(front.get("title") or "").strip()
    if not title:
        raise IssueError(source, "the front matter has no title")
    for key in ("title", "subject", "description", "preheader"):
        _refuse_control_characters(str(front.get(key) or ""), source, f"the {key}")
    if not body.strip():
        raise IssueError(source, "the issue has no body below the front matter")
    sections, warnings = _split_sections(body, registry)
    for section in sections:
        _refuse_control_characters(section.heading, source, f"the heading {section.heading!r}")
        _refuse_deep_nesting(section, source)
    return Issue(
        source=source,
        title=title,
        description=str(front.get("description") or "").strip(),
        category=str(front.get("category") or "").strip(),
        date=_issue_date(front, source),
        lang=str(front.get("lang") or default_lang).strip(),
        sections=tuple(sections),
        warnings=tuple(warnings),
        front_matter=front,
    )


def load_issue(path: Path | str, registry: TopicRegistry, default_lang: str = "zh") -> Issue:
    """Read an issue file (UTF-8 with or without BOM, CRLF or LF) and parse it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IssueError(path, "file not found") from None
    except IsADirectoryError:
        raise IssueError(path, "is a directory, not an issue file") from None
    except OSError as exc:
        raise IssueError(path, f"cannot read: {exc.strerror}") from None
    if b"\x00" in raw[:8192]:
        raise IssueError(path, "is a binary file, not Markdown text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IssueError(path, f"is not UTF-8 text (bad byte at offset {exc.start})") from None
    return parse_issue(text, str(path), registry, default_lang)


def _refuse_placeholders(text: str, source: str) -> None:
    marker = placeholders.first_marker(text)
    if marker is not None:
        line = text[: text.index(marker)].count("\n") + 1
        raise IssueError(
            source,
            f"line {line}: {marker} is the syntax of the per-recipient placeholders and cannot be "
            "part of an issue",
        )


def _refuse_control_characters(value: str, source: str, what: str) -> None:
    bad = next((c for c in value if c not in "\t" and unicodedata.category(c) == "Cc"), None)
    if bad is not None:
        raise IssueError(source, f"{what} contains the control character U+{ord(bad):04X}")


def _refuse_deep_nesting(section: Section, source: str) -> None:
    depth = markdown_html.nesting_depth(markdown_html.parse(section.markdown, None))
    if depth > markdown_html.MAX_NESTING:
        raise IssueError(
            source,
            f"the section {section.heading!r} nests emphasis, lists or quotes {depth} deep; at most "
            f"{markdown_html.MAX_NESTING}",
        )


MAX_FRONT_MATTER_NESTING = 16  # [ and { inside one another: a list of names needs one


def _shallow(text: str, source: str) -> None:
    """PyYAML's scanner takes quadratic time on flow collections nested deep (8,000 ``[`` took 25 s
    before failing): count the nesting outside quotes first, in one pass."""
    depth = deepest = 0
    quote = ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "\n":
            depth = 0  # a flow collection spanning lines is rare in front matter; counting per line is enough
    if deepest > MAX_FRONT_MATTER_NESTING:
        raise IssueError(
            source, f"broken front matter: lists nested {deepest} deep; at most {MAX_FRONT_MATTER_NESTING}"
        )


def _no_aliases(text: str, source: str) -> None:
    """YAML anchors and aliases (``&a`` / ``*a``) expand to copies: a few hundred bytes of them make
    gigabytes (the "billion laughs"). An issue's front matter never needs them."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise IssueError(source, "the front matter uses a YAML alias (*name); write the value out")


def _split_front_matter(text: str, source: str) -> tuple[dict[str, Any], str]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise IssueError(source, "no YAML front matter (the file must start with a '---' line)")
    for end in range(1, len(lines)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        raise IssueError(source, "the front matter is not closed by a '---' line")
    header = "\n".join(lines[1:end])
    if len(header) > MAX_FRONT_MATTER:
        raise IssueError(
            source, f"the front matter is {len(header):,} characters; at most {MAX_FRONT_MATTER:,}"
        )
    _shallow(header, source)
    try:
        _no_aliases(header, source)
        front = yaml.safe_load(header)
    except RecursionError:
        raise IssueError(source, "broken front matter: nested too deep") from None
    except ValueError as exc:  # a value YAML recognises but cannot build, such as the date 2024-13-45
        raise IssueError(source, f"broken front matter: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise IssueError(source, f"broken front matter{where}: {problem}") from None
    if front is None:
        front = {}
    if not isinstance(front, dict):
        raise IssueError(source, "the front matter must be a YAML mapping of keys to values")
    for key in TEXT_KEYS:
        if isinstance(front.get(key), (list, dict, set)):
            raise IssueError(source, f"the front matter's {key} must be text, not a list or mapping")
    return {str(k): v for k, v in front.items()}, "\n".join(lines[end + 1 :])


def _issue_date(front: Mapping[str, Any], source: str) -> dt.date | None:
    value = front.get("date")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise IssueError(source, f"front matter date {value!r} is not YYYY-MM-DD") from None
    match = _FILE_DATE_RE.match(Path(source).name)
    if match:
        try:
            return dt.date(*map(int, match.groups()))
        except ValueError:
            return None
    return None


def _split_sections(body: str, registry: TopicRegistry) -> tuple[list[Section], list[str]]:
    sections: list[Section] = []
    warnings: list[str] = []
    level, heading, heading_markdown, topic = 0, "", "", None
    parent_topic: str | None = None  # topic of the enclosing ## section, inherited by its ### children
    lines: list[str] = []
    in_fence = False

    def close() -> None:
        body = "\n".join(lines).strip("\n") + "\n"
        sections.append(Section(len(sections), level, heading, topic, body, heading_markdown))

    for line in body.split("\n"):
        if _FENCE_RE.match(line.lstrip()):
            in_fence = not in_fence
        match = None if in_fence else _HEADING_RE.match(line)
        if match is None:
            lines.append(line)
            continue
        close()
        heading_markdown = match.group(2).strip()
        level, heading, lines = len(match.group(1)), inline_plain(heading_markdown), []
        topic = registry.match(heading)
        if level == 2:
            parent_topic = topic
        elif topic is None:
            topic = parent_topic
        if registry.match(heading) is None:
            suggestion = registry.suggest(heading)
            if suggestion is not None:
                warnings.append(
                    f"{heading}: did you mean {suggestion.display_name('en')}? "
                    "(the section goes to everyone as a general section)"
                )
    close()
    return sections, warnings
