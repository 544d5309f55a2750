"""Ledger and campaign rules in-process, on SQLite and PostgreSQL, through the campaign services: claims,
the send-time re-check, failures, provider pauses, reaping (with a clock the test moves), test sends. The
worker tests (test_sending_workers.py) cover real processes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from support.clock import Clock
from support.paths import REFERENCE_ISSUE
from support.population import populate

from mailer.errors import ConflictError
from mailer.sending import ledger
from mailer.sending.models import Campaign, Delivery
from mailer.sending.sender import SendContext, send_batch_stepwise
from mailer.services import drafts, lifecycle, listing, upkeep, watch
from mailer.services.env import AppEnv
from mailer.settings import Settings
from subscribers.db import utcnow
from subscribers.models import Subscriber
from subscribers.suppression import suppress

TOPICS = ["nova", "neutron", "tempest", "ceilometer", "heat"]


class Setup:
    """A campaign environment whose batches are recorded (``batches``), not sent, and whose clock the
    test moves; ``send_all`` sends the recorded batches in this thread."""

    def __init__(self, tmp_path: Path, url: str, count: int, **settings: object) -> None:
        self.settings = Settings(
            data_dir=tmp_path, database_url=url, secret_key="k", batch_size=10, fill_chunk=10,
            **settings,  # type: ignore[arg-type]
        )  # fmt: skip
        self.clock = Clock()
        self.batches: list[tuple[int, list[int]]] = []
        self.env = AppEnv.from_settings(self.settings, clock=self.clock, enqueue=self.enqueue)
        self.draft = drafts.read_draft(self.env, REFERENCE_ISSUE)
        self.issue = self.draft.issue
        self.population = populate(url, count, TOPICS, issue_topics=self.issue.topics)

    def enqueue(self, campaign_id: int, ids) -> None:  # type: ignore[no-untyped-def]
        self.batches.append((campaign_id, list(ids)))

    def create(self, transport: str = "file", audience: str = "subscribers") -> int:
        draft = drafts.read_draft(self.env, REFERENCE_ISSUE, audience=audience, transport=transport)
        with self.env.transaction() as session:
            return lifecycle.create(session, draft, now=self.clock()).id

    def start(self, transport: str = "file", audience: str = "subscribers") -> int:
        campaign_id = self.create(transport, audience)
        lifecycle.start_stepwise(self.env, campaign_id)
        return campaign_id

    def context(self) -> SendContext:
        return SendContext(self.settings, self.env.sessions, self.clock, sleep=lambda _s: None)

    def send_all(self, context: SendContext | None = None) -> None:
        context = context or self.context()
        batches, self.batches = self.batches, []
        for cid, batch in batches:
            send_batch_stepwise(context, cid, batch)

    def progress(self, campaign_id: int) -> watch.Progress:
        with self.env.sessions() as session:
            return watch.progress(session, campaign_id, now=self.clock())


def test_start_fills_the_ledger_in_batches_and_a_claim_is_exclusive(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 60)
    campaign_id = setup.start()
    ids = [i for _, batch in setup.batches for i in batch]
    assert len(ids) == len(set(ids)) == len(setup.population.expected)
    assert all(len(batch) <= 10 for _, batch in setup.batches)
    with setup.env.sessions() as session:
        first, skipped = ledger.claim(session, campaign_id, ids[:10], "claim-a", now=setup.clock())
        again, _ = ledger.claim(session, campaign_id, ids[:10], "claim-b", now=setup.clock())
        session.commit()
        assert len(first) == 10 and skipped == 0 and again == []
        # a record by another claim changes nothing
        status = ledger.record(
            session,
            campaign_id,
            "claim-b",
            [ledger.Outcome(first[0].id, True, "x")],
            max_consecutive_failures=9,
            now=setup.clock(),
        )
        session.commit()
        assert status == "sending"
        assert session.scalar(select(Campaign.sent).where(Campaign.id == campaign_id)) == 0
        assert ledger.release(session, campaign_id, "claim-a", now=setup.clock()) == 10
        session.commit()
    assert setup.progress(campaign_id).by_status == {"queued": len(ids)}


def test_a_start_renders_from_the_stored_markdown_and_starts_once(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 20)
    campaign_id = setup.create()
    with setup.env.transaction() as session:  # what was stored is what goes out, whatever a caller holds
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(
                issue_markdown=setup.draft.markdown.replace("OpenStack社区动态样刊第六期", "第六期(修订)")
            )
        )
    lifecycle.start_stepwise(setup.env, campaign_id)
    with setup.env.sessions() as session:
        detail = listing.detail(session, campaign_id, now=setup.clock())
    assert detail.segments and all(s.subject.startswith("第六期(修订)") for s in detail.segments)
    assert detail.info.actions == ("pause", "cancel")
    with pytest.raises(ConflictError, match="is sending; only a draft or scheduled campaign can start"):
        lifecycle.start_stepwise(setup.env, campaign_id)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_claims_on_postgresql_never_overlap(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 400)
    campaign_id = setup.start()
    ids = [i for _, batch in setup.batches for i in batch]
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(6)

    def grab(name: str) -> None:
        with setup.env.sessions() as session:
            barrier.wait()
            for start in range(0, len(ids), 25):  # everyone tries every row
                rows, _ = ledger.claim(session, campaign_id, ids[start : start + 25], name, now=setup.clock())
                session.commit()
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
    with setup.env.transaction() as session:
        session.execute(update(Subscriber).where(Subscriber.id == victims[0]).values(status="unsubscribed"))
        suppress(session, setup.population.expected[victims[1]][0], "complaint", now=utcnow())
    first = setup.batches[0]
    context = setup.context()
    setup.send_all(context)
    with setup.env.sessions() as session:
        rows = {d.subscriber_id: d.status for d in session.scalars(select(Delivery))}
    state = setup.progress(campaign_id)
    assert rows[victims[0]] == rows[victims[1]] == "skipped"
    assert state.status == "done" and state.skipped == 2 and state.sent == len(setup.population.expected) - 2
    assert state.actions == (), "a finished campaign offers nothing"
    outbox = setup.settings.resolved_outbox_dir
    addresses = {setup.population.expected[v][0] for v in victims}
    assert not any(a in p.read_text(errors="replace") for p in outbox.glob("*.eml") for a in addresses)
    # running a batch again (a redelivered task) sends nothing twice
    report = send_batch_stepwise(context, *first)
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
    setup.send_all(context)
    context.close()
    state = setup.progress(campaign_id)
    assert state.status == "paused" and state.actions == ("resume", "cancel")
    assert "5 failures in a row" in (state.reason or "") and "550" in (state.reason or "")
    assert state.failed >= 5 and state.sent == 0
    assert state.by_status["queued"] == len(setup.population.expected) - state.failed, "the rest waits"
    with setup.env.sessions() as session:
        failures = listing.detail(session, campaign_id, now=setup.clock()).failures_by_code
    assert failures == {"smtp-550": state.failed}, "failures grouped by the provider's cause"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_provider_pause_pauses_the_campaign_and_keeps_the_row(tmp_path, database_url, ses_sink, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    setup = Setup(tmp_path, database_url, 30, ses_endpoint_url=ses_sink.url)
    ses_sink.sink.fail_after = (5, "SendingPausedException", "Sending is paused for this account.")
    campaign_id = setup.start(transport="ses")
    context = setup.context()
    setup.send_all(context)
    state = setup.progress(campaign_id)
    assert state.status == "paused"
    assert "SendingPausedException" in (state.reason or "")
    assert state.sent == 5 and state.failed == 0
    assert state.by_status["queued"] == len(setup.population.expected) - 5
    ses_sink.sink.fail_after = None
    assert lifecycle.resume_stepwise(setup.env, campaign_id) == len(setup.population.expected) - 5
    setup.send_all(context)
    assert setup.progress(campaign_id).by_status == {"sent": len(setup.population.expected)}
    assert ses_sink.sink.stats()["duplicates"] == 0


def _claim_and_die(setup: Setup, campaign_id: int) -> list[int]:
    """A worker claims the first batch at the clock's time, then vanishes."""
    _, first = setup.batches[0]
    with setup.env.sessions() as session:
        rows, _ = ledger.claim(session, campaign_id, first, "dead-worker", now=setup.clock())
        session.commit()
    return [row.id for row in rows]


@pytest.mark.parametrize("policy", ["resend", "unknown"])
def test_rows_of_a_vanished_worker_are_reaped_by_policy(tmp_path, database_url, policy):
    setup = Setup(tmp_path, database_url, 25, on_lost_send=policy, lease_seconds=60)
    campaign_id = setup.start()
    rows = _claim_and_die(setup, campaign_id)
    setup.batches.clear()
    setup.clock.advance(30)
    early = upkeep.reap_stepwise(setup.env)
    assert early.resent == early.unknown == 0, "within the lease nothing happens"
    setup.clock.advance(31)
    report = upkeep.reap_stepwise(setup.env)
    with setup.env.sessions() as session:
        statuses = dict(
            session.execute(
                select(Delivery.status, func.count()).where(Delivery.id.in_(rows)).group_by(Delivery.status)
            ).all()
        )
    if policy == "resend":
        assert report.resent == len(rows) and statuses == {"queued": len(rows)}
        assert set(rows) <= {i for _, b in setup.batches for i in b}, "resent rows are enqueued"
    else:
        assert report.unknown == len(rows) and statuses == {"unknown": len(rows)}
        assert setup.progress(campaign_id).unknown == len(rows)


def test_test_send_goes_to_given_addresses_once_per_segment_and_leaves_no_ledger(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 40)
    sent = drafts.send_test(setup.env, setup.draft, ["editor@example.org", "Boss@Example.org"])
    segments = {segment for segment, _ in sent}
    assert len(segments) >= 4 and len(sent) == 2 * len(segments)
    assert {address for _, address in sent} == {"editor@example.org", "Boss@example.org"}
    assert len(list(setup.settings.resolved_outbox_dir.glob("*.eml"))) == len(sent)
    with setup.env.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0
    with pytest.raises(ValueError, match="email"):  # an address goes through the address checks
        drafts.send_test(setup.env, setup.draft, ["me@example.org\r\nBcc: x@evil.example"])


class _Died(Exception):
    """The starting process 'dies' half way through the fill."""


def test_a_fill_whose_process_died_is_resumed_by_the_reaper_once(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 60, lease_seconds=60)
    campaign_id = setup.create()
    record = setup.enqueue

    def dying_enqueue(cid: int, ids) -> None:  # type: ignore[no-untyped-def]
        if len(setup.batches) >= 2:
            raise _Died
        record(cid, ids)

    setup.enqueue = dying_enqueue  # type: ignore[method-assign,assignment]
    dying = AppEnv.from_settings(setup.settings, clock=setup.clock, enqueue=dying_enqueue)
    with pytest.raises(_Died):
        lifecycle.start_stepwise(dying, campaign_id)
    setup.enqueue = record  # type: ignore[method-assign]
    half = setup.progress(campaign_id)
    assert half.status == "sending" and 0 < half.total < len(setup.population.expected)
    assert not half.fill_complete

    setup.clock.advance(30)
    assert upkeep.reap_stepwise(setup.env).fills_resumed == (), "within the lease the fill may be alive"
    setup.clock.advance(31)
    assert upkeep.reap_stepwise(setup.env).fills_resumed == (campaign_id,)
    assert upkeep.reap_stepwise(setup.env).fills_resumed == (), "taken over once, not by every reaper"
    setup.send_all()
    done = setup.progress(campaign_id)
    assert done.status == "done" and done.total == done.sent == len(setup.population.expected)
    with setup.env.sessions() as session:
        subscribers = session.scalars(
            select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign_id)
        )
        assert sorted(subscribers) == sorted(setup.population.expected), "each subscriber once"


def test_rows_a_fill_adds_after_a_cancel_are_skipped_and_counted(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 60)
    campaign_id = setup.create()

    def cancelling_enqueue(cid: int, ids) -> None:  # type: ignore[no-untyped-def]
        if not setup.batches:  # an operator cancels while the fill is still running
            with setup.env.transaction() as session:
                lifecycle.cancel(session, cid)
        setup.batches.append((cid, list(ids)))

    env = AppEnv.from_settings(setup.settings, clock=setup.clock, enqueue=cancelling_enqueue)
    lifecycle.start_stepwise(env, campaign_id)
    state = setup.progress(campaign_id)
    assert state.status == "cancelled"
    assert "queued" not in state.by_status, "nothing is left waiting for a send that never comes"
    assert state.skipped == state.total == sum(state.by_status.values())
    assert state.total < len(setup.population.expected), "the fill stopped"


def test_a_cancelled_campaigns_lost_rows_become_unknown_even_with_resend(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 25, on_lost_send="resend", lease_seconds=60)
    campaign_id = setup.start()
    rows = _claim_and_die(setup, campaign_id)
    with setup.env.transaction() as session:
        lifecycle.cancel(session, campaign_id)
    setup.clock.advance(61)
    report = upkeep.reap_stepwise(setup.env)
    assert report.resent == 0 and report.unknown == len(rows)
    state = setup.progress(campaign_id)
    assert state.by_status == {"unknown": len(rows), "skipped": state.total - len(rows)}
    assert state.unknown + state.skipped == state.total


def test_operator_actions_follow_the_transition_table(tmp_path, database_url):
    setup = Setup(tmp_path, database_url, 5)
    campaign_id = setup.create()
    with setup.env.transaction() as session:
        assert listing.detail(session, campaign_id, now=setup.clock()).info.actions == (
            "schedule", "start", "cancel",
        )  # fmt: skip
        with pytest.raises(ConflictError, match="only a sending or scheduled campaign can pause"):
            lifecycle.pause(session, campaign_id)
        with pytest.raises(ConflictError, match="only a paused campaign"):
            lifecycle.resume_stepwise(setup.env, campaign_id)
        assert lifecycle.cancel(session, campaign_id) == 0
    with setup.env.transaction() as session, pytest.raises(ConflictError, match="is cancelled"):
        lifecycle.cancel(session, campaign_id)


def test_rows_failed_in_an_ses_outage_are_retried_once_each(tmp_path, database_url, ses_sink, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    setup = Setup(tmp_path, database_url, 40, ses_endpoint_url=ses_sink.url, max_consecutive_failures=1000)
    ses_sink.sink.fail_after, ses_sink.sink.fail_status = (
        (8, "ServiceUnavailable", "Service is unavailable"),
        503,
    )
    campaign_id = setup.start(transport="ses")
    setup.send_all()
    state = setup.progress(campaign_id)
    expected = len(setup.population.expected)
    assert state.status == "done" and state.sent == 8 and state.failed == expected - 8
    with setup.env.sessions() as session:
        assert listing.detail(session, campaign_id, now=setup.clock()).failures_by_code == {
            "ServiceUnavailable": expected - 8
        }
        failed = session.scalars(
            select(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.status == "failed")
        ).all()
        gone = failed[0].subscriber_id  # a reader who leaves meanwhile is skipped, not retried into
        session.execute(update(Subscriber).where(Subscriber.id == gone).values(status="unsubscribed"))
        session.commit()

    with setup.env.transaction() as session:  # a cause that did not happen: nothing changes
        nothing = lifecycle.retry_failed(session, campaign_id, causes=["MessageRejected"], now=setup.clock())
    assert nothing.row_ids == () and setup.progress(campaign_id).status == "done"

    ses_sink.sink.fail_after = None  # the outage is over
    with setup.env.transaction() as session:
        retry = lifecycle.retry_failed(session, campaign_id, causes=["ServiceUnavailable"], now=setup.clock())
    assert len(retry.row_ids) == expected - 8 and retry.by_cause == {"ServiceUnavailable": expected - 8}
    assert retry.send and setup.progress(campaign_id).status == "sending"
    assert lifecycle.continue_retry_stepwise(setup.env, retry) == expected - 8
    setup.send_all()
    state = setup.progress(campaign_id)
    assert state.status == "done" and state.failed == 0
    assert state.sent == expected - 1 and state.skipped == 1
    assert state.by_status == {"sent": expected - 1, "skipped": 1}
    received = [record.recipient for record in ses_sink.sink.records]
    assert len(received) == len(set(received)) == expected - 1, "every reader once, the leaver never"

    with setup.env.transaction() as session, pytest.raises(ConflictError, match="draft"):
        lifecycle.retry_failed(session, setup.create(), now=setup.clock())


def test_a_paused_campaign_keeps_its_retried_rows_for_the_resume(tmp_path, database_url, smtp_sink):
    setup = Setup(
        tmp_path,
        database_url,
        30,
        smtp_host=smtp_sink.host,
        smtp_port=smtp_sink.port,
        max_consecutive_failures=3,
    )
    smtp_sink.refuse_all = (451, "4.3.0 try again later")
    campaign_id = setup.start(transport="smtp")
    setup.send_all()
    assert setup.progress(campaign_id).status == "paused"
    smtp_sink.refuse_all = None
    with setup.env.transaction() as session:
        retry = lifecycle.retry_failed(session, campaign_id, now=setup.clock())
    assert retry.row_ids and not retry.send and lifecycle.continue_retry_stepwise(setup.env, retry) == 0
    assert setup.progress(campaign_id).status == "paused"
    lifecycle.resume_stepwise(setup.env, campaign_id)
    setup.send_all()
    state = setup.progress(campaign_id)
    assert state.status == "done" and state.by_status == {"sent": len(setup.population.expected)}
    assert len(smtp_sink.received) == len(setup.population.expected)
