"""A crash leaves at most the message in flight in doubt: every send is journaled ahead of the ledger
(Redis for workers, a file in embedded mode), and the reaper resolves a dead claim's rows by it: sent rows
are recorded sent with their message id, rows never attempted go out again, only the row in flight is
``unknown`` (or resent under ``resend``)."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from sqlalchemy import select, update
from support.clock import Clock
from support.paths import PROJECT_ROOT, REFERENCE_ISSUE
from support.population import populate
from support.services import REDIS_URL
from support.waiting import wait_until

from mailer.sending import ledger
from mailer.sending.journal import (
    ClaimProgress,
    FileJournal,
    JournalError,
    RedisJournal,
    parse_entries,
)
from mailer.sending.models import Campaign, Delivery
from mailer.services import drafts, lifecycle, upkeep
from mailer.services.env import AppEnv
from mailer.settings import Settings

TOPICS = ["nova", "neutron", "tempest"]


# --- the journal itself ----------------------------------------------------------------------------
def test_entries_say_which_rows_were_sent_attempted_or_untouched():
    progress = parse_entries(["o", "a 5", "s 5 msg-5", "a 6", "s 6 msg-6", "a 7"])
    assert progress is not None
    assert [progress.fate(row) for row in (5, 6, 7, 8)] == ["sent", "sent", "in_doubt", "not_attempted"]
    assert progress.sent == {5: "msg-5", 6: "msg-6"}
    assert parse_entries(["o"]) == ClaimProgress()
    assert parse_entries(["a 5"]) is None, "not opened by this project: every row in doubt"
    assert parse_entries([]) is None


def test_a_redis_journal_is_written_without_round_trips_and_checked_at_each_record(
    redis_client, redis_prefix
):
    journal = RedisJournal(redis.Redis.from_url(REDIS_URL), redis_prefix, ttl=60)
    writer = journal.open("aa11aa11aa11aa11")
    writer.attempt(1)
    writer.attempt(2, (1, "ses-1"))
    writer.check()
    assert redis_client.llen(f"{redis_prefix}:journal:aa11aa11aa11aa11") == 4, "checked: all arrived"
    writer.attempt(3, (2, "ses-2"))
    writer.abandon()
    journal.drop_connection()  # the sender dies: its socket closes, and what the cork held is sent
    wait_until(lambda: redis_client.llen(f"{redis_prefix}:journal:aa11aa11aa11aa11") == 6, timeout=5)
    progress = journal.read("aa11aa11aa11aa11")
    assert (
        progress is not None and progress.sent == {1: "ses-1", 2: "ses-2"} and progress.fate(3) == "in_doubt"
    )
    assert 0 < redis_client.ttl(f"{redis_prefix}:journal:aa11aa11aa11aa11") <= 60

    # entries that never arrived (the key lost meanwhile) are noticed at the next record
    writer = journal.open("bb22bb22bb22bb22")
    writer.attempt(1)
    writer.check()
    redis_client.delete(f"{redis_prefix}:journal:bb22bb22bb22bb22")
    writer.attempt(2)
    with pytest.raises(JournalError, match=r"holds 1 of the 3 entries written"):
        writer.check()
    writer = journal.open("cc33cc33cc33cc33")  # on a new connection: the failed one was dropped
    writer.attempt(1)
    writer.close()  # every outcome in the ledger: the journal goes
    assert journal.round_trip(("PING",)) == b"PONG"  # the DEL before it is done
    assert journal.read("cc33cc33cc33cc33") is None
    journal.forget(["aa11aa11aa11aa11"])
    assert journal.read("aa11aa11aa11aa11") is None


def test_a_file_journal_ignores_a_line_cut_short_and_refuses_foreign_names(tmp_path):
    journal = FileJournal(tmp_path / "journal")
    writer = journal.open("dd44dd44dd44dd44")
    writer.attempt(12)
    writer.attempt(13, (12, "file-12"))
    writer.abandon()
    with (tmp_path / "journal" / "dd44dd44dd44dd44.journal").open("ab") as handle:
        handle.write(b"s 13 file-1")  # the kill came in the middle of a write
    progress = journal.read("dd44dd44dd44dd44")
    assert progress is not None and progress.sent == {12: "file-12"} and progress.fate(13) == "in_doubt"
    assert journal.read("../../etc/passwd") is None
    journal.forget(["dd44dd44dd44dd44", "../x"])
    assert not (tmp_path / "journal" / "dd44dd44dd44dd44.journal").exists()


# --- the reaper reads it ---------------------------------------------------------------------------
@dataclass
class Started:
    """A started campaign whose batches are recorded (``enqueued``), with a clock the test moves."""

    settings: Settings
    env: AppEnv
    clock: Clock
    enqueued: list[int]
    campaign_id: int


def _started(tmp_path: Path, url: str, count: int, **settings: object) -> Started:
    clock = Clock()
    values = Settings(data_dir=tmp_path, database_url=url, secret_key="k", **settings)  # type: ignore[arg-type]
    enqueued: list[int] = []
    env = AppEnv.from_settings(values, clock=clock, enqueue=lambda _c, ids: enqueued.extend(ids))
    draft = drafts.read_draft(env, REFERENCE_ISSUE)
    populate(url, count, TOPICS, issue_topics=draft.issue.topics)
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id
    lifecycle.start_stepwise(env, campaign_id)
    return Started(values, env, clock, enqueued, campaign_id)


@pytest.mark.parametrize("policy", ["unknown", "resend"])
def test_the_reaper_resolves_a_dead_claim_row_by_row(tmp_path, database_url, policy):
    started = _started(tmp_path, database_url, 40, on_lost_send=policy)
    env, campaign_id, enqueued = started.env, started.campaign_id, started.enqueued
    journal = FileJournal(tmp_path / "journal")
    with env.transaction() as session:  # a sender claims ten rows, sends three, dies sending the fourth
        ids = sorted(enqueued)[:10]
        writer = journal.open("ee55ee55ee55ee55")
        claimed, _ = ledger.claim(session, campaign_id, ids, "ee55ee55ee55ee55", now=env.now())
    rows = sorted(row.id for row in claimed)
    writer.attempt(rows[0])
    writer.attempt(rows[1], (rows[0], "m0"))
    writer.attempt(rows[2], (rows[1], "m1"))
    writer.attempt(rows[3], (rows[2], "m2"))
    writer.abandon()

    enqueued.clear()
    started.clock.advance(started.settings.lease_seconds + 1)
    report = upkeep.reap_stepwise(env)
    with env.sessions() as session:
        found = {
            row.id: (row.status, row.message_id)
            for row in session.scalars(select(Delivery).where(Delivery.id.in_(rows)))
        }
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
    assert [found[row] for row in rows[:3]] == [("sent", "m0"), ("sent", "m1"), ("sent", "m2")]
    assert report.recovered == 3
    if policy == "unknown":
        assert found[rows[3]][0] == "unknown" and report.unknown == 1 and campaign.unknown == 1
        assert rows[3] not in enqueued
    else:
        assert found[rows[3]][0] == "queued" and report.unknown == 0
        assert rows[3] in enqueued
    assert set(rows[4:]) <= set(enqueued), "the rows never attempted go out again"
    assert not set(rows[:3]) & set(enqueued), "the rows sent do not"
    assert {found[row][0] for row in rows[4:]} == {"queued"}
    assert campaign.sent == 3
    assert journal.read("ee55ee55ee55ee55") is None, "applied and forgotten"


def test_a_dead_claim_without_a_journal_is_in_doubt_as_before(tmp_path, database_url):
    started = _started(tmp_path, database_url, 20)
    with started.env.transaction() as session:
        claimed, _ = ledger.claim(
            session,
            started.campaign_id,
            sorted(started.enqueued)[:5],
            "ff66ff66ff66ff66",
            now=started.clock(),
        )
    started.clock.advance(started.settings.lease_seconds + 1)
    report = upkeep.reap_stepwise(started.env)
    assert report.unknown == len(claimed) and report.recovered == 0


# --- a real process killed mid-batch -----------------------------------------------------------------
SENDER = """
import sys
from mailer.services import drafts, lifecycle, upkeep
from mailer.services.env import AppEnv
from mailer.settings import Settings
env = AppEnv.from_settings(Settings())
lifecycle.start_stepwise(env, int(sys.argv[1]))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("journal_in", "database_url"),
    [
        ("a file", "sqlite"),
        pytest.param("a file", "postgresql", marks=pytest.mark.postgres),
        pytest.param(
            "redis", "postgresql", marks=pytest.mark.postgres
        ),  # the Redis journal runs with PostgreSQL
    ],
    indirect=["database_url"],
)
def test_a_sender_killed_mid_batch_leaves_at_most_its_message_in_flight_in_doubt(
    tmp_path, database_url, journal_in, redis_prefix
):
    values: dict[str, object] = {
        "data_dir": tmp_path / "data", "database_url": database_url, "secret_key": "k", "batch_size": 100,
        "fill_chunk": 100, "file_send_rate": 150.0, "rate_burst": 1,
    }  # fmt: skip
    if journal_in == "redis":
        values |= {"redis_url": REDIS_URL, "redis_prefix": redis_prefix}
    settings = Settings(**values)  # type: ignore[arg-type]
    clock = Clock()
    env = AppEnv.from_settings(settings, clock=clock)
    draft = drafts.read_draft(env, REFERENCE_ISSUE)
    population = populate(database_url, 320, TOPICS, issue_topics=draft.issue.topics)
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id
    outbox = settings.resolved_outbox_dir

    def files() -> int:
        return len(list(outbox.glob(f"{campaign_id}.*.eml"))) if outbox.exists() else 0

    process_env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    process_env |= {f"NEWSLETTER_{name.upper()}": str(value) for name, value in values.items()}
    sender = subprocess.Popen(
        [sys.executable, "-c", SENDER, str(campaign_id)], cwd=PROJECT_ROOT, env=process_env
    )
    try:
        wait_until(
            lambda: files() >= 130, timeout=60, interval=0.01, what="the sender's second batch under way"
        )
    finally:
        sender.send_signal(signal.SIGKILL)
        sender.wait(10)
    time.sleep(0.2)
    with env.sessions() as session:
        before = Counter(session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign_id)))
    on_disk_at_kill = files()

    clock.now = datetime.now(UTC) + timedelta(seconds=settings.lease_seconds + 1)  # a lease later
    report = upkeep.reap_stepwise(env)  # embedded: what it queues again is sent here
    with env.sessions() as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)))
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
    print(
        f"\nkilled with {on_disk_at_kill} messages written and the ledger at {dict(before)}; the reaper "
        f"recorded {report.recovered} sent from the journal, queued {report.resent} again, marked "
        f"{report.unknown} unknown"
    )
    assert before["sending"] > 1, "the kill left a claimed batch to resolve"
    assert report.unknown <= 1, "only the message in flight is in doubt"
    assert campaign.status == "done" and campaign.queued_all
    by_status = Counter(row.status for row in rows)
    assert by_status["sent"] + by_status["unknown"] == len(population.expected) and by_status["unknown"] <= 1
    received: Counter[str] = Counter()
    for path in outbox.glob(f"{campaign_id}.*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        received[message["To"].addresses[0].addr_spec] += 1
    for row in rows:
        if row.status == "sent":
            assert received[row.email] == 1, f"{row.email}: sent once, and recorded"
            assert row.message_id, "recorded with its message id"
        else:
            assert received[row.email] <= 1
    assert max(received.values()) == 1, "nobody got the issue twice"


def test_a_journal_that_cannot_be_written_stops_the_batch_and_gives_its_rows_back(tmp_path, database_url):
    """The journal's folder is a file: nothing is sent without its journal entry, the rows go back."""
    (tmp_path / "journal").write_text("in the way")
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key="k")  # type: ignore[call-arg]
    enqueued: list[int] = []
    env = AppEnv.from_settings(settings, enqueue=lambda _c, ids: enqueued.extend(ids))
    draft = drafts.read_draft(env, REFERENCE_ISSUE)
    populate(database_url, 20, TOPICS, issue_topics=draft.issue.topics)
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id
    lifecycle.start_stepwise(env, campaign_id)
    from mailer.sending.sender import send_batch_stepwise

    with pytest.raises(JournalError, match="cannot be opened"):
        send_batch_stepwise(env.send_context(), campaign_id, enqueued)
    with env.transaction() as session:
        statuses = set(session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign_id)))
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status="sending"))
    assert statuses == {"queued"}
    assert not settings.resolved_outbox_dir.exists() or not list(settings.resolved_outbox_dir.iterdir())
