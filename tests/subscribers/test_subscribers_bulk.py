"""subscribers.bulk.insert_rows: many rows in one statement of a fixed text (PostgreSQL: unnest of
binary arrays; SQLite: executemany), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest
from sqlalchemy import Table, select
from sqlalchemy.exc import DBAPIError

from subscribers.bulk import insert_rows
from subscribers.models import Suppression

SUPPRESSIONS = cast(Table, Suppression.__table__)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _row(key: str, evidence: str | None) -> dict[str, object]:
    return {"email_key": key, "email": key, "reason": "manual", "created_at": NOW, "evidence": evidence}


def test_values_arrive_as_given_and_taken_keys_are_skipped(db_session):
    session = db_session
    awkward = ['say "hi"', "back\\slash", "a,b", "NULL", "", "{braces}", "中文 ✉", None]
    rows = [_row(f"r{i}@example.org", value) for i, value in enumerate(awkward)]
    inserted = insert_rows(session, SUPPRESSIONS, rows, skip_conflicts=True, returning="email_key")
    assert sorted(map(str, inserted)) == sorted(str(r["email_key"]) for r in rows)
    again = [_row("r0@example.org", "second"), _row("new@example.org", "x"), _row("new@example.org", "y")]
    inserted = insert_rows(session, SUPPRESSIONS, again, skip_conflicts=True, returning="email_key")
    assert inserted == ["new@example.org"]  # a taken key, and a key twice in one call, are skipped
    stored = {
        key: evidence
        for key, evidence in session.execute(select(Suppression.email_key, Suppression.evidence))
    }
    assert [stored[f"r{i}@example.org"] for i in range(len(awkward))] == awkward
    assert stored["new@example.org"] == "x"
    assert session.scalar(select(Suppression.created_at).limit(1)) == NOW
    assert insert_rows(session, SUPPRESSIONS, [], returning="email_key") == []


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)  # SQLite does not enforce VARCHAR lengths
def test_a_value_too_long_for_its_column_is_refused_not_cut(db_session, database_url):
    """A cast to VARCHAR(n) would cut a long value without a word on PostgreSQL; the arrays travel as
    TEXT, so the insert refuses it like a single-row INSERT does."""
    session = db_session
    with pytest.raises(DBAPIError, match="too long"):
        insert_rows(session, SUPPRESSIONS, [_row("x" * 330 + "@example.org", None)], returning="email_key")
    session.rollback()
    assert session.scalar(select(Suppression.id).limit(1)) is None
