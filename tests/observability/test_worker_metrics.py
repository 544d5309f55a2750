"""A real Celery worker (``celery -A worker worker -P solo``, real Redis) serves its own metrics on its
port, sends the task events Flower reads, and logs JSON lines with the campaign id; the queue depth the
web app's metrics show is read from the same Redis."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.paths import REFERENCE_ISSUE
from support.services import REDIS_URL, free_port_run
from support.waiting import wait_until

from mailer.sending.models import Campaign
from mailer.services import drafts, lifecycle
from mailer.services.env import AppEnv
from mailer.settings import Settings
from mailer.web.collector import StoreCollector
from subscribers.db import utcnow
from subscribers.preferences import add_subscriber

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SECRET = "worker-metrics-secret"
READERS = [f"reader{i}@example.org" for i in range(5)]
BATCH = 2  # 5 readers: 3 batch tasks


def queue_depth(env: AppEnv) -> float | None:
    for family in StoreCollector(env).collect():
        if family.name == "newsletter_queue_depth":
            return family.samples[0].value
    return None


def scrape(port: int) -> dict[str, float]:
    """A worker's campaign messages (file transport) by status, from its metrics port."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "newsletter_messages_total" and sample.labels["transport"] == "file"
    }


class Events:
    """Celery's task events as Flower receives them: a Receiver on the broker, in a thread."""

    def __init__(self, env: AppEnv) -> None:
        self.types: list[str] = []
        self._connection = env.celery().connection_for_read()
        self._receiver = env.celery().events.Receiver(
            self._connection, handlers={"*": lambda event: self.types.append(event["type"])}
        )
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self, env: AppEnv) -> None:
        """Listening once an event of our own comes back (events sent before that would be lost)."""
        self._thread.start()
        with env.celery().events.default_dispatcher() as dispatcher:

            def probed() -> bool:
                dispatcher.send("probe-listening")
                return "probe-listening" in self.types

            wait_until(probed, interval=0.2, what="the event receiver")

    def stop(self) -> None:
        self._receiver.should_stop = True
        self._thread.join(10)
        self._connection.release()


def test_a_worker_serves_its_counts_and_sends_task_events(tmp_path, redis_prefix, start_workers):
    database = f"sqlite:///{tmp_path / 'newsletter.db'}"
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database,
        broker_url=REDIS_URL,
        redis_prefix=redis_prefix,
        secret_key=SECRET,
        batch_size=BATCH,
    )
    env = AppEnv.from_settings(settings)  # a broker: the batches wait on Redis for a worker
    events = Events(env)
    try:
        with env.transaction() as session:
            for address in READERS:
                add_subscriber(session, address, topics=["nova"], source="test", now=utcnow())
        assert queue_depth(env) == 0
        events.start(env)
        draft = drafts.read_draft(env, REFERENCE_ISSUE)
        with env.transaction() as session:
            campaign_id = lifecycle.create(session, draft, now=env.now()).id
        lifecycle.start_stepwise(env, campaign_id)
        assert queue_depth(env) == 3  # no worker yet

        port = free_port_run(2)  # two workers on this machine: port and port + 1
        workers = start_workers(
            2, database_url=database, secret_key=SECRET, worker_metrics_port=port, log_format="json"
        )

        def done() -> bool:
            with env.sessions() as session:
                campaign = session.get(Campaign, campaign_id)
                return campaign is not None and campaign.status == "done"

        wait_until(done, timeout=60, what="the campaign")
        assert queue_depth(env) == 0

        sent = [scrape(port + index) for index in (0, 1)]
        # each worker counts its own (one may have taken every batch), together the campaign's
        assert sum(counts.get("sent", 0) for counts in sent) == 5
        assert [counts.get("failed", 0) for counts in sent] == [0, 0]

        wait_until(lambda: events.types.count("task-succeeded") == 3, timeout=10, what="3 task-succeeded")
        assert events.types.count("task-sent") == 3  # published by this process (task_send_sent_event)
        assert events.types.count("task-received") == 3

        workers.stop()  # their logs complete
        # (Celery prints its banner and console notices as text, before and beside its logging)
        logs = [
            [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
            for path in sorted(tmp_path.glob("worker*.log"))
        ]
        assert [[line["metrics_port"] for line in lines if "metrics_port" in line] for lines in logs] == [
            [port],  # one port each
            [port + 1],
        ]
        lines = logs[0] + logs[1]
        batches = [
            line for line in lines if line["logger"] == "mailer.worker.tasks" and "batch" in line["message"]
        ]
        assert len(batches) == 3 and {line["campaign_id"] for line in batches} == {campaign_id}
        assert sum(line["sent"] for line in batches) == 5
        assert all(line["process"] == "worker" for line in lines)
    finally:
        events.stop()
        env.close()
