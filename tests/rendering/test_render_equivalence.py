"""render_segments cuts each segment out of one compiled document per issue; it must give exactly the
bytes of the whole pipeline run on that segment alone (render)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.issue_checks import cut_out_segments_equal_the_whole_pipeline
from support.paths import sample_issues

from mailer.rendering.issue import parse_issue
from mailer.rendering.render import Brand, render, render_segments
from mailer.topics import TopicRegistry

BRAND = Brand(
    name="周报", sender_name="周报", postal_address="某地 1 号", base_url="https://news.example.org"
)


@pytest.mark.parametrize("path", sample_issues(), ids=lambda p: p.stem)
def test_cut_out_segments_equal_the_whole_pipeline(path: Path, registry: TopicRegistry) -> None:
    cut_out_segments_equal_the_whole_pipeline(path, registry, BRAND)


_HEADINGS = ["业界动态", "社区跟踪", "Common", "Nova", "Neutron", "Tempest", "Swift"]
_BODIES = ["", "一段文字，带标点。", "- a\n- b <https://example.org/x>", "[link](https://e.org/y)  \nnext"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    intro=st.sampled_from(_BODIES),
    sections=st.lists(
        st.tuples(st.sampled_from([2, 3]), st.sampled_from(_HEADINGS), st.sampled_from(_BODIES)),
        max_size=6,
    ),
    picks=st.lists(st.sets(st.sampled_from(["nova", "neutron", "tempest", "swift"])), min_size=1, max_size=4),
)
def test_any_issue_shape_renders_the_same_either_way(
    registry: TopicRegistry, intro: str, sections: list[tuple[int, str, str]], picks: list[set[str]]
) -> None:
    body = intro + "\n" + "".join(f"\n{'#' * level} {heading}\n{text}\n" for level, heading, text in sections)
    if not body.strip():
        body = "x"
    issue = parse_issue(f"---\ntitle: 第一期\n---\n{body}", "gen.md", registry)
    fast = render_segments(issue, picks, BRAND, registry=registry)
    for segment, rendering in fast.items():
        assert rendering == render(issue, segment, BRAND, registry=registry)
