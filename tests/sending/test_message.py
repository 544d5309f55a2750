"""MIME building by substitution: headers of issue item 4, exact round trip through Python's email package."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailer.rendering import placeholders as P
from mailer.sending.message import RecipientLinks, SegmentMessage, SenderIdentity, link_values


@dataclass(frozen=True)
class FakeRendering:
    segment: frozenset[str]
    subject: str
    preheader: str
    html: str
    text: str
    section_headings: tuple[str, ...] = ()


IDENTITY = SenderIdentity(
    name="OpenStack社区动态",
    sender_name="OpenStack社区动态 编辑部",
    sender_address="news@lists.example.org",
    reply_to="editor@example.org",
    list_id="weekly.lists.example.org",
    base_url="https://news.example.org",
)
TOKENS = RecipientLinks(unsubscribe="u.TOKEN_-1", preferences="p.TOKEN", view="v.TOKEN")


def _html(body_repeat: int = 200) -> str:
    # one very long line, as premailer writes it: the encoder must wrap it
    para = '<p style="margin:0;color:#333">Nova 社区动态：修复了 bug #12345，新增 API=v2.1 支持。</p>'
    return (
        f'<html><body><a href="{P.marker("view_url")}">在浏览器中查看</a>'
        + para * body_repeat
        + f'<a href="{P.marker("unsubscribe_url")}">退订</a> · '
        + f'<a href="{P.marker("preferences_url")}">偏好</a> sent to {P.marker("email")}</body></html>'
    )


def _text() -> str:
    return (
        "OpenStack社区动态 第六期\n\n" + "Nova：修复了很多问题。\n" * 80 + "\n"
        f"退订: {P.marker('unsubscribe_url')}\n偏好: {P.marker('preferences_url')}\n"
        f"收件人: {P.marker('email')}\n"
    )


RENDERING = FakeRendering(
    segment=frozenset({"nova", "neutron"}),
    subject="OpenStack社区动态 第六期（2013.12.26 - 2014.01.16）：Nova、Neutron 与 Heat 的新进展",
    preheader="本期看点",
    html=_html(),
    text=_text(),
)


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _assert_line_lengths(raw: bytes) -> None:
    """Body lines within 76 (RFC 2045); header lines within 78 unless they carry an unbreakable URL."""
    head, body = raw.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    for line in head.split(b"\r\n"):
        assert len(line) <= 78 or (b"https://" in line or b"mailto:" in line) and len(line) <= 998, line


def _build(rendering: FakeRendering = RENDERING, *, email_addr: str = "zhang@example.com", name="张三"):
    compiled = SegmentMessage(rendering, campaign_id=12, identity=IDENTITY, nonce="n0")
    values = link_values(IDENTITY, 12, email_addr, TOKENS)
    built = compiled.build(subscriber_id=345, email=email_addr, name=name, values=values, now=1_700_000_000)
    return compiled, values, built


def test_parsed_back_gives_the_same_text_and_html():
    _, values, built = _build()
    message = _parse(built.raw)
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert text == P.SplitTemplate.split(RENDERING.text, escape_html=False).fill(values)
    assert html == P.SplitTemplate.split(RENDERING.html, escape_html=True).fill(values)
    assert "https://news.example.org/unsubscribe/u.TOKEN_-1" in text
    assert 'href="https://news.example.org/view/12/v.TOKEN"' in html
    assert "zhang@example.com" in html and P.marker("email") not in html


def test_headers_of_item_4():
    _, _, built = _build()
    message = _parse(built.raw)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert {p["Content-Transfer-Encoding"] for p in message.iter_parts()} <= {"base64", "quoted-printable"}
    assert message["Subject"] == RENDERING.subject
    assert message["From"].addresses[0].display_name == "OpenStack社区动态 编辑部"
    assert message["From"].addresses[0].addr_spec == "news@lists.example.org"
    assert message["To"].addresses[0].display_name == "张三"
    assert message["To"].addresses[0].addr_spec == "zhang@example.com"
    assert message["Reply-To"] == "editor@example.org"
    assert message["Date"].datetime.timestamp() == 1_700_000_000
    assert message["Message-ID"] == built.message_id == "<12.345.n0@lists.example.org>"
    assert message["List-Id"] == "OpenStack社区动态 <weekly.lists.example.org>"
    unsubscribe = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    assert unsubscribe == [
        "https://news.example.org/unsubscribe/u.TOKEN_-1",
        "mailto:unsubscribe@lists.example.org?subject=unsubscribe%20u.TOKEN_-1",
    ]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Feedback-ID"].startswith("12:neutron+nova:")
    assert message["X-Newsletter-Campaign"] == "12"
    # RFC 2047: the raw From and Subject are ASCII encoded-words, never 8-bit
    head = built.raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head


def test_lines_are_short_and_crlf():
    _, _, built = _build()
    _assert_line_lengths(built.raw)
    assert b"\n" not in built.raw.replace(b"\r\n", b"")
    assert built.raw.isascii()  # everything encoded; no 8-bit body


def test_each_encoding_is_chosen_and_round_trips():
    # CJK-heavy text with the placeholders at the end -> base64; markup-heavy HTML -> quoted-printable
    compiled, _, _ = _build()
    assert compiled.encodings == ("base64", "quoted-printable")
    ascii_text = FakeRendering(
        segment=frozenset(),
        subject="ASCII only",
        preheader="",
        html="<p>plain markup</p>" * 50 + f"<p>{P.marker('view_url')}</p>",
        text="plain ascii text\n" * 10 + P.marker("unsubscribe_url"),
    )
    compiled, values, built = _build(ascii_text, name=None)
    assert compiled.encodings == ("quoted-printable", "quoted-printable")
    message = _parse(built.raw)
    assert message["To"] == "zhang@example.com"
    assert (
        message.get_body(("plain",)).get_content().replace("\r\n", "\n").endswith(values[P.UNSUBSCRIBE_URL])
    )


def test_recipients_get_their_own_links_and_message_ids():
    compiled = SegmentMessage(RENDERING, campaign_id=3, identity=IDENTITY, nonce="x")
    seen = set()
    for sid in range(5):
        tokens = RecipientLinks(f"u{sid}", f"p{sid}", f"v{sid}")
        values = link_values(IDENTITY, 3, f"r{sid}@example.com", tokens)
        built = compiled.build(subscriber_id=sid, email=f"r{sid}@example.com", name=None, values=values)
        html = _parse(built.raw).get_body(("html",)).get_content()
        assert f"/unsubscribe/u{sid}" in html and f"/view/3/v{sid}" in html
        assert all(f'/unsubscribe/u{other}"' not in html for other in range(5) if other != sid)
        seen.add(built.message_id)
    assert len(seen) == 5


def test_html_values_are_escaped_and_text_values_are_not():
    _, values, built = _build(email_addr="a&b<c>@example.com", name=None)
    message = _parse(built.raw)
    assert "a&amp;b&lt;c&gt;@example.com" in message.get_body(("html",)).get_content()
    assert "a&b<c>@example.com" in message.get_body(("plain",)).get_content()


_alphabet = st.characters(exclude_categories=["Cs"], exclude_characters="\r\x00")
_chunk = st.text(alphabet=_alphabet, max_size=300)


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(_chunk, min_size=1, max_size=5),
    html_chunks=st.lists(_chunk, min_size=1, max_size=5),
    token=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_=.", min_size=1, max_size=120),
)
def test_round_trip_property(chunks, html_chunks, token):
    names = [P.UNSUBSCRIBE_URL, P.EMAIL, P.VIEW_URL, P.PREFERENCES_URL]

    def join(parts: list[str]) -> str:
        out = parts[0]
        for index, part in enumerate(parts[1:]):
            out += P.marker(names[index % len(names)]) + part
        return out

    rendering = FakeRendering(frozenset({"heat"}), "主题 subject", "", join(html_chunks), join(chunks))
    compiled = SegmentMessage(rendering, campaign_id=1, identity=IDENTITY)
    values = link_values(IDENTITY, 1, "x@example.com", RecipientLinks(token, token, token))
    built = compiled.build(subscriber_id=1, email="x@example.com", name=None, values=values)
    message = _parse(built.raw)
    canonical = lambda s: s.replace("\r\n", "\n")  # noqa: E731
    text = canonical(message.get_body(("plain",)).get_content())
    html = canonical(message.get_body(("html",)).get_content())
    assert text == canonical(P.SplitTemplate.split(rendering.text, escape_html=False).fill(values))
    assert html == canonical(P.SplitTemplate.split(rendering.html, escape_html=True).fill(values))
    _assert_line_lengths(built.raw)


@pytest.mark.parametrize(
    "name", ["Ann", "张伟", "欧阳" + "春晓" * 20, "A" * 120, 'O\'Brien, "The" Great', "Ünïcødé " * 12]
)
def test_the_to_header_folds_long_names_into_short_encoded_words(name):
    import email.header

    from mailer.sending.message import to_header_value

    value = to_header_value(name, "reader@example.org")
    lines = f"To: {value}".split("\r\n")
    assert all(len(line) <= 78 for line in lines), [len(line) for line in lines]
    assert all(len(w) <= 75 for w in value.split() if w.startswith("=?")), "RFC 2047: words of at most 75"
    assert value.isascii()
    phrase, _, address = " ".join(lines)[4:].rpartition(" <")
    assert address == "reader@example.org>"
    decoded = str(email.header.make_header(email.header.decode_header(phrase.strip())))
    assert decoded.strip('"').replace('\\"', '"') == name
