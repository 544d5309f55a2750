"""Fixtures of the sending side: moto's SES server, an aiosmtpd sink, a Redis key prefix per test.

All real components on 127.0.0.1: moto's ThreadedMotoServer (in-process, so its backend can be read
directly), aiosmtpd's Controller, and the machine's Redis with a unique key prefix that is deleted after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
import redis
from support.services import REDIS_URL, free_port
from support.workers import Workers

MOTO_ACCOUNT = "123456789012"
SES_REGION = "us-east-1"


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

        backend = get_backend("ses")[MOTO_ACCOUNT][SES_REGION]
        backend.sent_messages.clear()
        backend.__dict__.pop("get_send_quota", None)  # moto's own quota again (MaxSendRate 1)

    def max_send_rate(self) -> float:
        from moto.backends import get_backend

        return float(get_backend("ses")[MOTO_ACCOUNT][SES_REGION].get_send_quota().max_send_rate)

    def set_max_send_rate(self, rate: float) -> None:
        """The account's MaxSendRate moto's SES answers (GetSendQuota; moto's own is a fixed 1/s)."""
        from moto.backends import get_backend

        backend = get_backend("ses")[MOTO_ACCOUNT][SES_REGION]
        own = type(backend).get_send_quota

        def quota() -> Any:
            answer = own(backend)
            answer.max_send_rate = rate  # type: ignore[assignment]  # moto's annotation says int; SES's is a float
            return answer

        backend.get_send_quota = quota  # type: ignore[method-assign]  # this backend's answer, not the class's


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
    refuse_all: tuple[int, str] | None = None  # (code, text) for every recipient: a server turning all away


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
            refusal = sink.refuse.get(address, sink.refuse_all)
            if refusal is not None:
                code, text = refusal
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


@pytest.fixture
def ses_sink() -> Iterator[Any]:
    """mailer.testing.ses_sink running in a thread of the test process; ``.sink`` holds what it received."""
    from mailer.testing.ses_sink import SesSink

    handle = SesSink().start_in_thread()
    yield handle
    handle.stop()


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
