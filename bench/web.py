"""Web benchmark: the app under uvicorn on 127.0.0.1 (httptools, uvloop), driven by a bounded load
generator (asyncio, keep-alive connections, a fixed number of clients).

(a) webhook: SES hard bounces signed as SNS notifications (mailer.testing.sns_signer, SignatureVersion 1,
    certificate read once from NEWSLETTER_SNS_CERT_DIR and cached), each for a different subscriber:
    verified, stored raw and applied (suppression, status, events) per second; checked afterwards;
(b) GET /preferences/{token} and one-click POST /unsubscribe/{token} (each request a different
    subscriber): requests per second and latency percentiles at 32 clients;
and a minimal FastAPI route that does nothing (bench/noop_app.py, same uvicorn settings), measured before
and after the routes in the same run: each route's ratio is taken against the mean of the two.

    .venv/bin/python bench/web.py [--subscribers 20000] [--notifications 5000] [--requests 6000]
        [--clients 32] [--workers 2] [--database postgresql|sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bench.send import service_cpu_seconds, tree_cpu_seconds  # noqa: E402
from mailer.database import session_factory  # noqa: E402
from mailer.feedback.samples import bounce_notification  # noqa: E402
from mailer.settings import Settings  # noqa: E402
from mailer.testing.sns_signer import DEFAULT_TOPIC, SnsSigner  # noqa: E402
from subscribers.db import utcnow  # noqa: E402
from subscribers.models import Subscriber, Suppression  # noqa: E402
from subscribers.tokens import make_token  # noqa: E402

SECRET = "bench-web-secret"
WARM_UP = 400  # requests of each kind before measuring: every worker process compiles, connects, caches
SALT = "0123456789abcdef"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the load generator ------------------------------------------------------------------------------
@dataclass
class Load:
    requests: int
    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    cpu: dict[str, float] | None = None  # CPU microseconds per request: the app's processes, PostgreSQL

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def _client(host: str, port: int, work: Iterator[bytes], load: Load) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for request in work:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            load.latencies.append(time.perf_counter() - started)
            load.statuses[status] = load.statuses.get(status, 0) + 1
    finally:
        writer.close()


def run_load(port: int, requests: Sequence[bytes], clients: int, server: int | None = None) -> Load:
    """Send ``requests`` over ``clients`` connections; with ``server`` (a pid), the CPU it and the
    database spent per request."""
    before = (tree_cpu_seconds(server), service_cpu_seconds()["postgresql"]) if server else None
    load = Load(len(requests), 0.0, [], {})
    work = iter(requests)  # shared: each client takes the next request when its last one is answered

    async def main() -> None:
        started = time.perf_counter()
        await asyncio.gather(*(_client("127.0.0.1", port, work, load) for _ in range(clients)))
        load.seconds = time.perf_counter() - started

    asyncio.run(main())
    if before is not None and server is not None:
        app, database = tree_cpu_seconds(server) - before[0], service_cpu_seconds()["postgresql"] - before[1]
        load.cpu = {"app": app / len(requests) * 1e6, "postgresql": database / len(requests) * 1e6}
    return load


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- the servers -------------------------------------------------------------------------------------
def start_uvicorn(
    target: list[str], port: int, workers: int, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1.0 if workers > 1 else 0.3)  # every worker process up
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(log.read_text()[-2000:]) from None
            time.sleep(0.2)
    raise RuntimeError("uvicorn did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


# --- data --------------------------------------------------------------------------------------------
def populate(settings: Settings, count: int) -> None:
    now = utcnow()
    rows = [
        {
            "email": f"reader{i:06d}@example.org", "email_key": f"reader{i:06d}@example.org", "locale": "en",
            "status": "active", "created_at": now, "changed_at": now, "confirmed_at": now, "source": "bench",
            "soft_bounces": 0, "token_salt": SALT,
        }
        for i in range(count)
    ]  # fmt: skip
    with session_factory(settings)() as session:
        for start in range(0, count, 5000):
            session.execute(insert(Subscriber), rows[start : start + 5000])
        session.commit()


def _sign_chunk(args: tuple[bytes, bytes, list[int], str]) -> list[bytes]:
    """Sign notifications in a worker process (RSA signing is the slow part of preparing the bench)."""
    from cryptography.hazmat.primitives import serialization

    key_pem, cert_pem, indexes, cert_name = args
    signer = SnsSigner.__new__(SnsSigner)
    signer.key = serialization.load_pem_private_key(key_pem, password=None)  # type: ignore[assignment]
    signer.certificate_pem, signer.region, signer.cert_name = cert_pem, "us-east-1", cert_name
    signer.cert_url = f"https://sns.us-east-1.amazonaws.com/{cert_name}"
    out = []
    for i in indexes:
        address = f"reader{i:06d}@example.org"
        notification = bounce_notification(address, message_id=f"bench-{i}", at=utcnow())
        out.append(signer.envelope(notification, message_id=str(uuid.uuid4())).encode())
    return out


def signed_bounces(signer: SnsSigner, count: int) -> list[bytes]:
    from cryptography.hazmat.primitives import serialization

    key_pem = signer.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    chunks = [list(range(start, min(count, start + 500))) for start in range(0, count, 500)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        signed = pool.map(
            _sign_chunk, [(key_pem, signer.certificate_pem, c, signer.cert_name) for c in chunks]
        )
        return [body for chunk in signed for body in chunk]


def report(name: str, load: Load, noop_rate: float | None = None) -> None:
    ok = sum(n for status, n in load.statuses.items() if status < 400)
    ratio = f", ratio to the no-op route {load.rate / noop_rate:.2f}" if noop_rate else ""
    cpu = (
        f"; CPU/request: app {load.cpu['app']:,.0f} us, PostgreSQL {load.cpu['postgresql']:,.0f} us"
        if load.cpu
        else ""
    )
    statuses = dict(sorted(load.statuses.items()))
    print(
        f"{name:<28} {load.rate:8,.0f} req/s  p50 {load.percentile(50):6.1f} ms  "
        f"p99 {load.percentile(99):6.1f} ms  ({load.requests:,} requests, {ok:,} 2xx/3xx, "
        f"statuses {statuses}){ratio}{cpu}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--notifications", type=int, default=5_000, help="signed bounces (warm-up included)")
    parser.add_argument("--requests", type=int, default=6_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    needed = args.notifications + 2 * args.requests + 2 * WARM_UP
    if args.subscribers < needed:
        parser.error(f"--subscribers must be at least {needed} (each request acts on its own subscriber)")

    workdir = Path(tempfile.mkdtemp(prefix="bench-web-"))
    database = None
    if args.database == "postgresql":
        database = f"bench_web_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    port, noop_port = free_port(), free_port()
    signer = SnsSigner()
    certs = workdir / "certs"
    signer.write_certificate(certs)
    variables = {
        "NEWSLETTER_DATABASE_URL": url,
        "NEWSLETTER_DATA_DIR": str(workdir),
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_BASE_URL": f"http://127.0.0.1:{port}",
        "NEWSLETTER_SNS_TOPIC_ARNS": DEFAULT_TOPIC,
        "NEWSLETTER_SNS_CERT_DIR": str(certs),
    }
    settings = Settings(**{k.removeprefix("NEWSLETTER_").lower(): v for k, v in variables.items()})  # type: ignore[arg-type]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}, **variables}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        print(
            f"{args.workers} uvicorn workers (httptools, uvloop), {args.clients} clients, {args.database}, "
            f"{os.cpu_count()} CPUs (the load generator shares them)"
        )
        started = time.perf_counter()
        populate(settings, args.subscribers)
        if database:  # the list was imported long before these requests: not their cost (hint bits, stats)
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        bodies = signed_bounces(signer, args.notifications)
        print(
            f"prepared {args.subscribers:,} subscribers and {len(bodies):,} signed notifications "
            f"in {time.perf_counter() - started:.1f} s"
        )
        noop_server = start_uvicorn(
            ["bench.noop_app:app"], noop_port, args.workers, env, workdir / "noop.log"
        )
        servers.append(noop_server)
        target = ["--factory", "mailer.web.app:create_app"]
        web_server = start_uvicorn(target, port, args.workers, env, workdir / "web.log")
        servers.append(web_server)
        noop = [http_request("GET", "/noop")] * args.requests
        run_load(noop_port, noop[:WARM_UP], args.clients)
        noop_before = run_load(noop_port, noop, args.clients, noop_server.pid)

        headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain; charset=UTF-8"}
        webhook = [http_request("POST", settings.webhook_path, body, headers) for body in bodies]
        run_load(port, webhook[:WARM_UP], args.clients)
        hooks = run_load(port, webhook[WARM_UP:], args.clients, web_server.pid)

        first = args.notifications
        prefs = [
            http_request("GET", "/preferences/" + make_token(SECRET, i + 1, "preferences", salt=SALT))
            for i in range(first, first + args.requests + WARM_UP)
        ]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        first += args.requests + WARM_UP
        unsubscribe = [
            http_request(
                "POST", "/unsubscribe/" + make_token(SECRET, i + 1, "unsubscribe", salt=SALT),
                b"List-Unsubscribe=One-Click", form,
            )
            for i in range(first, first + args.requests + WARM_UP)
        ]  # fmt: skip
        run_load(port, prefs[:WARM_UP], args.clients)
        page = run_load(port, prefs[WARM_UP:], args.clients, web_server.pid)
        run_load(port, unsubscribe[:WARM_UP], args.clients)
        oneclick = run_load(port, unsubscribe[WARM_UP:], args.clients, web_server.pid)
        noop_after = run_load(noop_port, noop, args.clients, noop_server.pid)
        noop_rate = (noop_before.rate + noop_after.rate) / 2

        with session_factory(settings)() as session:
            suppressed = session.scalar(select(func.count()).select_from(Suppression))
            left = session.scalar(select(func.count()).where(Subscriber.status == "unsubscribed"))
        print()
        report("no-op route (before)", noop_before)
        report("webhook (verify+store+apply)", hooks)
        report("GET /preferences/{token}", page, noop_rate)
        report("POST /unsubscribe (1-click)", oneclick, noop_rate)
        report("no-op route (after)", noop_after)
        print(
            f"\nchecked: {suppressed:,} suppressions from {len(bodies):,} notifications, "
            f"{left:,} subscribers unsubscribed by {len(unsubscribe):,} one-click requests"
        )
        assert suppressed == len(bodies) and left == len(unsubscribe), "not every request took effect"
    finally:
        for server in servers:
            stop(server)
        if database:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    main()
