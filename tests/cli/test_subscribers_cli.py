"""The CLI as a user runs it (a real process): import, rejects file, export, add/show/remove, exit codes."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailer.cli import main
from mailer.settings import get_settings

NEWSLETTER = [sys.executable, "-c", "from mailer.cli import main; main()"]


def newsletter_process(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_DATA_DIR": str(tmp_path / "var"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [*NEWSLETTER, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def cli(monkeypatch, capsys, tmp_path):
    """Run ``newsletter ARGS`` in this process through main() (its error mapping included)."""

    def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
        monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path / "var"))
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setattr(sys, "argv", ["newsletter", *args])
        get_settings.cache_clear()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    yield run
    get_settings.cache_clear()


def test_import_export_and_rejects_file(database_url, tmp_path, cli):
    source = tmp_path / "list.csv"
    source.write_bytes(
        "邮箱,姓名,主题,语言\r\nwang@example.com,王小明,Compute;Neutron 网络,中文\r\nnot-valid,坏,,\r\n"
        "li@example.com,李,nova,en\r\nx@example.com,X,swift;nosuch,\r\n".encode("gbk")
    )
    done = cli(database_url, "subscribers", "import", str(source), "--topics", "heat", "-q")
    assert done.returncode == 0, done.stderr
    assert "added 2, updated 0, unchanged 0, rejected 2" in done.stdout
    rejects = list(csv.reader((tmp_path / "list.rejects.csv").open(encoding="utf-8")))
    assert rejects[0] == ["line", "reason", "邮箱", "姓名", "主题", "语言"]
    assert [r[0] for r in rejects[1:]] == ["3", "5"]
    assert "not-valid" in rejects[1][1] and rejects[1][2:] == ["not-valid", "坏", "", ""]
    assert "unknown topic 'nosuch'" in rejects[2][1]

    again = cli(database_url, "subscribers", "import", str(source), "--topics", "heat", "-q")
    assert "added 0, updated 0, unchanged 2, rejected 2" in again.stdout

    exported = cli(database_url, "subscribers", "export", "--status", "active")
    assert exported.returncode == 0, exported.stderr
    rows = {r["email"]: r for r in csv.DictReader(io.StringIO(exported.stdout))}
    assert set(rows) == {"wang@example.com", "li@example.com"}
    assert rows["wang@example.com"]["topics"] == "heat;neutron;nova"  # an alias and a Chinese name
    assert rows["wang@example.com"]["name"] == "王小明" and rows["li@example.com"]["locale"] == "en"


def test_add_show_remove_stats_topics_and_exit_codes(tmp_path, sqlite_url, cli):
    run = lambda *a: cli(sqlite_url, *a)  # noqa: E731
    assert run("db", "upgrade").returncode == 0
    assert run("topics", "add", "octavia", "--name", "Octavia", "--name-zh", "负载均衡").returncode == 0
    added = run("subscribers", "add", "Ann@Example.org", "--name", "Ann", "--topics", "octavia,nova")
    assert added.returncode == 0 and "added #1 Ann@example.org (active)" in added.stdout
    shown = run("subscribers", "show", "ann@example.org")
    assert "nova, octavia" in shown.stdout and "subscribed" in shown.stdout
    stats = run("subscribers", "stats")
    assert "octavia" in stats.stdout and "active" in stats.stdout
    assert "负载均衡" in run("topics", "list").stdout

    duplicate = run("subscribers", "add", "ann@example.org")
    assert duplicate.returncode == 4 and duplicate.stderr.count("\n") == 1 and "already" in duplicate.stderr
    no_email_column = tmp_path / "names.csv"
    no_email_column.write_text("name,topics\nAnn,nova\n", encoding="utf-8")
    bad = newsletter_process(sqlite_url, tmp_path, "subscribers", "import", str(no_email_column), "-q")
    assert bad.returncode == 2 and "no email column" in bad.stderr and "Traceback" not in bad.stderr
    assert run("subscribers", "add", "nobody", "--topics", "nova").returncode == 2
    assert run("subscribers", "add", "b@example.org", "--topics", "nosuch").returncode == 2
    assert run("subscribers", "remove", "ann@example.org").returncode == 0
    missing = run("subscribers", "show", "ann@example.org")
    assert missing.returncode == 3 and "no subscriber" in missing.stderr


@pytest.mark.parametrize("status", ["bounced", "bogus"])
def test_import_status_option_is_checked(tmp_path, sqlite_url, status, cli):
    """The core's one rule refuses it, in words of its own (the API's answer is the same sentence)."""
    source = tmp_path / "a.csv"
    source.write_text("email\na@example.com\n", encoding="utf-8")
    done = cli(sqlite_url, "subscribers", "import", str(source), "--status", status)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    expected = f"an import gives new subscribers the status active or pending, not {status!r}"
    assert done.stderr.strip() == f"error: {expected}"
