"""Benchmark: CSV import rows/s (SQLite and PostgreSQL) and peak RSS while streaming 1,000,000 subscribers.

    .venv/bin/python bench/import.py [--rows 200000] [--stream-rows 1000000] [--skip-postgres]

1. Generates a CSV of N subscribers (80% of addresses on 20 big mail domains, 20% on 5,000 others; Chinese
   and English names; 0-3 topics; zh/en), then imports it with subscribers.importer.import_csv_stepwise into a
   fresh SQLite file and a fresh PostgreSQL database, printing rows/s. Every row is validated.
2. Times address validation alone: email-validator's validate_email on every row vs
   subscribers.normalise.normalise_address (its fast path), so the share of validation is visible.
3. Fills a fresh database with 1,000,000 subscribers (set-based SQL, not the importer: the point is the
   stream) and streams the audience of an issue with 6 topics in a CHILD process, which reports its
   peak RSS (ru_maxrss and VmHWM): the parent's memory does not count.
PostgreSQL: postgresql+psycopg://postgres@127.0.0.1:5432/test must accept CREATE DATABASE.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from subscribers.db import make_session_factory, open_database, utcnow  # noqa: E402
from subscribers.importer import import_csv_stepwise  # noqa: E402
from subscribers.store import segment_counts, stream_audience, sync_topics  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TOPICS = [
    "nova",
    "neutron",
    "cinder",
    "swift",
    "glance",
    "keystone",
    "horizon",
    "heat",
    "ceilometer",
    "trove",
]
ISSUE_TOPICS = ["nova", "neutron", "cinder", "heat", "keystone", "swift"]
BIG_DOMAINS = [
    "gmail.com",
    "qq.com",
    "163.com",
    "126.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.com",
    "sina.com",
    "foxmail.com",
    "aliyun.com",
    "icloud.com",
    "huawei.com",
    "redhat.com",
    "ibm.com",
    "intel.com",
    "example.org",
    "openstack.org",
    "mirantis.com",
    "canonical.com",
    "sohu.com",
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"


def make_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    small_domains = [f"corp{i}.example{i % 7}.com" for i in range(5000)]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name", "topics", "locale"])
        for i in range(rows):
            domain = rng.choice(BIG_DOMAINS) if rng.random() < 0.8 else rng.choice(small_domains)
            if rng.random() < 0.5:
                name = (
                    rng.choice(SURNAMES)
                    + rng.choice(GIVEN)
                    + (rng.choice(GIVEN) if rng.random() < 0.5 else "")
                )
                locale = "zh"
            else:
                name, locale = f"User {i}", "en"
            topics = ";".join(rng.sample(TOPICS, rng.randint(0, 3)))
            writer.writerow([f"user.{i}+nl@{domain}", name, topics, locale])


def fresh_pg() -> tuple[str, str]:
    import psycopg

    name = f"nlbench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_import(url: str, csv_path: Path) -> dict[str, float]:
    """Each import runs in a fresh child process, like the CLI: no state of this process weighs on it."""
    out = subprocess.run(
        [sys.executable, __file__, "--import-child", url, "--csv", str(csv_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def import_child(url: str, csv_path: Path) -> dict[str, float]:
    engine = open_database(url)
    factory = make_session_factory(engine)
    with factory() as session:
        sync_topics(session, [(k, k.title(), None) for k in TOPICS])
        session.commit()
    started = time.perf_counter()
    with csv_path.open("rb") as stream:
        report = import_csv_stepwise(factory, stream, now=utcnow())
    seconds = time.perf_counter() - started
    assert report.added == report.rows and report.rejected == 0, report
    # a second run: every row is looked up and found unchanged
    started = time.perf_counter()
    with csv_path.open("rb") as stream:
        again = import_csv_stepwise(factory, stream, now=utcnow())
    reimport = time.perf_counter() - started
    assert again.unchanged == again.rows, again
    engine.dispose()
    return {
        "peak_mb": _status_kb("VmHWM") / 1024,
        "rows": report.rows,
        "seconds": seconds,
        "rows_per_s": report.rows / seconds,
        "reimport_rows_per_s": again.rows / reimport,
    }


def bench_validation(csv_path: Path) -> dict[str, float]:
    from email_validator import validate_email

    from subscribers import normalise

    with csv_path.open(encoding="utf-8") as f:
        addresses = [row[0] for row in csv.reader(f)][1:]
    started = time.perf_counter()
    for address in addresses:
        validate_email(address, check_deliverability=False)
    full = time.perf_counter() - started
    normalise._domain.cache_clear()
    started = time.perf_counter()
    for address in addresses:
        normalise.normalise_address(address)
    fast = time.perf_counter() - started
    return {
        "rows": len(addresses),
        "email_validator_us": full / len(addresses) * 1e6,
        "normalise_us": fast / len(addresses) * 1e6,
        "speedup": full / fast,
    }


def fill(url: str, rows: int) -> None:
    """rows subscribers (75% active, 1% suppressed), each following 0-3 of 10 topics, by set-based SQL."""
    engine = open_database(url)
    with make_session_factory(engine)() as session:
        sync_topics(session, [(k, k.title(), None) for k in TOPICS])
        session.commit()
    pg = engine.dialect.name == "postgresql"
    if pg:
        series = f"generate_series(1, {rows}) AS g(i)"
    else:
        counter = f"WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows})"
        series = f"({counter} SELECT i FROM c)"
    now = "now()" if pg else "datetime('now')"
    address = "'user' || i || '@example.com'"
    columns = "id, email, email_key, name, locale, status, created_at, changed_at, source, soft_bounces"
    locale = "CASE WHEN i % 2 = 0 THEN 'zh' ELSE 'en' END"
    status = "CASE WHEN i % 4 = 0 THEN 'unsubscribed' ELSE 'active' END"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO subscribers ({columns}) SELECT i, {address}, {address}, 'User ' || i, {locale},"
                f" {status}, {now}, {now}, 'bench', 0 FROM {series}"
            )
        )
        for t in range(3):  # topic (i*7 + t*3) % 10 + 1 for the first (i % 4) slots
            topic = f"(i * 7 + {t} * 3) % 10 + 1"
            conn.execute(
                text(
                    f"INSERT INTO subscriber_topics (subscriber_id, topic_id) SELECT i, {topic}"
                    f" FROM {series} WHERE i % 4 > {t}"
                )
            )
        conn.execute(
            text(
                f"INSERT INTO suppressions (email_key, email, reason, created_at)"
                f" SELECT {address}, {address}, 'hard_bounce', {now} FROM {series} WHERE i % 100 = 1"
            )
        )
        if pg:
            conn.execute(text("SELECT setval('subscribers_id_seq', (SELECT max(id) FROM subscribers))"))
    with engine.connect() as conn:
        if pg:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        else:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def stream_child(url: str, batch_size: int) -> None:
    """Runs in the child: stream the whole audience, print counts and peak memory as JSON."""
    engine = open_database(url, migrate=False)
    with engine.connect():
        pass
    baseline = _status_kb("VmRSS")  # the interpreter, SQLAlchemy and a connection, before any row
    started = time.perf_counter()
    members = 0
    segments: dict[str, int] = {}
    with make_session_factory(engine)() as session:
        for batch in stream_audience(session, ISSUE_TOPICS, batch_size=batch_size):
            members += len(batch)
            for member in batch:
                key = ",".join(sorted(member.segment))
                segments[key] = segments.get(key, 0) + 1
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    with make_session_factory(engine)() as session:
        counted = segment_counts(session, ISSUE_TOPICS)
    counts_seconds = time.perf_counter() - started
    assert sum(counted.values()) == members and len(counted) == len(segments)
    hwm = _status_kb("VmHWM")
    print(
        json.dumps(
            {
                "members": members,
                "segments": len(segments),
                "seconds": seconds,
                "counts_seconds": counts_seconds,
                "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "vmhwm_mb": hwm / 1024,
                "baseline_mb": baseline / 1024,
            }
        )
    )


def bench_stream(url: str, batch_size: int) -> dict[str, float]:
    """Run the stream in a grandchild: Linux carries a process's pre-exec peak RSS (here: a fork of this
    big parent) into ru_maxrss across exec, so a small shell forks the measured Python afresh."""
    command = " ".join(shlex.quote(a) for a in (sys.executable, __file__, "--stream-child", url))
    out = subprocess.run(
        ["/bin/sh", "-c", f"{command} --batch-size {batch_size}; true"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--stream-rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="SQLite import runs (the median is shown)")
    parser.add_argument("--stream-child")
    parser.add_argument("--import-child")
    parser.add_argument("--csv")
    args = parser.parse_args()
    if args.stream_child:
        stream_child(args.stream_child, args.batch_size)
        return
    if args.import_child:
        print(json.dumps(import_child(args.import_child, Path(args.csv))))
        return

    with tempfile.TemporaryDirectory(prefix="nlbench") as tmp:
        folder = Path(tmp)
        csv_path = folder / "subscribers.csv"
        make_csv(csv_path, args.rows)
        print(f"generated {args.rows:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB)")

        v = bench_validation(csv_path)
        print(
            f"validation alone: email-validator {v['email_validator_us']:.1f} us/row, "
            f"normalise_address {v['normalise_us']:.1f} us/row ({v['speedup']:.1f}x)"
        )

        runs = [bench_import(f"sqlite:///{folder / f'import{i}.db'}", csv_path) for i in range(args.repeat)]
        print("import SQLite runs (rows/s): " + ", ".join(f"{x['rows_per_s']:,.0f}" for x in runs))
        print(f"import child peak RSS (VmHWM): {max(x['peak_mb'] for x in runs):.0f} MB")
        r = sorted(runs, key=lambda x: x["rows_per_s"])[len(runs) // 2]  # the median run
        print(
            f"import SQLite:     {r['rows']:,} rows in {r['seconds']:.2f} s = {r['rows_per_s']:,.0f} rows/s "
            f"(re-import, all unchanged: {r['reimport_rows_per_s']:,.0f} rows/s)"
        )
        if not args.skip_postgres:
            name, url = fresh_pg()
            try:
                r = bench_import(url, csv_path)
                print(
                    f"import PostgreSQL: {r['rows']:,} rows in {r['seconds']:.2f} s = "
                    f"{r['rows_per_s']:,.0f} rows/s (re-import: {r['reimport_rows_per_s']:,.0f} rows/s)"
                )
            finally:
                drop_pg(name)

        targets: list[tuple[str, str, str | None]] = [("SQLite", f"sqlite:///{folder / 'stream.db'}", None)]
        if not args.skip_postgres:
            name, url = fresh_pg()
            targets.append(("PostgreSQL", url, name))
        try:
            for label, url, _ in targets:
                started = time.perf_counter()
                fill(url, args.stream_rows)
                filled = time.perf_counter() - started
                s = bench_stream(url, args.batch_size)
                print(
                    f"stream {label}: {s['members']:,} audience members of {args.stream_rows:,} subscribers,"
                    f" {s['segments']} segments, in {s['seconds']:.1f} s"
                    f" ({s['members'] / s['seconds']:,.0f}/s);"
                    f" child peak RSS: VmHWM {s['vmhwm_mb']:.0f} MB, ru_maxrss {s['ru_maxrss_mb']:.0f} MB"
                    f" (RSS before the first row {s['baseline_mb']:.0f} MB);"
                    f" segment_counts {s['counts_seconds']:.2f} s [fill {filled:.0f} s]"
                )
        finally:
            for _, _, database in targets:
                if database:
                    drop_pg(database)


if __name__ == "__main__":
    main()
