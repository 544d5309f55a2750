"""Web benchmark: the app under uvicorn on 127.0.0.1 (httptools, uvloop, N worker processes each with a
listening socket of its own on the port, SO_REUSEPORT), driven by a bounded load generator (asyncio on
uvloop, keep-alive connections, a fixed number of clients). Each phase prints how its connections spread
over the worker processes: with uvicorn's own --workers (``--shared-socket``) one process often takes
nearly all of them, and the run then measures one process (one core for Python) instead of N.

(a) webhook: SES hard bounces signed as SNS notifications (mailer.testing.sns_signer, SignatureVersion 1,
    certificate read once from NEWSLETTER_SNS_CERT_DIR and cached), each for a different subscriber:
    verified, stored raw and applied (suppression, status, events) per second; checked afterwards;
(b) GET /preferences/{token} and one-click POST /unsubscribe/{token} (each request a different
    subscriber): requests per second and latency percentiles at 32 clients;
and a minimal FastAPI route that does nothing (bench/noop_app.py, same uvicorn settings), measured before
and after the routes in the same run: each route's ratio is taken against the mean of the two.

    .venv/bin/python bench/web.py [--subscribers 20000] [--notifications 5000] [--requests 6000]
        [--clients 32] [--workers 2] [--database postgresql|sqlite] [--shared-socket]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import uvloop  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from bench.send import process_tree, service_cpu_seconds, tree_cpu_seconds  # noqa: E402
from mailer.database import Database  # noqa: E402
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
    # how many of the clients' connections each server process took (the processes share one listening
    # socket: whichever is awake accepts, so a burst of connections may land mostly on one of them)
    split: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def _client(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], work: Iterator[bytes], load: Load
) -> None:
    reader, writer = connection
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


def run_load(port: int, requests: Sequence[bytes], clients: int, server: Server | None = None) -> Load:
    """Send ``requests`` over ``clients`` connections; with ``server``, the CPU its processes and the
    database spent per request, and how the connections spread over its processes."""
    before = (server.cpu_seconds(), service_cpu_seconds()["postgresql"]) if server else None
    load = Load(len(requests), 0.0, [], {})
    work = iter(requests)  # shared: each client takes the next request when its last one is answered

    async def main() -> None:
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
        if server:
            for _ in range(50):  # until the processes have accepted every connection
                load.split = server.connection_split(port)
                if sum(load.split) >= clients:
                    break
                await asyncio.sleep(0.02)
        started = time.perf_counter()
        await asyncio.gather(*(_client(connection, work, load) for connection in connections))
        load.seconds = time.perf_counter() - started

    uvloop.run(main())  # the generator shares the cores with the server: the cheaper loop
    if before is not None and server is not None:
        app, database = server.cpu_seconds() - before[0], service_cpu_seconds()["postgresql"] - before[1]
        load.cpu = {"app": app / len(requests) * 1e6, "postgresql": database / len(requests) * 1e6}
    return load


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- the servers -------------------------------------------------------------------------------------
UVICORN_OPTIONS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "info"]
# One worker process on a listening socket of its own (uvicorn has no option for SO_REUSEPORT, and its --fd
# takes the descriptor for a Unix socket: no TCP_NODELAY on the connections).
REUSEPORT_WORKER = """
import socket, sys
import uvicorn
app, factory, port = sys.argv[1], sys.argv[2] == "factory", int(sys.argv[3])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
sock.bind(("127.0.0.1", port))
config = uvicorn.Config(
    app, factory=factory, loop="uvloop", http="httptools", access_log=False, log_level="info"
)
uvicorn.Server(config).run(sockets=[sock])
"""


@dataclass
class Server:
    """uvicorn worker processes serving one port: each with a listening socket of its own (SO_REUSEPORT:
    the kernel spreads connections over the processes by their addresses), or, ``shared``, uvicorn's
    ``--workers`` (one socket all processes accept from: whichever is awake takes a burst of connections,
    often nearly all of them, and one process, one core for Python, then serves most clients)."""

    processes: list[subprocess.Popen[bytes]]

    def pids(self) -> list[int]:
        return [pid for process in self.processes for pid in process_tree(process.pid)]

    def cpu_seconds(self) -> float:
        return sum(tree_cpu_seconds(process.pid) for process in self.processes)

    def connection_split(self, port: int) -> list[int]:
        """Established connections to ``port`` per server process (largest first)."""
        inodes: dict[str, int] = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes[target[8:-1]] = pid
        counts: dict[int, int] = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].split(":")[1], 16), fields[3], fields[9]
            if local_port == port and state == "01" and inode in inodes:  # 01: ESTABLISHED
                counts[inodes[inode]] = counts.get(inodes[inode], 0) + 1
        return sorted(counts.values(), reverse=True)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def start_uvicorn(
    target: list[str], port: int, workers: int, env: dict[str, str], log: Path, *, shared: bool = False
) -> Server:
    logs = [log.with_suffix(f".{i}.log") for i in range(1 if shared else workers)]
    processes = []
    if shared:
        command = [
            sys.executable, "-m", "uvicorn", *target, "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), *UVICORN_OPTIONS,
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(command, cwd=ROOT, env=env, stdout=logs[0].open("wb"), stderr=subprocess.STDOUT)
        )
    else:
        app = target[-1]
        factory = "factory" if "--factory" in target else "plain"
        for path in logs:
            command = [sys.executable, "-c", REUSEPORT_WORKER, app, factory, str(port)]
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=path.open("wb"), stderr=subprocess.STDOUT)
            )
    server = Server(processes)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every worker process has started its application
        started = sum(p.read_text().count("Application startup complete") for p in logs)
        if started >= workers:
            return server
        if any(process.poll() is not None for process in processes):
            server.stop()
            raise RuntimeError("\n".join(p.read_text()[-2000:] for p in logs))
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("uvicorn did not start")


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
    database = Database.of(settings)
    with database.sessions() as session:
        for start in range(0, count, 5000):
            session.execute(insert(Subscriber), rows[start : start + 5000])
        session.commit()
    database.dispose()


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
    split = f"; connections per process {'/'.join(map(str, load.split))}" if load.split else ""
    print(
        f"{name:<28} {load.rate:8,.0f} req/s  p50 {load.percentile(50):6.1f} ms  "
        f"p99 {load.percentile(99):6.1f} ms  ({load.requests:,} requests, {ok:,} 2xx/3xx, "
        f"statuses {statuses}){ratio}{cpu}{split}"
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
    parser.add_argument(
        "--shared-socket",
        action="store_true",
        help="uvicorn --workers (one listening socket) instead of one socket per process",
    )
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
    servers: list[Server] = []
    finished = False
    try:
        print(
            f"{args.workers} uvicorn workers (httptools, uvloop; "
            f"{'one shared listening socket' if args.shared_socket else 'a listening socket each'}), "
            f"{args.clients} clients, {args.database}, {os.cpu_count()} CPUs (the load generator shares them)"
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
        shared = args.shared_socket
        noop_server = start_uvicorn(
            ["bench.noop_app:app"], noop_port, args.workers, env, workdir / "noop.log", shared=shared
        )
        servers.append(noop_server)
        target = ["--factory", "mailer.web.app:create_app"]
        web_server = start_uvicorn(target, port, args.workers, env, workdir / "web.log", shared=shared)
        servers.append(web_server)
        noop = [http_request("GET", "/noop")] * args.requests
        run_load(noop_port, noop[:WARM_UP], args.clients)
        noop_before = run_load(noop_port, noop, args.clients, noop_server)

        headers = {"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain; charset=UTF-8"}
        webhook = [http_request("POST", settings.webhook_path, body, headers) for body in bodies]
        run_load(port, webhook[:WARM_UP], args.clients)
        hooks = run_load(port, webhook[WARM_UP:], args.clients, web_server)

        first = args.notifications
        prefs = [
            http_request(
                "GET", "/preferences/" + make_token(SECRET, i + 1, "preferences", salt=SALT, now=utcnow())
            )
            for i in range(first, first + args.requests + WARM_UP)
        ]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        first += args.requests + WARM_UP
        unsubscribe = [
            http_request(
                "POST", "/unsubscribe/" + make_token(SECRET, i + 1, "unsubscribe", salt=SALT, now=utcnow()),
                b"List-Unsubscribe=One-Click", form,
            )
            for i in range(first, first + args.requests + WARM_UP)
        ]  # fmt: skip
        run_load(port, prefs[:WARM_UP], args.clients)
        page = run_load(port, prefs[WARM_UP:], args.clients, web_server)
        run_load(port, unsubscribe[:WARM_UP], args.clients)
        oneclick = run_load(port, unsubscribe[WARM_UP:], args.clients, web_server)
        noop_after = run_load(noop_port, noop, args.clients, noop_server)
        noop_rate = (noop_before.rate + noop_after.rate) / 2

        store = Database.of(settings)
        with store.sessions() as session:
            suppressed = session.scalar(select(func.count()).select_from(Suppression))
            left = session.scalar(select(func.count()).where(Subscriber.status == "unsubscribed"))
        store.dispose()
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
        finished = True
    finally:
        for server in servers:
            server.stop()
        if database:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if finished:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"the servers' logs are in {workdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
