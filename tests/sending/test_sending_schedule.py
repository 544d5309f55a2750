"""Scheduled campaigns: ``send --at``, nothing starts before it is due, overlapping start-due runs start a
due campaign once, rendering at start time (the audience of then), and cancelling before it is due."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from support.clock import Clock
from support.paths import REFERENCE_ISSUE
from support.population import populate

from mailer import samples
from mailer.errors import InputError
from mailer.sending.models import Campaign, Delivery, SegmentRendering
from mailer.services import drafts, lifecycle, upkeep
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import make_session_factory, open_database

REFERENCE = REFERENCE_ISSUE
TOPICS = ["nova", "neutron", "tempest", "ceilometer", "heat"]


class Scheduled:
    """Scheduling through the services, on a clock the test moves; enqueued rows are recorded."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.url = url
        self.settings = Settings(  # type: ignore[call-arg]
            data_dir=tmp_path, database_url=url, secret_key="k", sender_address="news@example.org"
        )
        self.clock = Clock()
        self.enqueued: list[int] = []
        self.lock = threading.Lock()
        self.env = AppEnv.from_settings(self.settings, clock=self.clock, enqueue=self.enqueue)
        self.draft = drafts.read_draft(self.env, REFERENCE_ISSUE)
        self.issue = self.draft.issue

    def schedule(self, at: datetime, *, override: bool = False) -> int:
        with self.env.transaction() as session:
            campaign_id = lifecycle.create(session, self.draft, now=self.clock()).id
            return lifecycle.schedule(session, self.env, campaign_id, at, override=override).id

    def enqueue(self, _cid: int, ids) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.enqueued.extend(ids)

    def start_due(self, now: datetime) -> list[int]:
        self.clock.now = now
        return upkeep.start_due_stepwise(self.env)

    def campaign(self, campaign_id: int) -> Campaign:
        with self.env.sessions() as session:
            campaign = session.get(Campaign, campaign_id)
            assert campaign is not None
            return campaign

    def count(self, model, campaign_id: int) -> int:  # type: ignore[no-untyped-def]
        with self.env.sessions() as session:
            return int(
                session.scalar(
                    select(func.count()).select_from(model).where(model.campaign_id == campaign_id)
                )
                or 0
            )


def test_a_due_campaign_starts_once_with_the_audience_of_its_start(tmp_path, database_url):
    run = Scheduled(tmp_path, database_url)
    early = populate(database_url, 60, TOPICS, issue_topics=run.issue.topics, seed=1)
    now = run.clock()
    campaign_id = run.schedule(now + timedelta(hours=1))
    assert run.campaign(campaign_id).status == "scheduled"

    assert run.start_due(now) == [], "not due yet"
    assert run.start_due(now + timedelta(minutes=59)) == []
    assert run.campaign(campaign_id).status == "scheduled"
    assert run.count(SegmentRendering, campaign_id) == 0, "nothing rendered at scheduling time"
    late = populate(database_url, 20, TOPICS, issue_topics=run.issue.topics, seed=2)  # joined meanwhile

    results: list[list[int]] = []
    barrier = threading.Barrier(2)

    def beat() -> None:
        barrier.wait()
        results.append(run.start_due(now + timedelta(hours=1, seconds=1)))

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == [[], [campaign_id]], "two overlapping runs start it once"

    expected = len(early.expected) + len(late.expected)
    campaign = run.campaign(campaign_id)
    assert campaign.status == "sending" and campaign.queued_all and campaign.total == expected
    assert campaign.started_at is not None and campaign.started_at >= now
    assert run.count(Delivery, campaign_id) == expected
    assert len(run.enqueued) == len(set(run.enqueued)) == expected, "each row enqueued once"
    assert run.count(SegmentRendering, campaign_id) > 1
    assert run.start_due(now + timedelta(hours=2)) == [], "a started campaign is not started again"


def test_a_campaign_cancelled_before_it_is_due_never_starts(tmp_path, database_url):
    run = Scheduled(tmp_path, database_url)
    populate(database_url, 20, TOPICS, issue_topics=run.issue.topics)
    now = run.clock()
    campaign_id = run.schedule(now + timedelta(minutes=5))
    with run.env.transaction() as session:
        assert lifecycle.cancel(session, campaign_id) == 0
    assert run.start_due(now + timedelta(minutes=10)) == []
    assert run.campaign(campaign_id).status == "cancelled"
    assert run.count(Delivery, campaign_id) == 0 and run.enqueued == []


def test_a_scheduled_campaign_paused_then_resumed_waits_for_its_time_again(tmp_path, database_url):
    run = Scheduled(tmp_path, database_url)
    population = populate(database_url, 20, TOPICS, issue_topics=run.issue.topics)
    now = run.clock()
    campaign_id = run.schedule(now + timedelta(minutes=5))
    with run.env.transaction() as session:
        lifecycle.pause(session, campaign_id)
    assert run.start_due(now + timedelta(minutes=10)) == [], "a paused campaign does not start"
    assert lifecycle.resume_stepwise(run.env, campaign_id) == 0
    assert run.campaign(campaign_id).status == "scheduled" and run.enqueued == []
    assert run.start_due(now + timedelta(minutes=10)) == [campaign_id]
    assert run.count(Delivery, campaign_id) == len(population.expected)


def test_a_schedule_time_is_refused_alike_whoever_asks(tmp_path, database_url):
    """``send --at`` and the API's schedule call one rule: in the past, without a UTC offset or more than
    a year ahead is an input error, and the campaign stays a draft."""
    run = Scheduled(tmp_path, database_url)
    now = run.clock()
    with run.env.transaction() as session:
        campaign_id = lifecycle.create(session, run.draft, now=now).id
    for at, problem in (
        (now - timedelta(minutes=1), "is in the past"),
        ((now + timedelta(days=1)).replace(tzinfo=None), "has no UTC offset"),
        (now + timedelta(days=5 * 365), "is more than a year ahead"),
    ):
        with pytest.raises(InputError, match=problem), run.env.transaction() as session:
            lifecycle.schedule(session, run.env, campaign_id, at)
    assert run.campaign(campaign_id).status == "draft"


def _newsletter(cwd: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"COLUMNS": "200", "NEWSLETTER_SENDER_ADDRESS": "news@example.org"}
    command = [sys.executable, "-c", "from mailer.cli import main; main()", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _run(cwd: Path, *args: str) -> tuple[int, str, str]:
    process = _newsletter(cwd, *args)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


@pytest.mark.slow
def test_send_at_then_start_due_from_two_overlapping_cron_runs(tmp_path):
    shutil.copy(samples.SUBSCRIBERS, tmp_path / "subscribers.csv")
    assert _run(tmp_path, "subscribers", "import", "subscribers.csv")[0] == 0
    for bad, why in (
        ("2020-01-01T09:00+08:00", "in the past"),
        ("2030-01-01T09:00", "no UTC offset"),
        ("next monday", "not an ISO time"),
    ):
        code, _out, err = _run(tmp_path, "send", str(REFERENCE), "--at", bad)
        assert code == 2 and why in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    due = datetime.now(UTC) + timedelta(hours=2)
    local = due.astimezone(timezone(timedelta(hours=8)))  # the editor's offset, stored in UTC
    code, out, err = _run(tmp_path, "send", str(REFERENCE), "--at", local.isoformat(timespec="seconds"))
    assert code == 0 and "campaign 1 scheduled for" in out, err
    code, out, _ = _run(tmp_path, "campaigns", "list")
    assert "scheduled" in out and due.strftime("%Y-%m-%d %H:%M") in out
    assert not (tmp_path / "var" / "outbox").exists() or not list((tmp_path / "var" / "outbox").iterdir())

    # the test owns the database: making the campaign due now stands in for waiting until it is
    engine = open_database(f"sqlite:///{tmp_path / 'var' / 'newsletter.db'}")
    with make_session_factory(engine)() as session:
        session.execute(update(Campaign).values(scheduled_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    engine.dispose()
    runs = [_newsletter(tmp_path, "campaigns", "start-due") for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in runs]
    assert [process.returncode for process in runs] == [0, 0], outputs
    started = [out for out, _ in outputs if "started scheduled campaign 1" in out]
    assert len(started) == 1, outputs
    assert "campaign 1 done: 28 sent" in started[0]
    assert len(list((tmp_path / "var" / "outbox").glob("1.*.eml"))) == 28
    code, out, _ = _run(tmp_path, "campaigns", "show", "1")
    assert code == 0 and "status done" in out and "scheduled for" in out
