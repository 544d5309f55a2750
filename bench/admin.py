"""Dashboard benchmark: what watching a send costs. Three campaigns of N recipients each (PostgreSQL, Redis,
2 Celery worker processes, the local SES-compatible sink, as bench/send.py), the web app under uvicorn
beside them. The middle campaign is watched by a dashboard that polls GET /api/campaigns/{id}/progress once
a second (with an API token, as the dashboard's script does with its cookie); the first and the last are
not watched. Prints the progress endpoint's latency percentiles during the watched send, and the watched
send rate as a ratio to the mean of the two unwatched ones (the machine drifts over minutes: the
unwatched runs bracket the watched one).

    .venv/bin/python bench/admin.py [--recipients 100000] [--pollers 1]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from bench.send import (  # noqa: E402
    BENCH_SECRET,
    PG_ADMIN,
    REDIS_URL,
    REFERENCE,
    clean_up,
    free_port,
    populate,
    start_sink,
)
from mailer.services import admins, drafts, lifecycle, listing  # noqa: E402
from mailer.services.env import AppEnv  # noqa: E402
from mailer.services.watch import progress  # noqa: E402
from mailer.settings import Settings  # noqa: E402


def start_web(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "mailer.web.app:create_app", "--host", "127.0.0.1",
        "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-2000:])
        time.sleep(0.2)
    raise RuntimeError("uvicorn did not start")


def start_workers(env: dict[str, str], workdir: Path, count: int) -> list[subprocess.Popen[bytes]]:
    workers = []
    for index in range(count):
        log = (workdir / f"worker{index}.log").open("wb")
        command = [
            sys.executable, "-m", "celery", "-A", "worker", "worker", "-P", "solo", "-n", f"bench{index}@%h",
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        workers.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    time.sleep(4)  # connected and idle
    return workers


class Dashboard:
    """``pollers`` dashboards, each asking for the campaign's progress once a second until it is done."""

    def __init__(self, url: str, token: str, campaign_id: int, pollers: int) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._poll, args=(url, token, campaign_id, i / pollers), daemon=True)
            for i in range(pollers)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _poll(self, url: str, token: str, campaign_id: int, offset: float) -> None:
        time.sleep(offset)
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=10) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                answer = client.get(f"/api/campaigns/{campaign_id}/progress")
                self.latencies.append(time.perf_counter() - began)
                if answer.status_code != 200:
                    self.errors += 1
                self._stop.wait(max(0.0, 1.0 - (time.perf_counter() - began)))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def send_once(app: AppEnv, watch: tuple[str, str, int] | None) -> tuple[float, int, Dashboard | None]:
    """One campaign of the whole list; returns its send rate, messages sent and the dashboard watching."""
    draft = drafts.read_draft(app, REFERENCE)
    with app.transaction() as session:
        campaign = lifecycle.create(session, draft, now=app.now())
    dashboard = Dashboard(watch[0], watch[1], campaign.id, watch[2]) if watch else None
    started = time.time()
    if dashboard:
        dashboard.start()
    lifecycle.start_stepwise(app, campaign.id)
    while True:
        with app.sessions() as session:
            state = progress(session, campaign.id, now=app.now(), exact=False)
        if state.status != "sending":
            break
        time.sleep(0.5)
    if dashboard:
        dashboard.stop()
    with app.sessions() as session:
        finished = listing.detail(session, campaign.id, now=app.now()).info.finished_at
    elapsed = (finished.timestamp() if finished else time.time()) - started
    return state.sent / elapsed, state.sent, dashboard


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--pollers", type=int, default=1, help="dashboards polling once a second each")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    prefix = f"nlbench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="nlbench-admin-"))
    name = f"nlbench_admin_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    sink_port, web_port = free_port(), free_port()
    sink = start_sink(sink_port)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        began = time.time()
        populate(url, args.recipients)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        print(f"populated {args.recipients:,} subscribers in {time.time() - began:.1f} s")
        variables = dict(
            NEWSLETTER_BROKER_URL=REDIS_URL, NEWSLETTER_REDIS_PREFIX=prefix, NEWSLETTER_DATABASE_URL=url,
            NEWSLETTER_TRANSPORT="ses", NEWSLETTER_SES_ENDPOINT_URL=f"http://127.0.0.1:{sink_port}",
            NEWSLETTER_DATA_DIR=str(workdir), NEWSLETTER_SECRET_KEY=BENCH_SECRET,
            NEWSLETTER_BASE_URL=f"http://127.0.0.1:{web_port}",
        )  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env.update(variables, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        settings = Settings(
            **{k.removeprefix("NEWSLETTER_").lower(): v for k, v in variables.items()}  # type: ignore[arg-type]
        )
        app = AppEnv.from_settings(settings)
        with app.transaction() as session:
            admins.create_user(session, "bench", "a bench password", now=datetime.now(UTC))
            token = admins.create_token(session, "bench", "bench", now=datetime.now(UTC)).secret
        processes.append(start_web(web_port, env, workdir / "web.log"))
        processes += start_workers(env, workdir, args.workers)
        web_url = f"http://127.0.0.1:{web_port}"
        runs = []
        for label, watch in (
            ("unwatched", None),
            ("watched", (web_url, token, args.pollers)),
            ("unwatched", None),
        ):
            rate, sent, dashboard = send_once(app, watch)
            runs.append((label, rate, dashboard))
            line = f"{label:>9}: {sent:,} messages at {rate:,.0f}/s"
            if dashboard is not None:
                lat = [x * 1000 for x in dashboard.latencies]
                line += (
                    f"; {len(lat)} progress requests ({args.pollers} dashboard(s) polling once a second): "
                    f"p50 {statistics.median(lat):.1f} ms, p95 {percentile(lat, 0.95):.1f} ms, "
                    f"p99 {percentile(lat, 0.99):.1f} ms, max {max(lat):.1f} ms, errors {dashboard.errors}"
                )
            print(line, flush=True)
        unwatched = statistics.mean(rate for label, rate, _ in runs if label == "unwatched")
        watched = next(rate for label, rate, _ in runs if label == "watched")
        print(
            f"send rate watched / unwatched (mean of before and after, {unwatched:,.0f}/s): "
            f"{watched / unwatched:.3f} (cost {100 * (1 - watched / unwatched):+.1f} %)"
        )
        print(f"load after: {os.getloadavg()[0]:.2f}")
        app.close()
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        sink.send_signal(signal.SIGINT)
        sink.wait(10)
        clean_up(prefix, url, name, workdir)


if __name__ == "__main__":
    main()
