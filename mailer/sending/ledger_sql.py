"""The ledger's hot-path SQL (claim, record, renew, release) as fixed text per dialect, for
``mailer.sending.ledger``."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from subscribers.db import UtcDateTime

__all__ = ["Statements", "statements"]


class Statements:
    """The hot path's statements (claim, record, renew, release) as fixed SQL text per dialect: the id
    lists are bound as one array (PostgreSQL) or one JSON text (SQLite), so each statement's text never
    changes with the batch. SQLAlchemy then compiles it once and psycopg prepares it on the server; built
    with ``in_()`` and ``case()`` they were compiled and parsed again at every call, which cost more CPU
    than the database's own work."""

    def __init__(self, dialect: str) -> None:
        if dialect == "postgresql":
            ids = "id = ANY(CAST(:ids AS BIGINT[]))"
            pairs = "unnest(CAST(:ids AS BIGINT[]), CAST(:vals AS TEXT[])) AS v(id, val)"
            triples = (
                "unnest(CAST(:ids AS BIGINT[]), CAST(:vals AS TEXT[]), CAST(:codes AS TEXT[])) "
                "AS v(id, val, code)"
            )
            self.pack: Callable[[Sequence[Any]], object] = list
        else:
            ids = "id IN (SELECT value FROM json_each(:ids))"
            pairs = (
                "(SELECT i.value AS id, m.value AS val FROM json_each(:ids) AS i "
                "JOIN json_each(:vals) AS m ON m.key = i.key) AS v"
            )
            triples = (
                "(SELECT i.value AS id, m.value AS val, c.value AS code FROM json_each(:ids) AS i "
                "JOIN json_each(:vals) AS m ON m.key = i.key "
                "JOIN json_each(:codes) AS c ON c.key = i.key) AS v"
            )
            self.pack = json.dumps
        now = bindparam("now", type_=UtcDateTime)
        mine = f"{ids} AND claim = :claim AND status = 'sending'"
        # "campaign_id + 0": the rows are found by their ids (the primary key) and only checked to belong to
        # the campaign. As a plain column the check let PostgreSQL's generic plan of the prepared statement
        # (chosen after five runs) intersect the ids with the campaign's whole range of the unique index:
        # a scan of every ledger row of the campaign per claim, measured at 3x the database's CPU.
        self.claim = text(
            "UPDATE deliveries SET status = 'sending', claim = :claim, claimed_at = :now, "
            f"attempts = attempts + 1 WHERE {ids} AND campaign_id + 0 = :campaign AND status = 'queued' "
            "AND (SELECT status FROM campaigns WHERE campaigns.id = :campaign) = 'sending' "
            "RETURNING id, subscriber_id, segment_id, email, name"
        ).bindparams(now)
        self.skip = text(
            f"UPDATE deliveries SET status = 'skipped', claim = NULL, last_error = :error WHERE {mine}"
        )
        self.sent = text(
            f"UPDATE deliveries SET status = 'sent', message_id = v.val, sent_at = :now, last_error = NULL "
            f"FROM {pairs} WHERE deliveries.id = v.id AND deliveries.claim = :claim "
            "AND deliveries.status = 'sending'"
        ).bindparams(now)
        self.failed = text(
            "UPDATE deliveries SET status = 'failed', last_error = v.val, error_code = v.code "
            f"FROM {triples} WHERE deliveries.id = v.id AND deliveries.claim = :claim "
            "AND deliveries.status = 'sending'"
        )
        self.renew = text(f"UPDATE deliveries SET claimed_at = :now WHERE {mine}").bindparams(now)
        self.release = text(
            "UPDATE deliveries SET status = :status, claim = NULL, queued_at = :now, last_error = :error "
            f"WHERE {mine}"
        ).bindparams(now)
        self.release_all = text(
            "UPDATE deliveries SET status = :status, claim = NULL, queued_at = :now, last_error = :error "
            "WHERE claim = :claim AND status = 'sending'"
        ).bindparams(now)
        self.counters = text(
            "UPDATE campaigns SET sent = sent + :sent, failed = failed + :failed, "
            "skipped = skipped + :skipped, unknown = unknown + :unknown, "
            "consecutive_failures = CASE WHEN :restart THEN 0 ELSE consecutive_failures END + :trailing "
            "WHERE id = :campaign RETURNING status, consecutive_failures"
        )


_made: dict[str, Statements] = {}


def statements(session: Session) -> Statements:
    """The statements of the session's dialect (made once per dialect and process)."""
    dialect = session.get_bind().dialect.name
    made = _made.get(dialect)
    if made is None:
        made = _made[dialect] = Statements(dialect)
    return made
