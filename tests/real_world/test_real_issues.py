"""Replays of the ten real issues in ../shared/fixtures/issues (collected only when the folder exists, see
conftest.py): the checks every issue must pass (``support/issue_checks.py``), which the ordinary tests run
over the project's own sample issues, and what the real reference issue (第六期) and the real typo issue
(第五期, ``### Tempst``) hold, as the tests asserted before the samples replaced them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from support.issue_checks import (
    cut_out_segments_equal_the_whole_pipeline,
    renders_for_every_preview_segment,
    sections_follow_the_file,
)
from support.paths import SHARED_FIXTURES, real_issues

from mailer.rendering.issue import load_issue
from mailer.rendering.render import Brand, render
from mailer.topics import TopicRegistry

REAL_REFERENCE = SHARED_FIXTURES / "issues" / "2014-01-16-openstack-activity-1226-0116.md"
REAL_TYPO = SHARED_FIXTURES / "issues" / "2013-12-26-openstack-activity-1216-1226.md"
BRAND = Brand(
    name="OpenStack社区动态",
    sender_name="OpenStack社区动态",
    postal_address="OpenStack 中国社区 · 示例路 1 号",
    base_url="https://news.example.org",
)


def test_there_are_ten_real_issues_in_crlf_and_in_lf() -> None:
    issues = real_issues()
    assert len(issues) == 10
    assert REAL_REFERENCE in issues and REAL_TYPO in issues
    crlf = [path for path in issues if b"\r\n" in path.read_bytes()]
    assert 0 < len(crlf) < len(issues), "most are CRLF, some LF: the replay takes in both"


@pytest.mark.parametrize("path", real_issues(), ids=lambda p: p.name[:10])
def test_every_real_issue_parses_and_topic_headings_land_in_their_topic(
    path: Path, registry: TopicRegistry
) -> None:
    issue = sections_follow_the_file(path, registry)
    assert issue.title.startswith("OpenStack社区动态")
    assert issue.date == dt.date.fromisoformat(path.name[:10])  # Jekyll posts: the date is in the name


@pytest.mark.parametrize("path", real_issues(), ids=lambda p: p.name[:10])
def test_every_real_issue_renders_for_every_preview_segment(path: Path, registry: TopicRegistry) -> None:
    renders_for_every_preview_segment(path, registry, BRAND)


@pytest.mark.parametrize("path", real_issues(), ids=lambda p: p.name[:10])
def test_real_issues_cut_out_segments_equal_the_whole_pipeline(path: Path, registry: TopicRegistry) -> None:
    cut_out_segments_equal_the_whole_pipeline(path, registry, BRAND)


def test_the_real_reference_sections_and_segments(registry: TopicRegistry) -> None:
    issue = load_issue(REAL_REFERENCE, registry)
    assert [s.heading for s in issue.sections if s.topic is None and s.level] == [
        "业界动态",
        "社区跟踪",
        "Common",
    ]
    assert issue.topics == {"tempest", "nova", "ceilometer", "neutron"}
    assert [s.heading for s in issue.sections_for({"nova"})] == ["业界动态", "社区跟踪", "Common", "Nova"]
    everything = [s.heading for s in issue.sections_for(issue.topics)]
    assert everything == ["业界动态", "社区跟踪", "Common", "Tempest", "Nova", "Ceilometer", "Neutron"]


def test_the_real_typo_heading_is_one_warning_and_goes_to_everyone(registry: TopicRegistry) -> None:
    issue = load_issue(REAL_TYPO, registry)
    assert len(issue.warnings) == 1 and issue.warnings[0].startswith("Tempst: did you mean Tempest?")
    assert next(s for s in issue.sections if s.heading == "Tempst").topic is None


def test_the_real_reference_renders_autolinks_hard_breaks_and_chinese_as_written(
    registry: TopicRegistry,
) -> None:
    issue = load_issue(REAL_REFERENCE, registry)
    nova = render(issue, {"nova"}, BRAND, registry=registry)
    assert nova.section_headings == ("业界动态", "社区跟踪", "Common", "Nova")
    assert "Linux可以使用ssh免密码登录，window怎么办？" in nova.html
    assert "Linux可以使用ssh免密码登录，window怎么办？" in nova.text
    assert "ovs-vswitchd" not in nova.html  # the Tempest section's
    everything = render(issue, issue.topics, BRAND, registry=registry)
    assert '<a href="http://www.openstack.cn/p709.html"' in everything.html
    assert re.search(r'社区活跃度比较<br\s*/?>\s*<a href="http://www.qyjohn.net/\?p=3431"', everything.html)
    assert "主要观点见中国社区中文意译[1]" in everything.text
    assert len(re.findall(r"^\[\d+\] https?://\S+$", everything.text, re.M)) >= 20
