from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from support.paths import REFERENCE_ISSUE, TYPO_ISSUE, fixture_issues

from mailer.errors import IssueError
from mailer.rendering.issue import load_issue, parse_issue
from mailer.topics import TopicRegistry


def test_there_are_ten_fixture_issues() -> None:
    assert len(fixture_issues()) == 10


@pytest.mark.parametrize("path", fixture_issues(), ids=lambda p: p.name[:10])
def test_every_fixture_issue_parses_and_topic_headings_land_in_their_topic(
    path: Path, registry: TopicRegistry
) -> None:
    issue = load_issue(path, registry)
    assert issue.title.startswith("OpenStack社区动态")
    assert issue.date == dt.date.fromisoformat(path.name[:10])
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    headings = re.findall(r"^#{2,3} +(.+?)\s*$", text, flags=re.M)
    assert [s.heading for s in issue.sections if s.level] == headings
    for section in issue.sections:
        expected = registry.match(section.heading) if section.level == 3 else None
        if section.level == 3:
            assert section.topic == expected, section.heading
    # the sections hold the whole body: no line of text is lost between them
    body_words = set(re.findall(r"https?://\S+?(?=[>)\s]|$)", text))
    section_words = set(re.findall(r"https?://\S+?(?=[>)\s]|$)", "".join(s.markdown for s in issue.sections)))
    assert body_words == section_words


def test_common_and_top_sections_are_general(registry: TopicRegistry) -> None:
    issue = load_issue(REFERENCE_ISSUE, registry)
    general = [s.heading for s in issue.sections if s.topic is None and s.level]
    assert general == ["业界动态", "社区跟踪", "Common"]
    assert issue.topics == {"tempest", "nova", "ceilometer", "neutron"}


def test_typo_heading_is_a_warning_with_suggestion(registry: TopicRegistry) -> None:
    issue = load_issue(TYPO_ISSUE, registry)
    assert any(w.startswith("Tempst: did you mean Tempest?") for w in issue.warnings)
    tempst = next(s for s in issue.sections if s.heading == "Tempst")
    assert tempst.topic is None  # a typo is not guessed into a topic: it goes to everyone


def test_sections_for_a_segment(registry: TopicRegistry) -> None:
    issue = load_issue(REFERENCE_ISSUE, registry)
    nova = [s.heading for s in issue.sections_for({"nova"})]
    assert nova == ["业界动态", "社区跟踪", "Common", "Nova"]
    everything = [s.heading for s in issue.sections_for(issue.topics)]
    assert everything == ["业界动态", "社区跟踪", "Common", "Tempest", "Nova", "Ceilometer", "Neutron"]


def test_heading_only_general_section_is_dropped_when_nothing_follows(registry: TopicRegistry) -> None:
    text = "---\ntitle: T\n---\nintro\n\n## News\nsome news\n\n## Projects\n\n### Nova\nnova news\n"
    issue = parse_issue(text, "x.md", registry)
    assert [s.heading for s in issue.sections_for(set())] == ["", "News"]
    assert [s.heading for s in issue.sections_for({"nova"})] == ["", "News", "Projects", "Nova"]


def test_topic_at_level_two_case_insensitive_and_children_inherit(registry: TopicRegistry) -> None:
    text = "---\ntitle: T\n---\n##  NEUTRON  \nn\n### Bugs\nb\n## Other\no\n### qa\nq\n"
    issue = parse_issue(text, "x.md", registry)
    assert [(s.heading, s.topic) for s in issue.sections if s.level] == [
        ("NEUTRON", "neutron"),
        ("Bugs", "neutron"),
        ("Other", None),
        ("qa", "tempest"),
    ]


def test_bom_crlf_and_front_matter_fields(registry: TopicRegistry) -> None:
    text = "\ufeff---\r\ntitle: Hello\r\ndate: 2020-02-03\r\nlang: en\r\n---\r\n## Nova\r\nx\r\n"
    issue = parse_issue(text, "no-date-prefix.md", registry, default_lang="zh")
    assert issue.date == dt.date(2020, 2, 3)
    assert issue.lang == "en"
    assert issue.sections[1].markdown == "x\n"


def test_headings_inside_code_fences_do_not_split(registry: TopicRegistry) -> None:
    text = "---\ntitle: T\n---\n## News\n```\n## Nova\n```\n"
    issue = parse_issue(text, "x.md", registry)
    assert [s.heading for s in issue.sections if s.level] == ["News"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        ("---\ntitle: 你好\n---\nbody\n".encode("gbk"), "not UTF-8"),
        (b"# just markdown\n", "no YAML front matter"),
        (b"---\ntitle: [unclosed\n---\nbody\n", "broken front matter"),
        (b"---\ntitle: x\nbody without end\n", "not closed"),
        (b"---\n- a\n- b\n---\nbody\n", "must be a YAML mapping"),
        (b"---\ndescription: x\n---\nbody\n", "no title"),
        (b"---\ntitle: x\n---\n\n  \n", "no body"),
        (b"---\ntitle: x\ndate: someday\n---\nbody\n", "not YYYY-MM-DD"),
        # a "billion laughs" alias bomb: 400 bytes that expand to gigabytes
        (
            b"---\na: &l0 [x, x, x, x, x, x, x, x, x]\n"
            + b"".join(b"l%d: &l%d [%s]\n" % (i, i, b", ".join([b"*l%d" % (i - 1)] * 9)) for i in range(1, 9))
            + b"title: *l8\n---\nbody\n",
            "YAML alias",
        ),
        (b"---\ntitle: " + b"[" * 8000 + b"]" * 8000 + b"\n---\nbody\n", "nested too deep"),
        (b"---\ntitle: x\ndescription: " + b"y" * 20000 + b"\n---\nbody\n", "at most 16,384"),
        (b"---\ntitle: {a: 1}\n---\nbody\n", "title must be text"),
        # thousands of nested <strong> crash the MJML compiler: refused before any rendering
        (b"---\ntitle: x\n---\n\n## A\n\n" + b"*" * 2000 + b"x" + b"*" * 2000 + b"\n", "1001 deep"),
    ],
)
def test_bad_issue_files_raise_one_line_errors_naming_the_file(
    tmp_path: Path, registry: TopicRegistry, content: bytes, problem: str
) -> None:
    path = tmp_path / "bad.md"
    path.write_bytes(content)
    with pytest.raises(IssueError) as caught:
        load_issue(path, registry)
    message = str(caught.value)
    assert problem in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path, registry: TopicRegistry) -> None:
    with pytest.raises(IssueError, match="file not found"):
        load_issue(tmp_path / "nope.md", registry)
