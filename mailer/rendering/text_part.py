"""markdown-it tokens -> the plain-text part of the email, links as numbered references. Pure.

Written from the Markdown token stream, not by stripping the HTML: lists keep their markers, headings
are underlined, and every link becomes ``text[n]`` (a bare URL just ``[n]``) with the list of URLs
collected by ``LinkRefs`` and printed once at the end of the email. Lines are not re-wrapped: CJK text
has no spaces to wrap at, and mail clients wrap plain text themselves.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from markdown_it.token import Token

__all__ = ["LinkRefs", "display_width", "tokens_to_text", "underline"]


@dataclass
class LinkRefs:
    """Numbers links in order of first appearance; a URL seen again keeps its number."""

    urls: list[str] = field(default_factory=list)
    _numbers: dict[str, int] = field(default_factory=dict)

    def number(self, url: str) -> int:
        if url not in self._numbers:
            self.urls.append(url)
            self._numbers[url] = len(self.urls)
        return self._numbers[url]

    def lines(self) -> list[str]:
        return [f"[{n}] {url}" for n, url in enumerate(self.urls, start=1)]


def display_width(text: str) -> int:
    """Columns a monospace terminal gives ``text``: wide (CJK, full-width) characters count two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def underline(text: str, char: str) -> str:
    return char * max(display_width(text), 3)


@dataclass
class _Container:
    marker: str  # prefix of the container's first line ("- ", "1. ", "> ")
    indent: str  # prefix of its following lines
    pending: bool = True  # the marker has not been printed yet


class _Writer:
    def __init__(self, refs: LinkRefs) -> None:
        self.refs = refs
        self.lines: list[str] = []
        self.containers: list[_Container] = []
        self.tight: list[bool] = []  # per open list: tight lists have no blank lines between items
        self.ordinals: list[int] = []
        self.in_table = False

    def blank(self) -> None:
        if self.lines and self.lines[-1].strip(" >") != "" and not (self.tight and self.tight[-1]):
            self.lines.append(self._prefix(blank=True).rstrip())

    def _prefix(self, blank: bool = False) -> str:
        parts = []
        for container in self.containers:
            if container.pending and not blank:
                parts.append(container.marker)
                container.pending = False
            else:
                parts.append(container.indent)
        return "".join(parts)

    def block(self, text: str) -> None:
        for line in text.split("\n"):
            self.lines.append((self._prefix() + line).rstrip())

    def open_list(self, tight: bool, first_ordinal: int) -> None:
        """A list begins: ``first_ordinal`` 0 for a bullet list, else the number of its first item."""
        self.blank()
        self.tight.append(tight)
        self.ordinals.append(first_ordinal)

    def close_list(self) -> None:
        self.tight.pop()
        self.ordinals.pop()

    def open_item(self) -> None:
        if not self.tight[-1]:
            self.blank()
        ordinal = self.ordinals[-1]
        marker = f"{ordinal}. " if ordinal else "- "
        if ordinal:
            self.ordinals[-1] += 1
        self.containers.append(_Container(marker, " " * len(marker)))


def _inline(children: Sequence[Token], refs: LinkRefs) -> str:
    out: list[str] = []
    link_start: list[tuple[int, str, str]] = []  # (position in out, href, markup) of open links
    for token in children:
        kind = token.type
        if kind == "text":
            out.append(token.content)
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "code_inline":
            out.append(f"`{token.content}`")
        elif kind == "link_open":
            link_start.append((len(out), str(token.attrGet("href") or ""), token.markup))
        elif kind == "link_close" and link_start:
            start, href, markup = link_start.pop()
            number = refs.number(href)
            if markup in ("autolink", "linkify"):  # the text is the URL itself: the reference says it
                del out[start:]
            out.append(f"[{number}]")
        elif kind == "image":
            number = refs.number(str(token.attrGet("src") or ""))
            out.append(f"[{token.content or 'image'}][{number}]")
    return "".join(out)


def inline_to_text(tokens: Sequence[Token], refs: LinkRefs) -> str:
    """Plain text of ``markdown_html.parse_inline``'s tokens (a heading), links numbered through ``refs``."""
    return " ".join("".join(_inline(t.children or [], refs) for t in tokens).split())


def tokens_to_text(tokens: Sequence[Token], refs: LinkRefs) -> str:
    """Plain text of one section body; links are numbered through ``refs`` (shared by the email)."""
    writer = _Writer(refs)
    row: list[str] = []
    for position, token in enumerate(tokens):
        kind = token.type
        if kind == "inline":
            if writer.in_table:
                row.append(_inline(token.children or [], refs))
            else:
                writer.block(_inline(token.children or [], refs))
        elif kind == "paragraph_open":
            if not token.hidden:
                writer.blank()
        elif kind == "heading_open":
            writer.blank()
        elif kind in ("bullet_list_open", "ordered_list_open"):
            first = int(token.attrGet("start") or 1) if kind == "ordered_list_open" else 0
            writer.open_list(_is_tight(tokens, position), first)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            writer.close_list()
        elif kind == "list_item_open":
            writer.open_item()
        elif kind == "list_item_close":
            writer.containers.pop()
        elif kind == "blockquote_open":
            writer.blank()
            writer.containers.append(_Container("> ", "> "))
        elif kind == "blockquote_close":
            writer.containers.pop()
        elif kind in ("fence", "code_block"):
            writer.blank()
            writer.block(token.content.rstrip("\n"))
        elif kind == "hr":
            writer.blank()
            writer.block("-" * 20)
        elif kind == "table_open":
            writer.blank()
            writer.in_table = True
        elif kind == "table_close":
            writer.in_table = False
        elif kind == "tr_open":
            row = []
        elif kind == "tr_close":
            writer.block(" | ".join(cell.strip() for cell in row))
            row = []
    return "\n".join(writer.lines).strip("\n")


def _is_tight(tokens: Sequence[Token], start: int) -> bool:
    """markdown-it marks the paragraphs of a tight list hidden; look at the first one after the list opens."""
    for token in tokens[start + 1 :]:
        if token.type == "paragraph_open":
            return token.hidden
        if token.type in ("bullet_list_close", "ordered_list_close"):
            break
    return True
