"""Reading a subscriber CSV as a stream of validated rows and rejects. Pure: bytes in, rows out, no DB.

Encoding: UTF-8 (with or without BOM), or GB18030 (a superset of GBK) as Chinese spreadsheets save it.
The file is read as bytes, line by line (memory stays flat), and each line is decoded on its own. While
every line so far was ASCII nothing is decided (ASCII is the same in both); the first non-ASCII line
decides: UTF-8 if it decodes as UTF-8, else GB18030. A later line that does not decode in the decided
encoding is kept with its bytes escaped (surrogateescape), so the CSV structure survives, and its row is
rejected ("bytes not valid in UTF-8") instead of storing mojibake. The rejects file can write those bytes
back unchanged.
"""

from __future__ import annotations

import csv
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from subscribers.errors import InvalidInput, SubscribersError
from subscribers.exporter import restore_formula
from subscribers.models import STATUSES
from subscribers.normalise import normalise_address, normalise_locale, normalise_name, split_topics

__all__ = ["COLUMN_ALIASES", "CsvRow", "DecodedLines", "Reject", "read_rows"]

# Header spellings seen in exports of mail tools and Chinese spreadsheets -> our column.
COLUMN_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "email address": "email",
    "e-mail address": "email",
    "mail": "email",
    "邮箱": "email",
    "电子邮件": "email",
    "电子邮箱": "email",
    "邮件地址": "email",
    "邮箱地址": "email",
    "name": "name",
    "full name": "name",
    "姓名": "name",
    "名字": "name",
    "称呼": "name",
    "topics": "topics",
    "topic": "topics",
    "主题": "topics",
    "关注": "topics",
    "locale": "locale",
    "language": "locale",
    "lang": "locale",
    "语言": "locale",
    "status": "status",
    "状态": "status",
}
_SURROGATE = re.compile("[\udc80-\udcff]")
csv.field_size_limit(1 << 20)  # one field over a megabyte is a broken file, not a subscriber


class Reject(NamedTuple):
    line: int  # physical line where the row starts (the header is line 1)
    reason: str
    fields: tuple[str, ...]  # the row as read (undecodable bytes escaped)


class CsvRow(NamedTuple):  # a tuple, not a frozen dataclass: built once per row of a million-row file
    line: int
    email: str
    key: str
    name: str | None  # None: the cell was empty or absent (keep what is stored)
    locale: str | None
    topics: tuple[str, ...] | None  # topic names as written; None: empty cell or no topics column
    status: str | None
    fields: tuple[str, ...]  # the row as read, for the rejects file


class DecodedLines:
    """Iterate text lines of a binary stream, deciding UTF-8 or GB18030 on the first non-ASCII line."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.encoding: str | None = None  # None while every line so far was ASCII
        self.bytes_read = 0
        self.undecodable_lines = 0

    def __iter__(self) -> Iterator[str]:
        first = True
        for raw in self._stream:
            self.bytes_read += len(raw)
            if first:
                first = False
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise InvalidInput("the file is UTF-16; save it as CSV UTF-8 (or GBK) and import again")
                if raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                    self.encoding = "utf-8"
            if raw.isascii():
                yield raw.decode("ascii")
                continue
            if self.encoding is None:
                try:
                    text = raw.decode("utf-8")
                    self.encoding = "utf-8"
                except UnicodeDecodeError:
                    self.encoding = "gb18030"
                else:
                    yield text
                    continue
            try:
                yield raw.decode(self.encoding)
            except UnicodeDecodeError:
                self.undecodable_lines += 1
                yield raw.decode(self.encoding, errors="surrogateescape")


def _header(fields: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(fields):
        column = COLUMN_ALIASES.get(" ".join(name.strip().strip("\ufeff").lower().replace("_", " ").split()))
        if column and column in columns:  # which of the two would win is a guess: refuse instead
            first = fields[columns[column]].strip()
            raise InvalidInput(
                f"the header names the {column} column twice ({first!r} and {name.strip()!r}); keep one"
            )
        if column:
            columns[column] = index
    if "email" not in columns:
        found = ", ".join(repr(f.strip()) for f in fields[:8]) or "nothing"
        raise InvalidInput(f"the header row has no email column (found {found})")
    return columns


def _delimiter(first_line: str) -> str:
    if "," not in first_line:
        for candidate in ("\t", ";"):
            if candidate in first_line:
                return candidate
    return ","


_COLUMNS = ("email", "name", "topics", "locale", "status")


def _getter(columns: dict[str, int], length: int) -> Callable[[list[str]], tuple[str, ...]]:
    """Picks our five columns from a row of ``length`` cells whose last cell is the empty padding."""
    return operator.itemgetter(
        *(i if (i := columns.get(c, -1)) >= 0 and i < length - 1 else -1 for c in _COLUMNS)
    )


def _parse(
    fields: list[str], cells: Callable[[list[str]], tuple[str, ...]], line: int, check: bool
) -> CsvRow:
    if check and _SURROGATE.search("".join(fields)):
        raise InvalidInput("bytes that are not valid in the file's encoding")
    # one empty cell appended: the index of every column the header lacks (or a short row misses)
    # a cell an export neutralised against spreadsheet formulas ('=...) reads back as it was
    email, name, topics, locale, status = map(restore_formula, cells([*fields, ""]))
    address = normalise_address(email)
    if status:
        status = status.strip().lower()
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}")
    topic_list = split_topics(topics) if topics else None
    name = name.strip()
    locale = locale.strip()
    return CsvRow(
        line,
        address.email,
        address.key,
        normalise_name(name) if name else None,
        normalise_locale(locale) if locale else None,
        tuple(topic_list) if topic_list else None,
        status or None,
        tuple(fields),
    )


@dataclass
class ReadState:
    """What the reader learnt, for the caller's report."""

    lines: DecodedLines
    columns: dict[str, int] = field(default_factory=dict)
    header: tuple[str, ...] = ()


def read_rows(
    stream: BinaryIO, on_state: Callable[[ReadState], None] | None = None
) -> Iterator[CsvRow | Reject]:
    """Rows of a subscriber CSV, each either a valid CsvRow or a Reject with its line and reason.

    Raises InvalidInput (before any row) for a file without a header or without an email column.
    Blank rows are skipped. Nothing in a row, however malformed, raises: it becomes a Reject.
    """
    lines = DecodedLines(stream)
    iterator = iter(lines)
    first = next(iterator, None)
    while first is not None and not first.strip():
        first = next(iterator, None)
    if first is None:
        raise InvalidInput("the file is empty; a header row with an 'email' column is required")
    delimiter = _delimiter(first)
    try:
        header_fields = next(csv.reader([first], delimiter=delimiter), [])
    except csv.Error as exc:
        raise InvalidInput(f"the header row is not readable as CSV ({exc})") from None
    state = ReadState(lines, _header(header_fields), tuple(header_fields))
    if on_state:
        on_state(state)
    yield from _rows(_chain(first, iterator), delimiter, state, lines)


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    # the header line goes through the csv reader again so that line numbers count it as line 1
    yield first
    yield from rest


MAX_FIELD_LINES = 10  # a quoted cell may hold line breaks, over this many lines it is taken as unclosed
_UNCLOSED = "\x00unclosed quote"  # stands in for a line whose quoted cell never closes (see _closed)


def _closed(lines: Iterator[str], delimiter: str, cells: int) -> Iterator[str]:
    """The lines for the csv reader, with any line whose quoted cell never closes replaced by a marker
    that becomes a reject; without it the reader would take every following row into that one cell.
    A line opens a cell over several lines when it has an odd number of quote marks (a quote inside a
    cell is doubled); the cell is taken as unclosed when no later line closes it within MAX_FIELD_LINES
    lines, or when a line in between looks like a record of its own (every delimiter of a row, no
    quote to close the cell)."""
    pending: list[str] = []
    for line in lines:
        if not pending:
            if line.count('"') % 2:
                pending = [line]
            else:
                yield line
            continue
        quotes = line.count('"') % 2
        if not quotes and line.count(delimiter) >= cells - 1 or len(pending) >= MAX_FIELD_LINES:
            yield _UNCLOSED + "\n"
            yield from _closed(iter([*pending[1:], line]), delimiter, cells)  # read as rows again
            pending = []
            continue
        pending.append(line)
        if quotes:  # closes the cell the first pending line opened
            yield from pending
            pending = []
    if pending:
        yield _UNCLOSED + "\n"
        yield from _closed(iter(pending[1:]), delimiter, cells)


def _rows(
    lines: Iterable[str], delimiter: str, state: ReadState, decoded: DecodedLines
) -> Iterator[CsvRow | Reject]:
    columns = state.columns
    width = max(columns.values()) + 1
    getter = _getter(columns, width + 1)
    unclosed_checked = _closed(iter(lines), delimiter, len(state.header))
    reader = csv.reader(unclosed_checked, delimiter=delimiter, strict=False)
    next(reader)  # the header
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Reject(start, f"unreadable CSV: {exc}", ())
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if fields and fields[0] == _UNCLOSED:
            reason = 'a quoted cell opened on this line is never closed (a " is missing)'
            yield Reject(line, reason, ())
            continue
        if not "".join(fields).strip():
            continue
        # the getter picks the five cells in one C call; a short row gets the appended "" for the rest
        padded = len(fields) + 1
        cells = getter if len(fields) >= width else _getter(columns, padded)
        try:
            yield _parse(fields, cells, line, decoded.undecodable_lines > 0)
        except SubscribersError as exc:
            yield Reject(line, str(exc), tuple(fields))
