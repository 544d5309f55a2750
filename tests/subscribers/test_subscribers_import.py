"""CSV import and export on SQLite and PostgreSQL: add, re-import, rejects, encodings, suppression."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, func, select

from subscribers.csvreader import Reject
from subscribers.db import make_session_factory
from subscribers.errors import InvalidInput
from subscribers.exporter import export_csv
from subscribers.importer import import_csv_stepwise
from subscribers.models import Subscriber, SubscriberEvent
from subscribers.preferences import get_preferences
from subscribers.store import find_subscriber, stream_audience, sync_topics
from subscribers.suppression import suppress

T0 = datetime(2026, 6, 1, tzinfo=UTC)
HEADER = "email,name,topics,locale\n"


@pytest.fixture
def session(db_session):
    sync_topics(
        db_session,
        [("nova", "Nova", "Nova 计算"), ("neutron", "Neutron", None), ("heat", "Heat", "Heat 编排")],
    )
    db_session.commit()
    return db_session


def run(session, text: str | bytes, **kwargs):
    data = text.encode("utf-8") if isinstance(text, str) else text
    rejects: list[Reject] = []
    sessions = make_session_factory(session.get_bind())
    session.commit()  # the import runs in sessions of its own, committing per chunk
    report = import_csv_stepwise(sessions, io.BytesIO(data), on_reject=rejects.append, now=T0, **kwargs)
    session.expire_all()
    return report, rejects


def prefs(session, email: str):
    return get_preferences(session, find_subscriber(session, email).id)


def test_import_adds_with_topics_names_locales(session):
    report, rejects = run(
        session,
        HEADER + "li@example.com,李雷,nova;neutron,zh-CN\n"
        "han@example.com,Han Meimei,Heat|nova,en\n"
        "anon@example.com,,,\n",
    )
    assert (report.added, report.updated, report.unchanged, report.rejected) == (3, 0, 0, 0)
    assert rejects == []
    li = prefs(session, "LI@example.com")
    assert (li.name, li.locale, li.topics, li.status) == (
        "李雷",
        "zh",
        frozenset({"nova", "neutron"}),
        "active",
    )
    assert prefs(session, "han@example.com").topics == frozenset({"heat", "nova"})
    anon = prefs(session, "anon@example.com")
    assert (anon.name, anon.locale, anon.topics) == (None, "zh", frozenset())


def test_reimport_updates_never_duplicates(session):
    run(session, HEADER + "a@example.com,A,nova,en\nb@example.com,B,heat,zh\n")
    report, _ = run(
        session,
        HEADER + "A@EXAMPLE.com,A,nova,en\n"  # same person, other case: unchanged
        "b@example.com,Bee,neutron,\n"  # new name and topics; empty locale keeps zh
        "c@example.com,C,,\n",
    )
    assert (report.added, report.updated, report.unchanged, report.rejected) == (1, 1, 1, 0)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 3
    b = prefs(session, "b@example.com")
    assert (b.name, b.topics, b.locale) == ("Bee", frozenset({"neutron"}), "zh")
    kinds = session.scalars(
        select(SubscriberEvent.kind)
        .where(SubscriberEvent.email_key == "b@example.com")
        .order_by(SubscriberEvent.id)
    ).all()
    assert kinds == ["subscribed", "updated"]
    # the same address twice in one file: applied in order, the later row wins
    report, _ = run(session, HEADER + "d@example.com,First,,\nd@example.com,Second,,\n")
    assert (report.added, report.updated) == (1, 1)
    assert prefs(session, "d@example.com").name == "Second"


def test_rejects_name_line_and_reason_and_keep_the_original_row(session):
    text = (
        HEADER
        + "good@example.com,G,nova,zh\n"
        + "not-an-address,X,,\n"
        + "x@example.com,X,nova;swift,zh\n"
        + "\n"  # blank line: skipped, not a reject
        + "y@example.com,Y,,fr\n"
        + ",Nameless,,\n"
        + '"multi@example.com","two\nlines",nova,en\n'
        + "z@localhost,Z,,\n"
    )
    report, rejects = run(session, text)
    assert (report.added, report.rejected) == (2, 5)
    assert [r.line for r in rejects] == [3, 4, 6, 7, 10]
    assert "not-an-address" in rejects[0].reason and rejects[0].fields == ("not-an-address", "X", "", "")
    assert "unknown topic 'swift'" in rejects[1].reason and rejects[1].fields[2] == "nova;swift"
    assert "unknown locale 'fr'" in rejects[2].reason
    assert "empty email" in rejects[3].reason
    assert "z@localhost" in rejects[4].reason
    assert prefs(session, "multi@example.com").name == "two lines"


def test_gbk_file_from_a_chinese_spreadsheet(session):
    data = "邮箱,姓名,主题,语言\r\nwang@example.com,王小明,nova;Heat 编排,中文\r\n".encode("gbk")
    report, rejects = run(session, data)
    assert rejects == [] and report.added == 1 and report.encoding == "gb18030"
    wang = prefs(session, "wang@example.com")
    assert (wang.name, wang.topics, wang.locale) == ("王小明", frozenset({"nova", "heat"}), "zh")


def test_utf8_with_bom_and_late_non_ascii(session):
    lines = [f"user{i}@example.com,User {i},," for i in range(3000)] + ["zhang@example.com,张三,,"]
    data = b"\xef\xbb\xbf" + ("email,name,topics,locale\n" + "\n".join(lines) + "\n").encode("utf-8")
    report, rejects = run(session, data)
    assert rejects == [] and report.added == 3001 and report.encoding == "utf-8"
    assert prefs(session, "zhang@example.com").name == "张三"


def test_gbk_after_a_long_ascii_prefix_and_a_bad_line_in_a_utf8_file(session):
    ascii_part = "".join(f"u{i}@example.com,U{i},,\n" for i in range(5000))
    gbk = (HEADER + ascii_part).encode() + "li@example.com,李四,,\n".encode("gbk")
    report, rejects = run(session, gbk)
    assert rejects == [] and report.encoding == "gb18030"
    assert prefs(session, "li@example.com").name == "李四"
    # a UTF-8 file with one line of stray GBK bytes: that row is rejected, not stored garbled
    mixed = (HEADER + "a@example.com,张,,\n").encode() + "b@example.com,李四,,\n".encode("gbk")
    report, rejects = run(session, mixed)
    assert report.encoding == "utf-8" and [r.line for r in rejects] == [3]
    assert "not valid" in rejects[0].reason
    assert session.scalar(select(Subscriber).where(Subscriber.email_key == "b@example.com")) is None


def test_suppressed_address_stays_suppressed_on_reimport(session):
    run(session, HEADER + "gone@example.com,G,nova,\n")
    suppress(session, "gone@example.com", "hard_bounce", now=T0)
    suppress(session, "never@example.com", "complaint", now=T0)
    session.commit()
    report, _ = run(
        session, HEADER + "gone@example.com,G,nova;heat,\nnever@example.com,N,,\n", status="active"
    )
    assert report.added == 1
    assert prefs(session, "gone@example.com").status == "bounced"
    assert prefs(session, "never@example.com").status == "complained"
    assert list(stream_audience(session, ["nova"])) == []


def test_status_option_and_pending_to_active(session):
    report, _ = run(session, HEADER + "p@example.com,,,\n", status="pending")
    assert report.by_status == {"pending": 1}
    assert prefs(session, "p@example.com").status == "pending"
    report, _ = run(session, HEADER + "p@example.com,,,\n", status="active")
    assert report.updated == 1 and prefs(session, "p@example.com").status == "active"
    s = find_subscriber(session, "p@example.com")
    s.status = "unsubscribed"
    session.commit()
    report, _ = run(session, HEADER + "p@example.com,,,\n", status="active")
    assert report.unchanged == 1 and prefs(session, "p@example.com").status == "unsubscribed"


def test_topics_option_adds_to_every_row(session):
    run(session, HEADER + "t@example.com,,heat,\n")
    report, _ = run(session, "email\nt@example.com\nu@example.com\n", topics=["nova"])
    assert (report.added, report.updated) == (1, 1)
    assert prefs(session, "t@example.com").topics == frozenset({"heat", "nova"})
    assert prefs(session, "u@example.com").topics == frozenset({"nova"})
    with pytest.raises(InvalidInput, match="swift"):
        run(session, "email\nv@example.com\n", topics=["swift"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"name,topics\nx,nova\n", "no email column"),
        ("邮件,x\n".encode("gbk"), "no email column"),
        ("email\na@example.com\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_files_that_cannot_be_imported_are_one_line_errors(session, data, message):
    with pytest.raises(InvalidInput, match=message) as excinfo:
        run(session, data)
    assert "\n" not in str(excinfo.value)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_export_round_trips(session, db_engine):
    run(
        session,
        HEADER
        + 'li@example.com,"Li, Lei",nova;neutron,zh\nhan@example.com,韩梅梅,,en\n'
        + 'q@example.com,"Quote ""Q""",heat,en\n',
    )
    run(session, HEADER + "pend@example.com,,heat,\n", status="pending")
    first = io.StringIO()
    assert export_csv(session, first) == 4
    rows = list(csv.DictReader(io.StringIO(first.getvalue())))
    assert rows[0]["email"] == "li@example.com" and rows[0]["topics"] == "neutron;nova"
    assert [r["status"] for r in rows] == ["active", "active", "active", "pending"]

    # into an emptied database and out again: the same subscribers
    with db_engine.begin() as connection:
        connection.execute(delete(Subscriber))
    report, rejects = run(session, first.getvalue().encode(), status="active")
    assert rejects == [] and report.added == 4
    second = io.StringIO()
    export_csv(session, second)

    def content(text: str) -> list[tuple[str, ...]]:
        return [
            tuple(r[c] for c in ("email", "name", "topics", "locale", "status"))
            for r in csv.DictReader(io.StringIO(text))
        ]

    assert content(second.getvalue()) == content(first.getvalue())
    only_pending = io.StringIO()
    assert export_csv(session, only_pending, statuses=["pending"]) == 1


def test_imported_times_read_back_like_orm_written_ones(session):
    """The bulk path writes timestamps through the column type, so they compare and read back alike."""
    run(session, HEADER + "t@example.com,,,\n")
    subscriber = find_subscriber(session, "t@example.com")
    assert subscriber.created_at == T0 and subscriber.confirmed_at == T0
    assert (
        session.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.created_at >= T0)) == 1
    )
    assert session.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.created_at > T0)) == 0


def test_an_unclosed_quote_rejects_its_row_only_and_the_rows_after_it_are_read(session):
    report, rejects = run(
        session,
        HEADER + 'ann@example.org,Ann,nova,zh\nbob@example.org,"Bob,nova,en\ncy@example.org,Cy,,en\n'
        'dee@example.org,"Dee\nDuo",heat,zh\neve@example.org,Eve,,zh\nfay@example.org,"Fay,,\n',
    )
    assert [(r.line, r.reason) for r in rejects] == [
        (3, 'a quoted cell opened on this line is never closed (a " is missing)'),
        (8, 'a quoted cell opened on this line is never closed (a " is missing)'),
    ]
    assert report.added == 4 and report.rejected == 2
    assert prefs(session, "dee@example.org").name == "Dee Duo", "a cell over two lines is still one cell"
    assert prefs(session, "eve@example.org").topics == frozenset()


def test_a_column_named_twice_is_one_line_naming_it(session):
    with pytest.raises(InvalidInput, match="names the email column twice \\('Email' and '邮箱'\\)") as info:
        run(session, "Email,name,邮箱\na@example.org,A,b@example.org\n")
    assert "\n" not in str(info.value)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_export_neutralises_spreadsheet_formulas_and_imports_back_unchanged(session):
    hostile = ['=HYPERLINK("http://evil.example","click")', "+1 555", "-minus", "@SUM(A1)", "\tTab"]
    rows = "".join(
        f'person{n}@example.org,"{name.replace(chr(34), chr(34) * 2)}",nova,zh\n'
        for n, name in enumerate(hostile)
    )
    report, rejects = run(session, HEADER + rows + "-lead@example.org,Plain,,en\n")
    assert report.added == 6 and not rejects
    exported = io.StringIO()
    export_csv(session, exported)
    cells = [cell for row in csv.reader(io.StringIO(exported.getvalue())) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], (
        "no cell a spreadsheet evaluates"
    )
    assert "'-lead@example.org" in cells and '\'=HYPERLINK("http://evil.example","click")' in cells
    raw = io.StringIO()
    export_csv(session, raw, raw=True)
    assert "=HYPERLINK" in raw.getvalue() and "'=HYPERLINK" not in raw.getvalue()
    again, rejects = run(session, exported.getvalue())
    assert again.unchanged == 6 and again.added == again.updated == 0 and not rejects
    assert prefs(session, "person0@example.org").name == hostile[0]
    assert prefs(session, "-lead@example.org").email == "-lead@example.org"


@pytest.mark.parametrize(
    ("given", "stored"),
    [("ann@例え.jp", "ann@xn--r8jz45g.jp"), ("Ann@Bücher.DE", "Ann@xn--bcher-kva.de")],
)
def test_internationalised_domains_are_stored_in_their_ascii_form(session, given, stored):
    report, rejects = run(session, HEADER + f"{given},Ann,,en\n")
    assert report.added == 1 and not rejects
    assert prefs(session, stored.lower()).email == stored


def test_a_local_part_that_is_not_ascii_is_rejected_with_the_reason(session):
    report, rejects = run(session, HEADER + "用户@例え.jp,用户,,zh\nok@example.org,OK,,zh\n")
    assert report.added == 1 and len(rejects) == 1
    assert rejects[0].line == 2 and "not ASCII" in rejects[0].reason and "SMTPUTF8" in rejects[0].reason
