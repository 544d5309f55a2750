"""A failed send never hangs: when the embedded sending work dies (its database connection killed, a bug),
following stops at once with one error, the campaign is paused with the cause as its reason, and a resume
finishes it with every reader sent exactly once. ``newsletter send`` exits non-zero when the campaign ends
paused."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, make_url, select
from support.paths import REFERENCE_ISSUE
from support.population import populate

from mailer.errors import SendingStopped, error_kind
from mailer.sending.models import Campaign, Delivery
from mailer.sending.sender import send_batch_stepwise
from mailer.services import drafts, lifecycle, watch
from mailer.services.env import AppEnv
from mailer.settings import Settings

TOPICS = ["nova", "neutron", "tempest"]


def _kill_other_connections(url: str) -> int:
    """What a database restart or a failover does to this process: every other connection to the
    test database is terminated by the server."""
    parsed = make_url(url)
    with psycopg.connect(
        host=parsed.host, port=parsed.port or 5432, user=parsed.username, dbname=parsed.database,
        autocommit=True,
    ) as conn:  # fmt: skip
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(killed[0]) if killed else 0


def _ledger(env: AppEnv, campaign_id: int) -> Counter[str]:
    with env.sessions() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.status)
        ).all()
    return Counter({status: count for status, count in rows})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "database_url"),
    [
        pytest.param("connections killed", "postgresql", marks=pytest.mark.postgres),  # a server kills them
        ("a bug", "sqlite"),
        pytest.param("a bug", "postgresql", marks=pytest.mark.postgres),
    ],
    indirect=["database_url"],
)
def test_a_send_whose_work_dies_stops_following_pauses_and_resumes_exactly_once(
    tmp_path, database_url, fault
):
    settings = Settings(
        data_dir=tmp_path, database_url=database_url, secret_key="k", batch_size=20, fill_chunk=20
    )  # type: ignore[call-arg]
    batches: list[int] = []

    def failing_enqueue(campaign_id: int, ids: Sequence[int]) -> None:
        batches.append(len(ids))
        if len(batches) == 3:  # between two batches: nothing is claimed when the fault strikes
            if fault == "a bug":
                raise RuntimeError("a bug in the sending path")
            assert _kill_other_connections(database_url) >= 1
        send_batch_stepwise(env.send_context(), campaign_id, ids)

    env = AppEnv.from_settings(settings, enqueue=failing_enqueue)
    draft = drafts.read_draft(env, REFERENCE_ISSUE)
    population = populate(database_url, 200, TOPICS, issue_topics=draft.issue.topics)
    with env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=env.now()).id

    watched: list[str] = []
    outcome: list[BaseException] = []

    def follow() -> None:
        try:
            watch.run_and_watch(
                env, campaign_id, lambda: lifecycle.start_stepwise(env, campaign_id),
                lambda state: watched.append(state.status), poll=0.05,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    follower.join(60)
    assert not follower.is_alive(), "following must stop when the sending work dies"
    assert len(outcome) == 1 and isinstance(outcome[0], SendingStopped), outcome
    message = str(outcome[0])
    assert "\n" not in message and f"campaign {campaign_id}" in message
    assert "it is paused" in message and f"newsletter campaigns resume {campaign_id}" in message
    assert error_kind(outcome[0]).exit_code != 0

    with env.sessions() as session:
        shown = watch.progress(session, campaign_id, now=env.now())
    assert shown.status == "paused"
    assert shown.reason and shown.reason.startswith("the sending process stopped:")
    before = _ledger(env, campaign_id)
    # the bug stops the third batch; a killed connection is reopened by the sender (pre-ping) and fails
    # the fill's own session at its next statement, after the third batch
    assert before["sent"] in (40, 60) and before["sending"] == 0, before

    healthy = AppEnv.from_settings(settings)
    lifecycle.resume_stepwise(healthy, campaign_id)
    after = _ledger(healthy, campaign_id)
    assert after == Counter({"sent": len(population.expected)}), after
    with healthy.sessions() as session:
        per_reader = Counter(
            session.scalars(select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign_id))
        )
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.status == "done"
    assert set(per_reader) == set(population.expected) and set(per_reader.values()) == {1}
    sent_files = Counter(path.name.split(".")[0] for path in settings.resolved_outbox_dir.glob("*.eml"))
    assert sent_files[str(campaign_id)] == len(population.expected), "every reader got exactly one file"


@pytest.mark.slow
def test_send_exits_non_zero_when_the_campaign_ends_paused(tmp_path, smtp_sink):
    """The mail server turns every recipient away: the campaign pauses itself after the consecutive-failure
    limit, and ``send`` says so in one line and exits 7."""
    smtp_sink.refuse_all = (550, "5.7.1 relaying denied")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATA_DIR": str(tmp_path / "var"),
            "NEWSLETTER_TRANSPORT": "smtp",
            "NEWSLETTER_SMTP_HOST": smtp_sink.host,
            "NEWSLETTER_SMTP_PORT": str(smtp_sink.port),
            "NEWSLETTER_SECRET_KEY": "a key of this deployment",
            "NEWSLETTER_MAX_CONSECUTIVE_FAILURES": "5",
            "NEWSLETTER_SENDER_ADDRESS": "news@example.org",
            "COLUMNS": "200",
        }
    )

    def newsletter(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from mailer.cli import main; main()", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    imported = newsletter(
        "subscribers", "import", str(Path(__file__).parents[2] / "mailer/samples/subscribers.csv")
    )
    assert imported.returncode == 0, imported.stderr
    sent = newsletter("send", str(REFERENCE_ISSUE))
    assert sent.returncode == 7, (sent.stdout, sent.stderr)
    assert "Traceback" not in sent.stderr
    errors = [line for line in sent.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, sent.stderr
    assert "campaign 1 ended paused" in errors[0] and "newsletter campaigns resume 1" in errors[0]
    assert not smtp_sink.received
    shown = newsletter("campaigns", "show", "1")
    assert shown.returncode == 0 and "paused" in shown.stdout and "5 failures in a row" in shown.stdout


@pytest.mark.postgres
def test_following_a_send_survives_a_dropped_connection(tmp_path, pg_server_url):
    """The watcher's own pooled connection killed by the server (a restart, a failover) while the work
    goes on: one look fails, the pool replaces the connection, and following continues to the end."""
    from plugins.db import create_pg_database, drop_pg_database

    name = f"nlwatch_{os.getpid()}"
    url = create_pg_database(name)
    settings = Settings(data_dir=tmp_path, database_url=url, secret_key="k")  # type: ignore[call-arg]
    env = AppEnv.from_settings(settings)
    try:
        with env.transaction() as session:
            campaign_id = lifecycle.create(session, drafts.read_draft(env, REFERENCE_ISSUE), now=env.now()).id
        looks: list[str] = []
        killed = threading.Event()

        def work() -> None:  # the send's work: it outlives the kill
            threading.Event().wait(0.4)
            assert _kill_other_connections(url) >= 1
            killed.set()
            threading.Event().wait(0.6)

        final = watch.run_and_watch(
            env, campaign_id, work, lambda state: looks.append(state.status), poll=0.05
        )
        assert killed.is_set() and final.status == "draft"
        assert len(looks) >= 10
    finally:
        env.close()
        drop_pg_database(name)
