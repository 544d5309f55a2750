"""Ledger and campaign rules in-process, on SQLite and PostgreSQL: claims, send-time re-check, failures,
provider pauses, reaping, test sends. The worker tests (test_sending_workers.py) cover real processes."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from support.paths import REFERENCE_ISSUE
from support.population import populate

from mailer.database import session_factory
from mailer.rendering.issue import load_issue
from mailer.rendering.render import Brand
from mailer.sending import campaigns
from mailer.sending.models import Campaign, Delivery
from mailer.sending.sender import SendContext, send_batch, send_test
from mailer.settings import Settings
from mailer.topics import load_registry
from subscribers.db import utcnow
from subscribers.models import Subscriber
from subscribers.suppression import suppress

REFERENCE = REFERENCE_ISSUE
TOPICS = ["nova", "neutron", "tempest", "ceilometer", "heat"]


class Setup:
    def __init__(self, tmp_path: Path, url: str, count: int, **settings: object) -> None:
        self.settings = Settings(data_dir=tmp_path, database_url=url, secret_key="k", **settings)  # type: ignore[arg-type]
        self.registry = load_registry(self.settings.registry_file)
        self.issue = load_issue(REFERENCE, self.registry)
        self.population = populate(url, count, TOPICS, issue_topics=self.issue.topics)
        self.factory = session_factory(self.settings)
        self.batches: list[tuple[int, list[int]]] = []

    def enqueue(self, campaign_id: int, ids) -> None:  # type: ignore[no-untyped-def]
        self.batches.append((campaign_id, list(ids)))

    def start(self, transport: str = "file", audience: str = "subscribers") -> int:
        with self.factory() as session:
            campaign = campaigns.create_campaign(
                session, self.issue, "md", audience=audience, transport=transport
            )
            session.commit()
        campaigns.start_campaign(
            self.factory,
            campaign.id,
            self.issue,
            Brand.from_settings(self.settings),
            enqueue=self.enqueue,
            registry=self.registry,
            batch_size=10,
        )
        return campaign.id

    def context(self) -> SendContext:
        return SendContext(self.settings, self.factory, sleep=lambda _s: None)

    def statuses(self, campaign_id: int) -> dict[str, int]:
        with self.factory() as session:
            return campaigns.progress(session, campaign_id).by_status


def test_start_fills_the_ledger_in_batches_and_a_claim_is_exclusive(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 60)
    campaign_id = setup.start()
    ids = [i for _, batch in setup.batches for i in batch]
    assert len(ids) == len(set(ids)) == len(setup.population.expected)
    assert all(len(batch) <= 10 for _, batch in setup.batches)
    with setup.factory() as session:
        first, skipped = campaigns.claim(session, campaign_id, ids[:10], "claim-a")
        again, _ = campaigns.claim(session, campaign_id, ids[:10], "claim-b")
        assert len(first) == 10 and skipped == 0 and again == []
        # a record by another claim changes nothing
        status = campaigns.record(
            session,
            campaign_id,
            "claim-b",
            [campaigns.Outcome(first[0].id, True, "x")],
            max_consecutive_failures=9,
        )
        assert status == "sending"
        assert session.scalar(select(Campaign.sent).where(Campaign.id == campaign_id)) == 0
        assert campaigns.release(session, campaign_id, "claim-a") == 10
    assert setup.statuses(campaign_id) == {"queued": len(ids)}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_claims_on_postgresql_never_overlap(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 400)
    campaign_id = setup.start()
    ids = [i for _, batch in setup.batches for i in batch]
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(6)

    def grab(name: str) -> None:
        with setup.factory() as session:
            barrier.wait()
            for start in range(0, len(ids), 25):  # everyone tries every row
                rows, _ = campaigns.claim(session, campaign_id, ids[start : start + 25], name)
                got.setdefault(name, []).extend(r.id for r in rows)

    threads = [threading.Thread(target=grab, args=(f"t{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [i for rows in got.values() for i in rows]
    assert sorted(claimed) == sorted(ids), "every row claimed exactly once"


def test_unsubscribed_or_suppressed_after_start_is_skipped_at_send_time(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 30)
    campaign_id = setup.start()
    victims = sorted(setup.population.expected)[:2]
    with setup.factory() as session:
        session.execute(update(Subscriber).where(Subscriber.id == victims[0]).values(status="unsubscribed"))
        suppress(session, setup.population.expected[victims[1]][0], "complaint")
        session.commit()
    context = setup.context()
    for cid, batch in setup.batches:
        send_batch(context, cid, batch)
    with setup.factory() as session:
        rows = {d.subscriber_id: d.status for d in session.scalars(select(Delivery))}
        state = campaigns.progress(session, campaign_id)
    assert rows[victims[0]] == rows[victims[1]] == "skipped"
    assert state.status == "done" and state.skipped == 2 and state.sent == len(setup.population.expected) - 2
    outbox = setup.settings.resolved_outbox_dir
    addresses = {setup.population.expected[v][0] for v in victims}
    assert not any(a in p.read_text(errors="replace") for p in outbox.glob("*.eml") for a in addresses)
    # running a batch again (a redelivered task) sends nothing twice
    report = send_batch(context, *setup.batches[0])
    assert report.claimed == 0
    assert len(list(outbox.glob("*.eml"))) == state.sent


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_campaign_pauses_itself_after_failures_in_a_row(tmp_path, database_url, smtp_sink):
    setup = Setup(
        tmp_path,
        database_url,
        40,
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        max_consecutive_failures=5,
    )
    for _sid, (address, _segment) in setup.population.expected.items():
        smtp_sink.refuse[address] = (550, "5.1.1 mailbox unavailable")
    campaign_id = setup.start(transport="smtp")
    context = setup.context()
    for cid, batch in setup.batches:
        send_batch(context, cid, batch)
    context.close()
    with setup.factory() as session:
        state = campaigns.progress(session, campaign_id)
    assert state.status == "paused"
    assert "5 failures in a row" in (state.reason or "") and "550" in (state.reason or "")
    assert state.failed >= 5 and state.sent == 0
    assert state.by_status["queued"] == len(setup.population.expected) - state.failed, "the rest waits"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_provider_pause_pauses_the_campaign_and_keeps_the_row(tmp_path, database_url, ses_sink, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    setup = Setup(tmp_path, database_url, 30, ses_endpoint_url=ses_sink.url)
    ses_sink.sink.fail_after = (5, "SendingPausedException", "Sending is paused for this account.")
    campaign_id = setup.start(transport="ses")
    context = setup.context()
    for cid, batch in setup.batches:
        send_batch(context, cid, batch)
    with setup.factory() as session:
        state = campaigns.progress(session, campaign_id)
    assert state.status == "paused"
    assert "SendingPausedException" in (state.reason or "")
    assert state.sent == 5 and state.failed == 0
    assert state.by_status["queued"] == len(setup.population.expected) - 5
    ses_sink.sink.fail_after = None
    with setup.factory() as session:
        campaigns.resume(session, campaign_id, enqueue=setup.enqueue)
    for cid, batch in setup.batches:
        send_batch(context, cid, batch)
    assert setup.statuses(campaign_id) == {"sent": len(setup.population.expected)}
    assert ses_sink.sink.stats()["duplicates"] == 0


@pytest.mark.parametrize("policy", ["resend", "unknown"])
def test_rows_of_a_vanished_worker_are_reaped_by_policy(tmp_path, database_url, policy):
    setup = Setup(tmp_path, database_url, 25)
    campaign_id = setup.start()
    _, first = setup.batches[0]
    with setup.factory() as session:
        rows, _ = campaigns.claim(session, campaign_id, first, "dead-worker")  # then it "dies"
        early = campaigns.reap(session, lease_seconds=60, policy=policy, enqueue=setup.enqueue)
        assert early.resent == early.unknown == 0, "within the lease nothing happens"
        later = utcnow() + timedelta(seconds=61)
        setup.batches.clear()
        report = campaigns.reap(session, lease_seconds=60, policy=policy, enqueue=setup.enqueue, now=later)
        statuses = dict(
            session.execute(
                select(Delivery.status, func.count()).where(Delivery.id.in_(first)).group_by(Delivery.status)
            ).all()
        )
    if policy == "resend":
        assert report.resent == len(rows) and statuses == {"queued": len(rows)}
        assert set(first) <= {i for _, b in setup.batches for i in b}, "resent rows are enqueued"
    else:
        assert report.unknown == len(rows) and statuses == {"unknown": len(rows)}
        with setup.factory() as session:
            assert campaigns.progress(session, campaign_id).unknown == len(rows)


def test_test_send_goes_to_given_addresses_once_per_segment_and_leaves_no_ledger(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 5)
    segments = [frozenset(), frozenset({"nova"}), setup.issue.topics]
    sent = send_test(
        setup.settings,
        setup.issue,
        Brand.from_settings(setup.settings),
        ["editor@example.org", "boss@example.org"],
        segments,
        transport_name="file",
        registry=setup.registry,
    )
    assert len(sent) == 6
    assert len(list(setup.settings.resolved_outbox_dir.glob("*.eml"))) == 6
    with setup.factory() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def _counters(setup: Setup, campaign_id: int) -> campaigns.Progress:
    with setup.factory() as session:
        return campaigns.progress(session, campaign_id)


def _create(setup: Setup) -> int:
    with setup.factory() as session:
        campaign_id = campaigns.create_campaign(
            session, setup.issue, REFERENCE.read_text(), audience="subscribers", transport="file"
        ).id
        session.commit()
    return campaign_id


class _Died(Exception):
    """The starting process 'dies' half way through the fill."""


def test_a_fill_whose_process_died_is_resumed_by_the_reaper_once(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 60)
    campaign_id = _create(setup)
    calls = 0

    def dying_enqueue(cid: int, ids) -> None:  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls > 2:
            raise _Died
        setup.enqueue(cid, ids)

    brand = Brand.from_settings(setup.settings)
    with pytest.raises(_Died):
        campaigns.start_campaign(
            setup.factory, campaign_id, setup.issue, brand, enqueue=dying_enqueue,
            registry=setup.registry, batch_size=10, insert_chunk=10,
        )  # fmt: skip
    half = _counters(setup, campaign_id)
    assert half.status == "sending" and 0 < half.total < len(setup.population.expected)

    def resume(now):  # type: ignore[no-untyped-def]
        return campaigns.resume_stalled_fills(
            setup.factory, brand, setup.registry, enqueue=setup.enqueue, lease_seconds=60,
            batch_size=10, insert_chunk=10, now=now,
        )  # fmt: skip

    assert resume(utcnow() + timedelta(seconds=30)) == [], "within the lease the fill may be alive"
    later = utcnow() + timedelta(seconds=61)
    assert resume(later) == [campaign_id]
    assert resume(later) == [], "the fill is taken over once, not by every reaper"
    context = setup.context()
    for cid, batch in setup.batches:
        send_batch(context, cid, batch)
    done = _counters(setup, campaign_id)
    assert done.status == "done" and done.total == done.sent == len(setup.population.expected)
    with setup.factory() as session:
        subscribers = session.scalars(
            select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign_id)
        )
        assert sorted(subscribers) == sorted(setup.population.expected), "each subscriber once"


def test_rows_a_fill_adds_after_a_cancel_are_skipped_and_counted(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 60)
    campaign_id = _create(setup)

    def cancelling_enqueue(cid: int, ids) -> None:  # type: ignore[no-untyped-def]
        if not setup.batches:  # an operator cancels while the fill is still running
            with setup.factory() as session:
                campaigns.cancel(session, cid)
        setup.enqueue(cid, ids)

    campaigns.start_campaign(
        setup.factory, campaign_id, setup.issue, Brand.from_settings(setup.settings),
        enqueue=cancelling_enqueue, registry=setup.registry, batch_size=10, insert_chunk=10,
    )  # fmt: skip
    state = _counters(setup, campaign_id)
    assert state.status == "cancelled"
    assert "queued" not in state.by_status, "nothing is left waiting for a send that never comes"
    assert state.skipped == state.total == sum(state.by_status.values())
    assert state.total < len(setup.population.expected), "the fill stopped"


def test_a_cancelled_campaigns_lost_rows_become_unknown_even_with_resend(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 25)
    campaign_id = setup.start()
    _, first = setup.batches[0]
    with setup.factory() as session:
        rows, _ = campaigns.claim(session, campaign_id, first, "dead-worker")
        campaigns.cancel(session, campaign_id)
        later = utcnow() + timedelta(seconds=61)
        report = campaigns.reap(session, lease_seconds=60, policy="resend", enqueue=setup.enqueue, now=later)
    assert report.resent == 0 and report.unknown == len(rows)
    state = _counters(setup, campaign_id)
    assert state.by_status == {"unknown": len(rows), "skipped": state.total - len(rows)}
    assert state.unknown + state.skipped == state.total
