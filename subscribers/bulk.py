"""Many rows into one table in one statement whose text does not depend on how many rows there are.

On PostgreSQL the rows go column by column as arrays through ``unnest``: one fixed SQL text per table
and column set, so SQLAlchemy compiles it once and psycopg prepares it on the server. A multi-row
``VALUES`` list changes its text with the row count: it is compiled, parsed and planned again each time
(psycopg does not even cache its parsing past 50 parameters), which cost the webhook's group commit more
CPU than the database's own work. The arrays go in psycopg's binary format: its text format escapes
every quote of every value with a regular expression (a raw SNS message holds hundreds). Other dialects
(SQLite) take SQLAlchemy's executemany.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import adapters
from psycopg.types.array import ListBinaryDumper
from sqlalchemy import String, Table, TypeDecorator, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import TextClause

__all__ = ["insert_rows"]

_PG = postgresql.dialect()


class _BinaryArray(list[Any]):
    """A column of values, sent by psycopg as a binary array (plain lists keep psycopg's defaults)."""


adapters.register_dumper(_BinaryArray, ListBinaryDumper)
_TEXTS: dict[tuple[str, tuple[str, ...], bool, str | None], TextClause] = {}


def insert_rows(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    skip_conflicts: bool = False,
    returning: str | None = None,
) -> list[Any]:
    """Insert ``rows`` (every row with the same keys) into ``table``; with ``skip_conflicts``, a row that
    would take a value of a unique column taken already is skipped (ON CONFLICT DO NOTHING). Returns the
    ``returning`` column of each row inserted (in no particular order), or ``[]``."""
    if not rows:
        return []
    columns = tuple(rows[0])
    if session.get_bind().dialect.name != "postgresql":
        statement: Any = sqlite.insert(table)
        if skip_conflicts:
            statement = statement.on_conflict_do_nothing()
        if returning is None:
            session.execute(statement, list(rows))
            return []
        return list(session.scalars(statement.returning(table.c[returning]), list(rows)))
    params = {}
    for index, name in enumerate(columns):
        kind = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(kind, TypeDecorator):  # an array's elements skip the type's own conversion
            values = [kind.process_bind_param(value, _PG) for value in values]
        params[f"c{index}"] = _BinaryArray(values)
    result = session.execute(_unnest_insert(table, columns, skip_conflicts, returning), params)
    return list(result.scalars()) if returning is not None else []


def _unnest_insert(
    table: Table, columns: tuple[str, ...], skip_conflicts: bool, returning: str | None
) -> TextClause:
    key = (table.name, columns, skip_conflicts, returning)
    statement = _TEXTS.get(key)
    if statement is None:
        arrays = ", ".join(f"CAST(:c{i} AS {_array_of(table, name)})" for i, name in enumerate(columns))
        sql = f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
        if skip_conflicts:
            sql += " ON CONFLICT DO NOTHING"
        if returning is not None:
            sql += f" RETURNING {returning}"
        statement = _TEXTS[key] = text(sql)
    return statement


def _array_of(table: Table, column: str) -> str:
    """The array type a column's values travel as: strings as TEXT, so the insert's own conversion to
    the column's VARCHAR(n) refuses a value too long (a cast to VARCHAR(n) would cut it silently)."""
    kind = table.c[column].type
    return "TEXT[]" if isinstance(kind, String) else f"{kind.compile(dialect=_PG)}[]"
