"""Checks that hold for every issue file, whoever wrote it: the ordinary tests run them over the project's
sample issues (``sample_issues()``), ``tests/real_world`` over the real ones when ../shared is there."""

from __future__ import annotations

import re
from itertools import combinations
from pathlib import Path

from mailer.rendering import placeholders
from mailer.rendering.issue import Issue, load_issue
from mailer.rendering.render import Brand, _Renderer, render, render_segments
from mailer.topics import TopicRegistry

GMAIL_CLIP_BYTES = 102 * 1024
_HEADING_LINE = re.compile(r"^#{2,3} +(.+?)\s*$", re.M)
_URL = re.compile(r"https?://\S+?(?=[>)\s]|$)")


def sections_follow_the_file(path: Path, registry: TopicRegistry) -> Issue:
    """Every ``##``/``###`` line of the file starts a section, in order; a heading naming a topic lands in
    it (a ``###`` under a ``##`` topic section inherits that topic); no link is lost between sections and
    no CR is left in them. Returns the issue for the caller's own checks."""
    issue = load_issue(path, registry)
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n")
    assert [s.heading for s in issue.sections if s.level] == _HEADING_LINE.findall(text)
    enclosing: str | None = None
    for section in issue.sections:
        if section.level == 2:
            enclosing = registry.match(section.heading)
            assert section.topic == enclosing, section.heading
        elif section.level == 3:
            assert section.topic == (registry.match(section.heading) or enclosing), section.heading
        assert "\r" not in section.markdown, section.heading
    assert set(_URL.findall(text)) == set(_URL.findall("".join(s.markdown for s in issue.sections)))
    return issue


def renders_for_every_preview_segment(path: Path, registry: TopicRegistry, brand: Brand) -> None:
    """All topics, none, and each topic alone: each rendering holds its segment's sections (anchors and
    headings), the subject, every placeholder in both parts; the whole issue stays under Gmail's clip."""
    issue = load_issue(path, registry)
    assert issue.topics, "an issue with no topic section previews nothing but the general segment"
    segments = [issue.topics, frozenset()] + [frozenset({t}) for t in issue.topics]
    renderings = render_segments(issue, segments, brand, registry=registry)
    assert set(renderings) == set(segments)
    for segment, rendering in renderings.items():
        assert rendering.segment == segment
        assert rendering.subject == issue.title
        assert placeholders.find(rendering.html) == set(placeholders.NAMES)
        assert placeholders.find(rendering.text) == set(placeholders.NAMES)
        kept = [s for s in issue.sections_for(segment) if s.level]
        assert rendering.section_headings == tuple(s.heading for s in kept)
        for section in kept:
            assert f'id="{section.anchor}"' in rendering.html
    assert len(renderings[issue.topics].html.encode()) < GMAIL_CLIP_BYTES


def cut_out_segments_equal_the_whole_pipeline(path: Path, registry: TopicRegistry, brand: Brand) -> None:
    """render_segments cuts each segment (none, all, each topic, each pair of topics) out of one compiled
    document; it must give exactly what render gives for that segment alone, on the fast path."""
    issue = load_issue(path, registry)
    topics = sorted(issue.topics)
    segments = [frozenset(), issue.topics]
    segments += [frozenset({t}) for t in topics] + [frozenset(pair) for pair in combinations(topics, 2)]
    fast = render_segments(issue, segments, brand, registry=registry)
    renderer = _Renderer(issue, brand, registry)
    for segment in segments:
        # no silent fallback hiding a difference
        assert renderer._html_from_skeleton(issue.sections_for(segment)) is not None, segment
        assert fast[segment] == render(issue, segment, brand, registry=registry), segment
