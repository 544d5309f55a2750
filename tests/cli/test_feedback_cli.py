"""``newsletter feedback apply`` as a user runs it: a real process on an SQLite file.

Replays an SNS bounce signed here (mailer.testing.sns_signer) in 2022 with a certificate of that time,
read from a folder as ``--cert-dir`` reads it; tests/real_world/test_real_sns.py replays an AWS-signed
one the same way when ../shared/fixtures exists.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from support import ses
from support.paths import PROJECT_ROOT
from support.sns import tampered

from mailer.feedback import samples
from mailer.testing.sns_signer import DEFAULT_TOPIC, SnsSigner
from subscribers.db import make_session_factory, open_database
from subscribers.models import Subscriber
from subscribers.preferences import add_subscriber

pytestmark = pytest.mark.slow  # runs the console script in real processes

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
THEN = dt.datetime(2022, 4, 1, 21, 24, 50, 200000, tzinfo=dt.UTC)  # when the bounce was signed
AS_OF = "2022-04-01T21:25:00Z"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A hard bounce of bounce@simulator.amazonses.com signed at THEN, and the folder holding the
    certificate, valid then (and expired by the time of the test: only --as-of makes it pass)."""
    folder = tmp_path_factory.mktemp("signed")
    signer = SnsSigner(valid_from=THEN - dt.timedelta(days=100), valid_days=365)
    signer.write_certificate(folder / "certs")
    bounce = folder / "bounce.json"
    bounce.write_text(signer.envelope(ses.bounce("bounce@simulator.amazonses.com", at=THEN), timestamp=THEN))
    return bounce, folder / "certs"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_database(url)
    with make_session_factory(engine)() as session:
        add_subscriber(session, "bounce@simulator.amazonses.com", now=NOW)
        add_subscriber(session, "reader@example.com", now=NOW)
        session.commit()
    engine.dispose()
    return url


def run(db_url: str, *args: str, topics: str = DEFAULT_TOPIC) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_DATA_DIR": str(Path(db_url[10:]).parent),
        "NEWSLETTER_SNS_TOPIC_ARNS": topics,  # the signer's topic, in the form an operator types
    }
    return subprocess.run(
        [sys.executable, "-c", "from mailer.cli import main; main()", "feedback", "apply", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=60,
    )


def status(db_url: str, email: str) -> str | None:
    engine = open_database(db_url, migrate=False)
    with make_session_factory(engine)() as session:
        found = session.scalar(select(Subscriber.status).where(Subscriber.email_key == email))
    engine.dispose()
    return found


def test_signed_message_replayed_as_of_its_time_is_applied_once(
    db_url: str, signed: tuple[Path, Path]
) -> None:
    bounce, certs = signed
    args = [str(bounce), "--cert-dir", str(certs), "--as-of", AS_OF]
    first = run(db_url, *args)
    assert first.returncode == 0, first.stderr
    assert "(verified)" in first.stdout and "suppressed (hard_bounce), status bounced" in first.stdout
    assert status(db_url, "bounce@simulator.amazonses.com") == "bounced"
    second = run(db_url, *args)
    assert second.returncode == 0 and "duplicate" in second.stdout


def test_an_old_or_changed_message_is_refused_with_one_line(
    db_url: str, signed: tuple[Path, Path], tmp_path: Path
) -> None:
    bounce, certs = signed
    result = run(db_url, str(bounce), "--cert-dir", str(certs))
    assert result.returncode == 2
    assert "older than" in result.stderr and "Traceback" not in result.stderr
    changed = tmp_path / "changed.json"
    changed.write_text(tampered(bounce.read_text(), "Message"))
    result = run(db_url, str(changed), "--cert-dir", str(certs), "--as-of", AS_OF)
    assert result.returncode == 2
    assert "signature does not match" in result.stderr and "Traceback" not in result.stderr
    assert status(db_url, "bounce@simulator.amazonses.com") == "active"


def test_bare_notification_needs_no_verify(db_url: str, tmp_path: Path) -> None:
    file = tmp_path / "complaint.json"
    file.write_text(json.dumps(samples.complaint_notification("reader@example.com", message_id="m1", at=NOW)))
    refused = run(db_url, str(file))
    assert refused.returncode == 2 and "--no-verify" not in refused.stdout
    assert "bare SES notification" in refused.stderr
    applied = run(db_url, str(file), "--no-verify")
    assert applied.returncode == 0, applied.stderr
    assert "UNVERIFIED" in applied.stdout and "unsubscribed" in applied.stdout
    assert status(db_url, "reader@example.com") == "complained"


def test_missing_and_malformed_files_are_input_errors(db_url: str, tmp_path: Path) -> None:
    missing = run(db_url, str(tmp_path / "nope.json"), "--no-verify")
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"Type": "Notification"')
    malformed = run(db_url, str(bad), "--no-verify")
    assert (
        malformed.returncode == 2 and "not JSON" in malformed.stderr and "Traceback" not in malformed.stderr
    )


def test_with_no_topic_listed_a_genuine_message_is_refused_with_the_setting_named(
    db_url: str, signed: tuple[Path, Path]
) -> None:
    bounce, certs = signed
    done = run(db_url, str(bounce), "--cert-dir", str(certs), "--as-of", AS_OF, topics="")
    assert (
        done.returncode == 2 and "NEWSLETTER_SNS_TOPIC_ARNS" in done.stderr and "Traceback" not in done.stderr
    )
    assert status(db_url, "bounce@simulator.amazonses.com") == "active", "nothing applied"


def test_a_refused_message_is_refused_again_never_called_applied(db_url: str, tmp_path: Path) -> None:
    """A message the command refuses (exit 2) is kept (so SNS's redeliveries are known), but not as
    applied: the next run refuses it the same way instead of calling it a duplicate."""
    signer = SnsSigner(valid_from=THEN - dt.timedelta(days=100), valid_days=365)
    signer.write_certificate(tmp_path / "certs")
    hello = tmp_path / "hello.json"
    hello.write_text(signer.envelope("Hello world", version="2", timestamp=THEN))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"notificationType": "Bounce", "mail": {"messageId": "m"}}))
    for args, why in (
        ([str(hello), "--cert-dir", str(tmp_path / "certs"), "--as-of", AS_OF], "not JSON"),
        ([str(bare), "--no-verify"], "bounce is missing"),
    ):
        for _ in range(2):
            result = run(db_url, *args)
            assert result.returncode == 2, (result.stdout, result.stderr)
            assert why in result.stderr and "Traceback" not in result.stderr
            assert "already applied" not in result.stdout
