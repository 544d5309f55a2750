"""The reference and the long sample issue's emails in a real browser (headless Chromium): nothing scrolls
sideways at phone (375 px) or desktop-email (600 px) width, and the screenshots are kept under
test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import LONG_ISSUE, REFERENCE_ISSUE

from mailer.rendering import placeholders
from mailer.rendering.issue import load_issue
from mailer.rendering.preview import sample_values
from mailer.rendering.render import Brand, render
from mailer.topics import TopicRegistry

pytestmark = pytest.mark.browser

BRAND = Brand(
    name="OpenStack社区动态",
    sender_name="OpenStack社区动态",
    postal_address="OpenStack 中国社区 · 示例路 1 号 · 示例市",
    base_url="https://news.example.org",
)


ISSUES = {"reference": REFERENCE_ISSUE, "long": LONG_ISSUE}  # the long one has a table and a code block


@pytest.fixture(scope="module", params=sorted(ISSUES))
def email_html(request: pytest.FixtureRequest, registry: TopicRegistry, tmp_path_factory) -> tuple[str, Path]:
    """(the issue's name, its email for all its topics with the sample links filled in)."""
    issue = load_issue(ISSUES[request.param], registry)
    rendering = render(issue, issue.topics, BRAND, registry=registry)
    filled = placeholders.SplitTemplate.split(rendering.html, escape_html=True).fill(sample_values(BRAND))
    path = tmp_path_factory.mktemp("browser") / "email.html"
    path.write_text(filled, encoding="utf-8")
    return request.param, path


@pytest.mark.parametrize("width", [375, 600])
def test_the_issue_fits_the_viewport(
    page_at, email_html: tuple[str, Path], artifacts_dir: Path, width: int
) -> None:
    name, html = email_html
    page = page_at(width)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    page.screenshot(path=str(artifacts_dir / f"render-{name}-{width}.png"), full_page=True)
    assert scroll_width <= inner_width, f"{scroll_width}px of content in a {inner_width}px viewport"
    # The email stands alone: the browser fetched nothing but the file itself.
    assert requests == [html.as_uri()]
    # Chinese text is laid out and the body reads at a comfortable size.
    assert page.evaluate("document.documentElement.lang") == "zh"
    assert "业界动态" in page.inner_text("body")
    widest = page.evaluate(
        "Math.max(...[...document.querySelectorAll('body *')].map(e => e.getBoundingClientRect().right))"
    )
    assert widest <= inner_width + 0.5
