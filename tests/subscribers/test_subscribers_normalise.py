"""Hypothesis: the normaliser and the CSV reader never crash on arbitrary input; they only reject."""

from __future__ import annotations

import contextlib
import csv
import io
import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from subscribers.csvreader import CsvRow, Reject, read_rows
from subscribers.errors import InvalidEmail, InvalidInput
from subscribers.normalise import email_key, normalise_address, normalise_locale, normalise_name, split_topics

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~."
local_parts = st.text(alphabet=ATEXT, min_size=1, max_size=70)
domains = st.sampled_from(
    [
        "example.com",
        "Example.COM",
        "xn--fiqs8s.cn",
        "例子.广告",
        "a.b",
        "localhost",
        "x.local",
        "-bad.com",
        "a..b",
        "123.456",
        "sub.domain.org",
        "e.x",
        "中国.cn",
        "a" * 64 + ".com",
        "mail.invalid",
    ]
)


@given(st.text(max_size=80))
@example("a@b.c")
@example("\x00@\udcff.com")
@example('"quoted local"@example.com')
@example("Postmaster@Example.com")
def test_normaliser_raises_nothing_but_invalid_email(text):
    try:
        address = normalise_address(text)
    except InvalidEmail as exc:
        assert "\n" not in str(exc)
        return
    assert address.key == address.email.lower()
    assert email_key(address.email) == address.key  # idempotent


@settings(max_examples=300)
@given(local_parts, domains)
def test_fast_path_agrees_with_email_validator(local, domain):
    """The cached-domain fast path must accept exactly what email-validator accepts, normalised alike: in
    ASCII (IDNA for an internationalised domain), and refused when the part before the @ is not ASCII."""
    address = f"{local}@{domain}"
    try:
        expected = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError:
        expected = None
    try:
        got = normalise_address(address).email
    except InvalidEmail:
        got = None
    assert got == expected


@given(st.text(max_size=20))
def test_locale_and_names_and_topics_never_crash(text):
    with contextlib.suppress(InvalidInput):
        assert normalise_locale(text) in ("zh", "en")
    try:
        name = normalise_name(text)
        assert name is None or (name == name.strip() and "\n" not in name)
    except InvalidInput:
        pass
    assert all(part and part == part.strip() for part in split_topics(text))


cells = st.one_of(
    st.text(max_size=30), st.sampled_from(["a@example.com", "nova;heat", "zh", "en", "", '"', "\r\n"])
)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=150)
@given(st.lists(st.lists(cells, max_size=6), max_size=12), st.sampled_from(["utf-8", "gb18030", "utf-8-sig"]))
def test_csv_reader_turns_any_rows_into_rows_or_rejects(rows, encoding):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["email", "name", "topics", "locale"])
    writer.writerows(rows)
    data = out.getvalue().encode(encoding, errors="replace")
    items = list(read_rows(io.BytesIO(data)))
    for item in items:
        assert isinstance(item, CsvRow | Reject)
        if isinstance(item, Reject):
            assert item.line >= 2 and item.reason and "\n" not in item.reason


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.binary(max_size=300))
def test_csv_reader_on_arbitrary_bytes_after_a_header(tail):
    items = list(read_rows(io.BytesIO(b"email,name\n" + tail)))
    assert all(isinstance(item, CsvRow | Reject) for item in items)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_a_whole_file_give_rows_or_one_input_error(data):
    try:
        list(read_rows(io.BytesIO(data)))
    except InvalidInput as exc:
        assert "\n" not in str(exc)


def test_fast_path_is_really_faster_per_row_than_the_full_validator_for_repeated_domains():
    # not a timing assertion: checks the fast path is the one taken for ordinary addresses
    from subscribers import normalise

    normalise._domain.cache_clear()
    for i in range(100):
        normalise_address(f"user{i}@example.com")
    info = normalise._domain.cache_info()
    assert (info.misses, info.hits) == (1, 99)


@pytest.mark.parametrize("value", ["zh", "ZH-cn", "zh_TW", "中文", "en", "en-US", "English", ""])
def test_locales(value):
    assert normalise_locale(value) in ("zh", "en")
