"""Parsing issue files into sections and topics, on the project's sample issues (tests/fixtures/issues)
and on hand-written snippets; ``tests/real_world`` replays the same checks on the real issues."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from support.issue_checks import sections_follow_the_file
from support.paths import (
    ENGLISH_ISSUE,
    LONG_ISSUE,
    REFERENCE_ISSUE,
    SAMPLE_ISSUES_DIR,
    TYPO_ISSUE,
    sample_issues,
)

from mailer.errors import IssueError
from mailer.rendering.issue import load_issue, parse_issue
from mailer.topics import TopicRegistry

# what each sample's front matter (or file name) says: title, date, language
SAMPLES = {
    REFERENCE_ISSUE.name: ("OpenStack社区动态样刊第六期(05.29-06.12)", dt.date(2025, 6, 12), "zh"),
    TYPO_ISSUE.name: ("OpenStack社区动态样刊第五期(05.15-05.29)", dt.date(2025, 5, 29), "zh"),
    LONG_ISSUE.name: ("OpenStack社区动态样刊第八期(06.19-07.03)·峰会特刊", dt.date(2025, 7, 3), "zh"),
    ENGLISH_ISSUE.name: (
        "OpenStack Community Weekly, sample issue 7 (06.12-06.19)",
        dt.date(2025, 6, 19),
        "en",
    ),
}


def test_the_sample_issues_are_the_ones_the_fixtures_readme_describes() -> None:
    assert sorted(p.name for p in sample_issues()) == sorted(SAMPLES)
    readme = (SAMPLE_ISSUES_DIR.parent / "README.md").read_text(encoding="utf-8")
    for name in SAMPLES:
        assert f"`{name}`" in readme, name


def test_the_crlf_samples_kept_their_line_endings() -> None:
    """Most real issues are CRLF: the reference and typo samples are too, byte for byte (.gitattributes
    keeps git from converting them), with their hard breaks (two spaces before the line end)."""
    for path in (REFERENCE_ISSUE, TYPO_ISSUE):
        raw = path.read_bytes()
        assert raw.count(b"\r\n") == raw.count(b"\n") > 50, path.name
        assert b"  \r\n" in raw, path.name
    for path in (LONG_ISSUE, ENGLISH_ISSUE):
        assert b"\r" not in path.read_bytes(), path.name


@pytest.mark.parametrize("path", sample_issues(), ids=lambda p: p.stem)
def test_every_sample_issue_parses_and_topic_headings_land_in_their_topic(
    path: Path, registry: TopicRegistry
) -> None:
    issue = sections_follow_the_file(path, registry)
    assert (issue.title, issue.date, issue.lang) == SAMPLES[path.name]
    assert issue.description
    assert bool(issue.warnings) == (path == TYPO_ISSUE), issue.warnings


def test_common_and_top_sections_are_general(registry: TopicRegistry) -> None:
    issue = load_issue(REFERENCE_ISSUE, registry)
    general = [s.heading for s in issue.sections if s.topic is None and s.level]
    assert general == ["业界动态", "社区跟踪", "Common"]
    assert issue.topics == {"tempest", "nova", "ceilometer", "neutron"}


def test_typo_heading_is_a_warning_with_suggestion(registry: TopicRegistry) -> None:
    issue = load_issue(TYPO_ISSUE, registry)
    assert len(issue.warnings) == 1 and issue.warnings[0].startswith("Tempst: did you mean Tempest?")
    tempst = next(s for s in issue.sections if s.heading == "Tempst")
    assert tempst.topic is None  # a typo is not guessed into a topic: it goes to everyone
    assert "tempest" not in issue.topics


def test_sections_for_a_segment(registry: TopicRegistry) -> None:
    issue = load_issue(REFERENCE_ISSUE, registry)
    nova = [s.heading for s in issue.sections_for({"nova"})]
    assert nova == ["业界动态", "社区跟踪", "Common", "Nova"]
    everything = [s.heading for s in issue.sections_for(issue.topics)]
    assert everything == ["业界动态", "社区跟踪", "Common", "Tempest", "Nova", "Ceilometer", "Neutron"]


def test_the_long_issue_has_many_topics_and_a_topic_section_at_level_two(registry: TopicRegistry) -> None:
    issue = load_issue(LONG_ISSUE, registry)
    assert len(issue.topics) == 17 and len([s for s in issue.sections if s.level]) == 25
    assert issue.sections[0].markdown.startswith("本期是峰会特刊")  # the intro, for everyone
    # "## Ceph 与存储" names a topic: its ### children go to the Ceph readers only
    ceph = [s.heading for s in issue.sections_for({"ceph"}) if s.topic]
    assert ceph == ["Ceph 与存储", "性能测试", "运维经验"]
    general = [s.heading for s in issue.sections_for(set()) if s.level]
    assert general[-1] == "活动预告" and "运维经验" not in general  # the next ## is general again
    # the long paragraphs are long
    assert max(len(p) for s in issue.sections for p in s.markdown.split("\n\n")) > 300


def test_english_headings_match_topics_by_name_and_alias(registry: TopicRegistry) -> None:
    issue = load_issue(ENGLISH_ISSUE, registry)
    assert [(s.heading, s.topic) for s in issue.sections if s.level > 2] == [
        ("Common", None),
        ("Compute", "nova"),
        ("Networking", "neutron"),
        ("Block Storage", "cinder"),
        ("Swift", "swift"),
        ("Keystone", "keystone"),
    ]
    assert issue.sections[0].markdown.startswith("A short week")  # an intro before the first heading


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
        (b"---\ntitle: " + b"[" * 8000 + b"]" * 8000 + b"\n---\nbody\n", "nested 8000 deep"),
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


def test_front_matter_nesting_is_refused_before_yaml_reads_it(registry: TopicRegistry) -> None:
    """PyYAML's scanner is quadratic in flow nesting (8,000 levels: 25 s): the depth is counted first,
    outside quotes; what a front matter really holds passes."""
    nested = "[" * 16 + "x" + "]" * 16
    issue = parse_issue(
        f"---\ntitle: T\ntags: {nested}\nnote: '[[[[[[[[[[[[[[[[[[[['\n---\nbody\n", "a.md", registry
    )
    assert issue.title == "T"
    with pytest.raises(IssueError, match="nested 17 deep; at most 16"):
        parse_issue("---\ntitle: T\ntags: " + "[" * 17 + "]" * 17 + "\n---\nbody\n", "a.md", registry)


def test_missing_file(tmp_path: Path, registry: TopicRegistry) -> None:
    with pytest.raises(IssueError, match="file not found"):
        load_issue(tmp_path / "nope.md", registry)
