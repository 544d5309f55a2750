"""Rendering an issue per segment: which sections land where, and what the HTML may and may not contain."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from support.issue_checks import GMAIL_CLIP_BYTES, renders_for_every_preview_segment
from support.paths import ENGLISH_ISSUE, LONG_ISSUE, REFERENCE_ISSUE, sample_issues

from mailer.errors import TemplateError
from mailer.rendering import placeholders
from mailer.rendering.issue import Issue, Section, load_issue, parse_issue
from mailer.rendering.render import CJK_FONT_STACK, Brand, compile_mjml, render, render_segments
from mailer.topics import TopicRegistry

BRAND = Brand(
    name="OpenStack社区动态",
    sender_name="OpenStack社区动态",
    postal_address="OpenStack 中国社区 · 示例路 1 号",
    base_url="https://news.example.org",
)
_URL_RE = re.compile(r"https?://[^\s<>()（）]+")


class _Tags(HTMLParser):
    """Collects the tags and attributes the checks look at."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def attr(self, tag: str, name: str) -> list[str]:
        return [str(a.get(name)) for t, a in self.tags if t == tag and name in a]


def tags_of(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def section_urls(section: Section) -> set[str]:
    return {url.rstrip(".,;:") for url in _URL_RE.findall(section.markdown)}


def section_by_heading(issue: Issue, heading: str) -> Section:
    return next(s for s in issue.sections if s.heading == heading)


@pytest.fixture(scope="module")
def reference(registry: TopicRegistry) -> Issue:
    return load_issue(REFERENCE_ISSUE, registry)


@pytest.mark.parametrize("path", sample_issues(), ids=lambda p: p.stem)
def test_every_sample_issue_renders_for_every_preview_segment(path: Path, registry: TopicRegistry) -> None:
    renders_for_every_preview_segment(path, registry, BRAND)


def test_the_long_issue_is_long_and_still_under_the_clip(reference: Issue, registry: TopicRegistry) -> None:
    long = load_issue(LONG_ISSUE, registry)
    html = render(long, long.topics, BRAND, registry=registry).html.encode()
    assert 1.6 * len(render(reference, reference.topics, BRAND, registry=registry).html.encode()) < len(html)
    assert len(html) < GMAIL_CLIP_BYTES
    # one topic's email leaves out the other sixteen topics' sections
    nova = render(long, {"nova"}, BRAND, registry=registry)
    assert len(nova.html.encode()) < 0.75 * len(html)
    assert nova.section_headings == (
        "业界动态",
        "峰会回顾",
        "厂商与市场",
        "社区跟踪",
        "Common",
        "Nova",
        "活动预告",
    )


def test_reference_for_nova_holds_nova_and_general_sections_only(reference: Issue, registry) -> None:
    rendering = render(reference, {"nova"}, BRAND, registry=registry)
    assert rendering.segment == frozenset({"nova"})
    assert rendering.section_headings == ("业界动态", "社区跟踪", "Common", "Nova")
    for heading in ("业界动态", "Common", "Nova"):
        section = section_by_heading(reference, heading)
        urls = section_urls(section)
        assert urls, heading
        for url in urls:
            assert f'href="{url}"' in rendering.html, (heading, url)
            assert url in rendering.text, (heading, url)
    for heading in ("Neutron", "Tempest", "Ceilometer"):
        section = section_by_heading(reference, heading)
        assert f'id="{section.anchor}"' not in rendering.html
        assert f"\n{heading}\n---" not in rendering.text
        only_here = section_urls(section) - set().union(
            *(section_urls(s) for s in reference.sections if s is not section)
        )
        assert only_here, heading
        for url in only_here:
            assert url not in rendering.html and url not in rendering.text, (heading, url)
    # A sentence of the Nova section, full-width punctuation as written.
    assert "虚拟机能不能不关机就调整规格？目前调整内存和处理器都要重启虚拟机，" in rendering.html
    assert "虚拟机能不能不关机就调整规格？目前调整内存和处理器都要重启虚拟机，" in rendering.text


def test_reference_for_all_topics_holds_every_section(reference: Issue, registry) -> None:
    rendering = render(reference, reference.topics, BRAND, registry=registry)
    assert set(rendering.section_headings) == {s.heading for s in reference.sections if s.level}
    for section in reference.sections:
        for url in section_urls(section):
            assert f'href="{url}"' in rendering.html
            assert url in rendering.text


def test_html_stands_alone_and_links_are_absolute_or_placeholders(reference: Issue, registry) -> None:
    html = render(reference, reference.topics, BRAND, registry=registry).html
    tags = tags_of(html)
    markers = {placeholders.marker(name) for name in placeholders.NAMES}
    hrefs = tags.attr("a", "href")
    assert len(hrefs) > 20
    preferences = placeholders.marker(placeholders.PREFERENCES_URL)
    for href in hrefs:
        # a per-topic link: the reader's preferences link plus a fixed ?add= / ?remove= suffix
        topic_link = re.fullmatch(re.escape(preferences) + r"\?(add|remove)=[a-z0-9_-]+", href)
        assert href in markers or topic_link or re.match(r"https?://[^/\s]+", href), href
    assert not [t for t, _ in tags.tags if t in ("script", "link", "iframe", "object", "embed", "form")]
    lowered = html.lower()
    for remote in ("@import", "fonts.googleapis", "fonts.gstatic", "url(http", "<script"):
        assert remote not in lowered
    assert len(html.encode()) < GMAIL_CLIP_BYTES
    assert lowered.startswith("<!doctype html>")


def test_footer_links_carry_the_placeholders_byte_for_byte(reference: Issue, registry) -> None:
    rendering = render(reference, {"nova"}, BRAND, registry=registry)
    hrefs = tags_of(rendering.html).attr("a", "href")
    for name in (placeholders.VIEW_URL, placeholders.PREFERENCES_URL, placeholders.UNSUBSCRIBE_URL):
        assert f'href="{placeholders.marker(name)}"' in rendering.html
        assert placeholders.marker(name) in hrefs
    assert placeholders.marker(placeholders.EMAIL) in rendering.html
    assert BRAND.postal_address in rendering.html and BRAND.postal_address in rendering.text
    filled = placeholders.SplitTemplate.split(rendering.html, escape_html=True).fill(
        {
            placeholders.EMAIL: "a&b@example.org",
            placeholders.VIEW_URL: "https://x.example/v?t=1&u=2",
            placeholders.PREFERENCES_URL: "https://x.example/p",
            placeholders.UNSUBSCRIBE_URL: "https://x.example/u",
        }
    )
    assert 'href="https://x.example/v?t=1&amp;u=2"' in filled and "a&amp;b@example.org" in filled


def test_chinese_reads_well(reference: Issue, registry) -> None:
    rendering = render(reference, reference.topics, BRAND, registry=registry)
    html = rendering.html
    assert re.search(r'<html[^>]* lang="zh"', html)
    assert "PingFang SC" in CJK_FONT_STACK and "Noto Sans CJK SC" in html
    assert "overflow-wrap:anywhere" in html.replace(" ", "")
    # Bare <http://...> autolinks become links; lines ending in two spaces become hard breaks.
    assert '<a href="http://cn.example.org/posts/709.html"' in html
    assert re.search(r'活跃度统计<br\s*/?>\s*<a href="http://stats.example.net/\?p=2025"', html)
    # The preheader is hidden text at the top of the body.
    assert rendering.preheader == reference.description
    assert re.search(r'<div style="display:none[^"]*">' + re.escape(reference.description), html)


def test_language_from_front_matter_switches_lang_and_labels(registry: TopicRegistry) -> None:
    text = "---\ntitle: Weekly\nlang: en\ndate: 2024-05-06\n---\n## News\nHello <https://example.org/a>\n"
    rendering = render(parse_issue(text, "w.md", registry), set(), BRAND)
    assert re.search(r'<html[^>]* lang="en"', rendering.html)
    assert "Unsubscribe" in rendering.html and "退订" not in rendering.html
    assert "6 May 2024" in rendering.html
    assert "Unsubscribe: " + placeholders.marker("unsubscribe_url") in rendering.text


def test_the_english_sample_reads_in_english(registry: TopicRegistry) -> None:
    issue = load_issue(ENGLISH_ISSUE, registry)
    rendering = render(issue, issue.topics, BRAND, registry=registry)
    assert re.search(r'<html[^>]* lang="en"', rendering.html)
    assert "19 June 2025" in rendering.html and "19 June 2025" in rendering.text
    assert "Unsubscribe" in rendering.html and "退订" not in rendering.html
    # a section headed by a topic's alias ("Compute") is labelled with the topic's English name
    assert (
        "Nova" in rendering.html
        and "Nova 计算" not in rendering.html
        and "Cinder 块存储" not in rendering.html
    )
    assert "<strong>1.8 seconds</strong>" in rendering.html and "1.8 seconds" in rendering.text


def test_link_policy_resolves_relative_and_drops_non_http(registry: TopicRegistry) -> None:
    text = (
        "---\ntitle: T\n---\n## A\n[rel](/archive/1) [mail](mailto:a@example.org) "
        "[js](javascript:alert(1)) [anchor](#x) see https://bare.example.org/x 和 Node.js\n"
    )
    rendering = render(parse_issue(text, "t.md", registry), set(), BRAND)
    body_hrefs = [h for h in tags_of(rendering.html).attr("a", "href") if not h.startswith("%%NL:")]
    assert body_hrefs == ["https://news.example.org/archive/1", "https://bare.example.org/x"]
    assert "mail" in rendering.text and "mailto:" not in rendering.text
    assert "[1] https://news.example.org/archive/1" in rendering.text
    assert "<script" not in rendering.html.lower()


def test_raw_html_in_markdown_is_text_not_markup(registry: TopicRegistry) -> None:
    text = "---\ntitle: T\n---\n## A\n<script>alert(1)</script> <b>x</b>\n"
    rendering = render(parse_issue(text, "t.md", registry), set(), BRAND)
    assert "<script" not in rendering.html.lower()
    assert "&lt;script&gt;" in rendering.html


def test_segments_are_intersected_with_the_issue_and_rendered_once(reference: Issue, registry) -> None:
    renderings = render_segments(
        reference, [{"nova"}, {"nova", "swift"}, ["nova"], {"swift"}, set()], BRAND, registry=registry
    )
    assert set(renderings) == {frozenset({"nova"}), frozenset()}
    assert render(reference, {"nova", "swift"}, BRAND, registry=registry) == renderings[frozenset({"nova"})]


def test_rendering_is_pure(reference: Issue, registry) -> None:
    first = render(reference, {"tempest"}, BRAND, registry=registry)
    assert render(reference, {"tempest"}, BRAND, registry=registry) == first
    other_brand = Brand(
        name="Other", sender_name="O", postal_address="Elsewhere 2", base_url="https://o.example"
    )
    other = render(reference, {"tempest"}, other_brand, registry=registry)
    assert "Elsewhere 2" in other.html and BRAND.postal_address not in other.html


def test_topic_sections_show_the_topic_name_in_the_issue_language(reference: Issue, registry) -> None:
    with_names = render(reference, {"nova"}, BRAND, registry=registry).html
    assert "Nova 计算" in with_names
    assert "Nova 计算" not in render(reference, {"nova"}, BRAND).html


def test_compile_mjml_rejection_is_one_line_naming_the_template() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_mjml("<mjml><mj-body><mj-section><mj-column><mj-text>x</mj-column>", "email/broken.mjml.j2")
    message = str(caught.value)
    assert message.startswith("email/broken.mjml.j2: MJML rejected the template")
    assert "\n" not in message


def test_compile_mjml_keeps_media_queries_and_emits_no_font_link() -> None:
    html = compile_mjml(
        "<mjml><mj-head><mj-style>.a p { color: red; } "
        "@media (max-width: 480px) { .a p { color: blue !important; } }"
        '</mj-style></mj-head><mj-body><mj-section><mj-column><mj-text css-class="a"><p>x</p>'
        "</mj-text></mj-column></mj-section></mj-body></mjml>",
        "inline.mjml",
    )
    assert "@media (max-width: 480px)" in html and "blue !important" in html
    assert re.search(r'<p style="[^"]*color:\s*red', html)
    assert "googleapis" not in html and "<link" not in html


def test_a_broken_template_folder_is_a_template_error(reference: Issue, tmp_path: Path) -> None:
    email_dir = tmp_path / "email"
    email_dir.mkdir()
    for source in (BRAND.email_templates_dir).iterdir():
        (email_dir / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    (email_dir / "newsletter.mjml.j2").write_text(
        "<mjml><mj-body><mj-section>{{ subject }}", encoding="utf-8"
    )
    broken = Brand("N", "N", "P", "https://x.example", templates_dir=tmp_path)
    with pytest.raises(TemplateError, match=r"newsletter\.mjml\.j2: MJML rejected the template"):
        render(reference, set(), broken)
    # Templates are read once per folder and process: a second broken template needs its own folder.
    syntax_dir = tmp_path / "syntax" / "email"
    syntax_dir.mkdir(parents=True)
    (syntax_dir / "newsletter.mjml.j2").write_text("{% if %}", encoding="utf-8")
    other = Brand("N2", "N", "P", "https://x.example", templates_dir=syntax_dir.parent)
    with pytest.raises(TemplateError, match=r"newsletter\.mjml\.j2:1: "):
        render(reference, set(), other)


def test_link_definitions_reach_across_sections(registry: TopicRegistry) -> None:
    text = "---\ntitle: T\n---\n## A\n看[这家公司][1]。\n\n## B\n正文\n\n  [1]: http://www.example.com/co\n"
    rendering = render(parse_issue(text, "t.md", registry), set(), BRAND)
    assert '<a href="http://www.example.com/co"' in rendering.html
    assert "看这家公司[1]。" in rendering.text and "[1] http://www.example.com/co" in rendering.text


def test_brand_from_settings() -> None:
    from mailer.settings import Settings

    settings = Settings(
        name="周报", postal_address="某路 2 号", base_url="https://n.example", default_lang="en"
    )
    brand = Brand.from_settings(settings)
    assert (brand.name, brand.postal_address, brand.base_url, brand.default_lang) == (
        "周报",
        "某路 2 号",
        "https://n.example",
        "en",
    )
    assert brand.email_templates_dir == Path(settings.templates_dir) / "email"


def test_soft_line_breaks_between_chinese_characters_add_no_space(registry: TopicRegistry) -> None:
    text = "---\ntitle: T\n---\n## A\n第一行\n第二行。\nEnglish line\nnext line\n中文\n"
    rendering = render(parse_issue(text, "t.md", registry), set(), BRAND)
    assert "第一行第二行。" in rendering.html
    assert "English line\nnext line" in rendering.html  # a break between Latin words stays a space
    assert "第一行\n第二行。" in rendering.text  # the text part keeps the editor's lines


def test_markdown_in_headings_is_rendered_and_plain_where_text_is_wanted(registry):
    text = (
        "---\ntitle: Headings\n---\n\nIntro.\n\n"
        "## [Nova](https://nova.example.org/) 的 *新* `api`\n\nBody with [a link](https://body.example.org/).\n\n"
        "## **News** of the week\n\nMore.\n"
    )
    issue = parse_issue(text, "h.md", registry)
    assert [s.heading for s in issue.sections if s.level] == ["Nova 的 新 api", "News of the week"]
    assert issue.sections[1].topic is None, "the heading as a whole names no topic"
    linked = parse_issue(
        "---\ntitle: T\n---\n\n## [Nova](https://nova.example.org/)\n\nx\n", "t.md", registry
    )
    assert linked.sections[1].topic == "nova", "topics are matched on the heading's plain text"

    rendering = render(issue, issue.topics, BRAND, registry=registry)
    html = rendering.html
    heading = html[html.index('id="sec-1"') :].split("</h2>", 1)[0]
    assert 'href="https://nova.example.org/"' in heading and ">Nova</a>" in heading
    assert "<em" in heading and ">新</em>" in heading and "<code" in heading and ">api</code>" in heading
    toc = html[html.index("<ul") : html.index("</ul>")]
    assert "Nova 的 新 api" in toc and "<a " not in toc and "<em" not in toc
    assert rendering.section_headings == ("Nova 的 新 api", "News of the week")
    lines = rendering.text.splitlines()
    assert "Nova[1] 的 新 `api`" in lines, "the heading's link joins the numbered references"
    assert "News of the week" in lines and "**" not in rendering.text
    refs = rendering.text[rendering.text.index("\n[1] ") + 1 :]
    assert refs.startswith("[1] https://nova.example.org/") and "[2] https://body.example.org/" in refs
