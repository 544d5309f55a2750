"""The plain-text part, written from the Markdown token stream with links as numbered references."""

from __future__ import annotations

import re

from support.paths import REFERENCE_ISSUE

from mailer.rendering import placeholders
from mailer.rendering.issue import load_issue
from mailer.rendering.markdown_html import parse, resolve_href
from mailer.rendering.render import Brand, render
from mailer.rendering.text_part import LinkRefs, display_width, tokens_to_text, underline
from mailer.topics import TopicRegistry

BASE = "https://news.example.org"


def text_of(markdown: str, refs: LinkRefs | None = None) -> str:
    return tokens_to_text(parse(markdown, BASE), refs if refs is not None else LinkRefs())


def test_links_become_numbered_references_and_repeat_their_number() -> None:
    refs = LinkRefs()
    text = text_of("见[官网](https://a.org/x)和<https://b.org/y>，再看[这里](https://a.org/x)。", refs)
    assert text == "见官网[1]和[2]，再看这里[1]。"
    assert refs.lines() == ["[1] https://a.org/x", "[2] https://b.org/y"]


def test_numbering_runs_across_sections_of_one_email() -> None:
    refs = LinkRefs()
    text_of("<https://a.org/1>", refs)
    assert text_of("[b](https://a.org/2)", refs) == "b[2]"


def test_hard_and_soft_breaks_keep_the_editors_lines() -> None:
    assert text_of("第一行  \n第二行\n第三行") == "第一行\n第二行\n第三行"


def test_lists_quotes_code_and_rules() -> None:
    markdown = (
        "- 一\n- 二\n  - 二点一\n\n1. first\n2. second\n\n"
        "> 引用\n> 两行\n\n```\ncode  line\n```\n\n---\n\n段落"
    )
    assert text_of(markdown) == (
        "- 一\n- 二\n  - 二点一\n\n1. first\n2. second\n\n> 引用\n> 两行\n\ncode  line\n\n"
        "--------------------\n\n段落"
    )


def test_loose_lists_keep_blank_lines_between_items() -> None:
    assert text_of("- a\n\n- b\n") == "- a\n\n- b"


def test_images_tables_and_emphasis() -> None:
    refs = LinkRefs()
    text = text_of("**粗** *斜* `code` ![图](/img/a.png)\n\n| a | b |\n|---|---|\n| 1 | 2 |", refs)
    assert text == "粗 斜 `code` [图][1]\n\na | b\n1 | 2"
    assert refs.urls == [f"{BASE}/img/a.png"]


def test_underline_counts_wide_characters_twice() -> None:
    assert display_width("社区跟踪") == 8
    assert underline("社区跟踪", "=") == "========"
    assert underline("Nova", "-") == "----"


def test_resolve_href() -> None:
    assert resolve_href("https://a.org/x", None) == "https://a.org/x"
    assert resolve_href("//cdn.example/x", None) == "https://cdn.example/x"
    assert resolve_href("/archive/3", "https://n.example/base/") == "https://n.example/base/archive/3"
    assert resolve_href("/archive/3", None) is None
    for rejected in ("mailto:a@b.org", "#sec-1", "ftp://x.org/f", "javascript:alert(1)", ""):
        assert resolve_href(rejected, BASE) is None


def test_reference_issue_text_part(registry: TopicRegistry) -> None:
    issue = load_issue(REFERENCE_ISSUE, registry)
    brand = Brand(name="OpenStack社区动态", sender_name="x", postal_address="某路 1 号", base_url=BASE)
    text = render(issue, issue.topics, brand, registry=registry).text
    assert "<" not in text.replace("<http", "")  # no markup leaks into the text part
    references = re.findall(r"^\[(\d+)\] (https?://\S+)$", text, re.M)
    assert len(references) >= 20
    assert [int(n) for n, _ in references] == list(range(1, len(references) + 1))
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", text.split("\n链接\n")[0])}
    assert cited == set(range(1, len(references) + 1))
    assert "要点见社区博客的中文译文[1]" in text
    assert "业界动态\n========\n" in text and "Nova\n----\n" in text
    for name in placeholders.NAMES:
        assert placeholders.marker(name) in text
    assert text.rstrip().endswith("某路 1 号")


def test_bare_urls_stop_where_chinese_text_or_punctuation_begins() -> None:
    refs = LinkRefs()
    text = text_of(
        "见https://a.org/x中文，再看 https://b.org/q?a=1。还有(https://c.org/p_(1)). 和 Node.js", refs
    )
    assert text == "见[1]中文，再看 [2]。还有([3]). 和 Node.js"
    assert refs.urls == ["https://a.org/x", "https://b.org/q?a=1", "https://c.org/p_(1)"]
    assert text_of("`https://code.example` [x](https://d.org/a)") == "`https://code.example` x[1]"
