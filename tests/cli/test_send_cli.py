"""The sending commands as a user runs them: ``newsletter demo``, ``send``, ``campaigns`` (subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.paths import REFERENCE_ISSUE

from mailer import samples

pytestmark = pytest.mark.slow  # runs the console script in real processes

REFERENCE = REFERENCE_ISSUE


def newsletter(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {"COLUMNS": "200", **settings}
    return subprocess.run(
        [sys.executable, "-c", "from mailer.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_demo_runs_the_whole_path_on_embedded_defaults(tmp_path):
    result = newsletter(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "rejected 2" in out and "line 14" in out
    assert "sent 28, failed 0, skipped 0 (done)" in out
    outbox = tmp_path / "var" / "outbox"
    assert len(list(outbox.glob("1.*.eml"))) == 28
    assert "suppressed (hard_bounce), status bounced" in out
    assert "suppressed (complaint), status complained" in out
    assert (tmp_path / "var" / "newsletter.db").exists()
    # it ends with the summary table (figures checked against the database in tests/services/test_demo.py)
    summary = out[out.index("demo summary") :]
    assert "(verified)" in out and "UNVERIFIED" not in out
    for row in (
        "30 imported, 2 rejected, 26 active now",
        "21 segments, 28 readers",
        "28 messages of campaign 1",
    ):
        assert row in summary
    assert summary.count("signature verified") == 2 and "2 addresses" in summary
    assert str((tmp_path / "var" / "outbox").resolve()) in summary
    assert "newsletter serve, then open http://127.0.0.1:8000/admin/" in summary
    assert out.rstrip().endswith("┘")

    listed = newsletter(tmp_path, "campaigns", "list")
    assert listed.returncode == 0 and "done" in listed.stdout
    shown = newsletter(tmp_path, "campaigns", "show", "1")
    assert shown.returncode == 0 and "sent" in shown.stdout and "28" in shown.stdout
    paused = newsletter(tmp_path, "campaigns", "pause", "1")
    assert paused.returncode == 4 and "Traceback" not in paused.stderr
    assert "campaign 1 is done; only a sending or scheduled campaign can pause" in paused.stderr
    plan = newsletter(tmp_path, "campaigns", "plan", "1")
    assert plan.returncode == 0 and "the audience is not empty" in plan.stdout and "recipients" in plan.stdout

    # a second send of the same issue: the bounced and complained readers get nothing now
    again = newsletter(tmp_path, "send", str(REFERENCE), NEWSLETTER_SENDER_ADDRESS="news@example.org")
    assert again.returncode == 0, again.stderr
    assert "campaign 2 done: 26 sent" in again.stdout

    dry = newsletter(tmp_path, "send", str(REFERENCE), "--dry-run")
    assert dry.returncode == 0 and "nothing sent" in dry.stdout and "segment" in dry.stdout
    test = newsletter(tmp_path, "send", str(REFERENCE), "--all", "--test-to", "editor@example.org")
    assert test.returncode == 0 and "1 test messages" in test.stdout
    assert "campaign 3" not in newsletter(tmp_path, "campaigns", "list").stdout


def test_send_runs_the_pre_send_checklist_as_the_dashboard_does(tmp_path):
    """The sender address is still the default (a check fails): ``send`` and ``send --at`` refuse with exit
    4 naming the failing item, and store and send nothing; ``--override`` sends, and says so in the log."""
    assert newsletter(tmp_path, "subscribers", "import", str(samples.SUBSCRIBERS)).returncode == 0
    dry = newsletter(tmp_path, "send", str(samples.ISSUE), "--dry-run")
    assert dry.returncode == 0 and "FAIL the sender identity is set" in dry.stdout
    assert "send refuses this issue unless given --override" in dry.stdout
    due = (datetime.now(UTC) + timedelta(hours=2)).isoformat(timespec="seconds")
    for when in ((), ("--at", due)):
        refused = newsletter(tmp_path, "send", str(samples.ISSUE), *when)
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error")]
        assert refused.returncode == 4 and len(errors) == 1, refused.stderr
        assert (
            "the pre-send checklist fails: the sender identity is set (NEWSLETTER_SENDER_ADDRESS" in errors[0]
        )
        assert "--override" in errors[0] and "Traceback" not in refused.stderr
    assert newsletter(tmp_path, "campaigns", "show", "1").returncode == 3, "nothing stored"
    assert not (tmp_path / "var" / "outbox").exists(), "nothing sent"

    forced = newsletter(tmp_path, "send", str(samples.ISSUE), "--override")
    assert forced.returncode == 0, forced.stderr
    assert "campaign 1 done: 28 sent" in forced.stdout
    assert "checklist fails (the sender identity is set); start anyway (override)" in forced.stderr


def test_bad_input_gives_one_line_and_an_exit_code(tmp_path):
    missing = newsletter(tmp_path, "demo", "--issue", str(tmp_path / "nope.md"))
    assert missing.returncode == 2
    assert "nope.md: file not found" in missing.stderr and "Traceback" not in missing.stderr
    unknown = newsletter(tmp_path, "campaigns", "show", "99")
    assert unknown.returncode == 3 and "no campaign with id 99" in unknown.stderr
    huge = newsletter(tmp_path, "campaigns", "show", "99999999999999999999")
    assert huge.returncode == 2 and "Traceback" not in huge.stderr
    both = newsletter(tmp_path, "send", str(REFERENCE), "--all", "--topics-from-subscribers")
    assert both.returncode == 2 and "not both" in both.stderr
    transport = newsletter(tmp_path, "send", str(REFERENCE), "--transport", "pigeon")
    assert transport.returncode == 2 and "pigeon" in transport.stderr


def test_retry_failed_sends_the_failed_rows_again(tmp_path, smtp_sink):
    """Every reader refused (a relay misconfigured): the campaign ends done with every row failed; once
    the relay is fixed, ``campaigns retry-failed`` sends each of them once."""
    smtp_sink.refuse_all = (550, "5.7.1 relaying denied")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env |= {
        "NEWSLETTER_TRANSPORT": "smtp", "NEWSLETTER_SMTP_HOST": smtp_sink.host,
        "NEWSLETTER_SMTP_PORT": str(smtp_sink.port), "NEWSLETTER_SECRET_KEY": "a key of this deployment",
        "NEWSLETTER_SENDER_ADDRESS": "news@example.org", "COLUMNS": "200",
    }  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", "from mailer.cli import main; main()", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    assert run("subscribers", "import", str(samples.SUBSCRIBERS)).returncode == 0
    sent = run("send", str(samples.ISSUE))
    assert sent.returncode == 0, sent.stderr
    assert "campaign 1 done: 0 sent, 28 failed" in sent.stdout
    shown = run("campaigns", "show", "1")
    assert "failures by cause: smtp-550 28 (newsletter campaigns retry-failed 1" in shown.stdout

    wrong = run("campaigns", "retry-failed", "1", "--cause", "network")
    assert wrong.returncode == 0 and "campaign 1 has no failed rows with cause network" in wrong.stdout
    smtp_sink.refuse_all = None
    retried = run("campaigns", "retry-failed", "1")
    assert retried.returncode == 0, retried.stderr
    assert "campaign 1: 28 rows queued again (smtp-550 28)" in retried.stdout
    assert "campaign 1 done: 28 sent, 0 failed" in retried.stdout
    recipients = [address for _, rcpts, _ in smtp_sink.received for address in rcpts]
    assert len(recipients) == len(set(recipients)) == 28
    again = run("campaigns", "retry-failed", "1")
    assert again.returncode == 0 and "campaign 1 has no failed rows" in again.stdout
    draft = run("campaigns", "retry-failed", "7")
    assert draft.returncode == 3 and "no campaign with id 7" in draft.stderr
