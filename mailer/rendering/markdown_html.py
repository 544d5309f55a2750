"""Markdown of an issue section -> markdown-it tokens -> HTML for the email body. Pure.

One token stream feeds both parts of the email: this module renders it to HTML, ``mailer.rendering.text_part``
to plain text. Link policy is applied to the tokens, so both parts agree on which links exist:
every link or image ends up absolute http(s) (relative ones resolved against the brand's base URL),
anything else (mailto:, in-page anchors, unknown schemes) is kept as its text without a link.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from html import escape
from typing import Any
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

__all__ = ["collect_references", "markdown", "parse", "render_html", "resolve_href"]


def resolve_href(href: str, base_url: str | None) -> str | None:
    """The absolute http(s) URL a link target stands for, or None when the email cannot carry it."""
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    if href.startswith("//"):
        href = "https:" + href
    parts = urlsplit(href)
    if parts.scheme:
        return href if parts.scheme.lower() in ("http", "https") and parts.netloc else None
    if not base_url:
        return None
    return urljoin(base_url.rstrip("/") + "/", href.lstrip("/"))


# A bare URL ends at whitespace, at CJK text and at full-width punctuation: Chinese prose runs straight
# on after a URL ("见https://a.org/x，下一句"), which linkify-it would swallow into the link.
_BARE_URL_RE = re.compile(
    r"(?<![A-Za-z0-9/])https?://[^\s<>\"'`\u3000-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]+"
)
_TRAILING = ".,;:!?*_~'\""


def _trim_url(url: str) -> str:
    while url and (url[-1] in _TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))):
        url = url[:-1]
    return url


def _link_bare_urls(state: StateCore) -> None:
    md = state.md
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        out: list[Token] = []
        depth = 0  # inside a link already
        for token in block.children:
            if token.type == "link_open":
                depth += 1
            elif token.type == "link_close":
                depth -= 1
            if token.type != "text" or depth or "://" not in token.content:
                out.append(token)
                continue
            text, position = token.content, 0
            for match in _BARE_URL_RE.finditer(text):
                url = _trim_url(match.group(0))
                href = md.normalizeLink(url)
                if "://" not in url[:-1] or not md.validateLink(href):
                    continue
                if match.start() > position:
                    out.append(Token("text", "", 0, content=text[position : match.start()]))
                link_open = Token("link_open", "a", 1, attrs={"href": href}, markup="linkify", info="auto")
                out.append(link_open)
                out.append(Token("text", "", 0, content=md.normalizeLinkText(url)))
                out.append(Token("link_close", "a", -1, markup="linkify", info="auto"))
                position = match.start() + len(url)
            if position < len(text):
                out.append(Token("text", "", 0, content=text[position:]) if position else token)
        block.children = out


_CJK_RE = re.compile(r"[\u2e80-\u303f\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


def _softbreak_html(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """A soft line break between two CJK characters disappears in HTML: Chinese puts no spaces between
    words, and browsers would show the break as one ("第一行\n第二行" reading "第一行 第二行").
    The text part keeps the editor's lines as they are."""
    before = tokens[idx - 1].content[-1:] if idx and tokens[idx - 1].type == "text" else ""
    after = tokens[idx + 1].content[:1] if idx + 1 < len(tokens) and tokens[idx + 1].type == "text" else ""
    return "" if _CJK_RE.match(before) and _CJK_RE.match(after) else "\n"


def _apply_link_policy(state: StateCore) -> None:
    base_url = state.env.get("base_url") if isinstance(state.env, dict) else None
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        kept: list[Token] = []
        dropped_depth = 0  # link_open tokens dropped and not yet closed
        for token in block.children:
            if token.type == "link_open":
                target = resolve_href(str(token.attrGet("href") or ""), base_url)
                if target is None:
                    dropped_depth += 1
                    continue
                token.attrSet("href", target)
            elif token.type == "link_close" and dropped_depth:
                dropped_depth -= 1
                continue
            elif token.type == "image":
                target = resolve_href(str(token.attrGet("src") or ""), base_url)
                if target is None:
                    kept.append(Token("text", "", 0, content=token.content))
                    continue
                token.attrSet("src", target)
            kept.append(token)
        block.children = kept


@lru_cache(maxsize=1)
def markdown() -> MarkdownIt:
    """The shared parser: CommonMark + tables + strikethrough + bare-URL links, raw HTML off.

    Bare URLs are found by ``_link_bare_urls`` rather than linkify-it: only http(s) URLs with their
    scheme (so "Node.js" stays text), ending where CJK text begins, and several times faster.
    """
    md = MarkdownIt("commonmark", {"html": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.core.ruler.push("bare_urls", _link_bare_urls)
    md.core.ruler.push("link_policy", _apply_link_policy)
    md.add_render_rule("softbreak", _softbreak_html)
    return md


MAX_NESTING = 24  # emphasis in emphasis, lists in quotes...: deeper than any issue needs


def nesting_depth(tokens: Sequence[Token]) -> int:
    """How deep elements nest in a token stream (blocks and the inline elements inside them). Emphasis
    nests without a limit in markdown-it (its maxNesting bounds blocks only), and a few thousand nested
    ``<strong>`` crash the MJML compiler: issues are refused beyond MAX_NESTING."""
    deepest = 0
    for token in tokens:
        inline = token.level
        deepest = max(deepest, token.level)
        for child in token.children or ():
            inline += child.nesting
            deepest = max(deepest, inline)
    return deepest


def parse(
    text: str, base_url: str | None, references: Mapping[str, Mapping[str, str]] | None = None
) -> list[Token]:
    """The token stream of a Markdown text, links already checked and made absolute.

    ``references`` are link reference definitions (``[1]: http://...``) from elsewhere in the issue:
    an issue is one Markdown document, so a section may cite a definition written in another one.
    """
    env: dict[str, Any] = {"base_url": base_url}
    if references:
        env["references"] = {label: dict(value) for label, value in references.items()}
    return markdown().parse(text, env)


def parse_inline(
    text: str, base_url: str | None, references: Mapping[str, Mapping[str, str]] | None = None
) -> list[Token]:
    """The tokens of one line of inline Markdown (a heading's text): one ``inline`` token, links checked."""
    env: dict[str, Any] = {"base_url": base_url}
    if references:
        env["references"] = {label: dict(value) for label, value in references.items()}
    return markdown().parseInline(text, env)


def inline_plain(text: str) -> str:
    """The plain text of inline Markdown (``[Nova](url) *更新*`` -> ``Nova 更新``): what a heading says."""
    out: list[str] = []
    for token in parse_inline(text, None):
        for child in token.children or ():
            if child.type in ("text", "code_inline"):
                out.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                out.append(" ")
            elif child.type == "image":
                out.append(child.content)
    return " ".join("".join(out).split())


def render_inline_html(tokens: Sequence[Token], styles: Mapping[str, str] | None = None) -> str:
    """HTML of ``parse_inline``'s tokens, with no paragraph around it."""
    md = markdown()
    if styles:
        _set_styles(tokens, styles)
    return str(md.renderer.render(tokens, md.options, {}))


_DEFINITION_RE = re.compile(r"^ {0,3}\[[^\]]+\]:", re.M)


def collect_references(texts: Iterable[str]) -> dict[str, dict[str, str]]:
    """The link reference definitions of several Markdown texts; the first definition of a label wins."""
    references: dict[str, dict[str, str]] = {}
    for text in texts:
        if _DEFINITION_RE.search(text):
            env: dict[str, Any] = {}
            markdown().parse(text, env)
            for label, value in env.get("references", {}).items():
                references.setdefault(label, dict(value))
    return references


def render_html(tokens: Sequence[Token], styles: Mapping[str, str] | None = None) -> str:
    """HTML of a token stream (XHTML-style void tags, which MJML's parser accepts).

    ``styles`` maps a tag name to the inline style every such element gets: email clients ignore or
    strip much of a stylesheet, and inline styles leave premailer little to do.
    """
    md = markdown()
    if styles:
        _set_styles(tokens, styles)
    html = md.renderer.render(tokens, md.options, {})
    if styles and "pre" in styles:  # markdown-it writes <pre> itself, with no token of its own
        html = html.replace("<pre>", f'<pre style="{escape(styles["pre"])}">')
    return html


def _set_styles(tokens: Sequence[Token], styles: Mapping[str, str]) -> None:
    for token in tokens:
        if token.nesting != -1 and token.tag in styles and token.type not in ("fence", "code_block"):
            own = token.attrGet("style")  # e.g. a table cell's text-align
            token.attrSet("style", f"{styles[token.tag]};{own}" if own else styles[token.tag])
        if token.children:
            _set_styles(token.children, styles)
