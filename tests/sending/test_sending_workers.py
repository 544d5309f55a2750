"""Campaigns through real Celery worker processes on the real Redis.

Each test starts its own ``celery -A worker worker -P solo`` processes with a unique Redis key prefix and
its own database; the transports are the file outbox, the SES sink (mailer.testing), moto or aiosmtpd.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select
from support.paths import REFERENCE_ISSUE
from support.population import populate
from support.services import REDIS_URL
from support.waiting import holds_for, wait_until

from mailer import broker
from mailer.rendering.placeholders import SplitTemplate
from mailer.sending.models import Delivery, SegmentRendering
from mailer.services import drafts, lifecycle, upkeep, watch
from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.urls import view_scope
from subscribers.db import utcnow
from subscribers.errors import InvalidToken
from subscribers.links import read_link

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REFERENCE = REFERENCE_ISSUE
TOPICS = ["nova", "neutron", "tempest", "ceilometer", "heat", "keystone"]
SECRET = "test-secret"


class Run:
    """Campaigns driven from the test process through the services; the workers do the sending."""

    def __init__(self, tmp_path: Path, url: str, prefix: str, **settings: object) -> None:
        self.settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            broker_url=REDIS_URL,
            redis_prefix=prefix,
            secret_key=SECRET,
            **settings,  # type: ignore[arg-type]
        )
        self.env = AppEnv.from_settings(self.settings)  # a broker: batches go to the workers
        self.factory = self.env.sessions
        self.issue = drafts.read_draft(self.env, REFERENCE_ISSUE).issue

    def worker_settings(self, **extra: object) -> dict[str, object]:
        values: dict[str, object] = {"database_url": self.settings.database_url, "secret_key": SECRET}
        for name in (
            "transport",
            "file_send_rate",
            "ses_send_rate",
            "smtp_send_rate",
            "lease_seconds",
            "on_lost_send",
            "ses_endpoint_url",
            "rate_burst",
        ):
            value = getattr(self.settings, name)
            if value is not None:
                values[name] = value
        values.update(extra)
        return values

    def start(self, audience: str = "subscribers", transport: str | None = None) -> int:
        draft = drafts.read_draft(self.env, REFERENCE_ISSUE, audience=audience, transport=transport)
        with self.env.transaction() as session:
            campaign_id = lifecycle.create(session, draft, now=self.env.now()).id
        lifecycle.start_stepwise(self.env, campaign_id)
        return campaign_id

    def progress(self, campaign_id: int) -> watch.Progress:
        with self.factory() as session:
            return watch.progress(session, campaign_id, now=self.env.now())

    def wait(self, campaign_id: int, statuses=("done",), timeout: float = 120) -> watch.Progress:  # type: ignore[no-untyped-def]
        def settled() -> watch.Progress | None:
            state = self.progress(campaign_id)
            return state if state.status in statuses else None

        return wait_until(settled, timeout=timeout, interval=0.25, what=f"campaign {campaign_id} {statuses}")

    def wait_sent(self, campaign_id: int, at_least: int, timeout: float = 60) -> watch.Progress:
        def enough() -> watch.Progress | None:
            state = self.progress(campaign_id)
            return state if state.sent >= at_least else None

        return wait_until(enough, timeout=timeout, what=f"{at_least} messages of campaign {campaign_id} sent")

    def wait_quiet(self, campaign_id: int, timeout: float = 30) -> None:
        """Until no row is 'sending' (the workers noticed a pause or cancel)."""
        wait_until(
            lambda: self.progress(campaign_id).by_status.get("sending", 0) == 0,
            timeout=timeout,
            what="the workers giving their rows back",
        )

    def ledger(self, campaign_id: int) -> list[Delivery]:
        with self.factory() as session:
            return list(session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)))

    def close(self) -> None:
        self.env.close()


def _assert_exactly_once(run: Run, campaign_id: int, expected: dict[int, tuple[str, frozenset[str]]]) -> None:
    rows = run.ledger(campaign_id)
    sent = Counter(row.subscriber_id for row in rows if row.status == "sent")
    assert set(sent) == set(expected), "every active non-suppressed subscriber has a sent row, nobody else"
    assert max(sent.values()) == 1


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_campaign_reaches_everyone_once_with_their_own_segment_and_links(
    tmp_path, database_url, redis_prefix, start_workers
):
    run = Run(tmp_path, database_url, redis_prefix, transport="file")
    population = populate(database_url, 2500, TOPICS, issue_topics=run.issue.topics)
    start_workers(2, **run.worker_settings())
    campaign_id = run.start()
    progress = run.wait(campaign_id)
    _assert_exactly_once(run, campaign_id, population.expected)
    assert progress.sent == len(population.expected) and progress.failed == 0

    with run.factory() as session:
        renderings = {r.id: r for r in session.scalars(select(SegmentRendering))}
    assert len(renderings) >= 8, "several segments"
    outbox = run.settings.resolved_outbox_dir
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == len(population.expected)
    by_email = {email_: (sid, segment) for sid, (email_, segment) in population.expected.items()}
    ledger = {row.subscriber_id: row for row in run.ledger(campaign_id)}
    for path in files[::5]:  # every fifth message parsed in full (seconds, not minutes)
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subscriber_id, segment = by_email[message["To"].addresses[0].addr_spec]
        row = ledger[subscriber_id]
        rendering = renderings[row.segment_id]
        assert rendering.segment == segment, "the segment of the topics they follow"
        token = re.search(r"/unsubscribe/([^>]+)>", str(message["List-Unsubscribe"])).group(1)
        view = re.search(r"/view/\d+/([A-Za-z0-9._-]+)", message.get_body(("html",)).get_content()).group(1)
        with run.factory() as session:
            assert read_link(session, SECRET, token, "unsubscribe", now=utcnow()).id == subscriber_id, (
                "their own links"
            )
            scope = view_scope(campaign_id)
            assert read_link(session, SECRET, view, "view", scope=scope, now=utcnow()).id == subscriber_id
            with pytest.raises(InvalidToken):  # a view token opens this campaign's copy only
                read_link(session, SECRET, view, "view", scope=view_scope(campaign_id + 1), now=utcnow())
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        values = {
            "email": row.email,
            "unsubscribe_url": f"{run.settings.base_url}/unsubscribe/{token}",
            # the bare link: per-topic links add a fixed ?add= / ?remove= after it
            "preferences_url": re.search(r"https?://\S+/preferences/[A-Za-z0-9._-]+", text).group(0),
            "view_url": f"{run.settings.base_url}/view/{campaign_id}/{view}",
        }
        assert text == SplitTemplate.split(rendering.text, escape_html=False).fill(values)
        assert message["X-Newsletter-Campaign"] == str(campaign_id)
    run.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_pause_resume_and_cancel_mid_campaign(tmp_path, database_url, redis_prefix, start_workers):
    run = Run(tmp_path, database_url, redis_prefix, transport="file", file_send_rate=150.0, rate_burst=5)
    population = populate(database_url, 1200, TOPICS, issue_topics=run.issue.topics)
    start_workers(2, **run.worker_settings())
    campaign_id = run.start()
    run.wait_sent(campaign_id, 100)
    with run.env.transaction() as session:
        lifecycle.pause(session, campaign_id)
    run.wait_quiet(campaign_id)
    paused = run.progress(campaign_id)
    assert paused.status == "paused" and 0 < paused.sent < len(population.expected)
    holds_for(lambda: run.progress(campaign_id).sent == paused.sent, 1.5, what="nothing sent while paused")
    assert paused.by_status.get("queued", 0) == len(population.expected) - paused.sent

    requeued = lifecycle.resume_stepwise(run.env, campaign_id)
    assert requeued == len(population.expected) - paused.sent
    run.wait(campaign_id)
    _assert_exactly_once(run, campaign_id, population.expected)

    second = run.start()
    run.wait_sent(second, 100)
    with run.env.transaction() as session:
        lifecycle.cancel(session, second)
    run.wait_quiet(second)
    cancelled = run.progress(second)
    holds_for(lambda: run.progress(second).sent == cancelled.sent, 1.0, what="nothing sent after cancel")
    assert cancelled.status == "cancelled"
    assert 0 < cancelled.sent < len(population.expected)
    assert set(cancelled.by_status) <= {"sent", "skipped"}
    assert cancelled.by_status["skipped"] == len(population.expected) - cancelled.sent
    run.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_throttling_is_retried_without_loss_or_duplicates(
    tmp_path, database_url, redis_prefix, start_workers, ses_sink
):
    ses_sink.sink.reset(throttle_first=30)
    run = Run(
        tmp_path,
        database_url,
        redis_prefix,
        transport="ses",
        ses_endpoint_url=ses_sink.url,
        ses_send_rate=500.0,
    )
    population = populate(database_url, 400, TOPICS, issue_topics=run.issue.topics)
    start_workers(2, **run.worker_settings())
    campaign_id = run.start()
    run.wait(campaign_id, timeout=90)
    _assert_exactly_once(run, campaign_id, population.expected)
    stats = ses_sink.sink.stats()
    assert stats["throttled"] == 30
    assert stats["accepted"] == stats["unique"] == len(population.expected)
    assert stats["duplicates"] == 0
    sent_ids = {row.message_id for row in run.ledger(campaign_id)}
    assert sent_ids == {record.ses_id for record in ses_sink.sink.records}, "ledger holds the SES MessageIds"
    run.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ses_through_moto(tmp_path, database_url, redis_prefix, start_workers, moto_ses):
    run = Run(
        tmp_path,
        database_url,
        redis_prefix,
        transport="ses",
        ses_endpoint_url=moto_ses.endpoint_url,
        ses_send_rate=200.0,
    )
    population = populate(database_url, 60, TOPICS, issue_topics=run.issue.topics)
    start_workers(1, **run.worker_settings(sender_address="news@example.org"))
    campaign_id = run.start()
    run.wait(campaign_id, timeout=60)
    _assert_exactly_once(run, campaign_id, population.expected)
    sent = moto_ses.sent_messages()
    assert len(sent) == len(population.expected)
    ledger = {row.email: row for row in run.ledger(campaign_id)}
    with run.factory() as session:
        renderings = {r.id: r for r in session.scalars(select(SegmentRendering))}
    for item in sent:
        message = email.message_from_string(item.raw_data, policy=email.policy.default)
        row = ledger[message["To"].addresses[0].addr_spec]
        assert row.message_id == item.id
        assert message["X-Newsletter-Campaign"] == str(campaign_id)
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "mailto:unsubscribe@example.org" in str(message["List-Unsubscribe"])
        assert message["Subject"] == run.issue.title
        assert message["Feedback-ID"].startswith(f"{campaign_id}:")
        expected_segment = population.expected[row.subscriber_id][1]
        assert renderings[row.segment_id].segment == expected_segment
        html = message.get_body(("html",)).get_content()
        assert row.email in html
    run.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_smtp_through_aiosmtpd(tmp_path, database_url, redis_prefix, start_workers, smtp_sink):
    run = Run(tmp_path, database_url, redis_prefix, transport="smtp")
    population = populate(database_url, 80, TOPICS, issue_topics=run.issue.topics)
    start_workers(1, **run.worker_settings(smtp_host=smtp_sink.host, smtp_port=smtp_sink.port))
    campaign_id = run.start()
    run.wait(campaign_id, timeout=60)
    _assert_exactly_once(run, campaign_id, population.expected)
    assert sorted(r[0] for _, r, _ in smtp_sink.received) == sorted(
        e for e, _ in population.expected.values()
    )
    assert smtp_sink.connections == 1, "one connection reused by the worker"
    run.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("policy", "threads"), [("unknown", 0), ("resend", 2)])
def test_workers_killed_mid_campaign_leave_at_most_their_messages_in_flight_in_doubt(
    tmp_path, database_url, redis_prefix, start_workers, ses_sink, policy, threads
):
    """SIGKILL the workers six times during a 10,000-recipient campaign, restart them, reap. Each sending
    thread has at most one message in flight, and only that one may be in doubt: with the default policy
    it is ``unknown`` (never resent: no recipient twice), under ``resend`` it may reach its reader twice.
    Everyone else has exactly one sent row and got the issue exactly once."""
    run = Run(
        tmp_path,
        database_url,
        redis_prefix,
        transport="ses",
        ses_endpoint_url=ses_sink.url,
        ses_send_rate=100000.0,
        lease_seconds=4,
        on_lost_send=policy,
    )
    # about 9,500 sendable: the kills at 2,000, 4,000 and 6,000 sent leave a third of the campaign after them
    population = populate(database_url, 10_600, TOPICS, issue_topics=run.issue.topics)
    # solo: the docker-compose worker; threads: the benchmark's configuration, two messages in flight each
    workers = start_workers(2, threads=threads, **run.worker_settings())
    campaign_id = run.start()
    kills = 0
    in_flight_at_kills = []
    for round_ in range(1, 4):
        run.wait_sent(campaign_id, round_ * 2000, timeout=120)  # kill while sending is in full swing
        for index in (0, 1):
            in_flight_at_kills.append(run.progress(campaign_id).by_status.get("sending", 0))
            workers.kill(index)
            kills += 1
            workers.start(index)

    recovered = resent = 0

    def reaped_until_done() -> bool:
        nonlocal recovered, resent
        report = upkeep.reap_stepwise(run.env)  # what beat does every half lease
        recovered += report.recovered
        resent += report.resent
        return run.progress(campaign_id).status == "done"

    wait_until(reaped_until_done, timeout=150, interval=2.0, what="the campaign finishing after the kills")
    progress = run.progress(campaign_id)
    stats = ses_sink.sink.stats()
    duplicates = stats["duplicates"]
    rows = run.ledger(campaign_id)
    unknown = [row for row in rows if row.status == "unknown"]
    in_flight_bound = kills * max(threads, 1)
    print(
        f"\ncrash test ({policy}, {'solo' if not threads else f'{threads} threads'}): "
        f"{len(population.expected)} recipients, {kills} kills, rows claimed at the kills "
        f"{in_flight_at_kills}; the journal showed {recovered} sent, {resent} queued again; unknown "
        f"{len(unknown)}; sink accepted {stats['accepted']}, unique {stats['unique']}, "
        f"duplicates {duplicates}"
    )
    assert progress.status == "done"
    received = Counter(record.recipient for record in ses_sink.sink.records)
    expected = {email_ for email_, _ in population.expected.values()}
    sent = Counter(row.subscriber_id for row in rows if row.status == "sent")
    assert max(sent.values()) == 1
    assert set(sent) | {row.subscriber_id for row in unknown} == set(population.expected)
    assert set(received) <= expected
    assert {row.email for row in rows if row.status == "sent"} <= set(received), "every sent row arrived"
    if policy == "unknown":
        assert len(unknown) <= in_flight_bound, "at most the message in flight per kill is in doubt"
        assert duplicates == 0, "nothing in doubt is resent: no recipient twice"
        assert set(received) >= expected - {row.email for row in unknown}
    else:
        assert not unknown and set(sent) == set(population.expected)
        assert duplicates <= in_flight_bound, "at most the message in flight per kill went out twice"
        assert set(received) == expected
    run.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_ses_campaign_keeps_the_ses_rate_on_workers_whose_default_transport_is_file(
    tmp_path, database_url, redis_prefix, redis_client, start_workers, moto_ses
):
    """The rate belongs to the transport the campaign sends through: SES says 20/s (moto's account
    MaxSendRate), two workers configured for the file transport share one Redis bucket for SES."""
    moto_ses.set_max_send_rate(20)
    run = Run(tmp_path, database_url, redis_prefix, transport="file", ses_endpoint_url=moto_ses.endpoint_url,
              rate_burst=5)  # fmt: skip
    population = populate(database_url, 240, TOPICS, issue_topics=run.issue.topics)
    start_workers(2, **run.worker_settings(sender_address="news@example.org"))
    campaign_id = run.start(transport="ses")
    run.wait(campaign_id, timeout=90)
    _assert_exactly_once(run, campaign_id, population.expected)
    assert len(moto_ses.sent_messages()) == len(population.expected)

    # sent_at is written when a batch records its results (every 0.5 s at this rate): measure over
    # the whole run, the burst of the bucket excepted
    times = sorted(row.sent_at for row in run.ledger(campaign_id) if row.sent_at is not None)
    span = (times[-1] - times[0]).total_seconds()
    rate = (len(times) - 5) / span
    busiest = max(sum(1 for t in times if 0 <= (t - start).total_seconds() < 1.0) for start in times)
    print(f"\nSES at 20/s from file-default workers: {len(times)} messages in {span:.1f} s = {rate:.1f}/s, "
          f"busiest second {busiest}")  # fmt: skip
    # results are recorded in batches (every 0.5 s here), so the span is known to +-0.5 s: unlimited,
    # two workers send moto several hundred a second
    assert 15 <= rate <= 24, "held to the SES account's rate, and not slower for another reason"
    assert busiest <= 20 + 5 + 10, "no second beyond the rate, the bucket and one record's batch"
    keys = {key.decode() for key in redis_client.scan_iter(match=f"{redis_prefix}:ratelimit:*")}
    assert keys == {f"{redis_prefix}:ratelimit:ses"}, "one bucket, named after the transport"
    run.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_worker_starts_a_stored_campaign_by_id_once(tmp_path, database_url, redis_prefix, start_workers):
    """The admin's start button: a task with the campaign's id; a second delivery of it starts nothing."""
    run = Run(tmp_path, database_url, redis_prefix, transport="file")
    population = populate(database_url, 300, TOPICS, issue_topics=run.issue.topics)
    start_workers(2, **run.worker_settings())
    draft = drafts.read_draft(run.env, REFERENCE_ISSUE)
    with run.env.transaction() as session:
        campaign_id = lifecycle.create(session, draft, now=run.env.now()).id
    for _ in range(2):  # the same task delivered twice
        run.env.celery().send_task(broker.START_CAMPAIGN, args=(campaign_id,))
    done = run.wait(campaign_id, timeout=60)
    assert done.total == done.sent == len(population.expected)
    _assert_exactly_once(run, campaign_id, population.expected)
    run.close()
