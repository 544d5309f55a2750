"""Benchmark: rendering the reference issue per segment, against a bare baseline in the same run.

    .venv/bin/python bench/render.py [--runs 60] [--issue FILE.md]

The issue is the project's sample reference issue (tests/fixtures/issues), or any issue file given, e.g.
the real reference issue: --issue ../shared/fixtures/issues/2014-01-16-openstack-activity-1226-0116.md.

Prints medians over the runs (measurements interleaved, so machine noise hits all alike):
- baseline: markdown-it render of the issue body + mjml2html of a one-column MJML around it + premailer
  (no network) -- the least any Markdown -> MJML -> premailer pipeline does for one email;
- render_segments per segment: the production path (Markdown parsed once, one compiled document per
  issue, segments cut out of it), for the preview's 6 segments and for all 16 topic subsets;
- render(): one segment (all topics) through the whole pipeline from scratch, nothing reused.
The target of issue 2: <= 10 ms per segment and a ratio <= 1.5 to the baseline.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from markdown_it import MarkdownIt  # noqa: E402
from mjml import mjml2html  # noqa: E402
from premailer import Premailer  # noqa: E402

from mailer.rendering.issue import load_issue  # noqa: E402
from mailer.rendering.render import Brand, render, render_segments  # noqa: E402
from mailer.topics import load_registry  # noqa: E402

# the project's sample reference issue (tests/support/paths.py: REFERENCE_ISSUE): zh, CRLF, four topics
REFERENCE = ROOT / "tests" / "fixtures" / "issues" / "2025-06-12-community-weekly-06.md"


def baseline_factory(body: str) -> Callable[[], str]:
    md = MarkdownIt("commonmark")

    def baseline() -> str:
        html = md.render(body)
        mjml = (
            "<mjml><mj-body><mj-section><mj-column><mj-text>"
            + html
            + "</mj-text></mj-column></mj-section></mj-body></mjml>"
        )
        compiled = mjml2html(mjml, fonts={})
        return Premailer(
            compiled, allow_network=False, cssutils_logging_level=logging.CRITICAL, disable_validation=True
        ).transform()

    return baseline


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=60, help="runs per measurement (>= 50 for the figures)")
    parser.add_argument(
        "--issue",
        type=Path,
        default=REFERENCE,
        help="the issue file (default: the sample reference issue); every subset of its topics is rendered",
    )
    args = parser.parse_args()

    registry = load_registry(ROOT / "templates" / "topics.yaml")
    issue = load_issue(args.issue, registry)
    brand = Brand(
        name="OpenStack社区动态",
        sender_name="OpenStack社区动态",
        postal_address="OpenStack 中国社区 · 示例路 1 号",
        base_url="https://news.example.org",
    )
    body = "\n".join(
        ("#" * s.level + " " + s.heading + "\n" if s.level else "") + s.markdown for s in issue.sections
    )
    topics = sorted(issue.topics)
    preview = [issue.topics, frozenset()] + [frozenset({t}) for t in topics]
    subsets = [frozenset(c) for n in range(len(topics) + 1) for c in combinations(topics, n)]

    cases: dict[str, tuple[Callable[[], object], int]] = {
        "baseline (md + mjml2html + premailer), per email": (baseline_factory(body), 1),
        f"render_segments, {len(preview)} preview segments, per segment": (
            lambda: render_segments(issue, preview, brand, registry=registry),
            len(preview),
        ),
        f"render_segments, all {len(subsets)} topic subsets, per segment": (
            lambda: render_segments(issue, subsets, brand, registry=registry),
            len(subsets),
        ),
        "render() one segment from scratch (all topics)": (
            lambda: render(issue, issue.topics, brand, registry=registry),
            1,
        ),
    }
    for function, _ in cases.values():  # warm up: imports, template compilation, CSS parse caches
        function()
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (function, per) in cases.items():
            start = time.perf_counter()
            function()
            timings[name].append((time.perf_counter() - start) * 1000 / per)

    baseline = statistics.median(timings[next(iter(cases))])
    print(f"issue: {args.issue.name} ({len(body.encode())} bytes of Markdown, topics {topics})")
    print(f"runs: {args.runs} per measurement, medians in ms")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"  {name:<62} {median:7.2f} ms   ratio {median / baseline:4.2f}")
    html_size = len(render(issue, issue.topics, brand, registry=registry).html.encode())
    print(f"HTML size, all topics: {html_size / 1024:.1f} KB (Gmail clips at 102 KB)")


if __name__ == "__main__":
    main()
