"""A send that crashed while filling the ledger is resumed without loss or duplicates (SQLite, PostgreSQL):
a real process killed with SIGKILL after its first committed chunk, then ``newsletter campaigns resume``;
and two fills racing on one campaign."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from support.paths import PROJECT_ROOT, REFERENCE_ISSUE
from support.population import populate
from support.waiting import wait_until

from mailer.sending.models import Campaign, Delivery
from mailer.services import drafts, lifecycle
from mailer.services.env import AppEnv
from mailer.settings import Settings

TOPICS = ["nova", "neutron", "tempest", "ceilometer", "heat"]

# the crashing sender: a start in chunks of 20 with a slow enqueue (a sluggish broker), so the
# test can kill it once the first chunk is committed and long before the fill is complete
STARTER = """
import sys, time
from mailer.services import drafts, lifecycle
from mailer.services.env import AppEnv
from mailer.settings import Settings
env = AppEnv.from_settings(Settings(batch_size=20, fill_chunk=20), enqueue=lambda _c, _i: time.sleep(0.1))
lifecycle.start_stepwise(env, int(sys.argv[1]))
"""


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        {
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_DATA_DIR": str(tmp_path / "data"),
            "NEWSLETTER_SECRET_KEY": "k",
            "NEWSLETTER_TRANSPORT": "file",
            "COLUMNS": "200",
        }
    )
    return env


def _ledger(factory, campaign_id: int) -> Counter[int]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return Counter(
            session.scalars(select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign_id))
        )


@pytest.mark.slow
@pytest.mark.parametrize("how", ["resume", "reap"])
def test_a_send_killed_mid_fill_is_resumed_without_loss_or_duplicates(tmp_path, database_url, how):
    """``campaigns resume ID`` by an operator, or the reaper (``campaigns reap``, what beat runs) once the
    fill has shown no sign of life for a lease."""
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url, secret_key="k")  # type: ignore[call-arg]
    app = AppEnv.from_settings(settings)
    draft = drafts.read_draft(app, REFERENCE_ISSUE)
    population = populate(database_url, 300, TOPICS, issue_topics=draft.issue.topics)
    factory = app.sessions
    with app.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=app.now()).id
    env = _env(tmp_path, database_url)
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(campaign_id)], cwd=PROJECT_ROOT, env=env)

    def first_chunk_committed() -> bool:
        with factory() as session:
            return bool(session.scalar(select(Campaign.total).where(Campaign.id == campaign_id)))

    try:
        wait_until(first_chunk_committed, timeout=60, what="the starter's first ledger chunk")
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
    with factory() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        assert campaign.status == "sending" and not campaign.queued_all, "killed before the fill ended"
        assert 0 < campaign.total < len(population.expected)
        killed_at = campaign.total

    command = ["campaigns", "resume", str(campaign_id)]
    if how == "reap":
        command = ["campaigns", "reap"]
        env["NEWSLETTER_LEASE_SECONDS"] = "60"
        with app.transaction() as session:  # the dead fill's last sign of life is now a lease ago
            ago = app.now() - timedelta(seconds=61)
            session.execute(update(Campaign).where(Campaign.id == campaign_id).values(fill_seen_at=ago))
    resumed = subprocess.run(
        [sys.executable, "-c", "from mailer.cli import main; main()", *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    if how == "resume":
        assert f"campaign {campaign_id} done: {len(population.expected):,} sent" in resumed.stdout
    else:
        assert f"campaign {campaign_id}: resumed its stalled ledger fill" in resumed.stdout

    ledger = _ledger(factory, campaign_id)
    assert set(ledger) == set(population.expected), "every sendable subscriber has a row, nobody else"
    assert set(ledger.values()) == {1}
    with factory() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        assert campaign.queued_all and campaign.status == "done"
        assert campaign.total == campaign.sent == len(population.expected)
    received: Counter[str] = Counter()
    for path in settings.resolved_outbox_dir.glob(f"{campaign_id}.*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        received[message["To"].addresses[0].addr_spec] += 1
    assert received == Counter(address for address, _ in population.expected.values())
    print(f"killed after {killed_at} of {len(population.expected)} rows; resume filled and sent the rest")


def test_two_racing_fills_insert_each_row_once_and_count_it_once(tmp_path, database_url):
    settings = Settings(data_dir=tmp_path, database_url=database_url, secret_key="k", fill_chunk=25)  # type: ignore[call-arg]
    enqueued: list[int] = []
    rival: list[int] = []
    # the rival resumes with chunks of 7 and records what it enqueues
    rival_env = AppEnv.from_settings(
        settings.model_copy(update={"fill_chunk": 7}), enqueue=lambda _c, ids: enqueued.extend(ids)
    )

    def enqueue(_cid: int, ids) -> None:  # type: ignore[no-untyped-def]
        enqueued.extend(ids)
        if not rival:  # after the start's first committed chunk, a resume runs the fill to the end
            rival.append(0)
            rival[0] = lifecycle.resume_stepwise(rival_env, campaign_id)

    app = AppEnv.from_settings(settings, enqueue=enqueue)
    draft = drafts.read_draft(app, REFERENCE_ISSUE)
    population = populate(database_url, 150, TOPICS, issue_topics=draft.issue.topics)
    factory = app.sessions
    with app.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=app.now()).id
    inserted = lifecycle.start_stepwise(app, campaign_id)
    expected = len(population.expected)
    assert inserted == 25, "the start inserted its first chunk; every later row was the rival's"
    assert rival[0] == expected, "the rival re-queued the 25 rows and inserted the rest"
    ledger = _ledger(factory, campaign_id)
    assert set(ledger) == set(population.expected) and set(ledger.values()) == {1}
    with factory() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None and campaign.queued_all
        assert campaign.total == expected, "the total counts what was really inserted"
        rows = session.scalar(select(func.count()).where(Delivery.campaign_id == campaign_id))
    assert rows == expected
    assert set(enqueued) == set(_ids(factory, campaign_id)), "every row was enqueued"


def _ids(factory, campaign_id: int) -> list[int]:  # type: ignore[no-untyped-def]
    with factory() as session:
        return list(session.scalars(select(Delivery.id).where(Delivery.campaign_id == campaign_id)))
