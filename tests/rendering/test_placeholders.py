from __future__ import annotations

import pytest

from mailer.rendering import placeholders
from mailer.rendering.placeholders import SplitTemplate


def test_split_template_fills_each_marker_and_escapes_html() -> None:
    template = f'<a href="{placeholders.marker("unsubscribe_url")}">x</a> {placeholders.marker("email")}'
    values = {"unsubscribe_url": "https://x.org/u?a=1&b=2", "email": "a<b>@x.org"}
    assert SplitTemplate.split(template, escape_html=True).fill(values) == (
        '<a href="https://x.org/u?a=1&amp;b=2">x</a> a&lt;b&gt;@x.org'
    )
    assert SplitTemplate.split(template, escape_html=False).fill(values).endswith("a<b>@x.org")
    assert placeholders.find(template) == {"unsubscribe_url", "email"}


def test_unknown_placeholder_name_is_refused() -> None:
    with pytest.raises(ValueError):
        placeholders.marker("password")


def test_a_template_without_markers_is_unchanged() -> None:
    assert SplitTemplate.split("plain 100%% text", escape_html=True).fill({}) == "plain 100%% text"
