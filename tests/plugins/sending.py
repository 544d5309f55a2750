"""Fixtures of the sending side: moto's SES server, an aiosmtpd sink, a Redis key prefix per test.

All real components on 127.0.0.1: moto's ThreadedMotoServer (in-process, so its backend can be read
directly), aiosmtpd's Controller, and the machine's Redis with a unique key prefix that is deleted after.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
MOTO_ACCOUNT = "123456789012"
SES_REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"nltest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_prefix(redis_client, prefix)


@dataclass
class MotoSes:
    endpoint_url: str
    sender_domain: str = "example.org"

    def client(self, service: str = "sesv2") -> Any:
        return boto3.client(
            service,
            region_name=SES_REGION,
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def sent_messages(self) -> list[Any]:
        """What moto's SES backend has accepted (raw_data, destinations, ...), oldest first."""
        from moto.backends import get_backend

        return list(get_backend("ses")[MOTO_ACCOUNT][SES_REGION].sent_messages)

    def reset(self) -> None:
        from moto.backends import get_backend

        get_backend("ses")[MOTO_ACCOUNT][SES_REGION].sent_messages.clear()


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def moto_ses(_moto_server: str) -> Iterator[MotoSes]:
    ses = MotoSes(_moto_server)
    ses.client("ses").verify_domain_identity(Domain=ses.sender_domain)
    ses.reset()
    yield ses
    ses.reset()


@dataclass
class SmtpSink:
    host: str
    port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    connections: int = 0
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # rcpt -> (code, text)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink("127.0.0.1", free_port())

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
            sink.connections += 1
            session.host_name = hostname
            return responses

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
            if address in sink.refuse:
                code, text = sink.refuse[address]
                return f"{code} {text}"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@dataclass
class Population:
    """Subscribers written for a sending test; ``expected`` is who must get mail, with their segment."""

    expected: dict[int, tuple[str, frozenset[str]]]  # subscriber id -> (email, followed issue topics)
    excluded: dict[int, str]  # subscriber id -> why not (unsubscribed, pending, suppressed)


def populate(
    url: str, count: int, topics: list[str], *, issue_topics: frozenset[str], seed: int = 7
) -> Population:
    """``count`` subscribers following random subsets of ``topics``; about 5% unsubscribed, 3% pending
    and 3% suppressed (an active subscriber on the suppression list: the send-time check must catch it)."""
    import random

    from sqlalchemy import insert, select

    from mailer.database import sync_registry
    from mailer.settings import Settings
    from mailer.topics import load_registry
    from subscribers.db import make_session_factory, open_database, utcnow
    from subscribers.models import Subscriber, Suppression, Topic, subscriber_topics

    rng = random.Random(seed)
    engine = open_database(url)
    with make_session_factory(engine)() as session:
        sync_registry(session, load_registry(Settings().topics_file))
        session.commit()
        topic_ids = dict(session.execute(select(Topic.key, Topic.id)).all())
        now = utcnow()
        rows, follows, suppressions = [], [], []
        plan = []
        for n in range(count):
            followed = frozenset(t for t in topics if rng.random() < 0.35)
            roll = rng.random()
            status = "unsubscribed" if roll < 0.05 else "pending" if roll < 0.08 else "active"
            suppressed = status == "active" and roll > 0.97
            email = f"user{n}.{seed}@example.com"
            rows.append(
                {
                    "email": email,
                    "email_key": email,
                    "name": f"用户{n}" if n % 3 == 0 else None,
                    "locale": "zh" if n % 2 else "en",
                    "status": status,
                    "created_at": now,
                    "changed_at": now,
                    "source": "test",
                    "soft_bounces": 0,
                }
            )
            plan.append((email, followed, status, suppressed))
            if suppressed:
                suppressions.append(
                    {"email_key": email, "email": email, "reason": "hard_bounce", "created_at": now}
                )
        ids = list(
            session.scalars(insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True), rows)
        )
        expected: dict[int, tuple[str, frozenset[str]]] = {}
        excluded: dict[int, str] = {}
        for subscriber_id, (email, followed, status, suppressed) in zip(ids, plan, strict=True):
            follows.extend({"subscriber_id": subscriber_id, "topic_id": topic_ids[t]} for t in followed)
            if status != "active":
                excluded[subscriber_id] = status
            elif suppressed:
                excluded[subscriber_id] = "suppressed"
            else:
                expected[subscriber_id] = (email, followed & issue_topics)
        if follows:
            session.execute(insert(subscriber_topics), follows)
        if suppressions:
            session.execute(insert(Suppression), suppressions)
        session.commit()
    engine.dispose()
    return Population(expected, excluded)


PROJECT_ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _load_sink_module() -> Any:
    import importlib.util
    import sys

    if "ses_sink" in sys.modules:
        return sys.modules["ses_sink"]
    spec = importlib.util.spec_from_file_location("ses_sink", PROJECT_ROOT / "bench" / "ses_sink.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ses_sink"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ses_sink() -> Iterator[Any]:
    """bench/ses_sink.py running in a thread of the test process; ``.sink`` holds what it received."""
    module = _load_sink_module()
    handle = module.SesSink().start_in_thread()
    yield handle
    handle.stop()


class Workers:
    """Real ``celery -A worker worker -P solo`` processes, each one OS process, killable and restartable."""

    def __init__(self, env: dict[str, str], log_dir: Any, pool: tuple[str, ...] = ("-P", "solo")) -> None:
        self.pool = pool
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[int, Any] = {}
        self.starts = 0

    def start(self, index: int) -> None:
        import subprocess
        import sys
        import time

        self.starts += 1
        log = (self.log_dir / f"worker{index}-{self.starts}.log").open("wb")
        command = [
            sys.executable, "-m", "celery", "-A", "worker", "worker", *self.pool,
            "-n", f"w{index}-{self.starts}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[index] = process
        deadline = time.monotonic() + 30
        path = log.name
        while time.monotonic() < deadline:
            if b" ready." in open(path, "rb").read():  # noqa: SIM115
                return
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {open(path, 'rb').read()[-3000:].decode()}")  # noqa: SIM115
            time.sleep(0.1)
        raise RuntimeError("worker did not become ready in 30 s")

    def kill(self, index: int) -> None:
        import signal

        process = self.processes.pop(index)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self) -> None:
        import signal

        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except Exception:
                process.kill()
                process.wait(5)
        self.processes.clear()


@pytest.fixture
def start_workers(tmp_path: Any, redis_prefix: str) -> Iterator[Any]:
    """``start_workers(count, threads=0, **settings)``: worker processes (solo pool, or ``threads`` threads
    each) on this test's Redis prefix and settings."""
    groups: list[Workers] = []

    def start(count: int, threads: int = 0, **settings: Any) -> Workers:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(
            {
                "NEWSLETTER_BROKER_URL": REDIS_URL,
                "NEWSLETTER_REDIS_PREFIX": redis_prefix,
                "NEWSLETTER_DATA_DIR": str(tmp_path / "data"),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({f"NEWSLETTER_{k.upper()}": str(v) for k, v in settings.items()})
        pool = ("-P", "threads", "-c", str(threads)) if threads else ("-P", "solo")
        workers = Workers(env, tmp_path, pool)
        groups.append(workers)
        for index in range(count):
            workers.start(index)
        return workers

    yield start
    for workers in groups:
        workers.stop()
