"""Sending benchmark: a campaign to N recipients through Redis and 2 Celery worker processes
(``celery -A worker worker -P solo``, as docker-compose runs them) to a local SES-compatible sink, against
a bare boto3 loop over 2 processes to the same sink; and per-recipient MIME build time against
email.message.EmailMessage. Prints figures, with the CPU per message of every process involved; needs
Redis and PostgreSQL on 127.0.0.1.

    .venv/bin/python bench/send.py [--recipients 100000] [--bare 20000] [--database postgresql|sqlite]
        [--pool solo|threads|prefork] [--concurrency 1] [--workers 2] [--issue FILE.md]

The issue is the project's sample reference issue (tests/fixtures/issues), or any issue file given, e.g.
the real reference issue: --issue ../shared/fixtures/issues/2014-01-16-openstack-activity-1226-0116.md.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from mailer.database import Database, sync_registry  # noqa: E402
from mailer.rendering.issue import load_issue  # noqa: E402
from mailer.rendering.placeholders import SplitTemplate  # noqa: E402
from mailer.rendering.render import Brand, render, render_segments  # noqa: E402
from mailer.sending.message import RecipientLinks, SegmentMessage, SenderIdentity, link_values  # noqa: E402
from mailer.services import drafts, lifecycle, listing, watch  # noqa: E402
from mailer.services.env import AppEnv  # noqa: E402
from mailer.settings import Settings  # noqa: E402
from mailer.topics import load_registry  # noqa: E402
from mailer.urls import view_scope  # noqa: E402
from subscribers.db import utcnow  # noqa: E402
from subscribers.models import Subscriber, Topic, subscriber_topics  # noqa: E402
from subscribers.tokens import make_token  # noqa: E402

# the issue sent; --issue replaces it. The default: the project's sample reference issue
# (tests/support/paths.py: REFERENCE_ISSUE), zh, CRLF, four topics
REFERENCE = ROOT / "tests" / "fixtures" / "issues" / "2025-06-12-community-weekly-06.md"
REDIS_URL = "redis://127.0.0.1:6379/0"
BENCH_SECRET = "bench-secret"  # sending through ses refuses the published default key
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
TOPICS = ["nova", "neutron", "tempest", "ceilometer", "heat", "keystone"]
SCOPES = {
    "unsubscribe": "",
    "preferences": "",
    "view": view_scope(1),
}  # as the sender makes them (campaign 1)
SALT = "0123456789abcdef"  # a subscriber's token salt
ISSUED = utcnow()  # the links' issue time: the sender takes it once per batch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a prefork worker's children do the sending)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree = [pid]
    for member in tree:
        tree.extend(child for child, parent in parents.items() if parent == member)
    return tree


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(member)
    return total


def service_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of the PostgreSQL and Redis server processes (every backend counts)."""
    totals = {"postgresql": 0.0, "redis": 0.0}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")[0]
            service = (
                "postgresql" if b"postgres" in command else "redis" if b"redis-server" in command else None
            )
            if service:
                totals[service] += proc_cpu_seconds(int(entry.name))
        except OSError:
            continue
    return totals


def machine_steal() -> tuple[float, float]:
    """(all CPU ticks, stolen ticks) so far: a virtual machine's neighbours show up as steal."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return float(sum(fields[:8])), float(fields[7])


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def populate(url: str, count: int) -> None:
    rng = random.Random(4)
    settings = Settings(database_url=url)
    database = Database.of(settings)
    with database.sessions() as session:
        sync_registry(session, load_registry(settings.registry_file))
        session.commit()
        ids = dict(session.execute(select(Topic.key, Topic.id)).all())
        now = utcnow()
        for start in range(0, count, 10_000):
            rows = [
                {
                    "email": f"reader{n}@example.com",
                    "email_key": f"reader{n}@example.com",
                    "name": None,
                    "locale": "zh",
                    "status": "active",
                    "created_at": now,
                    "changed_at": now,
                    "source": "bench",
                    "soft_bounces": 0,
                }
                for n in range(start, min(count, start + 10_000))
            ]
            new = list(session.scalars(insert(Subscriber).returning(Subscriber.id), rows))
            follows = [
                {"subscriber_id": sid, "topic_id": ids[t]}
                for sid in new
                for t in TOPICS
                if rng.random() < 0.3
            ]
            session.execute(insert(subscriber_topics), follows)
            session.commit()
    database.dispose()


def start_sink(port: int) -> subprocess.Popen[bytes]:
    sink = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer.testing.ses_sink",
            "--port",
            str(port),
            "--max-send-rate",
            "50000",
        ],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return sink
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sink did not start")


def sink_stats(port: int) -> dict[str, int]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sink/stats") as response:
        return json.loads(response.read())


def sink_reset(port: int) -> None:
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/_sink/reset", data=b"{}")).read()


def end_to_end(
    url: str,
    recipients: int,
    port: int,
    prefix: str,
    workdir: Path,
    pool: str,
    concurrency: int,
    processes: int,
    sink_pid: int,
) -> dict[str, float]:
    settings = Settings(
        data_dir=workdir, database_url=url, broker_url=REDIS_URL, redis_prefix=prefix, transport="ses",
        ses_endpoint_url=f"http://127.0.0.1:{port}", secret_key=BENCH_SECRET,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_BROKER_URL=REDIS_URL, NEWSLETTER_REDIS_PREFIX=prefix, NEWSLETTER_DATABASE_URL=url,
        NEWSLETTER_TRANSPORT="ses", NEWSLETTER_SES_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        NEWSLETTER_DATA_DIR=str(workdir), AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
        NEWSLETTER_SECRET_KEY=BENCH_SECRET,
    )  # fmt: skip
    workers = []
    for index in range(processes):
        log = (workdir / f"worker{index}.log").open("wb")
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "-P",
                    pool,
                    "-c",
                    str(concurrency),
                    "-n",
                    f"bench{index}@%h",
                    "--loglevel",
                    "WARNING",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
    time.sleep(4)  # both workers connected and idle
    cpu_before = sum(tree_cpu_seconds(w.pid) for w in workers)
    services_before, steal_before = service_cpu_seconds(), machine_steal()
    sink_cpu_before = tree_cpu_seconds(sink_pid)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    app = AppEnv.from_settings(settings)  # a broker: the batches go to the workers
    draft = drafts.read_draft(app, REFERENCE)
    with app.transaction() as session:
        campaign = lifecycle.create(session, draft, now=app.now())
    started = time.time()
    lifecycle.start_stepwise(app, campaign.id)
    queued = time.time()
    while True:
        with app.sessions() as session:
            state = watch.progress(session, campaign.id, now=app.now(), exact=False)
        if state.status != "sending":
            break
        time.sleep(0.5)
    with app.sessions() as session:
        finished = listing.detail(session, campaign.id, now=app.now()).info.finished_at
    elapsed = (finished.timestamp() if finished else time.time()) - started
    cpu = sum(tree_cpu_seconds(w.pid) for w in workers) - cpu_before
    services = {k: v - services_before[k] for k, v in service_cpu_seconds().items()}
    own_after = resource.getrusage(resource.RUSAGE_SELF)
    own = own_after.ru_utime + own_after.ru_stime - own_before.ru_utime - own_before.ru_stime
    steal_after = machine_steal()
    steal = (steal_after[1] - steal_before[1]) / max(1.0, steal_after[0] - steal_before[0])
    sink_cpu = tree_cpu_seconds(sink_pid) - sink_cpu_before
    rss = max(proc_peak_rss_mb(p) for w in workers for p in process_tree(w.pid))
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.wait(30)
    app.close()
    stats = sink_stats(port)
    if url.startswith("postgresql"):
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            time.sleep(1)  # statistics reach pg_stat_user_tables within a second
            updates, hot = conn.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"
            ).fetchone() or (0, 0)
            print(f"  ledger updates: {updates:,}, of which in place (HOT): {hot / max(1, updates):.0%}")
    return {
        "sent": state.sent,
        "status_done": float(state.status == "done"),
        "seconds": elapsed,
        "start_seconds": queued - started,
        "rate": state.sent / elapsed,
        "cpu_us_per_message": cpu / max(1, state.sent) * 1e6,
        "postgresql_us_per_message": services["postgresql"] / max(1, state.sent) * 1e6,
        "redis_us_per_message": services["redis"] / max(1, state.sent) * 1e6,
        "sink_us_per_message": sink_cpu / max(1, state.sent) * 1e6,
        "starter_us_per_message": own / max(1, state.sent) * 1e6,
        "steal": steal,
        "worker_peak_rss_mb": rss,
        "sink_accepted": stats["accepted"],
        "sink_duplicates": stats["duplicates"],
    }


def _bare_worker(port: int, messages: list[tuple[str, bytes]], out) -> None:  # type: ignore[no-untyped-def]
    from mailer.sending.transports.ses import make_client

    client = make_client(Settings(ses_endpoint_url=f"http://127.0.0.1:{port}"))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    for recipient, raw in messages:
        client.send_email(
            FromEmailAddress="newsletter@example.org",
            Destination={"ToAddresses": [recipient]},
            Content={"Raw": {"Data": raw}},
            EmailTags=[{"Name": "campaign", "Value": "1"}],
        )
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.put((len(messages), usage.ru_utime + usage.ru_stime - cpu_before))


def prebuilt_messages(count: int) -> list[tuple[str, bytes]]:
    """Messages with the campaign's mix of segments (same topic odds as ``populate``), so both sides
    send the same sizes; real-length tokens."""
    settings = Settings()
    issue = load_issue(REFERENCE, load_registry(settings.registry_file))
    rng = random.Random(4)
    segments = [frozenset(t for t in TOPICS if rng.random() < 0.3) for _ in range(count)]
    renderings = render_segments(issue, set(segments), Brand.from_settings(settings))
    identity = SenderIdentity.from_settings(settings)
    compiled = {
        key: SegmentMessage(rendering, campaign_id=1, identity=identity)
        for key, rendering in renderings.items()
    }
    out = []
    for n, segment in enumerate(segments):
        address = f"reader{n}@example.com"
        tokens = RecipientLinks(
            *(
                make_token(settings.signing_key, n, p, salt=SALT, scope=SCOPES[p], now=ISSUED)
                for p in ("unsubscribe", "preferences", "view")
            )
        )
        values = link_values(identity, 1, address, tokens)
        message = compiled[issue.segment_for(segment)]
        out.append((address, message.build(subscriber_id=n, email=address, name=None, values=values).raw))
    return out


def bare_loop(port: int, count: int) -> tuple[float, float]:
    """Messages per second and CPU microseconds per message of the two sending processes."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    messages = prebuilt_messages(count)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    halves = [messages[: count // 2], messages[count // 2 :]]
    started = time.time()
    processes = [context.Process(target=_bare_worker, args=(port, half, out)) for half in halves]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    elapsed = time.time() - started
    for process in processes:
        process.join()
    sent = sum(n for n, _ in results)
    return sent / elapsed, sum(cpu for _, cpu in results) / sent * 1e6


def measure_bare(port: int, sink_pid: int, count: int, when: str) -> float:
    """Run and print the bare loop; its messages per second."""
    steal_before, sink_before = machine_steal(), tree_cpu_seconds(sink_pid)
    rate, cpu = bare_loop(port, count)
    steal_after = machine_steal()
    steal = (steal_after[1] - steal_before[1]) / max(1.0, steal_after[0] - steal_before[0])
    sink_cpu = (tree_cpu_seconds(sink_pid) - sink_before) / count * 1e6
    print(
        f"bare boto3 loop {when}, 2 processes, {count:,} prebuilt messages: {rate:,.0f} messages/s; "
        f"CPU {cpu:.0f} us/message; sink {sink_cpu:.0f} us/message; CPU stolen by the host {steal:.0%}"
    )
    return rate


def mime_build(count: int = 3000) -> tuple[float, float]:
    """Microseconds per recipient: ours (tokens, substitution, headers) vs EmailMessage, same parts."""
    settings = Settings()
    issue = load_issue(REFERENCE, load_registry(settings.registry_file))
    rendering = render(issue, issue.topics, Brand.from_settings(settings))
    identity = SenderIdentity.from_settings(settings)
    compiled = SegmentMessage(rendering, campaign_id=1, identity=identity)
    secret = settings.signing_key
    started = time.perf_counter()
    for n in range(count):
        address = f"reader{n}@example.com"
        tokens = RecipientLinks(
            *(
                make_token(secret, n, p, salt=SALT, scope=SCOPES[p], now=ISSUED)
                for p in ("unsubscribe", "preferences", "view")
            )
        )
        compiled.build(
            subscriber_id=n, email=address, name="读者", values=link_values(identity, 1, address, tokens)
        )
    ours = (time.perf_counter() - started) / count * 1e6
    text_t = SplitTemplate.split(rendering.text, escape_html=False)
    html_t = SplitTemplate.split(rendering.html, escape_html=True)
    started = time.perf_counter()
    for n in range(count // 10):
        address = f"reader{n}@example.com"
        tokens = RecipientLinks(
            *(
                make_token(secret, n, p, salt=SALT, scope=SCOPES[p], now=ISSUED)
                for p in ("unsubscribe", "preferences", "view")
            )
        )
        values = link_values(identity, 1, address, tokens)
        message = EmailMessage()
        message["From"] = f"{identity.sender_name} <{identity.sender_address}>"
        message["To"] = f"读者 <{address}>"
        message["Subject"] = rendering.subject
        message["Message-ID"] = f"<1.{n}@{identity.domain}>"
        message["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>, <{values['mailto_unsubscribe']}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        message.set_content(text_t.fill(values))
        message.add_alternative(html_t.fill(values), subtype="html")
        message.as_bytes()
    theirs = (time.perf_counter() - started) / (count // 10) * 1e6
    return ours, theirs


def main() -> None:
    global REFERENCE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--bare", type=int, default=20_000, help="messages of the bare boto3 loop")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--pool", choices=["threads", "solo", "prefork"], default="solo")
    parser.add_argument("--concurrency", type=int, default=1, help="threads (or children) per worker")
    parser.add_argument("--workers", type=int, default=2, help="celery worker processes")
    parser.add_argument(
        "--issue", type=Path, default=REFERENCE, help="the issue file sent (default: %(default)s)"
    )
    args = parser.parse_args()
    # read by the campaign, the prebuilt messages and the MIME build, all in this process
    REFERENCE = args.issue
    print(f"issue: {REFERENCE}")
    print(f"load before: {os.getloadavg()[0]:.2f}")
    ours, theirs = mime_build()
    print(f"MIME build per recipient: {ours:.1f} us (tokens + substitution + headers); "
          f"EmailMessage: {theirs:.0f} us; {theirs / ours:.0f}x faster")  # fmt: skip
    prefix = f"nlbench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="nlbench-"))
    name = f"nlbench_{os.getpid()}"
    if args.database == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    port = free_port()
    sink = start_sink(port)
    try:
        started = time.time()
        populate(url, args.recipients)
        if args.database == "postgresql":
            # the list was imported long before a real send: its autovacuum/analyze is not the campaign's
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        print(f"populated {args.recipients:,} subscribers in {time.time() - started:.1f} s ({args.database})")
        # the bare loop runs just before and just after the campaign, half its messages each time: the
        # machine's speed drifts over minutes, and the ratio is taken against the mean of the two
        before = measure_bare(port, sink.pid, args.bare // 2, "before")
        sink_reset(port)
        e2e = end_to_end(
            url, args.recipients, port, prefix, workdir, args.pool, args.concurrency, args.workers, sink.pid
        )
        print(
            f"end to end: {e2e['sent']:,.0f} messages in {e2e['seconds']:.1f} s = {e2e['rate']:,.0f} "
            f"messages/s (start: render + ledger + enqueue {e2e['start_seconds']:.1f} s); worker CPU "
            f"{e2e['cpu_us_per_message']:.0f} us/message; worker peak RSS "
            f"{e2e['worker_peak_rss_mb']:.0f} MB; sink accepted {e2e['sink_accepted']:,}, "
            f"duplicates {e2e['sink_duplicates']}"
        )
        print(
            f"  CPU per message elsewhere: PostgreSQL {e2e['postgresql_us_per_message']:.0f} us, Redis "
            f"{e2e['redis_us_per_message']:.0f} us, sink {e2e['sink_us_per_message']:.0f} us, starting "
            f"process {e2e['starter_us_per_message']:.0f} us; CPU stolen by the host {e2e['steal']:.0%}"
        )
        sink_reset(port)
        after = measure_bare(port, sink.pid, args.bare - args.bare // 2, "after")
        bare = (before + after) / 2
        print(
            f"ratio end to end / bare loop (mean of before and after, {bare:,.0f}/s): "
            f"{e2e['rate'] / bare:.2f}"
        )
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        sink.send_signal(signal.SIGINT)
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()
        clean_up(prefix, url if args.database == "postgresql" else None, name, workdir)


def clean_up(prefix: str, url: str | None, name: str, workdir: Path) -> None:
    """What a bench run leaves: its Redis keys, its PostgreSQL database (``url`` given), its folder."""
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    if url is not None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
