"""Markdown of an issue section -> markdown-it tokens -> HTML for the email body. Pure.

One token stream feeds both parts of the email: this module renders it to HTML, ``mailer.text_part``
to plain text. Link policy is applied to the tokens, so both parts agree on which links exist:
every link or image ends up absolute http(s) (relative ones resolved against the brand's base URL),
anything else (mailto:, in-page anchors, unknown schemes) is kept as its text without a link.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import urljoin, urlsplit

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

__all__ = ["markdown", "parse", "render_html", "resolve_href"]


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
    """The shared parser: CommonMark + tables + strikethrough + bare-URL links, raw HTML off."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.enable(["linkify", "table", "strikethrough"])
    # Fuzzy matching would turn "Node.js" or "setup.py" into links; only real URLs (with a scheme).
    md.linkify.set({"fuzzy_link": False, "fuzzy_email": False})
    md.core.ruler.push("link_policy", _apply_link_policy)
    return md


def parse(text: str, base_url: str | None) -> list[Token]:
    """The token stream of a Markdown text, links already checked and made absolute."""
    return markdown().parse(text, {"base_url": base_url})


def render_html(tokens: Sequence[Token]) -> str:
    """HTML of a token stream (XHTML-style void tags, which MJML's parser accepts)."""
    md = markdown()
    return md.renderer.render(tokens, md.options, {})
