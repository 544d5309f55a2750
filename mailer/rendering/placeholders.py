"""Per-recipient placeholders: the renderer writes them, the message builder fills them by substitution.

A rendering is made once per segment; each recipient's copy differs only in these values. Filling is
plain string work on a template split once per segment (``SplitTemplate``), so the per-recipient hot path
is one ``str.join`` with no template engine involved.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass

EMAIL = "email"
UNSUBSCRIBE_URL = "unsubscribe_url"
PREFERENCES_URL = "preferences_url"
VIEW_URL = "view_url"
NAMES = (EMAIL, UNSUBSCRIBE_URL, PREFERENCES_URL, VIEW_URL)

# Survives Markdown, MJML and premailer untouched and cannot occur in an issue by accident.
_MARK = "%%NL:{}%%"
_MARK_RE = re.compile(r"%%NL:([a-z_]+)%%")


def marker(name: str) -> str:
    """The literal text standing for ``name`` in a rendering, e.g. ``%%NL:unsubscribe_url%%``."""
    if name not in NAMES:
        raise ValueError(f"unknown placeholder {name!r}")
    return _MARK.format(name)


def find(template: str) -> set[str]:
    """Names of the placeholders a rendering holds."""
    return set(_MARK_RE.findall(template))


def first_marker(text: str) -> str | None:
    """The first text that would be taken for a placeholder (known name or not), or None: an issue's own
    content must hold none, or a recipient's values would be substituted into it (or a send would fail
    on an unknown name)."""
    match = _MARK_RE.search(text)
    return match.group(0) if match else None


@dataclass(frozen=True)
class SplitTemplate:
    """A rendering split at its placeholders once, filled many times.

    ``parts`` alternates literal text and placeholder names: literal, name, literal, name, ..., literal.
    """

    parts: tuple[str, ...]
    escape_html: bool

    @classmethod
    def split(cls, template: str, *, escape_html: bool) -> SplitTemplate:
        return cls(tuple(_MARK_RE.split(template)), escape_html)

    def fill(self, values: Mapping[str, str]) -> str:
        parts = list(self.parts)
        escape = html.escape if self.escape_html else str
        for index in range(1, len(parts), 2):
            parts[index] = escape(values[parts[index]])
        return "".join(parts)
